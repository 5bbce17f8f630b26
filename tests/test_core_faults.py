"""Faults the core survives: a broken wakeup socketpair, and callbacks that block the loop.

No test sleeps.  "Does not spin" is shown by what ``select`` returned (a turn
that waited out its timeout returns no events); a blocking callback is
simulated by patching the watchdog's clock, ``reactor.core._perf_counter``.
"""

from __future__ import annotations

import errno
import functools
import logging
import selectors
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import check_and_close, open_fd_count, open_fds

from reactor import ManualClock, Reactor, core

WAKEUP = "wakeup socketpair"


class RecordingSelector(selectors.DefaultSelector):
    """A selector that records how many events each select() returned, and says when one begins."""

    def __init__(self) -> None:
        super().__init__()
        self.results: list[int] = []
        self.entered = threading.Event()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        self.entered.set()
        events: list[tuple[selectors.SelectorKey, int]] = super().select(timeout)
        self.results.append(len(events))
        return events


@pytest.fixture
def spied(clock: ManualClock) -> Iterator[tuple[Reactor, RecordingSelector]]:
    """A reactor on a recording selector, checked for leaked rows, registrations and fds like `reactor`."""
    fds_before = open_fd_count()
    fd_map_before = open_fds() if fds_before is not None else None
    selector = RecordingSelector()
    r = Reactor(clock=clock, selector=selector)
    yield r, selector
    check_and_close(r, fds_before, fd_map_before)


def wakeup_records(caplog: pytest.LogCaptureFixture, level: int = logging.WARNING) -> list[logging.LogRecord]:
    return [rec for rec in caplog.records if rec.name == "reactor" and rec.levelno == level and WAKEUP in rec.message]


def run_blocking_until(r: Reactor, predicate: Callable[[], bool], *, turns: int) -> None:
    """Run turns that wait without a timeout until ``predicate()`` holds; fail after ``turns`` turns."""
    for _ in range(turns):
        if predicate():
            return
        r.run_once(None)
    assert predicate(), f"condition not reached within {turns} blocking turns"


