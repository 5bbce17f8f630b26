"""The embedding contract: fileno() + timeout() + run_once(0) from a host loop."""

from __future__ import annotations

import asyncio
import gc
import os
import select
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from embed_hosts import AsyncioHost, serve_in_host

from reactor import ManualClock, Reactor
from reactor.embed import HostDriver, _milliseconds, attach_asyncio

ROOT = Path(__file__).resolve().parent.parent


def test_fileno_readable_when_io_ready() -> None:
    """fileno() polls readable exactly when a watched fd has data."""
    with Reactor() as r:
        a, b = socket.socketpair()
        r.add_reader(a, lambda: a.recv(10))
        fd = r.fileno()
        r.run_once(0)  # consumes the wakeup that host-side add_reader raised
        assert select.select([fd], [], [], 0)[0] == []
        b.send(b"x")
        assert select.select([fd], [], [], 1)[0] == [fd]
        r.run_once(0)
        assert select.select([fd], [], [], 0)[0] == []
        r.remove_reader(a)
        a.close()
        b.close()


def test_timeout_values(clock: ManualClock) -> None:
    """timeout(): None when idle, seconds to the next timer, 0 when callbacks are ready."""
    with Reactor(clock=clock) as r:
        assert r.timeout() is None
        h = r.call_later(2.5, lambda: None)
        assert r.timeout() == 2.5
        clock.advance(1)
        assert r.timeout() == 1.5
        clock.advance(5)
        assert r.timeout() == 0
        h.cancel()
        assert r.timeout() is None
        r.call_soon(lambda: None)
        assert r.timeout() == 0


def test_fileno_readable_after_threadsafe_call() -> None:
    """A callback scheduled from another thread makes fileno() readable."""
    with Reactor() as r:
        fd = r.fileno()
        r.run_once(0)
        t = threading.Thread(target=r.call_soon_threadsafe, args=(print,))
        t.start()
        t.join()
        assert select.select([fd], [], [], 1)[0] == [fd]
        assert r.timeout() == 0


def test_fileno_readable_when_host_schedules_work() -> None:
    """Host code that schedules a timer outside a turn wakes a host sleeping on fileno()."""
    with Reactor() as r:
        r.run_once(0)
        fd = r.fileno()
        assert select.select([fd], [], [], 0)[0] == []
        r.call_later(10, lambda: None)
        assert select.select([fd], [], [], 0)[0] == [fd]
        r.run_once(0)
        assert select.select([fd], [], [], 0)[0] == []


def host_loop(r: Reactor, extra: list[socket.socket], until: float, wakes: list[float]) -> None:
    """A host select loop that knows only fileno(), timeout() and run_once(0)."""
    fd = r.fileno()
    while True:
        now = r.time()
        if now >= until:
            return
        t = r.timeout()
        wait = until - now if t is None else min(t, until - now)
        select.select([fd, *(s.fileno() for s in extra)], [], [], wait)
        wakes.append(r.time())
        r.run_once(0)


def test_host_select_loop_serves_timers_and_io() -> None:
    """A select host loop runs every timer (in order) and every I/O callback."""
    with Reactor() as r:
        a, b = socket.socketpair()
        got: list[object] = []
        r.add_reader(a, lambda: got.append(a.recv(10)))
        r.call_later(0.02, got.append, "t1")
        r.call_later(0.04, b.send, b"io")
        r.call_later(0.06, got.append, "t2")
        ticks: list[float] = []
        every = r.call_every(0.025, lambda: ticks.append(r.time()))
        wakes: list[float] = []
        host_loop(r, [], r.time() + 0.1, wakes)
        every.cancel()
        assert got == ["t1", b"io", "t2"]
        assert len(ticks) >= 3
        r.remove_reader(a)
        a.close()
        b.close()


def test_idle_host_loop_does_not_busy_poll() -> None:
    """Over one idle second with nothing scheduled, the host wakes at most twice."""
    with Reactor() as r:
        r.run_once(0)
        wakes: list[float] = []
        host_loop(r, [], r.time() + 1.0, wakes)
        assert len(wakes) <= 2


