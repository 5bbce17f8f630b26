"""The threads of the package: who drives a reactor, and the one worker pool.

The core never starts a thread.  Two things above it do, and each must be
written once so that every surface agrees:

*Serving in the background.*  Surfaces offer ``start()`` (`RequestServer.start`,
`reactor.easy` endpoints' ``start``).  However many servers of one reactor
are started, one thread runs that reactor: `start_background` keeps the
registry, `background_thread` answers "who runs it?" (which is also how a
thread-safe ``send`` knows whether it is already on the reactor's thread),
and `join_background` waits for it.

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

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core import Reactor

if TYPE_CHECKING:
    import concurrent.futures

__all__ = [
    "WorkerPool",
    "WorkerPoolStatistics",
    "background_thread",
    "join_background",
    "start_background",
]

logger = logging.getLogger("reactor")

# ------------------------------------------------------------------ the registry

_threads: dict[Reactor, threading.Thread] = {}
_lock = threading.Lock()


def _serve(reactor: Reactor) -> None:
    try:
        reactor.run()
    finally:
        with _lock:
            if _threads.get(reactor) is threading.current_thread():
                del _threads[reactor]


def start_background(reactor: Reactor, name: str = "reactor") -> threading.Thread | None:
    """Run ``reactor`` in a daemon thread unless one already does; return that thread.

    Returns None when the reactor is already run by someone's ``run()`` in
    the foreground (it is being served; there is nothing to start).
    """
    with _lock:
        thread = _threads.get(reactor)
        if thread is not None and thread.is_alive():
            return thread
        if reactor.is_running():
            return None
        thread = threading.Thread(target=_serve, args=(reactor,), name=name, daemon=True)
        _threads[reactor] = thread
        thread.start()
        return thread


def background_thread(reactor: Reactor) -> threading.Thread | None:
    """The live background thread of ``reactor``, if any."""
    with _lock:
        thread = _threads.get(reactor)
    return thread if thread is not None and thread.is_alive() else None


def join_background(reactor: Reactor, timeout: float | None = None) -> bool:
    """Wait for the background thread of ``reactor`` to end; True if none is left running."""
    thread = background_thread(reactor)
    if thread is None or thread is threading.current_thread():
        return thread is None
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
