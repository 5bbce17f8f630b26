"""The PROXY protocol layer at the transport seam: trusted peers only, the client's address above it."""

from __future__ import annotations

import logging
import socket
import ssl
from typing import Any

import pytest
from conftest import run_until
from test_proxyproto import encode_v1, encode_v2

from reactor import ManualClock, Reactor, RequestServer
from reactor.streams import Protocol
from reactor.transport.proxy import ProxiedTransport, TrustedProxies, proxy_protocol_factory

CLIENT = ("203.0.113.7", 51000)
FRONT = ("198.51.100.1", 443)


class Echo(Protocol):
    """Records what it sees and echoes each chunk; closes after the peer's EOF."""

    made: list[Echo] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.data = b""
        self.peer = transport.get_extra_info("peername")
        self.header = transport.get_extra_info("proxy")
        Echo.made.append(self)

    def data_received(self, data: bytes) -> None:
        self.data += data
        self.transport.write(data)


@pytest.fixture(autouse=True)
def _forget() -> None:
    Echo.made = []


def exchange(reactor: Reactor, address: str, chunks: list[bytes], *, turns: int = 200) -> bytes:
    """Send ``chunks`` (driving the reactor between them), half-close, and read until EOF; bounded."""
    host, _, port = address.rpartition(":")
    client = socket.create_connection((host, int(port)), timeout=5)
    client.settimeout(None)  # blocking: MSG_DONTWAIT reads then never poll
    received = bytearray()
    done = False

    def read() -> bool:
        nonlocal done
        try:
            while data := client.recv(65536, socket.MSG_DONTWAIT):
                received.extend(data)
            done = True
        except BlockingIOError:
            pass
        except (ConnectionResetError, BrokenPipeError):
            done = True
        return done

    try:
        try:
            for chunk in chunks:
                client.sendall(chunk)
                reactor.run_once(0)
            client.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server closed first (a refused peer): read what is left
        run_until(reactor, read, turns=turns)
    finally:
        client.close()
    return bytes(received)


def test_v1_header_gives_the_client_address(real_reactor: Reactor) -> None:
    """The protocol sees the header's client as peername, and only the bytes after the header."""
    server = real_reactor.create_server(Echo, "127.0.0.1:0", proxy_protocol=True)
    try:
        header = encode_v1(socket.AF_INET, CLIENT, FRONT)
        assert exchange(real_reactor, server.address, [header + b"hello"]) == b"hello"
        (echo,) = Echo.made
        assert echo.peer == CLIENT
        assert echo.data == b"hello"
        assert echo.header.version == 1
        assert echo.transport.get_extra_info("sockname") == FRONT
        assert echo.transport.get_extra_info("proxy_peername")[0] == "127.0.0.1"
        assert isinstance(echo.transport, ProxiedTransport) and echo.transport.peer == CLIENT
    finally:
        server.close()


def test_v2_header_byte_by_byte(real_reactor: Reactor) -> None:
    """A v2 header that arrives one byte per read is the same header; then data flows both ways."""
    server = real_reactor.create_server(Echo, "127.0.0.1:0", proxy_protocol=True)
    try:
        client6 = ("2001:db8::7", 4242, 0, 0)
        header = encode_v2(socket.AF_INET6, client6, ("2001:db8::1", 80, 0, 0))
        chunks = [header[i : i + 1] for i in range(len(header))] + [b"abc", b"def"]
        assert exchange(real_reactor, server.address, chunks) == b"abcdef"
        assert Echo.made[0].peer == client6
    finally:
        server.close()


def test_local_header_keeps_the_real_address(real_reactor: Reactor) -> None:
    """A LOCAL header (a balancer's health check) leaves the connection's own addresses."""
    server = real_reactor.create_server(Echo, "127.0.0.1:0", proxy_protocol=True)
    try:
        local = encode_v2(socket.AF_UNSPEC, command="LOCAL", protocol=0)
        assert exchange(real_reactor, server.address, [local + b"x"]) == b"x"
        (echo,) = Echo.made
        assert echo.peer[0] == "127.0.0.1" and echo.header.command == "LOCAL"
    finally:
        server.close()


