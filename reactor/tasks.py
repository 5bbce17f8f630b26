"""Coroutines on the reactor itself: `Task`, `sleep`, `wait_for`, `gather`, `TaskGroup`, `run`.

What a task is, and what we chose
---------------------------------
A coroutine is a generator that the caller steps with ``send`` and ``throw``;
whatever it yields is a question to whoever steps it ("wake me when this is
done").  asyncio, trio and curio each answer that question with their own
loop.  Here the answer is a reactor `Future`: a `Task` is a `Future` that
steps its coroutine from reactor callbacks, and every ``await`` of a pending
reactor future inside it yields that future (`Future.__await__` knows a task
is stepping it: the reactor's ``_current_task``, set around each step).  The
task adds a done-callback to the future and goes back to the loop; the
callback steps it again.  So user code runs only from the reactor's turn
(house rule 4), nothing here needs asyncio or a thread, and tasks run
wherever the reactor runs: its own `Reactor.run`, ``run_once(0)`` from a
``select()`` loop, Tk or Qt through `reactor.embed`.

*What a step may yield.*  ``None`` (a bare ``yield``, as in ``sleep(0)``)
means "let the others run for a turn": the next step is queued with
``call_soon``.  A reactor `Future` of the same reactor parks the task on it.
Anything else goes through `adapt_awaited`, the one place where a foreign
future is turned into a reactor future: an asyncio future of the loop the
reactor is attached to (`reactor.embed.from_asyncio`), so a task may await
asyncio's own futures and coroutines there; anything else is refused with
an error that says what to do.

*Cancellation* is asyncio's, since users will move code between the two:
`Task.cancel` cancels the future the task is parked on (so a cancelled
`Reactor.request` closes its connection), and the task's next step throws
`CancelledError` in at its ``await``.  A coroutine may catch it, clean up in
``finally`` (and even await there), or swallow it.  `Task.cancelling` and
`Task.uncancel` count the cancellation requests that are still pending, which
is how `wait_for` and `TaskGroup` tell their own cancellation from one that
came from outside.  `CancelledError` is asyncio's class (see
`reactor.futures`), so ``except asyncio.CancelledError`` works unchanged; it is
imported on first use only, never by ``import reactor``.

*Eager start.*  A task's first step is normally queued (``call_soon``): it
runs in the next turn.  ``eager_start=True`` (asyncio 3.12's option of the
same name) runs it inside `Task` itself, with the task as `current_task`,
so a coroutine that finishes without awaiting anything pending (a request
handler that computes its reply, a read whose data is already buffered) is
done when `create_task` returns: no queued step, no turn of delay, nothing
left for the caller to wait for.  One that suspends is parked on what it
awaited, exactly as after any other step, so cancellation, exceptions and
the task registry behave the same either way.  `RequestServer` goes one
step further with `_start_eagerly`: the `Task`
itself is made only when the first step needs one (it suspends, raises or
asks for `current_task`).  Without this, an ``async def handle_request``
that awaits nothing cost twice the server CPU of the same handler written
plainly.

*The running reactor.*  `get_running_reactor` and `current_task` read two
things: which reactor's turn this thread runs (a thread-local the turn sets,
``reactor.futures._turn``), and that reactor's ``_current_task``, which the
task sets around each step.  A thread-local attribute costs about 0.4 k
instructions a read or write on CPython 3.11; a step that set one three
times, plus the reads of ``await`` and of the stream reader, cost 10 % of the
instructions of the whole coroutine layer under a line server (callgrind, an
in-process loop of ``data_received`` -> task -> ``readline`` -> ``write``
-> ``drain``), so the per-step state is a plain attribute of the reactor.
Outside a task (a plain callback, or no reactor at all) there is no running
reactor, and they say so.

*Who keeps a task alive.*  asyncio keeps only weak references to its tasks,
so a task that nobody references can vanish mid-await.  The reactor keeps a
strong reference to every pending task (``Reactor._tasks``; a task leaves it
when it finishes), which is also how `Reactor.close` and `run` find the tasks
they must cancel.

*Errors nobody looked at.*  A task that failed and is garbage collected
without anyone calling ``result()``/``exception()`` (or awaiting it) reports
its exception through the reactor's exception handler, as asyncio does.

The module runs past our usual 600 lines because it holds one contract: the
task, and the four helpers (`wait_for`, `gather`, `TaskGroup`, `run`) whose
cancellation semantics depend on the task's private counters; split, each
part would reach into another's internals.
"""

from __future__ import annotations

import inspect
import itertools
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine, Generator
from types import CoroutineType
from typing import TYPE_CHECKING, Any, TypeVar

from .core import Reactor
from .futures import _FINISHED, _PENDING, Future, _cancelled_error, _turn

if TYPE_CHECKING:
    from types import TracebackType

