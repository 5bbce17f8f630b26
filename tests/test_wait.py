"""The wait's contract (`reactor._wait.Wait`), on every kind of wait, and its poll/epoll switch.

The contract is small (register, modify, unregister, wait, fileno, close),
so every test of it runs on each implementation: the default `EpollWait`
as its switch chooses, forced to ``poll(2)`` and forced to ``epoll_wait``,
and `SelectorWait` over the standard library's default, ``select()`` and
``poll()`` selectors.  These take the place of CPython's selectors suite,
which the reactor's wait, no longer a `selectors.BaseSelector`, does not
claim to pass: the scenarios are the same (timeouts, readiness both ways,
an fd closed or reused while registered, more fds than ``FD_SETSIZE``, a
signal during a wait).

The switch's policy (`PollSwitch`) is tested on its own with made-up
shares, and `EpollWait` for how it keeps the poll set in step and for an
fd closed while registered.
"""

from __future__ import annotations

import ast
import errno
import os
import resource
import select
import selectors
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reactor._wait import READ, WRITE, EpollWait, PollSwitch, SelectorWait, Wait, default_wait

HAS_EPOLL = hasattr(select, "epoll") and hasattr(select, "poll")

#: The `pairs` fixture: a maker of non-blocking socket pairs.
Pairs = Callable[[], tuple[socket.socket, socket.socket]]


def epoll_wait(share: float | None) -> Callable[[], Wait]:
    """A factory of `EpollWait`, its switch forced to one call by ``share`` (None: as it chooses)."""

    def make() -> Wait:
        if not HAS_EPOLL:
            pytest.skip("no epoll here")
        wait = EpollWait()
        if share is not None:
            wait.switch.POLL_SHARE = share
        return wait

    return make


def selector_wait(name: str) -> Callable[[], Wait]:
    """A factory of `SelectorWait` over the named `selectors` class."""

    def make() -> Wait:
        cls = getattr(selectors, name, None)
        if cls is None:
            pytest.skip(f"no selectors.{name} here")
        return SelectorWait(cls())

    return make


KINDS = {
    "epoll-adaptive": epoll_wait(None),
    "epoll-poll": epoll_wait(-1.0),
    "epoll-epoll": epoll_wait(float("inf")),
    "selector-default": selector_wait("DefaultSelector"),
    "selector-select": selector_wait("SelectSelector"),
    "selector-poll": selector_wait("PollSelector"),
}


@pytest.fixture(params=list(KINDS))
def wait(request: pytest.FixtureRequest) -> Iterator[Wait]:
    """Each kind of wait, closed after the test."""
    w = KINDS[request.param]()
    yield w
    w.close()


@pytest.fixture
def pairs() -> Iterator[Pairs]:
    """A maker of non-blocking socket pairs, all closed after the test."""
    made: list[socket.socket] = []

    def make() -> tuple[socket.socket, socket.socket]:
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        made.extend((a, b))
        return a, b

    yield make
    for s in made:
        s.close()


def events_of(wait: Wait, timeout: float | None = 0) -> dict[int, int]:
    """One wait, as fd -> `READ`/`WRITE` events, mapped as the reactor's turn maps the bits."""
    found = {}
    ready = wait.wait(timeout)
    registrations = wait.registrations()
    for fd, bits in ready:
        assert not bits & wait.INVALID, f"fd {fd} reported closed"
        events = (READ if bits & wait.READABLE else 0) | (WRITE if bits & wait.WRITABLE else 0)
        found[fd] = events & registrations[fd]
    return found


def has_kernel_set(wait: Wait) -> bool:
    """Whether the wait registers with the kernel at once (epoll), so a closed fd is refused there."""
    return isinstance(wait, EpollWait) or isinstance(
        getattr(wait, "selector", None), getattr(selectors, "EpollSelector", ())
    )


# ------------------------------------------------------------ the contract


