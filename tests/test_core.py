"""The reactor core: I/O callbacks, timers, running, errors, closing.

Every test here runs with thread creation patched to raise (the core never
starts a thread), on a manual clock, with socketpairs for I/O.
"""

from __future__ import annotations

import gc
import logging
import os
import select
import selectors
import socket
import threading
from collections.abc import Iterator

import pytest
from conftest import check_and_close, open_fd_count, open_fds

from reactor import Handle, ManualClock, Reactor, TimerHandle
from reactor._wait import EpollWait, SelectorWait


@pytest.fixture(autouse=True)
def _forbid_threads(no_threads: None) -> None:
    """The core must work where no thread may be started."""


#: The default wait's system calls: as its switch chooses, always poll(2), always epoll.
DEFAULT_WAITS = {"default-wait": None, "poll-wait": -1.0, "epoll-wait": float("inf")}


@pytest.fixture(params=[*DEFAULT_WAITS, "select-wait"])
def reactor(request: pytest.FixtureRequest, clock: ManualClock) -> Iterator[Reactor]:
    """Each test runs on every wait: the default one (adaptive, poll, epoll), and a selector's ``select()``.

    The default wait hands the turn raw ``(fd, bits)`` pairs from poll(2)
    or epoll as its switch judges (``POLL_SHARE`` forces one); a selector
    passed to `Reactor` is used through ``select()``.  Checked for leaks
    like conftest's `reactor`.
    """
    fds_before = open_fd_count()
    fd_map_before = open_fds() if fds_before is not None else None
    if request.param in DEFAULT_WAITS:
        r = Reactor(clock=clock)
        share = DEFAULT_WAITS[request.param]
        if share is not None:
            if not isinstance(r._wait, EpollWait):
                r.close()
                pytest.skip("no epoll here: the default wait is a selector's select()")
            r._wait.switch.POLL_SHARE = share
    else:
        r = Reactor(clock=clock, selector=selectors.DefaultSelector())
        assert isinstance(r._wait, SelectorWait)
    yield r
    check_and_close(r, fds_before, fd_map_before)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def test_no_threads_fixture_is_active() -> None:
    """The autouse fixture really forbids threads in this module."""
    with pytest.raises(AssertionError):
        threading.Thread(target=lambda: None).start()


# ---------------------------------------------------------------- I/O


def test_add_reader_calls_back_with_args(reactor: Reactor, pair: tuple[socket.socket, socket.socket]) -> None:
    """A readable fd runs its reader with the given args."""
    a, b = pair
    got: list[object] = []
    reactor.add_reader(a, lambda tag: got.append((tag, a.recv(10))), "x")
    b.send(b"hi")
    assert reactor.run_once(0) == 1
    assert got == [("x", b"hi")]
    assert reactor.remove_reader(a) is True


def test_fd_may_be_int_or_fileno_object(reactor: Reactor, pair: tuple[socket.socket, socket.socket]) -> None:
    """add_reader takes an int fd or an object with fileno(); both name the same registration."""
    a, b = pair
    reactor.add_reader(a.fileno(), lambda: None)
    assert reactor.remove_reader(a) is True
    assert reactor.remove_reader(a.fileno()) is False


def test_bad_fd_raises(reactor: Reactor) -> None:
    """An object without fileno(), or a closed socket, is a clear ValueError."""
    with pytest.raises(ValueError, match="fileno"):
        reactor.add_reader(object(), lambda: None)  # type: ignore[arg-type]
    s = socket.socket()
    s.close()
    with pytest.raises(ValueError, match="closed"):
        reactor.add_reader(s, lambda: None)


def test_reregistering_replaces_callback(reactor: Reactor, pair: tuple[socket.socket, socket.socket]) -> None:
    """A second add_reader on an fd replaces the first callback."""
    a, b = pair
    got: list[str] = []
    reactor.add_reader(a, got.append, "first")
    reactor.add_reader(a, got.append, "second")
    b.send(b"x")
    reactor.run_once(0)
    assert got == ["second"]
    reactor.remove_reader(a)


class CountingSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """A selector that counts register/unregister/modify calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def register(self, fileobj, events, data=None):  # type: ignore[no-untyped-def]
        self.calls.append("register")
        return super().register(fileobj, events, data)

    def unregister(self, fileobj):  # type: ignore[no-untyped-def]
        self.calls.append("unregister")
        return super().unregister(fileobj)

    def modify(self, fileobj, events, data=None):  # type: ignore[no-untyped-def]
        self.calls.append("modify")
        return super().modify(fileobj, events, data)


def test_reader_and_writer_share_one_registration(pair: tuple[socket.socket, socket.socket]) -> None:
    """Reader and writer on one fd modify one registration; replacing a callback does not touch it."""
    sel = CountingSelector()
    r = Reactor(selector=sel, clock=ManualClock())
    a, b = pair
    sel.calls.clear()
    got: list[str] = []
    r.add_reader(a, got.append, "r0")
    r.add_reader(a, got.append, "r")  # a replaced callback: the selector is not told
    r.add_writer(a, got.append, "w")
    b.send(b"x")
    r.run_once(0)
    assert sorted(got) == ["r", "w"]
    assert r.remove_writer(a) is True
    assert r.remove_writer(a) is False
    assert r.remove_reader(a) is True
    assert sel.calls == ["register", "modify", "modify", "unregister"]
    r.close()


def test_writer_removed_by_reader_in_same_turn_does_not_run(
    reactor: Reactor, pair: tuple[socket.socket, socket.socket]
) -> None:
    """When the reader removes the writer, the stale writer callback is not called."""
    a, b = pair
    got: list[str] = []

    def on_read() -> None:
        got.append("r")
        reactor.remove_writer(a)

    reactor.add_reader(a, on_read)
    reactor.add_writer(a, got.append, "w")
    b.send(b"x")
    reactor.run_once(0)
    assert got == ["r"]
    reactor.remove_reader(a)


def test_a_writer_added_during_a_turn_does_not_get_an_event_collected_before(reactor: Reactor) -> None:
    """A hang-up wakes reader and writer; a writer that another callback adds in the same turn is not called for it."""
    a1, a2 = socket.socketpair()
    b1, b2 = socket.socketpair()
    a2.close()  # both peers gone: each event carries the hang-up, which wakes a writer too
    b2.close()
    got: list[str] = []

    def on_read(name: str, other: socket.socket, other_name: str) -> None:
        got.append(f"read {name}")
        reactor.add_writer(other, got.append, f"write {other_name}")

    reactor.add_reader(a1, on_read, "a", b1, "b")
    reactor.add_reader(b1, on_read, "b", a1, "a")
    assert reactor.run_once(0) == 2
    assert sorted(got) == ["read a", "read b"]  # the writer added first was not called for its fd's hang-up
    for s in (a1, b1):
        reactor.remove_reader(s)
        reactor.remove_writer(s)
        s.close()


def test_event_for_removed_reader_is_not_delivered(reactor: Reactor) -> None:
    """A reader removed by another callback in the same turn is not called with the stale event."""
    a1, a2 = socket.socketpair()
    b1, b2 = socket.socketpair()
    got: list[str] = []

    def on_a() -> None:
        got.append("a")
        reactor.remove_reader(b1)  # b's event may already be collected for this turn
        reactor.remove_reader(a1)

    def on_b() -> None:
        got.append("b")
        reactor.remove_reader(b1)
        reactor.remove_reader(a1)

    reactor.add_reader(a1, on_a)
    reactor.add_reader(b1, on_b)
    a2.send(b"x")
    b2.send(b"x")
    reactor.run_once(0)
    assert got in (["a"], ["b"])  # whichever ran first removed the other
    for s in (a1, a2, b1, b2):
        s.close()


def test_event_for_a_closed_fd_is_not_delivered_to_its_reuser(reactor: Reactor) -> None:
    """A callback closes another fd whose event is collected, and a new socket takes that fd number: no stale call.

    The turn looks each event's callbacks up when it reaches it; the first
    change of an fd in a turn keeps the callbacks it had when the wait ended.
    """
    a1, a2 = socket.socketpair()
    b1, b2 = socket.socketpair()
    got: list[str] = []
    fresh: list[socket.socket] = []

    def take_over(other: socket.socket) -> None:
        fd = other.fileno()
        reactor.remove_reader(other)
        n1, n2 = socket.socketpair()
        os.dup2(n1.fileno(), fd)  # the new socket takes the number of the one it replaces
        n1.close()
        other.detach()
        new = socket.socket(fileno=fd)
        fresh.extend([new, n2])
        reactor.add_reader(new, got.append, "new")  # nothing to read: only a stale event could call it

    def on_a() -> None:
        got.append("a")
        a1.recv(10)
        if not fresh:
            take_over(b1)

    def on_b() -> None:
        got.append("b")
        b1.recv(10)
        if not fresh:
            take_over(a1)

    reactor.add_reader(a1, on_a)
    reactor.add_reader(b1, on_b)
    a2.send(b"x")
    b2.send(b"x")
    reactor.run_once(0)
    assert got in (["a"], ["b"])  # whichever ran first replaced the other
    new, peer = fresh
    peer.send(b"y")
    reactor.run_once(0)
    for sock in (a1, a2, b1, b2, new, peer):
        if sock.fileno() >= 0:
            reactor.remove_reader(sock)
            sock.close()
    assert got[1:] == ["new"]  # the new registration works


def test_a_registration_the_wait_drops_on_a_failed_modify_is_forgotten(reactor: Reactor) -> None:
    """An fd closed behind the reactor's back: adding a writer fails, and the reader's registration is gone too.

    The standard library's selectors unregister an fd whose modify failed;
    the reactor's own record of the callbacks follows, so nothing stale is
    kept or delivered.
    """
    a, b = socket.socketpair()
    fd = a.fileno()
    got: list[str] = []
    reactor.add_reader(fd, got.append, "r")
    a.close()  # behind the reactor's back
    with pytest.raises(OSError):
        reactor.add_writer(fd, got.append, "w")
    assert fd not in reactor._io and fd not in reactor._wait.registrations()
    assert reactor.remove_reader(fd) is False
    c, d = socket.socketpair()
    reactor.add_reader(c, got.append, "c")
    d.send(b"x")
    reactor.run_once(0)
    assert got == ["c"]
    reactor.remove_reader(c)
    for sock in (b, c, d):
        sock.close()


def through_an_epoll_wait(reactor: Reactor) -> None:
    """One turn that waits with epoll, so the next poll wait builds its set again from the registrations."""
    wait = reactor._wait
    assert isinstance(wait, EpollWait)
    share = wait.switch.POLL_SHARE
    wait.switch.POLL_SHARE = float("inf")
    reactor.run_once(0)
    assert wait.switch.poll is None
    wait.switch.POLL_SHARE = share


def test_an_fd_closed_while_registered_is_dropped_and_named(
    reactor: Reactor, caplog: pytest.LogCaptureFixture
) -> None:
    """Closing a registered fd is the caller's error; the turn neither calls its callback nor spins.

    epoll forgets such an fd silently; a poll(2) wait reports it invalid,
    and the turn stops watching it and logs a warning naming it.
    """
    a, b = socket.socketpair()
    got: list[str] = []
    reactor.add_reader(a, got.append, "stale")
    fd = a.fileno()
    a.close()  # behind the reactor's back, still registered
    for _ in range(3):
        assert reactor.run_once(0) == 0
    assert got == []
    wait = reactor._wait
    if isinstance(wait, EpollWait) and wait.poll_waits:
        through_an_epoll_wait(reactor)  # the poll set is built again: the fd is still not watched
        for _ in range(3):
            assert reactor.run_once(0) == 0
        warned = [r for r in caplog.records if r.name == "reactor" and f"fd {fd} was closed" in r.getMessage()]
        assert len(warned) == 1 and "remove its reader and writer" in warned[0].getMessage()
    assert reactor.remove_reader(fd) is True  # the registration is the caller's to remove, as with epoll
    # A new socket on the same number, registered properly, is watched again.
    reused, d = socket.socketpair()
    if reused.fileno() != fd:
        os.dup2(reused.fileno(), fd)
        reused.close()
        reused = socket.socket(fileno=fd)
    reactor.add_reader(reused, got.append, "reused")
    if isinstance(wait, EpollWait) and wait.poll_waits:
        through_an_epoll_wait(reactor)  # the number is no longer skipped when the set is built again
    d.send(b"x")
    reactor.run_once(0)
    assert got == ["reused"]
    reactor.remove_reader(reused)
    for sock in (b, d, reused):
        sock.close()


def test_busy_waits_use_poll_and_quiet_ones_epoll() -> None:
    """The default wait uses poll(2) once recent waits found most fds ready, epoll otherwise."""
    r = Reactor(clock=ManualClock())
    selector = r._wait
    if not isinstance(selector, EpollWait):
        r.close()
        pytest.skip("no epoll here")
    pairs = [socket.socketpair() for _ in range(8)]
    got: list[int] = []

    def busy_wait() -> str:
        for _, b in pairs:
            b.send(b"x")
        return one_wait()

    def one_wait() -> str:
        before = selector.poll_waits
        r.run_once(0)
        return "poll" if selector.poll_waits > before else "epoll"

    try:
        for i, (a, _) in enumerate(pairs):
            r.add_reader(a, lambda a=a, i=i: got.append(i) or a.recv(10))
        # 8 of the 9 registered (with the wakeup socket) ready at every wait:
        # the moving share (weight 1/4) passes 0.6 after four waits.
        assert selector.switch.poll is None  # no poll set while epoll waits
        assert [busy_wait() for _ in range(6)] == ["epoll"] * 4 + ["poll"] * 2
        assert len(got) == 48  # the poll set was built with every registration
        # Nothing ready: the share falls below 0.4 after three quiet waits.
        assert [one_wait() for _ in range(5)] == ["poll"] * 3 + ["epoll"] * 2
        assert selector.switch.poll is None
        # Busy again, but more fds registered than POLL_MAX allows: epoll whatever the share.
        selector.switch.POLL_MAX = 4
        assert {busy_wait() for _ in range(8)} == {"epoll"}
        assert len(got) == 112
    finally:
        for a, b in pairs:
            r.remove_reader(a)
            a.close()
            b.close()
        r.close()


def test_hang_up_alone_wakes_the_reader() -> None:
    """An event without IN (epoll says only hang-up for an unconnected TCP socket) still wakes a reader.

    As `selectors` maps epoll's bits: anything but OUT wakes the reader,
    anything but IN the writer.  Both turns agree.
    """
    for r in (Reactor(), Reactor(selector=selectors.DefaultSelector())):
        s = socket.socket()
        got: list[str] = []
        r.add_reader(s, got.append, "r")
        r.run_once(0)
        assert got == ["r"]
        r.remove_reader(s)
        s.close()
        r.close()


class SelectSpy(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """A selector that records the timeout of each ``select()``."""

    def __init__(self) -> None:
        super().__init__()
        self.timeouts: list[float | None] = []

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        self.timeouts.append(timeout)
        return super().select(timeout)  # type: ignore[no-any-return]


@pytest.mark.skipif(not hasattr(select, "epoll"), reason="needs epoll")
def test_the_default_wait_is_epoll_and_a_given_selector_is_used_through_select() -> None:
    """On Linux the reactor waits on an epoll of its own; a selector passed to it is used through ``select()``."""
    with Reactor(clock=ManualClock()) as r:
        assert isinstance(r._wait, EpollWait) and r.fileno() == r._wait.fileno()
    spy = SelectSpy()
    with Reactor(clock=ManualClock(), selector=spy) as r:
        assert r.fileno() == spy.fileno()
        a, b = socket.socketpair()
        got: list[bytes] = []
        r.add_reader(a, lambda: got.append(a.recv(10)))
        b.send(b"hi")
        assert r.run_once(0) == 1 and got == [b"hi"]
        assert spy.timeouts == [0.0]
        r.remove_reader(a)
        a.close()
        b.close()
    assert spy.get_map() is None  # closed with the reactor


def test_replaced_reader_is_not_called_for_an_event_collected_before(reactor: Reactor) -> None:
    """Re-registering an fd mid-turn: the old callback is skipped; the new one runs next turn."""
    a1, a2 = socket.socketpair()
    b1, b2 = socket.socketpair()
    got: list[str] = []

    def first() -> None:
        got.append("first")
        reactor.add_reader(b1, got.append, "new b")
        reactor.add_reader(a1, got.append, "new a")

    reactor.add_reader(a1, first)
    reactor.add_reader(b1, first)
    a2.send(b"x")
    b2.send(b"x")
    reactor.run_once(0)
    assert got == ["first"]
    reactor.run_once(0)
    assert sorted(got[1:]) == ["new a", "new b"]
    reactor.remove_reader(a1)
    reactor.remove_reader(b1)
    for s in (a1, a2, b1, b2):
        s.close()


def test_remove_unknown_fd_returns_false(reactor: Reactor) -> None:
    """Removing what was never registered is False, not an error."""
    assert reactor.remove_reader(12345) is False
    assert reactor.remove_writer(12345) is False


def test_writer_runs_when_writable(reactor: Reactor, pair: tuple[socket.socket, socket.socket]) -> None:
    """A fresh socket is writable: its writer runs once per turn until removed."""
    a, _ = pair
    got: list[int] = []
    reactor.add_writer(a, lambda: got.append(1))
    reactor.run_once(0)
    reactor.run_once(0)
    assert got == [1, 1]
    reactor.remove_writer(a)
    reactor.run_once(0)
    assert got == [1, 1]


def test_wakeup_fd_is_protected(reactor: Reactor) -> None:
    """The reactor's own wakeup socket cannot be hijacked."""
    with pytest.raises(ValueError):
        reactor.add_reader(reactor._wake_fd, lambda: None)