__all__ = [
    "Task",
    "TaskGroup",
    "create_task",
    "current_task",
    "get_running_reactor",
    "sleep",
    "wait_for",
    "gather",
    "run",
    "adapt_awaited",
]

T = TypeVar("T")

_task_numbers = itertools.count(1)


def _is_cancelled_error(exc: BaseException | None) -> bool:
    """Whether ``exc`` is a `CancelledError`, without importing asyncio when nothing was cancelled."""
    asyncio = sys.modules.get("asyncio")
    return asyncio is not None and isinstance(exc, asyncio.CancelledError)


def _close_coroutine(coro: object) -> None:
    # A coroutine we refuse is closed, so Python does not warn "never awaited" on top of our error.
    close = getattr(coro, "close", None)
    if inspect.iscoroutine(coro) and close is not None:
        close()


def adapt_awaited(reactor: Reactor, awaited: object) -> Future[Any]:
    """Turn what a task's coroutine yielded into a reactor `Future` to park the task on.

    This is the single hook for foreign futures: a reactor future never gets
    here (the task parks on it directly), and ``None`` never does either
    (it means "yield for a turn").  An asyncio future, of the loop the
    reactor is attached to, becomes a reactor future that follows it
    (`reactor.embed.from_asyncio`; cancelling the task cancels it).  Anything
    else, or an asyncio future of a loop that is not running, is refused
    with an exception that the task throws into its coroutine at the
    ``await`` that yielded it.
    """
    if getattr(awaited, "_asyncio_future_blocking", None) is not None:
        # An asyncio future (asyncio.sleep, loop.run_in_executor, ... in a
        # reactor attached to that loop): park on a reactor future that
        # follows it.  Its __await__ checks that it is done when resumed.
        from .embed import from_asyncio

        awaited._asyncio_future_blocking = False  # type: ignore[attr-defined]  # as asyncio's Task does
        return from_asyncio(awaited, reactor)  # type: ignore[arg-type]
    raise TypeError(
        f"a reactor task got a bad yield {awaited!r}: a coroutine run by the reactor may await reactor "
        "futures, tasks and coroutines, or yield None to let other tasks run for a turn"
    )