def test_a_wait_reports_readable_writable_and_hang_up(wait: Wait, pairs: Pairs) -> None:
    """Data waiting wakes a reader, a free send buffer a writer, a hang-up alone a reader; a quiet fd nothing."""
    quiet, _ = pairs()
    readable, readable_peer = pairs()
    writable, _ = pairs()
    unconnected = socket.socket()  # epoll says hang-up only
    try:
        readable_peer.send(b"x")
        wait.register(quiet.fileno(), READ)
        wait.register(readable.fileno(), READ | WRITE)
        wait.register(writable.fileno(), WRITE)
        wait.register(unconnected.fileno(), READ)
        assert events_of(wait) == {
            readable.fileno(): READ | WRITE,
            writable.fileno(): WRITE,
            unconnected.fileno(): READ,
        }
        assert len(wait) == 4
        assert dict(wait.registrations()) == {
            quiet.fileno(): READ,
            readable.fileno(): READ | WRITE,
            writable.fileno(): WRITE,
            unconnected.fileno(): READ,
        }
        wait.unregister(unconnected.fileno())
    finally:
        unconnected.close()


def test_registering_twice_and_unknown_fds_are_key_errors(wait: Wait, pairs: Pairs) -> None:
    """register of a registered fd, modify or unregister of an unknown one: KeyError naming the fd."""
    a, _ = pairs()
    fd = a.fileno()
    wait.register(fd, READ)
    with pytest.raises(KeyError, match=f"fd {fd} is already registered"):
        wait.register(fd, WRITE)
    assert dict(wait.registrations()) == {fd: READ}
    wait.unregister(fd)
    with pytest.raises(KeyError, match=f"fd {fd} is not registered"):
        wait.unregister(fd)
    with pytest.raises(KeyError, match=f"fd {fd} is not registered"):
        wait.modify(fd, READ)
    assert len(wait) == 0


@pytest.mark.parametrize("events", [0, 4, READ | WRITE | 4, -1])
def test_bad_events_are_a_value_error(wait: Wait, pairs: Pairs, events: int) -> None:
    """Events other than READ, WRITE or both are refused, by register and by modify, and change nothing."""
    a, _ = pairs()
    with pytest.raises(ValueError, match="events must be READ, WRITE or READ | WRITE"):
        wait.register(a.fileno(), events)
    assert len(wait) == 0
    wait.register(a.fileno(), WRITE)
    with pytest.raises(ValueError, match="events must be"):
        wait.modify(a.fileno(), events)
    assert dict(wait.registrations()) == {a.fileno(): WRITE}
    assert events_of(wait) == {a.fileno(): WRITE}
    wait.unregister(a.fileno())


def test_modify_changes_what_is_watched(wait: Wait, pairs: Pairs) -> None:
    """modify switches between reading, writing and both; the next wait reports only what is asked."""
    a, b = pairs()
    fd = a.fileno()
    b.send(b"x")  # readable and writable
    wait.register(fd, READ)
    assert events_of(wait) == {fd: READ}
    wait.modify(fd, WRITE)
    assert events_of(wait) == {fd: WRITE}
    wait.modify(fd, READ | WRITE)
    assert events_of(wait) == {fd: READ | WRITE}
    wait.unregister(fd)
    assert events_of(wait) == {}


def test_an_fd_closed_while_registered_unregisters_quietly(wait: Wait, pairs: Pairs) -> None:
    """unregister of an fd closed behind the wait's back raises nothing, its number reused or not."""
    a, _ = pairs()
    fd = a.fileno()
    wait.register(fd, READ)
    a.close()
    c, d = pairs()
    if c.fileno() != fd:
        os.dup2(c.fileno(), fd)  # the reused number: a new file behind the old registration
        c.close()
        c = socket.socket(fileno=fd)
    try:
        wait.unregister(fd)
        assert len(wait) == 0
        wait.register(fd, READ)
        d.send(b"x")
        assert events_of(wait) == {fd: READ}
        wait.unregister(fd)
    finally:
        c.close()


def test_registering_a_closed_fd_raises_and_registers_nothing(wait: Wait) -> None:
    """Where the kernel checks registrations (epoll), a closed fd is an OSError and nothing is recorded."""
    if not has_kernel_set(wait):
        pytest.skip("this wait checks descriptors only when it waits")
    s = socket.socket()
    fd = s.fileno()
    s.close()
    with pytest.raises(OSError):
        wait.register(fd, READ)
    assert len(wait) == 0 and fd not in wait.registrations()


