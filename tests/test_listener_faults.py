"""Listener faults: running out of descriptors, a port in use, and graceful shutdown.

Most tests wrap the listening socket with a fake ``_accept`` that fails on
demand (no real exhaustion) and run on a manual clock.  One test exhausts a
real server: a child process with a lowered ``RLIMIT_NOFILE``, driven by this
process as its clients, with every wait bounded.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import run_until

import reactor.transport.listener as listener_module
from reactor import Future, ManualClock, Reactor, RequestServer
from reactor.addresses import parse_address
from reactor.streams import Protocol, Server
from reactor.transport.listener import Listener


class FailingAccept:
    """Wraps a listening socket; ``_accept()`` raises ``error`` for the next ``failures`` calls."""

    def __init__(self, sock: socket.socket, listener: Listener, error: int = errno.EMFILE) -> None:
        self.sock = sock
        self.listener = listener
        self.error = error
        self.failures = 0
        self.calls = 0
        self.reserve_while_accepting: list[int] = []

    def _accept(self) -> tuple[int, object]:
        self.calls += 1
        self.reserve_while_accepting.append(self.listener._reserve)
        if self.failures:
            self.failures -= 1
            raise OSError(self.error, os.strerror(self.error))
        return self.sock._accept()  # type: ignore[attr-defined,no-any-return]

    def __getattr__(self, name: str) -> object:
        return getattr(self.sock, name)


class Replier(Protocol):
    """Keeps what it received; the test replies (or not) through ``transport``."""

    def __init__(self, made: list[Replier]) -> None:
        self.transport: Any = None
        self.received = b""
        self.lost: list[BaseException | None] = []
        made.append(self)

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received += data

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.append(exc)


@pytest.fixture
def made() -> list[Replier]:
    """The protocols the server made, in order."""
    return []


@pytest.fixture
def server(reactor: Reactor, made: list[Replier]) -> Iterator[Server]:
    """A stream server on 127.0.0.1 whose protocols reply only when the test says so."""
    s = reactor.create_server(lambda: Replier(made), "localhost:0", accept_backoff=0.5)
    yield s
    s.close()


@pytest.fixture
def failing(server: Server) -> Iterator[FailingAccept]:
    """The server's listening socket behind a `FailingAccept` (restored after the test)."""
    listener = server._listener
    fake = FailingAccept(listener._sock, listener)
    listener._sock = fake  # type: ignore[assignment]
    yield fake
    listener._sock = fake.sock


def client(address: Any) -> socket.socket:
    """A blocking client socket connected to ``address`` (a socket address)."""
    return socket.create_connection(address[:2], timeout=5)


def is_devnull(fd: int) -> bool:
    """True if ``fd`` is an open descriptor of the null device."""
    return fd >= 0 and os.fstat(fd).st_rdev == os.stat(os.devnull).st_rdev


def records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    """The messages logged at exactly ``level``."""
    return [r.getMessage() for r in caplog.records if r.levelno == level]


def turns(reactor: Reactor, n: int = 20) -> None:
    """Run ``n`` non-blocking turns."""
    for _ in range(n):
        reactor.run_once(0)


# ------------------------------------------------------------ out of descriptors


def test_emfile_logs_one_warning_per_episode_and_info_on_recovery(
    reactor: Reactor, clock: ManualClock, server: Server, failing: FailingAccept, caplog: pytest.LogCaptureFixture
) -> None:
    """Repeated EMFILE within one episode logs one WARNING; the next successful accept logs one INFO."""
    caplog.set_level(logging.DEBUG, logger="reactor.streams")
    failing.failures = 1000
    c = client(server.sockaddr)
    run_until(reactor, lambda: failing.calls >= 1)
    for _ in range(5):  # five back-offs, each ending in EMFILE again
        clock.advance(0.5)
        turns(reactor)
    assert server.statistics()["accept_pauses"] == 6 and server.statistics()["exhaustions"] == 1
    assert len(records(caplog, logging.WARNING)) == 1
    assert "Too many open files" in records(caplog, logging.WARNING)[0]
    assert records(caplog, logging.INFO) == []
    failing.failures = 0
    clock.advance(0.5)
    run_until(reactor, lambda: server.statistics()["accepted"] == 1)
    info = records(caplog, logging.INFO)
    assert len(info) == 1 and "accepting again" in info[0]
    failing.failures = 1  # a second episode: a second WARNING
    c2 = client(server.sockaddr)
    run_until(reactor, lambda: server.statistics()["exhaustions"] == 2)
    assert len(records(caplog, logging.WARNING)) == 2
    c.close()
    c2.close()
    run_until(reactor, lambda: server.statistics()["active"] == 0)


