"""``async def handle_request``: each request a task, cancelled by the deadline and by close."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from conftest import run_until

from reactor import Future, ManualClock, Reactor, RequestServer, sleep
from reactor.reqrep import RequestProtocol, TaskRequestProtocol


class Sleepy(RequestServer):
    """Sleeps 0.2 s (reactor time) per request, then echoes; records the thread of each reply."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.entered = 0
        self.finished: list[str] = []
        self.threads: set[int] = set()
        super().__init__(*args, **kwargs)

    async def handle_request(self, request: str) -> str:
        self.entered += 1
        try:
            await sleep(0.2 if request != "forever" else 3600)
            self.threads.add(threading.get_ident())
            return "slept: " + request
        finally:
            self.finished.append(request)


def test_fifty_sleeping_requests_finish_together_on_one_thread(reactor: Reactor, clock: ManualClock) -> None:
    """50 concurrent requests each awaiting sleep(0.2): nothing before 0.2 s, all 50 replies right after."""
    server = Sleepy("127.0.0.1:0", reactor=reactor)
    replies = [reactor.request(server.address, f"r{i}", timeout=30) for i in range(50)]
    run_until(reactor, lambda: server.entered == 50)
    for _ in range(5):
        reactor.run_once(0)
    assert not any(reply.done() for reply in replies)
    clock.advance(0.2)
    run_until(reactor, lambda: all(reply.done() for reply in replies))
    assert [reply.result() for reply in replies] == [f"slept: r{i}" for i in range(50)]
    assert server.threads == {threading.get_ident()}
    assert server.statistics()["completed"] == 50
    server.close()
    run_until(reactor, lambda: not reactor.connections)


def test_the_deadline_cancels_the_handler_task(reactor: Reactor, clock: ManualClock) -> None:
    """A handler still awaiting when the server's timeout passes is cancelled; its finally runs."""
    server = Sleepy("127.0.0.1:0", reactor=reactor, timeout=1.0)
    reply = reactor.request(server.address, "forever", timeout=30)
    run_until(reactor, lambda: server.entered == 1)
    clock.advance(1.5)
    run_until(reactor, lambda: server.finished == ["forever"] and reply.done())
    assert reply.exception() is not None
    assert server.statistics()["timeouts"] == 1
    server.close()
    run_until(reactor, lambda: not reactor.connections)


def test_closing_the_server_cancels_the_handler_tasks(reactor: Reactor) -> None:
    """close() aborts the connections, and each handler's task is cancelled with its finally run."""
    server = Sleepy("127.0.0.1:0", reactor=reactor)
    replies = [reactor.request(server.address, "forever", timeout=30) for _ in range(3)]
    run_until(reactor, lambda: server.entered == 3)
    server.close()
    run_until(reactor, lambda: len(server.finished) == 3 and all(r.done() for r in replies))
    assert all(r.exception() is not None for r in replies)
    run_until(reactor, lambda: not reactor.connections)


def test_an_async_handler_may_ask_another_server(reactor: Reactor) -> None:
    """A handler awaits a request to a second server on the same reactor: no threads, no callbacks."""
    backend = RequestServer("127.0.0.1:0", reactor=reactor)

    class Front(RequestServer):
        async def handle_request(self, request: str) -> str:
            first = await self.reactor.request(backend.address, request, timeout=5)
            return f"front({first})"

    front = Front("127.0.0.1:0", reactor=reactor)
    reply = reactor.request(front.address, "hi", timeout=5)
    run_until(reactor, reply.done)
    assert reply.result() == "front(Requested: hi)"
    front.close()
    backend.close()
    run_until(reactor, lambda: not reactor.connections)