def test_a_failed_modify_leaves_the_fd_unregistered(wait: Wait, pairs: Pairs) -> None:
    """The kernel refuses to modify an fd closed behind the wait's back: OSError, and the fd is unregistered."""
    if not has_kernel_set(wait):
        pytest.skip("this wait checks descriptors only when it waits")
    a, _ = pairs()
    fd = a.fileno()
    wait.register(fd, READ)
    a.close()
    with pytest.raises(OSError):
        wait.modify(fd, WRITE)
    assert fd not in wait.registrations() and len(wait) == 0
    assert events_of(wait) == {}


def test_a_selector_that_keeps_what_it_failed_to_modify_is_made_to_drop_it(
    pairs: Pairs,
) -> None:
    """`SelectorWait` keeps the contract for a selector whose modify fails without unregistering."""

    class Stubborn(selectors.SelectSelector):
        def modify(self, fileobj: object, events: int, data: object = None) -> selectors.SelectorKey:
            raise OSError(errno.EBADF, "refused")

    wait = SelectorWait(Stubborn())
    a, _ = pairs()
    wait.register(a.fileno(), READ)
    with pytest.raises(OSError, match="refused"):
        wait.modify(a.fileno(), WRITE)
    assert len(wait) == 0
    wait.close()


def test_a_selector_wait_needs_a_selector() -> None:
    """Anything but a `selectors.BaseSelector` is refused with a TypeError that names it."""
    with pytest.raises(TypeError, match="selectors.BaseSelector, got object"):
        SelectorWait(object())  # type: ignore[arg-type]


def test_timeouts(wait: Wait, pairs: Pairs) -> None:
    """0 does not wait; a wait shorter than a millisecond is not cut to zero; None returns once something is ready."""
    a, b = pairs()
    wait.register(a.fileno(), READ)
    started = time.perf_counter()
    assert wait.wait(0) == [] and wait.wait(-1) == []
    assert wait.wait(0.0004) == []
    assert time.perf_counter() - started >= 0.0004
    b.send(b"x")
    assert events_of(wait, None) == {a.fileno(): READ}
    wait.unregister(a.fileno())


def test_a_wait_with_nothing_registered_waits_out_its_timeout(wait: Wait) -> None:
    """No fd registered: the wait returns nothing after the timeout, it does not fail."""
    started = time.perf_counter()
    assert wait.wait(0.002) == []
    assert time.perf_counter() - started >= 0.002


def test_fileno_is_readable_when_a_wait_would_report(wait: Wait, pairs: Pairs) -> None:
    """A host loop can sleep on fileno(); a wait without one says so with a RuntimeError."""
    if isinstance(wait, SelectorWait) and not hasattr(wait.selector, "fileno"):
        with pytest.raises(RuntimeError, match="has no pollable fd"):
            wait.fileno()
        return
    a, b = pairs()
    wait.register(a.fileno(), READ)
    fd = wait.fileno()
    assert select.select([fd], [], [], 0)[0] == []
    b.send(b"x")
    assert select.select([fd], [], [], 0)[0] == [fd]
    wait.unregister(a.fileno())
    assert select.select([fd], [], [], 0)[0] == []


def test_close_is_idempotent_and_forgets_every_registration(wait: Wait, pairs: Pairs) -> None:
    """close() twice is fine, and nothing is registered afterwards."""
    a, _ = pairs()
    wait.register(a.fileno(), READ)
    wait.close()
    wait.close()
    assert len(wait) == 0


def test_statistics_count_fds_and_waits(wait: Wait, pairs: Pairs) -> None:
    """statistics() counts the registered fds and the waits done."""
    a, _ = pairs()
    wait.register(a.fileno(), WRITE)
    wait.wait(0)
    wait.wait(0)
    stats = wait.statistics()
    assert stats["fds"] == 1
    waits = stats.get("waits", stats.get("poll_waits", 0) + stats.get("epoll_waits", 0))
    assert waits == 2
    wait.unregister(a.fileno())