def test_emfile_refuses_waiting_clients_with_the_reserve(
    reactor: Reactor, server: Server, failing: FailingAccept, made: list[Replier]
) -> None:
    """On EMFILE the reserve is given back, the waiting clients are accepted and closed at once, the reserve retaken."""
    listener = server._listener
    reserve = listener._reserve
    assert is_devnull(reserve)
    waiting = [client(server.sockaddr) for _ in range(3)]
    failing.failures = 1
    run_until(reactor, lambda: failing.calls >= 1)
    for sock in waiting:
        assert sock.recv(10) == b""  # refused promptly: EOF, not a hang until a timeout
        sock.close()
    assert server.statistics()["refused"] == 3 and server.statistics()["accepted"] == 0 and made == []
    assert failing.reserve_while_accepting[0] == reserve  # the failed accept: reserve held
    assert set(failing.reserve_while_accepting[1:]) == {-1}  # refusing: reserve given back
    assert failing.calls == 5  # the failure, three refused, EAGAIN
    assert is_devnull(listener._reserve)


def test_enomem_pauses_without_refusing(
    reactor: Reactor, clock: ManualClock, server: Server, failing: FailingAccept, made: list[Replier]
) -> None:
    """ENOMEM is not relieved by a descriptor: the listener pauses, and the waiting client is served afterwards."""
    failing.error = errno.ENOMEM
    failing.failures = 1
    c = client(server.sockaddr)
    run_until(reactor, lambda: failing.calls >= 1)
    turns(reactor)
    assert failing.calls == 1 and server.statistics()["refused"] == 0 and server.statistics()["exhaustions"] == 1
    clock.advance(0.5)
    run_until(reactor, lambda: server.statistics()["accepted"] == 1)
    c.sendall(b"x")
    run_until(reactor, lambda: made[0].received == b"x")
    c.close()
    run_until(reactor, lambda: server.statistics()["active"] == 0)


