"""Tasks on the reactor (reactor.tasks): stepping, cancellation, sleep, wait_for, gather, TaskGroup, run."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import reactor as reactor_pkg
from reactor import ManualClock, Reactor
from reactor.tasks import Task, create_task, current_task, gather, get_running_reactor, sleep, wait_for


async def double_after(delay: float, value: int) -> int:
    await sleep(delay)
    return value * 2


def test_task_runs_coroutine_to_its_result(reactor: Reactor) -> None:
    """A task steps its coroutine on the reactor and its result is the return value."""
    task = reactor.create_task(double_after(0, 21))
    assert isinstance(task, Task) and isinstance(task, reactor_pkg.Future)
    assert reactor.run_until_complete(task) == 42


def test_sleep_follows_the_manual_clock(reactor: Reactor, clock: ManualClock) -> None:
    """sleep() wakes only once the reactor's clock has passed the delay."""
    task = reactor.create_task(double_after(5.0, 1))
    for _ in range(3):
        reactor.run_once(0)
    assert not task.done()
    clock.advance(5.0)
    reactor.run_once(0)
    reactor.run_once(0)
    assert task.result() == 2


def test_cancel_throws_in_at_the_await_and_runs_finally(reactor: Reactor) -> None:
    """Cancelling a parked task cancels its future, throws CancelledError in, and runs finally."""
    future = reactor.create_future()
    steps: list[str] = []

    async def parked() -> None:
        try:
            await future
        finally:
            steps.append("finally")

    task = reactor.create_task(parked())
    reactor.run_once(0)
    assert task.cancel("stop")
    reactor.run_until_complete(reactor.create_task(sleep(0)))
    reactor.run_once(0)
    assert future.cancelled() and task.cancelled() and steps == ["finally"]
    with pytest.raises(asyncio.CancelledError, match="stop"):
        task.result()


def test_running_reactor_and_current_task(reactor: Reactor) -> None:
    """Inside a task the running reactor and the current task are known; outside they are not."""
    seen: list[Any] = []

    async def look() -> None:
        seen.append((get_running_reactor(), current_task()))
        child = create_task(double_after(0, 1), name="child")
        seen.append(await child)
        seen.append(child.get_name())

    task = reactor.create_task(look())
    reactor.run_until_complete(task)
    assert seen == [(reactor, task), 2, "child"]
    assert current_task() is None
    with pytest.raises(RuntimeError, match="no running reactor"):
        get_running_reactor()


def test_run_until_complete_takes_a_coroutine(reactor: Reactor) -> None:
    """run_until_complete() runs a coroutine as a task."""
    assert reactor.run_until_complete(gather_two()) == [2, 4]


async def gather_two() -> list[int]:
    return await gather(double_after(0.0, 1), double_after(0.0, 2))


def test_wait_for_times_out_with_timeout_error() -> None:
    """reactor.run() with wait_for: the awaited coroutine is cancelled and TimeoutError raised."""

    async def main() -> str:
        try:
            await wait_for(sleep(10), 0.01)
        except TimeoutError:
            return "timed out"
        return "not"

    assert reactor_pkg.run(main()) == "timed out"


# ------------------------------------------------------------------ cancellation at every kind of await point


class AwaitPoint:
    """One kind of await point: what a task awaits, and how to check it was cancelled with the task."""

    def __init__(self, reactor: Reactor, listener: Any) -> None:
        self.reactor = reactor
        self.listener = listener
        self.inner: list[Any] = []

    async def future(self) -> None:
        future = self.reactor.create_future()
        self.inner.append(future)
        await future

    async def sleep(self) -> None:
        await sleep(100)

    async def nested_task(self) -> None:
        inner = create_task(sleep(100))
        self.inner.append(inner)
        await inner

    async def gather(self) -> None:
        children = [create_task(sleep(100)), create_task(sleep(200))]
        self.inner.extend(children)
        await gather(*children)

    async def wait_for(self) -> None:
        inner = create_task(sleep(100))
        self.inner.append(inner)
        await wait_for(inner, 50)

    async def task_group(self) -> None:
        async with reactor_pkg.TaskGroup() as group:
            self.inner.append(group.create_task(sleep(100)))
            await sleep(100)

    async def request(self) -> None:
        from conftest import addr

        future = self.reactor.request(addr(self.listener), "question", timeout=100)
        self.inner.append(future)
        await future


