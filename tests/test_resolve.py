"""Name lookups off the reactor's thread: Reactor.getaddrinfo, and connects to host names."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import addr, run_until

from reactor import ManualClock, Protocol, Reactor, do_request
from reactor.transport.executor import numeric_host

#: How long a test waits for a worker thread at most (a bound, never a sleep).
WAIT = 10.0

#: A name no real resolver answers (RFC 6761); the tests' resolver stands in.
NAME = "db.example.invalid"


class FakeResolver:
    """Stands in for socket.getaddrinfo: answers names from a table, or never (until released)."""

    def __init__(self, answers: dict[str, str] | None = None, *, stuck: bool = False) -> None:
        self.answers = answers or {}
        self.stuck = stuck
        self.release = threading.Event()
        self.asked = threading.Event()
        self.threads: list[int] = []
        self.hosts: list[Any] = []
        self.real = socket.getaddrinfo

    def __call__(self, host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0) -> Any:
        if host is None or numeric_host(socket.AF_INET, str(host)) or numeric_host(socket.AF_INET6, str(host)):
            return self.real(host, port, family, type, proto, flags)
        self.threads.append(threading.get_ident())
        self.hosts.append(host)
        self.asked.set()
        if self.stuck:
            self.release.wait()
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (self.answers[host], int(port)))]


@pytest.fixture
def stuck_resolver(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeResolver]:
    """A resolver that never answers a name until the test ends (then it fails)."""
    resolver = FakeResolver(stuck=True)
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    yield resolver
    resolver.release.set()


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> FakeResolver:
    """A resolver that answers ``svc.test`` with 127.0.0.1 and nothing else."""
    fake = FakeResolver({"svc.test": "127.0.0.1"})
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return fake


class Connected(Protocol):
    """Remembers its transport."""

    transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport


def test_request_timeout_covers_a_stuck_lookup(
    reactor: Reactor, clock: ManualClock, stuck_resolver: FakeResolver
) -> None:
    """A resolver that never answers neither blocks the reactor's timers nor stretches the request's timeout."""
    future = reactor.request(f"{NAME}:80", "hello", timeout=1)
    assert stuck_resolver.asked.wait(WAIT)
    assert stuck_resolver.threads != [threading.get_ident()]  # the lookup runs in a worker
    fired: list[float] = []
    reactor.call_later(0.05, lambda: fired.append(reactor.time()))
    clock.advance(0.05)
    reactor.run_once(0)
    assert fired == [1000.05]  # the 50 ms timer ran on time
    assert not future.done()
    assert len(reactor.connections) == 1  # the attempt is a row, CONNECTING
    clock.advance(0.95)
    run_until(reactor, future.done, timeout=0)
    with pytest.raises(TimeoutError, match=r"within 1(\.0)? s"):
        future.result()
    assert reactor.connections == {}


def test_create_connection_timeout_covers_the_lookup(
    reactor: Reactor, clock: ManualClock, stuck_resolver: FakeResolver
) -> None:
    """create_connection's timeout fails the future while the lookup is stuck, and says so."""
    future = reactor.create_connection(Connected, f"{NAME}:80", timeout=2)
    assert stuck_resolver.asked.wait(WAIT)
    clock.advance(2)
    run_until(reactor, future.done, timeout=0)
    with pytest.raises(TimeoutError, match="name lookup had not answered"):
        future.result()
    assert reactor.connections == {}


def test_cancelling_during_the_lookup_closes_the_row(reactor: Reactor, stuck_resolver: FakeResolver) -> None:
    """A request cancelled while its name is being looked up leaves the table at once."""
    future = reactor.request(f"{NAME}:80", "hello")
    assert stuck_resolver.asked.wait(WAIT)
    assert len(reactor.connections) == 1
    future.cancel()
    run_until(reactor, lambda: not reactor.connections, timeout=0)


def test_do_request_timeout_covers_the_lookup(stuck_resolver: FakeResolver) -> None:
    """The blocking do_request returns None on time although the resolver never answers."""
    assert do_request(f"{NAME}:80", "hello", timeout=0.2) is None
    assert stuck_resolver.threads and threading.get_ident() not in stuck_resolver.threads


def test_names_resolve_in_a_worker_and_connect(
    reactor: Reactor, listener: socket.socket, resolver: FakeResolver
) -> None:
    """A host name is resolved in the worker pool, and the connection goes to the address it answered."""
    port = listener.getsockname()[1]
    future = reactor.create_connection(Connected, f"svc.test:{port}", timeout=5)
    transport, _ = reactor.run_until_complete(future)
    assert resolver.hosts == ["svc.test"]
    assert threading.get_ident() not in resolver.threads
    assert transport.get_extra_info("peername") == ("127.0.0.1", port)
    transport.close()
    run_until(reactor, lambda: not reactor.connections, timeout=0)


def test_a_name_that_does_not_resolve_fails_clearly(reactor: Reactor, resolver: FakeResolver) -> None:
    """A lookup failure is a socket.gaierror naming the host and what to do."""
    future = reactor.request("nowhere.test:80", "hello", timeout=5)
    with pytest.raises(socket.gaierror, match=r"cannot resolve the host 'nowhere.test'.*give an IP address"):
        reactor.run_until_complete(future)
    assert reactor.connections == {}


