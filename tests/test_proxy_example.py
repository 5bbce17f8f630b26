"""examples/proxy.py: a one-thread TCP proxy with end-to-end backpressure and half-close pass-through.

Everything runs on one reactor over loopback sockets; slow peers are plain
non-blocking sockets that the test reads or writes a little per turn, so no
test sleeps.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pathlib
import random
import socket
import struct
import subprocess
import sys
from types import ModuleType
from typing import Any

from conftest import run_until

from reactor import Protocol, Reactor
from reactor.streams import StreamTransport

LOOPBACK = "127.0.0.1"
EXAMPLE = pathlib.Path(__file__).resolve().parent.parent / "examples" / "proxy.py"
BLOCK = random.Random(7).randbytes(1 << 20)  # 1 MiB of incompressible, reproducible bytes
#: What the proxy may hold at any moment in these tests: per direction the high
#: water mark plus one read (64 KiB + 64 KiB by default), with room to spare.
BOUND = 256 * 1024


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("proxy_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


proxy_example = _load()


def _env() -> dict[str, str]:
    root = str(EXAMPLE.parent.parent)
    return {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _proxy_rows(reactor: Reactor) -> list[StreamTransport]:
    """The proxy's transports (both sides of every pair), from the connection table."""
    sides = (proxy_example.ClientSide, proxy_example.UpstreamSide)
    return [row for row in reactor.connections.values() if isinstance(getattr(row, "protocol", None), sides)]


def _proxy_buffered(reactor: Reactor) -> int:
    return sum(row.get_write_buffer_size() for row in _proxy_rows(reactor))


def _client(address: Any, rcvbuf: int | None = None, sndbuf: int | None = None) -> socket.socket:
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if sndbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    sock.connect(address)
    sock.setblocking(False)
    return sock


class Reader:
    """A client that reads at most ``per_read`` bytes when asked; hashes what it got."""

    def __init__(self, sock: socket.socket, per_read: int = 1 << 20) -> None:
        self.sock = sock
        self.per_read = per_read
        self.count = 0
        self.digest = hashlib.sha256()
        self.data = bytearray()
        self.eof = False

    def read(self, keep: bool = False) -> bool:
        """One ``recv``; True once EOF was seen."""
        if not self.eof:
            try:
                data = self.sock.recv(self.per_read)
            except BlockingIOError:
                return False
            if not data:
                self.eof = True
            self.count += len(data)
            self.digest.update(data)
            if keep:
                self.data += data
        return self.eof


class Firehose(Protocol):
    """An upstream that sends ``total`` bytes as fast as it may, honouring pause_writing, then closes."""

    def __init__(self, hoses: list[Firehose], total: int) -> None:
        hoses.append(self)
        self.total = total
        self.sent = 0
        self.paused = False
        self.pauses = 0

    def connection_made(self, transport: StreamTransport) -> None:
        self.transport = transport
        self.pump()

    def pump(self) -> None:
        view = memoryview(BLOCK)
        while self.sent < self.total and not self.paused:
            offset = self.sent % len(BLOCK)
            n = min(64 * 1024, self.total - self.sent, len(BLOCK) - offset)
            self.sent += n
            self.transport.write(view[offset : offset + n])
        if self.sent == self.total:
            self.transport.close()

    def pause_writing(self) -> None:
        self.paused = True
        self.pauses += 1

    def resume_writing(self) -> None:
        self.paused = False
        self.pump()


