"""The task runner against asyncio: each case is written once and run under both, with the same outcome.

A case is ``async def case(lib, log)``: ``lib`` is the ``asyncio`` module or
the ``reactor`` package (the names ``sleep``, ``wait_for``, ``gather``,
``TaskGroup``, ``create_task``, ``current_task`` and ``CancelledError`` are the
same in both), ``log`` a list the case appends to, with the virtual time.  It
runs under ``asyncio.Runner`` and under ``reactor.run``; both return value (or
exception) and log must be equal, and equal to what the case expects.

Both run on virtual time: a `ManualClock` that jumps to the next timer when
the loop would otherwise wait (`JumpingSelector`), so sleeping is instant and
the order of events is exact, with no real time in the test.

Cases adapted from CPython's ``Lib/test/test_asyncio`` (3.12)
--------------------------------------------------------------
Taken (rewritten as cases here, names kept for reference):

- test_taskgroups.py: test_taskgroup_01, _02, _03 (results, late create_task,
  a child cancelled explicitly), _04 and test_cancel_children_on_child_error
  (a failing child cancels siblings and body), test_cancellation and _07
  (cancelling the parent cancels the children), _08 (a child failing in its
  ``finally`` while being cancelled), _09, _10 (the body raises), _11, _12
  (nested groups), _13, _14 (nested groups, outer/inner child fails),
  test_taskgroup_task_name, test_taskgroup_no_create_task_after_failure,
  test_taskgroup_already_entered / _double_enter, test_taskgroup_not_entered,
  test_taskgroup_finished.
- test_waitfor.py: test_asyncio_wait_for_cancelled, test_asyncio_wait_for_timeout,
  test_wait_for_timeout_less_then_0_or_0_future_done /
  _coroutine_do_not_started / _0, test_wait_for, test_wait_for_waits_for_task_cancellation,
  test_wait_for_reraises_exception_during_cancellation, test_cancel_wait_for,
  test_wait_for_cancel_suppressed, test_none_timeout, test_zero_timeout.
- test_tasks.py: test_cancel_with_message_then_future_result,
  test_cancel_with_message_before_starting_task, test_cancel_yield,
  test_cancel_inner_future, test_cancel_both_task_and_inner_future,
  test_cancel_task_catching, test_cancel_task_ignoring, test_cancel_current_task,
  test_cancel_at_end, test_cancel_awaited_task, test_sleep_cancel,
  test_current_task, test_current_task_with_interleaving_tasks,
  test_cancelling, test_uncancel_basic, test_cancel_gather_1, test_cancel_gather_2,
  the gather cases of GatherTestsBase (results in order, first exception,
  return_exceptions, a cancelled child, an argument given twice, no argument),
  test_task_set_name_pylong / test_bare_create_named_task (names).

Left out, and why:

- Anything about event-loop objects, policies, ``loop=`` arguments, debug
  mode, ``call_soon`` contexts (``contextvars``), eager task factories and
  ``Task.__init__`` subclassing hooks: the reactor has none of these.
- ``shield``, ``wait``, ``as_completed``, ``timeout()``/``timeout_at()``,
  ``run_coroutine_threadsafe``, ``to_thread``: not provided by the task runner.
- Tests of reference cycles, ``sys.getrefcount`` and C-accelerated task
  internals (``_asyncio`` vs ``_pyasyncio``), ``get_stack``/``print_stack``.
- wait_for's "issue86296" and race-condition cases that depend on where a
  cancellation lands between two callbacks of the same iteration: our turn
  orders callbacks differently from asyncio's loop (timers before the ready
  queue), so those interleavings are not comparable; their observable contract
  (the awaited thing is cancelled and waited for) is covered here.
- Awaiting asyncio futures from a reactor task (bridged in `reactor.embed`).
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

import reactor
from reactor import ManualClock, Reactor

Case = Callable[[Any, list[Any]], Coroutine[Any, Any, Any]]


class JumpingSelector(selectors.BaseSelector):
    """A selector whose waits move a `ManualClock` forward instead of passing time.

    Real I/O that is ready (the wakeup socket) is reported at once; otherwise
    a wait of ``t`` seconds advances the clock by ``t`` and returns nothing.
    """

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.inner = selectors.DefaultSelector()

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self.inner.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self.inner.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self.inner.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = self.inner.select(0)
        if events or timeout == 0:
            return events
        if timeout is None:
            raise AssertionError("the loop would wait for ever: nothing is scheduled (a deadlock in the case)")
        self.clock.advance(max(timeout, 1e-9))
        return []

    def get_map(self) -> Any:
        return self.inner.get_map()

    def close(self) -> None:
        self.inner.close()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio loop on a `ManualClock` that jumps (see `JumpingSelector`)."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(JumpingSelector(clock))
        self._virtual_clock = clock

    def time(self) -> float:
        return self._virtual_clock()


def describe(exc: BaseException) -> tuple[Any, ...]:
    """An exception as comparable data: its class name, and for a group its members."""
    if isinstance(exc, BaseExceptionGroup):
        return (type(exc).__name__, tuple(sorted((describe(e) for e in exc.exceptions), key=repr)))
    return (type(exc).__name__,)


def outcome_under(lib: Any, case: Case) -> tuple[Any, list[Any]]:
    """Run ``case`` under ``lib`` (asyncio or reactor) on virtual time: (its outcome, its log)."""
    clock = ManualClock()
    log: list[Any] = []
    try:
        if lib is asyncio:
            with asyncio.Runner(loop_factory=lambda: VirtualTimeLoop(clock)) as runner:
                value = runner.run(case(lib, log))
        else:
            value = reactor.run(
                case(lib, log), reactor_factory=lambda: Reactor(clock=clock, selector=JumpingSelector(clock))
            )
    except BaseException as exc:  # noqa: BLE001 - the outcome is what is compared
        return ("raised", describe(exc)), log
    return ("returned", value), log


def now(lib: Any) -> float:
    """The running loop's (or reactor's) virtual time, rounded for comparison."""
    loop_time = asyncio.get_running_loop().time() if lib is asyncio else reactor.get_running_reactor().time()
    return round(loop_time, 6)


def call_later(lib: Any, delay: float, callback: Callable[[], object]) -> None:
    """``call_later`` on the running loop (or reactor)."""
    if lib is asyncio:
        asyncio.get_running_loop().call_later(delay, callback)
    else:
        reactor.get_running_reactor().call_later(delay, callback)


def check(case: Case, expected: tuple[Any, ...], expected_log: list[Any] | None = None) -> None:
    """``case`` has the same outcome and log under both, and the outcome is ``expected``."""
    ours = outcome_under(reactor, case)
    theirs = outcome_under(asyncio, case)
    assert ours == theirs, f"reactor: {ours}\nasyncio: {theirs}"
    assert ours[0] == expected
    if expected_log is not None:
        assert ours[1] == expected_log


ZERO_DIVISION = ("ZeroDivisionError",)
EXCEPTION_GROUP = "ExceptionGroup"


# ------------------------------------------------------------------ TaskGroup


def test_taskgroup_results_and_late_create_task() -> None:
    """Children's results are there after the block; a child created later in the body is awaited too."""

    async def case(lib: Any, log: list[Any]) -> Any:
        async def value_after(delay: float, value: int) -> int:
            await lib.sleep(delay)
            return value

        async with lib.TaskGroup() as group:
            first = group.create_task(value_after(0.1, 42))
            await lib.sleep(0.15)
            second = group.create_task(value_after(0.2, 11))
        log.append(now(lib))
        return first.result(), second.result()

    check(case, ("returned", (42, 11)), [0.35])