# ---------------------------------------------------------------- time


def test_time_uses_injected_clock(clock: ManualClock) -> None:
    """time() is the injected clock."""
    r = Reactor(clock=clock)
    assert r.time() == clock.now
    clock.advance(2.5)
    assert r.time() == clock.now
    r.close()


def test_default_clock_is_monotonic() -> None:
    """Without a clock the reactor uses a monotonic, non-decreasing time."""
    with Reactor() as r:
        t1 = r.time()
        assert r.time() >= t1


def test_manual_clock_cannot_go_back() -> None:
    """A monotonic clock refuses negative steps."""
    with pytest.raises(ValueError):
        ManualClock().advance(-1)


def test_call_soon_runs_in_next_turn_in_order(reactor: Reactor) -> None:
    """call_soon callbacks run FIFO in the next turn."""
    got: list[int] = []
    for i in range(5):
        reactor.call_soon(got.append, i)
    assert got == []
    assert reactor.run_once(0) == 5
    assert got == [0, 1, 2, 3, 4]


def test_callbacks_added_during_turn_wait_for_next_turn(reactor: Reactor) -> None:
    """Only callbacks queued before the turn began run in it."""
    got: list[str] = []

    def first() -> None:
        got.append("first")
        reactor.call_soon(got.append, "second")

    reactor.call_soon(first)
    assert reactor.run_once(0) == 1
    assert got == ["first"]
    assert reactor.run_once(0) == 1
    assert got == ["first", "second"]