class Task(Future[T]):
    """A `Future` that runs a coroutine on a reactor (`Reactor.create_task`, `create_task`).

    Create it with `Reactor.create_task` or `create_task`; the first step runs
    in the reactor's next turn, or at once with ``eager_start=True`` (see
    `Task.__init__`).  The task's result is the coroutine's return value, or
    the exception it raised.  Cancel it with `cancel`.  As for every reactor
    future, use it from the reactor's thread only.
    """

    __slots__ = (
        "_coro",
        "_name",
        "_waiting_on",
        "_must_cancel",
        "_cancel_message",
        "_cancel_requests",
        "_cancelled_exc",
        "_log_traceback",
        "_wakeup_callback",
    )

    def __init__(
        self, coro: Coroutine[Any, Any, T], reactor: Reactor, *, name: object = None, eager_start: bool = False
    ) -> None:
        """Start running ``coro`` on ``reactor``: its first step is queued, or run now if ``eager_start``.

        With ``eager_start`` (asyncio 3.12's ``Task(..., eager_start=True)``)
        the first step runs inside this call, with the task as `current_task`:
        a coroutine that returns (or raises) without suspending leaves the
        task done when the call returns, and nothing was queued for it; one
        that suspends goes on as any task, parked on what it awaited.  Call
        it from the reactor's thread, from a reactor callback or a task.
        """
        # type() first: an exact coroutine is the common case, and the ABC's
        # isinstance costs 0.22 us against 0.06 us (timeit, Python 3.11).
        if type(coro) is not CoroutineType and not isinstance(coro, Coroutine):
            raise TypeError(f"a Task needs a coroutine (an async def function called), got {coro!r}")
        if reactor._closed:
            _close_coroutine(coro)
            raise RuntimeError("cannot create a task on a closed Reactor; create a new one")
        self._setup(coro, reactor, name)
        if eager_start:
            outer = _begin_eager_step(reactor)
            try:
                self._step(None)
            finally:
                if outer is not _KEEP_TURN:
                    _turn.reactor = outer
        else:
            reactor.call_soon(self._step, None)

    def _setup(self, coro: Coroutine[Any, Any, T], reactor: Reactor, name: object) -> None:
        # The state of a task that has not stepped yet (or whose first step is running
        # under `_start_eagerly`), registered with its reactor; nothing scheduled.
        Future.__init__(self, reactor)
        self._coro = coro
        # The number is taken now (names follow creation order), the text made when asked for.
        self._name: str | int = next(_task_numbers) if name is None else str(name)
        self._waiting_on: Future[Any] | None = None
        self._must_cancel = False
        self._cancel_message: Any = None
        self._cancel_requests = 0
        self._cancelled_exc: BaseException | None = None
        self._log_traceback = False
        # One bound method, not one per await; None once the task is done.
        self._wakeup_callback: Callable[[Future[Any]], None] | None = self._wakeup
        reactor._tasks.add(self)

    def __repr__(self) -> str:
        if self.cancelled():
            state = "cancelled"
        elif self.done():
            state = "finished" if self._exception is None else f"finished exception={self._exception!r}"
        else:
            state = "pending"
        coro = getattr(self._coro, "__qualname__", None) or repr(self._coro)
        waiting = f" wait_for={self._waiting_on!r}" if self._waiting_on is not None else ""
        return f"<Task {state} name={self.get_name()!r} coro={coro}{waiting}>"

    def __del__(self) -> None:
        if getattr(self, "_log_traceback", False):
            self._log_traceback = False
            self._reactor.call_exception_handler(
                {
                    "message": "Task exception was never retrieved",
                    "exception": self._exception,
                    "task": self,
                    "callback": self,
                }
            )

    # ----------------------------------------------------------- inspection

    def get_coro(self) -> Coroutine[Any, Any, T]:
        """The coroutine the task runs."""
        return self._coro

    def get_name(self) -> str:
        """The task's name (``Task-<n>`` unless one was given)."""
        name = self._name
        if type(name) is int:
            self._name = name = f"Task-{name}"
        return name  # type: ignore[return-value]

    def set_name(self, value: object) -> None:
        """Rename the task (the value is converted with `str`)."""
        self._name = str(value)

    # ------------------------------------------------------------ results

    def result(self) -> T:
        """The coroutine's return value; raises its exception, or `CancelledError` if cancelled."""
        if self.cancelled():
            raise self._make_cancelled_error()
        self._log_traceback = False
        return super().result()

    def exception(self) -> BaseException | None:
        """The exception the coroutine raised, or None; raises `CancelledError` if cancelled."""
        if self.cancelled():
            raise self._make_cancelled_error()
        self._log_traceback = False
        return super().exception()

    def set_result(self, result: T) -> None:
        """Not supported: a task's result is its coroutine's return value."""
        raise RuntimeError("a Task's result is set by its coroutine; set_result() is not supported")

    def set_exception(self, exception: BaseException | type[BaseException]) -> None:
        """Not supported: a task's exception is what its coroutine raises."""
        raise RuntimeError("a Task's exception is raised by its coroutine; set_exception() is not supported")

    # ---------------------------------------------------------- cancelling

    def cancel(self, msg: Any = None) -> bool:
        """Ask the task to stop: `CancelledError` (with ``msg``) is thrown in at its ``await``.

        The future the task is parked on is cancelled too.  Returns False if
        the task is already done.  The coroutine may catch the error (its
        ``finally`` blocks run in any case); the task ends cancelled if the
        error leaves the coroutine.
        """
        if self.done():
            return False
        self._cancel_requests += 1
        self._cancel_message = msg
        waiter = self._waiting_on
        if waiter is not None and _cancel_future(waiter, msg):
            # The task wakes up from the cancelled waiter with CancelledError.
            return True
        self._must_cancel = True
        return True

    def cancelling(self) -> int:
        """How many cancellation requests are pending (`cancel` calls not matched by `uncancel`)."""
        return self._cancel_requests

    def uncancel(self) -> int:
        """Take back one cancellation request; the number still pending.

        Used by structured code (`wait_for`, `TaskGroup`) that cancelled its
        own task and handled that cancellation itself.  When none is left
        pending, a cancellation not yet delivered is dropped (as in Python
        3.13's asyncio).
        """
        if self._cancel_requests > 0:
            self._cancel_requests -= 1
            if self._cancel_requests == 0:
                self._must_cancel = False
        return self._cancel_requests

    def _make_cancelled_error(self) -> BaseException:
        cls = _cancelled_error()
        message = self._cancel_message
        if message is None and self._cancelled_exc is not None and self._cancelled_exc.args:
            message = self._cancelled_exc.args[0]
        exc = cls() if message is None else cls(message)
        exc.__context__ = self._cancelled_exc
        return exc

    # ------------------------------------------------------------ stepping

    def _step(self, exc: BaseException | None = None) -> None:
        # One step of the coroutine: from a reactor callback, never re-entrantly.
        if self._state != _PENDING:  # done(), inline: see _wakeup
            return
        if self._must_cancel:
            self._must_cancel = False
            if not _is_cancelled_error(exc):
                exc = self._make_cancelled_error()
        self._waiting_on = None
        reactor = self._reactor
        previous = reactor._current_task
        reactor._current_task = self
        try:
            if exc is None:
                yielded = self._coro.send(None)  # socket-ok: a coroutine's send
            else:
                yielded = self._coro.throw(exc)
        except StopIteration as stop:
            self._returned(stop.value)
        except (KeyboardInterrupt, SystemExit) as fatal:
            self._raised(fatal)
            raise
        except BaseException as error:
            self._raised(error)
        else:
            if type(yielded) is Future and yielded._reactor is reactor:
                # _park's common case, inline (a future of this reactor that is
                # not a task, so not this one): one call less per await.
                self._waiting_on = yielded
                if yielded._state == _PENDING:
                    yielded._callbacks.append(self._wakeup_callback)  # type: ignore[arg-type]
                else:
                    reactor.call_soon(self._wakeup, yielded)
                if self._must_cancel and _cancel_future(yielded, self._cancel_message):
                    self._must_cancel = False
            else:
                self._park(yielded)
        finally:
            reactor._current_task = previous

    # What a step ended with; `_step` and `_start_eagerly` share them.

    def _returned(self, value: Any) -> None:
        if self._must_cancel:  # cancelled during the step that returned
            self._must_cancel = False
            self._finish_cancelled(None)
        else:
            self._reactor._tasks.discard(self)
            self._wakeup_callback = None  # the task -> bound method -> task cycle, broken
            Future.set_result(self, value)

    def _raised(self, error: BaseException) -> None:
        if isinstance(error, (KeyboardInterrupt, SystemExit)):
            self._reactor._tasks.discard(self)
            self._wakeup_callback = None
            Future.set_exception(self, error)  # it escapes the turn too: not "never retrieved"
        elif _is_cancelled_error(error):
            self._finish_cancelled(error)
        else:
            self._finish_failed(error)

    def _finish_cancelled(self, exc: BaseException | None) -> None:
        self._reactor._tasks.discard(self)
        self._wakeup_callback = None
        self._cancelled_exc = exc
        Future.cancel(self)

    def _finish_failed(self, exc: BaseException) -> None:
        self._reactor._tasks.discard(self)
        self._wakeup_callback = None
        Future.set_exception(self, exc)
        self._log_traceback = True

    def _park(self, yielded: object) -> None:
        reactor = self._reactor
        if yielded is None:  # a bare yield: let the others run for a turn
            reactor.call_soon(self._step, None)
            return
        if not isinstance(yielded, Future):
            try:
                yielded = adapt_awaited(reactor, yielded)
            except Exception as exc:
                reactor.call_soon(self._step, exc)
                return
        if yielded._reactor is not reactor:
            reactor.call_soon(
                self._step, ValueError(f"{yielded!r} belongs to another reactor than the task awaiting it")
            )
            return
        if yielded is self:
            reactor.call_soon(self._step, RuntimeError(f"a task cannot await itself: {self!r}"))
            return
        self._waiting_on = yielded
        if yielded._state == _PENDING:  # add_done_callback, inline: see _wakeup
            yielded._callbacks.append(self._wakeup_callback)  # type: ignore[arg-type]
        else:
            reactor.call_soon(self._wakeup, yielded)
        if self._must_cancel and _cancel_future(yielded, self._cancel_message):
            self._must_cancel = False

    def _wakeup(self, future: Future[Any]) -> None:
        # Every await of a pending future ends here.  The success test below,
        # the inline done() in _step and add_done_callback in _park (and
        # Future.__await__'s inline result()) are copies made for speed:
        # four calls less per wakeup: 6.42 -> 6.25 us per line (-2.6 %; an
        # in-process A/B, old and new alternating, of a task reading lines
        # with StreamReader.readline fed by a reactor callback, one line a
        # turn, epoll wait included; the best of 25 rounds, median of 4 runs).
        if future._state == _FINISHED and future._exception is None:
            self._step(None)
            return
        try:
            future.result()
        except BaseException as failure:
            if future.cancelled() and not isinstance(future, Task):
                self._step(self._make_cancelled_error())
            else:
                self._step(failure)
        else:
            self._step(None)


