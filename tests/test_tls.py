"""TLS, written once in the transport layer: every stream surface speaks it, and faults stay per connection.

Certificates are made at test time by ``trustme`` (a CA, a server certificate
for localhost/127.0.0.1/::1, a client certificate); nothing secret is
committed.  Reactors run on a manual clock; a blocking stdlib peer runs in a
thread while the test drives the reactor with bounded turns.
"""

from __future__ import annotations

import _socket
import errno
import functools
import logging
import socket
import socketserver as stdlib_socketserver
import ssl
import struct
import subprocess
import sys
import threading
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import end_process, run_until

from reactor import ManualClock, Reactor, RequestError, RequestServer, RequestTLSError, do_request
from reactor import socketserver as ss
from reactor.streams import Protocol
from reactor.transport import listener as listener_module
from reactor.transport.connect import Connector

trustme = pytest.importorskip("trustme")

BIG_TEXT = "ünïcødé ✓ " * (4 * 1024 * 1024 // 16)  # about 4 MiB of UTF-8


class Certs:
    """A CA and the contexts the tests need."""

    def __init__(self) -> None:
        self.ca = trustme.CA()
        self.server_cert = self.ca.issue_cert("localhost", "127.0.0.1", "::1")
        self.client_cert = self.ca.issue_cert("client@example.org")

    def server(self, require_client_cert: bool = False) -> ssl.SSLContext:
        """A server context with the localhost certificate (optionally requiring a client certificate)."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server_cert.configure_cert(context)
        if require_client_cert:
            context.verify_mode = ssl.CERT_REQUIRED
            self.ca.configure_trust(context)
        return context

    def client(self, trusted: bool = True, with_cert: bool = False) -> ssl.SSLContext:
        """A client context trusting the CA (or not), optionally presenting a client certificate."""
        context = ssl.create_default_context()
        if trusted:
            self.ca.configure_trust(context)
        if with_cert:
            self.client_cert.configure_cert(context)
        return context


@pytest.fixture(scope="module")
def certs() -> Certs:
    """One CA per test module."""
    return Certs()


class Big(RequestServer):
    """Answers ``big`` with about 4 MiB of unicode, anything else upper-cased."""

    def handle_request(self, request: str) -> str:
        return BIG_TEXT if request == "big" else request.upper()


@pytest.fixture
def tls_server(reactor: Reactor, certs: Certs) -> Iterator[RequestServer]:
    """A RequestServer over TLS on the manual-clock reactor."""
    server = Big("localhost:0", reactor=reactor, ssl=certs.server())
    yield server
    server.close()
    for _ in range(3):
        reactor.run_once(0)


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run a blocking peer in a thread; its result or exception lands in the returned dict."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 -- handed to the test
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def statistics_reached(server: Any, want: dict[str, int]) -> bool:
    """True when every counter in ``want`` has that value in ``server.statistics()``."""
    stats = server.statistics()
    return all(stats[name] == value for name, value in want.items())


def client_rows_gone(reactor: Reactor) -> Callable[[], bool]:
    """A predicate: no outgoing connection is left (a closing TLS client waits for the server's EOF)."""
    return lambda: not [row for row in reactor.connections.values() if isinstance(row.owner, Connector)]


def still_answered(reactor: Reactor, server: RequestServer, certs: Certs) -> None:
    """A second client on the same server is answered."""
    fut = reactor.request(server.address, "second", timeout=5, ssl=certs.client())
    run_until(reactor, fut.done, turns=2000)
    assert fut.result() == "SECOND"
    run_until(reactor, client_rows_gone(reactor))


def blocking_tls_exchange(address: tuple[str, int], context: ssl.SSLContext, request: bytes) -> bytes:
    """A stdlib client: ssl-wrapped blocking socket, send the request line, read until close_notify/EOF."""
    with socket.create_connection(address, timeout=10) as raw:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        with context.wrap_socket(raw, server_hostname="localhost") as sock:
            sock.sendall(request)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
            return b"".join(chunks)


# ------------------------------------------------------------------ request/reply, both directions


@pytest.mark.parametrize("text", ["héllo wörld ✓", "big"])
def test_stdlib_tls_client_against_request_server(
    reactor: Reactor, tls_server: RequestServer, certs: Certs, text: str
) -> None:
    """A blocking ssl-wrapped stdlib client gets its reply (unicode; 4 MiB through partial writes)."""
    request = text.encode() + b"\r\n"
    thread, out = in_thread(lambda: blocking_tls_exchange(tls_server.server_address, certs.client(), request))
    run_until(reactor, lambda: not thread.is_alive(), turns=100_000, timeout=0.01)
    assert "error" not in out, out
    expected = BIG_TEXT if text == "big" else text.upper()
    assert out["result"] == expected.encode() + b"\r\n"
    run_until(reactor, lambda: tls_server.statistics()["active"] == 0)
    assert tls_server.statistics()["completed"] == 1


class TLSWrappedServer(stdlib_socketserver.ThreadingTCPServer):
    """The stdlib way to serve TLS: wrap each accepted socket in get_request."""

    daemon_threads = True
    context: ssl.SSLContext

    def get_request(self) -> tuple[Any, Any]:
        sock, address = self.socket.accept()
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address


class BigLine(stdlib_socketserver.StreamRequestHandler):
    """Reads a request line; answers ``big`` with 4 MiB of unicode, anything else upper-cased."""

    def handle(self) -> None:
        line = self.rfile.readline().decode().rstrip("\r\n")
        reply = BIG_TEXT if line == "big" else line.upper()
        self.wfile.write(reply.encode() + b"\r\n")


@pytest.mark.parametrize("text", ["héllo wörld ✓", "big"])
def test_reactor_request_against_stdlib_tls_socketserver(reactor: Reactor, certs: Certs, text: str) -> None:
    """Reactor.request(ssl=...) against an ssl-wrapped stdlib socketserver: unicode, and a 4 MiB reply."""
    server = TLSWrappedServer(("127.0.0.1", 0), BigLine)
    server.context = certs.server()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        fut = reactor.request(f"localhost:{port}", text, timeout=30, ssl=certs.client())
        run_until(reactor, fut.done, turns=100_000, timeout=0.01)
        assert fut.result() == (BIG_TEXT if text == "big" else text.upper())
        run_until(reactor, client_rows_gone(reactor))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_do_request_over_tls(certs: Certs) -> None:
    """The blocking do_request(ssl=...) against a RequestServer over TLS served by a background thread."""
    with Reactor() as reactor:
        server = Big("127.0.0.1:0", reactor=reactor, ssl=certs.server())
        server.start()
        try:
            assert do_request(server.address, "ping ✓", 10, ssl=certs.client()) == "PING ✓"
        finally:
            server.stop()
            server.join(5)
            server.close()


def test_get_extra_info(reactor: Reactor, certs: Certs) -> None:
    """get_extra_info gives ssl_object, peercert and cipher, and passes peername/sockname/socket through."""
    got: list[Any] = []

    class Keep(Protocol):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            got.append(transport)

    server = reactor.create_server(Keep, "localhost:0", ssl=certs.server(require_client_cert=True))
    try:
        fut = reactor.create_connection(Keep, server.address, ssl=certs.client(with_cert=True))
        run_until(reactor, lambda: fut.done() and len(got) == 2)
        client, _ = fut.result()
        server_side = got[1] if got[0] is client else got[0]
        assert isinstance(client.get_extra_info("ssl_object"), ssl.SSLObject)
        assert client.get_extra_info("cipher")[1].startswith("TLS")
        assert ("DNS", "localhost") in client.get_extra_info("peercert")["subjectAltName"]
        assert server_side.get_extra_info("peercert") is not None  # mutual TLS: the client's certificate
        assert client.get_extra_info("peername") == server_side.get_extra_info("sockname")
        assert client.get_extra_info("socket").fileno() >= 0
        assert client.get_extra_info("nothing", 7) == 7
        client.close()
        run_until(reactor, lambda: not server.connections())
    finally:
        server.close()
        for _ in range(3):
            reactor.run_once(0)


# ------------------------------------------------------------------ faults close only their own connection


def handshake_failures(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The INFO lines that report a failed TLS handshake."""
    return [r.getMessage() for r in caplog.records if "TLS handshake" in r.getMessage() and r.levelno == logging.INFO]


def test_silent_client_times_out_at_the_handshake(
    reactor: Reactor, clock: ManualClock, tls_server: RequestServer, certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that connects and never sends a ClientHello is closed after the handshake timeout."""
    caplog.set_level(logging.INFO, logger="reactor")
    with socket.create_connection(tls_server.server_address, timeout=5) as silent:
        run_until(reactor, lambda: tls_server.statistics()["active"] == 1)
        still_answered(reactor, tls_server, certs)
        run_until(reactor, lambda: tls_server.statistics()["active"] == 1)  # the second is done; the silent one stays
        clock.advance(10.5)
        run_until(reactor, lambda: tls_server.statistics()["active"] == 0)
        assert silent.recv(100) == b""
    assert len(handshake_failures(caplog)) == 1
    assert "within 10.0 s" in handshake_failures(caplog)[0]
    still_answered(reactor, tls_server, certs)


def test_plain_tcp_garbage_to_the_tls_port(
    reactor: Reactor, tls_server: RequestServer, certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    """A plain-TCP client sending a request line gets its connection closed; the reason is logged once."""
    caplog.set_level(logging.INFO, logger="reactor")
    with socket.create_connection(tls_server.server_address, timeout=5) as plain:
        plain.sendall(b"hello in clear text\r\n")
        run_until(reactor, lambda: tls_server.statistics()["accepted"] == 1 and tls_server.statistics()["active"] == 0)
        data = plain.recv(100)  # a TLS alert record (type 21), or nothing
        assert data == b"" or data[0] == 21
    failures = handshake_failures(caplog)
    assert len(failures) == 1 and "127.0.0.1" in failures[0]
    still_answered(reactor, tls_server, certs)


@pytest.mark.parametrize("case", ["untrusted", "wrong-name", "no-client-cert"])
def test_bad_certificates_fail_only_that_exchange(
    reactor: Reactor, certs: Certs, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Untrusted certificate, hostname mismatch, missing client certificate: that request fails, others go on."""
    caplog.set_level(logging.INFO, logger="reactor")
    mutual = case == "no-client-cert"
    server = Big("localhost:0", reactor=reactor, ssl=certs.server(require_client_cert=mutual))
    try:
        kwargs: dict[str, Any] = {"ssl": certs.client(trusted=case != "untrusted")}
        if case == "wrong-name":
            kwargs["server_hostname"] = "example.com"
        bad = reactor.request(server.address, "bad", timeout=5, **kwargs)
        run_until(reactor, bad.done)
        exc = bad.exception()
        assert isinstance(exc, ssl.SSLError), exc
        assert isinstance(exc, RequestTLSError) and isinstance(exc, RequestError)
        cause = exc.__cause__
        assert isinstance(cause, ssl.SSLError) and type(exc).__mro__[1] is type(cause) and exc.reason == cause.reason
        if case != "no-client-cert":
            assert isinstance(exc, ssl.SSLCertVerificationError)
            assert ("Hostname mismatch" in str(exc)) == (case == "wrong-name")
        run_until(reactor, lambda: server.statistics()["active"] == 0)
        assert len(handshake_failures(caplog)) >= 1
        good = reactor.request(server.address, "good", timeout=5, ssl=certs.client(with_cert=mutual))
        run_until(reactor, good.done)
        assert good.result() == "GOOD"
        run_until(reactor, client_rows_gone(reactor))
    finally:
        server.close()
        for _ in range(3):
            reactor.run_once(0)


def test_reset_mid_handshake(
    reactor: Reactor, tls_server: RequestServer, certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that sends half a ClientHello and resets closes only its connection, logged once, no traceback."""
    caplog.set_level(logging.INFO, logger="reactor")
    engine = certs.client().wrap_bio(ssl.MemoryBIO(), outgoing := ssl.MemoryBIO(), server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        engine.do_handshake()
    hello = outgoing.read()
    sock = socket.create_connection(tls_server.server_address, timeout=5)
    sock.sendall(hello[: len(hello) // 2])
    run_until(reactor, lambda: tls_server.statistics()["active"] == 1)
    for _ in range(3):
        reactor.run_once(0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # RST
    run_until(reactor, lambda: tls_server.statistics()["active"] == 0)
    assert len(handshake_failures(caplog)) == 1
    assert not [r for r in caplog.records if r.exc_info]
    still_answered(reactor, tls_server, certs)


def test_handshake_timeout_on_the_client(reactor: Reactor, clock: ManualClock, certs: Certs) -> None:
    """A server that accepts and never answers the ClientHello fails create_connection with TimeoutError."""
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        fut = reactor.create_connection(
            Protocol, f"localhost:{listener.getsockname()[1]}", ssl=certs.client(), ssl_handshake_timeout=3
        )
        run_until(reactor, lambda: any(row.bytes_out for row in reactor.connections.values()))  # ClientHello out
        peer, _ = listener.accept()
        clock.advance(3.5)
        run_until(reactor, fut.done)
        assert isinstance(fut.exception(), TimeoutError)
        run_until(reactor, lambda: not reactor.connections)
        peer.close()
    finally:
        listener.close()


def test_unix_address_needs_a_server_hostname(reactor: Reactor, certs: Certs) -> None:
    """A Unix address has no host name: a checking context without server_hostname= is refused at the call."""
    with pytest.raises(ValueError, match="server_hostname"):
        reactor.create_connection(Protocol, "unix:/tmp/nowhere.sock", ssl=certs.client())


# ------------------------------------------------------------------ reactor.socketserver over TLS


class ReactorTLSServer(ss.ThreadingTCPServer):
    """The documented recipe: wrap in get_request, handshake in the handler's thread."""

    context: ssl.SSLContext

    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        # Not on connect: the handshake would block the reactor's thread (and every server on it).
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def handle_error(self, request: Any, client_address: Any) -> None:
        logging.getLogger("reactor.socketserver").info("TLS request from %s failed", client_address)


def test_reactor_socketserver_over_tls(reactor: Reactor, certs: Certs) -> None:
    """reactor.socketserver.ThreadingTCPServer wrapping in get_request serves Reactor.request over TLS."""
    with Reactor() as server_reactor:
        server = ReactorTLSServer(("127.0.0.1", 0), BigLine, reactor=server_reactor)
        server.context = certs.server()
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            address = f"localhost:{server.server_address[1]}"
            for text in ("héllo ✓", "big"):
                fut = reactor.request(address, text, timeout=30, ssl=certs.client())
                run_until(reactor, fut.done, turns=100_000, timeout=0.01)
                assert fut.result() == (BIG_TEXT if text == "big" else text.upper())
                run_until(reactor, client_rows_gone(reactor))
            with socket.create_connection(server.server_address, timeout=5):  # silent: its handler waits
                fut = reactor.request(address, "while another is silent", timeout=30, ssl=certs.client())
                run_until(reactor, fut.done, turns=100_000, timeout=0.01)
                assert fut.result() == "WHILE ANOTHER IS SILENT"
            run_until(reactor, client_rows_gone(reactor))
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)


# ------------------------------------------------------------------ the command line


def test_cli_serve_and_request_over_tls(certs: Certs, tmp_path: Any) -> None:
    """`python -m reactor serve --certfile --keyfile` answers `python -m reactor request --cafile`."""
    certfile, keyfile, cafile = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    certs.server_cert.cert_chain_pems[0].write_to_path(str(certfile))
    certs.server_cert.private_key_pem.write_to_path(str(keyfile))
    certs.ca.cert_pem.write_to_path(str(cafile))
    cmd = [sys.executable, "-m", "reactor", "serve", "localhost:0"]
    cmd += ["--certfile", str(certfile), "--keyfile", str(keyfile)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "over TLS" in line
        address = line.split()[-1].replace("127.0.0.1", "localhost")
        base = [sys.executable, "-m", "reactor", "request", address]
        ok = subprocess.run([*base, "hé", "--cafile", str(cafile)], capture_output=True, text=True, timeout=20)
        assert (ok.returncode, ok.stdout) == (0, "Requested: hé\n")
        untrusted = subprocess.run([*base, "hi", "--tls"], capture_output=True, text=True, timeout=20)
        assert untrusted.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr
    finally:
        end_process(proc)


# ------------------------------------------------------------------ handshakes in the statistics


def test_silent_tls_clients_are_counted_as_timeouts(
    reactor: Reactor, clock: ManualClock, tls_server: RequestServer
) -> None:
    """Clients that open a TLS connection and stay silent are closed at the handshake deadline and counted."""
    silent = [socket.create_connection(tls_server.server_address, timeout=5) for _ in range(3)]
    try:
        run_until(reactor, lambda: tls_server.statistics()["active"] == 3)
        clock.advance(10.5)
        run_until(reactor, lambda: tls_server.statistics()["active"] == 0)
        stats = tls_server.statistics()
        assert (stats["timeouts"], stats["rejected"], stats["errors"], stats["completed"]) == (3, 0, 0, 0)
    finally:
        for sock in silent:
            sock.close()


def test_failed_handshakes_are_counted_as_rejected(reactor: Reactor, tls_server: RequestServer, certs: Certs) -> None:
    """Clear text and half a ClientHello are rejected; a connect-and-close health check is not counted."""
    engine = certs.client().wrap_bio(ssl.MemoryBIO(), outgoing := ssl.MemoryBIO(), server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        engine.do_handshake()
    hello = outgoing.read()
    for payload in (b"", b"hello in clear text\r\n", hello[: len(hello) // 2]):
        with socket.create_connection(tls_server.server_address, timeout=5) as sock:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            accepted = tls_server.statistics()["accepted"]
            served = {"accepted": accepted + 1, "active": 0}
            run_until(reactor, functools.partial(statistics_reached, tls_server, served))
    stats = tls_server.statistics()
    assert (stats["rejected"], stats["timeouts"], stats["errors"]) == (2, 0, 0)
    still_answered(reactor, tls_server, certs)
    assert tls_server.statistics()["completed"] == 1


def test_refused_client_certificate_is_counted_as_rejected(reactor: Reactor, certs: Certs) -> None:
    """A server that requires a client certificate counts a client without one as rejected."""
    server = Big("localhost:0", reactor=reactor, ssl=certs.server(require_client_cert=True))
    try:
        bad = reactor.request(server.address, "bad", timeout=5, ssl=certs.client())
        run_until(reactor, lambda: bad.done() and server.statistics()["active"] == 0)
        run_until(reactor, client_rows_gone(reactor))
        assert isinstance(bad.exception(), ssl.SSLError)
        assert server.statistics()["rejected"] == 1 and server.statistics()["completed"] == 0
    finally:
        server.close()
        for _ in range(3):
            reactor.run_once(0)


# ------------------------------------------------------------------ a successful exchange is never an error


class ShutdownFails(_socket.socket):
    """An accepted socket whose shutdown() fails as after the client's reset (ENOTCONN)."""

    def shutdown(self, how: int) -> None:
        raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")


def test_failed_shutdown_after_the_reply_is_not_an_error(
    reactor: Reactor, tls_server: RequestServer, certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOTCONN from the server's shutdown after its reply and close_notify: completed, not errors."""
    monkeypatch.setattr(listener_module, "_socket", types.SimpleNamespace(socket=ShutdownFails))
    fut = reactor.request(tls_server.address, "ping", timeout=5, ssl=certs.client())
    run_until(reactor, lambda: fut.done() and tls_server.statistics()["active"] == 0)
    run_until(reactor, client_rows_gone(reactor))
    assert fut.result() == "PING"
    stats = tls_server.statistics()
    assert (stats["completed"], stats["errors"]) == (1, 0)


def test_blocking_tls_requests_all_complete(certs: Certs) -> None:
    """do_request over TLS against a server in a thread: every exchange completes, none is an error."""
    exchanges = 40
    with Reactor() as reactor:
        server = Big("127.0.0.1:0", reactor=reactor, ssl=certs.server())
        server.start()
        try:
            for i in range(exchanges):
                assert do_request(server.address, f"ping {i}", 10, ssl=certs.client()) == f"PING {i}"
        finally:
            server.stop()
            server.join(5)
            server.close()
        stats = server.statistics()
    assert (stats["completed"], stats["errors"], stats["accepted"]) == (exchanges, 0, exchanges)


# ------------------------------------------------------------------ the TLS states are rows' states


def test_a_connection_mid_handshake_shows_as_handshaking(
    reactor: Reactor, clock: ManualClock, tls_server: RequestServer, certs: Certs
) -> None:
    """A TLS connection that has not finished its handshake is HANDSHAKING in the table and the statistics."""
    with socket.create_connection(tls_server.server_address, timeout=5):
        run_until(reactor, lambda: tls_server.statistics()["active"] == 1)
        (row,) = tls_server.connections()
        assert row.state == "HANDSHAKING" and row.as_dict()["state"] == "HANDSHAKING"
        stats = reactor.statistics()
        assert stats["connections_handshaking"] == 1 and "connections_open" not in stats
        still_answered(reactor, tls_server, certs)
        assert row.state == "HANDSHAKING"
        clock.advance(10.5)
        run_until(reactor, lambda: tls_server.statistics()["active"] == 0)
    assert row.state == "CLOSED"


def test_a_closing_tls_connection_shows_as_shutting_down(reactor: Reactor, certs: Certs) -> None:
    """After the handshake the row is OPEN; close() makes it SHUTTING_DOWN until the peer's close_notify."""
    made: list[Any] = []

    class Keep(Protocol):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            made.append(transport)

    server = reactor.create_server(Keep, "localhost:0", ssl=certs.server())
    try:
        fut = reactor.create_connection(Keep, server.address, ssl=certs.client())
        run_until(reactor, lambda: fut.done() and len(made) == 2)
        client, _ = fut.result()
        (row,) = [r for r in reactor.connections.values() if isinstance(r.owner, Connector)]
        assert row.state == "OPEN" and client.state == "OPEN"
        client.close()
        assert row.state == "SHUTTING_DOWN"
        assert reactor.statistics()["connections_shutting_down"] == 1
        run_until(reactor, lambda: not reactor.connections)
        assert row.state == "CLOSED"
    finally:
        server.close()
        for _ in range(3):
            reactor.run_once(0)