def test_handles_cancel(reactor: Reactor) -> None:
    """Every scheduling call returns a handle whose cancel() prevents the call."""
    got: list[str] = []
    handles: list[Handle] = [
        reactor.call_soon(got.append, "soon"),
        reactor.call_later(1, got.append, "later"),
        reactor.call_at(reactor.time() + 1, got.append, "at"),
        reactor.call_every(1, got.append, "every"),
    ]
    for h in handles:
        assert not h.cancelled()
        h.cancel()
        assert h.cancelled()
    reactor._clock.advance(5)  # type: ignore[attr-defined]
    assert reactor.run_once(0) == 0
    assert got == []


def test_call_later_fires_when_due_not_before(reactor: Reactor, clock: ManualClock) -> None:
    """A timer fires once its due time is reached, never earlier."""
    got: list[str] = []
    reactor.call_later(2.0, got.append, "t")
    clock.advance(1.999)
    reactor.run_once(0)
    assert got == []
    clock.advance(0.001)
    reactor.run_once(0)
    assert got == ["t"]


def test_timers_fire_in_due_order_ties_in_scheduling_order(reactor: Reactor, clock: ManualClock) -> None:
    """Due-time order, and FIFO among equal due times."""
    got: list[str] = []
    now = reactor.time()
    reactor.call_at(now + 3, got.append, "c")
    reactor.call_at(now + 1, got.append, "a1")
    reactor.call_at(now + 2, got.append, "b")
    reactor.call_at(now + 1, got.append, "a2")
    reactor.call_later(1, got.append, "a3")
    clock.advance(10)
    assert reactor.run_once(0) == 5
    assert got == ["a1", "a2", "a3", "b", "c"]


