"""The threads of the package: who drives a reactor, and the one worker pool.

The core never starts a thread.  Two things above it do, and each must be
written once so that every surface agrees:

*Serving, per server.*  Surfaces offer ``run()`` and ``start()``
(`RequestServer`, `reactor.easy` endpoints), and several servers share one
reactor, each with its own lifecycle: stopping one must not stop another.
However many servers of one reactor are started, one background thread runs
that reactor, and it ends when the last of them is stopped; a ``run()`` in a
second thread waits while another thread drives, and takes over when that
one's server is stopped.  `serve_until_stopped`, `start_background` and
`stop_serving` are that protocol (the comment above them has the details);
`join_background` waits for the background thread.

*Who drives, asked in one place.*  `reactor_thread` is the one answer to
"which thread runs this reactor's turns?", and `in_reactor_thread` the one
test "may this thread touch the reactor now?" built on it: every surface and
transport that must hand work to the reactor's thread (a listener built from
another thread, a thread-safe ``send``, a ``close`` or ``stop`` from any
thread) asks them, so they cannot disagree.  The answer covers every way a
reactor is driven: a participant of the registry below, a plain
`Reactor.run`, a loop of `Reactor.run_once` that claimed the turns
(`claim_turns`: ``socketserver``'s ``serve_forever()``, or an embedding host
that says so), a background thread about to start, and a host loop that a
transport saw touching it (`note_host`).

*Running handlers in threads.*  Surfaces that offer "run the handler in a
thread" (``threaded=True``, ``async_=True``) hand work to a `WorkerPool`.  A
thread per request, as the easyservers and socketserver mix-ins do, is an
open door to running out of memory under a flood; a plain
``ThreadPoolExecutor`` bounds the threads but not its queue, which grows
without limit just the same.  `WorkerPool` bounds both: at most
``max_pending`` jobs are queued or running, and `WorkerPool.submit` says
False instead of queueing one more, so the caller drops the work and counts
it.  Refusing at once, without blocking, matters: the caller is the
reactor's thread, which must never wait for a worker.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core import Reactor

if TYPE_CHECKING:
    import concurrent.futures

__all__ = [
    "ServeToken",
    "WorkerPool",
    "call_in_reactor_thread",
    "claim_turns",
    "driving",
    "in_reactor_thread",
    "note_host",
    "reactor_thread",
    "release_turns",
    "run_in_reactor_thread",
    "serve_until_stopped",
    "serving_started",
    "stop_serving",
    "WorkerPoolStatistics",
    "background_thread",
    "join_background",
    "start_background",
]

logger = logging.getLogger("reactor")

# ------------------------------------------------------------------ the registry
#
# Who runs a reactor's turns, and for whom.  Several servers share a reactor
# and each has its own lifecycle: `ServeToken` is one server's "I want to be
# served until I am stopped".  A thread that wants a reactor served -- a
# server's foreground ``run()``, or the one background thread that serves the
# servers started with ``start()`` -- is a *participant*.  One participant at a
# time drives (it is inside `Reactor.run`); the others wait on a condition.
# When the driver's own purpose is done (its server was stopped, or no started
# server is left) `stop_serving` asks `Reactor.run` to return (a *handoff*),
# and a waiting participant takes over.  A `Reactor.stop()` that is not a
# handoff is the user stopping the reactor itself: every participant of that
# moment returns, as ``run()`` always did.


class ServeToken:
    """One server's wish to be served; set by `stop_serving`, never cleared."""

    __slots__ = ("name", "_stopped")

    def __init__(self, name: str = "server") -> None:
        self.name = name
        self._stopped = threading.Event()

    def stopped(self) -> bool:
        """True once the server was stopped."""
        return self._stopped.is_set()

    def __repr__(self) -> str:
        return f"<ServeToken {self.name}{' stopped' if self.stopped() else ''}>"