class FailingSend:
    """A wakeup write end whose send() fails as a broken pair's would; everything else is the real socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def send(self, data: bytes) -> int:
        raise OSError(errno.ENOBUFS, "No buffer space available")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


# ------------------------------------------------------- broken wakeup socket

BREAKS: dict[str, Callable[[Reactor], None]] = {
    "write end closed": lambda r: r._wake_w.close(),
    "write end shut down": lambda r: r._wake_w.shutdown(socket.SHUT_WR),
    "read end shut down": lambda r: r._wake_r.shutdown(socket.SHUT_RD),
    "both directions shut down": lambda r: r._wake_r.shutdown(socket.SHUT_RDWR),
}


@pytest.mark.parametrize("how", list(BREAKS))
def test_broken_wakeup_does_not_spin(
    spied: tuple[Reactor, RecordingSelector], how: str, caplog: pytest.LogCaptureFixture
) -> None:
    """After the pair breaks, the loop repairs it once and idle turns wait out their timeout again."""
    r, selector = spied
    old_fd = r._wake_fd
    with caplog.at_level(logging.INFO, logger="reactor"):
        BREAKS[how](r)
        for _ in range(5):
            r.run_once(0.01)
    # EOF wakes the first turn (repair), the byte written to the new pair the
    # second; the rest find nothing to do and wait.  Before the fix every
    # select returned the read end at EOF at once.
    assert selector.results == [1, 1, 0, 0, 0]
    [record] = wakeup_records(caplog)
    assert "recreated" in record.message
    assert r.statistics()["wakeup_repairs"] == 1
    assert r._wake_fd in selector.get_map() and (old_fd == r._wake_fd or old_fd not in selector.get_map())


@pytest.mark.parametrize("how", ["write end closed", "read end shut down"])
def test_call_soon_threadsafe_on_broken_pair_does_not_raise(
    spied: tuple[Reactor, RecordingSelector], how: str, caplog: pytest.LogCaptureFixture
) -> None:
    """call_soon_threadsafe and stop() on a broken pair queue and return; the callback still runs."""
    r, _ = spied
    got: list[int] = []
    BREAKS[how](r)
    with caplog.at_level(logging.WARNING, logger="reactor"):
        r.call_soon_threadsafe(got.append, 1)
        r.call_soon_threadsafe(got.append, 2)
        r.stop()  # not running: a no-op write-wise, but must not raise either
        r.run()
    assert got == [1, 2]
    assert len(wakeup_records(caplog)) == 1


def test_thread_wakes_blocked_reactor_after_repair(
    spied: tuple[Reactor, RecordingSelector], caplog: pytest.LogCaptureFixture
) -> None:
    """Once repaired, a call from another thread wakes a run_once(None) blocked in select."""
    r, selector = spied
    got: list[str] = []
    with caplog.at_level(logging.WARNING, logger="reactor"):
        r._wake_w.close()
        r.run_once(0)  # EOF: repaired here
        assert r.statistics()["wakeup_repairs"] == 1
        r.run_once(0)  # the byte written to the new pair
        selector.entered.clear()

        def other_thread() -> None:
            selector.entered.wait()
            r.call_soon_threadsafe(got.append, "woken")

        t = threading.Thread(target=other_thread)
        t.start()
        run_blocking_until(r, lambda: got == ["woken"], turns=3)
        t.join()
    assert len(wakeup_records(caplog)) == 1


def test_writer_thread_that_finds_pair_broken_wakes_blocked_reactor(
    spied: tuple[Reactor, RecordingSelector], caplog: pytest.LogCaptureFixture
) -> None:
    """A failing send from another thread shuts the write end: EOF wakes select(None), the loop repairs."""
    r, selector = spied
    got: list[str] = []
    r._wake_w = FailingSend(r._wake_w)  # type: ignore[assignment]
    selector.entered.clear()
    errors: list[BaseException] = []

    def other_thread() -> None:
        selector.entered.wait()
        try:
            r.call_soon_threadsafe(got.append, "queued")
        except BaseException as exc:  # the test's point: nothing escapes to the caller
            errors.append(exc)

    t = threading.Thread(target=other_thread)
    t.start()
    with caplog.at_level(logging.WARNING, logger="reactor"):
        run_blocking_until(r, lambda: got == ["queued"], turns=3)
    t.join()
    assert errors == []
    [record] = wakeup_records(caplog)
    assert "No buffer space" in record.message
    assert not isinstance(r._wake_w, FailingSend)


def test_stop_from_thread_on_broken_pair_stops_run(spied: tuple[Reactor, RecordingSelector]) -> None:
    """stop() from another thread, whose send fails, still makes a blocked run() return."""
    r, selector = spied
    r._wake_w = FailingSend(r._wake_w)  # type: ignore[assignment]
    selector.entered.clear()

    def other_thread() -> None:
        selector.entered.wait()
        r.stop()

    t = threading.Thread(target=other_thread)
    t.start()
    logging.getLogger("reactor").disabled = True
    try:
        r.run()
    finally:
        logging.getLogger("reactor").disabled = False
    t.join()
    assert r.statistics()["wakeup_repairs"] == 1


def test_read_end_closed_behind_our_back_is_repaired_next_turn(
    spied: tuple[Reactor, RecordingSelector], caplog: pytest.LogCaptureFixture
) -> None:
    """A closed read end cannot wake anyone; the send fails quietly and the next turn repairs."""
    r, selector = spied
    got: list[int] = []
    with caplog.at_level(logging.WARNING, logger="reactor"):
        r._wake_r.close()  # epoll forgets the fd; nothing will ever be readable
        r.call_soon_threadsafe(got.append, 1)
        r.run_once(0.01)
        assert got == [1]
        for _ in range(3):
            r.run_once(0.01)
    assert selector.results[-3:] == [0, 0, 0]
    assert len(wakeup_records(caplog)) == 1
    assert r.statistics()["wakeup_repairs"] == 1


def test_wakeup_that_cannot_be_recreated_is_retried_without_spinning(
    spied: tuple[Reactor, RecordingSelector], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Out of fds at repair time: one WARNING, the broken end is out of the selector, retried every turn."""
    r, selector = spied
    real_socketpair = socket.socketpair
    attempts: list[int] = []

    def no_fds(*args: Any, **kwargs: Any) -> tuple[socket.socket, socket.socket]:
        attempts.append(1)
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(socket, "socketpair", no_fds)
    got: list[int] = []
    with caplog.at_level(logging.INFO, logger="reactor"):
        r._wake_w.close()
        for _ in range(3):
            r.run_once(0.01)
        assert selector.results == [1, 0, 0]  # waited: nothing at EOF is registered any more
        assert len(attempts) == 3 and r.statistics()["fds"] == 0
        r.call_soon_threadsafe(got.append, 1)  # no pair at all: still queued, still no raise
        monkeypatch.setattr(socket, "socketpair", real_socketpair)
        r.run_once(0.01)
        assert got == [1]
    [warning] = wakeup_records(caplog)
    assert "cannot be recreated" in warning.message and "Too many open files" in warning.message
    assert len(wakeup_records(caplog, logging.INFO)) == 1
    assert r.statistics()["wakeup_repairs"] == 1


