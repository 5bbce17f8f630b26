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


# ------------------------------------------------------------ timeout


NOT_TIMEOUTS = [float("nan"), -1, 0, -0.5]


@pytest.mark.parametrize("bad", NOT_TIMEOUTS)
def test_create_connection_and_server_timeouts_are_positive_or_none(reactor: Reactor, bad: float) -> None:
    """create_connection(timeout=...) and create_server's deadlines: nan, 0 and negatives raise ValueError."""
    with pytest.raises(ValueError, match="timeout"):
        reactor.create_connection(Protocol, "localhost:9", timeout=bad)
    for option in ("timeout", "idle_timeout"):
        with pytest.raises(ValueError, match="timeout"):
            reactor.create_server(Protocol, "localhost:0", **{option: bad})
    assert not reactor.connections


@pytest.mark.parametrize("bad", [float("nan"), 0, -3])
def test_request_server_timeout_is_positive(reactor: Reactor, bad: float) -> None:
    """RequestServer(timeout=...) is a number of seconds larger than 0: nan, 0 and negatives raise."""
    with pytest.raises(ValueError, match="timeout"):
        RequestServer("localhost:0", reactor=reactor, timeout=bad)


def test_yoton_request_calls_treat_zero_and_negative_as_no_timeout(reactor: Reactor) -> None:
    """Reactor.request keeps yoton's reading (do_request shares it): 0 and -1 wait as long as it takes."""
    from reactor.client import _seconds

    server = RequestServer("localhost:0", reactor=reactor)
    try:
        for timeout in (0, -1, None):
            assert reactor.run_until_complete(reactor.request(server.address, "t", timeout), timeout=10) == (
                "Requested: t"
            )
    finally:
        server.close()
    assert [_seconds(t) for t in (0, -1, None, 0.25)] == [None, None, None, 0.25]


@pytest.mark.parametrize("call", ["request", "do_request"])
def test_nan_timeout_is_an_error_for_the_yoton_calls_too(reactor: Reactor, call: str) -> None:
    """Reactor.request and do_request raise ValueError for a nan timeout, before connecting."""
    from reactor import do_request

    with pytest.raises(ValueError, match="nan"):
        if call == "request":
            reactor.request("localhost:9", "x", float("nan"))
        else:
            do_request("localhost:9", "x", float("nan"))
    assert not reactor.connections


def test_a_timeout_that_is_not_a_number_is_a_type_error(reactor: Reactor) -> None:
    """A string or a bool as a request timeout is a TypeError, not 'no timeout'."""
    with pytest.raises(TypeError, match="timeout"):
        reactor.request("localhost:9", "x", "5")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="timeout"):
        reactor.request("localhost:9", "x", True)


def test_run_until_complete_refuses_a_nan_timeout(reactor: Reactor) -> None:
    """run_until_complete(timeout=nan) raises instead of running for ever or not at all."""
    future = reactor.create_future()
    with pytest.raises(ValueError, match="nan"):
        reactor.run_until_complete(future, timeout=float("nan"))


