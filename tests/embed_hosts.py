"""Host loops (asyncio, Tk, Qt) behind one small interface, and the scenario every host test plays.

The scenario serves a `RequestServer` inside the host loop and checks three
things: 50 blocking requests from another thread are all answered; a 0.05 s
``call_every`` ticks 9-11 times in 0.5 s of host time; an idle reactor wakes
its host at most twice in a second (the driver does not poll).

Run as a script (``python tests/embed_hosts.py qt PyQt6``) it plays the
scenario in a fresh process: one process can hold only one Qt binding's
QApplication, so the second binding is tested that way.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from reactor import Reactor, RequestServer, do_request
from reactor.embed import HostDriver, attach_asyncio, attach_qt, attach_tkinter

#: Slices in which `Host.run_until` runs the host loop between checks.
SLICE = 0.02


class Host:
    """A host event loop the tests can attach a reactor to and run for a while."""

    name = "host"

    def attach(self, reactor: Reactor) -> HostDriver:
        """Attach ``reactor`` with this host's driver."""
        raise NotImplementedError

    def now(self) -> float:
        """The host's own monotonic clock."""
        raise NotImplementedError

    def run_for(self, seconds: float) -> None:
        """Run the host loop for ``seconds`` of host time, then return."""
        raise NotImplementedError

    def run_until(self, predicate: Callable[[], bool], limit: float) -> None:
        """Run the host loop until ``predicate()`` holds; fail after ``limit`` seconds of host time."""
        for _ in range(int(limit / SLICE) + 1):
            if predicate():
                return
            self.run_for(SLICE)
        if not predicate():
            raise AssertionError(f"{self.name}: condition not reached within {limit} s")


class AsyncioHost(Host):
    """A fresh asyncio loop, run with ``run_until_complete(sleep(...))``."""

    name = "asyncio"

    def __init__(self) -> None:
        import asyncio

        self.asyncio = asyncio
        self.loop = asyncio.new_event_loop()

    def attach(self, reactor: Reactor) -> HostDriver:
        """`attach_asyncio` on this loop."""
        return attach_asyncio(reactor, self.loop)

    def now(self) -> float:
        """``loop.time()``."""
        return self.loop.time()

    def run_for(self, seconds: float) -> None:
        """``loop.run_until_complete(asyncio.sleep(seconds))``."""
        self.loop.run_until_complete(self.asyncio.sleep(seconds))

    def close(self) -> None:
        """Close the loop."""
        self.loop.close()


class TkHost(Host):
    """A Tk root, run with ``mainloop()`` until an ``after`` timer quits it."""

    name = "tk"

    def __init__(self, root: Any) -> None:
        self.root = root

    def attach(self, reactor: Reactor) -> HostDriver:
        """`attach_tkinter` on this root."""
        return attach_tkinter(reactor, self.root)

    def now(self) -> float:
        """Tk has no monotonic clock of its own; its timers run on the process's."""
        return time.monotonic()

    def run_for(self, seconds: float) -> None:
        """``after(ms, quit)`` then ``mainloop()``."""
        self.root.after(max(1, round(seconds * 1000)), self.root.quit)
        self.root.mainloop()


class QtHost(Host):
    """A Qt application, run with ``exec()`` until a single-shot timer quits it."""

    name = "qt"

    def __init__(self, app: Any) -> None:
        self.app = app
        self.binding = type(app).__module__.partition(".")[0]
        self.qtcore: Any = importlib.import_module(f"{self.binding}.QtCore")
        self.clock = self.qtcore.QElapsedTimer()
        self.clock.start()

    def attach(self, reactor: Reactor) -> HostDriver:
        """`attach_qt` on this application."""
        return attach_qt(reactor, self.app)

    def now(self) -> float:
        """A monotonic ``QElapsedTimer``, in seconds."""
        return float(self.clock.nsecsElapsed()) / 1e9

    def run_for(self, seconds: float) -> None:
        """``QTimer.singleShot(ms, quit)`` then ``exec()``."""
        self.qtcore.QTimer.singleShot(max(1, round(seconds * 1000)), self.app.quit)
        self.app.exec()


def make_qt_app(binding: str) -> Any:
    """The process's one QApplication of ``binding``, offscreen."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    widgets: Any = importlib.import_module(f"{binding}.QtWidgets")
    app = widgets.QApplication.instance()
    return app if app is not None else widgets.QApplication(["reactor-tests"])


def serve_in_host(host: Host, reactor: Reactor) -> None:
    """The host scenario: requests answered, call_every on time, no polling when idle."""
    server = RequestServer("127.0.0.1:0", reactor=reactor)
    driver = host.attach(reactor)
    try:
        # 1. Fifty blocking requests from another thread, all answered by the reactor in the host loop.
        replies: list[str | None] = []

        def client() -> None:
            for i in range(50):
                replies.append(do_request(server.address, f"ping {i}", timeout=10))

        thread = threading.Thread(target=client, name=f"{host.name}-client")
        thread.start()
        try:
            host.run_until(lambda: not thread.is_alive(), limit=20)
        finally:
            thread.join(20)
        assert replies == [f"Requested: ping {i}" for i in range(50)]
        assert server.statistics()["completed"] == 50

        # 2. A 0.05 s call_every, counted against the host's clock over 0.5 s of host time.
        ticks: list[float] = []
        start = host.now()
        beat = reactor.call_every(0.05, lambda: ticks.append(host.now()))
        host.run_for(0.525)
        beat.cancel()
        end = host.now()
        assert 9 <= len(ticks) <= 11, f"{host.name}: {len(ticks)} ticks in {end - start:.3f} s: {ticks}"
        assert all(start + 0.05 <= t <= end for t in ticks), (start, ticks, end)

        # 3. Idle: nothing scheduled, so the host sleeps; at most two driver wakeups in a second.
        host.run_for(0.1)  # the cancelled beat's timer may fire once more
        assert reactor.timeout() is None, reactor.timeout()
        before = driver.statistics()
        host.run_for(1.0)
        after = driver.statistics()
        woke = after["turns"] - before["turns"]
        assert woke <= 2, f"{host.name}: {woke} driver turns in an idle second: {before} -> {after}"
    finally:
        driver.close()
        server.close()
    assert driver.closed


def main(argv: list[str]) -> int:
    """``qt BINDING``: play the scenario with that Qt binding in this process."""
    if len(argv) != 2 or argv[0] != "qt":
        print("usage: embed_hosts.py qt PySide6|PyQt6", file=sys.stderr)
        return 2
    host = QtHost(make_qt_app(argv[1]))
    with Reactor() as reactor:
        serve_in_host(host, reactor)
    print(f"ok {host.binding}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