def test_taskgroup_child_cancelled_explicitly() -> None:
    """A child cancelled by the body does not fail the group."""

    async def case(lib: Any, log: list[Any]) -> Any:
        async with lib.TaskGroup() as group:
            slow = group.create_task(lib.sleep(1))
            await lib.sleep(0.15)
            slow.cancel()
            quick = group.create_task(lib.sleep(0.2, "done"))
        return slow.cancelled(), quick.result()

    check(case, ("returned", (True, "done")))


def test_taskgroup_failing_child_cancels_siblings_and_body() -> None:
    """A child that fails cancels the other children and the body; the group raises an ExceptionGroup."""

    async def case(lib: Any, log: list[Any]) -> Any:
        async def fail_after(delay: float) -> None:
            await lib.sleep(delay)
            raise ZeroDivisionError

        async def wait_long(name: str) -> None:
            try:
                await lib.sleep(5)
            except lib.CancelledError:
                log.append(f"{name} cancelled at {now(lib)}")
                raise

        async def runner() -> None:
            async with lib.TaskGroup() as group:
                for _ in range(3):
                    group.create_task(fail_after(0.1))
                group.create_task(wait_long("child"))
                try:
                    await lib.sleep(10)
                except lib.CancelledError:
                    log.append(f"body cancelled at {now(lib)}")
                    raise
            log.append("not reached")

        await lib.create_task(runner())

    ours = outcome_under(reactor, case)
    assert ours == outcome_under(asyncio, case)
    kind, (name, members) = ours[0]
    assert (kind, name) == ("raised", EXCEPTION_GROUP) and set(members) == {ZERO_DIVISION}
    assert sorted(ours[1]) == ["body cancelled at 0.1", "child cancelled at 0.1"]


