"""The transport layer itself: deadlines, the connection table, accepting, Unix listeners, connecting, misuse.

What `test_stream_conformance` does not cover because it is specific to
sockets, listeners and the table; plus what is specific to `memory_pair`.
Reactors run on a manual clock: deadlines move with ``clock.advance`` and a
``run_once(0)``; loopback sockets are driven with bounded turns, never sleeps.
"""

from __future__ import annotations

import _socket
import errno
import logging
import os
import socket
import struct
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import EmfileSocket, run_until

from reactor import ManualClock, Reactor
from reactor.streams import Protocol, Server
from reactor.transport import listener as listener_module
from reactor.transport.connect import attach_socket
from reactor.transport.memory import memory_pair
from reactor.transport.stream import StreamTransport, TransportLimits
from reactor.transport.table import TRANSITIONS, State, connection_stats


class Recorder(Protocol):
    """Records data, EOF and connection_lost; optionally keeps writing after EOF."""

    def __init__(self, eof_result: bool | None = None) -> None:
        self.data = bytearray()
        self.eof = False
        self.lost: list[BaseException | None] = []
        self.eof_result = eof_result
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data

    def eof_received(self) -> bool | None:
        self.eof = True
        return self.eof_result

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.append(exc)


class Recorders:
    """A protocol factory that keeps every protocol it made."""

    def __init__(self, eof_result: bool | None = None) -> None:
        self.made: list[Recorder] = []
        self.eof_result = eof_result

    def __call__(self) -> Recorder:
        protocol = Recorder(self.eof_result)
        self.made.append(protocol)
        return protocol


@pytest.fixture
def socketpair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """Two connected Unix stream sockets, closed after the test if still open."""
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def factory() -> Recorders:
    """A recording protocol factory."""
    return Recorders()


@pytest.fixture
def server(reactor: Reactor, factory: Recorders) -> Iterator[Server]:
    """A stream server on 127.0.0.1 (random port) whose protocols are recorded by ``factory``."""
    s = reactor.create_server(factory, "localhost:0")
    yield s
    s.close()


def client(server: Server) -> socket.socket:
    """A plain blocking client socket connected to ``server``."""
    return socket.create_connection(server.sockaddr[:2], timeout=5)


