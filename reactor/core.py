"""The reactor: file descriptor callbacks, timers, a ready queue, and one turn at a time.

`Reactor` is the loop, and `get_default_reactor` the process-wide one;
`Handle` and `TimerHandle` are what scheduling a callback returns, and
`ManualClock` is the clock tests inject so that they never sleep.  The
user's guide is ``docs/core.md``; why the loop is built as it is, with
its measurements, is in ``docs/design.md`` ("The core").
"""

from __future__ import annotations

import errno
import functools
import heapq
import inspect
import itertools
import logging
import selectors
import signal
import socket
import sys
import threading
import time as _time
import types
import warnings
from collections import deque
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, TypeVarTuple, overload

from ._wait import READ, WRITE, SelectorWait, Wait, default_wait
from .futures import Future, _turn

if TYPE_CHECKING:
    import concurrent.futures
    import ssl as _ssl
    from collections.abc import Iterable

    from .streams import AddressLike, Server, StreamTransport, TLSTransport
    from .tasks import Task

__all__ = [
    "Reactor",
    "Handle",
    "TimerHandle",
    "ManualClock",
    "FileLike",
    "get_default_reactor",
    "ReactorClosedError",
    "AddrInfo",
]

# What can go wrong in an event loop, and what we chose
# -----------------------------------------------------
# *Where user code runs.*  asyncio's ``_run_once`` is the model: a turn waits
# for I/O, then dispatches, and the turn is written down as a numbered spec
# (`Reactor.run_once`), as libuv does for ``uv_run``.  Waiting is the wait's
# (``reactor._wait``); dispatching is ours, and one loop, `Reactor._dispatch`,
# calls user code: it counts, calls, reports and times, for readers,
# writers, timers and ready callbacks alike.  Waiting is separate from
# dispatching, which is what makes embedding possible: a host loop waits on
# `Reactor.fileno()` for at most `Reactor.timeout()` seconds and calls
# ``run_once(0)``, and nothing is lost.
#
# *One table of fds.*  ``Reactor._io`` maps each fd to its reader and writer
# handles; the events the wait watches are those with a handle, and the wait
# is told only when that changes (a replaced callback costs no system call).
# An event collected by a wait goes to the handles in place when the wait
# ended, never to a stale one: the turn takes them all before it runs any
# callback, so one added during the turn (perhaps for a new socket that took
# the number of one a callback just closed) is not among them, and a removed
# or replaced handle is cancelled, so it is skipped.
#
# *Timers* live in a heap of ``(when, seq, handle)`` tuples; ``seq`` breaks
# ties in scheduling order.  Cancelling only marks the handle (O(1)); the heap
# is rebuilt in place without the dead entries when they are more than half
# of it, so scheduling and cancelling a million timers keeps a heap of a few
# hundred, not a million.  ``call_every`` keeps its cadence from the first due
# time (no drift) and, when the loop falls behind, skips missed beats instead
# of firing a burst.
#
# *Threads.*  Only `Reactor.call_soon_threadsafe` and `Reactor.stop` may be
# called from another thread.  They append to a deque (atomic in CPython) and
# write one byte to a socketpair the wait watches, so a reactor blocked in its
# wait wakes.  The same wakeup keeps the embedding contract honest: when host
# code (outside a turn) schedules a callback or a timer, the reactor's fd is
# made readable once, so a host that sleeps on `Reactor.fileno()` learns that
# `Reactor.timeout()` changed.  Inside a turn this costs nothing.
#
# *A broken wakeup socketpair* (someone closed or shut down one end: a library
# closing "all other fds", a stray ``os.close``) used to be fatal in two ways:
# the read end at EOF is readable forever, so the loop spun at 100 % CPU, and
# every ``send`` raised into ``call_soon_threadsafe``.  Now only the reactor's
# thread repairs the pair, inside a turn: it unregisters the old read end,
# closes both ends, registers a new pair, writes one byte to it (so a wakeup
# lost while the pair was broken is not lost), and logs one WARNING.  A thread
# whose ``send`` fails must not touch the wait, which is not thread-safe; it
# records which pair broke, shuts down that pair's write end and returns (the
# callback is already queued: the wakeup is best effort).  The shutdown is
# what makes this safe for a loop blocked in its wait with no timeout: EOF
# makes the read end readable, the loop wakes, finds EOF and repairs.  The one
# case that cannot wake it is a read end closed behind our back, which epoll
# silently forgets; then the repair happens at the start of the next turn,
# whatever starts it (I/O, a timer, a host's ``run_once``).  If the new pair
# cannot be created (out of fds), the old one is still taken out of the wait,
# so nothing spins, and the repair is retried every turn.
#
# *The watchdog* (``slow_callback_duration``).  A callback that blocks the
# loop for longer than the threshold is logged, once, with its name and
# duration, and counted in `Reactor.statistics`.  Naming the culprit is the
# hard part: timing each turn cannot say which of a slow turn's callbacks
# blocked, and no later work can recover that, because the durations were
# never observed (asyncio times each handle, but only in debug mode; trio
# leaves it to an optional instrument); "time each callback only after a slow
# turn" names the second offence, never a one-off in a busy turn, which is
# exactly what a server under load produces.  So `Reactor._dispatch` times every
# callback, with one clock read per callback, not two: the end of one callback
# is the start of the next, and the gap between them (a heap pop, a cancelled
# check) is charged to the next (the cost is measured in docs/design.md).  The
# reads use `time.perf_counter` (the module-level ``_perf_counter``, which
# tests patch), never the injected clock: a `ManualClock` does not move while
# a callback runs, and a user's clock may be coarse or slow; blocking is a
# fact about the host's wall time, not the reactor's timeline.  None turns
# the report off; the clock is still read, since a second dispatch path to
# save one read would cost more in review than it saves.
#
# *Signals* (`Reactor.add_signal_handler`) follow asyncio's unix loop: the
# process's wakeup fd (``signal.set_wakeup_fd``) is the write end of the wakeup
# pair, so the C-level handler writes the signal's number there and a reactor
# blocked in ``select`` wakes; the Python-level handler does nothing. The turn
# that drains the pair queues the callbacks of the numbers it reads (a
# ``call_soon`` wakeup writes a zero byte, which no signal has), so user code
# runs in a turn like any other callback, never in a signal handler's context.
# Only the main thread may change signal dispositions, so only it may add or
# remove handlers, and `close` restores what was there before. When the pair is
# repaired, the wakeup fd follows the new write end (a signal that arrives
# while the pair is broken is lost, as its byte is).
#
# *Errors.*  A callback that raises ``Exception`` is reported to the exception
# handler (by default: logged with its traceback on the ``reactor`` logger)
# and the loop goes on.  ``KeyboardInterrupt`` and ``SystemExit`` always
# escape.
#
# *Imports.*  At module level the core imports only ``futures`` and its wait;
# `Reactor.create_server`, `Reactor.create_connection` and `Reactor.request`
# import their surface when called.  The core never starts a thread itself:
# `Reactor.run_in_executor` and `Reactor.getaddrinfo` hand work to the
# transport layer's worker pool, which a reactor made with ``threads=False``
# never starts.  It is longer than our other modules because it holds the
# whole public surface of the loop with its docstrings, and the repair of its
# own wakeup.

logger = logging.getLogger("reactor")