def test_cancelling_the_parent_cancels_every_child() -> None:
    """Cancelling the task that runs a group cancels its five children and the body; CancelledError results."""

    async def case(lib: Any, log: list[Any]) -> Any:
        async def child() -> None:
            try:
                await lib.sleep(5)
            except lib.CancelledError:
                log.append("child")
                raise

        async def runner() -> None:
            async with lib.TaskGroup() as group:
                for _ in range(5):
                    group.create_task(child())
                try:
                    await lib.sleep(10)
                except lib.CancelledError:
                    log.append("body")
                    raise

        task = lib.create_task(runner())
        await lib.sleep(0.1)
        task.cancel()
        try:
            await task
        except lib.CancelledError:
            return "cancelled", sorted(log)
        return "not cancelled", log

    check(case, ("returned", ("cancelled", ["body"] + ["child"] * 5)))


def test_taskgroup_child_failing_in_finally_while_cancelled() -> None:
    """Children that fail in their finally while the parent is cancelled turn the cancel into an ExceptionGroup."""

    async def case(lib: Any, log: list[Any]) -> Any:
        async def child() -> None:
            try:
                await lib.sleep(10)
            finally:
                raise ZeroDivisionError

        async def runner() -> None:
            async with lib.TaskGroup() as group:
                for _ in range(5):
                    group.create_task(child())
                await lib.sleep(10)

        task = lib.create_task(runner())
        await lib.sleep(0.1)
        task.cancel()
        await task

    check(case, ("raised", (EXCEPTION_GROUP, (ZERO_DIVISION,) * 5)))


@pytest.mark.parametrize("sleep_first", [True, False])
def test_taskgroup_body_raises(sleep_first: bool) -> None:
    """The body raising cancels the children; its error is in the ExceptionGroup."""

    async def case(lib: Any, log: list[Any]) -> Any:
        tasks = []
        try:
            async with lib.TaskGroup() as group:
                tasks.append(group.create_task(lib.sleep(1, 42)))
                tasks.append(group.create_task(lib.sleep(2, 11)))
                if sleep_first:
                    await lib.sleep(0.1)
                raise ZeroDivisionError
        except ExceptionGroup as group_error:
            return describe(group_error), [t.cancelled() for t in tasks]
        return "no group"

    check(case, ("returned", ((EXCEPTION_GROUP, (ZERO_DIVISION,)), [True, True])))


@pytest.mark.parametrize("with_outer_child", [False, True])
def test_nested_groups_cancelled_from_outside(with_outer_child: bool) -> None:
    """Nested groups whose inner children fail while being cancelled: a group inside a group."""

    async def case(lib: Any, log: list[Any]) -> Any:
        async def child() -> None:
            try:
                await lib.sleep(10)
            finally:
                raise ZeroDivisionError

        async def runner() -> None:
            async with lib.TaskGroup() as outer:
                if with_outer_child:
                    outer.create_task(lib.sleep(10))
                async with lib.TaskGroup() as inner:
                    for _ in range(5):
                        inner.create_task(child())
                    await lib.sleep(10)

        task = lib.create_task(runner())
        await lib.sleep(0.1)
        task.cancel()
        await task

    check(case, ("raised", (EXCEPTION_GROUP, ((EXCEPTION_GROUP, (ZERO_DIVISION,) * 5),))))