def test_untrusted_peer_is_refused(real_reactor: Reactor, caplog: pytest.LogCaptureFixture) -> None:
    """A peer that is not a trusted proxy is closed before any application code runs."""
    server = real_reactor.create_server(Echo, "127.0.0.1:0", proxy_protocol=True, trusted_proxies=["10.0.0.0/8"])
    try:
        with caplog.at_level(logging.INFO, logger="reactor.transport"):
            header = encode_v1(socket.AF_INET, CLIENT, FRONT)
            assert exchange(real_reactor, server.address, [header + b"hello"]) == b""
        assert Echo.made == []
        assert server.statistics()["rejected"] == 1
        assert "not a trusted proxy" in caplog.text
    finally:
        server.close()


def test_untrusted_peer_may_pass_through(real_reactor: Reactor) -> None:
    """With untrusted='pass' an untrusted peer is served as it is: its own address, its bytes untouched."""
    factory = proxy_protocol_factory(Echo, ["10.0.0.0/8"], untrusted="pass")
    server = real_reactor.create_server(factory, "127.0.0.1:0")
    try:
        header = encode_v1(socket.AF_INET, CLIENT, FRONT)
        assert exchange(real_reactor, server.address, [header + b"hi"]) == header + b"hi"
        (echo,) = Echo.made
        assert echo.peer[0] == "127.0.0.1" and echo.header is None
    finally:
        server.close()


@pytest.mark.parametrize("data", [b"GET / HTTP/1.0\r\n\r\n", b"PROXY TCP4 1.2.3.4 nope 1 2\r\n", b"PROXY TCP4"])
def test_malformed_or_incomplete_header_closes(real_reactor: Reactor, data: bytes) -> None:
    """Garbage, a bad header, or an EOF inside the header closes the connection and counts as rejected."""
    server = real_reactor.create_server(Echo, "127.0.0.1:0", proxy_protocol=True)
    try:
        assert exchange(real_reactor, server.address, [data]) == b""
        assert Echo.made == []
        run_until(real_reactor, lambda: server.statistics()["active"] == 0)
        assert server.statistics()["rejected"] == 1
    finally:
        server.close()


def test_header_timeout(reactor: Reactor, clock: ManualClock) -> None:
    """A trusted peer that does not finish its header within the timeout is closed."""
    factory = proxy_protocol_factory(Echo, ["127.0.0.1"], header_timeout=5)
    server = reactor.create_server(factory, "127.0.0.1:0")
    client = socket.create_connection(("127.0.0.1", int(server.address.rpartition(":")[2])), timeout=5)
    try:
        client.sendall(b"PROXY TCP4 ")
        run_until(reactor, lambda: server.statistics()["accepted"] == 1)
        clock.advance(4.9)
        reactor.run_once(0)
        assert server.statistics()["active"] == 1
        clock.advance(0.2)
        run_until(reactor, lambda: server.statistics()["active"] == 0)
        assert server.statistics()["rejected"] == 1 and Echo.made == []
    finally:
        client.close()
        server.close()


def test_trusted_proxies() -> None:
    """Addresses, networks, IPv4-mapped peers and 'unix'; bad or empty lists are refused at once."""
    trusted = TrustedProxies(["127.0.0.1", "10.0.0.0/8", "fd00::/8"])
    assert trusted.is_trusted(("127.0.0.1", 1))
    assert trusted.is_trusted(("10.9.8.7", 1))
    assert trusted.is_trusted(("::ffff:10.1.2.3", 1, 0, 0))
    assert trusted.is_trusted(("fd12::1", 1, 0, 0))
    assert not trusted.is_trusted(("127.0.0.2", 1))
    assert not trusted.is_trusted("/run/lb.sock")
    assert TrustedProxies("unix").is_trusted("")
    with pytest.raises(ValueError, match="not an IP address"):
        TrustedProxies(["localhost"])
    with pytest.raises(ValueError, match="empty"):
        TrustedProxies([])
    with pytest.raises(ValueError, match="refuse"):
        proxy_protocol_factory(Echo, ["::1"], untrusted="maybe")