class _Serving:
    """The drivers of one reactor."""

    __slots__ = (
        "cond",
        "driver",
        "driver_done",
        "handoff",
        "generation",
        "started",
        "thread",
        "ended",
        "claimed",
        "claims",
        "host",
        "__weakref__",
    )

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.driver: int | None = None  # the participant inside Reactor.run()
        self.driver_done: Callable[[], bool] | None = None
        self.handoff = False  # we asked Reactor.run() to return, not the user
        self.generation = 0  # bumped when the user stopped the reactor itself
        self.started: set[ServeToken] = set()
        self.thread: threading.Thread | None = None
        # The last background thread that left: it is still finishing for a
        # moment after it clears `thread`, and join_background must wait for it.
        self.ended: threading.Thread | None = None
        # A thread running its own loop of run_once() (claim_turns), and how many claims it holds.
        self.claimed: int | None = None
        self.claims = 0
        # The last thread seen running a turn outside run() and outside a claim (note_host).
        self.host: threading.Thread | None = None


_serving: weakref.WeakKeyDictionary[Reactor, _Serving] = weakref.WeakKeyDictionary()
_serving_lock = threading.Lock()


def _state(reactor: Reactor) -> _Serving:
    state = _serving.get(reactor)  # a reactor's entry is never replaced: no lock needed to find it
    if state is not None:
        return state
    with _serving_lock:
        state = _serving.get(reactor)
        if state is None:
            state = _serving[reactor] = _Serving()
        return state


def _participate(
    reactor: Reactor, state: _Serving, done: Callable[[], bool], on_exit: Callable[[], None] | None = None
) -> bool:
    """Drive ``reactor`` (or wait while another participant does) until ``done()``.

    Returns True when ``done()``, False when the reactor itself was stopped or
    closed.  ``on_exit`` runs under the registry's lock as this participant
    leaves, so that nothing can slip in between the last check and the exit.
    """
    me = threading.get_ident()
    cond = state.cond
    with cond:
        generation = state.generation
        if state.claimed == me:  # waiting for our own claim to end would never return
            raise RuntimeError("this thread already runs the reactor's turns (serve_forever() or a host loop)")
    while True:
        with cond:
            while True:
                if done() or state.generation != generation or reactor.is_closed():
                    if on_exit is not None:
                        on_exit()
                    return done()
                if state.driver is None and state.claimed is None and not reactor.is_running():
                    state.driver, state.driver_done, state.handoff = me, done, False
                    state.host = None
                    break
                cond.wait()
        try:
            reactor.run()
        finally:
            with cond:
                state.driver = state.driver_done = None
                if not state.handoff:
                    state.generation += 1  # Reactor.stop() from the user: everybody returns
                cond.notify_all()


def serve_until_stopped(reactor: Reactor, token: ServeToken) -> bool:
    """A server's ``run()``: serve in this thread, or wait while another thread does, until ``token`` is stopped.

    Returns False if the reactor itself was stopped (`Reactor.stop`) or
    closed first.
    """
    return _participate(reactor, _state(reactor), token.stopped)


def start_background(
    reactor: Reactor, token: ServeToken | None = None, name: str = "reactor"
) -> threading.Thread | None:
    """Serve ``token``'s server from the reactor's one background thread; return that thread.

    However many servers of one reactor are started, one thread serves them;
    it ends when the last of them is stopped.  Returns None when a ``run()``
    outside this registry (a plain `Reactor.run`) already drives the reactor.
    """
    state = _state(reactor)
    with state.cond:
        if token is not None and not token.stopped():
            state.started.add(token)
        thread = state.thread
        if thread is not None:
            return thread
        if reactor.is_running() and state.driver is None:
            return None
        thread = threading.Thread(target=_background, args=(reactor, state), name=name, daemon=True)
        state.thread = thread
        thread.start()
        return thread


def _background(reactor: Reactor, state: _Serving) -> None:
    me = threading.current_thread()

    def leave() -> None:
        if state.thread is me:
            state.thread = None

    try:
        _participate(reactor, state, lambda: not state.started, leave)
    finally:
        with state.cond:
            leave()
            state.ended = me
            state.cond.notify_all()


