"""Reactor.request() and do_request(): wire bytes, timeouts, refusals, threads."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_until

from reactor import Reactor, RequestRefused, RequestServer, do_request


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A plain blocking listening socket standing in for any line-based server."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    yield s
    s.close()


def addr(sock: socket.socket) -> str:
    host, port = sock.getsockname()
    return f"{host}:{port}"


def test_request_exact_wire_bytes(reactor: Reactor, listener: socket.socket) -> None:
    """request() sends request + CRLF, half-closes, and reads the reply up to CRLF."""
    fut = reactor.request(addr(listener), "héllo", timeout=5)
    run_until(reactor, lambda: any(r.state == "WRITE_CLOSED" for r in reactor.connections.values()))
    conn, _ = listener.accept()
    conn.settimeout(5)
    received = b""
    while True:
        data = conn.recv(1024)
        if not data:
            break  # the client half-closed
        received += data
    assert received == "héllo\r\n".encode()
    conn.sendall("répondu\r\ntrailing".encode())
    assert reactor.run_until_complete(fut, 5) == "répondu"
    conn.close()
    assert reactor.connections == {}


def test_request_reply_ends_at_eof(reactor: Reactor, listener: socket.socket) -> None:
    """A reply without CRLF ends at EOF."""
    fut = reactor.request(addr(listener), "q", timeout=5)
    run_until(reactor, lambda: any(r.state == "WRITE_CLOSED" for r in reactor.connections.values()))
    conn, _ = listener.accept()
    assert conn.recv(1024) == b"q\r\n"
    conn.sendall(b"until eof")
    conn.close()
    assert reactor.run_until_complete(fut, 5) == "until eof"


def test_request_timeout_fails_future_and_removes_row(reactor: Reactor, clock: object, listener: socket.socket) -> None:
    """A server that never answers: TimeoutError after the timeout, and the row is gone."""
    fut = reactor.request(addr(listener), "anyone?", timeout=2)
    run_until(reactor, lambda: any(r.state == "WRITE_CLOSED" for r in reactor.connections.values()))
    clock.advance(2)  # type: ignore[attr-defined]
    reactor.run_once(0)
    assert fut.done()
    with pytest.raises(TimeoutError):
        fut.result()
    assert reactor.connections == {}


def test_request_refused_is_runtime_and_connection_refused(reactor: Reactor, listener: socket.socket) -> None:
    """A refused connection fails fast with RequestRefused (ConnectionRefusedError and RuntimeError)."""
    address = addr(listener)
    listener.close()
    fut = reactor.request(address, "x", timeout=5)
    run_until(reactor, fut.done, turns=100)
    exc = fut.exception()
    assert isinstance(exc, ConnectionRefusedError) and isinstance(exc, RuntimeError)
    assert reactor.connections == {}


def test_request_bad_arguments_raise_at_call_site(reactor: Reactor) -> None:
    """A bad address or a non-str request raise immediately."""
    with pytest.raises(ValueError, match="nocolon"):
        reactor.request("nocolon", "x")
    with pytest.raises(TypeError):
        reactor.request("localhost:1", b"bytes")
    assert reactor.connections == {}


def test_cancelling_request_closes_connection(reactor: Reactor, listener: socket.socket) -> None:
    """Cancelling the future closes its connection row."""
    fut = reactor.request(addr(listener), "x", timeout=5)
    run_until(reactor, lambda: any(r.state == "WRITE_CLOSED" for r in reactor.connections.values()))
    fut.cancel()
    run_until(reactor, lambda: reactor.connections == {})


def test_do_request_against_plain_server(listener: socket.socket) -> None:
    """do_request speaks the exact wire format to a plain blocking server."""
    seen: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            data = b""
            while chunk := conn.recv(1024):
                data += chunk
            seen.append(data)
            conn.sendall(b"reply\r\n")

    t = threading.Thread(target=serve)
    t.start()
    assert do_request(addr(listener), "ask ☃", 5) == "reply"
    t.join(5)
    assert seen == ["ask ☃\r\n".encode()]


def test_do_request_timeout_returns_none(listener: socket.socket) -> None:
    """do_request returns None when the timeout passes (a listener that never answers)."""
    assert do_request(addr(listener), "x", timeout=0.05) is None


def test_do_request_refused() -> None:
    """do_request raises RequestRefused, catchable as RuntimeError (yoton) or ConnectionRefusedError."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    address = addr(s)
    s.close()
    with pytest.raises(RuntimeError):
        do_request(address, "x", 1)
    with pytest.raises(ConnectionRefusedError):
        do_request(address, "x", 1)
    assert issubclass(RequestRefused, ConnectionRefusedError) and issubclass(RequestRefused, RuntimeError)