AWAIT_POINTS = ["future", "sleep", "nested_task", "gather", "wait_for", "task_group", "request"]


@pytest.mark.parametrize("kind", AWAIT_POINTS)
def test_cancel_at_each_kind_of_await_point(reactor: Reactor, listener: Any, kind: str) -> None:
    """Cancelling a task parked at each kind of await runs its finally and cancels what it awaited."""
    point = AwaitPoint(reactor, listener)
    cleanup: list[str] = []

    async def parked() -> None:
        try:
            await getattr(point, kind)()
        finally:
            cleanup.append("finally")

    task = reactor.create_task(parked())
    for _ in range(5):
        reactor.run_once(0)
    if kind == "request":
        assert len(reactor.connections) == 1
    assert not task.done()
    task.cancel()
    for _ in range(10):
        reactor.run_once(0)
    assert task.cancelled() and cleanup == ["finally"]
    assert all(inner.cancelled() for inner in point.inner), point.inner
    assert reactor.connections == {}  # the cancelled request closed its connection
    assert reactor._tasks == set()


def test_cancelled_request_future_closes_its_connection(reactor: Reactor, listener: Any) -> None:
    """Cancelling a Reactor.request future (no task involved) closes its socket and removes its row."""
    from conftest import addr

    future = reactor.request(addr(listener), "question", timeout=100)
    for _ in range(3):
        reactor.run_once(0)
    (row,) = reactor.connections.values()
    sock = row.sock
    future.cancel()
    reactor.run_once(0)
    assert reactor.connections == {} and sock.fileno() == -1


# ------------------------------------------------------------------ where tasks run


def test_tasks_run_with_thread_creation_forbidden(no_threads: None) -> None:
    """reactor.run, create_task, gather, wait_for, TaskGroup and sleep start no thread."""

    async def main() -> list[int]:
        async with reactor_pkg.TaskGroup() as group:
            first = group.create_task(double_after(0.001, 1))
        second = await wait_for(double_after(0.001, 2), 5)
        return [first.result(), second, *await gather(double_after(0, 3))]

    assert reactor_pkg.run(main()) == [2, 4, 6]


def test_tasks_in_a_host_select_loop() -> None:
    """A host's own select() loop (fileno, timeout, run_once(0)) runs tasks and their sleeps."""
    import select

    with Reactor() as r:
        done = r.create_task(gather_two())
        turns = 0
        while not done.done() and turns < 1000:
            wait = r.timeout()
            select.select([r.fileno()], [], [], 0.05 if wait is None else min(wait, 0.05))
            r.run_once(0)
            turns += 1
        assert done.result() == [2, 4]


def test_tasks_in_a_reactor_driven_by_asyncio() -> None:
    """A reactor attached to an asyncio loop runs its tasks from the asyncio loop's turns."""
    from embed_hosts import AsyncioHost

    host = AsyncioHost()
    with Reactor() as r:
        driver = host.attach(r)
        try:
            task = r.create_task(double_after(0.01, 5))
            host.run_until(task.done, limit=5)
            assert task.result() == 10
        finally:
            driver.close()
            host.close()


# ------------------------------------------------------------------ misuse and errors


def test_awaiting_an_asyncio_future_is_refused_clearly(reactor: Reactor) -> None:
    """A reactor task that awaits an asyncio future of a loop that is not running gets an error that says what to do."""
    loop = asyncio.new_event_loop()
    try:
        foreign = loop.create_future()

        async def await_foreign() -> None:
            await foreign

        task = reactor.create_task(await_foreign())
        with pytest.raises(RuntimeError, match="cannot await an asyncio future of a loop that is not running"):
            reactor.run_until_complete(task)
    finally:
        loop.close()


