"""`Reactor.close()` with work in flight: connections aborted, requests failed, tasks cancelled, no fd left."""

from __future__ import annotations

import gc
import logging
import socket
from typing import Any

import pytest
from conftest import addr, open_fd_count

from reactor import ManualClock, Reactor, RequestError, RequestFailed, sleep
from reactor.core import ReactorClosedError


def test_three_requests_with_timeouts_fail_and_close_their_sockets(
    reactor: Reactor, clock: ManualClock, listener: socket.socket
) -> None:
    """Three requests to a silent server, in flight at close(): each fails with RequestFailed, no row, no fd."""
    futures = [reactor.request(addr(listener), f"q{i}", timeout=5) for i in range(3)]
    for _ in range(3):
        reactor.run_once(0)
    assert len(reactor.connections) == 3 and not any(f.done() for f in futures)
    reactor.close()
    assert reactor.connections == {}
    for future in futures:
        exc = future.exception()
        assert isinstance(exc, RequestFailed) and isinstance(exc, RequestError)
        assert "reactor was closed" in str(exc)
        assert isinstance(exc.__cause__, ReactorClosedError)


def test_with_pattern_after_run_until_complete_times_out(listener: socket.socket) -> None:
    """``with Reactor() as loop: loop.run_until_complete(fut, timeout=...)`` leaves no socket open."""
    fds_before = open_fd_count()
    clock = ManualClock()
    with Reactor(clock=clock) as loop:
        future = loop.request(addr(listener), "hello", timeout=60)
        loop.call_soon(clock.advance, 0.3)  # the 0.3 s pass during the first turn
        with pytest.raises(TimeoutError):
            loop.run_until_complete(future, timeout=0.3)
    assert isinstance(future.exception(), RequestFailed)
    gc.collect()
    assert open_fd_count() == fds_before


def test_requests_still_connecting_fail_too(reactor: Reactor, listener: socket.socket) -> None:
    """A request whose connect has not completed (CONNECTING row) fails at close() as well."""
    futures = [reactor.request(addr(listener), "x", timeout=5) for _ in range(2)]
    assert reactor.connections  # rows exist before any turn ran
    reactor.close()
    assert reactor.connections == {}
    assert all(isinstance(f.exception(), RequestFailed) for f in futures)


class Recorder:
    """A protocol that records what it was told."""

    def __init__(self) -> None:
        self.lost: list[BaseException | None] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.append(exc)


def test_protocols_get_connection_lost_with_an_error(reactor: Reactor) -> None:
    """Each protocol of an open connection gets connection_lost(ReactorClosedError) exactly once."""
    from reactor.transport.connect import attach_socket

    left, right = socket.socketpair()
    protocols = [Recorder(), Recorder()]
    attach_socket(reactor, left, protocols[0])
    attach_socket(reactor, right, protocols[1])
    reactor.run_once(0)
    reactor.close()
    for protocol in protocols:
        assert len(protocol.lost) == 1 and isinstance(protocol.lost[0], ReactorClosedError)
    assert left.fileno() == -1 and right.fileno() == -1


def test_tasks_are_cancelled_and_their_finally_blocks_run(reactor: Reactor, listener: socket.socket) -> None:
    """Pending tasks are cancelled at close(); a task awaiting a request sees its failure; finally blocks run."""
    seen: list[str] = []

    async def sleeper() -> None:
        try:
            await sleep(100)
        finally:
            seen.append("sleeper finally")

    async def asker() -> None:
        try:
            await reactor.request(addr(listener), "q", timeout=5)
        except BaseException as exc:
            seen.append(type(exc).__name__)
            raise

    tasks = [reactor.create_task(sleeper()), reactor.create_task(asker())]
    for _ in range(3):
        reactor.run_once(0)
    reactor.close()
    assert sorted(seen) == ["CancelledError", "sleeper finally"]
    assert all(task.cancelled() for task in tasks)
    assert reactor._tasks == set()


def test_a_cleanup_that_awaits_time_stays_pending_and_is_logged(
    reactor: Reactor, caplog: pytest.LogCaptureFixture
) -> None:
    """close() lets no time pass: a task whose finally awaits a sleep stays pending, with a warning."""

    async def slow_cleanup() -> None:
        try:
            await sleep(100)
        finally:
            await sleep(1)

    task = reactor.create_task(slow_cleanup())
    reactor.run_once(0)
    with caplog.at_level(logging.WARNING, logger="reactor"):
        reactor.close()
    assert not task.done()
    assert "still pending when the reactor closed" in caplog.text
    task.get_coro().close()


def test_close_with_nothing_in_flight_is_unchanged(reactor: Reactor) -> None:
    """A reactor with no rows and no tasks closes as before; close() stays idempotent."""
    handle = reactor.call_later(1, lambda: None)
    reactor.close()
    reactor.close()
    assert reactor.is_closed() and not handle.cancelled()


def test_a_tls_request_in_its_handshake_fails_too(reactor: Reactor, listener: socket.socket) -> None:
    """A TLS request whose handshake the (silent) server never answers fails at close(), its socket closed."""
    import ssl

    from conftest import run_until

    context = ssl.create_default_context()
    future = reactor.request(addr(listener), "q", timeout=5, ssl=context, server_hostname="localhost")
    run_until(reactor, lambda: any(row.bytes_out for row in reactor.connections.values()))  # ClientHello out
    (row,) = reactor.connections.values()
    reactor.close()
    assert reactor.connections == {} and row.sock.fileno() == -1
    exc = future.exception()
    assert isinstance(exc, RequestFailed) and "reactor was closed" in str(exc)


def test_close_from_inside_a_task(reactor: Reactor, listener: socket.socket) -> None:
    """A task that closes its own reactor: the other tasks and requests are still failed and cancelled."""
    other_cleanup: list[str] = []

    async def other() -> None:
        try:
            await sleep(100)
        finally:
            other_cleanup.append("other finally")

    async def closer() -> None:
        reactor.close()

    request = reactor.request(addr(listener), "q", timeout=5)
    other_task = reactor.create_task(other())
    reactor.run_once(0)
    reactor.create_task(closer())
    reactor.run_once(0)
    assert reactor.is_closed()
    assert other_task.cancelled() and other_cleanup == ["other finally"]
    assert isinstance(request.exception(), RequestFailed)
