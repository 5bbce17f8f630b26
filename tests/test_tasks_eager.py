"""Eager start: a task's first step runs inside create_task, and an async handler replies in the same callback."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest
from conftest import run_until

from reactor import Future, ManualClock, Protocol, Reactor, RequestServer
from reactor.reqrep import TaskRequestProtocol
from reactor.tasks import Task, _start_eagerly, create_task, current_task, get_running_reactor, sleep
from reactor.transport.memory import memory_pair


def test_a_coroutine_that_does_not_suspend_is_done_at_once(reactor: Reactor) -> None:
    """Finishing in the eager step: the task is done when create_task returns and nothing was queued."""

    async def compute() -> int:
        return 42

    task = reactor.create_task(compute(), eager_start=True)
    assert task.done() and task.result() == 42
    assert reactor.statistics()["ready"] == 0  # no step queued, no callback
    assert task not in reactor._tasks


def test_the_default_still_queues_the_first_step(reactor: Reactor) -> None:
    """Without eager_start the first step runs in the next turn, as before."""
    ran: list[str] = []

    async def note() -> None:
        ran.append("ran")

    task = reactor.create_task(note())
    assert not task.done() and ran == [] and reactor.statistics()["ready"] == 1
    reactor.run_once(0)
    assert task.done() and ran == ["ran"]


def test_current_task_and_running_reactor_during_the_eager_step(reactor: Reactor) -> None:
    """Inside the eager step current_task() is the task being made and the reactor is running."""
    seen: list[Any] = []

    async def look() -> None:
        seen.append(current_task())
        seen.append(get_running_reactor())
        await sleep(0)
        seen.append(current_task())

    task = reactor.create_task(look(), eager_start=True)
    assert seen == [task, reactor]
    assert current_task() is None  # restored once the eager step is over
    reactor.run_until_complete(task)
    assert seen == [task, reactor, task]


def test_eager_start_inside_a_task_restores_the_outer_task(reactor: Reactor) -> None:
    """An eager child started from a task runs as itself, then the parent is current again."""
    seen: list[Any] = []

    async def child() -> str:
        seen.append(current_task())
        return "child"

    async def parent() -> str:
        inner = create_task(child(), eager_start=True)
        seen.append(current_task())
        assert inner.done()
        return inner.result()

    outer = reactor.create_task(parent())
    assert reactor.run_until_complete(outer) == "child"
    assert seen[1] is outer and isinstance(seen[0], Task) and seen[0] is not outer


def test_suspends_then_finishes(reactor: Reactor, clock: ManualClock) -> None:
    """A coroutine that suspends in its eager step goes on as a task parked on what it awaited."""
    steps: list[str] = []

    async def two_steps() -> str:
        steps.append("first")
        await sleep(1.0)
        steps.append("second")
        return "done"

    task = reactor.create_task(two_steps(), eager_start=True)
    assert steps == ["first"] and not task.done() and task in reactor._tasks
    assert task._waiting_on is not None  # parked on sleep's future, not queued
    reactor.run_once(0)
    assert steps == ["first"]
    clock.advance(1.0)
    assert reactor.run_until_complete(task) == "done"
    assert steps == ["first", "second"] and task not in reactor._tasks


def test_raises_in_the_first_step(reactor: Reactor) -> None:
    """An exception in the eager step fails the task, which create_task still returns."""

    async def broken() -> None:
        raise ValueError("bad input")

    task = reactor.create_task(broken(), eager_start=True)
    assert task.done() and not task.cancelled()
    with pytest.raises(ValueError, match="bad input"):
        task.result()
    assert task not in reactor._tasks


def test_cancelled_while_suspended_after_an_eager_step(reactor: Reactor) -> None:
    """Cancelling a task parked by its eager step cancels its future and throws in; finally runs."""
    future: Future[None] = reactor.create_future()
    steps: list[str] = []

    async def parked() -> None:
        try:
            await future
        finally:
            steps.append("finally")

    task = reactor.create_task(parked(), eager_start=True)
    assert not task.done()
    assert task.cancel("stop")
    run_until(reactor, task.done)
    assert future.cancelled() and task.cancelled() and steps == ["finally"]
    with pytest.raises(asyncio.CancelledError, match="stop"):
        task.result()


def test_cancelled_from_inside_its_own_eager_step(reactor: Reactor) -> None:
    """A task that cancels itself during its eager step ends cancelled, as after any step."""

    async def self_cancel() -> int:
        task = current_task()
        assert task is not None
        task.cancel()
        return 1

    task = reactor.create_task(self_cancel(), eager_start=True)
    assert task.cancelled()


# ------------------------------------------------------------------ no task until one is needed


def test_start_eagerly_makes_no_task_for_a_coroutine_that_returns(reactor: Reactor) -> None:
    """The server's path: a first step that returns leaves no task, no registry entry, nothing queued."""
    ran: list[Any] = []

    async def compute() -> int:
        ran.append(get_running_reactor())
        return 7

    assert _start_eagerly(compute(), reactor) == (None, 7)
    assert ran == [reactor] and not reactor._tasks and reactor.statistics()["ready"] == 0
    assert current_task() is None