@pytest.mark.parametrize("text", ["nan", "-5", "-0.1", "soon"])
def test_cli_timeout_must_be_a_number_not_negative(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`reactor request ADDRESS TEXT --timeout nan|-5|soon` is a usage error (exit 2), not 'no timeout'."""
    from reactor import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["request", "localhost:9", "hi", "--timeout", text])
    assert exit_info.value.code == 2
    assert "--timeout" in capsys.readouterr().err


# ------------------------------------------------------------ one spelling: the Reactor methods


def test_module_functions_are_deprecated_for_the_methods(reactor: Reactor) -> None:
    """streams.create_server/create_connection(reactor, ...) warn and still work; the methods do not warn."""
    import warnings

    import reactor as package
    from reactor import streams

    assert package.create_server is streams.create_server and package.create_connection is streams.create_connection
    with pytest.warns(DeprecationWarning, match=r"reactor\.create_server\(\.\.\.\)"):
        server = streams.create_server(reactor, Protocol, "localhost:0")
    try:
        with pytest.warns(DeprecationWarning, match=r"reactor\.create_connection\(\.\.\.\)"):
            connecting = streams.create_connection(reactor, Protocol, server.address)
        transport, _ = reactor.run_until_complete(connecting, timeout=5)
        transport.abort()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            again = reactor.create_server(Protocol, "localhost:0")
            again.close()
    finally:
        server.close()
    reactor.run_once(0)


def test_the_methods_spell_out_the_options_with_the_functions_defaults() -> None:
    """Reactor.create_server/create_connection/request take exactly the functions' options, with their defaults."""
    import inspect

    from reactor import client, streams

    for method, function in ((Reactor.create_server, streams._create_server),
                             (Reactor.create_connection, streams._create_connection),
                             (Reactor.request, client.request)):
        mine = {name: (p.kind, p.default) for name, p in inspect.signature(method).parameters.items()
                if name != "self"}
        theirs = {name: (p.kind, p.default) for name, p in inspect.signature(function).parameters.items()
                  if name != "reactor"}
        assert mine == theirs, method.__name__
        assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(method).parameters.values())


def test_the_stream_coroutines_spell_out_the_methods_options_with_their_defaults() -> None:
    """start_server/open_connection take exactly create_server's/create_connection's options (and ``limit``)."""
    import inspect

    from reactor import streams_async

    for function, method, own in ((streams_async.start_server, Reactor.create_server, "client_connected_cb"),
                                  (streams_async.open_connection, Reactor.create_connection, None)):
        mine = {name: (p.kind, p.default, p.annotation) for name, p in inspect.signature(function).parameters.items()
                if name not in ("limit", own)}
        theirs = {name: (p.kind, p.default, p.annotation) for name, p in inspect.signature(method).parameters.items()
                  if name not in ("self", "protocol_factory")}
        assert mine == theirs, function.__name__
        assert inspect.signature(function).parameters["limit"].default == streams_async.DEFAULT_LIMIT


def test_addresses_may_be_host_port_tuples(reactor: Reactor) -> None:
    """create_server, create_connection, request and RequestServer take ('127.0.0.1', port) as asyncio does."""
    server = reactor.create_server(Protocol, ("127.0.0.1", 0))
    answering = RequestServer(("localhost", 0), reactor=reactor)
    try:
        assert server.address.startswith("127.0.0.1:")
        transport, _ = reactor.run_until_complete(
            reactor.create_connection(Protocol, ("127.0.0.1", server.sockaddr[1]), timeout=5), timeout=5)
        transport.abort()
        reply = reactor.run_until_complete(reactor.request(answering.sockaddr, "tuple", 5), timeout=5)
        assert reply == "Requested: tuple"
    finally:
        server.close()
        answering.close()
    reactor.run_once(0)


@pytest.mark.parametrize(("bad", "error"), [
    (("", 80), ValueError), (("localhost", 70000), ValueError), (("localhost", "80"), TypeError),
    (("localhost",), TypeError), (["localhost", 80], TypeError), (("localhost", True), TypeError),
])
def test_bad_address_tuples_raise_clearly(bad: object, error: type[Exception]) -> None:
    """A tuple with an empty host, a port out of range or of the wrong type raises at once."""
    from reactor.addresses import address_text

    with pytest.raises(error, match="address"):
        address_text(bad)  # type: ignore[arg-type]


def test_address_text_spells_tuples_the_package_way() -> None:
    """(host, port) -> 'host:port'; IPv6 hosts and 4-tuples get brackets; strings pass through."""
    from reactor.addresses import address_text

    assert address_text(("127.0.0.1", 80)) == "127.0.0.1:80"
    assert address_text(("::1", 80)) == "[::1]:80" == address_text(("::1", 80, 0, 0))
    assert address_text("unix:/tmp/x") == "unix:/tmp/x"
    assert parse_address(address_text(("localhost", 0))).sockaddr == ("127.0.0.1", 0)
