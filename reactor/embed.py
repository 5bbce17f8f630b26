"""Drive a `Reactor` from another event loop: asyncio, Tk, Qt, or your own.

The contract (libuv's ``uv_backend_fd`` / ``uv_backend_timeout`` /
``UV_RUN_NOWAIT``): the host watches `Reactor.fileno()` for readability,
sleeps at most `Reactor.timeout()` seconds, and then calls
``reactor.run_once(0)``.  After each turn it asks `timeout()` again.  The
reactor makes its fd readable when work is scheduled from another thread or
from host code, so the host never has to poll: an idle reactor (``timeout()``
is None) costs the host nothing at all.

Every host loop offers the same two primitives, a file-descriptor watch and a
one-shot timer, so every driver is the same loop written once in `HostDriver`
(tick, ``run_once(0)``, re-arm the timer) over four small hooks.
`AsyncioDriver`, `TkinterDriver` and `QtDriver` are those hooks for their
hosts; a GLib or wx driver is another twenty lines.  A plain ``select`` loop
needs no driver at all (see ``examples/embed_select.py``).

What can go wrong, and what we chose
------------------------------------
*Re-arming a timer on every turn.*  A busy server turns thousands of times a
second while its next deadline does not move; cancelling and re-arming a host
timer each time is pure overhead.  A timer already armed for (nearly) the same
deadline is kept: ``timer_resolution`` says how near is near enough (0.1 ms
for asyncio, 1 ms for the millisecond timers of Tk and Qt, which are rounded
up so they never fire before the reactor's timer is due).

*The reactor closed under a live driver.*  Hosts disagree about a watched fd
that gets closed: epoll forgets it silently (and asyncio's bookkeeping then
breaks when the number is reused), Qt warns "Invalid socket" and disables the
notifier, Tcl's ``select`` notifier may spin.  So a driver watches its own
duplicate of `Reactor.fileno()`, which stays valid whatever happens to the
reactor, and detaches itself at its next wakeup once the reactor is closed;
`HostDriver.close` releases the duplicate.  Close the driver first and the
question never comes up.

*Nested host loops.*  GUI code runs nested event loops (Tk's ``update()``,
Qt's modal ``exec()``, ``processEvents()``) from inside callbacks, which
here means from inside a reactor turn.  A turn cannot start inside another
turn, and a readable fd that nobody drains makes a level-triggered host spin
(``update()`` would never return).  Drivers for such hosts set
``pause_during_turn``: the fd is unwatched while a turn runs, and a timer
that fires meanwhile is ignored (the turn re-arms it when it ends).

The bridges between futures are here too: `to_asyncio` (what ``await
reactor_future`` uses in a coroutine) and `to_concurrent` carry a reactor
future's outcome to an asyncio or a `concurrent.futures` future, and carry a
cancellation back, so a coroutine that gives up on a request cancels it;
`from_asyncio` is the other way, what a reactor task awaiting an asyncio
future parks on.

``import reactor.embed`` imports no host: each driver imports its own
toolkit when it is created.
"""

from __future__ import annotations

import importlib
import math
import os
import sys
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .core import Reactor
from .futures import Future

if TYPE_CHECKING:
    import asyncio
    import concurrent.futures

T = TypeVar("T")

__all__ = [
    "HostDriver",
    "AsyncioDriver",
    "attach_asyncio",
    "TkinterDriver",
    "attach_tkinter",
    "QtDriver",
    "attach_qt",
    "QT_BINDINGS",
    "to_asyncio",
    "to_concurrent",
    "from_asyncio",
]

#: The Qt bindings `QtDriver` supports, in the order it tries to import them.
QT_BINDINGS = ("PySide6", "PyQt6")

#: The longest single timer Tk's ``after`` and Qt's ``QTimer`` take (ms, a C int).
#: A longer reactor timeout arms this one; its early wakeup just re-arms.
_MAX_TIMER_MS = 2**31 - 1


def _milliseconds(delay: float) -> int:
    """``delay`` seconds as host-timer milliseconds, rounded up (never early)."""
    return min(_MAX_TIMER_MS, max(0, math.ceil(delay * 1000)))