T = TypeVar("T")
#: The arguments of a callback: ``call_soon(f, 1, "a")`` type-checks only if ``f(1, "a")`` does.
Ts = TypeVarTuple("Ts")
#: The protocol `create_connection` makes.
P = TypeVar("P")

_READ = READ
_WRITE = WRITE

#: The watchdog's clock: `time.perf_counter`, never the injected clock (see
#: the module docstring).  A module global so that tests can patch it.
_perf_counter: Callable[[], float] = _time.perf_counter

#: How many rounds of ready callbacks `Reactor.close` runs at most to let cancelled work unwind.
_CLOSE_ROUNDS = 100


class ReactorClosedError(ConnectionAbortedError):
    """The reactor was closed while the connection was open (given to ``connection_lost``)."""


#: Rebuild the timer heap when cancelled entries exceed this many *and* half of it.
_MIN_CANCELLED_FOR_COMPACTION = 100


_NO_HANDLES: tuple[None, None] = (None, None)


class FileLike(Protocol):
    """Anything with a ``fileno()`` method (sockets, pipes, files)."""

    def fileno(self) -> int:
        """The file descriptor to watch."""
        ...


def _fileno(fd: int | FileLike) -> int:
    if isinstance(fd, int):
        n = fd
    else:
        try:
            n = int(fd.fileno())
        except (AttributeError, TypeError, ValueError):
            raise ValueError(f"invalid file object: {fd!r} (need an int or an object with fileno())") from None
    if n < 0:
        raise ValueError(f"invalid file descriptor: {fd!r} (closed?)")
    return n


def _callback_name(callback: object) -> str:
    """``module.qualname`` of a callback, for logs; a bound method is named by its instance's class."""
    func = callback
    while isinstance(func, functools.partial):
        func = func.func
    owner = getattr(func, "__self__", None)
    name = getattr(func, "__name__", None)
    if owner is not None and name is not None and not isinstance(owner, types.ModuleType):
        cls = owner if isinstance(owner, type) else type(owner)
        return f"{cls.__module__}.{cls.__qualname__}.{name}"
    qualname = getattr(func, "__qualname__", None)
    if not isinstance(qualname, str):  # an instance with __call__
        cls = type(func)
        return f"{cls.__module__}.{cls.__qualname__}"
    module = getattr(func, "__module__", None)
    return f"{module}.{qualname}" if module else qualname


#: Signals no process can catch.
_UNCATCHABLE = frozenset(getattr(signal, name) for name in ("SIGKILL", "SIGSTOP") if hasattr(signal, name))


def _ignore_signal(signum: int, frame: object) -> None:
    """The Python-level handler of a signal the reactor handles: its C-level handler already wrote the wakeup."""


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _check_signal(sig: object) -> int:
    """``sig`` as an int, if it is a signal of this platform."""
    if not isinstance(sig, int) or isinstance(sig, bool):
        raise TypeError(f"sig must be a signal number, got {sig!r}")
    if sig not in signal.valid_signals():
        raise ValueError(f"{sig!r} is not a signal number of this platform")
    return int(sig)


def _check_main_thread(method: str) -> None:
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(
            f"{method}() works only in the main thread (Python delivers signals there); "
            f"called from {threading.current_thread().name}"
        )


