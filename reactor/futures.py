"""Futures: the result of an operation that completes later, on a reactor.

A `Future` belongs to one reactor and is completed in that reactor's thread.
Its done-callbacks are never run re-entrantly from `set_result` /
`set_exception` / `cancel`: completion *schedules* them with
`Reactor.call_soon`, so user code runs only from the reactor's turn (the house
rule "one place calls user code").  This is asyncio's contract, and for the
same reason: a callback that runs inside `set_result` sees half-updated state
in whoever called `set_result`.

`result()` on a pending future never blocks.  Blocking there would deadlock a
single-threaded reactor (the thread that would complete the future is the one
waiting), so it raises `InvalidStateError` naming the two ways out:
`Reactor.run_until_complete(future)` or `add_done_callback`.

A reactor future is awaitable from an asyncio coroutine when the reactor is
driven by that asyncio loop (see `reactor.embed.attach_asyncio`): `__await__`
bridges to an `asyncio.Future` of the running loop (`to_asyncio`), so
asyncio's Task machinery sees one of its own futures and the two loops never
share internals; cancellation crosses the bridge both ways.  `to_concurrent`
is the same bridge to a `concurrent.futures.Future`, for other threads.
"""

from __future__ import annotations

import threading
import types
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    import asyncio
    import concurrent.futures
    from asyncio import CancelledError as CancelledError

    from .core import Reactor

__all__ = ["Future", "InvalidStateError", "CancelledError", "to_asyncio", "to_concurrent"]

T = TypeVar("T")

# `CancelledError` is asyncio's class, so ``except asyncio.CancelledError``
# catches a cancelled reactor future too.  Importing asyncio costs more than
# the rest of the package together (it pulls in ssl and subprocess), so the
# name is resolved on first access (PEP 562 module ``__getattr__``) and at the
# two raise sites, never at import: a program that never cancels and never
# awaits never imports asyncio.


def __getattr__(name: str) -> Any:
    """Resolve `CancelledError` (asyncio's class) on first access."""
    if name == "CancelledError":
        return _cancelled_error()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _cancelled_error() -> type[CancelledError]:
    """asyncio's `CancelledError`, importing asyncio on the first call."""
    from asyncio import CancelledError

    return CancelledError


class _Turn(threading.local):
    """Which reactor's turn this thread is running (None outside every turn).

    Set by `Reactor.run_once` around the callbacks of a turn (and by a task
    step that runs outside one: an eager start from plain code).  The task
    being stepped is the reactor's own ``_current_task``, a plain attribute:
    a `threading.local` attribute costs about 0.4 k instructions a read or
    write on CPython 3.11, and a task step needs several, so the per-step
    state lives on the reactor and only this per-turn one here.  Read by
    `reactor.tasks.current_task`, `reactor.tasks.get_running_reactor` and
    `Future.__await__`'s slow path.  It lives here, below the core and the
    tasks layer, because both need it.
    """

    reactor: Any = None


_turn = _Turn()


def _task_stepping() -> bool:
    """True when a reactor task (of any reactor) is being stepped in this thread."""
    reactor = _turn.reactor
    return reactor is not None and reactor._current_task is not None


class InvalidStateError(RuntimeError):
    """A future was used in a state that does not allow the operation
    (result of a pending future, or completing a future twice)."""


_PENDING = "PENDING"
_CANCELLED = "CANCELLED"
_FINISHED = "FINISHED"


