"""Work off the reactor's thread: `run_in_executor` and `getaddrinfo`.

What can go wrong, and what we chose
------------------------------------
*A blocking call on the reactor's thread stops everything.*  The worst
offender is the one nobody sees: ``connect(("db.example", 80))`` looks up the
name first, in the C library, and a resolver that does not answer holds the
thread for its own retry budget (5 s per try on glibc), with every timer,
connection and deadline of the reactor frozen behind it.  asyncio, libuv and
Twisted all resolve in a thread pool; so do we.  `getaddrinfo` runs
`socket.getaddrinfo` in the reactor's worker pool, and the connect layer
calls it for every host name, so a request's timeout covers the lookup.  A
thread stuck in a lookup cannot be interrupted (the C call has no timeout):
the timeout fails the request on time and the worker returns whenever the
resolver does, its answer then dropped.  IP literals never need a lookup,
and the connect layer does not ask for one (`numeric_host`).

*One pool, bounded.*  The pool is the transport layer's `WorkerPool`,
created on the first job and shut down by `Reactor.close` (without waiting:
a worker may be stuck in such a lookup).  It bounds its threads and its
backlog; a job beyond the backlog fails its future at once with
`RuntimeError` rather than queueing without limit.

*Results come back through the reactor.*  A worker never touches a
reactor future: it hands the outcome to `Reactor.call_soon_threadsafe`, and
the reactor's thread completes the future.  Cancelling the reactor future
cancels the job if it has not started (a job that is running finishes, and
its result is dropped), as `concurrent.futures` does.

*Where threads are forbidden.*  ``Reactor(threads=False)``, or a platform
without threads (Emscripten, WASI, the default there), or a thread that
fails to start (``RuntimeError: can't start new thread``).  Then:

- `run_in_executor` with ``None`` raises `RuntimeError` at the call, saying
  why; an executor given explicitly is used as given (its threads, or
  processes, are its owner's choice, not the reactor's).
- `getaddrinfo` resolves on the reactor's thread, a blocking call that the
  timeout cannot interrupt, and logs one WARNING per reactor the first time
  it does so for a name (an IP literal is never a lookup).  ``localhost`` is
  not a lookup either: the address parser maps it to ``127.0.0.1``.  We chose
  this over failing: a program without threads that connects to a name can
  do nothing better than wait for the answer, and a lookup from the hosts
  file or a working resolver costs a millisecond.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ..core import AddrInfo, Reactor
from ..futures import Future
from .threads import WorkerPool

if TYPE_CHECKING:
    import concurrent.futures

__all__ = [
    "run_in_executor",
    "getaddrinfo",
    "numeric_host",
    "worker_pool",
    "DEFAULT_MAX_WORKERS",
    "DEFAULT_MAX_PENDING",
]

logger = logging.getLogger("reactor")

T = TypeVar("T")

#: Threads of a reactor's worker pool (asyncio's default executor has as many).
DEFAULT_MAX_WORKERS = min(32, (os.cpu_count() or 1) + 4)
#: Jobs a reactor's worker pool holds queued or running before it refuses more.
DEFAULT_MAX_PENDING = 4096


def _no_threads_message(reactor: Reactor) -> str:
    return (
        f"{reactor!r} may not start threads (Reactor(threads=False), or a platform without "
        "threads), so it has no worker pool: pass an executor of your own to run_in_executor(), "
        "or call the function directly"
    )


def worker_pool(reactor: Reactor) -> WorkerPool:
    """The reactor's worker pool, created on first use; `RuntimeError` where threads are forbidden.

    Call from the reactor's thread.  `Reactor.close` shuts it down.
    """
    pool: WorkerPool | None = reactor._worker_pool
    if pool is None:
        reactor._check_closed()
        if not reactor.threads:
            raise RuntimeError(_no_threads_message(reactor))
        pool = WorkerPool(DEFAULT_MAX_WORKERS, DEFAULT_MAX_PENDING, thread_name_prefix="reactor-executor")
        reactor._worker_pool = pool
    return pool


class _Job:
    """One call handed to the worker pool, and the future it completes.

    ``state`` moves once from ``pending`` to ``running`` (a worker took it)
    or to ``dropped`` (the future was cancelled, or the submission failed,
    before that), under ``lock``: a job is run at most once and never after
    its future gave up on it.
    """

    __slots__ = ("reactor", "future", "func", "args", "state", "lock")

    def __init__(self, reactor: Reactor, future: Future[Any], func: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.reactor = reactor
        self.future = future
        self.func = func
        self.args = args
        self.state = "pending"
        self.lock = threading.Lock()

    def run(self) -> None:
        """In a worker: call the function, hand the outcome to the reactor's thread."""
        with self.lock:
            if self.state != "pending":
                return
            self.state = "running"
        try:
            outcome: tuple[bool, Any] = (True, self.func(*self.args))
        except BaseException as exc:  # delivered to the future, as concurrent.futures does
            outcome = (False, exc)
        _deliver(self.reactor, self.future, *outcome)

    def drop(self) -> bool:
        """Make sure the job never runs; False if a worker already started it."""
        with self.lock:
            if self.state == "running":
                return False
            self.state = "dropped"
            return True

    def on_future_done(self, future: Future[Any]) -> None:
        if future.cancelled():
            self.drop()