def test_asyncio_awaits_reactor_future() -> None:
    """A coroutine awaits a reactor future while asyncio drives the reactor via fileno()."""
    with Reactor() as r:
        a, b = socket.socketpair()
        a.setblocking(False)

        async def main() -> object:
            driver = attach_asyncio(r)
            try:
                fut = r.create_future()
                r.add_reader(a, lambda: fut.set_result(a.recv(10)))
                timer_fut = r.create_future()
                r.call_later(0.01, timer_fut.set_result, "timer")
                asyncio.get_running_loop().call_later(0.005, b.send, b"data")
                got = (await fut, await timer_fut)
                r.remove_reader(a)
                failing = r.create_future()
                r.call_soon(failing.set_exception, KeyError("k"))
                with pytest.raises(KeyError):
                    await failing
                return got
            finally:
                driver.close()

        assert asyncio.run(asyncio.wait_for(main(), 5)) == (b"data", "timer")
        a.close()
        b.close()


def test_asyncio_driver_runs_reactor_timers() -> None:
    """Reactor timers fire under the asyncio driver with no reactor I/O at all."""
    with Reactor() as r:
        got: list[int] = []

        async def main() -> None:
            driver = attach_asyncio(r)
            done = asyncio.get_running_loop().create_future()
            r.call_later(0.02, got.append, 1)
            r.call_later(0.03, lambda: done.set_result(None))
            await asyncio.wait_for(done, 5)
            driver.close()

        asyncio.run(main())
        assert got == [1]


@pytest.mark.timeout(30)
def test_embed_select_example_runs() -> None:
    """examples/embed_select.py runs to completion and shows timer, I/O and host traffic."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "embed_select.py")],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    ).stdout
    assert "reactor got: hello from a reactor timer" in out
    assert "host got: hello for the host" in out
    assert "reactor tick" in out and out.strip().endswith("done")


class FakeHost(HostDriver):
    """A host with nothing but a watch set and one timer slot, on the test's manual clock."""

    __slots__ = ("clock", "watched", "timer", "log")

    pause_during_turn = False

    def __init__(self, reactor: Reactor, clock: ManualClock) -> None:
        self.clock = clock
        self.watched: set[int] = set()
        self.timer: tuple[float, float] | None = None
        self.log: list[str] = []
        super().__init__(reactor)

    def watch_fd(self, fd: int) -> None:
        self.log.append("watch")
        self.watched.add(fd)

    def unwatch_fd(self, fd: int) -> None:
        self.log.append("unwatch")
        self.watched.remove(fd)

    def arm_timer(self, delay: float, deadline: float) -> None:
        assert self.timer is None, "the base cancels before it re-arms"
        self.log.append(f"arm {delay:g}")
        self.timer = (delay, deadline)

    def cancel_timer(self) -> None:
        assert self.timer is not None, "cancel only a pending timer"
        self.log.append("cancel")
        self.timer = None

    def host_time(self) -> float:
        return self.clock.now

    def fire(self) -> None:
        """The host's timer goes off (the host forgets it first)."""
        assert self.timer is not None
        self.timer = None
        self.on_timer()


class PausingHost(FakeHost):
    """A FakeHost for a host with nested loops: the fd is unwatched during a turn."""

    __slots__ = ()

    pause_during_turn = True


def test_driver_watches_a_duplicate_and_arms_from_timeout(reactor: Reactor, clock: ManualClock) -> None:
    """The base watches its own duplicate of fileno(), arms timeout(), turns on a timer, disarms when idle."""
    got: list[str] = []
    reactor.call_later(0.25, got.append, "timer")
    driver = FakeHost(reactor, clock)
    [fd] = driver.watched
    assert fd != reactor.fileno() and os.path.sameopenfile(fd, reactor.fileno())
    assert driver.timer == (0.25, clock.now + 0.25)
    clock.advance(0.25)
    driver.fire()
    assert got == ["timer"] and driver.timer is None  # nothing scheduled: no timer armed
    reactor.call_soon(got.append, "soon")
    driver.on_readable(fd, 0)
    assert got == ["timer", "soon"] and driver.timer is None
    assert driver.statistics() == {"turns": 2, "fd_wakeups": 1, "timer_wakeups": 1, "timers_armed": 1}
    driver.close()
    assert driver.closed and driver.watched == set() and driver.log[-1] == "unwatch"
    with pytest.raises(OSError):
        os.fstat(fd)  # the duplicate is closed
    driver.close()  # idempotent


