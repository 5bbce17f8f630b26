"""What a new user runs into first: closing a started server, default binds, error messages, timeouts, port names.

Real traffic is loopback only; a name that must not resolve is answered by a
fake ``connect`` (no resolver is asked).  Threads are involved only where
the subject is threads, and every wait on them is bounded.
"""

from __future__ import annotations

import errno
import importlib.util
import logging
import pathlib
import signal
import socket
import subprocess
import sys
import threading
from types import ModuleType
from typing import Any

import pytest
from conftest import addr, end_process, run_until

from reactor import ManualClock, Reactor, RequestFailed, RequestServer, do_request
from reactor import client as client_module
from reactor.addresses import parse_address, port_hash
from reactor.client import ReplyProtocol, RequestRefused, RequestReset
from reactor.easy import UDPClient, UDPServer
from reactor.futures import Future
from reactor.streams import Protocol
from reactor.transport.connect import UNIX_PATH_MAX
from reactor.transport.memory import memory_pair
from reactor.transport.threads import background_thread, run_in_reactor_thread

EXAMPLE = pathlib.Path(__file__).resolve().parent.parent / "examples" / "chat_udp.py"


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.levelno >= logging.ERROR or record.exc_info]




# ------------------------------------------------------------ with + start()


def test_with_start_request_exit_never_races(real_reactor: Reactor, caplog: pytest.LogCaptureFixture) -> None:
    """`with RequestServer(...) as s: s.start(); request` 100 times: no error logged, no thread or fd left."""
    caplog.set_level(logging.DEBUG, logger="reactor")
    threads_before = set(threading.enumerate())  # a thread of an earlier test may end meanwhile: compare sets
    for i in range(100):
        with RequestServer("localhost:0", reactor=real_reactor) as server:
            thread = server.start()
            assert thread is not None
            if i % 2:  # every other round exits right after start(), while the thread is still starting
                assert do_request(server.address, f"r{i}", 5) == f"Requested: r{i}"
        assert not thread.is_alive()
        assert background_thread(real_reactor) is None
    assert errors_logged(caplog) == []
    assert set(threading.enumerate()) - threads_before == set()


def test_close_from_a_third_thread(real_reactor: Reactor, caplog: pytest.LogCaptureFixture) -> None:
    """close() from a thread that neither started nor runs the reactor closes it there, and the thread ends."""
    caplog.set_level(logging.DEBUG, logger="reactor")
    server = RequestServer("localhost:0", reactor=real_reactor)
    thread = server.start()
    assert thread is not None and do_request(server.address, "x", 5) == "Requested: x"
    closer = threading.Thread(target=server.close)
    closer.start()
    closer.join(10)
    assert not closer.is_alive()
    thread.join(10)
    assert not thread.is_alive()
    assert server._listener.socket.fileno() < 0
    with pytest.raises(RequestRefused):
        do_request(server.address, "x", 5)
    assert errors_logged(caplog) == []
    server.close()  # idempotent


def test_close_keeps_the_thread_for_other_started_servers(real_reactor: Reactor) -> None:
    """close() of one of two started servers leaves the shared thread serving the other."""
    first = RequestServer("localhost:0", reactor=real_reactor)
    second = RequestServer("localhost:0", reactor=real_reactor)
    thread = first.start()
    assert second.start() is thread and thread is not None
    first.close()
    assert thread.is_alive() and do_request(second.address, "y", 5) == "Requested: y"
    second.close()
    assert not thread.is_alive()


def test_run_in_reactor_thread_runs_on_the_driver(real_reactor: Reactor) -> None:
    """From another thread while the reactor runs, the function runs on the reactor's thread, once."""
    r = real_reactor
    ran_on: list[int] = []
    driver = threading.Thread(target=r.run)
    r.call_soon(lambda: None)
    driver.start()
    try:
        run_until_true(lambda: r.is_running())
        assert run_in_reactor_thread(r, lambda: ran_on.append(threading.get_ident()), timeout=10)
        assert ran_on == [driver.ident]
    finally:
        r.call_soon_threadsafe(r.stop)
        driver.join(10)
    assert run_in_reactor_thread(r, lambda: ran_on.append(threading.get_ident()))  # nobody drives: here
    assert ran_on == [driver.ident, threading.get_ident()]