# ---------------------------------------------------------------- watchdog


class FakePerfCounter:
    """The watchdog's clock, moved by the callbacks that pretend to block."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def perf(monkeypatch: pytest.MonkeyPatch) -> FakePerfCounter:
    """Patch the watchdog's clock; a callback 'blocks' by advancing it."""
    fake = FakePerfCounter()
    monkeypatch.setattr(core, "_perf_counter", fake)
    return fake


def slow_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [rec for rec in caplog.records if rec.name == "reactor" and "blocked the loop" in rec.message]


class Base:
    def __init__(self, perf: FakePerfCounter, seconds: float) -> None:
        self.perf = perf
        self.seconds = seconds

    def on_event(self, *args: object) -> None:
        self.perf.now += self.seconds


class Handler(Base):
    pass


@pytest.mark.parametrize("kind", ["ready", "timer", "reader", "writer"])
def test_blocking_callback_is_logged_once_with_its_name_and_counted(
    reactor: Reactor, perf: FakePerfCounter, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    """Every kind of callback that blocks past the threshold is named (its class for a method) and counted."""
    blocker = Handler(perf, 0.25)
    a, b = socket.socketpair()
    try:
        if kind == "ready":
            reactor.call_soon(blocker.on_event)
        elif kind == "timer":
            reactor.call_later(0, blocker.on_event)
        elif kind == "reader":
            b.send(b"x")
            reactor.add_reader(a, blocker.on_event)
        else:
            reactor.add_writer(a, blocker.on_event)
        with caplog.at_level(logging.WARNING, logger="reactor"):
            assert reactor.run_once(0) == 1
        reactor.remove_reader(a)
        reactor.remove_writer(a)
    finally:
        a.close()
        b.close()
    [record] = slow_records(caplog)
    assert record.levelno == logging.WARNING
    assert f"{__name__}.Handler.on_event" in record.message
    assert "0.250 s" in record.message
    stats = reactor.statistics()
    assert stats["slow_callbacks"] == 1 and stats["slowest_callback"] == pytest.approx(0.25)


def test_blocking_callback_among_many_is_the_one_named(
    reactor: Reactor, perf: FakePerfCounter, caplog: pytest.LogCaptureFixture
) -> None:
    """In a busy turn the log names the callback that blocked, not its neighbours."""

    def quick() -> None:
        perf.now += 0.01

    def stuck() -> None:
        perf.now += 0.3

    for _ in range(20):
        reactor.call_soon(quick)  # 0.2 s together: a slow turn, but no slow callback
    reactor.call_soon(stuck)
    for _ in range(20):
        reactor.call_soon(quick)
    with caplog.at_level(logging.WARNING, logger="reactor"):
        assert reactor.run_once(0) == 41
    [record] = slow_records(caplog)
    assert f"{__name__}.test_blocking_callback_among_many_is_the_one_named.<locals>.stuck" in record.message
    assert reactor.statistics()["slow_callbacks"] == 1


def test_each_occurrence_is_logged_once(
    reactor: Reactor, perf: FakePerfCounter, caplog: pytest.LogCaptureFixture
) -> None:
    """A callback that blocks twice is logged and counted twice, once each time."""
    blocker = Handler(perf, 0.2)
    with caplog.at_level(logging.WARNING, logger="reactor"):
        reactor.call_soon(blocker.on_event)
        reactor.run_once(0)
        reactor.call_soon(blocker.on_event)
        reactor.run_once(0)
    assert len(slow_records(caplog)) == 2
    assert reactor.statistics()["slow_callbacks"] == 2


def test_fast_callback_is_not_reported(
    reactor: Reactor, perf: FakePerfCounter, caplog: pytest.LogCaptureFixture
) -> None:
    """Callbacks under the threshold (0.1 s by default) are neither logged nor counted."""
    assert reactor.slow_callback_duration == 0.1
    for seconds in (0.0, 0.05, 0.099):
        reactor.call_soon(Handler(perf, seconds).on_event)
    with caplog.at_level(logging.WARNING, logger="reactor"):
        assert reactor.run_once(0) == 3
    assert slow_records(caplog) == []
    assert reactor.statistics()["slow_callbacks"] == 0


def test_none_disables_the_watchdog(perf: FakePerfCounter, caplog: pytest.LogCaptureFixture) -> None:
    """slow_callback_duration=None (constructor or attribute) turns the report off."""
    with Reactor(clock=ManualClock(), slow_callback_duration=None) as r:
        assert r.slow_callback_duration is None
        r.call_soon(Handler(perf, 10.0).on_event)
        with caplog.at_level(logging.WARNING, logger="reactor"):
            r.run_once(0)
        assert slow_records(caplog) == [] and r.statistics()["slow_callbacks"] == 0
        r.slow_callback_duration = 0.5
        r.call_soon(Handler(perf, 0.25).on_event)
        r.call_soon(Handler(perf, 0.75).on_event)
        with caplog.at_level(logging.WARNING, logger="reactor"):
            r.run_once(0)
        assert len(slow_records(caplog)) == 1 and "0.750 s" in caplog.text
        r.slow_callback_duration = None
        r.call_soon(Handler(perf, 10.0).on_event)
        r.run_once(0)
        assert r.statistics()["slow_callbacks"] == 1


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), float("nan")])
def test_bad_threshold_is_refused(bad: float) -> None:
    """A threshold that is not a positive number of seconds is a ValueError at the call site."""
    with pytest.raises(ValueError, match="slow_callback_duration"):
        Reactor(slow_callback_duration=bad)
    with Reactor() as r:
        with pytest.raises(ValueError, match="slow_callback_duration"):
            r.slow_callback_duration = bad
        assert r.slow_callback_duration == 0.1


