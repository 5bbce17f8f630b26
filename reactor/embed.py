"""Drive a `Reactor` from another event loop.

The contract (libuv's ``uv_backend_fd`` / ``uv_backend_timeout`` /
``UV_RUN_NOWAIT``): the host watches `Reactor.fileno()` for readability,
sleeps at most `Reactor.timeout()` seconds, and then calls
``reactor.run_once(0)``.  After each turn it asks `timeout()` again.  The
reactor makes its fd readable when work is scheduled from another thread or
from host code, so the host never has to poll.

`attach_asyncio` implements that for an asyncio loop; `attach_tkinter` for a
Tk root on Unix.  Any other host (Qt's ``QSocketNotifier`` + ``QTimer``, GLib,
a plain ``select`` loop — see ``examples/embed_select.py``) needs the same
twenty lines.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .core import Reactor

__all__ = ["AsyncioDriver", "attach_asyncio", "TkinterDriver", "attach_tkinter"]


class AsyncioDriver:
    """Runs a reactor's turns from an asyncio loop; `close()` detaches it."""

    __slots__ = ("reactor", "loop", "_fd", "_timer", "_deadline", "_closed")

    def __init__(self, reactor: Reactor, loop: asyncio.AbstractEventLoop) -> None:
        self.reactor = reactor
        self.loop = loop
        self._fd = reactor.fileno()
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None
        self._closed = False
        loop.add_reader(self._fd, self._tick)
        self._reschedule()

    def _tick(self) -> None:
        if self._closed:
            return
        self._timer = None
        self._deadline = None
        self.reactor.run_once(0)
        self._reschedule()

    def _reschedule(self) -> None:
        delay = self.reactor.timeout()
        if delay is None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
                self._deadline = None
            return
        deadline = self.loop.time() + delay
        if self._timer is not None:
            if self._deadline is not None and abs(deadline - self._deadline) < 1e-4:
                return
            self._timer.cancel()
        self._deadline = deadline
        self._timer = self.loop.call_at(deadline, self._tick)

    def close(self) -> None:
        """Stop driving the reactor (the reactor itself stays open)."""
        if self._closed:
            return
        self._closed = True
        self.loop.remove_reader(self._fd)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def attach_asyncio(reactor: Reactor, loop: asyncio.AbstractEventLoop | None = None) -> AsyncioDriver:
    """Drive ``reactor`` from ``loop`` (default: the running loop) until detached.

    Reactor futures then become awaitable from the loop's coroutines.
    """
    if loop is None:
        loop = asyncio.get_running_loop()
    return AsyncioDriver(reactor, loop)


class TkinterDriver:
    """Runs a reactor's turns from a Tk main loop (Unix: ``createfilehandler``)."""

    __slots__ = ("reactor", "root", "_fd", "_after", "_closed")

    def __init__(self, reactor: Reactor, root: Any) -> None:
        import tkinter

        self.reactor = reactor
        self.root = root
        self._fd = reactor.fileno()
        self._after: str | None = None
        self._closed = False
        root.tk.createfilehandler(self._fd, tkinter.READABLE, self._on_fd)
        self._reschedule()

    def _on_fd(self, fd: int, mask: int) -> None:
        self._tick()

    def _tick(self) -> None:
        if self._closed:
            return
        if self._after is not None:
            self.root.after_cancel(self._after)
            self._after = None
        self.reactor.run_once(0)
        self._reschedule()

    def _reschedule(self) -> None:
        delay = self.reactor.timeout()
        if self._after is not None:
            self.root.after_cancel(self._after)
            self._after = None
        if delay is not None:
            self._after = self.root.after(max(0, int(delay * 1000 + 0.999)), self._after_fired)

    def _after_fired(self) -> None:
        self._after = None
        self._tick()

    def close(self) -> None:
        """Stop driving the reactor."""
        if self._closed:
            return
        self._closed = True
        self.root.tk.deletefilehandler(self._fd)
        if self._after is not None:
            self.root.after_cancel(self._after)
            self._after = None


def attach_tkinter(reactor: Reactor, root: Any) -> TkinterDriver:
    """Drive ``reactor`` from the Tk main loop of ``root`` (Unix only)."""
    return TkinterDriver(reactor, root)
