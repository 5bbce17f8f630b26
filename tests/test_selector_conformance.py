"""The reactor's default selector against CPython's own selectors test suite.

On epoll the reactor's default selector is `reactor.core._EpollSelector`:
the standard library's `selectors.EpollSelector` with one method added,
``ready()``, which the turn uses instead of ``select()``.  Everything else
is inherited, and this checks that it still behaves as the standard
library's: the interpreter's ``test.test_selectors.EpollSelectorTestCase``
runs with ``SELECTOR`` bound to ours, one pytest test per suite test.
Nothing in the suite's source is changed; the one test that patches the
standard library class by its name (``test_modify_unregister``) skips itself
for a subclass, as the suite decides.

The rest checks ``ready()`` against ``select()``: the same fds, with epoll's
bits mapped as ``select()`` maps them.
"""

from __future__ import annotations

import gc
import select
import selectors
import socket
import time
from collections.abc import Iterator

import pytest
from cpython_suites import load_suite, run_suite_test, suite_ids, suite_params

from reactor.core import _NOT_IN, _NOT_OUT, _EpollSelector

SUITE = "test.test_selectors"
CASE = "ReactorEpollSelectorTestCase"

if hasattr(selectors, "EpollSelector"):
    LOADED, REASON = load_suite(SUITE, "test_selectors_on_reactor", missing="no `test` package source")
else:
    LOADED, REASON = None, "no epoll here: the reactor uses selectors.DefaultSelector through select()"
if LOADED is not None:
    LOADED.__dict__[CASE] = type(CASE, (LOADED.EpollSelectorTestCase,), {"SELECTOR": _EpollSelector})
    PARAMS = [p for p in suite_params(LOADED, REASON) if p.values[0].startswith(CASE + ".")]
else:
    PARAMS = suite_params(None, REASON)


@pytest.fixture(autouse=True)
def _collect_what_the_suite_leaves() -> Iterator[None]:
    """Close at once what a suite test leaves to the garbage collector.

    On 3.13 ``test_register_file`` leaves its temporary file open until a
    collection; without this a later test's descriptor count would see it go.
    """
    yield
    gc.collect()


@pytest.mark.parametrize("test_id", PARAMS)
def test_cpython_selectors_suite(test_id: str) -> None:
    """One test of CPython's epoll selector suite passes on the reactor's default selector."""
    run_suite_test(LOADED, test_id)


def test_suite_covers_the_base_and_scalable_tests() -> None:
    """Every test of the suite's epoll case is listed, and that is not trivially few."""
    if LOADED is None:
        pytest.skip(REASON)
    ours = [t for t in suite_ids(LOADED) if t.startswith(CASE + ".")]
    theirs = [t for t in suite_ids(LOADED) if t.startswith("EpollSelectorTestCase.")]
    assert len(ours) == len(theirs) == len(PARAMS) >= 15
    assert f"{CASE}.test_above_fd_setsize" in ours


@pytest.mark.skipif(not hasattr(selectors, "EpollSelector"), reason="needs epoll")
@pytest.mark.parametrize("share", [-1.0, float("inf")], ids=["poll-wait", "epoll-wait"])
def test_ready_agrees_with_select(share: float) -> None:
    """``ready()`` reports the fds ``select()`` reports, and its bits map to the same events, with either wait."""
    sel = _EpollSelector()
    sel.POLL_SHARE = share
    assert sel.usable()
    socks: list[socket.socket] = []
    try:
        quiet, quiet_peer = socket.socketpair()  # registered for reading, nothing to read
        readable, readable_peer = socket.socketpair()  # data waiting
        writable, writable_peer = socket.socketpair()  # registered for writing only
        unconnected = socket.socket()  # epoll says hang-up only
        socks += [quiet, quiet_peer, readable, readable_peer, writable, writable_peer, unconnected]
        readable_peer.send(b"x")
        sel.register(quiet, selectors.EVENT_READ, "quiet")
        sel.register(readable, selectors.EVENT_READ | selectors.EVENT_WRITE, "readable")
        sel.register(writable, selectors.EVENT_WRITE, "writable")
        sel.register(unconnected, selectors.EVENT_READ, "unconnected")
        via_select = {key.fd: mask for key, mask in sel.select(0)}
        via_ready = {}
        for fd, bits in sel.ready(0):
            key = sel.get_map()[fd]
            mask = (selectors.EVENT_READ if bits & _NOT_OUT else 0) | (selectors.EVENT_WRITE if bits & _NOT_IN else 0)
            via_ready[fd] = mask & key.events
        assert (sel.poll_waits, sel.epoll_waits) == ((1, 0) if share < 0 else (0, 1))
        assert via_ready == via_select == {
            readable.fileno(): selectors.EVENT_READ | selectors.EVENT_WRITE,
            writable.fileno(): selectors.EVENT_WRITE,
            unconnected.fileno(): selectors.EVENT_READ,
        }
        assert select.EPOLLIN & _NOT_OUT and not select.EPOLLOUT & _NOT_OUT
    finally:
        for s in socks:
            s.close()
        sel.close()


@pytest.mark.skipif(not hasattr(selectors, "EpollSelector"), reason="needs epoll")
def test_the_poll_set_follows_every_registration() -> None:
    """register, modify and unregister (and a modify the standard library undoes) keep the poll set equal to the map."""
    sel = _EpollSelector()
    sel.POLL_SHARE = -1.0  # every wait is poll's
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    try:
        b.send(b"x")
        sel.register(a, selectors.EVENT_READ)
        assert sel.ready(0) == [(a.fileno(), select.POLLIN)]
        sel.modify(a, selectors.EVENT_WRITE)  # unread data, but only writing is asked now
        assert sel.ready(0) == [(a.fileno(), select.POLLOUT)]
        sel.unregister(a)
        assert sel.ready(0) == []
        fd = c.fileno()
        sel.register(fd, selectors.EVENT_READ)
        c.close()
        with pytest.raises(OSError):
            sel.modify(fd, selectors.EVENT_WRITE)  # epoll refuses a closed fd; selectors unregisters it
        assert fd not in sel.get_map()
        assert sel.ready(0) == []  # not reported invalid: the poll set forgot it too
        assert sel.poll_waits == 4 and sel.epoll_waits == 0
    finally:
        for s in (a, b, c, d):
            s.close()
        sel.close()


@pytest.mark.skipif(not hasattr(selectors, "EpollSelector"), reason="needs epoll")
@pytest.mark.parametrize("share", [-1.0, float("inf")], ids=["poll-wait", "epoll-wait"])
def test_a_wait_shorter_than_a_millisecond_is_not_cut_to_zero(share: float) -> None:
    """``ready(0.0004)`` waits at least that long (rounded up to 1 ms, as selectors does), with either wait."""
    sel = _EpollSelector()
    sel.POLL_SHARE = share
    a, b = socket.socketpair()
    try:
        sel.register(a, selectors.EVENT_READ)
        started = time.perf_counter()
        assert sel.ready(0.0004) == []
        assert time.perf_counter() - started >= 0.0004
        assert (sel.poll_waits, sel.epoll_waits) == ((1, 0) if share < 0 else (0, 1))
    finally:
        a.close()
        b.close()
        sel.close()