def _deliver(reactor: Reactor, future: Future[Any], ok: bool | None, value: Any) -> None:
    """From any thread: complete ``future`` on its reactor's thread.

    With ``value`` as its result if ``ok``, as its exception if ``ok`` is
    False; cancel it if ``ok`` is None.
    """
    try:
        reactor.call_soon_threadsafe(_settle, future, ok, value)
    except RuntimeError:  # the reactor closed meanwhile: nobody waits for this any more
        logger.debug("%r closed before a worker's result arrived; dropped", reactor)


def _settle(future: Future[Any], ok: bool | None, value: Any) -> None:
    if future.done():  # cancelled while the job ran
        return
    if ok is None:
        future.cancel()
    elif ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class _ThreadStartFailed(RuntimeError):
    """The pool could not start a worker thread."""


def _submit(reactor: Reactor, func: Callable[..., T], args: tuple[Any, ...]) -> Future[T]:
    """Hand ``func(*args)`` to the reactor's worker pool; `_ThreadStartFailed` if no thread would start."""
    pool = worker_pool(reactor)
    future: Future[T] = reactor.create_future()
    job = _Job(reactor, future, func, args)
    try:
        accepted = pool.submit(job.run)
    except RuntimeError as exc:  # "can't start new thread": the platform or a limit forbids it
        # The executor may have queued the job before its thread failed to
        # start; a worker started later must not run it behind our back.
        job.drop()
        raise _ThreadStartFailed(f"cannot start a worker thread for {reactor!r}: {exc}") from exc
    if not accepted:
        job.drop()
        future.set_exception(
            RuntimeError(
                f"the worker pool of {reactor!r} is full ({pool.max_pending} jobs queued or "
                "running): wait for some to finish, or pass an executor of your own"
            )
        )
        return future
    future.add_done_callback(job.on_future_done)
    return future


def run_in_executor(
    reactor: Reactor, executor: concurrent.futures.Executor | None, func: Callable[..., T], *args: Any
) -> Future[T]:
    """Run ``func(*args)`` in ``executor``; a reactor `Future` of its result (this is `Reactor.run_in_executor`).

    ``executor`` None means the reactor's bounded worker pool (created on
    first use, shut down by `Reactor.close`); any `concurrent.futures.Executor`
    works too.  Call from the reactor's thread.  The result (or exception)
    comes back through `Reactor.call_soon_threadsafe`.  Cancelling the
    returned future cancels the job if it has not started yet.

    Raises `RuntimeError` at once with ``None`` on a reactor that may not
    start threads (``Reactor(threads=False)``, or a platform without them), or
    when a worker thread cannot be started.  When the pool's backlog is full
    the future fails with `RuntimeError`.
    """
    if not callable(func):
        raise TypeError(f"run_in_executor() needs a callable, got {func!r}")
    reactor._check_closed()
    if executor is None:
        try:
            return _submit(reactor, func, args)
        except _ThreadStartFailed as exc:
            raise RuntimeError(
                f"{exc}; where threads cannot be started, create the reactor with "
                "Reactor(threads=False) and pass an executor of your own"
            ) from exc.__cause__
    import concurrent.futures

    if not isinstance(executor, concurrent.futures.Executor):
        raise TypeError(f"executor must be a concurrent.futures.Executor or None, got {executor!r}")
    future: Future[T] = reactor.create_future()
    inner = executor.submit(func, *args)

    def inner_done(inner: concurrent.futures.Future[T]) -> None:  # in the executor's thread (or this one)
        if inner.cancelled():
            _deliver(reactor, future, None, None)
            return
        exc = inner.exception()
        if exc is not None:
            _deliver(reactor, future, False, exc)
        else:
            _deliver(reactor, future, True, inner.result())

    def future_done(done: Future[T]) -> None:
        if done.cancelled():
            inner.cancel()

    inner.add_done_callback(inner_done)
    future.add_done_callback(future_done)
    return future


