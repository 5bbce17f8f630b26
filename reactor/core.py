"""The reactor: one selector, timers, a ready queue, and one turn at a time.

What can go wrong in an event loop, and what we chose
-----------------------------------------------------
*Where user code runs.*  asyncio's ``_run_once`` is the model: a turn waits
for I/O, then dispatches.  Here a turn (`Reactor.run_once`) is written down as
a numbered spec, as libuv does for ``uv_run``:

1. Count the callbacks that are ready now (``call_soon``); only those run in
   this turn, so a callback that reschedules itself cannot starve I/O.
2. Work out how long we may wait: 0 if anything is ready, else until the
   earliest timer, capped by the caller's ``timeout``.
3. Wait for I/O once (``selector.select``, or its raw form; see `_EpollSelector`).
4. Run the callbacks of ready file descriptors (reader, then writer).
5. Run every timer whose due time has come, in order of due time, ties in
   scheduling order.
6. Run the callbacks counted in step 1.

Waiting (steps 2-3) is separate from dispatching (4-6), which is what makes
embedding possible: a host loop waits on `Reactor.fileno()` for at most `timeout()`
seconds and calls ``run_once(0)``, and nothing is lost.

*Timers* live in a heap of ``(when, seq, handle)`` tuples; ``seq`` breaks ties
in scheduling order.  Cancelling only marks the handle (O(1)); the heap is
rebuilt without the dead entries when they are more than half of it, so
scheduling and cancelling a million timers keeps a heap of a few hundred, not
a million.  ``call_every`` keeps its cadence from the first due time (no
drift) and, when the loop falls behind, skips missed beats instead of firing a
burst.

*Threads.*  Only `call_soon_threadsafe` and `stop` may be called from another
thread.  They append to a deque (atomic in CPython) and write one byte to a
socketpair the selector watches, so a reactor blocked in ``select`` wakes.  The
same wakeup keeps the embedding contract honest: when host code (outside a
turn) schedules a callback or a timer, the reactor's fd is made readable once,
so a host that sleeps on `Reactor.fileno()` learns that `timeout()` changed.  Inside a
turn this costs nothing.

*A broken wakeup socketpair* (someone closed or shut down one end: a
library closing "all other fds", a stray ``os.close``) used to be fatal in
two ways: the read end at EOF is readable forever, so the loop spun at 100 %
CPU, and every ``send`` raised into `call_soon_threadsafe`.  Now only the
reactor's thread repairs the pair, inside `run_once`: it unregisters the old
read end, closes both ends, registers a new pair, writes one byte to it (so a
wakeup lost while the pair was broken is not lost), and logs one WARNING.  A
thread whose ``send`` fails must not touch the selector, which is not
thread-safe; it records which pair broke, shuts down that pair's write end and
returns (the callback is already queued: the wakeup is best effort).  The
shutdown is what makes this safe for a loop blocked in ``select`` with no
timeout: EOF makes the read end readable, the loop wakes, finds EOF and
repairs.  The one case that cannot wake it is a read end closed behind our
back, which epoll silently forgets; then the repair happens at the start of
the next turn, whatever starts it (I/O, a timer, a host's ``run_once``).  If
the new pair cannot be created (out of fds), the old one is still taken out
of the selector, so nothing spins, and the repair is retried every turn.

*The watchdog* (``slow_callback_duration``).  A callback that blocks the loop
for longer than the threshold is logged, once, with its name and duration, and
counted in `Reactor.statistics`.  Naming the culprit is the hard part: timing
each turn costs two clock reads per turn, but a slow turn that ran many
callbacks cannot say which one blocked, and no later work can recover that,
because the durations were never observed (asyncio times each handle, but
only in debug mode; trio leaves it to an optional instrument).  "Time each
callback only after a slow turn" names the second offence, never a one-off in
a busy turn, which is exactly the case a server under load produces.  So we
time every callback, but with one clock read per callback, not two: the end
of one callback is the start of the next, and the gap between them (a heap
pop, a cancelled check) is charged to the next.  Measured (old and new core
alternating in one process): dispatching an empty callback went from 80 to
133 ns, so ``python -m benchmarks core`` loses about 8 % of its call_soon
rate and 4 % of its timer rate, the worst case, callbacks that do nothing.
A server turn spends tens of microseconds per request on a few callbacks,
where 50 ns each is below the noise.  The reads use `time.perf_counter`
(the module-level ``_perf_counter``, which tests patch), never the injected
clock: a `ManualClock` does not move while a callback runs, so it would see
nothing, and a user's clock may be coarse or slow; blocking is a fact about
the host's wall time, not the reactor's timeline.  None turns the report off;
the clock is still read, since a second copy of the turn to save 50 ns would
cost more in review than it saves.

*Errors.*  A callback that raises ``Exception`` is reported to the exception
handler (by default: logged with its traceback on the ``reactor`` logger) and
the loop goes on.  ``KeyboardInterrupt`` and ``SystemExit`` always escape.

The core never starts a thread and imports nothing from the rest of the package.
It is longer than our usual module (about 900 lines) because it holds the
whole public surface of the loop with its docstrings, and the repair of its
own wakeup; the turn itself, `Reactor.run_once`, is about ninety lines.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
import math
import select
import selectors
import socket
import threading
import time as _time
import types
import warnings
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, TypeVarTuple, overload

from .futures import Future

if TYPE_CHECKING:
    import ssl as _ssl
    from collections.abc import Iterable

    from .streams import AddressLike, Server, StreamTransport, TLSTransport

__all__ = ["Reactor", "Handle", "TimerHandle", "ManualClock", "FileLike", "get_default_reactor"]

logger = logging.getLogger("reactor")

T = TypeVar("T")
#: The arguments of a callback: ``call_soon(f, 1, "a")`` type-checks only if ``f(1, "a")`` does.
Ts = TypeVarTuple("Ts")
#: The protocol `create_connection` makes.
P = TypeVar("P")

_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE

#: The watchdog's clock: `time.perf_counter`, never the injected clock (see
#: the module docstring).  A module global so that tests can patch it.
_perf_counter: Callable[[], float] = _time.perf_counter

#: Rebuild the timer heap when cancelled entries exceed this many *and* half of it.
_MIN_CANCELLED_FOR_COMPACTION = 100


#: The standard library's epoll selector, where there is one (Linux).
_EpollBase: Any = getattr(selectors, "EpollSelector", selectors.DefaultSelector)


class _EpollSelector(_EpollBase):  # type: ignore[misc]
    """The default selector where there is epoll: `selectors.EpollSelector`, plus `ready`.

    Everything else is the standard library's selector (``select()`` too);
    `ready` adds the raw ``(fd, event bits)`` pairs of one wait.  Two
    things make it faster than ``select()`` for the reactor's turn:

    - The turn looks each fd's callbacks up itself: ``select()`` looks up
      and builds a ``(key, mask)`` tuple per event in Python, about 150 ns
      an event, half of what dispatching one costs.
    - *Busy turns wait with poll(2).*  epoll's bookkeeping costs the kernel
      more per ready descriptor than a ``poll()`` scan costs per registered
      one (``python -m benchmarks wait``, Linux 6.18, 64 sockets all
      ready: about 110 ns per ready fd for ``epoll_wait``, 65 ns for
      ``poll``; each idle fd adds about 40 ns to a ``poll`` and nothing to
      an ``epoll_wait``, so they cost the same when half are ready).  So
      the waits follow the share of the registered fds found ready by
      recent waits (a moving average, so that big and small batches in
      turn do not make every guess wrong): above `POLL_SHARE` plus
      `HYSTERESIS`, with at most `POLL_MAX` fds registered, they switch to
      ``poll``; below `POLL_SHARE` minus `HYSTERESIS`, back to ``epoll``.
      The ``select.poll`` set is built from the registrations when the
      waits switch to it and kept up to date while they use it (no system
      call: the set is passed at each wait); while epoll waits, it does
      not exist, so registering costs what it always did.  The epoll set
      is always complete, so `fileno` serves a host loop either way.

    The two report the same bits for the same socket state (both ask the
    socket's own poll), except for an fd closed while still registered,
    which is a caller's error either way: epoll forgets it silently, while
    ``poll`` reports ``POLLNVAL``, and the turn then drops it from the poll
    set for good (`forget_invalid`), delivers nothing and logs a warning
    that names the fd;
    if the number is reused by a socket this reactor does not watch before
    that, a poll wait reports the new socket's readiness to the old
    callbacks (which then fail on their closed socket and clean up).
    Remove an fd's reader and writer before closing it.

    `ready` and `modify` use three names the standard library does not
    document (the epoll object, the fd -> key dict and ``_fileobj_lookup``,
    all unchanged since 3.4);
    `_default_selector` checks them, and falls back to the plain ``select()``
    turn if a future Python changes them.  A selector passed to `Reactor` is
    always used through ``select()``.
    """

    #: The most registered fds a wait may use ``poll`` for: bounds what one wrong guess costs.
    POLL_MAX = 2048
    #: The share of the registered fds ready per wait at which ``poll`` and
    #: ``epoll`` cost the same (below 0: always ``poll``, when at most
    #: `POLL_MAX` are registered; infinite: never).
    POLL_SHARE = 0.5
    #: How far the moving share must pass `POLL_SHARE` to switch the waits.
    HYSTERESIS = 0.1
    #: The weight of the newest wait in the moving average of the ready share.
    SHARE_WEIGHT = 0.25

    def __init__(self) -> None:
        super().__init__()
        self._poll: Any = None  # the select.poll set while the waits use it
        # fd -> the key poll reported closed while registered: skipped when
        # the poll set is built, for as long as that key is registered.
        self._invalid: dict[int, selectors.SelectorKey] = {}
        self._share = 0.0  # the moving average of (ready fds / registered fds) per wait
        #: Waits done with ``poll`` and with ``epoll`` (for tests and tuning).
        self.poll_waits = 0
        self.epoll_waits = 0

    @staticmethod
    def _poll_mask(events: int) -> int:
        return (select.POLLIN if events & _READ else 0) | (select.POLLOUT if events & _WRITE else 0)

    # While the waits use poll, these three shadow the standard library's
    # methods on the instance (`_start_polling`), so that while epoll waits,
    # registering costs exactly what it always did.

    def _register_polling(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        key: selectors.SelectorKey = super().register(fileobj, events, data)
        self._poll.register(key.fd, self._poll_mask(events))
        return key

    def _unregister_polling(self, fileobj: Any) -> selectors.SelectorKey:
        key: selectors.SelectorKey = super().unregister(fileobj)
        self._forget(key.fd)
        return key

    def _modify_polling(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        # The standard library unregisters an fd it fails to modify: so does the poll set.
        fd = self._fileobj_lookup(fileobj)
        try:
            key: selectors.SelectorKey = super().modify(fileobj, events, data)
        except BaseException:
            if fd not in self._fd_to_key:
                self._forget(fd)
            raise
        if fd not in self._invalid:
            self._poll.modify(fd, self._poll_mask(events))
        return key

    def _forget(self, fd: int) -> None:
        try:
            self._poll.unregister(fd)
        except KeyError:
            pass

    def _start_polling(self) -> Any:
        poll = select.poll()
        invalid = self._invalid
        for fd, key in self._fd_to_key.items():
            if invalid and invalid.get(fd) is key:
                continue
            poll.register(fd, self._poll_mask(key.events))
        if invalid:  # keep only the closed fds that are still registered
            self._invalid = {fd: key for fd, key in invalid.items() if self._fd_to_key.get(fd) is key}
        self._poll = poll
        self.register = self._register_polling
        self.unregister = self._unregister_polling
        self.modify = self._modify_polling
        return poll

    def _stop_polling(self) -> None:
        self._poll = None
        del self.register, self.unregister, self.modify

    def forget_invalid(self, fd: int) -> None:
        """Stop polling ``fd``: it was closed while registered (epoll forgot it already)."""
        key = self._fd_to_key.get(fd)
        if key is not None:
            self._invalid[fd] = key
        if self._poll is not None:
            self._forget(fd)

    def usable(self) -> bool:
        """Whether the standard library's internals are what `ready` and `modify` use."""
        return (
            isinstance(getattr(self, "_fd_to_key", None), dict)
            and hasattr(getattr(self, "_selector", None), "poll")
            and callable(getattr(self, "_fileobj_lookup", None))
        )

    def ready(self, timeout: float | None = None) -> list[tuple[int, int]]:
        """Wait as ``select()`` does; the ``(fd, event bits)`` pairs that are ready (``poll``'s bits are epoll's)."""
        if timeout is None:
            ms = -1
        elif timeout <= 0:
            ms = 0
        else:
            # Up to the next millisecond, as selectors does: rounded down, a
            # turn waiting for a timer due in 0.4 ms would spin.
            ms = math.ceil(timeout * 1e3)
        registered = len(self._fd_to_key)
        poll = self._poll
        share = self._share
        if poll is None:
            if share >= self.POLL_SHARE + self.HYSTERESIS and registered <= self.POLL_MAX:
                poll = self._start_polling()
        elif share < self.POLL_SHARE - self.HYSTERESIS or registered > self.POLL_MAX:
            self._stop_polling()
            poll = None
        if poll is not None:
            self.poll_waits += 1
            events: list[tuple[int, int]] = poll.poll(ms)
        else:
            self.epoll_waits += 1
            events = self._selector.poll(ms * 1e-3 if ms > 0 else ms, registered or 1)
        if registered:
            self._share = share + (len(events) / registered - share) * self.SHARE_WEIGHT
        return events


_NO_HANDLES: tuple[None, None] = (None, None)

#: poll(2)'s "not an open fd"; no epoll or `selectors` mask has this bit.
_POLLNVAL: int = getattr(select, "POLLNVAL", 32)

#: epoll's bits that mean "readable" and "writable" to a reader and a writer:
#: anything but OUT wakes the reader, anything but IN the writer (an error or
#: a hang-up wakes both), as `selectors.EpollSelector` maps them.
_NOT_OUT = ~getattr(select, "EPOLLOUT", 4)
_NOT_IN = ~getattr(select, "EPOLLIN", 1)


def _default_selector() -> selectors.BaseSelector:
    if hasattr(selectors, "EpollSelector"):
        selector = _EpollSelector()
        if selector.usable():
            return selector
        selector.close()
    return selectors.DefaultSelector()


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


class Reactor:
    """A single-threaded event reactor driven by a `selectors` selector.

    ``Reactor(clock=None, selector=None, slow_callback_duration=0.1)``:
    ``clock`` is a zero-argument callable returning monotonic seconds (default
    `time.monotonic`; inject a `ManualClock` in tests); ``selector`` defaults
    to an epoll selector where there is epoll (Linux; it is the standard
    library's `selectors.EpollSelector` with a faster turn), else to
    `selectors.DefaultSelector`;
    ``slow_callback_duration`` is the watchdog's threshold in seconds (None:
    off), also a settable attribute.

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
    ) -> None:
        self._slow_threshold = float("inf")  # what the turn compares; inf when off
        self.slow_callback_duration = slow_callback_duration  # validates: first, before any resource
        self._clock: Callable[[], float] = clock if clock is not None else _time.monotonic
        self._selector = selector if selector is not None else _default_selector()
        # The fast turn: our own epoll selector's raw events (see `_EpollSelector`).
        self._raw_ready: Callable[[float | None], list[tuple[int, int]]] | None = None
        if isinstance(self._selector, _EpollSelector):
            self._raw_ready = self._selector.ready
        # fd -> (reader handle, writer handle) of every registration but the
        # wakeup socket's.  The selector holds the events only; the turn reads
        # the handles here (a `SelectorKey`'s fields are slow to read).
        self._io: dict[int, tuple[Handle | None, Handle | None]] = {}
        # fd -> its handles when this turn's wait ended, for each fd whose
        # registration changed during the turn (see `_add_io`).
        self._touched: dict[int, tuple[Handle | None, Handle | None]] = {}
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
        return len(self._selector.get_map()) - (self._wake_fd >= 0)

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
            live = [entry for entry in self._timers if not entry[2]._cancelled]
            for entry in self._timers:
                if entry[2]._cancelled:
                    entry[2]._in_heap = False
            heapq.heapify(live)
            self._timers = live
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
        # `_io` holds each fd's (reader handle, writer handle); the selector
        # is told only which events to watch.  A handle that is replaced or
        # removed is cancelled, so an event already collected in this turn for the old
        # registration (the fd closed, or even reused by a new socket) is
        # skipped, not delivered to a stale callback: the turn looks the
        # handles up when it reaches the event, so the first change of an fd
        # in a turn keeps the handles it had when the wait ended (`_touched`).
        if fd == self._wake_fd:
            raise ValueError("that file descriptor is the reactor's own wakeup socket")
        old = self._io.get(fd)
        if self._in_turn and fd not in self._touched:
            self._touched[fd] = _NO_HANDLES if old is None else old
        data: tuple[Handle | None, Handle | None]
        if old is None:
            data = (handle, None) if event == _READ else (None, handle)
            self._selector.register(fd, event)
        else:
            reader, writer = old
            if event == _READ:
                if reader is not None:
                    reader._cancelled = True
                reader = handle
            else:
                if writer is not None:
                    writer._cancelled = True
                writer = handle
            data = (reader, writer)
            if old[event == _WRITE] is None:  # a new event to watch, not a replaced callback
                self._modify(fd, data)
        self._io[fd] = data
        if not self._in_turn:
            self._wake_host()

    def _remove_io(self, fd: int, event: int) -> bool:
        if fd == self._wake_fd:
            return False
        old = self._io.get(fd)
        if old is None:
            return False
        reader, writer = old
        if event == _READ:
            removed, reader = reader, None
        else:
            removed, writer = writer, None
        if removed is None:
            return False
        if self._in_turn and fd not in self._touched:
            self._touched[fd] = old
        removed._cancelled = True
        if reader is None and writer is None:
            del self._io[fd]
            self._selector.unregister(fd)
        else:
            data = (reader, writer)
            self._modify(fd, data)
            self._io[fd] = data
        return True

    def _modify(self, fd: int, data: tuple[Handle | None, Handle | None]) -> None:
        # Watch the events that ``data`` has callbacks for.
        try:
            self._selector.modify(fd, (_READ if data[0] else 0) | (_WRITE if data[1] else 0))
        except BaseException:
            # The standard library's selectors drop a registration whose
            # modify failed (the fd was closed behind our back): so do we.
            if fd not in self._selector.get_map():
                self._io.pop(fd, None)
            raise

    # ------------------------------------------------------------- wakeups

    def _new_wakeup_pair(self) -> tuple[socket.socket, socket.socket]:
        r, w = socket.socketpair()
        try:
            r.setblocking(False)
            w.setblocking(False)
            self._selector.register(r.fileno(), _READ)
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
            # Not ours to repair from here (the selector is not thread-safe);
            # EOF on the read end wakes a loop blocked in select to repair it.
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
            while self._wake_r.recv(4096):
                pass
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
                self._selector.unregister(self._wake_fd)
            except (KeyError, ValueError, OSError):
                pass
            self._wake_fd = -1
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
        self._wakeup_repairs += 1
        if first:
            logger.warning("the reactor's wakeup socketpair broke (%s); recreated it", reason)
        else:
            logger.info("the reactor's wakeup socketpair is recreated")
        # Whatever wakeup was lost while the pair was broken, deliver one now.
        self._wakeup_pending = True
        self._write_wakeup()

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
        thread or by host code outside a turn.  Requires a selector with a
        pollable fd (epoll, kqueue, devpoll) — the default on Linux, macOS, BSD.
        """
        self._check_closed()
        try:
            return self._selector.fileno()  # type: ignore[attr-defined,no-any-return]
        except AttributeError:
            raise RuntimeError(
                f"{type(self._selector).__name__} has no pollable fd; embed with an "
                "EpollSelector/KqueueSelector (the default on Linux/macOS)"
            ) from None

    def run_once(self, timeout: float | None = None) -> int:
        """Do exactly one turn; return how many callbacks ran.

        Waits at most ``timeout`` seconds for I/O (None: until something
        happens or a timer is due; 0: not at all), then runs ready I/O
        callbacks, due timers, and the callbacks queued before the turn began.
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
        # select() and schedules work or calls stop() must write the wakeup.
        raw_ready = self._raw_ready
        if raw_ready is not None:
            events = raw_ready(wait)
            read_bits, write_bits = _NOT_OUT, _NOT_IN
        else:
            events = [(key.fd, mask) for key, mask in self._selector.select(wait)]
            read_bits, write_bits = _READ, _WRITE
        self._in_turn = True
        self._turns += 1
        ran = 0
        # The watchdog: one clock read after each callback; the end of one is
        # the start of the next (see the module docstring).
        perf = _perf_counter
        slow = self._slow_threshold
        start = perf()
        try:
            wake_fd = self._wake_fd
            touched = self._touched
            get_io = self._io.get
            for fd, mask in events:
                if fd == wake_fd:
                    self._drain_wakeup()
                    continue
                if mask & _POLLNVAL:
                    self._closed_while_registered(fd)
                    continue
                handles = touched[fd] if touched and fd in touched else get_io(fd, _NO_HANDLES)
                reader, writer = handles
                if mask & read_bits and reader is not None and not reader._cancelled:
                    ran += 1
                    try:
                        reader._callback(*reader._args)
                    except Exception as exc:
                        self._report(exc, reader._callback)
                    end = perf()
                    if end - start > slow:
                        end = self._slow_callback(reader._callback, end - start)
                    start = end
                # The reader may have removed or replaced the writer: then it is cancelled.
                if mask & write_bits and writer is not None and not writer._cancelled:
                    ran += 1
                    try:
                        writer._callback(*writer._args)
                    except Exception as exc:
                        self._report(exc, writer._callback)
                    end = perf()
                    if end - start > slow:
                        end = self._slow_callback(writer._callback, end - start)
                    start = end
            timers = self._timers
            if timers:
                now = self._clock()
                while timers and timers[0][0] <= now:
                    timer = heapq.heappop(timers)[2]
                    timer._in_heap = False
                    if timer._cancelled:
                        self._timer_cancelled_count -= 1
                        continue
                    if timer.interval is not None:
                        self._reschedule(timer, now)
                    ran += 1
                    try:
                        timer._callback(*timer._args)
                    except Exception as exc:
                        self._report(exc, timer._callback)
                    end = perf()
                    if end - start > slow:
                        end = self._slow_callback(timer._callback, end - start)
                    start = end
            for _ in range(ntodo):
                handle = ready.popleft()
                if handle._cancelled:
                    continue
                ran += 1
                try:
                    handle._callback(*handle._args)
                except Exception as exc:
                    self._report(exc, handle._callback)
                end = perf()
                if end - start > slow:
                    end = self._slow_callback(handle._callback, end - start)
                start = end
        finally:
            self._in_turn = False
            if self._touched:
                self._touched.clear()
            self._callbacks_run += ran
        return ran

    def _closed_while_registered(self, fd: int) -> None:
        # poll(2) says fd is not open: it was closed while registered, which
        # epoll forgets silently.  Stop watching it and say so once.
        self._selector.forget_invalid(fd)  # type: ignore[attr-defined]
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
        try:
            while True:
                self.run_once(0 if self._stopping else None)
                if self._stopping:
                    break
        finally:
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
            # Another thread, or a signal handler interrupting select(): wake it.
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

    def run_until_complete(self, future: Future[T], timeout: float | None = None) -> T:
        """Run turns until ``future`` is done; return its result (or raise its exception).

        Raises `TimeoutError` if ``timeout`` seconds of reactor time pass first
        (the future itself is left untouched).
        """
        self._check_closed()
        if not isinstance(future, Future):
            raise TypeError(f"run_until_complete() needs a reactor Future, got {type(future).__name__}")
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
    ) -> Future[tuple[StreamTransport, P]] | Future[tuple[TLSTransport, P]]:
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

        See `reactor.client.request`: the future fails with `TimeoutError`
        after ``timeout`` seconds, with `RequestRefused` when nothing listens.
        As for `do_request` (and in yoton), only a ``timeout`` larger than 0 is
        one: ``None``, ``0`` and negative numbers mean no timeout (``nan``
        raises `ValueError`).  ``address`` may be a ``(host, port)`` tuple.
        """
        from .client import request as _request

        return _request(
            self, address, request, timeout, max_reply_size=max_reply_size, ssl=ssl,
            server_hostname=server_hostname, ssl_handshake_timeout=ssl_handshake_timeout,
        )

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
        """Release the selector and the wakeup sockets; idempotent.

        Callbacks and timers still scheduled are dropped.  Closing a running
        reactor is an error: `stop()` it first.
        """
        if self._closed:
            return
        if self._running_thread is not None:
            raise RuntimeError("cannot close a running Reactor; call stop() first")
        self._closed = True
        self._ready.clear()
        for _, _, timer in self._timers:
            timer._in_heap = False
        self._timers.clear()
        self._timer_cancelled_count = 0
        self._selector.close()
        self._io.clear()  # lets go of the callbacks (and what they refer to)
        self._touched.clear()
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> Reactor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        if not getattr(self, "_closed", True):
            _warn(f"unclosed {self!r}", ResourceWarning, source=self)
            try:
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