def test_reserve_that_cannot_be_retaken_is_retried_when_accepting_resumes(
    reactor: Reactor,
    clock: ManualClock,
    server: Server,
    failing: FailingAccept,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """If another thread took the freed slot, the reserve is opened again when the back-off ends."""
    listener = server._listener
    monkeypatch.setattr(listener_module, "_open_reserve", lambda: -1)
    failing.failures = 1
    c = client(server.sockaddr)
    run_until(reactor, lambda: failing.calls >= 1)
    c.close()
    turns(reactor)
    assert listener._reserve == -1 and server.statistics()["refused"] == 1
    monkeypatch.undo()
    clock.advance(0.5)
    turns(reactor)
    assert listener._reserve >= 0


_EXHAUSTED_SERVER = textwrap.dedent(
    """
    import logging, os, resource, sys
    from reactor import Reactor
    from reactor.addresses import parse_address
    from reactor.transport.listener import Listener

    class Serve:
        def connection_made(self, transport):
            self.transport = transport
        def data_received(self, data):
            self.transport.write(b"served " + data)
            self.transport.close()
        def eof_received(self):
            return False
        def connection_lost(self, exc):
            pass

    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")
    r = Reactor()
    listener = Listener(r, parse_address("127.0.0.1:0"), Serve, accept_backoff=0.1)
    r.add_reader(sys.stdin.fileno(), r.stop)  # the parent closes our stdin: stop
    def is_open(fd):
        try:
            os.fstat(fd)
        except OSError:
            return False
        return True

    fds = [fd for fd in map(int, os.listdir("/proc/self/fd")) if is_open(fd)]  # not the listing's own
    limit = max(fds) + 1 + 8
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    print("READY", listener.sockaddr[1], limit - len(fds), flush=True)
    r.run()
    listener.close()
    r.close()
    """
)


class ChildStderr:
    """The child's stderr, read without blocking; `wait_for` polls with short, bounded waits."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        self.fd = proc.stderr.fileno()
        os.set_blocking(self.fd, False)
        self.text = ""

    def read(self, wait: float = 0.0) -> None:
        """Append whatever the child wrote, waiting at most ``wait`` seconds for something."""
        if select.select([self.fd], [], [], wait)[0]:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                return
            self.text += chunk.decode()

    def wait_for(self, needle: str, bound: float = 5.0) -> None:
        """Read until ``needle`` appears; fail after ``bound`` seconds."""
        deadline = time.monotonic() + bound
        while needle not in self.text:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{needle!r} not logged within {bound} s; log so far:\n{self.text}"
            self.read(min(remaining, 0.05))


def wait_closed(sock: socket.socket, bound: float) -> float:
    """Seconds until the server closes ``sock`` (EOF or reset); fail after ``bound`` seconds."""
    start = time.monotonic()
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    while True:
        elapsed = time.monotonic() - start
        assert elapsed < bound, f"a waiting client was not closed within {bound} s"
        if poller.poll(max(1, int((bound - elapsed) * 1000))):
            break
    try:
        assert sock.recv(10) == b""
    except ConnectionResetError:
        pass
    return time.monotonic() - start


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` so far (from /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs /proc for fds and CPU times")
def test_emfile_in_a_subprocess_refuses_waiting_clients_quietly_and_recovers() -> None:
    """Real exhaustion: waiting clients are closed within 0.5 s, CPU stays under 5 %, one WARNING, recovery."""
    pytest.importorskip("resource", reason="RLIMIT_NOFILE needs the resource module")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    proc = subprocess.Popen(
        [sys.executable, "-c", _EXHAUSTED_SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    holders: list[socket.socket] = []
    try:
        assert proc.stdout is not None and proc.stdin is not None
        if not select.select([proc.stdout], [], [], 10)[0]:
            pytest.fail("the server did not start within 10 s")
        line = proc.stdout.readline().decode()
        if not line.startswith("READY"):
            proc.kill()
            pytest.fail(f"the server did not start: {line!r}\n{proc.communicate(timeout=10)[1].decode()}")
        _, port_text, free_text = line.split()
        address = ("127.0.0.1", int(port_text))
        log = ChildStderr(proc)
        # Fill every free descriptor of the server; the next accept fails.
        holders = [client(address) for _ in range(int(free_text))]
        log.wait_for("WARNING")
        start_cpu, start = cpu_seconds(proc.pid), time.monotonic()
        waiting = [client(address) for _ in range(5)]
        assert max(wait_closed(sock, 0.5) for sock in waiting) < 0.5
        for sock in waiting:
            sock.close()
        rounds = 1
        while time.monotonic() - start < 1.0 and rounds < 100:  # a window long enough to measure CPU
            late = client(address)
            assert wait_closed(late, 0.5) < 0.5
            late.close()
            rounds += 1
        cpu = (cpu_seconds(proc.pid) - start_cpu) / (time.monotonic() - start)
        assert cpu < 0.05, f"the server used {cpu:.0%} CPU while out of descriptors"
        for sock in holders[:3]:  # descriptors come back: accepting must work again
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(10) == b""  # the server has closed its side: its descriptor is free
            sock.close()
        fresh = client(address)
        fresh.sendall(b"hello")
        assert fresh.recv(100) == b"served hello"
        fresh.close()
        log.wait_for("accepting again")
        proc.stdin.close()
        proc.wait(10)
        log.read()
    finally:
        for sock in holders:
            sock.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    lines = log.text.splitlines()
    assert sum(line.startswith("WARNING") for line in lines) == 1, log.text
    assert sum(line.startswith("INFO") and "accepting again" in line for line in lines) == 1, log.text
    assert proc.returncode == 0, log.text


# ------------------------------------------------------------ port in use


def test_port_in_use_names_the_address(reactor: Reactor) -> None:
    """bind() on a taken port raises an OSError that names the address, keeps errno and chains the original."""
    with RequestServer("localhost:0", reactor=reactor) as taken:
        for make in (
            lambda: RequestServer(taken.address, reactor=reactor),
            lambda: reactor.create_server(Protocol, taken.address),
        ):
            with pytest.raises(OSError) as info:
                make()
            assert info.value.errno == errno.EADDRINUSE
            assert str(info.value) == f"[Errno {errno.EADDRINUSE}] cannot bind {taken.address}: Address already in use"
            assert isinstance(info.value.__cause__, OSError) and info.value.__cause__.errno == errno.EADDRINUSE


# ------------------------------------------------------------ graceful shutdown


class Later(RequestServer):
    """Answers with a future that the test completes (or not)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.pending: list[Future[str]] = []
        super().__init__(*args, **kwargs)

    def handle_request(self, request: str) -> Future[str]:
        fut: Future[str] = self.reactor.create_future()
        self.pending.append(fut)
        return fut


def done_at(fut: Future[None], clock: ManualClock) -> Callable[[], float | None]:
    """A getter for the reactor time at which ``fut`` completed (None while pending)."""
    when: list[float] = []
    fut.add_done_callback(lambda _: when.append(clock()))
    return lambda: when[0] if when else None


def test_shutdown_closes_idle_at_once_finishes_in_flight_and_refuses_late_clients(
    reactor: Reactor, clock: ManualClock
) -> None:
    """Idle client closed at once, in-flight reply arrives within the grace, late client refused; done before grace."""
    s = Later("localhost:0", reactor=reactor)
    try:
        idle = client(s.server_address)
        busy = client(s.server_address)
        busy.sendall(b"question\r\n")
        run_until(reactor, lambda: len(s.pending) == 1 and s.statistics()["accepted"] == 2)
        began = clock()
        finished = done_at(s._listener.shutdown(5.0), clock)
        assert idle.recv(10) == b""  # closed at once, before any turn
        with pytest.raises(ConnectionRefusedError):
            client(s.server_address)  # the listening socket is closed: refused, not accepted and reset
        turns(reactor)
        assert finished() is None and [row.bytes_in for row in s.connections()] == [10]
        clock.advance(4.0)
        s.pending[0].set_result("answer")
        run_until(reactor, lambda: finished() is not None)
        assert busy.recv(100) == b"answer\r\n"
        assert finished() == began + 4.0  # not the whole grace
        idle.close()
        busy.close()
    finally:
        s.close()


def test_shutdown_aborts_what_is_still_in_flight_when_the_grace_expires(
    reactor: Reactor, clock: ManualClock, server: Server, made: list[Replier]
) -> None:
    """A connection still in flight when the grace expires is aborted; the future completes then, not later."""
    busy = client(server.sockaddr)
    busy.sendall(b"slow")
    run_until(reactor, lambda: bool(made) and made[0].received == b"slow")
    began = clock()
    finished = done_at(server._listener.shutdown(2.0), clock)
    clock.advance(1.99)
    turns(reactor)
    assert finished() is None and server.statistics()["active"] == 1
    clock.advance(0.01)
    run_until(reactor, lambda: finished() is not None)
    assert finished() == began + 2.0 and made[0].lost == [None]
    assert busy.recv(10) == b""  # aborted without a reply
    made[0].transport.write(b"too late")  # dropped quietly: the server ended it
    busy.close()


def test_shutdown_without_connections_completes_at_once_and_twice_is_harmless(reactor: Reactor, server: Server) -> None:
    """With nothing open the future completes on the next turn; a second shutdown and close() are harmless."""
    listener = server._listener
    first = listener.shutdown(10.0)
    second = listener.shutdown(0.0)
    reactor.run_once(0)
    assert first.done() and second.done() and not listener.is_serving()
    assert listener._grace_timer is None
    server.close()
    with pytest.raises(ValueError, match="grace"):
        listener.shutdown(-1.0)


def test_close_during_shutdown_aborts_the_rest_at_once(
    reactor: Reactor, clock: ManualClock, server: Server, made: list[Replier]
) -> None:
    """close() while a shutdown waits for its grace aborts the remaining connections and completes the future."""
    busy = client(server.sockaddr)
    busy.sendall(b"x")
    run_until(reactor, lambda: bool(made) and made[0].received == b"x")
    finished = server._listener.shutdown(30.0)
    server.close()
    reactor.run_once(0)
    assert finished.done() and server.statistics()["active"] == 0 and server._listener._grace_timer is None
    assert busy.recv(10) == b""
    busy.close()


def test_shutdown_unlinks_its_unix_path_at_once(reactor: Reactor, tmp_path: Path) -> None:
    """A Unix listener's path is gone as soon as shutdown() returns, while its connections may still finish."""
    path = tmp_path / "s.sock"
    made: list[Replier] = []
    listener = Listener(reactor, parse_address(f"unix:{path}"), lambda: Replier(made))
    try:
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(str(path))
        c.sendall(b"x")
        run_until(reactor, lambda: bool(made) and made[0].received == b"x")
        finished = listener.shutdown(5.0)
        assert not path.exists() and listener.stats.active == 1
        made[0].transport.write(b"bye")
        made[0].transport.close()
        run_until(reactor, finished.done)
        assert c.recv(10) == b"bye"
        c.close()
    finally:
        listener.close()