def test_driver_keeps_a_timer_whose_deadline_did_not_move(reactor: Reactor, clock: ManualClock) -> None:
    """A turn that leaves the next deadline where it was does not cancel and re-arm the host timer."""
    reactor.call_later(1.0, lambda: None)
    driver = FakeHost(reactor, clock)
    for _ in range(5):
        clock.advance(0.1)
        driver.on_readable()
    assert driver.log == ["watch", "arm 1"] and driver.statistics()["timers_armed"] == 1
    reactor.call_later(0.2, lambda: None)  # an earlier deadline: re-armed
    driver.on_readable()
    assert driver.log[-2:] == ["cancel", "arm 0.2"]
    driver.close()
    assert driver.timer is None and driver.log[-2:] == ["cancel", "unwatch"]


def test_nested_host_loop_does_not_run_a_turn_inside_a_turn(reactor: Reactor, clock: ManualClock) -> None:
    """A host wakeup inside a turn (a nested GUI loop) is skipped; with pause_during_turn the fd is unwatched."""
    driver = PausingHost(reactor, clock)
    seen: list[object] = []

    def nested() -> None:
        seen.append(set(driver.watched))
        driver.on_readable()  # what a nested Tk update() or Qt exec() would do
        seen.append("still one turn")

    reactor.call_soon(nested)
    driver.on_readable()
    assert seen == [set(), "still one turn"]
    assert driver.statistics()["turns"] == 1 and len(driver.watched) == 1
    driver.close()


def test_driver_closed_from_a_reactor_callback(reactor: Reactor, clock: ManualClock) -> None:
    """close() called inside a turn detaches for good: no re-watch, no timer after the turn."""
    driver = PausingHost(reactor, clock)
    reactor.call_soon(driver.close)
    reactor.call_later(5, lambda: None)
    driver.on_readable()
    assert driver.closed and driver.watched == set() and driver.timer is None


def test_driver_detaches_when_its_reactor_is_closed(clock: ManualClock) -> None:
    """A reactor closed under a live driver: the duplicate stays valid, the next wakeup detaches."""
    r = Reactor(clock=clock)
    r.call_later(1, lambda: None)
    driver = FakeHost(r, clock)
    [fd] = driver.watched
    r.close()
    os.fstat(fd)  # still a valid descriptor: no host ever watches a closed or reused number
    driver.fire()
    assert driver.closed and driver.watched == set() and driver.statistics()["turns"] == 0
    with pytest.raises(OSError):
        os.fstat(fd)


def test_driver_hook_failure_releases_the_duplicate(reactor: Reactor, clock: ManualClock) -> None:
    """A driver whose host refuses the fd raises and leaves no descriptor behind (the fixture checks fds)."""

    class Refusing(FakeHost):
        __slots__ = ()

        def watch_fd(self, fd: int) -> None:
            raise OSError("host refuses")

    with pytest.raises(OSError, match="host refuses"):
        Refusing(reactor, clock)


def test_unclosed_driver_warns_and_releases_its_fd(reactor: Reactor, clock: ManualClock) -> None:
    """A driver dropped without close() emits ResourceWarning and closes its duplicate."""
    driver = FakeHost(reactor, clock)
    [fd] = driver.watched
    with pytest.warns(ResourceWarning, match="unclosed <FakeHost attached"):
        del driver
        gc.collect()
    with pytest.raises(OSError):
        os.fstat(fd)


def test_host_timer_milliseconds_round_up_and_are_capped() -> None:
    """Tk and Qt timers get whole milliseconds, never early, within a C int."""
    assert [_milliseconds(d) for d in (0, 0.0001, 0.05, 0.0501, 1e9)] == [0, 1, 50, 51, 2**31 - 1]


def test_asyncio_host_serves_requests_ticks_on_time_and_sleeps_when_idle(real_reactor: Reactor) -> None:
    """asyncio drives a RequestServer: 50 threaded requests answered, call_every on time, no idle polling."""
    host = AsyncioHost()
    try:
        serve_in_host(host, real_reactor)
    finally:
        host.close()


def test_embed_import_loads_no_host_toolkit() -> None:
    """import reactor.embed imports neither asyncio nor tkinter nor a Qt binding."""
    code = "import sys, reactor.embed; print(sorted({'asyncio', 'tkinter', 'PySide6', 'PyQt6'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20, check=True)
    assert out.stdout.strip() == "[]"