class Sink(Protocol):
    """An upstream that reads only when the test says so; hashes what it got; replies with the count at EOF."""

    def __init__(self, sinks: list[Sink]) -> None:
        sinks.append(self)
        self.count = 0
        self.digest = hashlib.sha256()
        self.eof = False

    def connection_made(self, transport: StreamTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.count += len(data)
        self.digest.update(data)

    def eof_received(self) -> bool:
        self.eof = True
        self.transport.write(b"got %d bytes" % self.count)
        self.transport.close()
        return True


def _expected_digest(total: int) -> str:
    digest = hashlib.sha256()
    for start in range(0, total, len(BLOCK)):
        digest.update(BLOCK[: min(len(BLOCK), total - start)])
    return digest.hexdigest()


def _finish(reactor: Reactor, *closables: Any) -> None:
    for closable in closables:
        closable.close()
    run_until(reactor, lambda: not reactor.connections)
    for _ in range(2):
        reactor.run_once(0)  # deliver the last connection_lost calls


def test_yoton_requests_round_trip_through_the_proxy(reactor: Reactor) -> None:
    """reactor.request through the proxy: the request, the client's half-close, the reply, a 300 KB one too."""
    upstream = proxy_example.Upper(f"{LOOPBACK}:0", reactor=reactor)
    proxy = proxy_example.Proxy(reactor, f"{LOOPBACK}:0", upstream.address)
    texts = ["hello", "half-close passes through", "", "ünïcödé", "y" * 300_000]
    replies = [reactor.request(proxy.address, text) for text in texts]
    run_until(reactor, lambda: all(reply.done() for reply in replies))
    assert [reply.result() for reply in replies] == [text.upper() for text in texts]
    run_until(reactor, lambda: not proxy.clients and not _proxy_rows(reactor))
    assert proxy.statistics()["accepted"] == len(texts)
    _finish(reactor, proxy, upstream)


def test_the_clients_eof_reaches_the_upstream_and_the_reply_still_comes_back(reactor: Reactor) -> None:
    """Client half-close: the upstream sees every byte and then EOF, and its reply reaches the client."""
    sinks: list[Sink] = []
    upstream = reactor.create_server(lambda: Sink(sinks), f"{LOOPBACK}:0")
    proxy = proxy_example.Proxy(reactor, f"{LOOPBACK}:0", upstream.address)
    client = _client(proxy.server.sockaddr)
    client.setblocking(True)
    client.sendall(BLOCK[:200_000])
    client.shutdown(socket.SHUT_WR)
    client.setblocking(False)
    reader = Reader(client)
    run_until(reactor, lambda: reader.read(keep=True))
    assert bytes(reader.data) == b"got 200000 bytes"
    assert sinks[0].eof and sinks[0].digest.hexdigest() == _expected_digest(200_000)
    client.close()
    _finish(reactor, proxy, upstream)


def test_the_upstreams_eof_reaches_the_client_which_can_still_send(reactor: Reactor) -> None:
    """Upstream half-close first: the client gets the banner and EOF, then its own bytes still reach the upstream."""
    received: list[bytes] = []

    class Banner(Protocol):
        def connection_made(self, transport: StreamTransport) -> None:
            self.transport = transport
            self.data = bytearray()
            transport.write(b"banner")
            transport.write_eof()

        def data_received(self, data: bytes) -> None:
            self.data += data

        def connection_lost(self, exc: BaseException | None) -> None:
            received.append(bytes(self.data))

    upstream = reactor.create_server(Banner, f"{LOOPBACK}:0")
    proxy = proxy_example.Proxy(reactor, f"{LOOPBACK}:0", upstream.address)
    client = _client(proxy.server.sockaddr)
    client.send(b"sent before the upstream was up; ")
    run_until(reactor, lambda: bool(proxy.clients))
    [pair] = proxy.clients
    if pair.upstream is None:  # connecting: the client's bytes wait in the kernel
        assert not pair.transport.is_reading()
    reader = Reader(client)
    run_until(reactor, lambda: reader.read(keep=True))
    assert bytes(reader.data) == b"banner"
    client.setblocking(True)
    client.sendall(b"and after its EOF")
    client.shutdown(socket.SHUT_WR)
    run_until(reactor, lambda: bool(received))
    assert received == [b"sent before the upstream was up; and after its EOF"]
    client.close()
    _finish(reactor, proxy, upstream)


def test_memory_stays_bounded_when_the_client_reads_slowly(reactor: Reactor) -> None:
    """32 MiB from a fast upstream to a client reading 16 KiB a turn: the proxy holds < 256 KiB throughout."""
    total = 32 << 20
    hoses: list[Firehose] = []
    upstream = reactor.create_server(lambda: Firehose(hoses, total), f"{LOOPBACK}:0")
    proxy = proxy_example.Proxy(reactor, f"{LOOPBACK}:0", upstream.address)
    reader = Reader(_client(proxy.server.sockaddr, rcvbuf=16 * 1024), per_read=16 * 1024)
    most = 0
    upstream_paused = False

    def slow_read() -> bool:
        nonlocal most, upstream_paused
        most = max(most, _proxy_buffered(reactor))
        for pair in proxy.clients:
            upstream_paused |= pair.upstream is not None and not pair.upstream.is_reading()
        return reader.read()

    run_until(reactor, slow_read, turns=50_000, timeout=0)
    assert reader.count == total and reader.digest.hexdigest() == _expected_digest(total)
    assert most < BOUND, f"the proxy held {most} bytes"
    assert upstream_paused and hoses[0].pauses > 0  # backpressure reached the upstream server itself
    reader.sock.close()
    _finish(reactor, proxy, upstream)


def test_memory_stays_bounded_when_the_upstream_reads_slowly(reactor: Reactor) -> None:
    """8 MiB from a fast client to an upstream reading 16 KiB a turn: the proxy holds < 256 KiB throughout."""
    total = 8 << 20
    sinks: list[Sink] = []
    upstream = reactor.create_server(lambda: Sink(sinks), f"{LOOPBACK}:0", max_read=16 * 1024)
    upstream.sockets[0].setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    proxy = proxy_example.Proxy(reactor, f"{LOOPBACK}:0", upstream.address)
    client = _client(proxy.server.sockaddr)
    run_until(reactor, lambda: bool(sinks))
    sent = 0
    most = 0
    client_paused = False
    reply = Reader(client)

    def fast_write_slow_read() -> bool:
        nonlocal sent, most, client_paused
        most = max(most, _proxy_buffered(reactor))
        for pair in proxy.clients:
            client_paused |= not pair.transport.is_reading()
        if sent < total:
            offset = sent % len(BLOCK)
            try:
                sent += client.send(BLOCK[offset : offset + min(256 * 1024, total - sent)])
            except BlockingIOError:
                pass
            if sent == total:
                client.shutdown(socket.SHUT_WR)
        sink = sinks[0]
        sink.transport.pause_reading()  # the upstream reads one chunk per turn, when the test says so
        if not sink.eof:
            sink.transport.resume_reading()
        return reply.read(keep=True)

    run_until(reactor, fast_write_slow_read, turns=50_000, timeout=0)
    assert bytes(reply.data) == b"got %d bytes" % total
    assert sinks[0].digest.hexdigest() == _expected_digest(total)
    assert most < BOUND, f"the proxy held {most} bytes"
    assert client_paused  # the proxy stopped reading the client
    client.close()
    _finish(reactor, proxy, upstream)


def test_a_client_that_resets_mid_transfer_takes_its_upstream_with_it(reactor: Reactor) -> None:
    """A client reset mid-download aborts the upstream connection; no row is left behind."""
    hoses: list[Firehose] = []
    upstream = reactor.create_server(lambda: Firehose(hoses, 8 << 20), f"{LOOPBACK}:0")
    proxy = proxy_example.Proxy(reactor, f"{LOOPBACK}:0", upstream.address)
    reader = Reader(_client(proxy.server.sockaddr, rcvbuf=16 * 1024), per_read=16 * 1024)
    run_until(reactor, lambda: reader.read() or reader.count > 1 << 20, timeout=0)
    reader.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    reader.sock.close()  # RST
    run_until(reactor, lambda: not _proxy_rows(reactor) and not upstream.connections())
    assert not proxy.clients
    _finish(reactor, proxy, upstream)


def test_upstream_connect_failure_closes_the_client(reactor: Reactor) -> None:
    """Nothing listens upstream: the client connection is closed and the failure counted."""
    with socket.socket() as unused:
        unused.bind((LOOPBACK, 0))
        dead = f"{LOOPBACK}:{unused.getsockname()[1]}"
    proxy = proxy_example.Proxy(reactor, f"{LOOPBACK}:0", dead)
    client = _client(proxy.server.sockaddr)
    reader = Reader(client)

    def closed() -> bool:
        try:
            return reader.read()
        except ConnectionResetError:
            return True

    run_until(reactor, closed)
    run_until(reactor, lambda: not reactor.connections and not proxy.clients)
    assert proxy.statistics()["connect_failures"] == 1
    client.close()
    _finish(reactor, proxy)


def test_demo_runs_on_its_own() -> None:
    """`proxy.py --demo` sends yoton requests through the proxy in one reactor and exits."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--demo"],
        capture_output=True, text=True, timeout=10, env=_env(), check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "'hello through the proxy' -> 'HELLO THROUGH THE PROXY' ok" in out
    assert "'half-close passes through' -> 'HALF-CLOSE PASSES THROUGH' ok" in out
    assert "(300000 characters)' ok" in out
    assert "WRONG" not in out and "'pairs': 0" in out


def test_command_line_usage_error() -> None:
    """Bad arguments print the usage and return 2."""
    assert proxy_example.main([]) == 2
    assert proxy_example.main(["localhost:1"]) == 2
    assert proxy_example.main(["--help", "x"]) == 2