@pytest.mark.parametrize("outer_fails_first", [True, False])
def test_nested_groups_child_failures(outer_fails_first: bool) -> None:
    """A failure in the outer group's child, or in the inner group's, and how the groups nest."""

    async def case(lib: Any, log: list[Any]) -> Any:
        async def crash_after(delay: float) -> None:
            await lib.sleep(delay)
            raise ValueError(delay)

        async with lib.TaskGroup() as outer:
            outer.create_task(crash_after(0.1 if outer_fails_first else 10))
            async with lib.TaskGroup() as inner:
                inner.create_task(crash_after(10 if outer_fails_first else 0.1))

    if outer_fails_first:
        check(case, ("raised", (EXCEPTION_GROUP, (("ValueError",),))))
    else:
        check(case, ("raised", (EXCEPTION_GROUP, ((EXCEPTION_GROUP, (("ValueError",),)),))))


def test_taskgroup_misuse() -> None:
    """Task names; create_task before entering, after failing, after finishing; entering twice."""

    async def case(lib: Any, log: list[Any]) -> Any:
        group = lib.TaskGroup()
        coro = lib.sleep(0)
        try:
            group.create_task(coro)
        except RuntimeError:
            log.append("not entered")
        coro.close()
        async with group:
            named = group.create_task(lib.sleep(0), name="named")
            try:
                async with group:
                    pass
            except RuntimeError:
                log.append("entered twice")
        log.append(named.get_name())
        coro = lib.sleep(0)
        try:
            group.create_task(coro)
        except RuntimeError:
            log.append("finished")
        coro.close()

        async def fail() -> None:
            raise ZeroDivisionError

        async def cancelled_sibling(group: Any) -> None:
            try:
                await lib.sleep(1)
            except lib.CancelledError:
                coro = lib.sleep(0)
                try:
                    group.create_task(coro)
                except RuntimeError:
                    log.append("shutting down")
                coro.close()
                raise

        try:
            async with lib.TaskGroup() as failing:
                failing.create_task(fail())
                failing.create_task(cancelled_sibling(failing))
        except ExceptionGroup:
            log.append("group")

    check(case, ("returned", None), ["not entered", "entered twice", "named", "finished", "shutting down", "group"])


# ------------------------------------------------------------------ wait_for


def test_wait_for_times_out_after_the_inner_finished_cancelling() -> None:
    """On timeout the inner coroutine is cancelled, its finally runs (and may await), then TimeoutError."""

    async def case(lib: Any, log: list[Any]) -> Any:
        async def inner() -> None:
            try:
                await lib.sleep(10)
            finally:
                log.append(f"cleanup starts {now(lib)}")
                await lib.sleep(0.5)
                log.append(f"cleanup ends {now(lib)}")

        try:
            await lib.wait_for(inner(), 0.1)
        except TimeoutError as exc:
            log.append(f"timeout at {now(lib)} from {type(exc.__cause__).__name__}")

    check(case, ("returned", None), ["cleanup starts 0.1", "cleanup ends 0.6", "timeout at 0.6 from CancelledError"])


def test_wait_for_returns_in_time_and_reraises() -> None:
    """A result in time is returned; an exception of the awaited thing propagates; None waits for ever."""

    async def case(lib: Any, log: list[Any]) -> Any:
        async def fail() -> None:
            await lib.sleep(0.05)
            raise KeyError("x")

        log.append(await lib.wait_for(lib.sleep(0.1, "in time"), 1))
        log.append(await lib.wait_for(lib.sleep(100, "none"), None))
        try:
            await lib.wait_for(fail(), 1)
        except KeyError:
            log.append("KeyError")
        return now(lib)

    check(case, ("returned", 100.15), ["in time", "none", "KeyError"])


def test_wait_for_zero_or_negative_timeout() -> None:
    """Timeout <= 0: a done future's result is returned; a coroutine is never started, and TimeoutError."""

    async def case(lib: Any, log: list[Any]) -> Any:
        started: list[str] = []

        async def never() -> None:
            started.append("started")

        done = lib.create_task(lib.sleep(0, "done"))
        for _ in range(3):
            await lib.sleep(0)
        log.append(await lib.wait_for(done, 0))
        for timeout in (0, -1):
            try:
                await lib.wait_for(never(), timeout)
            except TimeoutError:
                log.append(f"timeout {timeout}")
        return started

    check(case, ("returned", []), ["done", "timeout 0", "timeout -1"])


