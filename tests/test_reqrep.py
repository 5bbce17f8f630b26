"""RequestServer: wire format, many servers per thread, limits, faults, handlers."""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
from collections.abc import Iterator

import pytest
from conftest import EmfileSocket, run_until

from reactor import Future, ManualClock, Reactor, RequestFailed, RequestServer, do_request


def recv_all(sock: socket.socket) -> bytes:
    """Read a blocking socket until EOF."""
    chunks = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def connect(server: RequestServer) -> socket.socket:
    """A plain blocking client socket connected to ``server``."""
    return socket.create_connection(server.server_address[:2], timeout=5)


class Upper(RequestServer):
    def handle_request(self, request: str) -> str:
        return request.upper()


class Later(RequestServer):
    """Answers with a future that the test completes (or not)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.pending: list[Future[str]] = []
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def handle_request(self, request: str) -> Future[str]:
        fut: Future[str] = self.reactor.create_future()
        self.pending.append(fut)
        return fut


@pytest.fixture
def server(reactor: Reactor) -> Iterator[RequestServer]:
    s = RequestServer("localhost:0", reactor=reactor)
    yield s
    s.close()


# ------------------------------------------------------------ basics


def test_bound_address_is_known_after_construction(server: RequestServer) -> None:
    """Port 0 works: server_address is the bound tuple, address the host:port string."""
    host, port = server.server_address
    assert host == "127.0.0.1" and port > 0
    assert server.address == f"127.0.0.1:{port}"


@pytest.mark.parametrize(
    ("sent", "reply"),
    [
        (b"hello\r\n", b"Requested: hello\r\n"),  # request + CRLF
        (b"no terminator", b"Requested: no terminator\r\n"),  # the request ends at EOF, as in yoton
    ],
)
def test_exact_wire_bytes(reactor: Reactor, server: RequestServer, sent: bytes, reply: bytes) -> None:
    """Request, half-close -> reply + CRLF, then the server closes."""
    c = connect(server)
    c.sendall(sent)
    c.shutdown(socket.SHUT_WR)
    run_until(reactor, lambda: server.statistics()["completed"] == 1)
    assert recv_all(c) == reply
    c.close()
    assert reactor.connections == {}


def test_unicode_both_ways(reactor: Reactor) -> None:
    """UTF-8 text survives both directions."""
    s = Upper("localhost:0", reactor=reactor)
    c = connect(s)
    c.sendall("grüße ☃ 東京\r\n".encode())
    c.shutdown(socket.SHUT_WR)
    run_until(reactor, lambda: s.statistics()["completed"] == 1)
    assert recv_all(c).decode() == "GRÜSSE ☃ 東京\r\n"
    c.close()
    s.close()


def test_request_arriving_in_pieces(reactor: Reactor, server: RequestServer) -> None:
    """A request dribbled in byte by byte is assembled (the row waits in READING)."""
    c = connect(server)
    run_until(reactor, lambda: server.statistics()["accepted"] == 1)
    [row] = reactor.connections.values()
    assert row.state == "OPEN" and row in server.connections()
    assert row.started == reactor.time() and row.deadline == row.started + server.timeout
    assert server.statistics()["waited"] == 1
    for b in b"abc\r\n":
        c.send(bytes([b]))
        reactor.run_once(0.05)
    run_until(reactor, lambda: server.statistics()["completed"] == 1)
    assert recv_all(c) == b"Requested: abc\r\n"
    c.close()


def test_async_val_alias_and_default_handler(reactor: Reactor) -> None:
    """async_val= is accepted (newer yoton spelling); the default handler echoes."""
    s = RequestServer("localhost:0", async_val=True, reactor=reactor)
    assert s.async_ is True
    fut = reactor.request(s.address, "x", timeout=5)
    assert reactor.run_until_complete(fut, 5) == "Requested: x"
    s.close()


def test_invalid_limits_raise(reactor: Reactor) -> None:
    """Nonsense limits are ValueErrors naming the parameter."""
    for kwargs in ({"max_request_size": 0}, {"timeout": 0}, {"max_connections": 0}):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            RequestServer("localhost:0", reactor=reactor, **kwargs)  # type: ignore[arg-type]


def test_bad_address_raises(reactor: Reactor) -> None:
    """A malformed address is a ValueError quoting it."""
    with pytest.raises(ValueError, match="nocolon"):
        RequestServer("nocolon", reactor=reactor)


def test_servers_without_reactor_share_the_default() -> None:
    """Servers built without reactor= share one default reactor."""
    a = RequestServer("localhost:0")
    b = RequestServer("localhost:0")
    try:
        assert a.reactor is b.reactor
    finally:
        a.close()
        b.close()


# ------------------------------------------------------------ many servers, many requests


def test_three_servers_one_thread_200_concurrent_requests(reactor: Reactor) -> None:
    """Three servers on three ports in one thread answer 200 concurrent requests correctly."""

    class Tag(RequestServer):
        def __init__(self, tag: str, **kw: object) -> None:
            self.tag = tag
            super().__init__("localhost:0", reactor=reactor, **kw)  # type: ignore[arg-type]

        def handle_request(self, request: str) -> str:
            return f"{self.tag}:{request}"

    servers = [Tag(t) for t in "abc"]
    futures = []
    for i in range(200):
        s = servers[i % 3]
        futures.append((s.tag, i, reactor.request(s.address, str(i), timeout=10)))
    run_until(reactor, lambda: all(f.done() for _, _, f in futures), turns=5000)
    for tag, i, fut in futures:
        assert fut.result() == f"{tag}:{i}"
    assert sum(s.statistics()["completed"] for s in servers) == 200
    assert threading.active_count() == 1 or all(t.name != "reactor" for t in threading.enumerate())
    for s in servers:
        s.close()


def test_thousand_requests_in_flight(reactor: Reactor, server: RequestServer) -> None:
    """1,000 request() futures in flight on one reactor all complete."""
    futures = [reactor.request(server.address, f"r{i}", timeout=30) for i in range(1000)]
    assert len(reactor.connections) >= 1000
    run_until(reactor, lambda: all(f.done() for f in futures), turns=20000)
    assert [f.result() for f in futures] == [f"Requested: r{i}" for i in range(1000)]
    assert server.statistics()["completed"] == 1000
    assert reactor.connections == {}


def test_start_runs_one_thread_for_all_servers() -> None:
    """start() on several servers of one reactor starts one thread; it ends when the last is stopped."""
    r = Reactor()
    a = RequestServer("localhost:0", reactor=r)
    b = Upper("localhost:0", reactor=r)
    before = threading.active_count()
    a.start()
    b.start()
    assert threading.active_count() == before + 1
    assert do_request(a.address, "one", 5) == "Requested: one"
    assert do_request(b.address, "two", 5) == "TWO"
    a.stop()  # ends a only: the thread goes on serving b
    assert do_request(b.address, "three", 5) == "THREE"
    b.stop()  # the last started server: the thread ends
    b.join(5)
    assert threading.active_count() == before
    a.close()
    b.close()
    r.close()


def test_run_serves_until_stop(reactor: Reactor) -> None:
    """run() serves in the calling thread; a handler can stop it."""

    class StopAfter(RequestServer):
        def handle_request(self, request: str) -> str:
            self.stop()
            return "bye"

    s = StopAfter("localhost:0", reactor=reactor)
    fut = reactor.request(s.address, "x", timeout=5)
    s.run()
    run_until(reactor, fut.done)
    assert fut.result() == "bye"
    s.close()


# ------------------------------------------------------------ large messages, slow peers


class SmallSendBuffer:
    """Wraps a listener so accepted sockets get an 8 KiB send buffer: replies go out in partial writes."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def _accept(self) -> tuple[int, object]:
        fd, peer = self.sock._accept()  # type: ignore[attr-defined]
        with socket.socket(fileno=os.dup(fd)) as conn:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
        return fd, peer

    def __getattr__(self, name: str) -> object:
        return getattr(self.sock, name)


