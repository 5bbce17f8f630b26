"""The request/reply protocols themselves, over in-memory transports: no sockets, no real time."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import run_until

from reactor import Future, ManualClock, Protocol, Reactor, ReplyTooLarge, RequestError, RequestServer
from reactor.client import ReplyProtocol
from reactor.framing import MessageTooLarge
from reactor.reqrep import RequestProtocol
from reactor.transport.memory import memory_pair


@pytest.fixture
def server(reactor: Reactor) -> Any:
    """A RequestServer whose protocol objects the tests connect in memory (its listener is never used)."""
    s = RequestServer("localhost:0", reactor=reactor, max_request_size=32, timeout=5)
    yield s
    s.close()


def exchange(reactor: Reactor, server: RequestServer, request: str) -> Future[str]:
    """One request through a ReplyProtocol and a RequestProtocol joined in memory."""
    future: Future[str] = reactor.create_future()
    client = ReplyProtocol(future, request.encode() + b"\r\n", 1 << 20, "memory", None)
    memory_pair(reactor, client, RequestProtocol(server))
    return future


def test_round_trip_in_memory(reactor: Reactor, server: RequestServer) -> None:
    """The client protocol sends, half-closes and reads; the server protocol answers; both close."""
    assert reactor.run_until_complete(exchange(reactor, server, "héllo"), 1) == "Requested: héllo"
    run_until(reactor, lambda: server.statistics()["completed"] == 1)


class Raw(Protocol):
    """A peer that writes what the test says and keeps what it receives."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.lost = False

    def data_received(self, data: bytes) -> None:
        self.received += data

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = True


@pytest.mark.parametrize("split", [1, 2, 3, 7])
def test_request_in_pieces(reactor: Reactor, server: RequestServer, split: int) -> None:
    """A request arriving in pieces of any size gets one reply, after which the server closes."""
    raw = Raw()
    a, _ = memory_pair(reactor, raw, RequestProtocol(server))
    payload = b"split me\r\n"
    for i in range(0, len(payload), split):
        a.write(payload[i : i + split])
        reactor.run_once(0)
    run_until(reactor, lambda: raw.lost)
    assert bytes(raw.received) == b"Requested: split me\r\n"


def test_request_ended_by_eof(reactor: Reactor, server: RequestServer) -> None:
    """Without CRLF the request ends at the client's EOF, and the reply still goes out."""
    raw = Raw()
    a, _ = memory_pair(reactor, raw, RequestProtocol(server))
    a.write(b"no terminator")
    a.write_eof()
    run_until(reactor, lambda: raw.lost)
    assert bytes(raw.received) == b"Requested: no terminator\r\n"


def test_oversized_request_is_rejected(reactor: Reactor, server: RequestServer) -> None:
    """A request over max_request_size closes the connection without a reply and counts as rejected."""
    raw = Raw()
    a, _ = memory_pair(reactor, raw, RequestProtocol(server))
    a.write(b"x" * 100)
    run_until(reactor, lambda: raw.lost)
    assert raw.received == b"" and server.statistics()["rejected"] == 1


def test_invalid_utf8_is_rejected(reactor: Reactor, server: RequestServer) -> None:
    """Bytes that are not UTF-8 close the connection and count as rejected."""
    raw = Raw()
    a, _ = memory_pair(reactor, raw, RequestProtocol(server))
    a.write(b"\xff\xfe\r\n")
    run_until(reactor, lambda: raw.lost)
    assert raw.received == b"" and server.statistics()["rejected"] == 1


def test_reply_future_that_never_resolves_times_out(
    reactor: Reactor, clock: ManualClock, server: RequestServer
) -> None:
    """A Future reply restarts the whole-exchange deadline; when it passes the connection closes."""

    class Never(RequestServer):
        def handle_request(self, request: str) -> Future[str]:
            return self.reactor.create_future()

    with Never("localhost:0", reactor=reactor, timeout=2) as never:
        raw = Raw()
        a, b = memory_pair(reactor, raw, RequestProtocol(never))
        a.write(b"wait\r\n")
        run_until(reactor, lambda: b.deadline is not None)
        clock.advance(2)
        run_until(reactor, lambda: raw.lost)
        assert raw.received == b""


def test_reply_protocol_reports_a_connection_lost_before_the_reply(reactor: Reactor) -> None:
    """A server that resets before replying fails the client's future with that error."""
    future: Future[str] = reactor.create_future()
    client = ReplyProtocol(future, b"q\r\n", 1024, "memory", None)
    _, b = memory_pair(reactor, client, Raw())
    reactor.run_once(0)
    client.connection_lost(ConnectionResetError("reset"))
    with pytest.raises(ConnectionResetError):
        reactor.run_until_complete(future, 1)
    b.abort()
    run_until(reactor, lambda: client.transport.is_closing())


def test_reply_over_the_limit_fails_the_future(reactor: Reactor) -> None:
    """A reply longer than max_reply_size fails the future and aborts the connection."""
    future: Future[str] = reactor.create_future()
    client = ReplyProtocol(future, b"q\r\n", 8, "memory", None)
    raw = Raw()
    _, b = memory_pair(reactor, client, raw)
    b.write(b"y" * 64)
    with pytest.raises(ValueError, match="8"):
        reactor.run_until_complete(future, 1)
    run_until(reactor, lambda: raw.lost)


@pytest.mark.parametrize("ending", ["data", "eof"])
def test_reply_over_the_limit_is_a_request_error(reactor: Reactor, ending: str) -> None:
    """A reply over max_reply_size (in data or at EOF) fails with ReplyTooLarge: a RequestError and a ValueError."""
    future: Future[str] = reactor.create_future()
    client = ReplyProtocol(future, b"q\r\n", 8, "memory", None)
    raw = Raw()
    _, b = memory_pair(reactor, client, raw)
    b.write(b"y" * (64 if ending == "data" else 9))
    if ending == "eof":
        b.close()
    with pytest.raises(RequestError) as info:
        reactor.run_until_complete(future, 1)
    assert isinstance(info.value, ReplyTooLarge) and isinstance(info.value, ValueError)
    assert isinstance(info.value, MessageTooLarge) and info.value.max_size == 8
    assert "max_reply_size=8" in str(info.value) and "memory" in str(info.value)
    run_until(reactor, lambda: raw.lost)