def test_run_in_reactor_thread_runs_here_when_the_driver_leaves(
    real_reactor: Reactor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the reactor stops before it gets to the handed-off call, the caller runs it, and only once."""
    r = real_reactor
    entered, gate, posted = threading.Event(), threading.Event(), threading.Event()
    post = r.call_soon_threadsafe

    def post_and_tell(*args: Any) -> Any:
        handle = post(*args)
        posted.set()
        return handle

    def block_then_stop() -> None:
        entered.set()
        gate.wait(10)
        r.stop()  # run() returns after this turn; the hand-off queued meanwhile is left for a later turn

    calls: list[int] = []
    r.call_soon(block_then_stop)
    driver = threading.Thread(target=r.run)
    driver.start()
    assert entered.wait(10)
    monkeypatch.setattr(r, "call_soon_threadsafe", post_and_tell)
    results: list[bool] = []
    caller = threading.Thread(target=lambda: results.append(run_in_reactor_thread(r, lambda: calls.append(1), 10)))
    caller.start()
    assert posted.wait(10)
    gate.set()
    driver.join(10)
    caller.join(10)
    assert results == [True] and calls == [1]
    r.run_once(0)  # the queued hand-off finds the work done
    assert calls == [1]


def test_run_in_reactor_thread_gives_up_after_its_timeout(
    real_reactor: Reactor, caplog: pytest.LogCaptureFixture
) -> None:
    """A reactor thread that is stuck makes the caller give up after ``timeout``, and the call never runs."""
    r = real_reactor
    entered, gate = threading.Event(), threading.Event()
    r.call_soon(lambda: (entered.set(), gate.wait(10)))
    driver = threading.Thread(target=r.run)
    driver.start()
    calls: list[int] = []
    try:
        assert entered.wait(10)
        assert run_in_reactor_thread(r, lambda: calls.append(1), timeout=0.1) is False
    finally:
        gate.set()
        r.call_soon_threadsafe(r.stop)
        driver.join(10)
    assert calls == [] and "did not run" in caplog.text


def run_until_true(predicate: Any, tries: int = 2000) -> None:
    """Wait (bounded, without sleeping a fixed time) for another thread to make ``predicate()`` true."""
    event = threading.Event()
    for _ in range(tries):
        if predicate():
            return
        event.wait(0.005)
    raise AssertionError("condition not reached")


def test_udp_server_with_start_and_exit(real_reactor: Reactor, caplog: pytest.LogCaptureFixture) -> None:
    """The easy UDPServer: `with ... start()` + a datagram + exit, 30 times: no error, no thread left."""
    caplog.set_level(logging.DEBUG, logger="reactor")
    for i in range(30):
        with UDPServer(lambda m, a, send: send(m, a), 0, reactor=real_reactor) as server:
            thread = server.start()
            assert thread is not None
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:  # socket-ok: the test's client
                peer.settimeout(5)  # socket-ok
                peer.sendto(f"d{i}".encode(), server.sockaddr)  # socket-ok
                assert peer.recvfrom(100)[0] == f"d{i}".encode()  # socket-ok
        assert not thread.is_alive()
    assert errors_logged(caplog) == []


def test_udp_close_from_another_thread_waits_for_the_socket(real_reactor: Reactor) -> None:
    """UDPServer.close() from a non-reactor thread returns with the socket closed, not merely queued to close."""
    serving = UDPServer(lambda m, a, send: None, 0, reactor=real_reactor)
    other = UDPServer(lambda m, a, send: None, 0, reactor=real_reactor)
    thread = serving.start()
    try:
        assert thread is not None
        other.close()  # the reactor runs in `thread`: handed to it, and waited for
        assert other.closed and other.socket.fileno() < 0
    finally:
        serving.stop()
        serving.close()
        other.close()
    assert not thread.is_alive()


def test_stream_server_close_from_another_thread(real_reactor: Reactor, caplog: pytest.LogCaptureFixture) -> None:
    """streams.Server.close() from a thread other than the reactor's closes it on the reactor's thread."""
    caplog.set_level(logging.DEBUG, logger="reactor")
    r = real_reactor
    server = r.create_server(Protocol, "localhost:0")
    driver = threading.Thread(target=r.run)
    r.call_soon(lambda: None)
    driver.start()
    try:
        run_until_true(r.is_running)
        server.close()
        assert server._listener.socket.fileno() < 0 and not server.is_serving()
    finally:
        r.call_soon_threadsafe(r.stop)
        driver.join(10)
    assert errors_logged(caplog) == []


# ------------------------------------------------------------ binding


def test_udp_endpoints_bind_loopback_by_default(reactor: Reactor) -> None:
    """UDPServer and UDPClient bind 127.0.0.1 unless every interface is asked for explicitly."""
    server = UDPServer(lambda m, a, send: None, 0, reactor=reactor)
    client = UDPClient(lambda m, a: None, reactor=reactor)
    everywhere = UDPServer(lambda m, a, send: None, 0, host="0.0.0.0", reactor=reactor)
    try:
        assert server.sockaddr[0] == "127.0.0.1" and client.sockaddr[0] == "127.0.0.1"
        assert everywhere.sockaddr[0] == "0.0.0.0"
    finally:
        for endpoint in (server, client, everywhere):
            endpoint.close()


def _chat_udp() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chat_udp_rough_edges", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_chat_udp_binds_loopback_unless_given_host(reactor: Reactor) -> None:
    """The chat example's server binds loopback by default and the --host it is given otherwise."""
    chat_udp = _chat_udp()
    default = chat_udp.ChatServer(0, reactor=reactor)
    assert default.address[0] == "127.0.0.1"
    default.close()
    assert chat_udp.main(["server", "--host"]) == 2  # --host without a value
    assert chat_udp.main(["client", "1", "alice", "h", "--host", "h"]) == 2  # the host given twice
    assert chat_udp.main(["--demo", "--host", "127.0.0.1"]) == 2


def test_chat_udp_server_host_option() -> None:
    """`chat_udp.py server 0 --host 127.0.0.1` serves there: a JOIN gets JOK."""
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "server", "0", "--host", "127.0.0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "chat server on 127.0.0.1:" in line, line
        port = int(line.rsplit(":", 1)[1])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as user:  # socket-ok: the test's chat user
            user.settimeout(10)  # socket-ok
            user.sendto(b"JOIN tester", ("127.0.0.1", port))  # socket-ok
            assert user.recvfrom(100)[0] == b"JOK"  # socket-ok
    finally:
        end_process(proc, signal.SIGKILL)


# ------------------------------------------------------------ error messages


def test_url_is_told_to_drop_its_scheme() -> None:
    """'http://host:port' says to give host:port without a scheme, not to bracket an IPv6 address."""
    with pytest.raises(ValueError) as info:
        parse_address("http://localhost:8000/path")
    message = str(info.value)
    assert "'http://localhost:8000/path'" in message and "without a scheme" in message
    assert "'localhost:8000'" in message and "IPv6" not in message
    assert parse_address("tcp://localhost:80").sockaddr == ("127.0.0.1", 80)  # still accepted
    assert parse_address("unix:///tmp/s").sockaddr == "///tmp/s"  # a path, not a URL


def test_empty_host_suggests_localhost_or_every_interface() -> None:
    """':80' suggests 'localhost:80', and '0.0.0.0:80' to serve on every interface."""
    with pytest.raises(ValueError) as info:
        parse_address(":80")
    message = str(info.value)
    assert "':80'" in message and "'localhost:80'" in message and "'0.0.0.0:80'" in message


def test_missing_unix_socket_file_is_not_called_refused(tmp_path: pathlib.Path) -> None:
    """A Unix path with no socket file says the file does not exist (naming it) and that no server listens."""
    path = str(tmp_path / "absent.sock")
    with pytest.raises(RequestRefused) as info:
        do_request(f"unix:{path}", "x", 5)
    assert info.value.errno == errno.ENOENT
    message = str(info.value)
    assert path in message and "does not exist" in message and "no server is listening" in message
    assert "refused" not in message


def test_too_long_unix_path_names_its_length_and_the_limit(reactor: Reactor) -> None:
    """A Unix path over the limit says how long it is, what the limit is, and to use a shorter one."""
    path = "/tmp/" + "d" * 200 + "/s.sock"
    size = len(path.encode())
    for call in (lambda: do_request(f"unix:{path}", "x", 5), lambda: reactor.request(f"unix:{path}", "x")):
        with pytest.raises(ValueError) as info:
            call()
        message = str(info.value)
        assert f"{size} bytes" in message and f"{UNIX_PATH_MAX}-byte limit" in message
        assert "shorter path" in message
    assert reactor.connections == {}


def test_unresolvable_host_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """A host that does not resolve is a socket.gaierror (an OSError) that names the host."""
    real_connect = socket.socket.connect

    def connect(sock: socket.socket, address: Any) -> None:
        if isinstance(address, tuple) and address[0] == "no-such-host.invalid":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")  # no resolver is asked
        real_connect(sock, address)  # socket-ok: anything else connects for real

    monkeypatch.setattr(socket.socket, "connect", connect)
    with pytest.raises(socket.gaierror) as info:
        do_request("no-such-host.invalid:80", "x", 5)
    assert isinstance(info.value, OSError)
    message = str(info.value)
    assert "'no-such-host.invalid'" in message and "resolve" in message and "IP address" in message
    assert isinstance(info.value.__cause__, socket.gaierror)


def test_server_that_resets_without_replying(real_reactor: Reactor, listener: socket.socket) -> None:
    """A server that accepts and closes with the request unread: RequestReset, a RequestFailed, never a reply."""
    r = real_reactor
    future = r.request(addr(listener), "hello?", timeout=5)
    run_until(r, lambda: any(row.state == "WRITE_CLOSED" for row in r.connections.values()))
    conn, _ = listener.accept()  # socket-ok
    run_until_true(lambda: conn.recv(1, socket.MSG_PEEK))  # socket-ok: the request is there, unread
    conn.close()  # socket-ok: closing with unread data makes the kernel reset the connection
    run_until(r, future.done)
    exc = future.exception()
    assert isinstance(exc, RequestReset) and isinstance(exc, RequestFailed)
    assert isinstance(exc, ConnectionResetError) and isinstance(exc, RuntimeError)
    assert "without replying" in str(exc)


def test_a_lost_connection_before_the_reply_is_a_request_failure(reactor: Reactor) -> None:
    """ENOTCONN (half-closing a socket the server already dropped) before any reply is RequestReset too."""
    future: Future[str] = reactor.create_future()
    client = ReplyProtocol(future, b"q\r\n", 1024, "memory", None)
    _, other = memory_pair(reactor, client, Protocol())
    reactor.run_once(0)
    client.connection_lost(OSError(errno.ENOTCONN, "Transport endpoint is not connected"))
    exc = future.exception()
    assert isinstance(exc, RequestReset) and "memory closed the connection without replying" in str(exc)
    other.abort()
    run_until(reactor, lambda: reactor.connections == {})


# ------------------------------------------------------------ timeouts


def test_reactor_request_timeout_zero_means_no_timeout(
    reactor: Reactor, clock: ManualClock, listener: socket.socket
) -> None:
    """Reactor.request(timeout=0), -1 or None waits however long a silent server takes (yoton's meaning)."""
    futures = [reactor.request(addr(listener), "x", timeout=t) for t in (0, -1, None)]
    run_until(reactor, lambda: sum(row.state == "WRITE_CLOSED" for row in reactor.connections.values()) == 3)
    clock.advance(10**6)
    for _ in range(5):
        reactor.run_once(0)
    assert not any(f.done() for f in futures)
    assert all(row.deadline is None for row in reactor.connections.values())
    for f in futures:
        f.cancel()
    run_until(reactor, lambda: reactor.connections == {})


def test_do_request_timeout_zero_means_no_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """do_request(timeout=0), -1 and None run the exchange with no timeout, and get the reply."""
    seen: list[float | None] = []
    exchange = client_module._exchange

    def spy(reactor: Reactor, parsed: Any, payload: bytes, timeout: float | None, *args: Any) -> Any:
        seen.append(timeout)
        return exchange(reactor, parsed, payload, timeout, *args)

    monkeypatch.setattr(client_module, "_exchange", spy)
    with RequestServer("localhost:0", reactor=Reactor()) as server:
        server.start()
        for timeout in (0, -1, None, 2.5):
            assert do_request(server.address, "t", timeout) == "Requested: t"
    server.reactor.close()
    assert seen == [None, None, None, 2.5]


# ------------------------------------------------------------ port names


def test_port_name_is_recorded_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """A port with a letter is hashed as yoton does; the Address says so and one INFO record tells the port."""
    caplog.set_level(logging.INFO, logger="reactor")
    name = "8o00-rough-edges"
    parsed = parse_address(f"localhost:{name}")
    assert parsed.port_name == name and parsed.port == port_hash(name)
    parse_address(f"localhost:{name}")
    records = [r for r in caplog.records if name in r.getMessage()]
    assert len(records) == 1 and records[0].levelno == logging.INFO
    assert records[0].name.startswith("reactor") and f"port {port_hash(name)}" in records[0].getMessage()
    numeric = parse_address("localhost:8000")
    assert numeric.port_name is None and numeric == parse_address(numeric.text)
    assert parsed == parse_address(parsed.text)  # equality ignores how the port was written