def test_one_mib_request_and_reply_with_partial_writes(reactor: Reactor, server: RequestServer) -> None:
    """A 1 MiB request and reply pass through partial writes; a slow reader blocks no one."""
    big = "x" * (1 << 20)
    listener = server._listener._sock
    server._listener._sock = SmallSendBuffer(listener)  # type: ignore[assignment]
    c = socket.socket()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    c.connect(server.server_address)
    c.setblocking(False)
    out = memoryview(big.encode() + b"\r\n")
    while out:
        try:
            out = out[c.send(out) :]
        except BlockingIOError:
            pass
        reactor.run_once(0)
    c.shutdown(socket.SHUT_WR)
    run_until(reactor, lambda: any(r.state == "CLOSING" for r in reactor.connections.values()), turns=200)
    # The big reply is stuck on a reader that does not read: others are still served.
    fut = reactor.request(server.address, "small", timeout=5)
    assert reactor.run_until_complete(fut, 5) == "Requested: small"
    got = bytearray()
    while True:
        reactor.run_once(0)
        try:
            data = c.recv(65536)
        except BlockingIOError:
            continue
        if not data:
            break
        got += data
    assert bytes(got) == ("Requested: " + big).encode() + b"\r\n"
    assert server.statistics()["completed"] == 2
    server._listener._sock = listener
    c.close()