def test_ip_literals_and_unix_paths_skip_the_lookup(
    reactor: Reactor, listener: socket.socket, resolver: FakeResolver, no_threads: None, tmp_path: Path
) -> None:
    """IPv4 and IPv6 literals, localhost and unix: addresses connect without a lookup and without a thread."""
    futures = [reactor.create_connection(Connected, addr(listener), timeout=5)]
    futures.append(reactor.create_connection(Connected, f"localhost:{listener.getsockname()[1]}", timeout=5))
    try:
        six = socket.socket(socket.AF_INET6)  # socket-ok: the test's own silent server
    except OSError:
        six = None
    if six is not None:
        six.bind(("::1", 0))  # socket-ok
        six.listen(4)  # socket-ok
        futures.append(reactor.create_connection(Connected, f"[::1]:{six.getsockname()[1]}", timeout=5))
    path = str(tmp_path / "s")
    unix = socket.socket(socket.AF_UNIX)  # socket-ok
    unix.bind(path)  # socket-ok
    unix.listen(4)  # socket-ok
    futures.append(reactor.create_connection(Connected, f"unix:{path}", timeout=5))
    try:
        for future in futures:
            transport, _ = reactor.run_until_complete(future)
            transport.close()
        run_until(reactor, lambda: not reactor.connections, timeout=0)
    finally:
        unix.close()
        if six is not None:
            six.close()
    assert resolver.hosts == []
    assert reactor._worker_pool is None


def test_getaddrinfo_returns_a_future_of_the_list(reactor: Reactor, resolver: FakeResolver) -> None:
    """Reactor.getaddrinfo is socket.getaddrinfo's answer as a future, looked up in a worker."""
    future = reactor.getaddrinfo("svc.test", 80, socket.AF_INET, socket.SOCK_STREAM)
    assert not future.done()
    assert reactor.run_until_complete(future) == [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 80))]
    assert threading.get_ident() not in resolver.threads


def test_getaddrinfo_of_a_literal_is_answered_at_once(reactor: Reactor, no_threads: None) -> None:
    """A numeric host and port are answered on the spot, with no thread."""
    future = reactor.getaddrinfo("127.0.0.1", 80, socket.AF_INET, socket.SOCK_STREAM)
    assert future.done()
    assert future.result()[0][4] == ("127.0.0.1", 80)
    assert reactor._worker_pool is None


def test_getaddrinfo_cancel_drops_the_answer(reactor: Reactor, stuck_resolver: FakeResolver) -> None:
    """A cancelled lookup stays cancelled when the resolver finally answers."""
    future = reactor.getaddrinfo(NAME, 80)
    assert stuck_resolver.asked.wait(WAIT)
    future.cancel()
    stuck_resolver.release.set()
    probe = reactor.run_in_executor(None, lambda: None)
    reactor.run_until_complete(probe)
    assert future.cancelled()


# ------------------------------------------------------------------ no threads


def test_no_threads_resolves_on_the_reactor_thread_with_one_warning(
    clock: ManualClock,
    listener: socket.socket,
    resolver: FakeResolver,
    no_threads: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With threads=False a name is looked up on the reactor's thread (blocking), and one WARNING says so."""
    port = listener.getsockname()[1]
    caplog.set_level(logging.WARNING, logger="reactor")
    with Reactor(clock=clock, threads=False) as reactor:
        for _ in range(2):
            transport, _ = reactor.run_until_complete(reactor.create_connection(Connected, f"svc.test:{port}"))
            transport.close()
        run_until(reactor, lambda: not reactor.connections, timeout=0)
        assert reactor.run_until_complete(reactor.getaddrinfo("svc.test", 80))[0][4] == ("127.0.0.1", 80)
    assert resolver.threads == [threading.get_ident()] * 3
    warnings = [r for r in caplog.records if "resolves the name" in r.getMessage()]
    assert len(warnings) == 1
    assert "give an IP address" in warnings[0].getMessage()


def test_no_threads_localhost_needs_no_lookup(
    clock: ManualClock,
    listener: socket.socket,
    resolver: FakeResolver,
    no_threads: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """localhost is mapped by the address parser: no lookup, no warning, even without threads."""
    caplog.set_level(logging.WARNING, logger="reactor")
    with Reactor(clock=clock, threads=False) as reactor:
        future = reactor.create_connection(Connected, f"localhost:{listener.getsockname()[1]}")
        transport, _ = reactor.run_until_complete(future)
        transport.close()
        run_until(reactor, lambda: not reactor.connections, timeout=0)
    assert resolver.hosts == []
    assert caplog.records == []


def test_thread_start_failure_falls_back_to_a_lookup_here(
    reactor: Reactor, resolver: FakeResolver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """When no worker thread can start, the lookup runs on the reactor's thread with the warning."""

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    caplog.set_level(logging.WARNING, logger="reactor")
    future = reactor.getaddrinfo("svc.test", 80)
    assert future.done() and future.result()[0][4] == ("127.0.0.1", 80)
    assert resolver.threads == [threading.get_ident()]
    assert any("can't start new thread" in r.getMessage() for r in caplog.records)