# ------------------------------------------------------------------ name lookups


def numeric_host(family: int, host: str) -> bool:
    """True when ``host`` is an IP literal of ``family`` (``AF_INET`` or ``AF_INET6``): no lookup needed."""
    try:
        socket.inet_pton(family, host.partition("%")[0] if family == socket.AF_INET6 else host)
    except (OSError, ValueError):
        return False
    return True


def getaddrinfo(
    reactor: Reactor,
    host: str | bytes | None,
    port: str | int | None,
    family: int = 0,
    type: int = 0,
    proto: int = 0,
    flags: int = 0,
) -> Future[list[AddrInfo]]:
    """`socket.getaddrinfo` in the reactor's worker pool; a `Future` of its list (this is `Reactor.getaddrinfo`).

    The arguments are `socket.getaddrinfo`'s.  The future fails with its
    `socket.gaierror` when the name does not resolve.  Cancel it (or let a
    timeout do so) to stop waiting: the lookup itself cannot be interrupted,
    its answer is dropped.

    An IP literal (``host`` numeric and ``port`` a number) is answered at
    once, on this thread, with no thread started.  Where the reactor may not
    start threads (see `Reactor.threads`), or a worker thread cannot be
    started, a name is resolved on this thread -- a blocking call -- and one
    WARNING per reactor says so.
    """
    reactor._check_closed()
    args = (host, port, family, type, proto, flags)
    if _literal(host, port):
        return _resolve_here(reactor, args)
    if reactor.threads:
        try:
            return _submit(reactor, _lookup, args)
        except _ThreadStartFailed as exc:
            _warn_blocking(reactor, host, str(exc))
            return _resolve_here(reactor, args)
    _warn_blocking(reactor, host, "the reactor may not start threads")
    return _resolve_here(reactor, args)


def _literal(host: str | bytes | None, port: str | int | None) -> bool:
    if port is not None and not isinstance(port, int) and not (isinstance(port, str) and port.isdigit()):
        return False  # a service name: /etc/services, maybe NIS
    if host is None:
        return True  # the wildcard or loopback address, no lookup
    text = host.decode("ascii", "replace") if isinstance(host, bytes) else host
    return numeric_host(socket.AF_INET, text) or numeric_host(socket.AF_INET6, text)


def _lookup(*args: Any) -> list[AddrInfo]:
    """`socket.getaddrinfo` (looked up at each call, so a test can stand in for the resolver)."""
    return list(socket.getaddrinfo(*args))


def _resolve_here(reactor: Reactor, args: tuple[Any, ...]) -> Future[list[AddrInfo]]:
    future: Future[list[AddrInfo]] = reactor.create_future()
    try:
        future.set_result(_lookup(*args))
    except Exception as exc:  # gaierror, or UnicodeError for a name IDNA cannot encode: as from a worker
        future.set_exception(exc)
    return future


def _warn_blocking(reactor: Reactor, host: str | bytes | None, why: str) -> None:
    if reactor._blocking_lookup_warned:
        return
    reactor._blocking_lookup_warned = True
    logger.warning(
        "%r resolves the name %r on its own thread (%s): the call blocks every timer and "
        "connection of the reactor until the resolver answers, and no timeout can cut it "
        "short; give an IP address, or allow threads (logged once per reactor)",
        reactor,
        host,
        why,
    )
