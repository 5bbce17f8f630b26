"""The embedding contract: fileno() + timeout() + run_once(0) from a host loop."""

from __future__ import annotations

import asyncio
import select
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from reactor import ManualClock, Reactor
from reactor.embed import attach_asyncio

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
        select.select([fd, *extra], [], [], wait)
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


class FakeTk:
    """Just enough of a Tk root for the driver: file handlers and after() timers."""

    def __init__(self) -> None:
        self.handlers: dict[int, object] = {}
        self.timers: dict[str, tuple[int, object]] = {}
        self.tk = self
        self._n = 0

    def createfilehandler(self, fd: int, mask: int, fn: object) -> None:
        self.handlers[fd] = fn

    def deletefilehandler(self, fd: int) -> None:
        del self.handlers[fd]

    def after(self, ms: int, fn: object) -> str:
        self._n += 1
        key = f"after#{self._n}"
        self.timers[key] = (ms, fn)
        return key

    def after_cancel(self, key: str) -> None:
        self.timers.pop(key, None)


def test_tkinter_driver_with_fake_root(clock: ManualClock) -> None:
    """The Tk driver registers fileno(), arms after() from timeout(), and runs turns."""
    pytest.importorskip("tkinter")
    from reactor.embed import attach_tkinter

    with Reactor(clock=clock) as r:
        got: list[str] = []
        r.call_later(0.25, got.append, "timer")
        root = FakeTk()
        driver = attach_tkinter(r, root)
        assert list(root.handlers) == [r.fileno()]
        [key] = root.timers
        ms, fire = root.timers.pop(key)  # Tk forgets a timer once it fires
        assert ms == 250
        clock.advance(0.25)
        fire()  # type: ignore[operator]
        assert got == ["timer"]
        assert root.timers == {}  # nothing scheduled: no timer armed
        r.call_soon(got.append, "soon")
        root.handlers[r.fileno()](r.fileno(), 0)  # type: ignore[operator]
        assert got == ["timer", "soon"]
        driver.close()
        assert root.handlers == {} and root.timers == {}
