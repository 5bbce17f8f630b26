"""One convention per thing in the public API: addresses, statistics (timeouts and spellings below)."""

from __future__ import annotations

import json
import socket

import pytest
from conftest import run_until

from reactor import Protocol, Reactor, RequestServer
from reactor.addresses import parse_address
from reactor.easy import UDPClient, UDPServer

# ------------------------------------------------------------ address / sockaddr


def test_every_server_has_a_string_address_and_a_tuple_sockaddr(reactor: Reactor) -> None:
    """RequestServer, the stream Server, UDPServer and UDPClient: `address` is text, `sockaddr` the tuple it names."""
    request_server = RequestServer("localhost:0", reactor=reactor)
    stream_server = reactor.create_server(Protocol, "localhost:0")
    udp_server = UDPServer(lambda message, address, send: None, 0, reactor=reactor)
    udp_client = UDPClient(lambda message, address: None, reactor=reactor)
    try:
        for server in (request_server, stream_server, udp_server, udp_client):
            assert isinstance(server.address, str), server
            assert isinstance(server.sockaddr, tuple) and server.sockaddr[0] == "127.0.0.1", server
            assert server.address == f"127.0.0.1:{server.sockaddr[1]}" and server.sockaddr[1] > 0
            assert parse_address(server.address).sockaddr == server.sockaddr
        assert request_server.server_address == request_server.sockaddr  # the socketserver name stays
        assert udp_server.port == udp_server.sockaddr[1]
    finally:
        for closable in (request_server, stream_server, udp_server, udp_client):
            closable.close()


def test_udp_send_takes_the_address_string_or_the_tuple(reactor: Reactor) -> None:
    """`send(message, other.address)` and `send(message, other.sockaddr)` both arrive."""
    got: list[tuple[str, object]] = []
    server = UDPServer(lambda message, address, send: got.append((message, address)), 0, reactor=reactor)
    client = UDPClient(lambda message, address: None, reactor=reactor)
    try:
        client.send("by text", server.address)
        client.send("by tuple", server.sockaddr)
        client.send("by name", f"localhost:{server.port}")
        run_until(reactor, lambda: len(got) == 3)
        assert got == [("by text", client.sockaddr), ("by tuple", client.sockaddr), ("by name", client.sockaddr)]
        with pytest.raises(ValueError, match="Unix socket"):
            client.send("x", "unix:/tmp/nowhere")
        with pytest.raises(ValueError, match="port"):
            client.send("x", "127.0.0.1")
    finally:
        client.close()
        server.close()


# ------------------------------------------------------------ statistics()


def test_every_statistics_is_a_plain_dict(reactor: Reactor) -> None:
    """Reactor, RequestServer, Server and the UDP endpoints all return a JSON-ready dict from statistics()."""
    request_server = RequestServer("localhost:0", reactor=reactor)
    stream_server = reactor.create_server(Protocol, "localhost:0")
    udp_server = UDPServer(lambda message, address, send: None, 0, reactor=reactor)
    udp_client = UDPClient(lambda message, address: None, reactor=reactor)
    try:
        server_keys = {"accepted", "active", "completed", "errors", "timeouts", "rejected", "accept_pauses",
                       "waited", "exhaustions", "refused"}
        udp_keys = {"received", "handled", "sent", "dropped_decode", "truncated", "dropped_busy", "send_dropped",
                    "errors", "kernel_drops", "send_queue"}
        for owner, keys in ((reactor, {"turns", "callbacks", "timers", "fds", "connections"}),
                            (request_server, server_keys), (stream_server, server_keys),
                            (udp_server, udp_keys), (udp_client, udp_keys)):
            stats = owner.statistics()
            assert type(stats) is dict, owner
            assert keys <= set(stats), (owner, keys - set(stats))
            assert json.loads(json.dumps(stats)) == stats
        assert set(request_server.statistics()) == server_keys == set(stream_server.statistics())
        assert set(udp_server.statistics()) == udp_keys
    finally:
        for closable in (request_server, stream_server, udp_server, udp_client):
            closable.close()


def test_statistics_is_a_snapshot(reactor: Reactor) -> None:
    """A statistics() dict does not change afterwards; a new call sees the new counts."""
    server = reactor.create_server(Protocol, "localhost:0")
    try:
        before = server.statistics()
        with socket.create_connection(server.sockaddr):
            run_until(reactor, lambda: server.statistics()["accepted"] == 1)
        assert before["accepted"] == 0
    finally:
        server.close()


def test_the_live_stats_object_is_deprecated(reactor: Reactor) -> None:
    """`.stats` on the stream Server and on RequestServer warns and points to statistics()."""
    request_server = RequestServer("localhost:0", reactor=reactor)
    stream_server = reactor.create_server(Protocol, "localhost:0")
    try:
        for server in (request_server, stream_server):
            with pytest.warns(DeprecationWarning, match=r"statistics\(\)"):
                assert server.stats.accepted == server.statistics()["accepted"]
    finally:
        request_server.close()
        stream_server.close()