class Peer(RequestServer):
    """Answers with the client address it sees."""

    def handle_request(self, request: str) -> str:
        return f"{request} from {self.current_peer}"


@pytest.mark.parametrize("async_", [False, True])
def test_request_server_handler_sees_the_client(real_reactor: Reactor, async_: bool) -> None:
    """With proxy_protocol=True, handle_request reads the header's client as current_peer."""
    server = Peer("127.0.0.1:0", reactor=real_reactor, proxy_protocol=True, async_=async_)
    try:
        header = encode_v1(socket.AF_INET, CLIENT, FRONT)
        reply = exchange(real_reactor, server.address, [header + b"ping"], turns=500)
        assert reply == f"ping from {CLIENT}\r\n".encode()
        assert server.current_peer is None
        run_until(real_reactor, lambda: server.statistics()["completed"] == 1)
    finally:
        server.close()


def test_request_server_plain_path_is_untouched(real_reactor: Reactor) -> None:
    """Without proxy_protocol the server keeps no per-request peer: the methods are the class's own."""
    server = Peer("127.0.0.1:0", reactor=real_reactor)
    try:
        assert "_dispatch" not in vars(server) and "_run_in_worker" not in vars(server)
        assert exchange(real_reactor, server.address, [b"ping"]) == b"ping from None\r\n"
    finally:
        server.close()


def test_proxy_under_tls(real_reactor: Reactor) -> None:
    """Under TLS the header comes first, in clear; the TLS layer and the handler see the client."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    server = Peer("127.0.0.1:0", reactor=real_reactor, proxy_protocol=True, ssl=context)
    try:
        raw = socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=5)
        raw.sendall(encode_v2(socket.AF_INET, CLIENT, FRONT))
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = client_context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
        raw.setblocking(False)
        reply = bytearray()

        def pump() -> bool:
            try:
                tls.do_handshake()
                if not reply:
                    tls.write(b"ping\r\n")
                reply.extend(tls.read(4096))
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                pass
            if outgoing.pending:
                raw.sendall(outgoing.read())
            try:
                data = raw.recv(65536)
                if data:
                    incoming.write(data)
            except BlockingIOError:
                pass
            return reply.endswith(b"\r\n")

        try:
            run_until(real_reactor, pump, turns=500)
        finally:
            raw.close()
        assert bytes(reply) == f"ping from {CLIENT}\r\n".encode()
    finally:
        server.close()


def test_cli_serve_proxy_protocol() -> None:
    """``serve --proxy-protocol --trusted-proxy`` answers a header-prefixed request and refuses a bare one."""
    import signal
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, "-m", "reactor", "serve", "127.0.0.1:0", "--proxy-protocol", "--trusted-proxy", "127.0.0.0/8"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # "serving RequestServer on 127.0.0.1:PORT"
        port = int(line.rsplit(":", 1)[1])

        def ask(data: bytes) -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
                client.sendall(data)
                client.shutdown(socket.SHUT_WR)
                received = b""
                try:
                    while chunk := client.recv(4096):
                        received += chunk
                except ConnectionResetError:
                    pass  # a refused connection may end with a reset
                return received

        assert ask(encode_v1(socket.AF_INET, CLIENT, FRONT) + b"hi") == b"Requested: hi\r\n"
        assert ask(b"hi") == b""
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


def test_cli_trusted_proxy_needs_proxy_protocol() -> None:
    """``--trusted-proxy`` alone, or a bad entry, is a usage error with a message."""
    from reactor.cli import main

    with pytest.raises(SystemExit, match="needs --proxy-protocol"):
        main(["serve", "127.0.0.1:0", "--trusted-proxy", "10.0.0.1"])
    with pytest.raises(SystemExit, match="not an IP address"):
        main(["serve", "127.0.0.1:0", "--proxy-protocol", "--trusted-proxy", "lb.example"])