def stop_serving(reactor: Reactor, token: ServeToken) -> None:
    """Stop serving ``token``'s server: its ``run()`` returns; the background thread ends if it was the last.

    Safe from any thread, idempotent.  The reactor and its other servers go on.
    """
    state = _state(reactor)
    with state.cond:
        token._stopped.set()
        state.started.discard(token)
        done = state.driver_done
        if state.driver is not None and done is not None and done():
            state.handoff = True
            reactor.stop()
        state.cond.notify_all()


def serving_started(reactor: Reactor) -> bool:
    """True while some server of ``reactor`` is started (served by the background thread)."""
    state = _state(reactor)
    with state.cond:
        return bool(state.started)


def reactor_thread(reactor: Reactor) -> int | None:
    """The ident of the thread that runs ``reactor``'s turns now (or is about to), if any.

    In this order: a participant of the registry inside `Reactor.run`; a
    plain `Reactor.run`; a thread that claimed the turns for its own loop of
    `Reactor.run_once` (`claim_turns`); a background thread started and not
    yet inside `Reactor.run`; the thread last taken for the host loop
    (`note_host`), while it lives.  None: nobody drives it, so the caller
    may touch it itself.
    """
    state = _state(reactor)
    with state.cond:
        driver = state.driver
        claimed = state.claimed
        thread = state.thread
        host = state.host
    if driver is not None:
        return driver
    running = reactor.thread_ident
    if running is not None:
        return running
    if claimed is not None:
        return claimed
    if thread is not None and thread.is_alive():
        return thread.ident
    return host.ident if host is not None and host.is_alive() else None


def in_reactor_thread(reactor: Reactor) -> bool:
    """True if this thread may touch ``reactor`` now: it drives it, nobody does, or it is closed.

    False means: hand the work to the reactor's thread
    (``reactor.call_soon_threadsafe``), as `call_in_reactor_thread` does.
    """
    owner = reactor_thread(reactor)
    return owner is None or owner == threading.get_ident() or reactor.is_closed()


def claim_turns(reactor: Reactor) -> None:
    """Claim ``reactor``'s turns for this thread, which runs its own loop of `Reactor.run_once`.

    For a loop that is not `Reactor.run` -- ``socketserver``'s
    ``serve_forever()`` and ``handle_request()``, or an embedding host --
    so that `reactor_thread` names it and the registry's ``run()`` and
    background thread wait until `release_turns`.  Claims nest in one
    thread.  Raises RuntimeError if the reactor is inside `Reactor.run`, or
    another thread holds the claim: two threads must never run one
    reactor's turns.
    """
    me = threading.get_ident()
    state = _state(reactor)
    with state.cond:
        if reactor.is_running() or state.driver is not None:
            raise RuntimeError("this reactor is already running (reactor.run()), and that serves it already")
        if state.claimed is not None and state.claimed != me:
            raise RuntimeError("another thread is already running this reactor's turns")
        state.claimed = me
        state.claims += 1
        state.host = None


def release_turns(reactor: Reactor) -> None:
    """Give back a claim of `claim_turns` (from the thread that made it); the last one lets others drive."""
    state = _state(reactor)
    with state.cond:
        if state.claimed != threading.get_ident():
            raise RuntimeError("release_turns() from a thread that holds no claim on this reactor")
        state.claims -= 1
        if not state.claims:
            state.claimed = None
            state.cond.notify_all()  # a waiting run() or background thread may drive now


@contextlib.contextmanager
def driving(reactor: Reactor) -> Iterator[Reactor]:
    """`claim_turns` for the block (this thread runs ``reactor``'s turns), then `release_turns`."""
    claim_turns(reactor)
    try:
        yield reactor
    finally:
        release_turns(reactor)