def _cancel_future(future: Future[Any], msg: Any) -> bool:
    """Cancel ``future``, passing ``msg`` on to the futures that take one."""
    if isinstance(future, (Task, _GatheringFuture)):
        return future.cancel(msg)
    return future.cancel()


def _cancelled_error_of(future: Future[Any]) -> BaseException:
    """The `CancelledError` a cancelled ``future`` raises."""
    if isinstance(future, Task):
        return future._make_cancelled_error()
    return _cancelled_error()()


# ------------------------------------------------------------------ a first step with no task yet


class _EagerFrame:
    """What ``Reactor._current_task`` holds during `_start_eagerly`'s first step: the task, once someone needs it.

    `Future.__await__` and `get_running_reactor` need only to know that a
    task is stepping and on which reactor; `current_task` makes the task
    (`materialize`), which then goes on as the same object.
    """

    __slots__ = ("_reactor", "_coro", "task")

    def __init__(self, reactor: Reactor, coro: Coroutine[Any, Any, Any]) -> None:
        self._reactor = reactor
        self._coro = coro
        self.task: Task[Any] | None = None

    def materialize(self) -> Task[Any]:
        task = self.task
        if task is None:
            task = self.task = Task.__new__(Task)
            task._setup(self._coro, self._reactor, None)
            if self._reactor._current_task is self:
                self._reactor._current_task = task
        return task