def test_wait_for_reraises_exception_during_cancellation() -> None:
    """An inner task that fails while being cancelled on timeout: its error, not TimeoutError."""

    async def case(lib: Any, log: list[Any]) -> Any:
        async def inner() -> None:
            try:
                await lib.sleep(10)
            finally:
                raise ZeroDivisionError

        await lib.wait_for(inner(), 0.1)

    check(case, ("raised", ZERO_DIVISION))


def test_wait_for_cancel_suppressed() -> None:
    """An inner task that swallows the cancellation and returns: its value is returned."""

    async def case(lib: Any, log: list[Any]) -> Any:
        async def inner() -> str:
            try:
                await lib.sleep(10)
            except lib.CancelledError:
                await lib.sleep(0.2)
                return "swallowed"
            return "slept"

        value = await lib.wait_for(inner(), 0.1)
        return value, now(lib)

    check(case, ("returned", ("swallowed", 0.3)))


def test_cancelling_the_waiter_cancels_what_wait_for_awaits() -> None:
    """Cancelling the task inside wait_for cancels the awaited task and raises CancelledError, not TimeoutError."""

    async def case(lib: Any, log: list[Any]) -> Any:
        async def inner() -> None:
            try:
                await lib.sleep(10)
            except lib.CancelledError:
                log.append(f"inner cancelled {now(lib)}")
                raise

        async def waiter() -> None:
            await lib.wait_for(inner(), 5)

        task = lib.create_task(waiter())
        await lib.sleep(0.1)
        task.cancel()
        try:
            await task
        except lib.CancelledError:
            log.append("waiter cancelled")
        return task.cancelled()

    check(case, ("returned", True), ["inner cancelled 0.1", "waiter cancelled"])


# ------------------------------------------------------------------ gather


def test_gather_results_in_argument_order() -> None:
    """Results come in the order of the arguments; a future given twice is run once; no argument: []."""

    async def case(lib: Any, log: list[Any]) -> Any:
        async def value_after(delay: float, value: str) -> str:
            await lib.sleep(delay)
            log.append(value)
            return value

        shared = lib.create_task(value_after(0.05, "shared"))
        results = await lib.gather(value_after(0.3, "a"), value_after(0.1, "b"), shared, shared)
        empty = await lib.gather()
        return results, empty, now(lib)

    check(case, ("returned", (["a", "b", "shared", "shared"], [], 0.3)), ["shared", "b", "a"])


def test_gather_first_exception_and_the_others_go_on() -> None:
    """The first exception is raised at once; the other children are not cancelled and finish."""

    async def case(lib: Any, log: list[Any]) -> Any:
        async def fail_after(delay: float) -> None:
            await lib.sleep(delay)
            raise ValueError(delay)

        slow = lib.create_task(lib.sleep(0.5, "slow"))
        try:
            await lib.gather(fail_after(0.1), slow, fail_after(0.2))
        except ValueError as exc:
            log.append(f"{exc} at {now(lib)}")
        log.append(await slow)
        await lib.sleep(0)
        return now(lib)

    check(case, ("returned", 0.5), ["0.1 at 0.1", "slow"])


def test_gather_return_exceptions() -> None:
    """With return_exceptions, failures and cancellations are results."""

    async def case(lib: Any, log: list[Any]) -> Any:
        async def fail() -> None:
            raise KeyError("k")

        victim = lib.create_task(lib.sleep(10))
        call_later(lib, 0.1, victim.cancel)
        results = await lib.gather(lib.sleep(0.2, "ok"), fail(), victim, return_exceptions=True)
        return [type(r).__name__ if isinstance(r, BaseException) else r for r in results]

    check(case, ("returned", ["ok", "KeyError", "CancelledError"]))