def test_start_eagerly_makes_the_task_current_task_returned(reactor: Reactor, clock: ManualClock) -> None:
    """current_task() in the first step makes the task; the same task goes on after the step suspends."""
    seen: list[Any] = []

    async def look() -> str:
        seen.append(current_task())
        await sleep(1.0)
        seen.append(current_task())
        return "done"

    task, value = _start_eagerly(look(), reactor)
    assert isinstance(task, Task) and seen == [task] and not task.done() and task in reactor._tasks
    assert value is None
    clock.advance(1.0)
    assert reactor.run_until_complete(task) == "done"
    assert seen == [task, task]


def test_start_eagerly_returns_the_task_that_asked_for_itself_and_returned(reactor: Reactor) -> None:
    """A first step that looked at current_task() and returned gives back that (finished) task."""

    async def look() -> str:
        assert current_task() is not None
        return "seen"

    task, value = _start_eagerly(look(), reactor)
    assert task is not None and task.done() and task.result() == "seen" and task not in reactor._tasks
    assert value == "seen"


def test_start_eagerly_gives_a_failed_task_for_a_raise(reactor: Reactor) -> None:
    """A first step that raises leaves a failed task (its exception retrievable), not an error at the call."""

    async def broken() -> None:
        raise ValueError("bad")

    task, value = _start_eagerly(broken(), reactor)
    assert task is not None and task.done() and value is None
    with pytest.raises(ValueError, match="bad"):
        task.result()


def test_start_eagerly_suspended_task_can_be_cancelled(reactor: Reactor) -> None:
    """A task made when the first step suspended is cancelled at its await like any other; finally runs."""
    future: Future[None] = reactor.create_future()
    steps: list[str] = []

    async def parked() -> None:
        try:
            await future
        finally:
            steps.append("finally")

    task, _ = _start_eagerly(parked(), reactor)
    assert task is not None and task._waiting_on is future
    task.cancel()
    run_until(reactor, task.done)
    assert task.cancelled() and future.cancelled() and steps == ["finally"]


def test_start_eagerly_refuses_a_closed_reactor(clock: ManualClock) -> None:
    """On a closed reactor the coroutine is closed (no never-awaited warning) and RuntimeError raised."""
    closed = Reactor(clock=clock)
    closed.close()

    async def never() -> None:
        raise AssertionError("must not run")

    with pytest.raises(RuntimeError, match="closed"):
        _start_eagerly(never(), closed)


# ------------------------------------------------------------------ the request server