def reset(sock: socket.socket) -> None:
    """Close ``sock`` with a TCP RST instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def attach(reactor: Reactor, sock: socket.socket, **limits: Any) -> tuple[StreamTransport, Recorder]:
    """``sock`` as a transport with a recorder protocol and the given limits."""
    protocol = Recorder()
    transport = attach_socket(reactor, sock, protocol, limits=TransportLimits(**limits))
    return transport, protocol


# ------------------------------------------------------------ deadlines


def test_idle_deadline_pushed_back_by_reads(
    reactor: Reactor, clock: ManualClock, socketpair: tuple[socket.socket, socket.socket]
) -> None:
    """Bytes arriving push the idle deadline back; idle_timeout seconds without any close with TimeoutError."""
    sa, sb = socketpair
    t, p = attach(reactor, sa, idle_timeout=5)
    assert t.deadline == 1005.0  # armed when the connection first waited
    clock.advance(3)
    sb.send(b"x")
    run_until(reactor, lambda: p.data == b"x")
    clock.advance(3)  # 6 s since the start, 3 since the data
    reactor.run_once(0)
    assert p.lost == [] and t.deadline == 1008.0
    clock.advance(1.9)
    reactor.run_once(0)
    assert p.lost == []
    clock.advance(0.2)
    reactor.run_once(0)
    assert len(p.lost) == 1 and isinstance(p.lost[0], TimeoutError)
    assert "idle" in str(p.lost[0])
    assert reactor.connections == {}


def test_idle_deadline_pushed_back_by_writes(
    reactor: Reactor, clock: ManualClock, socketpair: tuple[socket.socket, socket.socket]
) -> None:
    """Bytes sent (even a write the kernel takes whole) count as progress for the idle deadline."""
    sa, sb = socketpair
    t, p = attach(reactor, sa, idle_timeout=5)
    for _ in range(4):
        clock.advance(3)
        t.write(b"tick")
        reactor.run_once(0)
        assert p.lost == []
    assert sb.recv(100) == b"tick" * 4
    clock.advance(5.1)
    reactor.run_once(0)
    assert len(p.lost) == 1 and isinstance(p.lost[0], TimeoutError)


def test_whole_exchange_deadline_is_not_pushed_back(reactor: Reactor, clock: ManualClock, factory: Recorders) -> None:
    """The whole-exchange timeout cuts a connection that keeps sending; stats.timeouts counts it."""
    with reactor.create_server(factory, "localhost:0", timeout=5) as server:
        c = client(server)
        run_until(reactor, lambda: len(factory.made) == 1)
        p = factory.made[0]
        sent = bytearray()
        for i in range(4):
            clock.advance(1.2)
            sent.extend(b"%d" % i)
            c.send(b"%d" % i)
            run_until(reactor, lambda: p.data == sent)
        assert p.lost == []
        clock.advance(0.3)  # 5.1 s after the accept
        reactor.run_once(0)
        assert len(p.lost) == 1 and isinstance(p.lost[0], TimeoutError)
        assert "open for 5" in str(p.lost[0])
        assert server.statistics()["timeouts"] == 1 and server.statistics()["active"] == 0
        assert c.recv(10) == b""  # the client sees the close
        c.close()


def test_idle_timeout_of_a_server_counts_as_timeout(reactor: Reactor, clock: ManualClock, factory: Recorders) -> None:
    """A server's idle_timeout closes a silent client and counts it in stats.timeouts."""
    with reactor.create_server(factory, "localhost:0", idle_timeout=2) as server:
        c = client(server)
        run_until(reactor, lambda: len(factory.made) == 1)
        clock.advance(2.1)
        reactor.run_once(0)
        assert isinstance(factory.made[0].lost[0], TimeoutError)
        assert server.statistics()["timeouts"] == 1
        c.close()


def test_set_timeout_and_set_idle_timeout(
    reactor: Reactor, clock: ManualClock, socketpair: tuple[socket.socket, socket.socket]
) -> None:
    """set_idle_timeout(None) removes the idle deadline; set_timeout restarts the whole-exchange one."""
    sa, _ = socketpair
    t, p = attach(reactor, sa, idle_timeout=1)
    t.set_idle_timeout(None)
    clock.advance(10)
    reactor.run_once(0)
    assert p.lost == [] and t.deadline is None
    t.set_timeout(3)
    assert t.deadline == 1013.0
    clock.advance(3.1)
    reactor.run_once(0)
    assert isinstance(p.lost[0], TimeoutError)


def test_create_connection_idle_timeout(reactor: Reactor, clock: ManualClock, server: Server) -> None:
    """create_connection's idle_timeout closes an outgoing connection that stays silent."""
    protocol = Recorder()
    fut = reactor.create_connection(lambda: protocol, server.address, idle_timeout=2)
    run_until(reactor, fut.done)
    clock.advance(2.1)
    reactor.run_once(0)
    assert len(protocol.lost) == 1 and isinstance(protocol.lost[0], TimeoutError)


# ------------------------------------------------------------ the connection table


def test_one_row_per_open_connection(reactor: Reactor, server: Server, factory: Recorders) -> None:
    """Every accepted connection is exactly one OPEN row owned by its listener, removed when it closes."""
    clients = [client(server) for _ in range(3)]
    run_until(reactor, lambda: len(factory.made) == 3)
    rows = server.connections()
    assert len(rows) == 3 == len(reactor.connections) == server.statistics()["active"]
    assert {row.fd for row in rows} == set(reactor.connections)
    assert all(reactor.connections[row.fd] is row is row.get_protocol().transport for row in rows)
    assert connection_stats(reactor.connections) == {State.OPEN: 3}
    assert all(row.as_dict()["state"] == State.OPEN for row in rows)
    clients.pop().close()
    run_until(reactor, lambda: len(reactor.connections) == 2)
    assert server.statistics()["active"] == 2
    for c in clients:
        c.close()
    run_until(reactor, lambda: reactor.connections == {})
    assert server.statistics()["active"] == 0 and server.statistics()["accepted"] == 3