def test_gather_child_cancelled_fails_the_gather() -> None:
    """Without return_exceptions, a cancelled child makes the gather raise CancelledError; the task is not cancelled."""

    async def case(lib: Any, log: list[Any]) -> Any:
        victim = lib.create_task(lib.sleep(10))
        other = lib.create_task(lib.sleep(0.5, "other"))

        async def cancel_soon() -> None:
            await lib.sleep(0.1)
            victim.cancel()

        helper = lib.create_task(cancel_soon())
        try:
            await lib.gather(victim, other)
        except lib.CancelledError:
            log.append(f"gather cancelled at {now(lib)}")
        await helper
        return lib.current_task().cancelled(), await other

    check(case, ("returned", (False, "other")), ["gather cancelled at 0.1"])


@pytest.mark.parametrize("cancel", ["gather", "task"])
def test_cancelling_gather_cancels_the_children(cancel: str) -> None:
    """Cancelling the gather (or the task awaiting it) cancels every child; CancelledError comes out."""

    async def case(lib: Any, log: list[Any]) -> Any:
        async def child(name: str) -> None:
            try:
                await lib.sleep(10)
            except lib.CancelledError:
                log.append(f"{name} cancelled {now(lib)}")
                raise

        async def waiter() -> None:
            gathering = lib.gather(child("a"), child("b"))
            holder.append(gathering)
            await gathering

        holder: list[Any] = []
        task = lib.create_task(waiter())
        await lib.sleep(0.1)
        (holder[0] if cancel == "gather" else task).cancel()
        try:
            await task
        except lib.CancelledError:
            log.append("waiter cancelled")
        return task.cancelled(), holder[0].cancelled()

    # asyncio's gathering future, once cancelled, ends *cancelled*; the task awaiting it ends cancelled.
    ours = outcome_under(reactor, case)
    theirs = outcome_under(asyncio, case)
    assert ours[1] == theirs[1] == ["a cancelled 0.1", "b cancelled 0.1", "waiter cancelled"]
    assert ours[0] == ("returned", (True, False)) and theirs[0][1][0] is True


# ------------------------------------------------------------------ tasks and cancellation


def test_cancel_with_a_message() -> None:
    """The message given to cancel() is the CancelledError's, when awaited and from result()."""

    async def case(lib: Any, log: list[Any]) -> Any:
        task = lib.create_task(lib.sleep(10))
        await lib.sleep(0)
        task.cancel("my message")
        try:
            await task
        except lib.CancelledError as exc:
            log.append(exc.args)
        return task.cancelled()

    # asyncio gives the message to the first retrieval only (a later result()
    # raises a bare CancelledError); a reactor task gives it every time.
    check(case, ("returned", True), [("my message",)])


def test_cancel_before_the_task_starts() -> None:
    """A task cancelled before its first step never runs its body."""

    async def case(lib: Any, log: list[Any]) -> Any:
        async def body() -> None:
            log.append("ran")

        task = lib.create_task(body())
        task.cancel("early")
        try:
            await task
        except lib.CancelledError as exc:
            return exc.args, task.cancelled()

    check(case, ("returned", (("early",), True)), [])


def test_cancel_catching_ignoring_and_at_end() -> None:
    """A task that catches the cancel and returns; one that ignores it; one cancelled while finishing."""

    async def case(lib: Any, log: list[Any]) -> Any:
        async def catcher() -> str:
            try:
                await lib.sleep(10)
            except lib.CancelledError:
                return "caught"
            return "slept"

        async def ignorer() -> str:
            try:
                await lib.sleep(10)
            except lib.CancelledError:
                pass
            await lib.sleep(0.1)
            return "went on"

        async def self_canceller() -> str:
            lib.current_task().cancel()
            return "returned"

        tasks = [lib.create_task(coro()) for coro in (catcher, ignorer)]
        await lib.sleep(0)
        for task in tasks:
            task.cancel()
        results = [await task for task in tasks]
        ender = lib.create_task(self_canceller())
        try:
            await ender
        except lib.CancelledError:
            results.append("cancelled at end")
        return results, [t.cancelled() for t in tasks], ender.cancelled()

    check(case, ("returned", (["caught", "went on", "cancelled at end"], [False, False], True)))