def note_host(reactor: Reactor) -> None:
    """This thread touches ``reactor`` outside `Reactor.run` and any claim: take it for the host loop.

    How `reactor_thread` learns about an embedding host that calls
    `Reactor.run_once` without `claim_turns`, since nothing else tells it:
    a transport notes the thread that registers it on an undriven reactor,
    and the thread its reader runs on.  The note lasts until another thread
    is noted, a driver or claim takes over, or the thread ends.  Cheap while
    the reactor is inside `Reactor.run` (one attribute read).
    """
    if reactor.thread_ident is None:
        state = _state(reactor)
        if state.claimed is None:
            state.host = threading.current_thread()


def call_in_reactor_thread(reactor: Reactor, function: Callable[[], object]) -> None:
    """Call ``function()`` now if this thread may touch the reactor, else from its thread (soon)."""
    if in_reactor_thread(reactor):
        function()
    else:
        reactor.call_soon_threadsafe(function)


#: How often a caller waiting in `run_in_reactor_thread` looks whether the reactor is still driven.
_HANDOFF_POLL = 0.05


def run_in_reactor_thread(reactor: Reactor, function: Callable[[], object], timeout: float | None = 5.0) -> bool:
    """Call ``function()`` where it may touch the reactor, and wait until it has run.

    From the reactor's own thread, or when nobody drives the reactor (or it
    is closed), it runs here at once.  From any other thread while the
    reactor runs, it is handed to the reactor's thread and this call waits
    (at most ``timeout`` seconds; None: no bound) until it has run there.  If
    the reactor stops being driven meanwhile, it runs here instead; it runs
    once in every case.  Returns False (and logs a warning) only if the
    reactor's thread did not get to it in time: then it has not run, and
    will not.

    This is what a ``close()`` needs to be safe from any thread: only the
    reactor's thread may unregister and close a descriptor that it may be
    waiting on, or it fails with ``EBADF`` in the middle of a turn.
    """
    claim = threading.Lock()
    ran = threading.Event()

    def once() -> None:
        if claim.acquire(blocking=False):
            try:
                function()
            finally:
                ran.set()

    if in_reactor_thread(reactor):
        once()
        return True
    try:
        reactor.call_soon_threadsafe(once)
    except RuntimeError:  # closed meanwhile: nobody else will touch it
        once()
        return True
    deadline = None if timeout is None else time.monotonic() + timeout
    while not ran.wait(_HANDOFF_POLL):
        owner = reactor_thread(reactor)
        if owner is None or reactor.is_closed():
            # Nobody drives any more (the driver left between our look and our hand-off):
            # the queued call would wait for the next run, so it runs here.
            once()
            ran.wait()  # the driver may have claimed it just now: let it finish
            return True
        if deadline is not None and time.monotonic() >= deadline:
            if claim.acquire(blocking=False):
                logger.warning("the reactor's thread did not run %r within %s s", function, timeout)
                return False
            ran.wait()  # claimed by the reactor's thread at the last moment: it is running now
            return True
    return True


def background_thread(reactor: Reactor) -> threading.Thread | None:
    """The live background thread of ``reactor``, if any."""
    state = _state(reactor)
    with state.cond:
        thread = state.thread
    return thread if thread is not None and thread.is_alive() else None


def join_background(reactor: Reactor, timeout: float | None = None) -> bool:
    """Wait for the background thread of ``reactor`` to end; True if none is left running.

    A thread that has just left (its last server stopped) is waited for too:
    it ends a moment after it stops serving.
    """
    state = _state(reactor)
    with state.cond:
        thread = state.thread if state.thread is not None else state.ended
    if thread is None or not thread.is_alive():
        return True
    if thread is threading.current_thread():
        return False
    thread.join(timeout)
    return not thread.is_alive()


# ------------------------------------------------------------------ the worker pool

#: Which pool the current thread works for (unset outside workers).
_current = threading.local()


@dataclass(frozen=True, slots=True)
class WorkerPoolStatistics:
    """A snapshot of a `WorkerPool`'s counters."""

    #: The most threads the pool runs at once.
    max_workers: int
    #: The most jobs queued or running at once.
    max_pending: int
    #: Jobs queued or running now.
    pending: int
    #: Jobs accepted by `WorkerPool.submit` so far.
    submitted: int
    #: Jobs refused by `WorkerPool.submit` because ``max_pending`` were pending.
    rejected: int
    #: Jobs that raised (logged on the ``reactor`` logger).
    failed: int