class Future(Generic[T]):
    """The eventual result of an operation, completed on a reactor.

    Create one with `Reactor.create_future()`.  Not thread-safe: complete it
    from the reactor's thread (from another thread, use
    ``reactor.call_soon_threadsafe(fut.set_result, value)``).
    """

    __slots__ = ("_reactor", "_state", "_result", "_exception", "_callbacks", "__weakref__")

    def __init__(self, reactor: Reactor) -> None:
        self._reactor = reactor
        self._state = _PENDING
        self._result: Any = None
        self._exception: BaseException | None = None
        self._callbacks: list[Callable[[Future[T]], object]] = []

    def __repr__(self) -> str:
        if self._state == _FINISHED:
            if self._exception is not None:
                return f"<Future finished exception={self._exception!r}>"
            return f"<Future finished result={self._result!r}>"
        return f"<Future {self._state.lower()}>"

    @property
    def reactor(self) -> Reactor:
        """The reactor this future belongs to."""
        return self._reactor

    def done(self) -> bool:
        """True when the future has a result, an exception, or was cancelled."""
        return self._state != _PENDING

    def cancelled(self) -> bool:
        """True when the future was cancelled."""
        return self._state == _CANCELLED

    def result(self) -> T:
        """Return the result, raise the exception, or raise `CancelledError`.

        Never blocks: on a pending future this raises `InvalidStateError`.
        """
        if self._state == _FINISHED:
            if self._exception is not None:
                raise self._exception
            return self._result  # type: ignore[no-any-return]
        if self._state == _CANCELLED:
            raise _cancelled_error()("the future was cancelled")
        raise InvalidStateError(
            "Future.result() called on a pending future; it never blocks. Wait for it "
            "with reactor.run_until_complete(future, timeout) or react to it with "
            "future.add_done_callback(fn)."
        )

    def exception(self) -> BaseException | None:
        """Return the exception (None if the future succeeded).

        Raises `CancelledError` if cancelled and `InvalidStateError` if pending.
        """
        if self._state == _FINISHED:
            return self._exception
        if self._state == _CANCELLED:
            raise _cancelled_error()("the future was cancelled")
        raise InvalidStateError(
            "Future.exception() called on a pending future; use "
            "reactor.run_until_complete(future) or future.add_done_callback(fn)."
        )

    def add_done_callback(self, fn: Callable[[Future[T]], object]) -> None:
        """Call ``fn(future)`` from the reactor once the future is done.

        If it is already done, the call is scheduled with `Reactor.call_soon`.
        """
        if self._state != _PENDING:
            self._reactor.call_soon(fn, self)
        else:
            self._callbacks.append(fn)

    def remove_done_callback(self, fn: Callable[[Future[T]], object]) -> int:
        """Remove every registration of ``fn``; return how many were removed."""
        kept = [cb for cb in self._callbacks if cb != fn]
        removed = len(self._callbacks) - len(kept)
        self._callbacks[:] = kept
        return removed

    def cancel(self) -> bool:
        """Cancel the future; False if it was already done."""
        if self._state != _PENDING:
            return False
        self._state = _CANCELLED
        self._schedule_callbacks()
        return True

    def set_result(self, result: T) -> None:
        """Complete the future with ``result``."""
        if self._state != _PENDING:
            raise InvalidStateError(f"set_result() on a future that is already {self._state}")
        self._result = result
        self._state = _FINISHED
        self._schedule_callbacks()

    def set_exception(self, exception: BaseException | type[BaseException]) -> None:
        """Complete the future with ``exception`` (a class is instantiated)."""
        if self._state != _PENDING:
            raise InvalidStateError(f"set_exception() on a future that is already {self._state}")
        if isinstance(exception, type):
            exception = exception()
        if isinstance(exception, StopIteration):
            raise TypeError("StopIteration cannot be raised into a Future")
        self._exception = exception
        self._state = _FINISHED
        self._schedule_callbacks()

    def _schedule_callbacks(self) -> None:
        callbacks = self._callbacks
        if not callbacks:
            return
        self._callbacks = []
        call_soon = self._reactor.call_soon
        for fn in callbacks:
            call_soon(fn, self)

    def __await__(self) -> Generator[Any, None, T]:
        """Await from a reactor task, or from an asyncio coroutine whose loop drives this reactor.

        From asyncio, the coroutine waits on `to_asyncio`'s bridge, so
        cancelling it (a `asyncio.wait_for` that times out, a cancelled task)
        cancels this future too.
        """
        if self._state != _PENDING:
            return self.result()
        if self._reactor._current_task is not None or _task_stepping():
            # A reactor task (reactor.tasks) is stepping the awaiting coroutine:
            # hand it this future to park on; it steps again once we are done
            # (a task of another reactor refuses it with an error that says so).
            yield self
            if self._state == _FINISHED and self._exception is None:  # result(), inline: see Task._wakeup
                return self._result  # type: ignore[no-any-return]
            return self.result()
        return (yield from to_asyncio(self).__await__())

    __iter__ = __await__



@types.coroutine
def _park(future: Future[None], task: object) -> Generator[Any, None, None]:
    """``await _park(future, task)`` for a future whose result is None (a stream's "data arrived").

    ``task`` is the reactor's ``_current_task`` as the caller found it.
    Stepped by a reactor task, it hands ``future`` to the task, which parks
    on it and resumes the coroutine with ``send(None)``, or throws its error
    or `CancelledError` in here.  A generator marked as a coroutine is
    awaited without an ``__await__`` lookup and call, and the future's own
    ``__await__`` generator is never made: about 0.4 k instructions less per
    wait on CPython 3.11 than awaiting a future whose ``__await__`` is a
    Python method.  Anywhere else (an asyncio coroutine, say) the future is
    awaited as any `Future`.
    """
    if task is not None:
        yield future
    else:
        yield from future.__await__()


# The bridges to asyncio and concurrent.futures live in `reactor.embed` (the
# layer that knows other loops); they are importable from here too, where
# their names say what they convert, and loaded only when called.


def to_asyncio(future: Future[T], *, loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Future[T]:
    """An `asyncio.Future` of ``loop`` (default: the running loop) that follows ``future``.

    Its result, exception or cancellation is copied from ``future``;
    cancelling it cancels ``future``.  See `reactor.embed.to_asyncio`.
    """
    from .embed import to_asyncio as bridge

    return bridge(future, loop=loop)


def to_concurrent(future: Future[T]) -> concurrent.futures.Future[T]:
    """A `concurrent.futures.Future` that follows ``future``, usable from any thread.

    Cancelling it cancels ``future``.  See `reactor.embed.to_concurrent`.
    """
    from .embed import to_concurrent as bridge

    return bridge(future)