def _start_eagerly(coro: Coroutine[Any, Any, Any], reactor: Reactor) -> tuple[Task[Any] | None, Any]:
    """Run ``coro``'s first step now: ``(None, value)`` if it returned ``value``, else ``(task, value)``.

    The task is None when the coroutine returned in its first step without
    asking for `current_task`; else it is the coroutine's `Task`: done if the
    step returned (``value`` is its result) or raised (``value`` is None),
    pending if it suspended.

    `Task` with ``eager_start=True`` without the task where none is needed:
    a coroutine that returns in its first step, without asking for
    `current_task`, never had a `Task` (nor a registry entry, a result or a
    finalizer).  One that suspends, raises, or looks at `current_task` gets
    its task, made at that point, which then goes on exactly as one made by
    ``create_task(coro, eager_start=True)``.  The request server's
    ``async def handle_request`` runs through here: measured with an
    in-process one-shot loop over socketpairs (16 requests a turn), the
    Task made and finished cost about 2 us a request on top of the 13.5 us
    of the plain handler.  Call it from the reactor's thread.
    """
    if reactor._closed:
        _close_coroutine(coro)
        raise RuntimeError("cannot create a task on a closed Reactor; create a new one")
    frame = _EagerFrame(reactor, coro)
    previous = reactor._current_task
    reactor._current_task = frame
    outer = _KEEP_TURN if reactor._task_turn else _begin_eager_step(reactor)  # the call: once a turn
    try:
        try:
            yielded = coro.send(None)  # socket-ok: a coroutine's send
        except StopIteration as stop:
            task = frame.task
            if task is not None:
                task._returned(stop.value)
            return task, stop.value
        except BaseException as error:
            task = frame.materialize()
            task._raised(error)
            if isinstance(error, (KeyboardInterrupt, SystemExit)):
                raise
            return task, None
        task = frame.materialize()
        task._park(yielded)
        return task, None
    finally:
        reactor._current_task = previous
        if outer is not _KEEP_TURN:
            _turn.reactor = outer


_KEEP_TURN: Any = object()  # what `_begin_eager_step` returns when there is nothing to restore


def _begin_eager_step(reactor: Reactor) -> Any:
    """Make `current_task` find ``reactor`` during a first step run from outside its own queue.

    Inside a turn of ``reactor`` the turn is marked a task turn until it ends
    (later eager steps of the turn pay nothing); from plain code, outside any
    turn, the running reactor is set for this step only: the caller restores
    the returned reactor afterwards, unless it is ``_KEEP_TURN``.
    """
    if reactor._task_turn:
        return _KEEP_TURN
    if reactor._in_turn:
        reactor._enter_task_turn()
        return _KEEP_TURN
    outer = _turn.reactor
    _turn.reactor = reactor
    return outer


# ------------------------------------------------------------------ the running reactor


def current_task(reactor: Reactor | None = None) -> Task[Any] | None:
    """The task whose coroutine is running now in this thread, or None.

    With ``reactor``, only a task of that reactor counts.
    """
    if reactor is None:
        reactor = _turn.reactor
        if reactor is None:
            return None
    task = reactor._current_task
    if task is None:
        return None
    if type(task) is _EagerFrame:
        task = task.materialize()
    result: Task[Any] = task
    return result


def get_running_reactor() -> Reactor:
    """The reactor of the task running now; `RuntimeError` outside a task.

    As asyncio's ``get_running_loop()``: the module-level functions
    (`create_task`, `sleep`, `wait_for`, `gather`, `TaskGroup`) use it.  A
    plain reactor callback is not a task: pass the reactor along there.
    """
    running = _turn.reactor
    task = None if running is None else running._current_task
    if task is None:
        raise RuntimeError(
            "no running reactor: this works only inside a coroutine run by the reactor "
            "(reactor.run(), Reactor.create_task() or Reactor.run_until_complete())"
        )
    reactor: Reactor = task._reactor
    return reactor


def create_task(coro: Coroutine[Any, Any, T], *, name: object = None, eager_start: bool = False) -> Task[T]:
    """Run ``coro`` as a new task on the running reactor (from inside a task).

    ``eager_start``: run its first step now, inside this call (see `Task`).
    """
    try:
        reactor = get_running_reactor()
    except RuntimeError:
        _close_coroutine(coro)
        raise
    return Task(coro, reactor, name=name, eager_start=eager_start)