class HostDriver(ABC):
    """Runs a reactor's turns from a host event loop; `close()` detaches it.

    The shared loop: when the host reports the reactor's fd readable
    (`on_readable`) or the driver's timer fires (`on_timer`), run one
    non-blocking turn (``reactor.run_once(0)``), then arm the host timer for
    `Reactor.timeout()` seconds, or disarm it when that is None.

    Methods for the caller: `close`, `statistics`, and the `closed` property.

    Methods a host driver implements (the host calls none of them, the base
    does): `watch_fd`, `unwatch_fd`, `arm_timer`, `cancel_timer`, and
    optionally `host_time`.  Its host callbacks call `on_readable` and
    `on_timer`.  A subclass sets up whatever the hooks use *before* calling
    ``super().__init__(reactor)``, which starts watching at once.
    """

    __slots__ = (
        "reactor",
        "_fd",
        "_deadline",
        "_closed",
        "_watching",
        "_in_turn",
        "_turns",
        "_fd_wakeups",
        "_timer_wakeups",
        "_timers_armed",
        "__weakref__",
    )

    #: A timer armed for a deadline within this many seconds of the new one is kept.
    timer_resolution: float = 1e-4
    #: Unwatch the fd while a turn runs (hosts that run nested loops from callbacks).
    pause_during_turn: bool = False

    def __init__(self, reactor: Reactor) -> None:
        self.reactor = reactor
        self._closed = True  # until the duplicate exists: nothing to release
        self._watching = False
        self._in_turn = False
        self._deadline: float | None = None
        self._turns = 0
        self._fd_wakeups = 0
        self._timer_wakeups = 0
        self._timers_armed = 0
        self._fd = os.dup(reactor.fileno())
        self._closed = False
        try:
            self.watch_fd(self._fd)
            self._watching = True
            self._reschedule()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ the hooks

    @abstractmethod
    def watch_fd(self, fd: int) -> None:
        """Make the host call `on_readable` whenever ``fd`` is readable."""

    @abstractmethod
    def unwatch_fd(self, fd: int) -> None:
        """Stop watching ``fd`` (it stays open; the base closes it)."""

    @abstractmethod
    def arm_timer(self, delay: float, deadline: float) -> None:
        """Make the host call `on_timer` once, ``delay`` seconds from now.

        ``deadline`` is the same moment on `host_time`'s clock.  At most one
        timer is armed at a time: the base cancels the old one first.
        """

    @abstractmethod
    def cancel_timer(self) -> None:
        """Cancel the timer armed by `arm_timer` (called only while it is pending)."""

    def host_time(self) -> float:
        """The host's monotonic clock, in seconds (default: `time.monotonic`)."""
        return time.monotonic()

    # ------------------------------------------------- called by the host

    def on_readable(self, *_: object) -> None:
        """The host saw the reactor's fd readable: run a turn."""
        self._fd_wakeups += 1
        self._turn()

    def on_timer(self, *_: object) -> None:
        """The driver's host timer fired: run a turn."""
        self._deadline = None  # the host forgets a timer once it has fired
        self._timer_wakeups += 1
        self._turn()

    # --------------------------------------------------------- the loop

    def _turn(self) -> None:
        if self._closed or self._in_turn:
            return  # a nested host loop inside a turn: the turn re-arms when it ends
        reactor = self.reactor
        if reactor.is_closed():
            self.close()
            return
        self._in_turn = True
        pause = self.pause_during_turn
        if pause:
            self.unwatch_fd(self._fd)
            self._watching = False
        try:
            self._turns += 1
            reactor.run_once(0)
        finally:
            self._in_turn = False
            if reactor.is_closed():
                self.close()
            elif not self._closed:
                if pause:
                    self.watch_fd(self._fd)
                    self._watching = True
                self._reschedule()

    def _reschedule(self) -> None:
        delay = self.reactor.timeout()
        if delay is None:
            if self._deadline is not None:
                self._deadline = None
                self.cancel_timer()
            return
        deadline = self.host_time() + delay
        armed = self._deadline
        if armed is not None:
            if abs(deadline - armed) < self.timer_resolution:
                return
            self.cancel_timer()
        self._deadline = deadline
        self._timers_armed += 1
        self.arm_timer(delay, deadline)

    # ----------------------------------------------------- for the caller

    @property
    def closed(self) -> bool:
        """True once the driver is detached (by `close`, or because its reactor closed)."""
        return self._closed

    def statistics(self) -> dict[str, int]:
        """Counters: turns run, wakeups by fd and by timer, host timers armed."""
        return {
            "turns": self._turns,
            "fd_wakeups": self._fd_wakeups,
            "timer_wakeups": self._timer_wakeups,
            "timers_armed": self._timers_armed,
        }

    def close(self) -> None:
        """Stop driving the reactor (the reactor itself stays open); idempotent.

        The fd is unwatched and the timer cancelled before the driver's
        duplicate of the reactor's fd is closed.  May be called from a
        reactor callback.
        """
        if self._closed:
            return
        self._closed = True
        try:
            if self._deadline is not None:
                self._deadline = None
                self.cancel_timer()
            if self._watching:
                self._watching = False
                self.unwatch_fd(self._fd)
        finally:
            os.close(self._fd)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "attached"
        return f"<{type(self).__name__} {state} reactor={self.reactor!r}>"

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        if not getattr(self, "_closed", True):
            # The host no longer references the driver, so only the duplicate is left.
            _warn(f"unclosed {self!r}", ResourceWarning, source=self)
            self._closed = True
            os.close(self._fd)