def test_row_states_through_half_close_and_closing(
    reactor: Reactor, socketpair: tuple[socket.socket, socket.socket]
) -> None:
    """A row goes OPEN -> WRITE_CLOSED / READ_CLOSED -> CLOSING -> CLOSED, and leaves the table when CLOSED."""
    sa, sb = socketpair
    a, pa = attach(reactor, sa)
    pb = Recorder(eof_result=True)
    b = attach_socket(reactor, sb, pb)
    assert reactor.connections == {a.fd: a, b.fd: b}
    assert a.state == b.state == State.OPEN
    a.write_eof()
    assert a.state == State.WRITE_CLOSED
    run_until(reactor, lambda: pb.eof)
    assert b.state == State.READ_CLOSED
    assert connection_stats(reactor.connections) == {State.WRITE_CLOSED: 1, State.READ_CLOSED: 1}
    b.write(b"z" * (4 * 1024 * 1024))
    assert b.get_write_buffer_size() > 0
    b.close()
    assert b.state == State.CLOSING and reactor.connections[b.fd] is b
    run_until(reactor, lambda: bool(pa.lost and pb.lost))
    assert a.state == b.state == State.CLOSED
    assert len(pa.data) == 4 * 1024 * 1024
    assert reactor.connections == {}


def test_transitions_refuse_an_illegal_change(
    reactor: Reactor, socketpair: tuple[socket.socket, socket.socket]
) -> None:
    """_set_state accepts only the pairs in TRANSITIONS; a closed row never reopens."""
    assert (State.CLOSED, State.OPEN) not in TRANSITIONS
    assert (State.OPEN, State.CONNECTING) not in TRANSITIONS
    assert (State.OPEN, State.WRITE_CLOSED) in TRANSITIONS
    t, p = attach(reactor, socketpair[0])
    with pytest.raises(RuntimeError, match="no transition from OPEN to CONNECTING"):
        t._set_state(State.CONNECTING)
    assert t.state == State.OPEN
    t.abort()
    with pytest.raises(RuntimeError, match="no transition from CLOSED to OPEN"):
        t._set_state(State.OPEN)
    run_until(reactor, lambda: bool(p.lost))


# ------------------------------------------------------------ accepting


class AnswerOnce(Protocol):
    """Answers the first bytes it receives, then closes."""

    def data_received(self, data: bytes) -> None:
        self.transport.write(b"re: " + data)
        self.transport.close()


def test_read_at_accept_fast_path(reactor: Reactor) -> None:
    """A client that sent before the server's turn is answered without its connection waiting in the selector."""
    with reactor.create_server(AnswerOnce, "localhost:0") as server:
        c = client(server)
        c.sendall(b"ping")
        run_until(reactor, lambda: server.statistics()["accepted"] == 1 and not reactor.connections)
        assert c.recv(100) == b"re: ping"
        assert c.recv(100) == b""
        assert server.statistics()["waited"] == 0
        c.close()
        late = client(server)  # sends nothing before the accept: has to wait
        run_until(reactor, lambda: server.statistics()["accepted"] == 2)
        late.sendall(b"pong")
        run_until(reactor, lambda: not reactor.connections)
        assert late.recv(100) == b"re: pong"
        assert server.statistics()["waited"] == 1
        late.close()