def test_call_every_keeps_cadence_without_drift(reactor: Reactor, clock: ManualClock) -> None:
    """call_every fires at start + k*interval even when turns run late."""
    fired: list[float] = []
    handle = reactor.call_every(1.0, lambda: fired.append(reactor.time()))
    assert isinstance(handle, TimerHandle)
    start = reactor.time()
    for late in (1.25, 1.0, 0.75):  # each turn happens a bit off the beat
        clock.advance(late)
        reactor.run_once(0)
    # beats are at +1, +2, +3: fired at 1.25, 2.25, 3.0
    assert [t - start for t in fired] == [1.25, 2.25, 3.0]
    assert handle.when == start + 4.0
    handle.cancel()


def test_call_every_skips_missed_beats(reactor: Reactor, clock: ManualClock) -> None:
    """A loop that falls 5 beats behind fires once, then resumes on the grid."""
    fired: list[float] = []
    handle = reactor.call_every(1.0, lambda: fired.append(reactor.time()))
    start = reactor.time()
    clock.advance(5.5)
    assert reactor.run_once(0) == 1
    assert len(fired) == 1
    assert handle.when == start + 6.0
    clock.advance(0.5)
    reactor.run_once(0)
    assert len(fired) == 2
    handle.cancel()


def test_call_every_cancel_from_inside(reactor: Reactor, clock: ManualClock) -> None:
    """A periodic callback can cancel its own handle."""
    count = 0

    def tick() -> None:
        nonlocal count
        count += 1
        if count == 3:
            handle.cancel()

    handle = reactor.call_every(1, tick)
    for _ in range(6):
        clock.advance(1)
        reactor.run_once(0)
    assert count == 3
    assert reactor.timeout() is None