def test_bad_awaits_raise_at_the_await(reactor: Reactor) -> None:
    """A future of another reactor, the task itself and a bad yield raise in the coroutine."""
    other = Reactor()
    try:

        async def other_reactor() -> None:
            await other.create_future()

        with pytest.raises(ValueError, match="another reactor"):
            reactor.run_until_complete(other_reactor())

        async def itself() -> None:
            await current_task()  # type: ignore[misc]

        with pytest.raises(RuntimeError, match="cannot await itself"):
            reactor.run_until_complete(itself())

        class BadYield:
            def __await__(self) -> Any:
                yield 42

        async def bad() -> None:
            await BadYield()

        with pytest.raises(TypeError, match="bad yield 42"):
            reactor.run_until_complete(bad())
    finally:
        other.close()


def test_misuse_raises_at_the_call(reactor: Reactor) -> None:
    """Non-coroutines, module-level calls outside a task and set_result on a task raise clear errors."""
    with pytest.raises(TypeError, match="needs a coroutine"):
        reactor.create_task(lambda: None)  # type: ignore[arg-type]
    coro = double_after(0, 1)
    with pytest.raises(RuntimeError, match="no running reactor"):
        create_task(coro)  # closed for us: no "never awaited" warning (warnings are errors)
    with pytest.raises(RuntimeError, match="no running reactor"):
        gather(double_after(0, 1))
    with pytest.raises(TypeError, match="needs a reactor Future or a coroutine"):
        reactor.run_until_complete(42)  # type: ignore[arg-type]
    task = reactor.create_task(double_after(0, 1))
    with pytest.raises(RuntimeError, match="not supported"):
        task.set_result(3)
    with pytest.raises(RuntimeError, match="not supported"):
        task.set_exception(ValueError())
    assert reactor.run_until_complete(task) == 2


def test_get_running_reactor_is_not_set_in_a_plain_callback(reactor: Reactor) -> None:
    """A plain callback is not a task: get_running_reactor() raises there."""
    errors: list[BaseException] = []

    def callback() -> None:
        try:
            get_running_reactor()
        except RuntimeError as exc:
            errors.append(exc)

    reactor.call_soon(callback)
    reactor.run_once(0)
    assert len(errors) == 1


def test_create_task_on_a_closed_reactor() -> None:
    """create_task on a closed reactor raises and closes the coroutine."""
    r = Reactor()
    r.close()
    with pytest.raises(RuntimeError, match="closed"):
        r.create_task(double_after(0, 1))


def test_never_retrieved_exception_is_reported_when_collected(reactor: Reactor) -> None:
    """A failed task nobody looked at reports its exception through the handler when collected."""
    import gc

    reports: list[dict[str, Any]] = []
    reactor.set_exception_handler(lambda r, context: reports.append(context))

    async def fail() -> None:
        raise KeyError("lost")

    task = reactor.create_task(fail())
    reactor.run_once(0)
    assert task.done()
    del task
    gc.collect()
    assert [c["message"] for c in reports] == ["Task exception was never retrieved"]
    assert isinstance(reports[0]["exception"], KeyError)

    looked_at = reactor.create_task(fail())
    reactor.run_once(0)
    assert isinstance(looked_at.exception(), KeyError)
    del looked_at
    gc.collect()
    assert len(reports) == 1


def test_names_repr_and_coro(reactor: Reactor) -> None:
    """get_name/set_name, get_coro and the repr say what the task is."""
    coro = double_after(1, 1)
    task = reactor.create_task(coro, name=7)
    assert task.get_name() == "7" and task.get_coro() is coro
    task.set_name("renamed")
    assert "pending" in repr(task) and "renamed" in repr(task) and "double_after" in repr(task)
    reactor.run_once(0)
    assert "wait_for=" in repr(task)
    task.cancel()
    reactor.run_once(0)
    reactor.run_once(0)
    assert "cancelled" in repr(task)


# ------------------------------------------------------------------ run and run_until_complete


def test_run_refuses_to_nest_and_needs_a_coroutine() -> None:
    """reactor.run() inside a task raises; a non-coroutine is refused."""

    async def nested() -> None:
        reactor_pkg.run(double_after(0, 1))

    with pytest.raises(RuntimeError, match="cannot be called from a running task"):
        reactor_pkg.run(nested())
    with pytest.raises(TypeError, match="needs a coroutine"):
        reactor_pkg.run(42)  # type: ignore[arg-type]