def _ensure_future(awaitable: Awaitable[T], reactor: Reactor) -> Future[T]:
    """A reactor future for ``awaitable``: itself if it is one, else a task that awaits it."""
    if isinstance(awaitable, Future):
        if awaitable._reactor is not reactor:
            raise ValueError(f"{awaitable!r} belongs to another reactor")
        return awaitable
    if isinstance(awaitable, Coroutine):
        return Task(awaitable, reactor)
    if inspect.isawaitable(awaitable):
        return Task(_await(awaitable), reactor)
    raise TypeError(f"a reactor Future, a task or a coroutine is required, got {awaitable!r}")


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


class _YieldOnce:
    """Awaitable that yields None once: the task lets the others run for a turn."""

    __slots__ = ()

    def __await__(self) -> Generator[None, None, None]:
        yield


_YIELD = _YieldOnce()


def _set_result_unless_done(future: Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


# ------------------------------------------------------------------ sleep, wait_for


async def sleep(delay: float, result: T = None) -> T:  # type: ignore[assignment]
    """Suspend the running task for ``delay`` seconds of reactor time; return ``result``.

    ``sleep(0)`` (or any delay <= 0) lets the other tasks and callbacks run
    for one turn.  The reactor's clock decides, so a `ManualClock` makes
    sleeping instant in tests.
    """
    if delay != delay:
        raise ValueError("sleep() delay must be a number of seconds, got nan")
    if delay <= 0:
        await _YIELD
        return result
    reactor = get_running_reactor()
    future: Future[T] = reactor.create_future()
    timer = reactor.call_later(delay, _set_result_unless_done, future, result)
    try:
        return await future
    finally:
        timer.cancel()


async def wait_for(awaitable: Awaitable[T], timeout: float | None) -> T:
    """Await ``awaitable``; after ``timeout`` seconds cancel it and raise `TimeoutError`.

    Python 3.12's semantics: a coroutine is wrapped in a task; on timeout the
    awaited thing is cancelled and waited for until it has finished
    cancelling (its ``finally`` blocks have run), then `TimeoutError` is
    raised, chained to the `CancelledError`.  If it finishes with a result
    despite the cancellation, that result is returned.  ``timeout`` None
    waits for ever; <= 0 cancels at once unless it is already done.
    Cancelling the task that waits cancels the awaited thing too.
    """
    reactor = get_running_reactor()
    if timeout is None:
        return await awaitable
    future = _ensure_future(awaitable, reactor)
    if timeout <= 0:
        if future.done():
            return future.result()
        await _cancel_and_wait(future, reactor)
        try:
            return future.result()
        except BaseException as exc:
            if _is_cancelled_error(exc):
                raise TimeoutError(f"timed out: {timeout} s") from exc
            raise
    task = current_task()
    assert task is not None
    cancelling = task.cancelling()
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        task.cancel()

    timer = reactor.call_later(timeout, expire)
    try:
        return await future
    except BaseException as exc:
        if expired:
            expired = False
            if task.uncancel() <= cancelling and _is_cancelled_error(exc):
                raise TimeoutError(f"timed out after {timeout} s") from exc
        raise
    finally:
        timer.cancel()
        if expired:  # expired, but the awaited thing finished anyway: take our cancel back
            task.uncancel()


async def _cancel_and_wait(future: Future[Any], reactor: Reactor) -> None:
    # Cancel ``future`` and wait until it is done; waits on a future of its
    # own, so that cancelling the caller does not cancel ``future`` twice.
    waiter: Future[None] = reactor.create_future()

    def release(_: Future[Any]) -> None:
        _set_result_unless_done(waiter, None)

    future.add_done_callback(release)
    try:
        _cancel_future(future, None)
        await waiter
    finally:
        future.remove_done_callback(release)


# ------------------------------------------------------------------ gather


class _GatheringFuture(Future[list[Any]]):
    """The future `gather` returns: cancelling it cancels every child."""

    __slots__ = ("_children", "_cancel_requested", "_cancel_message")

    def __init__(self, reactor: Reactor, children: list[Future[Any]]) -> None:
        super().__init__(reactor)
        self._children = children
        self._cancel_requested = False
        self._cancel_message: Any = None

    def cancel(self, msg: Any = None) -> bool:
        """Cancel every child; the gathering future then fails with `CancelledError`."""
        if self.done():
            return False
        cancelled = False
        for child in self._children:
            if _cancel_future(child, msg):
                cancelled = True
        if cancelled:
            self._cancel_requested = True
            self._cancel_message = msg
        return cancelled


def gather(*awaitables: Awaitable[Any], return_exceptions: bool = False) -> Future[list[Any]]:
    """A future of the results of ``awaitables``, in their order (asyncio's `gather`).

    Coroutines are run as tasks.  The first exception fails the returned
    future (the others go on running) unless ``return_exceptions`` is true,
    in which case exceptions are returned in the list.  A child that is
    cancelled counts as failing with `CancelledError`.  Cancelling the
    returned future (or the task awaiting it) cancels every child that is
    not done; it then fails with `CancelledError` once they all are.  The
    reactor is the one of the first reactor future given, else the running
    reactor.
    """
    reactor = next((aw._reactor for aw in awaitables if isinstance(aw, Future)), None)
    if reactor is None:
        try:
            reactor = get_running_reactor()
        except RuntimeError:
            for aw in awaitables:
                _close_coroutine(aw)
            raise
    if not awaitables:
        empty: Future[list[Any]] = reactor.create_future()
        empty.set_result([])
        return empty
    by_argument: dict[Any, Future[Any]] = {}
    children: list[Future[Any]] = []
    for aw in awaitables:
        future = by_argument.get(aw)
        if future is None:
            future = by_argument[aw] = _ensure_future(aw, reactor)
        children.append(future)
    outer = _GatheringFuture(reactor, children)
    total = len(by_argument)
    finished = 0

    def child_done(child: Future[Any]) -> None:
        nonlocal finished
        finished += 1
        if outer.done():
            if not child.cancelled():
                child.exception()  # retrieved: a failure after the first is not "never retrieved"
            return
        if not return_exceptions:
            if child.cancelled():
                outer.set_exception(_cancelled_error_of(child))
                return
            exc = child.exception()
            if exc is not None:
                outer.set_exception(exc)
                return
        if finished == total:
            results: list[Any] = []
            for each in children:
                if each.cancelled():
                    results.append(_cancelled_error_of(each))
                else:
                    failure = each.exception()
                    results.append(each.result() if failure is None else failure)
            if outer._cancel_requested:
                cls = _cancelled_error()
                message = outer._cancel_message
                outer.set_exception(cls() if message is None else cls(message))
            else:
                outer.set_result(results)

    for future in by_argument.values():
        future.add_done_callback(child_done)
    return outer


# ------------------------------------------------------------------ TaskGroup


class TaskGroup:
    """Run tasks together; when one fails, cancel the rest (asyncio's ``TaskGroup``).

    ::

        async with reactor.TaskGroup() as group:
            group.create_task(fetch("a"))
            group.create_task(fetch("b"))
        # here every task is done

    Leaving the ``async with`` block waits for every task of the group.  The
    first task that fails (with anything but `CancelledError`) cancels the
    others and the body; the block then raises an `ExceptionGroup` (a
    `BaseExceptionGroup` if a failure is not an `Exception`) of every
    failure.  `KeyboardInterrupt` and `SystemExit` are re-raised as they are.
    Use it from inside a reactor task.
    """

    def __init__(self) -> None:
        self._entered = False
        self._exiting = False
        self._aborting = False
        self._reactor: Reactor | None = None
        self._parent_task: Task[Any] | None = None
        self._parent_cancel_requested = False
        self._tasks: set[Task[Any]] = set()
        self._errors: list[BaseException] | None = []
        self._base_error: BaseException | None = None
        self._on_completed: Future[bool] | None = None

    def __repr__(self) -> str:
        info = [f"tasks={len(self._tasks)}"]
        if self._errors:
            info.append(f"errors={len(self._errors)}")
        if self._aborting:
            info.append("cancelling")
        elif self._entered:
            info.append("entered")
        return f"<TaskGroup {' '.join(info)}>"

    async def __aenter__(self) -> TaskGroup:
        if self._entered:
            raise RuntimeError(f"TaskGroup {self!r} has already been entered")
        task = current_task()
        if task is None:
            raise RuntimeError("a TaskGroup must be used inside a reactor task")
        self._parent_task = task
        self._reactor = task._reactor
        self._entered = True
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._exiting = True
        if exc is not None and _is_base_error(exc) and self._base_error is None:
            self._base_error = exc
        propagate_cancel = exc if _is_cancelled_error(exc) else None
        if et is not None and not self._aborting:
            self._abort()  # the body failed, or our task is being cancelled
        reactor = self._reactor
        assert reactor is not None and self._parent_task is not None
        while self._tasks:
            if self._on_completed is None:
                self._on_completed = reactor.create_future()
            try:
                await self._on_completed
            except BaseException as cancelled:
                if not _is_cancelled_error(cancelled):
                    raise
                if not self._aborting:
                    propagate_cancel = cancelled
                    self._abort()
            self._on_completed = None
        if self._base_error is not None:
            raise self._base_error
        if self._parent_cancel_requested and self._parent_task.uncancel() == 0:
            # We cancelled our task to stop its body; no other cancel is pending.
            propagate_cancel = None
        errors = self._errors
        assert errors is not None
        if propagate_cancel is not None and not errors:
            raise propagate_cancel
        if exc is not None and not _is_cancelled_error(exc):
            errors.append(exc)
        if errors:
            try:
                raise BaseExceptionGroup("unhandled errors in a TaskGroup", errors) from None
            finally:
                self._errors = None

    def create_task(self, coro: Coroutine[Any, Any, T], *, name: object = None) -> Task[T]:
        """Start ``coro`` as a task of the group."""
        if not self._entered:
            _close_coroutine(coro)
            raise RuntimeError(f"TaskGroup {self!r} has not been entered")
        if self._exiting and not self._tasks:
            _close_coroutine(coro)
            raise RuntimeError(f"TaskGroup {self!r} is finished")
        if self._aborting:
            _close_coroutine(coro)
            raise RuntimeError(f"TaskGroup {self!r} is shutting down")
        assert self._reactor is not None
        task = Task(coro, self._reactor, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._on_task_done)
        return task

    def _abort(self) -> None:
        self._aborting = True
        for task in self._tasks:
            if not task.done():
                task.cancel()

    def _on_task_done(self, task: Future[Any]) -> None:
        assert isinstance(task, Task)
        self._tasks.discard(task)
        waiter = self._on_completed
        if waiter is not None and not self._tasks and not waiter.done():
            waiter.set_result(True)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        assert self._errors is not None and self._parent_task is not None and self._reactor is not None
        self._errors.append(exc)
        if _is_base_error(exc) and self._base_error is None:
            self._base_error = exc
        if self._parent_task.done():
            self._reactor.call_exception_handler(
                {
                    "message": f"task {task!r} failed after its TaskGroup's task {self._parent_task!r} finished",
                    "exception": exc,
                    "task": task,
                    "callback": task,
                }
            )
            return
        if not self._aborting and not self._parent_cancel_requested:
            # Stop the body too: cancel the task that runs it; __aexit__ takes it back.
            self._abort()
            self._parent_cancel_requested = True
            self._parent_task.cancel()


def _is_base_error(exc: BaseException) -> bool:
    return isinstance(exc, (SystemExit, KeyboardInterrupt))


# ------------------------------------------------------------------ run


class _Running(threading.local):
    depth = 0


_running = _Running()


def run(main: Coroutine[Any, Any, T], *, reactor_factory: Callable[[], Reactor] | None = None) -> T:
    """Run ``main`` on a fresh reactor to the end and return its result (asyncio's ``run``).

    A new reactor is made (``reactor_factory()``, by default `Reactor()`),
    ``main`` runs as a task until it finishes; then every task still pending
    is cancelled and the reactor runs until they have finished (their
    ``finally`` blocks may still await), errors they end with are reported
    through the exception handler, and the reactor is closed.  It cannot be
    called from inside a task or another `run`.
    """
    if current_task() is not None or _running.depth:
        _close_coroutine(main)
        raise RuntimeError("reactor.run() cannot be called from a running task or another reactor.run()")
    if not isinstance(main, Coroutine):
        raise TypeError(f"reactor.run() needs a coroutine, got {main!r}")
    reactor = reactor_factory() if reactor_factory is not None else Reactor()
    _running.depth += 1
    try:
        return reactor.run_until_complete(main)
    finally:
        try:
            _cancel_leftovers(reactor)
        finally:
            _running.depth -= 1
            reactor.close()


def _cancel_leftovers(reactor: Reactor) -> None:
    leftovers = [task for task in reactor._tasks if not task.done()]
    if not leftovers:
        return
    for task in leftovers:
        task.cancel()
    reactor.run_until_complete(gather(*leftovers, return_exceptions=True))
    for task in leftovers:
        if task.cancelled():
            continue
        exc = task.exception()
        if exc is not None:
            reactor.call_exception_handler(
                {
                    "message": "unhandled exception in a task cancelled by reactor.run() at its end",
                    "exception": exc,
                    "task": task,
                    "callback": task,
                }
            )


def _run_coroutine(reactor: Reactor, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """`Reactor.run_until_complete` for a coroutine: run it as a task until it finishes.

    On `TimeoutError` (``timeout`` seconds of reactor time passed) the task
    is cancelled and the reactor runs until it has finished cancelling (its
    ``finally`` blocks ran), then the `TimeoutError` is raised.
    """
    if not isinstance(coro, Coroutine):
        raise TypeError(f"run_until_complete() needs a reactor Future or a coroutine, got {type(coro).__name__}")
    task = Task(coro, reactor)
    try:
        return reactor.run_until_complete(task, timeout)
    except TimeoutError:
        if task.done():
            raise  # the coroutine's own TimeoutError
        task.cancel()
        while not task.done():
            reactor.run_once(None)
        if not task.cancelled():
            task.exception()  # whatever it ended with, the caller gets the timeout
        raise