def test_more_fds_than_fd_setsize(wait: Wait) -> None:
    """Every one of 1,100 registered fds (past select()'s 1,024) is reported ready."""
    if isinstance(wait, SelectorWait) and isinstance(wait.selector, selectors.SelectSelector):
        pytest.skip("select() stops at FD_SETSIZE")
    count = 1100
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * count + 64
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip(f"needs {need} descriptors, RLIMIT_NOFILE allows {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    made: list[socket.socket] = []
    try:
        for _ in range(count):
            a, b = socket.socketpair()
            made.extend((a, b))
            wait.register(a.fileno(), WRITE)
        assert len(wait) == count
        for _ in range(6):  # the adaptive wait moves to poll on the way
            assert set(events_of(wait)) == {s.fileno() for s in made[::2]}
        for s in made[::2]:
            wait.unregister(s.fileno())
    finally:
        for s in made:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize("raises", [False, True], ids=["handler-returns", "handler-raises"])
def test_a_signal_during_a_wait(wait: Wait, raises: bool) -> None:
    """A signal whose handler returns does not end the wait early; one whose handler raises ends it with that error."""

    class Interrupted(Exception):
        pass

    def handler(signum: int, frame: object) -> None:
        if raises:
            raise Interrupted

    previous = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.005)
        started = time.perf_counter()
        if raises:
            with pytest.raises(Interrupted):
                wait.wait(2.0)
            assert time.perf_counter() - started < 1.0
        else:
            assert wait.wait(0.03) == []
            assert time.perf_counter() - started >= 0.03
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_the_default_wait() -> None:
    """On Linux the default is `EpollWait`; elsewhere a `SelectorWait` over `selectors.DefaultSelector`."""
    wait = default_wait()
    try:
        if HAS_EPOLL:
            assert isinstance(wait, EpollWait)
        else:
            assert isinstance(wait, SelectorWait) and type(wait.selector) is selectors.DefaultSelector
    finally:
        wait.close()


# ---------------------------------------------------------------- the switch


def moving_shares(switch: PollSwitch, shares: list[float], registrations: dict[int, int]) -> list[str]:
    """The call the switch chooses before each wait, after observing each share in turn."""
    chosen = []
    for share in shares:
        chosen.append("epoll" if switch.choose(registrations) is None else "poll")
        switch.observe(share)
    return chosen


def test_the_switch_moves_to_poll_above_its_share_and_back_below_with_hysteresis() -> None:
    """All ready: poll from the fifth wait (the average passes 0.6); none ready: epoll again once it is under 0.4."""
    if not HAS_EPOLL:
        pytest.skip("no poll here")
    switch = PollSwitch()
    registrations = {0: READ, 1: WRITE}
    # 1 - 0.75**k: 0.25, 0.44, 0.58, 0.68 after k all-ready waits.
    assert moving_shares(switch, [1.0] * 6, registrations) == ["epoll"] * 4 + ["poll"] * 2
    assert switch.share == pytest.approx(1 - 0.75**6)
    # 0.82 * 0.75**k: 0.62, 0.46, 0.35: the third quiet wait is the last on poll.
    assert moving_shares(switch, [0.0] * 5, registrations) == ["poll"] * 3 + ["epoll"] * 2
    # Between the two thresholds nothing changes, in either direction.
    switch.share = 0.55
    assert moving_shares(switch, [0.55] * 3, registrations) == ["epoll"] * 3
    switch.share = 0.65
    assert moving_shares(switch, [0.45] * 3, registrations) == ["poll"] * 3
    assert switch.share == pytest.approx(0.45 + 0.2 * 0.75**3)


def test_the_switch_keeps_epoll_past_poll_max() -> None:
    """More fds registered than POLL_MAX: epoll whatever the share, and a poll set is dropped."""
    if not HAS_EPOLL:
        pytest.skip("no poll here")
    switch = PollSwitch()
    switch.POLL_MAX = 2
    switch.share = 1.0
    assert switch.choose({0: READ, 1: READ, 2: READ}) is None
    assert switch.choose({0: READ, 1: READ}) is not None
    assert switch.choose({0: READ, 1: READ, 2: READ}) is None and switch.poll is None


