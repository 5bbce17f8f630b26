"""reactor.socketserver: the stdlib surface, served by a reactor, several servers per thread."""

from __future__ import annotations

import ast
import asyncio
import errno
import inspect
import logging
import os
import select
import socket
import socketserver as stdlib_socketserver
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import run_until

from reactor import ManualClock, Reactor
from reactor import socketserver as ss
from reactor.embed import attach_asyncio
from reactor.transport.listener import ACCEPT_BACKOFF, ACCEPT_BATCH
from reactor.transport.table import State

HOST = "127.0.0.1"
PACKAGE = Path(__file__).resolve().parent.parent / "reactor"
requires_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


class UpperLine(ss.StreamRequestHandler):
    """Reads one line, answers it upper-cased."""

    def handle(self) -> None:
        self.wfile.write(self.rfile.readline().upper())


class UpperDatagram(ss.DatagramRequestHandler):
    """Answers a datagram upper-cased."""

    def handle(self) -> None:
        self.wfile.write(self.rfile.read().upper())


def send(address: Any, data: bytes, family: int = socket.AF_INET) -> socket.socket:
    """Connect to a stream server and send ``data``; the caller reads and closes."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(address)
    sock.sendall(data)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Read until EOF (the socket has a timeout), then close the socket."""
    chunks = []
    with sock:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def registered_fds(reactor: Reactor) -> int:
    """How many descriptors the reactor watches, besides its wakeup socket."""
    return int(reactor.statistics()["fds"])


def serve_in_thread(server: ss.BaseServer) -> threading.Thread:
    """Run ``server.serve_forever()`` in a thread (the stdlib way)."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 60})
    thread.start()
    return thread


@pytest.fixture
def tcp(reactor: Reactor) -> Iterator[ss.TCPServer]:
    """A synchronous upper-casing TCP server on the manual-clock reactor."""
    server = ss.TCPServer((HOST, 0), UpperLine, reactor=reactor)
    yield server
    server.server_close()


# ---------------------------------------------------------------- the surface


def test_public_names_and_signatures_match_the_stdlib() -> None:
    """Every public name, method signature, class attribute and MRO is the stdlib's (plus reactor=)."""
    assert sorted(ss.__all__) == sorted(stdlib_socketserver.__all__)
    for name in stdlib_socketserver.__all__:
        theirs, ours = getattr(stdlib_socketserver, name), getattr(ss, name)
        assert [c.__name__ for c in ours.__mro__] == [c.__name__ for c in theirs.__mro__], name
        for attr, value in vars(theirs).items():
            if attr.startswith("_") and attr not in ("__init__", "__enter__", "__exit__"):
                continue
            mine = getattr(ours, attr)
            if inspect.isfunction(value):
                expected = list(inspect.signature(value).parameters.values())
                got = [p for p in inspect.signature(mine).parameters.values() if p.name != "reactor"]
                assert [(p.name, p.kind, p.default) for p in got] == [
                    (p.name, p.kind, p.default) for p in expected
                ], f"{name}.{attr}"
            elif attr != "request_queue_size":  # SOMAXCONN by design (docs/socketserver.md)
                assert mine == value, f"{name}.{attr}"
    assert ss.TCPServer.request_queue_size == socket.SOMAXCONN


def _public_classes(module: Any) -> set[str]:
    """The public classes a module defines itself (not ones it imports)."""
    return {
        name
        for name, value in vars(module).items()
        if isinstance(value, type) and not name.startswith("_") and value.__module__ == module.__name__
    }


def test_names_follow_the_running_interpreters_stdlib() -> None:
    """The classes are exactly this interpreter's: the forking Unix servers exist from 3.12 on, as in the stdlib."""
    assert _public_classes(ss) == _public_classes(stdlib_socketserver)
    assert set(ss.__all__) == _public_classes(ss)
    forking_unix = {"ForkingUnixStreamServer", "ForkingUnixDatagramServer"}
    has_them = sys.version_info >= (3, 12) and hasattr(os, "fork") and hasattr(socket, "AF_UNIX")
    assert (forking_unix <= set(ss.__all__)) == has_them
    assert all(hasattr(ss, name) == has_them for name in forking_unix)