def test_max_connections_pauses_and_resumes_accepting(reactor: Reactor, factory: Recorders) -> None:
    """At max_connections the listener stops accepting (the backlog holds the next client) until one closes."""
    with reactor.create_server(factory, "localhost:0", max_connections=1) as server:
        first = client(server)
        run_until(reactor, lambda: server.statistics()["accepted"] == 1)
        second = client(server)
        for _ in range(20):
            reactor.run_once(0)
        assert server.statistics()["accepted"] == 1 and server.statistics()["active"] == 1
        assert server.statistics()["accept_pauses"] >= 1
        first.close()  # EOF: the server's protocol closes its side
        run_until(reactor, lambda: server.statistics()["accepted"] == 2)
        assert server.statistics()["active"] == 1
        second.close()
        run_until(reactor, lambda: server.statistics()["active"] == 0)


def test_emfile_pauses_accepting_for_accept_backoff(
    reactor: Reactor, clock: ManualClock, factory: Recorders, caplog: pytest.LogCaptureFixture
) -> None:
    """EMFILE on accept stops accepting for accept_backoff seconds without spinning, then accepting resumes."""
    with reactor.create_server(factory, "localhost:0", accept_backoff=0.5) as server:
        listener = server._listener
        fake = EmfileSocket(listener._sock)
        listener._sock = fake  # type: ignore[assignment]
        try:
            c = client(server)
            with caplog.at_level(logging.WARNING, logger="reactor.streams"):
                run_until(reactor, lambda: fake.calls >= 1)
                for _ in range(50):
                    reactor.run_once(0)
            assert fake.calls == 2  # the failure, one retry with the reserve freed; then no spin
            assert server.statistics()["accept_pauses"] == 1
            assert "Too many open files" in caplog.text
            fake.fail = False
            clock.advance(0.4)
            reactor.run_once(0)
            assert fake.calls == 2  # still backing off
            clock.advance(0.1)
            run_until(reactor, lambda: server.statistics()["accepted"] == 1)
            c.close()
            run_until(reactor, lambda: server.statistics()["active"] == 0)
        finally:
            listener._sock = fake.sock


# ------------------------------------------------------------ Unix listeners