# ------------------------------------------------------------ limits


def test_oversized_request_is_rejected_logged_and_counted(reactor: Reactor, caplog: pytest.LogCaptureFixture) -> None:
    """A request over max_request_size closes the connection with a warning and counts it."""
    s = RequestServer("localhost:0", reactor=reactor, max_request_size=100)
    c = connect(s)
    with caplog.at_level(logging.WARNING, logger="reactor.reqrep"):
        c.sendall(b"y" * 500)
        run_until(reactor, lambda: s.statistics()["rejected"] == 1)
    assert "max_request_size" in caplog.text
    assert recv_all(c) == b""
    assert reactor.connections == {}
    ok = reactor.request(s.address, "fine", timeout=5)
    assert reactor.run_until_complete(ok, 5) == "Requested: fine"
    c.close()
    s.close()


def test_ten_mib_without_terminator_keeps_server_serving(reactor: Reactor, server: RequestServer) -> None:
    """10 MiB with no terminator: rejected at the 1 MiB default; the server keeps serving."""
    c = connect(server)
    c.setblocking(False)
    blob = memoryview(b"z" * (10 << 20))
    sent = 0
    while sent < len(blob) and server.statistics()["rejected"] == 0:
        try:
            sent += c.send(blob[sent : sent + 65536])
        except BlockingIOError:
            pass
        except (BrokenPipeError, ConnectionResetError):
            break
        reactor.run_once(0)
    run_until(reactor, lambda: server.statistics()["rejected"] == 1)
    assert reactor.connections == {}
    fut = reactor.request(server.address, "next", timeout=5)
    assert reactor.run_until_complete(fut, 5) == "Requested: next"
    c.close()


def test_silent_client_times_out(reactor: Reactor, clock: ManualClock) -> None:
    """A client that never sends is closed at the deadline and counted."""
    s = RequestServer("localhost:0", reactor=reactor, timeout=5)
    c = connect(s)
    run_until(reactor, lambda: s.statistics()["accepted"] == 1)
    clock.advance(4.9)
    reactor.run_once(0)
    assert s.statistics()["active"] == 1
    clock.advance(0.2)
    reactor.run_once(0)
    assert s.statistics()["timeouts"] == 1 and s.statistics()["active"] == 0
    assert reactor.connections == {}
    assert recv_all(c) == b""
    c.close()
    s.close()


def test_slowloris_cannot_hold_a_connection(reactor: Reactor, clock: ManualClock) -> None:
    """Dripping a byte per second does not extend the deadline: the row is closed on time."""
    s = RequestServer("localhost:0", reactor=reactor, timeout=5)
    c = connect(s)
    run_until(reactor, lambda: s.statistics()["accepted"] == 1)
    for _ in range(10):
        try:
            c.send(b"a")
        except OSError:
            break
        clock.advance(1)
        reactor.run_once(0.01)
    assert s.statistics()["timeouts"] == 1
    assert reactor.connections == {}
    c.close()
    s.close()