class WorkerPool:
    """A bounded pool of worker threads with a bounded backlog.

    ``WorkerPool(max_workers=8, max_pending=1024, thread_name_prefix="reactor-worker")``
    runs jobs on at most ``max_workers`` threads (started on demand), with at
    most ``max_pending`` jobs queued or running.

    Methods for the caller: `submit` (never blocks; False when full),
    `shutdown`, `statistics`.  `submit` and `shutdown` are safe from any
    thread.  A job that raises is logged with its traceback and counted;
    catch inside the job to report it another way.
    """

    def __init__(
        self, max_workers: int = 8, max_pending: int = 1024, thread_name_prefix: str = "reactor-worker"
    ) -> None:
        if max_workers < 1 or max_pending < 1:
            raise ValueError(f"max_workers and max_pending must be >= 1, got {max_workers} and {max_pending}")
        # Imported here: most programs never run a handler in a thread, and
        # concurrent.futures is a noticeable part of the package's import time.
        import concurrent.futures

        self.max_workers = max_workers
        self.max_pending = max_pending
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix=thread_name_prefix
        )
        # One lock and a counter rather than a BoundedSemaphore: the same
        # non-blocking "take a slot or refuse", at the cost of one lock, and
        # the count of pending jobs is there for `statistics`.
        self._lock = threading.Lock()
        self._pending = 0
        self._submitted = 0
        self._rejected = 0
        self._failed = 0
        self._shut_down = False

    def __repr__(self) -> str:
        state = "shut down" if self._shut_down else f"{self._pending}/{self.max_pending} pending"
        return f"<{type(self).__name__} {self.max_workers} workers, {state}>"

    def submit(self, function: Callable[..., object], *args: Any) -> bool:
        """Run ``function(*args)`` in a worker; False (and nothing run) when the backlog is full.

        Never blocks.  Raises RuntimeError after `shutdown`.
        """
        with self._lock:
            if self._shut_down:
                raise RuntimeError(f"{self!r}: cannot submit after shutdown()")
            if self._pending >= self.max_pending:
                self._rejected += 1
                return False
            self._pending += 1
            self._submitted += 1
        try:
            future = self._executor.submit(self._run, function, args)
        except BaseException:
            self._release()
            raise
        # A done callback, not a ``finally`` in `_run`: a job cancelled by
        # ``shutdown(cancel_futures=True)`` never runs, yet gives its slot back.
        future.add_done_callback(self._release)
        return True

    def _run(self, function: Callable[..., object], args: tuple[Any, ...]) -> None:
        _current.pool = self
        try:
            function(*args)
        except Exception:
            with self._lock:
                self._failed += 1
            logger.exception("%r: job %r failed", self, function)

    def _release(self, future: concurrent.futures.Future[None] | None = None) -> None:
        with self._lock:
            self._pending -= 1

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """Accept no more jobs; with ``cancel_futures`` drop the queued ones; idempotent.

        With ``wait``, return when the running jobs have finished -- except
        when called from one of this pool's own workers, which cannot wait
        for itself (that join would never end): then it returns at once.
        """
        with self._lock:
            self._shut_down = True
        if wait and getattr(_current, "pool", None) is self:
            wait = False
        self._executor.shutdown(wait=wait, cancel_futures=cancel_futures)

    @property
    def is_shut_down(self) -> bool:
        """True once `shutdown` was called."""
        return self._shut_down

    def statistics(self) -> WorkerPoolStatistics:
        """A snapshot of the counters (pending, submitted, rejected, failed)."""
        with self._lock:
            return WorkerPoolStatistics(
                max_workers=self.max_workers,
                max_pending=self.max_pending,
                pending=self._pending,
                submitted=self._submitted,
                rejected=self._rejected,
                failed=self._failed,
            )