def test_unix_server_replaces_a_stale_path_and_unlinks_its_own(reactor: Reactor, tmp_path: Path) -> None:
    """A socket file nobody listens on is replaced; close() unlinks the path it created."""
    path = str(tmp_path / "s.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()  # the file stays behind, like after a crash
    factory = Recorders()
    server = reactor.create_server(factory, "unix:" + path)
    assert server.address == "unix:" + path
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(path)
    run_until(reactor, lambda: len(factory.made) == 1)
    c.close()
    run_until(reactor, lambda: server.statistics()["active"] == 0)
    server.close()
    assert not os.path.exists(path)


def test_unix_server_close_leaves_a_path_that_is_not_its_own(reactor: Reactor, tmp_path: Path) -> None:
    """If the path was replaced by another socket, close() leaves that one alone."""
    path = str(tmp_path / "s.sock")
    server = reactor.create_server(Recorders(), "unix:" + path)
    os.unlink(path)
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(path)
    try:
        server.close()
        assert os.path.exists(path)
    finally:
        other.close()
        os.unlink(path)


def test_unix_server_refuses_a_live_path_or_a_regular_file(reactor: Reactor, tmp_path: Path) -> None:
    """A path with a live listener gives EADDRINUSE; a regular file is never replaced."""
    path = str(tmp_path / "s.sock")
    with reactor.create_server(Recorders(), "unix:" + path):
        with pytest.raises(OSError) as info:
            reactor.create_server(Recorders(), "unix:" + path)
        assert info.value.errno == errno.EADDRINUSE
    plain = tmp_path / "plain"
    plain.write_text("data")
    with pytest.raises(FileExistsError):
        reactor.create_server(Recorders(), f"unix:{plain}")
    assert plain.read_text() == "data"


# ------------------------------------------------------------ connecting


def test_create_connection_refused(reactor: Reactor) -> None:
    """Connecting to a port nobody listens on fails the future with ConnectionRefusedError and leaves no row."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))  # bound, not listening: connects get a RST
    try:
        port = holder.getsockname()[1]
        fut = reactor.create_connection(Recorder, f"localhost:{port}")
        run_until(reactor, fut.done)
        with pytest.raises(ConnectionRefusedError):
            fut.result()
        assert reactor.connections == {}
    finally:
        holder.close()


def test_create_connection_timeout_on_a_full_backlog(reactor: Reactor, clock: ManualClock) -> None:
    """A connect the listener never completes (backlog full) fails with TimeoutError after ``timeout``."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)  # room for one completed connection: the next SYNs are dropped
    filler = socket.create_connection(listener.getsockname(), timeout=5)
    try:
        protocol = Recorder()
        fut = reactor.create_connection(lambda: protocol, f"localhost:{listener.getsockname()[1]}", timeout=2)
        for _ in range(10):
            reactor.run_once(0)
        assert not fut.done()
        (row,) = reactor.connections.values()
        assert row.state == State.CONNECTING and row.deadline == 1002.0
        clock.advance(2)
        reactor.run_once(0)
        with pytest.raises(TimeoutError):
            fut.result()
        assert reactor.connections == {} and protocol.transport is None
    finally:
        filler.close()
        listener.close()


def test_unix_connect_timeout_while_backlog_is_full(reactor: Reactor, clock: ManualClock, tmp_path: Path) -> None:
    """A Unix connect that keeps getting EAGAIN retries without spinning and times out."""
    path = str(tmp_path / "full.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(0)
    filler = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    filler.connect(path)
    try:
        fut = reactor.create_connection(Recorder, "unix:" + path, timeout=1)
        for _ in range(10):
            reactor.run_once(0)
        assert not fut.done() and len(reactor.connections) == 1
        clock.advance(1)
        reactor.run_once(0)
        with pytest.raises(TimeoutError):
            fut.result()
        assert reactor.connections == {}
    finally:
        filler.close()
        listener.close()


def test_cancelling_a_connect_closes_its_row(reactor: Reactor, clock: ManualClock) -> None:
    """Cancelling the future of a pending connect aborts it and removes its row."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    filler = socket.create_connection(listener.getsockname(), timeout=5)
    try:
        fut = reactor.create_connection(Recorder, f"localhost:{listener.getsockname()[1]}", timeout=2)
        reactor.run_once(0)
        assert len(reactor.connections) == 1
        fut.cancel()
        run_until(reactor, lambda: reactor.connections == {})
    finally:
        filler.close()
        listener.close()


# ------------------------------------------------------------ misuse and peer faults


def test_write_after_close_raises(reactor: Reactor, socketpair: tuple[socket.socket, socket.socket]) -> None:
    """Writing after close() is the caller's bug: RuntimeError saying so, before and after connection_lost."""
    sa, sb = socketpair
    a, pa = attach(reactor, sa)
    b, pb = attach(reactor, sb)
    a.close()
    with pytest.raises(RuntimeError, match=r"close\(\)"):
        a.write(b"x")
    run_until(reactor, lambda: bool(pa.lost and pb.lost))
    with pytest.raises(RuntimeError, match=r"close\(\)"):
        a.write(b"x")


def test_write_while_closing_and_after_abort_raises(
    reactor: Reactor, socketpair: tuple[socket.socket, socket.socket]
) -> None:
    """A transport flushing after close() (CLOSING) or aborted refuses writes with RuntimeError."""
    sa, sb = socketpair
    a, pa = attach(reactor, sa)
    b, pb = attach(reactor, sb)
    b.pause_reading()
    a.write(b"q" * (1024 * 1024))
    a.close()
    assert a.state == State.CLOSING
    with pytest.raises(RuntimeError, match="clos"):
        a.write(b"x")
    a.abort()
    with pytest.raises(RuntimeError, match=r"abort\(\)"):
        a.write(b"x")
    run_until(reactor, lambda: bool(pa.lost))
    b.abort()
    run_until(reactor, lambda: bool(pb.lost))


def test_write_before_connected_raises(reactor: Reactor, clock: ManualClock) -> None:
    """Writing to a transport still connecting raises RuntimeError."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    filler = socket.create_connection(listener.getsockname(), timeout=5)
    try:
        fut = reactor.create_connection(Recorder, f"localhost:{listener.getsockname()[1]}")
        (row,) = reactor.connections.values()
        with pytest.raises(RuntimeError, match="not connected yet"):
            row.write(b"x")
        fut.cancel()
        run_until(reactor, lambda: reactor.connections == {})
    finally:
        filler.close()
        listener.close()


def test_write_after_peer_reset_is_dropped_quietly(reactor: Reactor, server: Server, factory: Recorders) -> None:
    """A peer's RST ends the connection with ConnectionResetError; later writes are dropped, not raised."""
    c = client(server)
    run_until(reactor, lambda: len(factory.made) == 1)
    p = factory.made[0]
    reset(c)
    run_until(reactor, lambda: bool(p.lost))
    assert isinstance(p.lost[0], ConnectionResetError)
    p.transport.write(b"into the void")
    p.transport.writelines([b"and ", b"more"])
    reactor.run_once(0)
    assert len(p.lost) == 1


def test_write_that_finds_the_reset_is_quiet(reactor: Reactor, server: Server, factory: Recorders) -> None:
    """A write that discovers the peer is gone does not raise; connection_lost gets the error, once."""
    c = client(server)
    run_until(reactor, lambda: len(factory.made) == 1)
    p = factory.made[0]
    p.transport.pause_reading()  # so only the write can notice
    reset(c)
    for _ in range(3):
        reactor.run_once(0)
    p.transport.write(b"hello?")
    p.transport.write(b"anyone?")
    run_until(reactor, lambda: bool(p.lost))
    assert isinstance(p.lost[0], ConnectionError)
    assert len(p.lost) == 1 and reactor.connections == {}


def test_write_rejects_str(reactor: Reactor, socketpair: tuple[socket.socket, socket.socket]) -> None:
    """write() takes bytes-like objects only; a str is a TypeError at the call site."""
    t, p = attach(reactor, socketpair[0])
    with pytest.raises(TypeError, match="str"):
        t.write("text")  # type: ignore[arg-type]
    t.abort()
    run_until(reactor, lambda: bool(p.lost))


# ------------------------------------------------------------ memory pairs


def test_memory_window_bounds_bytes_in_flight(reactor: Reactor) -> None:
    """At most ``window`` bytes are in flight to a peer that does not read; the rest is the writer's buffer."""
    pa, pb = Recorder(), Recorder()
    a, b = memory_pair(reactor, pa, pb, window=1000)
    b.pause_reading()
    a.write(b"w" * 5000)
    assert a.in_flight == 1000 and a.get_write_buffer_size() == 4000
    for _ in range(5):
        reactor.run_once(0)
    assert pb.data == b"" and a.get_write_buffer_size() == 4000
    b.resume_reading()
    run_until(reactor, lambda: len(pb.data) == 5000)
    assert a.in_flight == 0 and a.get_write_buffer_size() == 0
    assert reactor.connections == {}  # memory transports have no fd and no row
    a.close()
    run_until(reactor, lambda: bool(pa.lost and pb.lost))


def test_memory_extra_info_and_repr(reactor: Reactor) -> None:
    """A memory transport has no socket; its names are the pair's names."""
    a, b = memory_pair(reactor, Recorder(), Recorder(), names=("client", "server"))
    assert a.get_extra_info("socket") is None
    assert a.get_extra_info("sockname") == "client" == b.get_extra_info("peername")
    assert "client" in repr(a) and a.as_dict()["peer"] == "server"
    a.abort()
    b.abort()
    for _ in range(2):
        reactor.run_once(0)


def test_memory_write_toward_a_closed_peer(reactor: Reactor) -> None:
    """Writing toward a peer that closed ends the writer with ConnectionResetError; later writes are dropped."""
    pa, pb = Recorder(), Recorder(eof_result=True)
    a, b = memory_pair(reactor, pa, pb)
    a.close()
    run_until(reactor, lambda: pb.eof)
    b.write(b"anyone?")
    b.write(b"still?")
    run_until(reactor, lambda: bool(pb.lost))
    assert isinstance(pb.lost[0], ConnectionResetError) and len(pb.lost) == 1
    assert pa.lost == [None]


def test_memory_deadlines_follow_the_reactor_clock(reactor: Reactor, clock: ManualClock) -> None:
    """Memory transports honour idle_timeout on the reactor's (manual) clock."""
    pa, pb = Recorder(), Recorder()
    a, b = memory_pair(reactor, pa, pb, limits=TransportLimits(idle_timeout=2))
    clock.advance(1.5)
    a.write(b"x")
    run_until(reactor, lambda: pb.data == b"x")
    clock.advance(1.5)
    reactor.run_once(0)
    assert pa.lost == [] and pb.lost == []
    clock.advance(0.6)
    reactor.run_once(0)
    run_until(reactor, lambda: bool(pa.lost and pb.lost))
    assert isinstance(pa.lost[0], TimeoutError) and isinstance(pb.lost[0], TimeoutError)


def test_memory_pair_rejects_a_bad_window(reactor: Reactor) -> None:
    """A window that is not positive is a ValueError."""
    with pytest.raises(ValueError, match="window"):
        memory_pair(reactor, Recorder(), Recorder(), window=0)


def test_cancelled_connect_never_starts_its_protocol(reactor: Reactor) -> None:
    """Cancelling create_connection's future before the connect completes: no connection_made, no row."""
    made: list[object] = []

    class Watch(Protocol):
        def connection_made(self, transport: object) -> None:
            made.append(transport)

    server = reactor.create_server(Protocol, "localhost:0")
    fut = reactor.create_connection(Watch, server.address, timeout=5)
    fut.cancel()
    for _ in range(20):
        reactor.run_once(0.01)
    assert made == []
    assert all(row in server.connections() for row in reactor.connections.values())
    server.close()
    run_until(reactor, lambda: not reactor.connections)


class ShutdownFails(_socket.socket):
    """An accepted socket whose shutdown() fails as when the peer has already reset (ENOTCONN)."""

    def shutdown(self, how: int) -> None:
        raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")


def test_a_failed_shutdown_after_the_data_is_a_normal_close(
    reactor: Reactor, factory: Recorders, monkeypatch: pytest.MonkeyPatch
) -> None:
    """write_eof() whose shutdown fails (the peer is gone) closes the connection as close() does: no error."""
    monkeypatch.setattr(listener_module, "_socket", types.SimpleNamespace(socket=ShutdownFails))
    with reactor.create_server(factory, "localhost:0") as server:
        c = client(server)
        run_until(reactor, lambda: len(factory.made) == 1)
        p = factory.made[0]
        p.transport.write(b"all of it")
        p.transport.write_eof()
        run_until(reactor, lambda: bool(p.lost))
        assert p.lost == [None]
        assert (server.statistics()["errors"], server.statistics()["active"]) == (0, 0) and reactor.connections == {}
        assert c.recv(100) == b"all of it"
        c.close()


def test_a_closed_connection_is_freed_without_the_cycle_collector(reactor: Reactor) -> None:
    """Once connection_lost is delivered the transport lets go of its protocol: no cycle is left to collect."""
    import gc
    import weakref

    lost: list[BaseException | None] = []

    class Keeper(Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def connection_lost(self, exc: BaseException | None) -> None:
            lost.append(exc)

    left, right = socket.socketpair()
    gc.disable()
    try:
        protocol = Keeper()
        transport = attach_socket(reactor, left, protocol)
        gone = weakref.ref(protocol)
        transport.close()
        run_until(reactor, lambda: bool(lost))
        assert transport.get_protocol() is None
        del protocol, transport
        assert gone() is None
    finally:
        gc.enable()
        right.close()