# ------------------------------------------------------------------- asyncio


class AsyncioDriver(HostDriver):
    """Runs a reactor's turns from an asyncio loop (``add_reader`` + ``call_at``)."""

    __slots__ = ("loop", "_timer")

    def __init__(self, reactor: Reactor, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._timer: asyncio.TimerHandle | None = None
        super().__init__(reactor)

    def watch_fd(self, fd: int) -> None:
        """``loop.add_reader``."""
        self.loop.add_reader(fd, self.on_readable)

    def unwatch_fd(self, fd: int) -> None:
        """``loop.remove_reader``."""
        self.loop.remove_reader(fd)

    def arm_timer(self, delay: float, deadline: float) -> None:
        """``loop.call_at`` on the loop's own clock."""
        self._timer = self.loop.call_at(deadline, self.on_timer)

    def cancel_timer(self) -> None:
        """Cancel the pending ``call_at`` handle."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def host_time(self) -> float:
        """``loop.time()``."""
        return self.loop.time()


def attach_asyncio(reactor: Reactor, loop: asyncio.AbstractEventLoop | None = None) -> AsyncioDriver:
    """Drive ``reactor`` from ``loop`` (default: the running loop) until detached.

    Reactor futures then become awaitable from the loop's coroutines.
    """
    if loop is None:
        import asyncio

        loop = asyncio.get_running_loop()
    return AsyncioDriver(reactor, loop)


# ------------------------------------------------------------------------ Tk


class TkinterDriver(HostDriver):
    """Runs a reactor's turns from a Tk main loop (Unix: ``createfilehandler`` + ``after``)."""

    __slots__ = ("root", "_readable", "_after")

    timer_resolution = 1e-3
    pause_during_turn = True

    def __init__(self, reactor: Reactor, root: Any) -> None:
        import tkinter

        self.root = root
        self._readable: int = tkinter.READABLE
        self._after: str | None = None
        super().__init__(reactor)

    def watch_fd(self, fd: int) -> None:
        """``root.tk.createfilehandler``."""
        self.root.tk.createfilehandler(fd, self._readable, self.on_readable)

    def unwatch_fd(self, fd: int) -> None:
        """``root.tk.deletefilehandler``."""
        self.root.tk.deletefilehandler(fd)

    def arm_timer(self, delay: float, deadline: float) -> None:
        """``root.after``, in whole milliseconds rounded up."""
        self._after = self.root.after(_milliseconds(delay), self._after_fired)

    def cancel_timer(self) -> None:
        """``root.after_cancel``."""
        if self._after is not None:
            self.root.after_cancel(self._after)
            self._after = None

    def _after_fired(self) -> None:
        self._after = None
        self.on_timer()


def attach_tkinter(reactor: Reactor, root: Any) -> TkinterDriver:
    """Drive ``reactor`` from the Tk main loop of ``root`` (Unix only) until detached."""
    return TkinterDriver(reactor, root)


# ------------------------------------------------------------------------ Qt


def _qt_binding(app: Any, binding: str | None) -> str:
    """Which Qt binding to use: the one asked for, the application's, one already imported, or the first importable."""
    if binding is not None:
        if binding not in QT_BINDINGS:
            raise ValueError(f"binding must be one of {', '.join(QT_BINDINGS)}, got {binding!r}")
        return binding
    if app is not None:
        root = type(app).__module__.partition(".")[0]
        if root not in QT_BINDINGS:
            raise TypeError(f"{type(app).__name__} is not a {' or '.join(QT_BINDINGS)} application; pass binding=")
        return root
    for name in QT_BINDINGS:
        if name in sys.modules:
            return name
    for name in QT_BINDINGS:
        try:
            importlib.import_module(f"{name}.QtCore")
        except ImportError:
            continue
        return name
    raise ImportError(f"attach_qt() needs one of {', '.join(QT_BINDINGS)}: pip install PySide6")


class QtDriver(HostDriver):
    """Runs a reactor's turns from a Qt event loop (``QSocketNotifier`` + single-shot ``QTimer``).

    Works with PySide6 and PyQt6; ``binding`` names the one to use (default:
    the application's).  Create it in the thread that runs the Qt loop.
    """

    __slots__ = ("app", "binding", "_qtcore", "_notifier", "_timer")

    timer_resolution = 1e-3
    pause_during_turn = True

    def __init__(self, reactor: Reactor, app: Any = None, *, binding: str | None = None) -> None:
        self.binding = _qt_binding(app, binding)
        qtcore: Any = importlib.import_module(f"{self.binding}.QtCore")
        if app is None:
            app = qtcore.QCoreApplication.instance()
            if app is None:
                raise RuntimeError("create the QApplication (or QCoreApplication) before attach_qt()")
        self.app: Any = app
        self._qtcore = qtcore
        self._notifier: Any = None  # created by the first watch_fd: it needs the fd
        # Children of the application: Qt owns them, so deleteLater() in close()
        # deletes them, not the garbage collector at some unsafe moment.
        timer = qtcore.QTimer(app)
        timer.setSingleShot(True)
        timer.setTimerType(qtcore.Qt.TimerType.PreciseTimer)  # coarse timers may fire 5 % early
        timer.timeout.connect(self.on_timer)
        self._timer: Any = timer
        super().__init__(reactor)

    def watch_fd(self, fd: int) -> None:
        """Enable the ``QSocketNotifier`` (Read) on ``fd``, creating it the first time."""
        if self._notifier is None:
            qtcore = self._qtcore
            self._notifier = qtcore.QSocketNotifier(fd, qtcore.QSocketNotifier.Type.Read, self.app)
            self._notifier.activated.connect(self.on_readable)
        self._notifier.setEnabled(True)

    def unwatch_fd(self, fd: int) -> None:
        """Disable the notifier."""
        if self._notifier is not None:
            self._notifier.setEnabled(False)

    def arm_timer(self, delay: float, deadline: float) -> None:
        """Start the single-shot ``QTimer``, in whole milliseconds rounded up."""
        self._timer.start(_milliseconds(delay))

    def cancel_timer(self) -> None:
        """Stop the ``QTimer``."""
        self._timer.stop()

    def close(self) -> None:
        """Stop driving the reactor: the notifier is disabled and deleted, the timer stopped and deleted.

        Deletion is ``deleteLater()``: safe from inside the notifier's own
        signal, done when control returns to the Qt loop (or with the application).
        """
        if self._closed:
            return
        try:
            super().close()
        finally:
            notifier, self._notifier = self._notifier, None
            if notifier is not None:
                notifier.setEnabled(False)
                notifier.activated.disconnect(self.on_readable)
                notifier.deleteLater()
            timer = self._timer
            timer.stop()
            timer.timeout.disconnect(self.on_timer)
            timer.deleteLater()


def attach_qt(reactor: Reactor, app: Any = None, *, binding: str | None = None) -> QtDriver:
    """Drive ``reactor`` from the Qt event loop of ``app`` (default: the running application) until detached.

    ``binding`` is ``"PySide6"`` or ``"PyQt6"``; by default the binding of
    ``app``, else one already imported, else the first importable.
    """
    return QtDriver(reactor, app, binding=binding)


# ------------------------------------------------------------------- bridges
#
# A reactor future and an asyncio (or concurrent.futures) future of the same
# operation: each side completes or cancels its own future in its own thread,
# and a callback carries the outcome across.  Which thread is which decides
# how: the reactor may be driven by the asyncio loop itself (attach_asyncio:
# one thread, so a plain call), or run in a thread of its own (then
# call_soon_threadsafe on the other side).  Cancellation crosses too: without
# that, an asyncio.wait_for() that times out leaves the reactor's operation,
# and its connection, running for nobody.


def _on_reactor_thread(reactor: Reactor) -> bool:
    """True when this thread may touch ``reactor`` (it runs it, or nobody runs it in a thread of its own)."""
    from .transport.threads import in_reactor_thread  # the one answer; loaded with the bridges that ask

    return in_reactor_thread(reactor)


def _call_on_reactor(reactor: Reactor, function: Callable[..., object], *args: Any) -> None:
    """``function(*args)`` now if this thread may touch ``reactor``, else from its thread (never raises if closed)."""
    if _on_reactor_thread(reactor):
        function(*args)
        return
    try:
        reactor.call_soon_threadsafe(function, *args)
    except RuntimeError:  # closed: nothing is left to cancel or wait for
        pass


def _cancel(future: Future[Any]) -> None:
    future.cancel()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    import asyncio

    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _copy_to_asyncio(source: Future[T], target: asyncio.Future[T]) -> None:
    if target.done():
        return
    if source.cancelled():
        target.cancel()
        return
    exc = source.exception()
    if exc is not None:
        target.set_exception(exc)
    else:
        target.set_result(source.result())


def to_asyncio(future: Future[T], *, loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Future[T]:
    """An `asyncio.Future` of ``loop`` (default: the running loop) that follows the reactor ``future``.

    It gets ``future``'s result, exception or cancellation; cancelling it
    (``task.cancel()``, an `asyncio.wait_for` that times out) cancels
    ``future``, so a cancelled request closes its connection.  Awaiting a
    reactor future from a coroutine (``await future``) uses this bridge.

    The reactor and the loop may share a thread (`attach_asyncio`) or run in
    two: the outcome is then handed over with ``loop.call_soon_threadsafe``,
    the cancellation with `Reactor.call_soon_threadsafe`.  Also importable
    as ``reactor.futures.to_asyncio``.  (``asyncio.wrap_future`` takes only
    ``concurrent.futures`` futures: it fails with asyncio's own
    ``AssertionError`` on a reactor future; use this, or `to_concurrent`.)
    """
    if not isinstance(future, Future):
        raise TypeError(f"to_asyncio() needs a reactor Future, got {type(future).__name__}")
    if loop is None:
        loop = _running_loop()
        if loop is None:
            raise RuntimeError("to_asyncio() outside a coroutine needs the loop: to_asyncio(future, loop=loop)")
    target: asyncio.Future[T] = loop.create_future()
    reactor = future.reactor

    def transfer(source: Future[T]) -> None:  # on the reactor's thread
        if _running_loop() is loop:
            _copy_to_asyncio(source, target)
            return
        try:
            loop.call_soon_threadsafe(_copy_to_asyncio, source, target)
        except RuntimeError:  # the loop is closed: nobody awaits the bridge any more
            pass

    def cancelled(done: asyncio.Future[T]) -> None:  # on the loop's thread
        if done.cancelled():
            _call_on_reactor(reactor, _cancel, future)

    target.add_done_callback(cancelled)
    _call_on_reactor(reactor, future.add_done_callback, transfer)
    return target


def to_concurrent(future: Future[T]) -> concurrent.futures.Future[T]:
    """A `concurrent.futures.Future` that follows the reactor ``future``, for any thread.

    Wait for it from another thread (``.result(timeout)``), or hand it to
    ``asyncio.wrap_future`` for a loop in another thread.  It is completed
    on the reactor's thread (its own done-callbacks run there, as
    `concurrent.futures` does); cancelling it, from any thread, cancels
    ``future`` through `Reactor.call_soon_threadsafe`.  Call this from the
    reactor's thread (or before the reactor runs).  Also importable as
    ``reactor.futures.to_concurrent``.
    """
    import concurrent.futures

    if not isinstance(future, Future):
        raise TypeError(f"to_concurrent() needs a reactor Future, got {type(future).__name__}")
    target: concurrent.futures.Future[T] = concurrent.futures.Future()
    reactor = future.reactor

    def transfer(source: Future[T]) -> None:  # on the reactor's thread
        try:
            if source.cancelled():
                target.cancel()
            elif source.exception() is not None:
                target.set_exception(source.exception())
            else:
                target.set_result(source.result())
        except concurrent.futures.InvalidStateError:
            pass  # cancelled from another thread a moment ago

    def cancelled(done: concurrent.futures.Future[T]) -> None:  # in the thread that cancelled it
        if done.cancelled():
            try:
                reactor.call_soon_threadsafe(_cancel, future)
            except RuntimeError:  # the reactor is closed: nothing left to cancel
                pass

    target.add_done_callback(cancelled)
    _call_on_reactor(reactor, future.add_done_callback, transfer)
    return target


def from_asyncio(future: asyncio.Future[T], reactor: Reactor) -> Future[T]:
    """A reactor `Future` of ``reactor`` that follows the asyncio ``future``: the other way of `to_asyncio`.

    It gets ``future``'s result, exception or cancellation; cancelling it
    cancels ``future``.  This is what a reactor task (`reactor.tasks`) parks
    on when its coroutine awaits an asyncio future (``await
    asyncio.sleep(1)``, ``await loop.run_in_executor(...)``).

    ``future``'s loop must be running: the loop the reactor is attached to
    (`attach_asyncio`, one thread), or a loop in another thread while the
    reactor runs in its own (`Reactor.run`); the outcome then crosses with
    `Reactor.call_soon_threadsafe`, the cancellation with
    ``loop.call_soon_threadsafe``.  A future of a loop that is not running
    could never complete: that raises `RuntimeError` here.
    """
    loop = future.get_loop()
    if not loop.is_running():
        raise RuntimeError(
            f"a reactor task cannot await an asyncio future of a loop that is not running ({future!r}): "
            "drive the reactor from that loop (reactor.embed.attach_asyncio) while the task awaits it"
        )
    target: Future[T] = reactor.create_future()

    def transfer(source: asyncio.Future[T]) -> None:  # on the loop's thread
        _call_on_reactor(reactor, _copy_from_asyncio, source, target)

    def cancelled(done: Future[T]) -> None:  # on the reactor's thread
        if not done.cancelled() or future.done():
            return
        if _running_loop() is loop:
            future.cancel()
            return
        try:
            loop.call_soon_threadsafe(future.cancel)
        except RuntimeError:  # the loop closed meanwhile
            pass

    target.add_done_callback(cancelled)
    if _running_loop() is loop:
        future.add_done_callback(transfer)
    else:
        loop.call_soon_threadsafe(future.add_done_callback, transfer)
    return target


def _copy_from_asyncio(source: asyncio.Future[T], target: Future[T]) -> None:
    if target.done():
        return
    if source.cancelled():
        target.cancel()
        return
    exc = source.exception()
    if exc is not None:
        target.set_exception(exc)
    else:
        target.set_result(source.result())