class Raw(Protocol):
    """The client side: writes what the test says, keeps what it receives."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.lost = False

    def data_received(self, data: bytes) -> None:
        self.received += data

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = True


class Plain(RequestServer):
    """The plain handler, for comparison."""

    def handle_request(self, request: str) -> str:
        return "Requested: " + request


class Awaitless(RequestServer):
    """An async handler that awaits nothing."""

    async def handle_request(self, request: str) -> str:
        return "Requested: " + request


class SleepsOnce(RequestServer):
    """An async handler that suspends once (0.5 s of reactor time)."""

    async def handle_request(self, request: str) -> str:
        await sleep(0.5)
        return "Requested: " + request


class DropsItsConnection(RequestServer):
    """An async handler whose first step ends its own connection (``drop``), then waits."""

    drop: Any = None
    finished = False

    async def handle_request(self, request: str) -> str:
        self.drop()
        try:
            await sleep(3600)
        finally:
            self.finished = True
        return "never"


def turns_to_reply(reactor: Reactor, server: RequestServer, protocol: Any) -> int:
    """How many turns one request takes, from the write to the end of the reply, over memory transports."""
    raw = Raw()
    a, _ = memory_pair(reactor, raw, protocol)
    a.write(b"hi\r\n")
    before = reactor.statistics()["turns"]
    run_until(reactor, lambda: raw.lost)
    assert bytes(raw.received) == b"Requested: hi\r\n"
    return reactor.statistics()["turns"] - before


def test_an_awaitless_async_handler_replies_in_the_same_turn_as_a_plain_one(reactor: Reactor) -> None:
    """The eager step replies from the callback that read the request: no more turns than the plain handler."""
    with Plain("localhost:0", reactor=reactor) as plain, Awaitless("localhost:0", reactor=reactor) as awaitless:
        plain_turns = turns_to_reply(reactor, plain, TaskRequestProtocol(plain))
        protocol = TaskRequestProtocol(awaitless)
        assert turns_to_reply(reactor, awaitless, protocol) == plain_turns
        assert protocol.task is None  # finished in its first step: no task is held
        assert awaitless.statistics()["completed"] == 1


def test_an_async_handler_that_suspends_gets_a_task_and_a_fresh_deadline(reactor: Reactor, clock: ManualClock) -> None:
    """A handler that suspends in its first step is held as a task; the deadline is re-armed; it then replies."""
    with SleepsOnce("localhost:0", reactor=reactor, timeout=2.0) as server:
        raw = Raw()
        protocol = TaskRequestProtocol(server)
        a, b = memory_pair(reactor, raw, protocol)
        a.write(b"hi\r\n")
        run_until(reactor, lambda: protocol.task is not None)
        assert not protocol.task.done() and b.deadline is not None
        clock.advance(0.5)
        run_until(reactor, lambda: raw.lost)
        assert bytes(raw.received) == b"Requested: hi\r\n" and protocol.task.done()
        assert server.statistics()["completed"] == 1


def test_a_handler_whose_connection_ends_in_the_first_step_is_cancelled(reactor: Reactor) -> None:
    """The connection closed under the eager step: the suspended task is cancelled (finally runs), no reply."""
    with DropsItsConnection("localhost:0", reactor=reactor) as server:
        raw = Raw()
        a, b = memory_pair(reactor, raw, TaskRequestProtocol(server))
        server.drop = b.abort
        a.write(b"hi\r\n")
        run_until(reactor, lambda: raw.lost and server.finished)
        assert raw.received == b""
        run_until(reactor, lambda: not reactor._tasks)


# ------------------------------------------------------------------ the wakeup's fast paths


class _YieldsAsIs:
    """An awaitable that yields the future it was given, whatever its state (as a hand-written one may)."""

    def __init__(self, future: Future[Any]) -> None:
        self.future = future

    def __await__(self) -> Any:
        value = yield self.future
        return value


def test_a_task_that_yields_a_done_future_wakes_next_turn_with_its_outcome(reactor: Reactor) -> None:
    """Parking on a future that is already done schedules the wakeup; success resumes, failure throws in."""
    done: Future[int] = reactor.create_future()
    done.set_result(7)
    failed: Future[int] = reactor.create_future()
    failed.set_exception(KeyError("k"))
    outcomes: list[Any] = []

    async def park_on_done() -> None:
        await _YieldsAsIs(done)
        outcomes.append(done.result())
        try:
            await _YieldsAsIs(failed)
        except KeyError as exc:
            outcomes.append(exc)

    task = reactor.create_task(park_on_done())
    run_until(reactor, task.done)
    assert task.result() is None
    assert outcomes[0] == 7 and isinstance(outcomes[1], KeyError)


def test_awaiting_a_failed_task_retrieves_its_exception(reactor: Reactor) -> None:
    """A task's failure seen through await counts as retrieved (no 'never retrieved' report)."""
    reported: list[Any] = []
    reactor.set_exception_handler(lambda r, context: reported.append(context))

    async def broken() -> None:
        await sleep(0)
        raise ValueError("x")

    async def waiter() -> str:
        try:
            await reactor.create_task(broken())
        except ValueError:
            return "caught"
        return "not raised"

    assert reactor.run_until_complete(reactor.create_task(waiter())) == "caught"
    gc.collect()
    assert reported == []