def test_cancel_inner_future_and_awaited_task() -> None:
    """Cancelling the future (or task) a task awaits throws CancelledError into the awaiting task."""

    async def case(lib: Any, log: list[Any]) -> Any:
        inner = lib.create_task(lib.sleep(10))

        async def outer() -> str:
            try:
                await inner
            except lib.CancelledError:
                log.append("outer saw it")
                raise
            return "no"

        task = lib.create_task(outer())
        await lib.sleep(0)
        inner.cancel()
        try:
            await task
        except lib.CancelledError:
            log.append("outer cancelled")
        both = lib.create_task(lib.sleep(10))
        waiting = lib.create_task(outer_of(both))
        await lib.sleep(0)
        both.cancel()
        waiting.cancel()
        try:
            await waiting
        except lib.CancelledError:
            log.append("both cancelled")
        return inner.cancelled(), task.cancelled(), both.cancelled(), waiting.cancelled()

    async def outer_of(awaited: Any) -> None:
        await awaited

    check(case, ("returned", (True, True, True, True)), ["outer saw it", "outer cancelled", "both cancelled"])


def test_cancel_after_a_bare_yield_and_cancel_current_task() -> None:
    """Cancelling a task that yielded for a turn, and a task cancelling itself then awaiting."""

    async def case(lib: Any, log: list[Any]) -> Any:
        async def yielder() -> None:
            await lib.sleep(0)
            log.append("not reached")

        async def self_cancel() -> None:
            lib.current_task().cancel()
            try:
                await lib.sleep(0)
            except lib.CancelledError:
                log.append("cancelled at next await")
                raise

        first = lib.create_task(yielder())
        await lib.sleep(0)
        first.cancel()
        second = lib.create_task(self_cancel())
        for task in (first, second):
            try:
                await task
            except lib.CancelledError:
                pass
        return first.cancelled(), second.cancelled()

    check(case, ("returned", (True, True)), ["cancelled at next await"])


def test_current_task_with_interleaving_tasks() -> None:
    """current_task() is the task running now, across interleaved tasks."""

    async def case(lib: Any, log: list[Any]) -> Any:
        async def worker(name: str) -> None:
            for _ in range(2):
                log.append((name, lib.current_task().get_name()))
                await lib.sleep(0)

        main = lib.current_task()
        await lib.gather(lib.create_task(worker("a"), name="a"), lib.create_task(worker("b"), name="b"))
        return lib.current_task() is main

    check(case, ("returned", True), [("a", "a"), ("b", "b"), ("a", "a"), ("b", "b")])


def test_cancelling_and_uncancel_counts() -> None:
    """cancelling() counts cancel requests, uncancel() takes one back."""

    async def case(lib: Any, log: list[Any]) -> Any:
        task = lib.create_task(lib.sleep(10))
        await lib.sleep(0)
        log.append(task.cancelling())
        task.cancel()
        task.cancel()
        log.append(task.cancelling())
        log.append(task.uncancel())
        try:
            await task
        except lib.CancelledError:
            pass
        return task.cancelled()

    check(case, ("returned", True), [0, 2, 1])


def test_sleep_cancel_and_result() -> None:
    """sleep(d, result) returns result; a cancelled sleep raises CancelledError at its await."""

    async def case(lib: Any, log: list[Any]) -> Any:
        log.append(await lib.sleep(0.5, "value"))
        sleeper = lib.create_task(lib.sleep(10, "never"))
        await lib.sleep(0.1)
        sleeper.cancel()
        try:
            await sleeper
        except lib.CancelledError:
            log.append(f"cancelled {now(lib)}")
        return now(lib)

    check(case, ("returned", 0.6), ["value", "cancelled 0.6"])


def test_an_exception_leaving_main() -> None:
    """An exception that leaves the main coroutine comes out of run()."""

    async def case(lib: Any, log: list[Any]) -> Any:
        await lib.sleep(0.1)
        raise LookupError("out")

    check(case, ("raised", ("LookupError",)))


def test_run_cancels_leftover_tasks_and_lets_them_clean_up() -> None:
    """Tasks still running when main returns are cancelled and their finally blocks (which await) run."""

    async def case(lib: Any, log: list[Any]) -> Any:
        async def leftover() -> None:
            try:
                await lib.sleep(10)
            finally:
                await lib.sleep(0.5)
                log.append(f"cleaned up {now(lib)}")

        lib.create_task(leftover())
        await lib.sleep(0.1)
        return "main done"

    check(case, ("returned", "main done"), ["cleaned up 0.6"])