class ManualClock:
    """A clock that moves only when told to: inject it for tests that never sleep.

    >>> clock = ManualClock()
    >>> r = Reactor(clock=clock)
    >>> clock.advance(5.0)   # five seconds pass, instantly
    """

    __slots__ = ("now",)

    def __init__(self, start: float = 0.0) -> None:
        self.now = float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (never backward)."""
        if seconds < 0:
            raise ValueError("a monotonic clock cannot go backward")
        self.now += seconds


class Handle:
    """A scheduled callback; `cancel()` it to stop it from running."""

    __slots__ = ("_callback", "_args", "_cancelled", "__weakref__")

    def __init__(self, callback: Callable[..., object], args: tuple[Any, ...]) -> None:
        self._callback = callback
        self._args = args
        self._cancelled = False

    def __repr__(self) -> str:
        state = " cancelled" if self._cancelled else ""
        return f"<{type(self).__name__}{state} {getattr(self._callback, '__qualname__', self._callback)!r}>"

    def cancel(self) -> None:
        """Prevent the callback from running (a no-op if it already ran)."""
        self._cancelled = True

    def cancelled(self) -> bool:
        """True once `cancel()` was called."""
        return self._cancelled


class TimerHandle(Handle):
    """A callback scheduled at a time (``call_later``/``call_at``/``call_every``)."""

    __slots__ = ("when", "interval", "_reactor", "_in_heap")

    def __init__(
        self,
        when: float,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        reactor: Reactor,
        interval: float | None = None,
    ) -> None:
        super().__init__(callback, args)
        #: The reactor time at which the callback is (next) due.
        self.when = when
        #: The period of a ``call_every`` timer, None for a one-shot timer.
        self.interval = interval
        self._reactor = reactor
        self._in_heap = False

    def cancel(self) -> None:
        """Prevent the callback from running again; O(1) (removal is lazy)."""
        if not self._cancelled:
            self._cancelled = True
            if self._in_heap:
                self._reactor._timer_cancelled()


ExceptionHandler = Callable[["Reactor", dict[str, Any]], object]

#: One entry of `socket.getaddrinfo`'s list: ``(family, type, proto, canonname, sockaddr)``.
AddrInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[Any, ...]]

#: Platforms whose Python cannot start threads at all.
_NO_THREAD_PLATFORMS = frozenset({"emscripten", "wasi"})


def _threads_default() -> bool:
    """Threads are allowed unless the platform has none."""
    return sys.platform not in _NO_THREAD_PLATFORMS


# The task class, imported by the first create_task (tasks sits above the
# core).  A function-level ``from .tasks import Task`` costs 2.5 us a call
# (timeit, Python 3.11; the cached class 0.07 us), as much as the whole first
# step of a task that awaits nothing.
_task_class: Any = None


def _load_task_class() -> Any:
    global _task_class
    from .tasks import Task

    _task_class = Task
    return Task


class Reactor:
    """A single-threaded event reactor: file descriptor callbacks, timers and a ready queue.

    ``Reactor(clock=None, selector=None, slow_callback_duration=0.1)``:
    ``clock`` is a zero-argument callable returning monotonic seconds (default
    `time.monotonic`; inject a `ManualClock` in tests); without a
    ``selector`` the reactor waits with ``epoll`` and ``poll`` of its own
    where there are both (Linux), else with `selectors.DefaultSelector`; a
    `selectors.BaseSelector` passed as ``selector`` is used through its
    ``select()`` (and closed with the reactor);
    ``slow_callback_duration`` is the watchdog's threshold in seconds (None:
    off), also a settable attribute.  ``threads=False`` forbids the reactor
    to start threads (see `threads`); the default allows them except where
    the platform has none (Emscripten, WASI).

    Methods for the owner thread: everything.  Methods safe from any thread:
    `call_soon_threadsafe` and `stop`.  The reactor is a context manager that
    closes itself.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] | None = None,
        selector: selectors.BaseSelector | None = None,
        slow_callback_duration: float | None = 0.1,
        threads: bool | None = None,
    ) -> None:
        self._slow_threshold = float("inf")  # what the turn compares; inf when off
        self.slow_callback_duration = slow_callback_duration  # validates: first, before any resource
        self._clock: Callable[[], float] = clock if clock is not None else _time.monotonic
        # The kernel's side (see `reactor._wait`): which events of which fds are watched.
        self._wait: Wait = default_wait() if selector is None else SelectorWait(selector)
        # The one table of fds: fd -> (reader handle, writer handle), for
        # every registration but the wakeup socket's.  The events the wait
        # watches are those with a handle.
        self._io: dict[int, tuple[Handle | None, Handle | None]] = {}
        self._ready: deque[Handle] = deque()
        self._timers: list[tuple[float, int, TimerHandle]] = []
        self._timer_cancelled_count = 0
        self._seq = itertools.count()
        self._stopping = False
        self._closed = False
        self._in_turn = False
        self._running_thread: int | None = None
        self._exception_handler: ExceptionHandler | None = None
        self._wakeup_pending = False
        # Why the wakeup pair is broken, while it waits for the reactor's
        # thread to repair it (`_repair_wakeup`); None while it works.
        self._wake_error: str | None = None
        self._turns = 0
        self._callbacks_run = 0
        self._slow_callbacks = 0
        self._slowest_callback = 0.0
        self._wakeup_repairs = 0
        #: The connection table: fd -> connection row.  Server and client
        #: layers add a row per accepted or outgoing stream connection and
        #: remove it when the connection closes; timeouts, limits, graceful
        #: shutdown and introspection all read it.  The core only holds it.
        self.connections: dict[int, Any] = {}
        # May this reactor start threads (its worker pool)?  See `threads`.
        self._threads = _threads_default() if threads is None else bool(threads)
        self._worker_pool: Any = None  # created by the first job that needs it
        self._blocking_lookup_warned = False
        # The pending tasks (reactor.tasks.Task), strongly held: `close` cancels them.
        self._tasks: set[Any] = set()
        # The task whose coroutine is being stepped now (set by reactor.tasks), or None.
        self._current_task: Any = None
        # True during a turn that set `reactor.futures._turn` (`_enter_task_turn`),
        # whose value before is kept to restore at the turn's end.
        self._task_turn = False
        self._turn_outer: Reactor | None = None
        # True while `run()` holds `reactor.futures._turn` for its whole length:
        # its turns then need not write the thread-local (see `_enter_task_turn`).
        self._turn_held = False
        # Signal number -> its handle (`add_signal_handler`); what each had
        # before, and the wakeup fd before the first one, to restore.
        self._signal_handlers: dict[int, Handle] = {}
        self._signal_previous: dict[int, Any] = {}
        self._signal_previous_fd = -1
        self._wake_r, self._wake_w = self._new_wakeup_pair()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("running" if self._running_thread else "idle")
        return f"<Reactor {state} fds={self._registered_fds()} timers={len(self._timers)}>"

    @property
    def slow_callback_duration(self) -> float | None:
        """Seconds a callback may block the loop before it is logged and counted; None: off."""
        threshold = self._slow_threshold
        return None if threshold == float("inf") else threshold

    @slow_callback_duration.setter
    def slow_callback_duration(self, seconds: float | None) -> None:
        if seconds is None:
            self._slow_threshold = float("inf")
        elif seconds > 0 and seconds != float("inf"):
            self._slow_threshold = float(seconds)
        else:
            raise ValueError(f"slow_callback_duration must be a positive number of seconds or None, got {seconds!r}")

    def statistics(self) -> dict[str, int | float]:
        """Counters and gauges of this reactor, for monitoring and tests.

        ``turns`` and ``callbacks`` (run) since creation; ``slow_callbacks``
        (over ``slow_callback_duration``) and ``slowest_callback`` (seconds,
        the longest of those, 0.0 if none); ``timers`` scheduled and not
        cancelled; ``ready`` callbacks queued; ``fds`` registered (the
        wakeup socket excluded); ``wakeup_repairs``; ``connections``, the rows
        of the connection table, and ``connections_<state>`` for each state
        present (the row's ``state`` attribute, lower case).
        """
        stats: dict[str, int | float] = {
            "turns": self._turns,
            "callbacks": self._callbacks_run,
            "slow_callbacks": self._slow_callbacks,
            "slowest_callback": self._slowest_callback,
            "timers": len(self._timers) - self._timer_cancelled_count,
            "ready": len(self._ready),
            "fds": self._registered_fds(),
            "wakeup_repairs": self._wakeup_repairs,
            "connections": len(self.connections),
        }
        for row in list(self.connections.values()):
            key = f"connections_{str(getattr(row, 'state', 'unknown')).lower()}"
            stats[key] = stats.get(key, 0) + 1
        return stats

    def _registered_fds(self) -> int:
        if self._closed:
            return 0
        return len(self._io)

    # ------------------------------------------------------------------ time

    def time(self) -> float:
        """The reactor's monotonic clock, in seconds."""
        return self._clock()

    # ------------------------------------------------------------- callbacks

    def _check_closed(self) -> None:
        if self._closed:
            raise RuntimeError("this Reactor is closed; create a new one")

    def call_soon(self, callback: Callable[[*Ts], object], *args: *Ts) -> Handle:
        """Run ``callback(*args)`` in the next turn, after those already queued."""
        if self._closed:
            self._check_closed()
        handle = Handle(callback, args)
        self._ready.append(handle)
        if not self._in_turn:
            self._wake_host()
        return handle

    def call_soon_threadsafe(self, callback: Callable[[*Ts], object], *args: *Ts) -> Handle:
        """Like `call_soon`, from any thread; wakes a reactor blocked on I/O."""
        self._check_closed()
        handle = Handle(callback, args)
        self._ready.append(handle)
        self._write_wakeup()
        return handle

    def call_later(self, delay: float, callback: Callable[[*Ts], object], *args: *Ts) -> TimerHandle:
        """Run ``callback(*args)`` ``delay`` seconds from now."""
        return self.call_at(self._clock() + delay, callback, *args)

    def call_at(self, when: float, callback: Callable[[*Ts], object], *args: *Ts) -> TimerHandle:
        """Run ``callback(*args)`` when `time()` reaches ``when``."""
        if self._closed:
            self._check_closed()
        timer = TimerHandle(when, callback, args, self)
        self._push_timer(timer)
        return timer

    def call_every(self, interval: float, callback: Callable[[*Ts], object], *args: *Ts) -> TimerHandle:
        """Run ``callback(*args)`` every ``interval`` seconds until cancelled.

        The first call is one interval from now; later calls keep that cadence
        (due times are ``start + k * interval``, so there is no drift).  If the
        reactor falls behind by more than an interval, the missed beats are
        skipped rather than fired in a burst: the next call is at the next
        beat still in the future.  Cancel the returned handle to stop.
        """
        if not interval > 0:
            raise ValueError(f"call_every interval must be > 0, got {interval!r}")
        self._check_closed()
        timer = TimerHandle(self._clock() + interval, callback, args, self, interval)
        self._push_timer(timer)
        return timer

    def _push_timer(self, timer: TimerHandle) -> None:
        timer._in_heap = True
        heapq.heappush(self._timers, (timer.when, next(self._seq), timer))
        if not self._in_turn:
            self._wake_host()

    def _timer_cancelled(self) -> None:
        self._timer_cancelled_count += 1
        n = self._timer_cancelled_count
        if n > _MIN_CANCELLED_FOR_COMPACTION and n * 2 > len(self._timers):
            # In place: a turn running the due timers holds this list.
            timers = self._timers
            for entry in timers:
                if entry[2]._cancelled:
                    entry[2]._in_heap = False
            timers[:] = [entry for entry in timers if not entry[2]._cancelled]
            heapq.heapify(timers)
            self._timer_cancelled_count = 0

    # ------------------------------------------------------------------ I/O

    def add_reader(self, fd: int | FileLike, callback: Callable[[*Ts], object], *args: *Ts) -> None:
        """Call ``callback(*args)`` whenever ``fd`` is readable (replaces any reader)."""
        self._check_closed()
        self._add_io(_fileno(fd), _READ, Handle(callback, args))

    def add_writer(self, fd: int | FileLike, callback: Callable[[*Ts], object], *args: *Ts) -> None:
        """Call ``callback(*args)`` whenever ``fd`` is writable (replaces any writer)."""
        self._check_closed()
        self._add_io(_fileno(fd), _WRITE, Handle(callback, args))

    def remove_reader(self, fd: int | FileLike) -> bool:
        """Stop watching ``fd`` for reading; True if a reader was registered."""
        if self._closed:
            return False
        return self._remove_io(_fileno(fd), _READ)

    def remove_writer(self, fd: int | FileLike) -> bool:
        """Stop watching ``fd`` for writing; True if a writer was registered."""
        if self._closed:
            return False
        return self._remove_io(_fileno(fd), _WRITE)

    def _add_io(self, fd: int, event: int, handle: Handle) -> None:
        # A handle that is replaced or removed is cancelled, and a turn takes
        # the handles of its events before it runs any callback (`_ready_io`):
        # either way an event that the turn's wait collected before the change
        # is not delivered to it (the fd may have been closed, or even reused
        # by a new socket, in between).
        if fd == self._wake_fd:
            raise ValueError("that file descriptor is the reactor's own wakeup socket")
        old = self._io.get(fd)
        if old is None:
            self._wait.register(fd, event)
            self._io[fd] = (handle, None) if event == _READ else (None, handle)
        else:
            reader, writer = old
            if event == _READ:
                replaced, reader = reader, handle
            else:
                replaced, writer = writer, handle
            if replaced is None:  # a new event to watch
                self._watch(fd, reader, writer)
            else:  # a replaced callback: the wait is not told
                replaced._cancelled = True
                self._io[fd] = (reader, writer)
        if not self._in_turn:
            self._wake_host()

    def _remove_io(self, fd: int, event: int) -> bool:
        old = self._io.get(fd)  # never the wakeup socket's
        if old is None:
            return False
        reader, writer = old
        if event == _READ:
            removed, reader = reader, None
        else:
            removed, writer = writer, None
        if removed is None:
            return False
        removed._cancelled = True
        if reader is None and writer is None:
            del self._io[fd]
            self._wait.unregister(fd)
        else:
            self._watch(fd, reader, writer)
        return True

    def _watch(self, fd: int, reader: Handle | None, writer: Handle | None) -> None:
        # A registered fd's new handles, and the events they need watched.
        try:
            self._wait.modify(fd, (_READ if reader else 0) | (_WRITE if writer else 0))
        except BaseException:
            # The wait drops an fd whose modify failed (closed behind our back): so does the table.
            if fd not in self._wait.registrations():
                self._io.pop(fd, None)
            raise
        self._io[fd] = (reader, writer)

    # ------------------------------------------------------------- wakeups

    def _new_wakeup_pair(self) -> tuple[socket.socket, socket.socket]:
        r, w = socket.socketpair()
        try:
            r.setblocking(False)
            w.setblocking(False)
            self._wait.register(r.fileno(), _READ)
        except BaseException:
            r.close()
            w.close()
            raise
        self._wake_fd = r.fileno()
        return r, w

    def _write_wakeup(self) -> None:
        # Any thread.  Never raises: the caller's callback is already queued.
        w = self._wake_w
        try:
            w.send(b"\0")
        except (BlockingIOError, InterruptedError):
            pass  # the buffer is full: the reactor is already going to wake
        except OSError as exc:
            if self._closed or w is not self._wake_w:
                return  # closing, or the reactor's thread already replaced the pair
            if self._wake_error is None:
                self._wake_error = f"send failed: {exc}"
            # Not ours to repair from here (the wait is not thread-safe);
            # EOF on the read end wakes a loop blocked in its wait to repair it.
            try:
                w.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def _wake_host(self) -> None:
        # Called when host code (outside a turn) schedules work: make fileno()
        # readable once so a host sleeping on it re-reads timeout().
        if not self._wakeup_pending and not self._closed:
            self._wakeup_pending = True
            self._write_wakeup()

    def _drain_wakeup(self) -> None:
        self._wakeup_pending = False
        try:
            while data := self._wake_r.recv(4096):
                if self._signal_handlers and data.strip(b"\0"):
                    self._signals_arrived(data)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            reason = f"recv failed: {exc}"
        else:
            reason = "its read end is at end of file"
        if self._wake_error is None:
            self._wake_error = reason
        self._repair_wakeup()

    def _repair_wakeup(self) -> None:
        # The reactor's thread only: replace a broken wakeup pair (see the
        # module docstring).  Unregister, then close, then register the new one.
        reason = self._wake_error
        if self._wake_fd >= 0:
            try:
                self._wait.unregister(self._wake_fd)
            except (KeyError, ValueError, OSError):
                pass
            self._wake_fd = -1
            self._point_signal_wakeup(-1)  # before the close: the fd's number may be reused
            self._wake_r.close()
            self._wake_w.close()
            first = True
        else:
            first = False  # a retry after a failed recreation, already logged
        try:
            self._wake_r, self._wake_w = self._new_wakeup_pair()
        except OSError as exc:
            if first:
                logger.warning(
                    "the reactor's wakeup socketpair broke (%s) and cannot be recreated (%s); "
                    "retrying every turn, meanwhile other threads cannot wake a blocked reactor",
                    reason,
                    exc,
                )
            return
        self._wake_error = None
        self._point_signal_wakeup(self._wake_w.fileno())
        self._wakeup_repairs += 1
        if first:
            logger.warning("the reactor's wakeup socketpair broke (%s); recreated it", reason)
        else:
            logger.info("the reactor's wakeup socketpair is recreated")
        # Whatever wakeup was lost while the pair was broken, deliver one now.
        self._wakeup_pending = True
        self._write_wakeup()

    # ------------------------------------------------------------- signals
    # See "Signals" in the module docstring.

    def add_signal_handler(self, sig: int, callback: Callable[[*Ts], object], *args: *Ts) -> None:
        """Call ``callback(*args)`` in a turn of this reactor each time signal ``sig`` arrives.

        asyncio's method: a second call for the same signal replaces the
        callback.  The signal wakes a reactor blocked in its wait (through
        its wakeup socket, made the process's ``signal.set_wakeup_fd``), and
        the callback runs in the next turn, never inside the signal handler.
        From the main thread only (`RuntimeError` elsewhere, as for a
        signal that cannot be caught, SIGKILL and SIGSTOP); `ValueError`
        for a number that is no signal; `TypeError` for a coroutine
        function (wrap it: ``lambda: reactor.create_task(coro())``).
        `remove_signal_handler` and `close` restore the previous handler
        and wakeup fd.
        """
        self._check_closed()
        sig = _check_signal(sig)
        if inspect.iscoroutinefunction(callback) or inspect.iscoroutine(callback):
            raise TypeError("a coroutine function cannot be a signal handler; give a plain callable that starts it")
        if not callable(callback):
            raise TypeError(f"signal handler must be callable, got {callback!r}")
        _check_main_thread("add_signal_handler")
        if sig in _UNCATCHABLE:
            raise RuntimeError(f"{_signal_name(sig)} cannot be caught")
        handlers = self._signal_handlers
        first = not handlers
        if first:
            self._signal_previous_fd = signal.set_wakeup_fd(self._wake_w.fileno())
        try:
            previous = signal.signal(sig, _ignore_signal)
            signal.siginterrupt(sig, False)  # SA_RESTART: other system calls of the process go on
        except (OSError, ValueError) as exc:
            if first:
                signal.set_wakeup_fd(self._signal_previous_fd)
                self._signal_previous_fd = -1
            raise RuntimeError(f"cannot handle {_signal_name(sig)}: {exc}") from None
        old = handlers.get(sig)
        if old is None:
            self._signal_previous[sig] = previous
        else:
            old._cancelled = True
        handlers[sig] = Handle(callback, args)

    def remove_signal_handler(self, sig: int) -> bool:
        """Stop handling ``sig``; True if it had a handler.  Restores the handler it had before.

        The last removal also restores the wakeup fd that was there before
        the first `add_signal_handler`.  From the main thread only.
        """
        sig = _check_signal(sig)
        _check_main_thread("remove_signal_handler")
        handle = self._signal_handlers.pop(sig, None)
        if handle is None:
            return False
        handle._cancelled = True
        previous = self._signal_previous.pop(sig)
        if signal.getsignal(sig) is _ignore_signal:  # unless someone replaced ours since
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        if not self._signal_handlers:
            mine = self._wake_w.fileno() if self._wake_fd >= 0 else -1
            current = signal.set_wakeup_fd(self._signal_previous_fd)
            if current not in (mine, -1):  # someone took the wakeup fd since: theirs now
                signal.set_wakeup_fd(current)
            self._signal_previous_fd = -1
        return True

    def _remove_signal_handlers(self) -> None:
        # From close(): restore every signal's previous handler, or refuse to close.
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError(
                "this Reactor handles signals: close it from the main thread, or remove its signal handlers there first"
            )
        for sig in list(self._signal_handlers):
            self.remove_signal_handler(sig)

    def _signals_arrived(self, data: bytes) -> None:
        # In a turn: queue the callbacks of the signal numbers read from the wakeup socket.
        handlers = self._signal_handlers
        for sig in data:
            handle = handlers.get(sig)
            if handle is not None:
                self._ready.append(handle)

    def _point_signal_wakeup(self, fd: int) -> None:
        # The wakeup pair is being replaced: the process's wakeup fd follows it.
        if not self._signal_handlers:
            return
        try:
            signal.set_wakeup_fd(fd)
        except ValueError as exc:  # not the main thread: signals wake this reactor no more
            logger.warning("the reactor's signal wakeup cannot follow its new wakeup socket: %s", exc)

    # ------------------------------------------------------------- running

    def timeout(self) -> float | None:
        """Seconds until the reactor needs a turn even without I/O.

        0 when callbacks are ready, None when nothing is scheduled.  With
        `fileno()` this is the embedding contract: wait on ``fileno()`` for at
        most ``timeout()`` seconds, then call ``run_once(0)``.
        """
        if self._ready:
            return 0.0
        timers = self._timers
        while timers and timers[0][2]._cancelled:
            heapq.heappop(timers)[2]._in_heap = False
            self._timer_cancelled_count -= 1
        if not timers:
            return None
        return max(0.0, timers[0][0] - self._clock())

    def fileno(self) -> int:
        """A file descriptor that is readable whenever the reactor has I/O to process.

        It is also made readable when callbacks are scheduled from another
        thread or by host code outside a turn.  A selector passed to the
        reactor must have a pollable fd (epoll, kqueue, devpoll), as the
        defaults on Linux, macOS and BSD do; otherwise this raises `RuntimeError`.
        """
        self._check_closed()
        return self._wait.fileno()

    def run_once(self, timeout: float | None = None) -> int:
        """Do exactly one turn; return how many callbacks ran.

        Waits at most ``timeout`` seconds for I/O (None: until something
        happens or a timer is due; 0: not at all), then runs ready I/O
        callbacks, due timers, and the callbacks queued before the turn
        began.  In order:

        1. Count the callbacks that are ready now (`call_soon`); only those
           run in this turn, so a callback that reschedules itself cannot
           starve I/O.
        2. Work out how long to wait: 0 if anything is ready, else until
           the earliest timer, capped by ``timeout``.
        3. Wait for I/O once.
        4. Run the callbacks of the ready file descriptors, reader then
           writer.  A reader or writer removed or replaced since the wait
           is not called for its event.
        5. Run every timer whose due time has come, in order of due time,
           ties in scheduling order.
        6. Run the callbacks counted in step 1.

        A callback that raises ``Exception`` is reported (see
        `set_exception_handler`) and the turn goes on; ``KeyboardInterrupt``
        and ``SystemExit`` escape.
        """
        self._check_closed()
        if self._in_turn:
            raise RuntimeError("run_once() called from inside a reactor callback")
        if self._wake_error is not None:
            self._repair_wakeup()
        ready = self._ready
        ntodo = len(ready)
        if ntodo:
            wait: float | None = 0.0
        else:
            wait = self.timeout()
            if timeout is not None and (wait is None or timeout < wait):
                wait = max(0.0, timeout)
        # Not yet "in a turn" while waiting: a signal handler that runs during
        # the wait and schedules work or calls stop() must write the wakeup.
        events = self._wait.wait(wait)
        self._in_turn = True
        self._turns += 1
        before = self._callbacks_run
        if self._tasks:
            self._enter_task_turn()
        start = _perf_counter()  # the watchdog's: see `_dispatch`
        try:
            if events:
                start = self._dispatch(self._ready_io(events), start)
            if self._timers:
                start = self._dispatch(self._due_timers(), start)
            if ntodo:
                popleft = ready.popleft
                self._dispatch([popleft() for _ in range(ntodo)], start)
        finally:
            self._in_turn = False
            if self._task_turn:  # entered above, or by a task started eagerly in this turn
                self._task_turn = False
                if not self._turn_held:
                    _turn.reactor = self._turn_outer
                    self._turn_outer = None
        return self._callbacks_run - before

    def _enter_task_turn(self) -> None:
        # This turn steps tasks: `reactor.futures._turn` names this reactor (for
        # reactor.tasks.current_task) until the turn ends, and a parked task may
        # be stepped from an I/O callback.  Only while the reactor has tasks, or
        # from the first eager task step of the turn (reactor.tasks): a
        # thread-local write costs what a third of a plain callback does, so
        # plain servers never pay it, and a turn pays it once; a turn of
        # `run()`, which holds it throughout, not at all.
        self._task_turn = True
        if self._turn_held:
            return
        turn = _turn
        self._turn_outer = turn.reactor
        turn.reactor = self

    def _dispatch(self, handles: list[Handle], start: float) -> float:
        # The one place where the turn calls user code, for readers, writers,
        # timers and ready callbacks alike (asyncio's ``Handle._run``): skip a
        # cancelled handle, count, call, report an Exception (KeyboardInterrupt
        # and SystemExit escape), time.  ``start`` is when the previous
        # callback ended; the return value is when the last one did: one clock
        # read per callback (see the module docstring).  A loop over a list
        # rather than a method per callback: the call cost 4-7 % of server CPU
        # per request on persistent connections (`python -m benchmarks`,
        # reactor-lines c=64, A/B against the tree before; docs/design.md).
        ran = 0
        slow = self._slow_threshold
        handle: Handle | None = None
        try:
            for handle in handles:
                if handle._cancelled:
                    continue
                ran += 1
                callback = handle._callback
                args = handle._args
                try:
                    if args:
                        callback(*args)
                    else:  # a reader or writer, most of the time: a plain call, not CALL_FUNCTION_EX
                        callback()
                except Exception as exc:
                    self._report(exc, callback)
                end = _perf_counter()
                if end - start > slow:
                    end = self._slow_callback(callback, end - start)
                start = end
        except BaseException:
            # KeyboardInterrupt or SystemExit leaves the turn: the handles this
            # step took and has not run yet go first into the next turn, so
            # nothing is lost (a reader run then without its event finds
            # nothing to read, as a spurious wakeup does).
            done = handles.index(handle) + 1 if handle is not None else 0
            self._ready.extendleft(reversed(handles[done:]))
            raise
        finally:
            self._callbacks_run += ran
        return start

    def _ready_io(self, events: list[tuple[int, int]]) -> list[Handle]:
        # Step 4: the handles of the ready fds, reader then writer, taken
        # before any of them runs: a handle added during the turn (perhaps
        # for a new socket that took the number of one a callback just
        # closed) is not among them, and one removed or replaced by an
        # earlier callback is cancelled, so `_dispatch` skips it.
        wait = self._wait
        readable, writable, invalid = wait.READABLE, wait.WRITABLE, wait.INVALID
        wake_fd = self._wake_fd
        get_io = self._io.get
        handles: list[Handle] = []
        append = handles.append
        for fd, bits in events:
            if fd == wake_fd:
                self._drain_wakeup()
            elif bits & invalid:
                self._closed_while_registered(fd)
            else:
                reader, writer = get_io(fd, _NO_HANDLES)
                if reader is not None and bits & readable:
                    append(reader)
                if writer is not None and bits & writable:
                    append(writer)
        return handles

    def _due_timers(self) -> list[Handle]:
        # Step 5: every timer due by now, in order of due time, ties in
        # scheduling order.  A timer that one of them schedules for now runs
        # in the next turn, as in asyncio.
        now = self._clock()
        timers = self._timers  # compacted in place (`_timer_cancelled`), so this stays the heap
        due: list[Handle] = []
        while timers and timers[0][0] <= now:
            timer = heapq.heappop(timers)[2]
            timer._in_heap = False
            if timer._cancelled:
                self._timer_cancelled_count -= 1
            else:
                if timer.interval is not None:
                    self._reschedule(timer, now)
                due.append(timer)
        return due

    def _closed_while_registered(self, fd: int) -> None:
        # poll(2) says fd is not open: it was closed while registered, which
        # epoll forgets silently.  Stop watching it and say so once.
        self._wait.forget_closed(fd)
        names = [_callback_name(h._callback) for h in self._io.get(fd, _NO_HANDLES) if h is not None]
        logger.warning(
            "fd %d was closed while still registered with the reactor (callbacks: %s); it is no longer "
            "watched: remove its reader and writer before closing it",
            fd,
            ", ".join(names) or "none",
        )

    def _slow_callback(self, callback: object, seconds: float) -> float:
        # Returns the clock after logging, so the log is not charged to the next callback.
        self._slow_callbacks += 1
        if seconds > self._slowest_callback:
            self._slowest_callback = seconds
        logger.warning(
            "callback %s blocked the loop for %.3f s (slow_callback_duration is %g s)",
            _callback_name(callback),
            seconds,
            self._slow_threshold,
        )
        return _perf_counter()

    def _reschedule(self, timer: TimerHandle, now: float) -> None:
        interval = timer.interval
        assert interval is not None
        when = timer.when + interval
        if when <= now:  # fell behind: skip the missed beats
            when += interval * ((now - when) // interval + 1)
        timer.when = when
        timer._in_heap = True
        heapq.heappush(self._timers, (when, next(self._seq), timer))

    def run(self) -> None:
        """Run turns until `stop()` is called (from a callback or another thread)."""
        self._check_closed()
        if self._running_thread is not None:
            raise RuntimeError("this Reactor is already running")
        self._running_thread = threading.get_ident()
        # This thread is this reactor's until run() returns: name it in
        # `reactor.futures._turn` once, not in every turn that steps tasks.
        # Between turns no task is being stepped, so current_task() is None
        # and get_running_reactor() raises there, as before.
        outer = _turn.reactor
        _turn.reactor = self
        self._turn_held = True
        try:
            while True:
                self.run_once(0 if self._stopping else None)
                if self._stopping:
                    break
        finally:
            self._turn_held = False
            _turn.reactor = outer
            self._stopping = False
            self._running_thread = None

    def stop(self) -> None:
        """Make `run()` return after the current turn.  Safe from any thread.

        As in asyncio, a `stop()` while nothing runs makes the next `run()`
        do one turn without waiting (serving what is ready) and return.
        """
        self._stopping = True
        running = self._running_thread
        if running is not None and (running != threading.get_ident() or not self._in_turn):
            # Another thread, or a signal handler interrupting the wait: wake it.
            self._write_wakeup()

    @property
    def thread_ident(self) -> int | None:
        """The ident of the thread inside `run()`, or None when not running."""
        return self._running_thread

    def is_running(self) -> bool:
        """True while `run()` is executing."""
        return self._running_thread is not None

    def is_closed(self) -> bool:
        """True once `close()` was called."""
        return self._closed

    def run_until_complete(self, future: Future[T] | Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run turns until ``future`` is done; return its result (or raise its exception).

        Raises `TimeoutError` if ``timeout`` seconds of reactor time pass first
        (the future itself is left untouched).  A coroutine is run as a task
        (`create_task`); on `TimeoutError` that task is cancelled and run
        until it has finished cancelling, then the error is raised.
        """
        self._check_closed()
        if not isinstance(future, Future):
            from .tasks import _run_coroutine

            return _run_coroutine(self, future, timeout)
        if future.reactor is not self:
            raise ValueError("that future belongs to another reactor")
        if timeout is not None and timeout != timeout:
            raise ValueError("timeout is nan: give a number of seconds, or None for no timeout")
        deadline = None if timeout is None else self._clock() + timeout
        while not future.done():
            if deadline is None:
                self.run_once(None)
            else:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    raise TimeoutError(f"the future did not complete within {timeout} s")
                self.run_once(remaining)
        return future.result()

    def create_future(self) -> Future[Any]:
        """A new pending `Future` bound to this reactor."""
        self._check_closed()
        return Future(self)

    def create_task(
        self, coro: Coroutine[Any, Any, T], *, name: object = None, eager_start: bool = False
    ) -> Task[T]:
        """Run the coroutine ``coro`` as a `reactor.tasks.Task` on this reactor; see `reactor.tasks`.

        ``eager_start``: run its first step now, inside this call, rather
        than in the next turn; a coroutine that does not suspend is done
        when this returns (asyncio 3.12's ``eager_start``).
        """
        task_class = _task_class if _task_class is not None else _load_task_class()
        task: Task[T] = task_class(coro, self, name=name, eager_start=eager_start)
        return task

    # ------------------------------------------------------ surfaces (late-bound)
    # The core never imports a protocol at module level; these methods import
    # their surface when called, so the layers stay clean and the methods are
    # still real methods that type checkers and IDEs see.

    # The options are spelled out (for type checkers, help() and the
    # reference), with the defaults of the functions they call;
    # tests/test_api_conventions.py fails when the two disagree.

    def create_server(
        self,
        protocol_factory: Callable[[], object],
        address: AddressLike,
        *,
        backlog: int = socket.SOMAXCONN,
        max_connections: int = 1024,
        idle_timeout: float | None = None,
        timeout: float | None = None,
        max_read: int = 64 * 1024,
        write_buffer_high: int = 64 * 1024,
        write_buffer_low: int | None = None,
        reuse_port: bool = False,
        accept_backoff: float = 0.1,
        ssl: _ssl.SSLContext | None = None,
        ssl_handshake_timeout: float | None = 10.0,
        proxy_protocol: bool = False,
        trusted_proxies: Iterable[str] = ("127.0.0.1", "::1"),
    ) -> Server:
        """Listen on ``address`` and serve each connection with a new ``protocol_factory()``; a `Server`.

        ``address``: ``'host:port'`` (port 0: the OS chooses, see
        ``Server.address``), ``'[::1]:port'``, ``'unix:/path'``, or a
        ``(host, port)`` tuple.  The server is listening when this returns.
        ``idle_timeout`` closes a connection after that many seconds without
        progress either way, ``timeout`` that many seconds after it was
        accepted (None: never; otherwise a number larger than 0).
        ``max_connections``: at the limit the server stops accepting until one
        closes.  ``write_buffer_high``/``write_buffer_low``: the water marks
        for ``pause_writing``/``resume_writing``.  ``ssl``: serve TLS with that
        server-side context (a client that has not finished its handshake
        within ``ssl_handshake_timeout`` seconds is closed).
        ``proxy_protocol``: read a PROXY protocol header first, from the peers
        in ``trusted_proxies`` only.  ``docs/streams.md`` has the details.
        """
        from .streams import _create_server

        return _create_server(
            self, protocol_factory, address, backlog=backlog, max_connections=max_connections,
            idle_timeout=idle_timeout, timeout=timeout, max_read=max_read, write_buffer_high=write_buffer_high,
            write_buffer_low=write_buffer_low, reuse_port=reuse_port, accept_backoff=accept_backoff, ssl=ssl,
            ssl_handshake_timeout=ssl_handshake_timeout, proxy_protocol=proxy_protocol,
            trusted_proxies=trusted_proxies,
        )

    @overload
    def create_connection(
        self,
        protocol_factory: Callable[[], P],
        address: AddressLike,
        *,
        timeout: float | None = None,
        idle_timeout: float | None = None,
        max_read: int = 64 * 1024,
        write_buffer_high: int = 64 * 1024,
        write_buffer_low: int | None = None,
        ssl: None = None,
        server_hostname: str | None = None,
        ssl_handshake_timeout: float | None = 10.0,
    ) -> Future[tuple[StreamTransport, P]]: ...

    @overload
    def create_connection(
        self,
        protocol_factory: Callable[[], P],
        address: AddressLike,
        *,
        timeout: float | None = None,
        idle_timeout: float | None = None,
        max_read: int = 64 * 1024,
        write_buffer_high: int = 64 * 1024,
        write_buffer_low: int | None = None,
        ssl: _ssl.SSLContext,
        server_hostname: str | None = None,
        ssl_handshake_timeout: float | None = 10.0,
    ) -> Future[tuple[TLSTransport, P]]: ...

    @overload
    def create_connection(  # ssl given as a context or None, not known which until run time
        self,
        protocol_factory: Callable[[], P],
        address: AddressLike,
        *,
        timeout: float | None = None,
        idle_timeout: float | None = None,
        max_read: int = 64 * 1024,
        write_buffer_high: int = 64 * 1024,
        write_buffer_low: int | None = None,
        ssl: _ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        ssl_handshake_timeout: float | None = 10.0,
    ) -> Future[tuple[StreamTransport | TLSTransport, P]]: ...

    def create_connection(
        self,
        protocol_factory: Callable[[], P],
        address: AddressLike,
        *,
        timeout: float | None = None,
        idle_timeout: float | None = None,
        max_read: int = 64 * 1024,
        write_buffer_high: int = 64 * 1024,
        write_buffer_low: int | None = None,
        ssl: _ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        ssl_handshake_timeout: float | None = 10.0,
    ) -> (
        Future[tuple[StreamTransport, P]]
        | Future[tuple[TLSTransport, P]]
        | Future[tuple[StreamTransport | TLSTransport, P]]
    ):
        """Connect to ``address``; a `Future` of ``(transport, protocol)``.

        ``address``: an address string or a ``(host, port)`` tuple; a bad one
        raises `ValueError` here.  ``timeout`` bounds the connect (None:
        none; otherwise a number larger than 0): the future fails with
        `TimeoutError`, or with the connect's `OSError`.  ``idle_timeout``
        closes the connection after that many seconds without progress.
        The transport is a `~reactor.transport.stream.StreamTransport`, or
        with ``ssl`` (a client-side context) a
        `~reactor.transport.tls.TLSTransport` once the handshake is complete;
        ``server_hostname`` is the name the certificate must carry (by
        default the host of ``address``).  ``docs/streams.md`` has the details.
        """
        from .streams import _create_connection

        return _create_connection(
            self, protocol_factory, address, timeout=timeout, idle_timeout=idle_timeout, max_read=max_read,
            write_buffer_high=write_buffer_high, write_buffer_low=write_buffer_low, ssl=ssl,
            server_hostname=server_hostname, ssl_handshake_timeout=ssl_handshake_timeout,
        )

    def request(
        self,
        address: AddressLike,
        request: str,
        timeout: float | None = None,
        *,
        max_reply_size: int = 64 * 1024 * 1024,
        ssl: _ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        ssl_handshake_timeout: float | None = 10.0,
    ) -> Future[str]:
        """Send a request/reply request without blocking; a `Future` of the reply.

        See `reactor.client.request`: the future fails with a
        `~reactor.client.RequestError` whatever goes wrong (`RequestTimeout`,
        a `TimeoutError`, after ``timeout`` seconds; `RequestRefused` when
        nothing listens; ...); a cancelled future stays cancelled.
        As for `do_request` (and in yoton), only a ``timeout`` larger than 0 is
        one: ``None``, ``0`` and negative numbers mean no timeout (``nan``
        raises `ValueError`).  ``address`` may be a ``(host, port)`` tuple.
        """
        from .client import request as _request

        return _request(
            self, address, request, timeout, max_reply_size=max_reply_size, ssl=ssl,
            server_hostname=server_hostname, ssl_handshake_timeout=ssl_handshake_timeout,
        )

    # ------------------------------------------- threads: executor, name lookups
    # The core starts no thread itself: these methods load the transport
    # layer's executor module when called (it owns the one worker pool).

    @property
    def threads(self) -> bool:
        """True when this reactor may start threads (``Reactor(threads=...)``).

        Without threads, `run_in_executor` with ``None`` raises `RuntimeError`
        and `getaddrinfo` resolves on the reactor's thread (see docs/core.md,
        "Without threads").
        """
        return self._threads

    def run_in_executor(
        self, executor: concurrent.futures.Executor | None, func: Callable[[*Ts], T], *args: *Ts
    ) -> Future[T]:
        """Run ``func(*args)`` in ``executor`` (None: the reactor's worker pool); a `Future` of its result.

        See `reactor.transport.executor.run_in_executor`.
        """
        from .transport.executor import run_in_executor

        return run_in_executor(self, executor, func, *args)

    def getaddrinfo(
        self,
        host: str | bytes | None,
        port: str | int | None,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> Future[list[AddrInfo]]:
        """`socket.getaddrinfo` off the reactor's thread; a `Future` of its list.

        See `reactor.transport.executor.getaddrinfo`.
        """
        from .transport.executor import getaddrinfo

        return getaddrinfo(self, host, port, family, type, proto, flags)

    # ------------------------------------------------ observability (late-bound)

    def snapshot(self) -> dict[str, Any]:
        """The connection table and the counters as plain data; see `reactor.control.snapshot`."""
        from .control import snapshot

        return snapshot(self)

    def serve_control(self, path: str) -> Any:
        """Report `snapshot` on a Unix socket at ``path`` (mode 0600); see `reactor.control.ControlServer`."""
        from .control import serve_control

        return serve_control(self, path)

    def serve_metrics(self, address: str) -> Any:
        """Serve ``GET /metrics`` (Prometheus text) on ``address``; see `reactor.metrics.serve_metrics`."""
        from .metrics import serve_metrics

        return serve_metrics(self, address)

    # --------------------------------------------------------------- errors

    def set_exception_handler(self, handler: ExceptionHandler | None) -> None:
        """Replace the reporting of callback errors: ``handler(reactor, context)``.

        ``context`` has ``message``, ``exception`` and ``callback``.  None
        restores the default (log with traceback on the ``reactor`` logger).
        """
        if handler is not None and not callable(handler):
            raise TypeError(f"exception handler must be callable or None, got {handler!r}")
        self._exception_handler = handler

    def get_exception_handler(self) -> ExceptionHandler | None:
        """The handler `set_exception_handler` installed, or None for the default."""
        return self._exception_handler

    def _report(self, exc: Exception, callback: object) -> None:
        context = {"message": "exception in callback", "exception": exc, "callback": callback}
        self.call_exception_handler(context)

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        """Report an error the way a failing callback is reported."""
        handler = self._exception_handler
        if handler is not None:
            try:
                handler(self, context)
                return
            except Exception:
                logger.exception("exception in the reactor's exception handler")
        self.default_exception_handler(context)

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        """The default reporting: log ``context`` at ERROR, with the traceback, on the ``reactor`` logger.

        A handler given to `set_exception_handler` may call it for the errors it does not handle.
        """
        exc = context.get("exception")
        logger.error(
            "%s: %r",
            context.get("message", "unhandled error"),
            context.get("callback"),
            exc_info=(type(exc), exc, exc.__traceback__) if isinstance(exc, BaseException) else None,
        )

    # -------------------------------------------------------------- closing

    def close(self) -> None:
        """Abort the connections, cancel the tasks, release the selector and the wakeup sockets; idempotent.

        Every transport in the connection table is closed at once; its
        protocol gets `ReactorClosedError` in ``connection_lost`` and a
        pending `request` future fails.  Every pending task is cancelled, and
        the callbacks this makes ready are run (no timer, no I/O) so that the
        tasks' ``finally`` blocks run; a task whose cleanup awaits time or
        I/O stays pending.  Then callbacks and timers still scheduled are
        dropped.  Closing a running reactor is an error: `stop()` it first.
        """
        if self._closed:
            return
        if self._running_thread is not None:
            raise RuntimeError("cannot close a running Reactor; call stop() first")
        if self._signal_handlers:
            self._remove_signal_handlers()
        self._close_work_in_flight()
        self._closed = True
        pool, self._worker_pool = self._worker_pool, None
        if pool is not None:
            # Not waiting: a worker may be stuck in a lookup nobody answers.
            pool.shutdown(wait=False, cancel_futures=True)
        self._ready.clear()
        for _, _, timer in self._timers:
            timer._in_heap = False
        self._timers.clear()
        self._timer_cancelled_count = 0
        self._wait.close()
        self._io.clear()  # lets go of the callbacks (and what they refer to)
        self._wake_r.close()
        self._wake_w.close()

    # Closing with work in flight.  Twisted disconnects every connection when
    # its reactor shuts down; asyncio's loop.close() leaves transports and
    # tasks dangling, and asyncio.run() cancels the tasks and runs the loop
    # until they finish.  close() does what can be done without letting time
    # pass or doing I/O: every row of the connection table that can abort
    # (a transport: `_reactor_closed`) is closed at once with a
    # `ReactorClosedError`, which its protocol gets in connection_lost and a
    # pending request future fails with; every pending task is cancelled; and
    # the callbacks this makes ready are run, round after round (bounded), so
    # that futures complete and tasks unwind their `finally` blocks.  No
    # timer fires and no I/O is polled meanwhile, so a cleanup that awaits
    # time or the network does not finish: such a task stays pending (logged).
    # Rows that are not transports (a socketserver request in its handler, an
    # asyncore dispatcher) belong to code that closes them itself.

    def _close_work_in_flight(self) -> None:
        tasks = self._tasks
        if not self.connections and not tasks:
            return
        cancelled: set[Any] = set()
        was_in_turn = self._in_turn
        self._in_turn = True  # what runs here schedules without waking anyone
        turn = _turn  # and is this reactor's turn: a task's cleanup finds its reactor
        outer = turn.reactor
        turn.reactor = self
        was_task_turn = self._task_turn
        self._task_turn = True
        try:
            for _ in range(_CLOSE_ROUNDS):
                for row in list(self.connections.values()):
                    abort = getattr(row, "_reactor_closed", None)
                    if abort is not None:
                        abort(ReactorClosedError(errno.ECONNABORTED, "the reactor was closed with the connection open"))
                for task in list(tasks):
                    if task not in cancelled:
                        cancelled.add(task)
                        task.cancel()
                ready = self._ready
                if not ready:
                    break
                for _ in range(len(ready)):
                    handle = ready.popleft()
                    if handle._cancelled:
                        continue
                    try:
                        handle._callback(*handle._args)
                    except Exception as exc:
                        self._report(exc, handle._callback)
        finally:
            self._in_turn = was_in_turn
            turn.reactor = outer
            self._task_turn = was_task_turn
        if tasks:
            logger.warning(
                "%d task(s) still pending when the reactor closed (their cleanup awaits time or I/O): %s",
                len(tasks),
                ", ".join(repr(task) for task in list(tasks)[:5]),
            )

    def __enter__(self) -> Reactor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        if not getattr(self, "_closed", True):
            _warn(f"unclosed {self!r}", ResourceWarning, source=self)
            try:
                # A finalizer may run in any thread: no connection_lost or task
                # step from here, so the work in flight is dropped, not closed.
                self.connections = {}
                self._tasks = set()
                self.close()
            except Exception:
                pass


_default_reactor: Reactor | None = None
_default_lock = threading.Lock()


def get_default_reactor() -> Reactor:
    """The process-wide default reactor, created on first use.

    Servers and clients built without ``reactor=`` share it.  A closed
    default reactor is replaced by a new one.
    """
    global _default_reactor
    with _default_lock:
        if _default_reactor is None or _default_reactor.is_closed():
            _default_reactor = Reactor()
        return _default_reactor
