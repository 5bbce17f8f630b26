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