def test_run_uses_a_fresh_reactor_and_closes_it() -> None:
    """reactor.run() makes a reactor, returns main's result and closes the reactor."""
    seen: list[Reactor] = []

    async def main() -> str:
        seen.append(get_running_reactor())
        return "result"

    assert reactor_pkg.run(main()) == "result"
    assert seen[0].is_closed()


def test_run_until_complete_with_a_coroutine_times_out_and_cancels_it(reactor: Reactor, clock: ManualClock) -> None:
    """run_until_complete(coro, timeout): on timeout the task is cancelled and its finally ran."""
    cleanup: list[str] = []

    async def slow() -> None:
        try:
            await sleep(100)
        finally:
            cleanup.append("finally")

    reactor.call_soon(clock.advance, 1.0)
    with pytest.raises(TimeoutError, match="within 1.0 s"):
        reactor.run_until_complete(slow(), timeout=1.0)
    assert cleanup == ["finally"] and reactor._tasks == set()


def test_task_cancelled_before_its_first_step(reactor: Reactor) -> None:
    """A task cancelled before it ran never starts its coroutine (no "never awaited" warning)."""
    ran: list[str] = []

    async def body() -> None:
        ran.append("ran")

    task = reactor.create_task(body())
    task.cancel()
    reactor.run_once(0)
    assert task.cancelled() and ran == []


def test_a_task_of_one_reactor_runs_another_reactor_inside_its_step(reactor: Reactor) -> None:
    """Each reactor knows its own stepping task: a nested reactor's task is current inside, the outer one after."""
    seen: list[Any] = []

    async def inner() -> None:
        seen.append(("inner", current_task()))

    async def outer() -> None:
        with Reactor() as nested:
            inner_task = nested.create_task(inner())
            nested.run_until_complete(inner_task)
            seen.append(("inner task", inner_task))
        seen.append(("outer", current_task()))

    task = reactor.create_task(outer())
    reactor.run_until_complete(task)
    inner_task = seen[1][1]
    assert seen == [("inner", inner_task), ("inner task", inner_task), ("outer", task)]
    assert inner_task is not task


def test_run_names_its_reactor_for_its_tasks_only_while_it_runs(reactor: Reactor) -> None:
    """`run()` names its reactor for the whole run, and a `run()` nested in a task's step restores the outer one.

    Between turns and in plain callbacks no task is current; after `run()`
    returns, nothing is named any more.
    """
    from reactor.futures import _turn

    seen: list[Any] = []

    async def inner(nested: Reactor) -> None:
        await sleep(0)
        seen.append(("inner", get_running_reactor() is nested, current_task() is not None))
        nested.stop()

    async def outer() -> None:
        with Reactor() as nested:
            nested.create_task(inner(nested))
            nested.run()
        await sleep(0)
        seen.append(("outer", get_running_reactor() is reactor, current_task() is task))
        reactor.call_soon(plain)

    def plain() -> None:
        seen.append(("plain", current_task()))
        reactor.stop()

    assert _turn.reactor is None
    task = reactor.create_task(outer())
    reactor.run()
    assert seen == [("inner", True, True), ("outer", True, True), ("plain", None)]
    assert task.done() and _turn.reactor is None
    with pytest.raises(RuntimeError, match="no running reactor"):
        get_running_reactor()


def test_a_finished_task_is_freed_without_the_cycle_collector(reactor: Reactor) -> None:
    """A task that awaited futures holds no reference cycle once done: dropping it frees it at once."""
    import gc
    import weakref

    async def waits() -> int:
        await sleep(0)
        future = reactor.create_future()
        reactor.call_soon(future.set_result, 3)
        return await future

    gc.disable()
    try:
        task = reactor.create_task(waits())
        assert reactor.run_until_complete(task) == 3
        ref = weakref.ref(task)
        del task
        assert ref() is None
    finally:
        gc.enable()