def test_call_every_rejects_bad_interval(reactor: Reactor) -> None:
    """A zero or negative interval is a ValueError."""
    with pytest.raises(ValueError):
        reactor.call_every(0, lambda: None)
    with pytest.raises(ValueError):
        reactor.call_every(-1, lambda: None)


def test_cancelled_timers_are_compacted(reactor: Reactor) -> None:
    """Scheduling and cancelling 200,000 timers keeps the heap small."""
    peak = 0
    keep = reactor.call_later(1e6, lambda: None)
    for i in range(200_000):
        reactor.call_later(10 + i, lambda: None).cancel()
        peak = max(peak, len(reactor._timers))
    assert peak < 1000
    assert not keep.cancelled()
    assert any(entry[2] is keep for entry in reactor._timers)
    keep.cancel()


def test_a_timer_that_compacts_the_heap_runs_every_due_timer_once(reactor: Reactor, clock: ManualClock) -> None:
    """A due timer cancels enough others to compact the heap mid-turn: the rest of the due timers run once each."""
    got: list[object] = []
    later = [reactor.call_later(100, got.append, "cancelled") for _ in range(300)]

    def cancel_most() -> None:
        got.append("first")
        for timer in later[:250]:
            timer.cancel()

    reactor.call_later(1, cancel_most)
    for i in range(5):
        reactor.call_later(1, got.append, i)
    clock.advance(1)
    assert reactor.run_once(0) == 6
    assert reactor.run_once(0) == 0
    assert got == ["first", 0, 1, 2, 3, 4]
    assert len(reactor._timers) - reactor._timer_cancelled_count == 50
    for timer in later:
        timer.cancel()


def test_cancel_is_lazy_and_counted(reactor: Reactor, clock: ManualClock) -> None:
    """A cancelled timer stays in the heap until popped or compacted, and is then skipped."""
    got: list[int] = []
    handles = [reactor.call_later(1, got.append, i) for i in range(10)]
    for h in handles[::2]:
        h.cancel()
    assert len(reactor._timers) == 10
    clock.advance(1)
    assert reactor.run_once(0) == 5
    assert got == [1, 3, 5, 7, 9]
    assert reactor._timers == []
    assert reactor._timer_cancelled_count == 0


# ---------------------------------------------------------------- running


def test_run_until_stop(reactor: Reactor, clock: ManualClock) -> None:
    """run() runs turns until a callback calls stop(), and can run again."""
    got: list[int] = []
    reactor.call_soon(got.append, 1)
    reactor.call_soon(reactor.stop)
    reactor.run()
    assert got == [1]
    assert not reactor.is_running()
    reactor.call_soon(reactor.stop)
    reactor.run()


def test_stop_before_run_does_one_turn(reactor: Reactor) -> None:
    """stop() while idle makes the next run() serve what is ready, once, and return."""
    got: list[int] = []
    reactor.call_soon(got.append, 1)
    reactor.stop()
    reactor.run()
    assert got == [1]
    reactor.call_soon(reactor.stop)
    reactor.run()


def test_run_is_not_reentrant(reactor: Reactor) -> None:
    """Calling run() or run_once() from a callback is an error, reported, not a crash."""
    errors: list[BaseException] = []
    reactor.set_exception_handler(lambda r, ctx: errors.append(ctx["exception"]))
    reactor.call_soon(reactor.run_once, 0)
    reactor.call_soon(reactor.run)
    reactor.call_soon(reactor.stop)
    reactor.run()
    assert len(errors) == 2 and all(isinstance(e, RuntimeError) for e in errors)


def test_run_once_returns_callback_count(
    reactor: Reactor, clock: ManualClock, pair: tuple[socket.socket, socket.socket]
) -> None:
    """run_once counts I/O callbacks, due timers and ready callbacks."""
    a, b = pair
    reactor.add_reader(a, lambda: a.recv(10))
    b.send(b"x")
    reactor.call_later(1, lambda: None)
    reactor.call_soon(lambda: None)
    clock.advance(1)
    assert reactor.run_once(0) == 3
    assert reactor.run_once(0) == 0
    reactor.remove_reader(a)


def test_run_once_waits_at_most_timeout_when_idle() -> None:
    """An idle run_once(timeout) returns 0 after waiting (real clock, tiny timeout)."""
    with Reactor() as r:
        t0 = r.time()
        assert r.run_once(0.01) == 0
        assert r.time() - t0 >= 0.009


