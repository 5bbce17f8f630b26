"""One error policy for user code: every surface reports through Reactor.set_exception_handler."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from conftest import run_until

from reactor import Protocol, Reactor, RequestFailed, RequestServer
from reactor.easy import UDPServer
from reactor.transport.stream import StreamTransport


def collect(reactor: Reactor) -> list[dict[str, Any]]:
    """Install an exception handler that keeps every context it gets."""
    seen: list[dict[str, Any]] = []
    reactor.set_exception_handler(lambda r, context: seen.append(context))
    return seen


def test_request_handler_failure_reaches_the_exception_handler(reactor: Reactor) -> None:
    """A RequestServer handler that raises is reported to the reactor's handler; the client gets no reply."""

    class Broken(RequestServer):
        def handle_request(self, request: str) -> str:
            raise ValueError("broken handler")

    seen = collect(reactor)
    server = Broken("localhost:0", reactor=reactor)
    fut = reactor.request(server.address, "x", timeout=5)
    with pytest.raises(RequestFailed):
        reactor.run_until_complete(fut, 5)
    (context,) = seen
    assert isinstance(context["exception"], ValueError) and context["server"] is server
    assert "handle_request raised" in context["message"]
    server.close()


def test_datagram_handler_failure_reaches_the_exception_handler(reactor: Reactor) -> None:
    """An easy UDPServer handler that raises is reported to the reactor's handler; the server goes on."""

    def handle(message: Any, address: Any, send: Any) -> None:
        raise KeyError(message)

    seen = collect(reactor)
    with UDPServer(handle, 0, host="127.0.0.1", reactor=reactor) as server:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            raw.sendto(b"boom", server.sockaddr)
            run_until(reactor, lambda: bool(seen))
    assert isinstance(seen[0]["exception"], KeyError) and seen[0]["address"][0] == "127.0.0.1"


def test_protocol_failure_closes_only_its_connection(reactor: Reactor) -> None:
    """A stream protocol that raises is reported and aborted; another connection of the server goes on."""

    class Fragile(Protocol):
        def data_received(self, data: bytes) -> None:
            if data == b"die":
                raise RuntimeError("fragile")
            self.transport.write(data.upper())

    seen = collect(reactor)
    server = reactor.create_server(Fragile, "localhost:0")
    good = socket.create_connection(server.sockaddr)
    bad = socket.create_connection(server.sockaddr)
    good.setblocking(False)
    bad.sendall(b"die")
    run_until(reactor, lambda: bool(seen))
    assert isinstance(seen[0]["exception"], RuntimeError)
    assert isinstance(seen[0]["transport"], StreamTransport)
    good.sendall(b"fine")
    received = bytearray()

    def got_reply() -> bool:
        try:
            received.extend(good.recv(100))
        except BlockingIOError:
            pass
        return bytes(received) == b"FINE"

    run_until(reactor, got_reply)
    assert server.statistics()["errors"] == 1 and server.statistics()["active"] == 1
    good.close()
    bad.close()
    server.close()
    run_until(reactor, lambda: not reactor.connections)