def test_timeouts_expire_in_order_for_many_rows(reactor: Reactor, clock: ManualClock) -> None:
    """Rows accepted at different times each expire at their own deadline."""
    s = RequestServer("localhost:0", reactor=reactor, timeout=3)
    clients = []
    for i in range(3):
        clients.append(connect(s))
        run_until(reactor, lambda n=i + 1: s.statistics()["accepted"] == n)
        clock.advance(1)
        reactor.run_once(0)
    # accepted at t=0,1,2; now t=3: the first expires
    assert s.statistics()["timeouts"] == 1
    clock.advance(1)
    reactor.run_once(0)
    assert s.statistics()["timeouts"] == 2
    clock.advance(1)
    reactor.run_once(0)
    assert s.statistics()["timeouts"] == 3 and reactor.connections == {}
    for c in clients:
        c.close()
    s.close()


def test_max_connections_pauses_and_resumes_accepting(reactor: Reactor) -> None:
    """At the limit the listener stops accepting; below it, it accepts again."""
    s = RequestServer("localhost:0", reactor=reactor, max_connections=2)
    c1, c2, c3 = connect(s), connect(s), connect(s)
    for _ in range(20):
        reactor.run_once(0.01)
    assert s.statistics()["accepted"] == 2 and s.statistics()["active"] == 2
    assert s.statistics()["accept_pauses"] >= 1
    assert reactor.remove_reader(s._listener._sock) is False  # the listener is not registered
    c1.sendall(b"one\r\n")
    run_until(reactor, lambda: s.statistics()["completed"] == 1)
    run_until(reactor, lambda: s.statistics()["accepted"] == 3)  # c3 accepted once c1 finished
    for c in (c2, c3):
        c.sendall(b"more\r\n")
    run_until(reactor, lambda: s.statistics()["completed"] == 3)
    for c in (c1, c2, c3):
        c.close()
    s.close()