def test_implementation_never_imports_the_stdlib_socketserver() -> None:
    """Neither module of the implementation imports the standard socketserver."""
    for name in ("socketserver.py", "_socketserver_support.py"):
        tree = ast.parse((PACKAGE / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert all(a.name.split(".")[0] != "socketserver" for a in node.names), name
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                assert (node.module or "").split(".")[0] != "socketserver", name


def test_reactor_keyword_on_every_server_class() -> None:
    """Every server class accepts reactor= as a keyword-only argument."""
    for name in ss.__all__:
        cls = getattr(ss, name)
        if isinstance(cls, type) and issubclass(cls, ss.BaseServer):
            param = inspect.signature(cls).parameters["reactor"]
            assert param.kind is inspect.Parameter.KEYWORD_ONLY and param.default is None


# ---------------------------------------------------------------- one reactor, one thread


def test_tcp_udp_and_unix_servers_share_one_reactor_and_one_thread(
    reactor: Reactor, tmp_path: Path, no_threads: None
) -> None:
    """A TCP, a UDP, a Unix stream and a Unix datagram server all answer from one reactor, one thread."""
    tcp = ss.TCPServer((HOST, 0), UpperLine, reactor=reactor)
    udp = ss.UDPServer((HOST, 0), UpperDatagram, reactor=reactor)
    unix = ss.UnixStreamServer(str(tmp_path / "s"), UpperLine, reactor=reactor)
    unix_dgram = ss.UnixDatagramServer(str(tmp_path / "d"), UpperDatagram, reactor=reactor)
    assert registered_fds(reactor) == 4
    a = send(tcp.server_address, b"tcp\n")
    b = send(unix.server_address, b"unix\n", socket.AF_UNIX)
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.settimeout(5)
    c.sendto(b"udp", udp.server_address)
    d = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    d.bind(str(tmp_path / "client"))
    d.settimeout(5)
    d.sendto(b"unix datagram", unix_dgram.server_address)
    run_until(reactor, lambda: not reactor.connections and _readable(a, b, c, d))
    assert read_all(a) == b"TCP\n"
    assert read_all(b) == b"UNIX\n"
    with c, d:
        assert c.recv(100) == b"UDP"
        assert d.recv(100) == b"UNIX DATAGRAM"
    for server in (tcp, udp, unix, unix_dgram):
        server.server_close()
    assert registered_fds(reactor) == 0
    assert not reactor.is_closed()  # a shared reactor belongs to its owner


def _readable(*socks: socket.socket) -> bool:
    return len(select.select(socks, [], [], 0)[0]) == len(socks)


def test_reactor_run_serves_every_server(reactor: Reactor) -> None:
    """reactor.run() serves servers built with reactor=, without serve_forever()."""

    class StopAfter(UpperLine):
        def handle(self) -> None:
            super().handle()
            reactor.stop()

    one = ss.TCPServer((HOST, 0), StopAfter, reactor=reactor)
    client = send(one.server_address, b"run\n")
    reactor.run()
    assert read_all(client) == b"RUN\n"
    one.server_close()


def test_serve_forever_of_one_server_serves_its_neighbours(reactor: Reactor) -> None:
    """serve_forever() on one server also serves the other servers on its reactor."""

    class ShutdownFirst(UpperLine):
        def handle(self) -> None:
            super().handle()
            first.shutdown()  # from the serving thread: returns at once

    # Only the neighbour's handler ends first's loop, so it returns only if it served second.
    first = ss.TCPServer((HOST, 0), UpperLine, reactor=reactor)
    second = ss.TCPServer((HOST, 0), ShutdownFirst, reactor=reactor)
    to_first = send(first.server_address, b"first\n")
    to_second = send(second.server_address, b"second\n")
    assert _pending(first) and _pending(second)  # both wait in the kernel, nothing served yet
    first.serve_forever()
    assert read_all(to_second) == b"SECOND\n"
    assert read_all(to_first) == b"FIRST\n"
    first.server_close()
    second.server_close()


def _pending(server: ss.BaseServer) -> bool:
    return _readable(server.socket)


def test_two_threads_cannot_run_one_reactor(reactor: Reactor) -> None:
    """A second thread serving the same reactor, or serve_forever() inside reactor.run(), raises."""
    errors: list[BaseException] = []

    class TryFromAnotherThread(UpperLine):
        def handle(self) -> None:
            super().handle()

            def serve_other() -> None:
                try:
                    other.serve_forever()
                except RuntimeError as exc:
                    errors.append(exc)

            t = threading.Thread(target=serve_other)
            t.start()
            t.join()
            self.server.shutdown()

    first = ss.TCPServer((HOST, 0), TryFromAnotherThread, reactor=reactor)
    other = ss.TCPServer((HOST, 0), UpperLine, reactor=reactor)
    client = send(first.server_address, b"x\n")
    first.serve_forever()
    assert read_all(client) == b"X\n"
    assert len(errors) == 1 and "another thread" in str(errors[0])

    def inside_run() -> None:
        try:
            other.handle_request()
        except RuntimeError as exc:
            errors.append(exc)
        reactor.stop()

    reactor.call_soon(inside_run)
    reactor.run()
    assert len(errors) == 2 and "reactor.run()" in str(errors[1])
    first.server_close()
    other.server_close()


# ---------------------------------------------------------------- the connection table


def test_accepted_connection_is_a_handling_row_until_closed(tcp: ss.TCPServer, reactor: Reactor) -> None:
    """While the handler runs its connection is a HANDLING row; the row is gone after close."""
    seen: list[tuple[str, Any, Any]] = []

    class Record(UpperLine):
        def handle(self) -> None:
            [row] = self.server.reactor.connections.values()
            seen.append((row.state, row.owner, row.peer))
            super().handle()

    tcp.RequestHandlerClass = Record
    client = send(tcp.server_address, b"row\n")
    run_until(reactor, lambda: bool(seen))
    assert seen == [(State.HANDLING, tcp, client.getsockname())]
    assert reactor.connections == {}
    assert read_all(client) == b"ROW\n"


def test_row_dropped_when_hooks_close_without_super(reactor: Reactor) -> None:
    """Overridden shutdown_request/close_request that close the socket themselves leave no row."""

    class OwnClose(ss.TCPServer):
        def shutdown_request(self, request: Any) -> None:
            request.close()

        def close_request(self, request: Any) -> None:
            request.close()

    server = OwnClose((HOST, 0), UpperLine, reactor=reactor)
    client = send(server.server_address, b"own\n")
    run_until(reactor, lambda: _readable(client))
    assert reactor.connections == {}
    assert read_all(client) == b"OWN\n"
    server.server_close()


def test_refused_request_is_shut_down(tcp: ss.TCPServer, reactor: Reactor) -> None:
    """verify_request() returning False closes the connection and drops its row."""
    tcp.verify_request = lambda request, client_address: False  # type: ignore[method-assign]
    client = send(tcp.server_address, b"no\n")
    run_until(reactor, lambda: _readable(client))
    assert read_all(client) == b""
    assert reactor.connections == {}


# ---------------------------------------------------------------- serve_forever, shutdown


def test_shutdown_from_another_thread_is_prompt_without_polling() -> None:
    """With poll_interval=60 an idle server has no timer, and shutdown() returns at once."""
    server = ss.TCPServer((HOST, 0), UpperLine)
    thread = serve_in_thread(server)
    try:
        assert read_all(send(server.server_address, b"up\n")) == b"UP\n"
        assert server.reactor.timeout() is None  # nothing to wake for but I/O
    finally:  # the serving thread never outlives the test
        started = time.monotonic()
        server.shutdown()
        elapsed = time.monotonic() - started
        thread.join()
        server.server_close()
    assert elapsed < 0.5
    assert server.reactor.is_closed()


def test_shutdown_before_serve_forever_ends_it_at_once() -> None:
    """A shutdown() issued before serve_forever() starts ends serve_forever() (stdlib semantics)."""
    server = ss.TCPServer((HOST, 0), UpperLine)
    stopper = threading.Thread(target=server.shutdown)
    stopper.start()
    server.serve_forever()
    stopper.join()
    server.server_close()


def test_shutdown_from_a_handler_does_not_deadlock(tcp: ss.TCPServer) -> None:
    """shutdown() from the serving thread requests the stop and returns; serve_forever() ends."""

    class Stop(UpperLine):
        def handle(self) -> None:
            super().handle()
            self.server.shutdown()

    tcp.RequestHandlerClass = Stop
    client = send(tcp.server_address, b"bye\n")
    tcp.serve_forever()
    assert read_all(client) == b"BYE\n"


def test_service_actions_runs_after_every_turn(tcp: ss.TCPServer, reactor: Reactor) -> None:
    """service_actions() is called after each turn of serve_forever()."""
    turns: list[int] = []

    def service_actions() -> None:
        turns.append(1)
        if len(turns) == 3:
            tcp.shutdown()
        else:
            reactor.call_soon(lambda: None)  # causes one more turn

    tcp.service_actions = service_actions  # type: ignore[method-assign]
    reactor.call_soon(lambda: None)
    tcp.serve_forever()
    assert len(turns) == 3


def test_exception_from_handle_error_ends_serve_forever(tcp: ss.TCPServer) -> None:
    """As in the stdlib, an exception escaping handle_error() propagates out of serve_forever()."""

    class Boom(ss.BaseRequestHandler):
        def handle(self) -> None:
            raise KeyError("handler")

    def handle_error(request: Any, client_address: Any) -> None:
        tcp.close_request(request)
        raise ValueError("from handle_error")

    tcp.RequestHandlerClass = Boom
    tcp.handle_error = handle_error  # type: ignore[method-assign]
    client = send(tcp.server_address, b"x\n")
    with pytest.raises(ValueError, match="from handle_error"):
        tcp.serve_forever()
    client.close()


def test_exception_under_reactor_run_is_reported_and_the_loop_goes_on(tcp: ss.TCPServer, reactor: Reactor) -> None:
    """Under reactor.run(), an exception escaping a server's hooks goes to the exception handler."""
    reported: list[BaseException] = []

    def handle_error(request: Any, client_address: Any) -> None:
        tcp.close_request(request)
        raise ValueError("escaped")

    class Boom(ss.BaseRequestHandler):
        def handle(self) -> None:
            raise KeyError("handler")

    def handler(r: Reactor, context: dict[str, Any]) -> None:
        reported.append(context["exception"])
        r.stop()

    tcp.RequestHandlerClass = Boom
    tcp.handle_error = handle_error  # type: ignore[method-assign]
    reactor.set_exception_handler(handler)
    client = send(tcp.server_address, b"x\n")
    reactor.run()
    assert [type(e) for e in reported] == [ValueError]
    client.close()


def test_default_handle_error_prints_the_traceback_and_goes_on(
    tcp: ss.TCPServer, reactor: Reactor, capsys: pytest.CaptureFixture[str]
) -> None:
    """The default handle_error prints to stderr (the stdlib contract) and the server keeps serving."""

    class FailOnce(UpperLine):
        failed: list[int] = []

        def handle(self) -> None:
            if not self.failed:
                self.failed.append(1)
                raise RuntimeError("handler failed")
            super().handle()

    tcp.RequestHandlerClass = FailOnce
    first = send(tcp.server_address, b"one\n")
    tcp.handle_request()
    assert read_all(first) == b""
    err = capsys.readouterr().err
    assert "Exception occurred during processing of request from" in err
    assert "RuntimeError: handler failed" in err
    second = send(tcp.server_address, b"two\n")
    tcp.handle_request()
    assert read_all(second) == b"TWO\n"


# ---------------------------------------------------------------- handle_request


def test_handle_request_handles_exactly_one(tcp: ss.TCPServer, reactor: Reactor) -> None:
    """handle_request() takes one request even when several are queued."""
    clients = [send(tcp.server_address, b"%d\n" % i) for i in range(3)]
    for done in (1, 2, 3):
        tcp.handle_request()
        assert sum(_readable(c) for c in clients) == done
    assert [read_all(c) for c in clients] == [b"0\n", b"1\n", b"2\n"]


def test_handle_request_times_out(real_reactor: Reactor) -> None:
    """handle_request() waits at most timeout (or the socket's timeout) and calls handle_timeout()."""

    class Timing(ss.TCPServer):
        timeout: float | None = 0.02

        def handle_timeout(self) -> Any:
            return "timed out"

    server = Timing((HOST, 0), UpperLine, reactor=real_reactor)
    started = time.monotonic()
    assert server.handle_request() == "timed out"  # type: ignore[func-returns-value]
    assert 0.02 <= time.monotonic() - started < 1
    server.timeout = None
    server.socket.settimeout(0.01)  # the stdlib's older way, still honoured
    assert server.handle_request() == "timed out"  # type: ignore[func-returns-value]
    server.server_close()


def test_handle_request_with_zero_timeout_on_a_manual_clock(tcp: ss.TCPServer) -> None:
    """timeout=0 makes one non-blocking turn, even on a clock that never moves."""
    calls: list[int] = []
    tcp.timeout = 0
    tcp.handle_timeout = lambda: calls.append(1)  # type: ignore[method-assign]
    tcp.handle_request()
    assert calls == [1]


def test_handle_request_serves_the_neighbours_while_waiting(reactor: Reactor) -> None:
    """While one server waits in handle_request(), servers sharing its reactor are served."""
    first = ss.TCPServer((HOST, 0), UpperLine, reactor=reactor)
    second = ss.TCPServer((HOST, 0), UpperLine, reactor=reactor)
    to_second = send(second.server_address, b"neighbour\n")
    to_first = send(first.server_address, b"mine\n")
    while not _readable(to_first):
        first.handle_request()
    assert read_all(to_second) == b"NEIGHBOUR\n"
    assert read_all(to_first) == b"MINE\n"
    first.server_close()
    second.server_close()


# ---------------------------------------------------------------- readiness and resources


def test_spurious_readiness_never_blocks(reactor: Reactor) -> None:
    """A readiness callback with nothing to accept or receive returns at once."""
    tcp = ss.TCPServer((HOST, 0), UpperLine, reactor=reactor)
    udp = ss.UDPServer((HOST, 0), UpperDatagram, reactor=reactor)
    tcp._reactor_readable()
    udp._reactor_readable()
    assert tcp.socket.gettimeout() is None  # the stdlib's view of the socket is unchanged
    tcp.server_close()
    udp.server_close()


def test_one_readiness_callback_takes_at_most_one_accept_batch(tcp: ss.TCPServer, reactor: Reactor) -> None:
    """A readable listener yields up to ACCEPT_BATCH requests per callback (the transport's batch); the rest wait."""
    clients = [send(tcp.server_address, b"%d\n" % i) for i in range(ACCEPT_BATCH + 1)]
    tcp._reactor_readable()
    assert sum(_readable(c) for c in clients) == ACCEPT_BATCH
    run_until(reactor, lambda: _readable(*clients))
    assert [read_all(c) for c in clients] == [b"%d\n" % i for i in range(ACCEPT_BATCH + 1)]


class RecordingSocket:
    """Wraps a server's listening socket; records the reserve descriptor at each raw ``_accept()``."""

    def __init__(self, server: ss.TCPServer) -> None:
        self.sock = server.socket
        self.server = server
        self.reserve_while_accepting: list[int] = []

    def _accept(self) -> tuple[int, object]:
        exhaustion = self.server._reactor_binding.exhaustion
        assert exhaustion is not None
        self.reserve_while_accepting.append(exhaustion.reserve)
        return self.sock._accept()  # type: ignore[attr-defined,no-any-return]

    def __getattr__(self, name: str) -> object:
        return getattr(self.sock, name)


def failing_get_request(server: ss.TCPServer, error: int, times: int = 1) -> list[OSError]:
    """Make ``server.get_request()`` raise ``error`` for its next ``times`` calls; the failures still due."""
    failures = [OSError(error, os.strerror(error)) for _ in range(times)]
    real_get_request = server.get_request

    def get_request() -> tuple[Any, Any]:
        if failures:
            raise failures.pop()
        return real_get_request()

    server.get_request = get_request  # type: ignore[method-assign]
    return failures


def is_devnull(fd: int) -> bool:
    """True if ``fd`` is an open descriptor of the null device."""
    return fd >= 0 and os.fstat(fd).st_rdev == os.stat(os.devnull).st_rdev


def test_out_of_descriptors_refuses_waiting_clients_with_the_reserve(
    tcp: ss.TCPServer, reactor: Reactor, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """EMFILE in get_request(): reserve given back, waiting clients refused, accepts paused, then resumed."""
    caplog.set_level(logging.DEBUG, logger="reactor.socketserver")
    exhaustion = tcp._reactor_binding.exhaustion
    assert exhaustion is not None and is_devnull(exhaustion.reserve)
    reserve = exhaustion.reserve
    recording = RecordingSocket(tcp)
    tcp.socket = recording  # type: ignore[assignment]
    waiting = [send(tcp.server_address, b"") for _ in range(3)]  # nothing unread: a refusal is EOF, not RST
    failures = failing_get_request(tcp, errno.EMFILE)
    run_until(reactor, lambda: not failures)
    assert [read_all(c) for c in waiting] == [b""] * 3  # refused at once: EOF, not a hang until a timeout
    assert recording.reserve_while_accepting == [-1] * 4  # three refused, then EAGAIN: reserve given back
    assert is_devnull(exhaustion.reserve) and exhaustion.reserve == reserve  # and taken again
    assert (exhaustion.stats.exhaustions, exhaustion.stats.refused) == (1, 3)
    assert registered_fds(reactor) == 0  # paused: no busy loop on a readable socket
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Too many open files" in warnings[0]
    client = send(tcp.server_address, b"later\n")
    reactor.run_once(0)
    assert not _readable(client)
    clock.advance(ACCEPT_BACKOFF)
    run_until(reactor, lambda: _readable(client))
    assert read_all(client) == b"LATER\n"
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(infos) == 1 and "accepting again (refused 3 clients" in infos[0]
    tcp.socket = recording.sock


def test_out_of_memory_pauses_then_serves_the_waiting_client(
    tcp: ss.TCPServer, reactor: Reactor, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """ENOMEM in get_request() is not relieved by a descriptor: accepting pauses, then the waiting client is served."""
    failures = failing_get_request(tcp, errno.ENOMEM)
    client = send(tcp.server_address, b"later\n")
    run_until(reactor, lambda: not failures)
    assert registered_fds(reactor) == 0 and "pausing accepts" in caplog.text
    reactor.run_once(0)
    assert not _readable(client)
    exhaustion = tcp._reactor_binding.exhaustion
    assert exhaustion is not None and exhaustion.stats.refused == 0
    clock.advance(ACCEPT_BACKOFF)
    run_until(reactor, lambda: _readable(client))
    assert read_all(client) == b"LATER\n"


def test_reserve_lives_with_a_stream_server_only(reactor: Reactor) -> None:
    """A stream server holds one reserve descriptor until server_close(); a datagram server holds none."""
    tcp = ss.TCPServer((HOST, 0), UpperLine, reactor=reactor)
    udp = ss.UDPServer((HOST, 0), UpperDatagram, reactor=reactor)
    tcp_policy, udp_policy = tcp._reactor_binding.exhaustion, udp._reactor_binding.exhaustion
    assert tcp_policy is not None and udp_policy is not None
    assert is_devnull(tcp_policy.reserve) and udp_policy.reserve == -1
    reserve = tcp_policy.reserve
    tcp.server_close()
    udp.server_close()
    assert tcp_policy.reserve == -1
    with pytest.raises(OSError):
        os.fstat(reserve)  # closed (the fixture's leak check counts descriptors too)


def test_private_reactor_is_closed_shared_one_is_left_open(reactor: Reactor) -> None:
    """server_close() closes a private reactor, and only unregisters from a shared one."""
    alone = ss.TCPServer((HOST, 0), UpperLine)
    other = ss.TCPServer((HOST, 0), UpperLine)
    assert alone.reactor is not other.reactor
    private = alone.reactor
    alone.server_close()
    other.server_close()
    assert private.is_closed() and other.reactor.is_closed()
    shared = ss.UDPServer((HOST, 0), UpperDatagram, reactor=reactor)
    fd = shared.fileno()
    shared.server_close()
    assert not reactor.is_closed() and reactor.remove_reader(fd) is False


# ---------------------------------------------------------------- handlers


def test_stream_handler_options(tcp: ss.TCPServer, reactor: Reactor) -> None:
    """timeout, disable_nagle_algorithm and a buffered wfile apply as in the stdlib."""
    seen: dict[str, Any] = {}

    class Options(ss.StreamRequestHandler):
        timeout = 3.0
        wbufsize = 4096
        disable_nagle_algorithm = True

        def handle(self) -> None:
            seen["timeout"] = self.connection.gettimeout()
            seen["nodelay"] = self.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            self.wfile.write(self.rfile.readline())  # flushed by finish()

    tcp.RequestHandlerClass = Options
    client = send(tcp.server_address, b"buffered\n")
    run_until(reactor, lambda: bool(seen))
    assert seen == {"timeout": 3.0, "nodelay": 1}
    assert read_all(client) == b"buffered\n"


# ---------------------------------------------------------------- threads


def test_threading_server_tracks_only_live_threads_and_joins_them() -> None:
    """Many requests leave no thread objects behind; server_close() joins a running handler."""
    handler_threads: list[threading.Thread] = []
    release = threading.Event()
    closing = threading.Event()

    class Record(UpperLine):
        def handle(self) -> None:
            handler_threads.append(threading.current_thread())
            super().handle()
            if self.rfile.readline() == b"wait\n":
                release.wait(10)  # bounded: a failing test leaves no thread behind
                finished.append(1)

    class Server(ss.ThreadingTCPServer):
        def server_close(self) -> None:
            closing.set()
            super().server_close()

    finished: list[int] = []
    server = Server((HOST, 0), Record)
    for i in range(30):
        client = send(server.server_address, b"%d\n" % i)
        client.shutdown(socket.SHUT_WR)
        server.handle_request()
        assert read_all(client) == b"%d\n" % i
        handler_threads[-1].join()
    assert len(server._threads) == 0
    waiting = send(server.server_address, b"last\nwait\n")
    server.handle_request()

    def release_once_closing() -> None:
        closing.wait(10)
        release.set()

    releaser = threading.Thread(target=release_once_closing)
    releaser.start()
    server.server_close()
    assert finished == [1]  # server_close() returned only after the handler ended
    releaser.join()
    assert read_all(waiting) == b"LAST\n"


def test_daemon_threads_are_not_tracked() -> None:
    """daemon_threads=True: request threads are daemons and server_close() does not wait for them."""
    handlers: list[threading.Thread] = []

    class Daemonic(ss.ThreadingTCPServer):
        daemon_threads = True

    class Check(UpperLine):
        def handle(self) -> None:
            assert threading.current_thread().daemon
            handlers.append(threading.current_thread())
            super().handle()

    server = Daemonic((HOST, 0), Check)
    client = send(server.server_address, b"d\n")
    server.handle_request()
    assert len(server._threads) == 0
    assert read_all(client) == b"D\n"
    server.server_close()
    # The client sees EOF at shutdown(SHUT_WR), just before the thread closes the
    # connection: wait for it here, or the socket would close during a later test.
    handlers[0].join(5)
    assert not handlers[0].is_alive()


# ---------------------------------------------------------------- processes


class _ChildReport(ss.StreamRequestHandler):
    """In the forked child: try to damage the parent's reactor, then report."""

    def handle(self) -> None:
        server = self.server
        epfd_state = "open"
        try:
            os.fstat(server.reactor.fileno())
        except OSError:
            epfd_state = "closed"
        # What a careless child could do: unregister everything it can see.
        server.reactor.remove_reader(self.server.neighbour_fd)  # type: ignore[attr-defined]
        server.server_close()
        self.wfile.write(f"{os.getpid()} {epfd_state}\n".encode())


@requires_fork
def test_forked_child_never_touches_the_parents_reactor(real_reactor: Reactor) -> None:
    """The child closes its epoll copy; its unregistering cannot reach the parent; pidfds reap it."""
    forking = ss.ForkingTCPServer((HOST, 0), _ChildReport, reactor=real_reactor)
    neighbour = ss.TCPServer((HOST, 0), UpperLine, reactor=real_reactor)
    forking.neighbour_fd = neighbour.fileno()  # type: ignore[attr-defined]
    for _ in range(2):
        client = send(forking.server_address, b"")
        run_until(real_reactor, lambda c=client: _readable(c))  # type: ignore[misc]
        pid, state = read_all(client).split()
        assert int(pid) != os.getpid() and state == b"closed"
        run_until(real_reactor, lambda: not forking.active_children)  # reaped by the reactor alone
    client = send(neighbour.server_address, b"still here\n")
    run_until(real_reactor, lambda: _readable(client))
    assert read_all(client) == b"STILL HERE\n"
    assert registered_fds(real_reactor) == 2
    forking.server_close()
    neighbour.server_close()
    assert registered_fds(real_reactor) == 0


class _HoldUntilBye(ss.StreamRequestHandler):
    """In the child: answer the line, then stay alive until the client says bye.

    (Not until EOF: the child inherits the test's own client socket, so the
    client closing its copy would not end the connection.)
    """

    timeout = 5.0  # a child orphaned by a failing test still ends

    def handle(self) -> None:
        self.wfile.write(self.rfile.readline().upper())
        self.rfile.readline()


@requires_fork
def test_max_children_pauses_accepting_until_a_child_exits(real_reactor: Reactor) -> None:
    """At max_children live children the listener is unwatched; a child's exit resumes it."""

    class Limited(ss.ForkingTCPServer):
        max_children = 1

    server = Limited((HOST, 0), _HoldUntilBye, reactor=real_reactor)
    first = send(server.server_address, b"first\n")
    run_until(real_reactor, lambda: _readable(first))
    assert first.recv(100) == b"FIRST\n"
    second = send(server.server_address, b"second\n")
    for _ in range(5):
        real_reactor.run_once(0.01)
    assert server.active_children is not None and len(server.active_children) == 1
    assert not _readable(second)
    first.sendall(b"bye\n")
    first.close()
    run_until(real_reactor, lambda: _readable(second))
    assert second.recv(100) == b"SECOND\n"
    second.sendall(b"bye\n")
    second.close()
    server.server_close()
    assert not server.active_children


@requires_fork
def test_forking_without_pidfd_falls_back_to_service_actions(
    real_reactor: Reactor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without os.pidfd_open, service_actions() reaps children with waitpid(WNOHANG)."""
    monkeypatch.delattr(os, "pidfd_open", raising=False)
    server = ss.ForkingTCPServer((HOST, 0), UpperLine, reactor=real_reactor)
    client = send(server.server_address, b"old\n")
    server.handle_request()
    assert read_all(client) == b"OLD\n"

    def reaped() -> bool:
        server.service_actions()
        return not server.active_children

    run_until(real_reactor, reaped)
    server.server_close()


@requires_fork
@pytest.mark.skipif(sys.version_info < (3, 12), reason="the standard library added the forking Unix servers in 3.12")
def test_forking_unix_servers_share_a_reactor_and_reap_by_pidfd(real_reactor: Reactor, tmp_path: Path) -> None:
    """ForkingUnixStreamServer and ForkingUnixDatagramServer answer from children, on one reactor, reaped at once."""
    stream = ss.ForkingUnixStreamServer(str(tmp_path / "s"), UpperLine, reactor=real_reactor)
    dgram = ss.ForkingUnixDatagramServer(str(tmp_path / "d"), UpperDatagram, reactor=real_reactor)
    client = send(stream.server_address, b"stream\n", socket.AF_UNIX)
    datagram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # socket-ok: the test's own client
    datagram.settimeout(5)
    datagram.bind(str(tmp_path / "client"))
    datagram.sendto(b"datagram", dgram.server_address)
    run_until(real_reactor, lambda: _readable(client) and _readable(datagram))
    assert read_all(client) == b"STREAM\n"
    with datagram:
        assert datagram.recv(100) == b"DATAGRAM"
    run_until(real_reactor, lambda: not stream.active_children and not dgram.active_children)
    stream.server_close()
    dgram.server_close()
    assert registered_fds(real_reactor) == 0


# ---------------------------------------------------------------- embedding


def test_tcp_server_served_from_an_asyncio_loop() -> None:
    """A reactor.socketserver.TCPServer answers from inside asyncio, through the reactor's fileno()."""

    class Greeter(ss.StreamRequestHandler):
        def handle(self) -> None:
            self.wfile.write(b"hello from the reactor\n")

    async def main() -> bytes:
        with Reactor() as reactor:
            server = ss.TCPServer((HOST, 0), Greeter, reactor=reactor)
            driver = attach_asyncio(reactor)
            try:
                reader, writer = await asyncio.open_connection(*server.server_address)
                line = await asyncio.wait_for(reader.readline(), 5)
                assert await asyncio.wait_for(reader.read(), 5) == b""
                writer.close()
                await writer.wait_closed()
            finally:
                driver.close()
                server.server_close()
            assert reactor.connections == {}
        return line

    assert asyncio.run(main()) == b"hello from the reactor\n"


def test_shutdown_before_serve_forever_returns_at_once(reactor: Reactor) -> None:
    """shutdown() with no serve_forever() running returns at once; a later serve_forever() returns too."""
    server = ss.TCPServer((HOST, 0), UpperLine, reactor=reactor)
    server.shutdown()  # the standard library would block here for ever
    server.serve_forever()  # sees the pending request and returns
    server.server_close()
