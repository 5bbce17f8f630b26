"""reactor.Future: states, callbacks via the reactor, errors that point the way."""

from __future__ import annotations

import pytest

from reactor import CancelledError, Future, InvalidStateError, Reactor


@pytest.fixture(autouse=True)
def _forbid_threads(no_threads: None) -> None:
    """Futures work where no thread may be started."""


def test_create_future_is_pending(reactor: Reactor) -> None:
    """A new future is pending and bound to its reactor."""
    fut = reactor.create_future()
    assert isinstance(fut, Future)
    assert not fut.done() and not fut.cancelled()
    assert fut.reactor is reactor
    assert "pending" in repr(fut)


def test_result_of_pending_future_raises_clear_error(reactor: Reactor) -> None:
    """result() never blocks: it raises and names run_until_complete and callbacks."""
    fut = reactor.create_future()
    with pytest.raises(InvalidStateError, match="run_until_complete") as info:
        fut.result()
    assert "add_done_callback" in str(info.value)
    with pytest.raises(InvalidStateError):
        fut.exception()


def test_set_result(reactor: Reactor) -> None:
    """set_result makes the future done with that result."""
    fut = reactor.create_future()
    fut.set_result("ok")
    assert fut.done() and fut.result() == "ok" and fut.exception() is None
    assert "ok" in repr(fut)
    with pytest.raises(InvalidStateError):
        fut.set_result("again")
    with pytest.raises(InvalidStateError):
        fut.set_exception(ValueError())


def test_set_exception(reactor: Reactor) -> None:
    """set_exception stores the exception; result() raises it; a class is instantiated."""
    fut = reactor.create_future()
    fut.set_exception(ValueError)
    assert isinstance(fut.exception(), ValueError)
    with pytest.raises(ValueError):
        fut.result()
    with pytest.raises(TypeError):
        reactor.create_future().set_exception(StopIteration())


def test_cancel(reactor: Reactor) -> None:
    """cancel() marks a pending future cancelled; a done one cannot be cancelled."""
    fut = reactor.create_future()
    assert fut.cancel() is True
    assert fut.cancelled() and fut.done()
    assert fut.cancel() is False
    with pytest.raises(CancelledError):
        fut.result()
    with pytest.raises(CancelledError):
        fut.exception()
    done = reactor.create_future()
    done.set_result(1)
    assert done.cancel() is False


def test_done_callbacks_are_scheduled_not_reentrant(reactor: Reactor) -> None:
    """add_done_callback callbacks run from the reactor, never inside set_result."""
    fut = reactor.create_future()
    got: list[object] = []
    fut.add_done_callback(lambda f: got.append(f.result()))
    fut.set_result(7)
    assert got == []
    reactor.run_once(0)
    assert got == [7]


def test_callback_on_done_future_is_scheduled(reactor: Reactor) -> None:
    """A callback added after completion still runs via the reactor."""
    fut = reactor.create_future()
    fut.set_result(1)
    got: list[object] = []
    fut.add_done_callback(got.append)
    assert got == []
    reactor.run_once(0)
    assert got == [fut]


def test_cancel_runs_callbacks(reactor: Reactor) -> None:
    """Cancelling schedules the done callbacks."""
    fut = reactor.create_future()
    got: list[bool] = []
    fut.add_done_callback(lambda f: got.append(f.cancelled()))
    fut.cancel()
    reactor.run_once(0)
    assert got == [True]


def test_remove_done_callback(reactor: Reactor) -> None:
    """remove_done_callback removes every registration and says how many."""
    fut = reactor.create_future()
    got: list[object] = []
    fut.add_done_callback(got.append)
    fut.add_done_callback(got.append)
    assert fut.remove_done_callback(got.append) == 2
    assert fut.remove_done_callback(got.append) == 0
    fut.set_result(None)
    reactor.run_once(0)
    assert got == []


def test_await_done_future_outside_asyncio(reactor: Reactor) -> None:
    """Awaiting a done future returns at once, even with no asyncio loop."""
    fut = reactor.create_future()
    fut.set_result(5)

    async def get() -> int:
        return await fut  # type: ignore[no-any-return]

    coro = get()
    with pytest.raises(StopIteration) as info:
        coro.send(None)
    assert info.value.value == 5