def test_an_async_handler_that_raises_is_reported_and_its_connection_closed(reactor: Reactor) -> None:
    """The exception goes to the exception handler, counts as an error, and the client sees a failure."""
    reported: list[dict[str, Any]] = []
    reactor.set_exception_handler(lambda r, ctx: reported.append(ctx))

    class Broken(RequestServer):
        async def handle_request(self, request: str) -> str:
            await sleep(0)
            raise KeyError(request)

    server = Broken("127.0.0.1:0", reactor=reactor)
    reply = reactor.request(server.address, "x", timeout=5)
    run_until(reactor, reply.done)
    assert reply.exception() is not None
    assert len(reported) == 1 and isinstance(reported[0]["exception"], KeyError)
    assert server.statistics()["errors"] == 1
    server.close()
    run_until(reactor, lambda: not reactor.connections)


def test_a_non_str_result_of_an_async_handler_is_an_error(reactor: Reactor) -> None:
    """An async handler returning something other than a str is reported like a plain one."""
    reported: list[dict[str, Any]] = []
    reactor.set_exception_handler(lambda r, ctx: reported.append(ctx))

    class Wrong(RequestServer):
        async def handle_request(self, request: str) -> Any:
            return 42

    server = Wrong("127.0.0.1:0", reactor=reactor)
    reply = reactor.request(server.address, "x", timeout=5)
    run_until(reactor, reply.done)
    assert reply.exception() is not None
    assert "not str" in reported[0]["message"]
    server.close()
    run_until(reactor, lambda: not reactor.connections)


def test_the_protocol_class_is_chosen_once_by_the_handler_kind(reactor: Reactor) -> None:
    """A plain handler's connections carry no task slot; an async handler's do."""

    class Later(RequestServer):
        def handle_request(self, request: str) -> Future[str]:
            return self.reactor.create_future()

    plain = Later("127.0.0.1:0", reactor=reactor)
    sleepy = Sleepy("127.0.0.1:0", reactor=reactor)
    replies = [reactor.request(s.address, "forever", timeout=30) for s in (plain, sleepy)]
    run_until(reactor, lambda: sleepy.entered == 1 and plain.statistics()["active"] == 1 and plain.connections() != [])
    run_until(reactor, lambda: all(c.protocol is not None for c in plain.connections() + sleepy.connections()))
    assert type(plain.connections()[0].protocol) is RequestProtocol
    assert type(sleepy.connections()[0].protocol) is TaskRequestProtocol
    plain.close()
    sleepy.close()
    run_until(reactor, lambda: all(r.done() for r in replies) and not reactor.connections)


def test_async_handler_with_worker_threads_is_refused(reactor: Reactor) -> None:
    """async_=True (worker threads) makes no sense for a coroutine handler: ValueError at construction."""
    with pytest.raises(ValueError, match="coroutine"):
        Sleepy("127.0.0.1:0", async_=True, reactor=reactor)


def test_an_async_handler_that_raises_before_awaiting_is_reported_once(reactor: Reactor) -> None:
    """A handler raising in its first step: reported once, counted, no task left, no 'never retrieved' later."""
    import gc

    reported: list[dict[str, Any]] = []
    reactor.set_exception_handler(lambda r, ctx: reported.append(ctx))

    class Broken(RequestServer):
        async def handle_request(self, request: str) -> str:
            raise KeyError(request)

    server = Broken("127.0.0.1:0", reactor=reactor)
    reply = reactor.request(server.address, "x", timeout=5)
    run_until(reactor, reply.done)
    assert reply.exception() is not None
    gc.collect()
    assert [type(ctx["exception"]) for ctx in reported] == [KeyError]
    assert server.statistics()["errors"] == 1
    assert not reactor._tasks
    server.close()
    run_until(reactor, lambda: not reactor.connections)


def test_an_async_handler_that_looks_at_its_task_and_returns_replies(reactor: Reactor) -> None:
    """current_task() in a handler that does not suspend makes a task, and the reply still goes out."""
    from reactor.tasks import current_task

    class Looking(RequestServer):
        async def handle_request(self, request: str) -> str:
            task = current_task()
            assert task is not None
            return f"{request} from {task.get_name()}"

    server = Looking("127.0.0.1:0", reactor=reactor)
    reply = reactor.request(server.address, "x", timeout=5)
    run_until(reactor, reply.done)
    assert reply.result().startswith("x from Task-")
    server.close()
    run_until(reactor, lambda: not reactor.connections)