def test_the_poll_set_is_built_at_the_switch_and_kept_in_step(pairs: Pairs) -> None:
    """No poll set while epoll waits; at the switch it holds every registration, then follows each change."""
    if not HAS_EPOLL:
        pytest.skip("no epoll here")
    wait = EpollWait()
    switch = wait.switch
    switch.POLL_SHARE = float("inf")
    a, b = pairs()
    c, d = pairs()
    try:
        b.send(b"x")
        wait.register(a.fileno(), READ)
        wait.register(c.fileno(), WRITE)
        assert events_of(wait) == {a.fileno(): READ, c.fileno(): WRITE}
        assert switch.poll is None and (wait.poll_waits, wait.epoll_waits) == (0, 1)
        switch.POLL_SHARE = -1.0
        assert events_of(wait) == {a.fileno(): READ, c.fileno(): WRITE}
        assert switch.poll is not None and wait.poll_waits == 1
        wait.modify(a.fileno(), WRITE)  # unread data, but only writing is asked now
        assert events_of(wait) == {a.fileno(): WRITE, c.fileno(): WRITE}
        wait.unregister(c.fileno())
        wait.register(d.fileno(), READ)  # nothing to read
        assert events_of(wait) == {a.fileno(): WRITE}
        c.send(b"y")
        assert events_of(wait) == {a.fileno(): WRITE, d.fileno(): READ}
        wait.unregister(a.fileno())
        wait.unregister(d.fileno())
        assert wait.wait(0) == []
        assert (wait.poll_waits, wait.epoll_waits) == (5, 1)
    finally:
        wait.close()
    assert switch.poll is None and switch.share == 0.0


def test_an_fd_closed_while_registered_is_reported_invalid_once_forgotten(
    pairs: Pairs,
) -> None:
    """poll says POLLNVAL for a closed registered fd; after forget_closed it is not watched, through a rebuild too."""
    if not HAS_EPOLL:
        pytest.skip("no epoll here")
    wait = EpollWait()
    switch = wait.switch
    switch.POLL_SHARE = -1.0
    a, _ = pairs()
    fd = a.fileno()
    wait.register(fd, READ)
    a.close()  # behind the wait's back
    try:
        [(reported, bits)] = wait.wait(0)
        assert reported == fd and bits & wait.INVALID and bits == select.POLLNVAL
        assert wait.wait(0) == [(fd, select.POLLNVAL)]  # until it is told
        wait.forget_closed(fd)
        assert wait.wait(0) == []
        assert fd in wait.registrations() and len(wait) == 1  # still the caller's to unregister
        switch.POLL_SHARE = float("inf")
        assert wait.wait(0) == []  # epoll forgot it at the close
        switch.POLL_SHARE = -1.0
        assert wait.wait(0) == []  # a new poll set leaves it out
        wait.unregister(fd)
        assert switch.closed == set()
        c, d = pairs()  # the number, reused and registered properly, is watched again
        if c.fileno() != fd:
            os.dup2(c.fileno(), fd)
            c.close()
            c = socket.socket(fileno=fd)
        wait.register(fd, READ)
        d.send(b"x")
        assert wait.wait(0) == [(fd, select.POLLIN)]
        wait.unregister(fd)
        c.close()
    finally:
        wait.close()


def test_forget_closed_of_an_unknown_fd_changes_nothing() -> None:
    """forget_closed of an fd that is not registered is a no-op, not a leak in the closed set."""
    if not HAS_EPOLL:
        pytest.skip("no epoll here")
    wait = EpollWait()
    wait.forget_closed(12345)
    assert wait.switch.closed == set()
    wait.close()


# ------------------------------------------------------- private names


def selector_privates() -> set[str]:
    """The private names of the standard library's selectors, of their classes and of their instances."""
    names: set[str] = set()
    for name in ("SelectSelector", "PollSelector", "EpollSelector"):
        cls = getattr(selectors, name, None)
        if cls is not None:
            with cls() as instance:
                names.update(n for n in {*dir(cls), *vars(instance)} if n.startswith("_") and not n.startswith("__"))
    return names


def test_no_private_name_of_the_standard_library_in_the_core_or_the_wait() -> None:
    """core.py and _wait.py read none of `selectors`' private attributes (``_fd_to_key``, ``_selector``, ...)."""
    privates = selector_privates()
    assert {"_fd_to_key", "_fileobj_lookup"} <= privates
    package = Path(__file__).resolve().parent.parent / "reactor"
    found = []
    for name in ("core.py", "_wait.py"):
        for node in ast.walk(ast.parse((package / name).read_text())):
            if isinstance(node, ast.Attribute) and node.attr in privates:
                found.append(f"{name}:{node.lineno} .{node.attr}")
    assert found == []