def test_emfile_pauses_accepting_without_spinning(
    reactor: Reactor, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """EMFILE on accept pauses accepting for accept_backoff, then resumes; no busy loop."""
    s = RequestServer("localhost:0", reactor=reactor, accept_backoff=0.5)
    fake = EmfileSocket(s._listener._sock)
    s._listener._sock = fake  # type: ignore[assignment]
    c = connect(s)
    with caplog.at_level(logging.WARNING, logger="reactor.reqrep"):
        run_until(reactor, lambda: fake.calls >= 1)
        for _ in range(50):
            reactor.run_once(0)
    assert fake.calls == 2  # the failure, one retry with the reserve freed; then no spin
    assert "Too many open files" in caplog.text
    fake.fail = False
    clock.advance(0.5)
    c.sendall(b"later\r\n")
    run_until(reactor, lambda: s.statistics()["completed"] == 1)
    assert recv_all(c) == b"Requested: later\r\n"
    s._listener._sock = fake.sock
    c.close()
    s.close()


# ------------------------------------------------------------ faults


def test_client_reset_mid_request(reactor: Reactor, server: RequestServer) -> None:
    """A client that resets mid-request costs only its own row."""
    c = connect(server)
    c.send(b"partial")
    run_until(reactor, lambda: server.statistics()["accepted"] == 1)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()  # RST
    run_until(reactor, lambda: reactor.connections == {})
    fut = reactor.request(server.address, "still here", timeout=5)
    assert reactor.run_until_complete(fut, 5) == "Requested: still here"


def test_client_disconnects_before_reply(reactor: Reactor) -> None:
    """The client leaves while a (future) reply is pending; the row is cleaned up, others served."""
    s = Later("localhost:0", reactor=reactor)
    pending = s.pending
    c = connect(s)
    c.sendall(b"q\r\n")
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    run_until(reactor, lambda: len(pending) == 1)
    c.close()
    pending[0].set_result("too late")
    run_until(reactor, lambda: reactor.connections == {})
    assert s.statistics()["active"] == 0
    c2 = connect(s)
    c2.sendall(b"q2\r\n")
    run_until(reactor, lambda: len(pending) == 2)
    pending[1].set_result("on time")
    run_until(reactor, lambda: s.statistics()["completed"] >= 1)
    assert recv_all(c2) == b"on time\r\n"
    c2.close()
    s.close()


def test_handler_raising_closes_only_its_connection(reactor: Reactor, caplog: pytest.LogCaptureFixture) -> None:
    """A handler that raises is logged with traceback; other connections are unaffected."""

    class Picky(RequestServer):
        def handle_request(self, request: str) -> str:
            if request == "bad":
                raise ValueError("I do not like this request")
            return "ok " + request

    s = Picky("localhost:0", reactor=reactor)
    with caplog.at_level(logging.ERROR, logger="reactor.reqrep"):
        bad = reactor.request(s.address, "bad", timeout=5)
        good = reactor.request(s.address, "good", timeout=5)
        assert reactor.run_until_complete(good, 5) == "ok good"
        with pytest.raises(RequestFailed):  # closed without a reply: never an empty reply
            reactor.run_until_complete(bad, 5)
    assert "I do not like this request" in caplog.text
    assert any(r.exc_info for r in caplog.records)
    assert s.statistics()["errors"] == 1
    s.close()


def test_handler_returning_non_string_is_an_error(reactor: Reactor, caplog: pytest.LogCaptureFixture) -> None:
    """A handler returning something else than str (or a Future) is logged; the connection closes."""

    class Wrong(RequestServer):
        def handle_request(self, request: str) -> str:
            return 42  # type: ignore[return-value]

    s = Wrong("localhost:0", reactor=reactor)
    with caplog.at_level(logging.ERROR, logger="reactor.reqrep"):
        fut = reactor.request(s.address, "x", timeout=5)
        with pytest.raises(RequestFailed):
            reactor.run_until_complete(fut, 5)
    assert "int, not str" in caplog.text
    assert s.statistics()["errors"] == 1
    s.close()


def test_invalid_utf8_request_is_rejected(reactor: Reactor, server: RequestServer) -> None:
    """Bytes that are not UTF-8 close the connection and count as rejected."""
    c = connect(server)
    c.sendall(b"\xff\xfe\r\n")
    run_until(reactor, lambda: server.statistics()["rejected"] == 1)
    assert recv_all(c) == b""
    c.close()


def test_future_reply_and_failing_future(reactor: Reactor, caplog: pytest.LogCaptureFixture) -> None:
    """A Future reply is sent when it resolves; a failed one closes the connection and is logged."""

    class Deferred(RequestServer):
        def handle_request(self, request: str) -> Future[str]:
            fut: Future[str] = self.reactor.create_future()
            if request == "fail":
                self.reactor.call_soon(fut.set_exception, KeyError("nope"))
            else:
                self.reactor.call_soon(fut.set_result, "later " + request)
            return fut

    s = Deferred("localhost:0", reactor=reactor)
    ok = reactor.request(s.address, "x", timeout=5)
    with caplog.at_level(logging.ERROR, logger="reactor.reqrep"):
        bad = reactor.request(s.address, "fail", timeout=5)
        assert reactor.run_until_complete(ok, 5) == "later x"
        with pytest.raises(RequestFailed):
            reactor.run_until_complete(bad, 5)
    assert "nope" in caplog.text
    s.close()


def test_async_slow_handler_does_not_delay_others(real_reactor: Reactor) -> None:
    """async_=True: a blocked handler in the pool does not delay other connections."""
    release = threading.Event()

    class Slow(RequestServer):
        def handle_request(self, request: str) -> str:
            if request == "slow":
                release.wait(10)
            return "done " + request

    s = Slow("localhost:0", async_=True, reactor=real_reactor, workers=4)
    slow = real_reactor.request(s.address, "slow", timeout=10)
    fast = real_reactor.request(s.address, "fast", timeout=10)
    assert real_reactor.run_until_complete(fast, 5) == "done fast"
    assert not slow.done()
    release.set()
    assert real_reactor.run_until_complete(slow, 5) == "done slow"
    s.close()


def test_async_handler_error_is_logged(real_reactor: Reactor, caplog: pytest.LogCaptureFixture) -> None:
    """async_=True: an exception in the worker is logged and the connection closed."""

    class Boom(RequestServer):
        def handle_request(self, request: str) -> str:
            raise RuntimeError("worker boom")

    s = Boom("localhost:0", async_=True, reactor=real_reactor)
    with caplog.at_level(logging.ERROR, logger="reactor.reqrep"):
        fut = real_reactor.request(s.address, "x", timeout=5)
        with pytest.raises(RequestFailed):
            real_reactor.run_until_complete(fut, 5)
    assert "worker boom" in caplog.text and s.statistics()["errors"] == 1
    s.close()


# ------------------------------------------------------------ logging, counters, lifecycle


def test_verbose_logs_each_accepted_connection(reactor: Reactor, caplog: pytest.LogCaptureFixture) -> None:
    """verbose=1 logs every accepted connection through logging."""
    s = RequestServer("localhost:0", verbose=1, reactor=reactor)
    with caplog.at_level(logging.INFO, logger="reactor.reqrep"):
        fut = reactor.request(s.address, "x", timeout=5)
        reactor.run_until_complete(fut, 5)
    assert "accepted connection from" in caplog.text
    s.close()


def test_statistics_counters(reactor: Reactor, server: RequestServer) -> None:
    """statistics() reports accepted, active, completed, errors, timeouts, rejected."""
    for i in range(3):
        reactor.run_until_complete(reactor.request(server.address, str(i), timeout=5), 5)
    stats = server.statistics()
    assert stats["accepted"] == 3 and stats["completed"] == 3 and stats["active"] == 0
    assert stats["errors"] == stats["timeouts"] == stats["rejected"] == 0
    assert stats["waited"] <= stats["accepted"]


def test_drain_waits_for_inflight_requests(reactor: Reactor) -> None:
    """drain() stops accepting and completes when the last open connection is done."""
    s = Later("localhost:0", reactor=reactor)
    pending = s.pending
    req = reactor.request(s.address, "x", timeout=5)
    run_until(reactor, lambda: len(pending) == 1)
    drained = s.drain()
    reactor.run_once(0)
    assert not drained.done()
    pending[0].set_result("finished")
    assert reactor.run_until_complete(req, 5) == "finished"
    run_until(reactor, drained.done)
    s.close()


def test_close_closes_open_connections(reactor: Reactor, server: RequestServer) -> None:
    """close() closes the listener and every row of the server; the table empties."""
    c = connect(server)
    run_until(reactor, lambda: server.statistics()["accepted"] == 1)
    server.close()
    server.close()  # idempotent
    assert reactor.connections == {}
    assert recv_all(c) == b""
    c.close()
    with pytest.raises(RuntimeError, match="closed"):
        server.run()


def test_unclosed_server_warns(reactor: Reactor) -> None:
    """Dropping an open server emits ResourceWarning."""
    s = RequestServer("localhost:0", reactor=reactor)
    reactor.remove_reader(s._listener._sock)
    with pytest.warns(ResourceWarning):
        s.__del__()
    s.close()


def test_default_socket_timeout_does_not_make_accept_block(real_reactor: Reactor) -> None:
    """With socket.setdefaulttimeout() set, a silent client still costs the reactor no wait."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(5.0)
    try:
        s = RequestServer("localhost:0", reactor=real_reactor)
        silent = connect(s)
        run_until(real_reactor, lambda: s.statistics()["accepted"] == 1)
        t0 = real_reactor.time()
        fut = real_reactor.request(s.address, "quick", timeout=5)
        assert real_reactor.run_until_complete(fut, 5) == "Requested: quick"
        assert real_reactor.time() - t0 < 1.0
        silent.close()
        s.close()
    finally:
        socket.setdefaulttimeout(old)


def test_verbose_is_visible_on_the_console_without_logging_config() -> None:
    """As in yoton, verbose shows accepted connections on stderr when the app configured no logging."""
    import subprocess
    import sys

    code = (
        "from reactor import Reactor, RequestServer\n"
        "r = Reactor()\n"
        "s = RequestServer('localhost:0', verbose=1, reactor=r)\n"
        "print(r.run_until_complete(r.request(s.address, 'hi', timeout=5), 5))\n"
        "s.close(); r.close()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20, check=True)
    assert out.stdout.strip() == "Requested: hi"
    assert "accepted connection from" in out.stderr


def test_a_future_reply_that_never_comes_times_out(reactor: Reactor, clock: ManualClock) -> None:
    """A handler whose Future never resolves: the connection is closed after timeout, counted, row gone."""

    class Never(RequestServer):
        def handle_request(self, request: str) -> Future[str]:
            return self.reactor.create_future()

    s = Never("localhost:0", reactor=reactor, timeout=3)
    c = connect(s)
    c.sendall(b"hello\r\n")
    run_until(reactor, lambda: s.statistics()["accepted"] == 1 and all(r.timer is not None for r in s.connections()))
    clock.advance(3)
    run_until(reactor, lambda: s.statistics()["timeouts"] == 1)
    assert s.connections() == [] and recv_all(c) == b""
    c.close()
    s.close()


# ------------------------------------------------------------ failures are never replies


def test_failed_request_is_an_error_not_an_empty_reply(reactor: Reactor) -> None:
    """A rejected request fails with RequestFailed (both clients); a real empty reply is still ''."""

    class Empty(RequestServer):
        def handle_request(self, request: str) -> str:
            return ""

    small = RequestServer("localhost:0", reactor=reactor, max_request_size=4)
    fut = reactor.request(small.address, "far too long", timeout=5)
    with pytest.raises(RequestFailed, match="without replying"):
        reactor.run_until_complete(fut, 5)
    assert isinstance(fut.exception(), RuntimeError) and isinstance(fut.exception(), ConnectionError)
    empty = Empty("localhost:0", reactor=reactor)
    assert reactor.run_until_complete(reactor.request(empty.address, "x", timeout=5), 5) == ""
    small.start()
    try:
        with pytest.raises(RequestFailed):
            do_request(small.address, "far too long", timeout=5)
        assert do_request(small.address, "ok", timeout=5) == "Requested: ok"
    finally:
        small.stop()
        small.join(5)
    small.close()
    empty.close()


def test_default_request_limit_admits_eight_mib(reactor: Reactor) -> None:
    """yoton had no limit: the default max_request_size admits an 8 MiB request."""
    s = RequestServer("localhost:0", reactor=reactor)
    assert s.max_request_size >= 8 << 20
    big = "y" * (8 << 20)
    reply = reactor.run_until_complete(reactor.request(s.address, big, timeout=30), 30)
    assert reply == "Requested: " + big
    s.close()


def test_unencodable_reply_is_a_handler_error(reactor: Reactor, caplog: pytest.LogCaptureFixture) -> None:
    """A reply with a lone surrogate is reported like a handler error; the row does not leak."""

    class Surrogate(RequestServer):
        def handle_request(self, request: str) -> str:
            return "bad \udc80 reply"

    s = Surrogate("localhost:0", reactor=reactor)
    with caplog.at_level(logging.ERROR):
        with pytest.raises(RequestFailed):
            reactor.run_until_complete(reactor.request(s.address, "x", timeout=5), 5)
    assert "not encodable" in caplog.text and s.statistics()["errors"] == 1
    run_until(reactor, lambda: not s.connections())
    s.close()


def test_reply_over_max_reply_size_is_refused(reactor: Reactor) -> None:
    """A reply longer than max_reply_size is never buffered: a handler error, the client gets RequestFailed."""

    class Huge(RequestServer):
        def handle_request(self, request: str) -> str:
            return "z" * 5000

    s = Huge("localhost:0", reactor=reactor, max_reply_size=4096)
    with pytest.raises(RequestFailed):
        reactor.run_until_complete(reactor.request(s.address, "x", timeout=5), 5)
    assert s.statistics()["errors"] == 1 and s.statistics()["completed"] == 0
    s.close()


def test_trickling_reader_is_cut_by_the_whole_exchange_deadline(reactor: Reactor, clock: ManualClock) -> None:
    """A reader that takes the reply out a little at a time is closed at timeout: progress does not push it back."""

    class Big(RequestServer):
        def handle_request(self, request: str) -> str:
            return "r" * (4 << 20)

    s = Big("localhost:0", reactor=reactor, timeout=10)
    c = socket.socket()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.connect(s.server_address)
    c.sendall(b"go\r\n")
    run_until(reactor, lambda: any(r.state == "CLOSING" for r in s.connections()))
    c.setblocking(False)
    for _ in range(9):  # 9 s of steady progress, 4 KiB at a time
        clock.advance(1)
        c.recv(4096)
        reactor.run_once(0)
        assert s.connections(), "closed too early"
    clock.advance(1.5)
    run_until(reactor, lambda: s.statistics()["timeouts"] == 1)
    assert not s.connections()
    c.close()
    s.close()


class _Draining:
    """A server whose drain() is a future the test completes."""

    def __init__(self, reactor: Reactor) -> None:
        self.future: Future[None] = Future(reactor)
        self.grace: float | None = None

    def drain(self, grace: float) -> Future[None]:
        self.grace = grace
        return self.future


def tick(r: Reactor, clock: ManualClock) -> None:
    """Move the manual clock 0.25 s every turn, from the next turn on."""

    def again() -> None:
        clock.advance(0.25)
        r.call_soon(again)

    r.call_soon(again)


def test_stop_when_drained_waits_for_every_drain_and_no_longer_than_grace_plus_a_second(clock: ManualClock) -> None:
    """The reactor stops after the last drain; at once with no server; at grace + 1 s if a drain overruns."""
    from reactor.reqrep import stop_when_drained

    with Reactor(clock=clock) as r:
        r.call_soon(stop_when_drained, r, [], 5.0)
        r.run()  # returns: nothing to drain

        servers = [_Draining(r), _Draining(r)]
        r.call_soon(stop_when_drained, r, servers, 5.0)
        r.call_soon(servers[0].future.set_result, None)
        r.call_later(1.0, servers[1].future.set_result, None)
        tick(r, clock)
        start = r.time()
        r.run()
        assert [s.grace for s in servers] == [5.0, 5.0]
        assert 1.0 <= r.time() - start <= 1.5  # stopped when the second drain completed

    with Reactor(clock=clock) as r:
        stuck = _Draining(r)
        r.call_soon(stop_when_drained, r, [stuck], 2.0)
        tick(r, clock)
        start = r.time()
        r.run()
        assert not stuck.future.done()
        assert 3.0 <= r.time() - start <= 3.5  # grace + 1 s


class Huge(RequestServer):
    """Replies with 16 MiB: more than the kernel buffers hold for a client that does not read."""

    def handle_request(self, request: str) -> str:
        return "x" * (16 << 20)


def read_until_closed(sock: socket.socket) -> tuple[int, BaseException | None]:
    """Read a blocking socket to its end: the bytes received, and the error that ended it (None: an EOF)."""
    received = 0
    while True:
        try:
            data = sock.recv(1 << 20)
        except OSError as exc:
            return received, exc
        if not data:
            return received, None
        received += len(data)


def test_deadline_resets_a_client_that_never_reads(reactor: Reactor, clock: ManualClock) -> None:
    """At the deadline a reply the client never read is dropped with a reset, not left to the kernel."""
    s = Huge("localhost:0", reactor=reactor, timeout=5)
    c = connect(s)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    c.sendall(b"give\r\n")
    run_until(reactor, lambda: s.statistics()["accepted"] == 1 and reactor.connections != {})
    (row,) = reactor.connections.values()
    assert row.get_write_buffer_size() > 0  # the rest of the reply waits for a reader that never comes
    clock.advance(5.1)
    reactor.run_once(0)
    assert s.statistics()["timeouts"] == 1 and reactor.connections == {}
    received, error = read_until_closed(c)
    assert isinstance(error, ConnectionResetError), (received, error)
    assert received < 16 << 20
    c.close()
    s.close()


def test_deadline_of_a_silent_client_is_still_an_orderly_close(reactor: Reactor, clock: ManualClock) -> None:
    """A client that sent nothing and is owed nothing gets an EOF at the deadline, not a reset."""
    s = Huge("localhost:0", reactor=reactor, timeout=5)
    c = connect(s)
    run_until(reactor, lambda: s.statistics()["accepted"] == 1)
    clock.advance(5.1)
    reactor.run_once(0)
    assert s.statistics()["timeouts"] == 1
    assert read_until_closed(c) == (0, None)
    c.close()
    s.close()