def test_run_until_complete_returns_result(reactor: Reactor, clock: ManualClock) -> None:
    """run_until_complete runs until the future is done and returns its result."""
    fut = reactor.create_future()
    reactor.call_soon(reactor.call_soon, fut.set_result, 42)
    assert reactor.run_until_complete(fut) == 42


def test_run_until_complete_raises_future_exception(reactor: Reactor) -> None:
    """The future's exception propagates out of run_until_complete."""
    fut = reactor.create_future()
    reactor.call_soon(fut.set_exception, KeyError("k"))
    with pytest.raises(KeyError):
        reactor.run_until_complete(fut)


def test_run_until_complete_timeout() -> None:
    """TimeoutError when the timeout passes first; the future stays pending."""
    with Reactor() as r:
        fut = r.create_future()
        with pytest.raises(TimeoutError):
            r.run_until_complete(fut, timeout=0.02)
        assert not fut.done()


def test_run_until_complete_checks_its_argument(reactor: Reactor) -> None:
    """A non-future or another reactor's future is refused."""
    with pytest.raises(TypeError):
        reactor.run_until_complete(object())  # type: ignore[arg-type]
    with Reactor() as other:
        with pytest.raises(ValueError):
            reactor.run_until_complete(other.create_future())


# ---------------------------------------------------------------- errors


def test_failing_callback_is_logged_and_loop_goes_on(reactor: Reactor, caplog: pytest.LogCaptureFixture) -> None:
    """An exception in a callback is logged with traceback on 'reactor'; later callbacks still run."""
    got: list[int] = []

    def boom() -> None:
        raise ZeroDivisionError("boom")

    reactor.call_soon(boom)
    reactor.call_soon(got.append, 1)
    with caplog.at_level(logging.ERROR, logger="reactor"):
        assert reactor.run_once(0) == 2
    assert got == [1]
    [record] = [r for r in caplog.records if r.name == "reactor"]
    assert record.exc_info is not None and record.exc_info[0] is ZeroDivisionError
    assert "boom" in record.getMessage() or "boom" in caplog.text


def test_failing_io_and_timer_callbacks_are_reported(
    reactor: Reactor, clock: ManualClock, pair: tuple[socket.socket, socket.socket]
) -> None:
    """I/O and timer callbacks that raise are reported too."""
    a, b = pair
    seen: list[str] = []
    reactor.set_exception_handler(lambda r, ctx: seen.append(type(ctx["exception"]).__name__))

    def bad_reader() -> None:
        a.recv(10)
        raise ValueError

    reactor.add_reader(a, bad_reader)
    reactor.call_later(0, lambda: 1 / 0)
    b.send(b"x")
    clock.advance(0)
    reactor.run_once(0)
    assert seen == ["ValueError", "ZeroDivisionError"]
    reactor.remove_reader(a)


def test_set_exception_handler_none_restores_default(reactor: Reactor, caplog: pytest.LogCaptureFixture) -> None:
    """Passing None restores logging; a non-callable is refused."""
    reactor.set_exception_handler(lambda r, c: None)
    reactor.set_exception_handler(None)
    reactor.call_soon(lambda: 1 / 0)
    with caplog.at_level(logging.ERROR, logger="reactor"):
        reactor.run_once(0)
    assert "ZeroDivisionError" in caplog.text
    with pytest.raises(TypeError):
        reactor.set_exception_handler(42)  # type: ignore[arg-type]


def test_get_exception_handler_and_the_default_a_handler_can_defer_to(
    reactor: Reactor, caplog: pytest.LogCaptureFixture
) -> None:
    """get_exception_handler() returns what was set; a handler may pass what it does not handle to the default."""
    assert reactor.get_exception_handler() is None
    kept: list[BaseException] = []

    def handler(r: Reactor, context: dict[str, object]) -> None:
        exc = context["exception"]
        if isinstance(exc, KeyError):
            kept.append(exc)
        else:
            r.default_exception_handler(context)

    reactor.set_exception_handler(handler)
    assert reactor.get_exception_handler() is handler
    reactor.call_soon(lambda: {}["missing"])
    reactor.call_soon(lambda: 1 / 0)
    with caplog.at_level(logging.ERROR, logger="reactor"):
        reactor.run_once(0)
    assert [type(e) for e in kept] == [KeyError]
    assert "ZeroDivisionError" in caplog.text and "KeyError" not in caplog.text