class CallableObject:
    def __call__(self) -> None:
        pass


class WithClassMethod:
    @classmethod
    def make(cls) -> None:
        pass


def plain_function() -> None:
    pass


@pytest.mark.parametrize(
    ("callback", "name"),
    [
        (plain_function, f"{__name__}.plain_function"),
        (Handler(FakePerfCounter(), 0).on_event, f"{__name__}.Handler.on_event"),
        (WithClassMethod.make, f"{__name__}.WithClassMethod.make"),
        (functools.partial(plain_function), f"{__name__}.plain_function"),
        (CallableObject(), f"{__name__}.CallableObject"),
        (print, "builtins.print"),
        ([].append, "builtins.list.append"),
    ],
)
def test_callback_names(callback: object, name: str) -> None:
    """The watchdog names callbacks as module.qualname; bound methods by their instance's class."""
    assert core._callback_name(callback) == name


# -------------------------------------------------------------- statistics


class Row:
    """A stand-in for a connection row: the core reads only ``state``."""

    def __init__(self, state: str) -> None:
        self.state = state


def test_statistics_reports_turns_callbacks_timers_fds_and_rows(reactor: Reactor, clock: ManualClock) -> None:
    """statistics() counts turns, callbacks run, live timers, registered fds (not the wakeup) and rows by state."""
    fresh = reactor.statistics()
    assert fresh == {
        "turns": 0,
        "callbacks": 0,
        "slow_callbacks": 0,
        "slowest_callback": 0.0,
        "timers": 0,
        "ready": 0,
        "fds": 0,
        "wakeup_repairs": 0,
        "connections": 0,
    }
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    try:
        reactor.add_reader(a, a.recv, 10)
        reactor.add_writer(a, lambda: None)  # same fd: still one registration
        reactor.add_reader(c, c.recv, 10)
        timers = [reactor.call_later(10 + i, lambda: None) for i in range(4)]
        timers[0].cancel()
        reactor.call_later(1, lambda: None)
        reactor.call_soon(lambda: None)
        reactor.call_soon(lambda: None)
        reactor.connections.update({100: Row("OPEN"), 101: Row("OPEN"), 102: Row("HANDLING"), 103: object()})
        stats = reactor.statistics()
        assert stats["timers"] == 4 and stats["ready"] == 2 and stats["fds"] == 2
        assert stats["connections"] == 4
        assert stats["connections_open"] == 2 and stats["connections_handling"] == 1
        assert stats["connections_unknown"] == 1
        b.send(b"x")
        clock.advance(1)
        assert reactor.run_once(0) == 5  # reader, writer, one timer, two ready callbacks
        reactor.remove_writer(a)
        reactor.run_once(0)  # nothing to do
        stats = reactor.statistics()
        assert stats["turns"] == 2 and stats["callbacks"] == 5
        assert stats["timers"] == 3 and stats["ready"] == 0 and stats["fds"] == 2
        for timer in timers:
            timer.cancel()
        assert reactor.statistics()["timers"] == 0
        reactor.remove_reader(a)
        reactor.remove_reader(c)
        assert reactor.statistics()["fds"] == 0
    finally:
        reactor.connections.clear()
        for s in (a, b, c, d):
            s.close()
    reactor.close()
    assert reactor.statistics()["fds"] == 0 and reactor.statistics()["turns"] == 2