def test_do_request_from_other_thread_while_shared_reactor_runs() -> None:
    """do_request works from a thread while the shared reactor runs in another."""
    r = Reactor()
    s = RequestServer("localhost:0", reactor=r)
    s.start()
    results: list[str | None] = []
    threads = [threading.Thread(target=lambda i=i: results.append(do_request(s.address, str(i), 5))) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    s.stop()
    s.join(5)
    assert sorted(results) == [f"Requested: {i}" for i in range(4)]  # type: ignore[type-var]
    s.close()
    r.close()


@pytest.fixture
def cli_server() -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """`python -m reactor serve` on two ports in a subprocess (no thread in this process)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "reactor", "serve", "localhost:0", "localhost:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    addresses = [proc.stdout.readline().split()[-1] for _ in range(2)]
    yield proc, addresses
    if proc.poll() is None:
        proc.kill()
    proc.wait(5)
    proc.stdout.close()
    assert proc.stderr is not None
    proc.stderr.close()


def test_no_threads_run_request_and_do_request(
    no_threads: None, cli_server: tuple[subprocess.Popen[str], list[str]]
) -> None:
    """With thread creation forbidden: run(), request() and do_request() all work."""
    _, (a, b) = cli_server
    assert do_request(a, "blocking", 5) == "Requested: blocking"
    with Reactor() as r:
        local = RequestServer("localhost:0", reactor=r)
        futs = [r.request(x, "nb", timeout=5) for x in (a, b, local.address)]
        done = r.create_future()

        def check() -> None:
            if all(f.done() for f in futs):
                r.stop()
                done.set_result(True)
            else:
                r.call_later(0.001, check)

        r.call_soon(check)
        r.run()
        assert [f.result() for f in futs] == ["Requested: nb"] * 3
        local.close()


def test_cli_request_exit_codes(cli_server: tuple[subprocess.Popen[str], list[str]], listener: socket.socket) -> None:
    """`python -m reactor request`: 0 and the reply; 1 on timeout and on a connection error."""
    _, (a, _) = cli_server
    ok = subprocess.run(
        [sys.executable, "-m", "reactor", "request", a, "hi"], capture_output=True, text=True, timeout=20
    )
    assert ok.returncode == 0 and ok.stdout == "Requested: hi\n"
    slow = subprocess.run(
        [sys.executable, "-m", "reactor", "request", addr(listener), "hi", "--timeout", "0.1"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert slow.returncode == 1 and "no reply" in slow.stderr and slow.stderr.count("\n") == 1
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    refused_addr = addr(closed)
    closed.close()
    bad = subprocess.run(
        [sys.executable, "-m", "reactor", "request", refused_addr, "hi"], capture_output=True, text=True, timeout=20
    )
    assert bad.returncode == 1 and "refused" in bad.stderr and bad.stderr.count("\n") == 1


def test_cli_serve_sigterm_exits_zero(cli_server: tuple[subprocess.Popen[str], list[str]]) -> None:
    """SIGTERM stops accepting, finishes in-flight requests and exits 0."""
    proc, (a, _) = cli_server
    assert do_request(a, "before", 5) == "Requested: before"
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(10) == 0
    assert proc.stdout is not None and "stopped" in proc.stdout.read()


def test_cli_demo_runs() -> None:
    """`python -m reactor demo` answers from two servers in one thread and exits 0."""
    out = subprocess.run([sys.executable, "-m", "reactor", "demo"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    assert "reply: HELLO" in out.stdout and "reply: Requested: ping 0" in out.stdout


def test_cli_serve_with_handler_class(tmp_path: Path) -> None:
    """`serve --handler module:Class` serves that RequestServer subclass; a bad spec exits 2 with a message."""
    (tmp_path / "myhandlers.py").write_text(
        "from reactor import RequestServer\n"
        "class Shout(RequestServer):\n"
        "    def handle_request(self, request):\n"
        "        return request.upper() + '!'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "reactor", "serve", "localhost:0", "--handler", "myhandlers:Shout"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("serving Shout on ")
        assert do_request(line.split()[-1], "hey", 5) == "HEY!"
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    bad = subprocess.run(
        [sys.executable, "-m", "reactor", "serve", "localhost:0", "--handler", "myhandlers:Nope"],
        capture_output=True,
        text=True,
        timeout=20,
        env=env,
    )
    assert bad.returncode == 2 and "cannot load handler" in bad.stderr