def test_broken_exception_handler_falls_back_to_logging(reactor: Reactor, caplog: pytest.LogCaptureFixture) -> None:
    """If the handler itself raises, both errors are logged and the loop goes on."""

    def handler(r: Reactor, ctx: dict[str, object]) -> None:
        raise RuntimeError("handler broke")

    reactor.set_exception_handler(handler)
    reactor.call_soon(lambda: 1 / 0)
    with caplog.at_level(logging.ERROR, logger="reactor"):
        reactor.run_once(0)
    assert "handler broke" in caplog.text and "ZeroDivisionError" in caplog.text


def test_keyboard_interrupt_escapes(reactor: Reactor) -> None:
    """KeyboardInterrupt and SystemExit are not swallowed."""

    def interrupt() -> None:
        raise KeyboardInterrupt

    reactor.call_soon(interrupt)
    with pytest.raises(KeyboardInterrupt):
        reactor.run_once(0)
    reactor.call_soon(lambda: (_ for _ in ()).throw(SystemExit(3)))
    with pytest.raises(SystemExit):
        reactor.run_once(0)



def test_keyboard_interrupt_loses_no_callback_timer_or_reader(reactor: Reactor, clock: ManualClock) -> None:
    """What a turn took and did not run when KeyboardInterrupt left it runs in the next turn."""
    ran: list[str] = []

    def interrupt(name: str) -> None:
        ran.append(name)
        raise KeyboardInterrupt

    r, w = socket.socketpair()
    try:
        w.send(b"x")
        reactor.add_reader(r, interrupt, "reader")
        reactor.add_writer(r, ran.append, "writer")
        with pytest.raises(KeyboardInterrupt):
            reactor.run_once(0)
        reactor.remove_reader(r)
        reactor.run_once(0)
        assert ran == ["reader", "writer", "writer"]  # after its turn's, the next wait's event
        reactor.remove_writer(r)
    finally:
        r.close()
        w.close()
    ran.clear()
    reactor.call_at(clock() - 2, interrupt, "timer 1")
    reactor.call_at(clock() - 1, ran.append, "timer 2")
    with pytest.raises(KeyboardInterrupt):
        reactor.run_once(0)
    reactor.run_once(0)
    assert ran == ["timer 1", "timer 2"]
    ran.clear()
    reactor.call_soon(interrupt, "first")
    reactor.call_soon(ran.append, "second")
    with pytest.raises(KeyboardInterrupt):
        reactor.run_once(0)
    reactor.run_once(0)
    assert ran == ["first", "second"]

# ---------------------------------------------------------------- closing


def test_closed_reactor_raises_clear_error(clock: ManualClock) -> None:
    """Every use of a closed reactor raises RuntimeError saying it is closed."""
    r = Reactor(clock=clock)
    r.close()
    r.close()  # idempotent
    for call in (
        lambda: r.call_soon(lambda: None),
        lambda: r.call_later(1, lambda: None),
        lambda: r.call_at(1, lambda: None),
        lambda: r.call_every(1, lambda: None),
        lambda: r.call_soon_threadsafe(lambda: None),
        lambda: r.add_reader(0, lambda: None),
        lambda: r.run_once(0),
        lambda: r.run(),
        lambda: r.create_future(),
        lambda: r.fileno(),
    ):
        with pytest.raises(RuntimeError, match="closed"):
            call()
    assert r.remove_reader(0) is False


def test_context_manager_closes(clock: ManualClock) -> None:
    """`with Reactor() as r` closes r at the end."""
    with Reactor(clock=clock) as r:
        r.call_later(1, lambda: None)
    assert r.is_closed()


def test_cannot_close_while_running(reactor: Reactor) -> None:
    """close() from a callback of a running reactor is an error."""
    errors: list[BaseException] = []
    reactor.set_exception_handler(lambda r, ctx: errors.append(ctx["exception"]))
    reactor.call_soon(reactor.close)
    reactor.call_soon(reactor.stop)
    reactor.run()
    assert isinstance(errors[0], RuntimeError)


def test_unclosed_reactor_warns() -> None:
    """Dropping an open reactor emits ResourceWarning."""
    r = Reactor()
    with pytest.warns(ResourceWarning):
        del r
        gc.collect()


def test_connections_table_exists_and_is_empty(reactor: Reactor) -> None:
    """The connection table is a dict fd -> row, empty on a fresh reactor."""
    assert reactor.connections == {}
    assert isinstance(reactor.connections, dict)


def test_repr(reactor: Reactor) -> None:
    """repr shows state and counts."""
    assert "idle" in repr(reactor)
