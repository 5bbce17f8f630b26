"""reactor.easy: the easyservers surface (UDPServer, UDPClient, every/after, create_thread).

All traffic is real UDP over 127.0.0.1 on port 0; time is a ManualClock
unless a test needs a thread to be served; nothing sleeps.
"""

from __future__ import annotations

import gc
import itertools
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import run_until

from reactor import ManualClock, Reactor, core
from reactor.easy import UDPClient, UDPServer, after, create_thread, every

LOOPBACK = "127.0.0.1"


def echo(message: Any, address: Any, send: Callable[[Any, Any], None]) -> None:
    send(message, address)


def collecting_client(r: Reactor, **kwargs: Any) -> tuple[UDPClient, list[tuple[Any, Any]]]:
    got: list[tuple[Any, Any]] = []
    client = UDPClient(lambda m, a: got.append((m, a)), host=LOOPBACK, reactor=r, **kwargs)
    return client, got


@pytest.fixture
def raw() -> Iterator[socket.socket]:
    """A plain blocking UDP socket on loopback, as a foreign client."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((LOOPBACK, 0))
    s.settimeout(2.0)
    yield s
    s.close()


# ------------------------------------------------------------ the server


def test_handler_gets_message_address_and_send(reactor: Reactor, no_threads: None) -> None:
    """Each datagram calls handle_function(message, address, send); send replies; no thread."""
    seen: list[tuple[Any, Any]] = []

    def handle(message: Any, address: Any, send: Callable[[Any, Any], None]) -> None:
        seen.append((message, address))
        send("re: " + message, address)

    with UDPServer(handle, 0, host=LOOPBACK, reactor=reactor) as server:
        client, got = collecting_client(reactor)
        client.send("hello", server.sockaddr)
        run_until(reactor, lambda: bool(got))
        assert seen == [("hello", client.sockaddr)]
        assert got == [("re: hello", server.sockaddr)]
        client.close()


def test_signature_and_defaults_follow_easyservers(reactor: Reactor) -> None:
    """UDPServer(handle, port=8181, threaded=False) positionally; binds port 0 to a free port."""
    server = UDPServer(echo, 0, False, host=LOOPBACK, reactor=reactor)
    assert server.port != 0 and server.sockaddr == (LOOPBACK, server.port)
    assert server.threaded is False and server.encoding == "utf-8"
    server.close()
    import inspect

    params = inspect.signature(UDPServer).parameters
    assert params["port"].default == 8181 and params["host"].default == "127.0.0.1"


def test_send_accepts_str_and_bytes(reactor: Reactor) -> None:
    """send() takes str (encoded as UTF-8) and bytes; both arrive as the same bytes."""
    with UDPServer(echo, 0, host=LOOPBACK, reactor=reactor) as server:
        client, got = collecting_client(reactor, encoding=None)
        server.send("héllo", client.sockaddr)
        server.send(b"\x00raw", client.sockaddr)
        server.send(bytearray(b"ba"), client.sockaddr)  # type: ignore[arg-type]
        run_until(reactor, lambda: len(got) == 3)
        assert [m for m, _ in got] == ["héllo".encode(), b"\x00raw", b"ba"]
        assert server.statistics()["sent"] == 3
        client.close()


def test_server_send_reaches_an_address_that_never_wrote(reactor: Reactor) -> None:
    """server.send goes to any address, not only to the sender of a datagram."""
    with UDPServer(echo, 0, host=LOOPBACK, reactor=reactor) as server:
        a, got_a = collecting_client(reactor)
        b, got_b = collecting_client(reactor)

        def forward(message: Any, address: Any, send: Callable[[Any, Any], None]) -> None:
            send("from " + str(address[1]) + ": " + message, b.sockaddr)

        server.handle = forward
        a.send("psst", server.sockaddr)
        run_until(reactor, lambda: bool(got_b))
        assert got_b == [(f"from {a.port}: psst", server.sockaddr)] and got_a == []
        a.close()
        b.close()


def test_send_rejects_other_types(reactor: Reactor) -> None:
    """send() of something that is neither str nor bytes raises TypeError at the call."""
    with (
        UDPServer(echo, 0, host=LOOPBACK, reactor=reactor) as server,
        pytest.raises(TypeError, match="str or bytes"),
    ):
        server.send(42, server.sockaddr)  # type: ignore[arg-type]


def test_send_on_a_closed_server_raises(reactor: Reactor) -> None:
    """Sending from a closed server is a usage error with a clear message."""
    server = UDPServer(echo, 0, host=LOOPBACK, reactor=reactor)
    address = server.sockaddr
    server.close()
    with pytest.raises(RuntimeError, match="closed"):
        server.send("x", address)


def test_encoding_none_hands_over_bytes(reactor: Reactor) -> None:
    """encoding=None passes the datagram as bytes, undecoded."""
    seen: list[Any] = []
    with UDPServer(lambda m, a, s: seen.append(m), 0, host=LOOPBACK, reactor=reactor,
                   encoding=None) as server:
        client, _ = collecting_client(reactor)
        client.send(b"\xff\xfe not utf-8", server.sockaddr)
        run_until(reactor, lambda: bool(seen))
        assert seen == [b"\xff\xfe not utf-8"]
        client.close()


def test_empty_datagram_is_delivered(reactor: Reactor) -> None:
    """A zero-length datagram is a message too: the handler gets ''."""
    seen: list[Any] = []
    with UDPServer(lambda m, a, s: seen.append(m), 0, host=LOOPBACK, reactor=reactor) as server:
        client, _ = collecting_client(reactor)
        client.send(b"", server.sockaddr)
        run_until(reactor, lambda: bool(seen))
        assert seen == [""]
        client.close()


def test_invalid_utf8_is_logged_and_dropped(reactor: Reactor, caplog: pytest.LogCaptureFixture) -> None:
    """A datagram that is not UTF-8 is counted and logged; the next one is handled."""
    seen: list[Any] = []
    caplog.set_level(logging.INFO, logger="reactor.easy")
    with UDPServer(lambda m, a, s: seen.append(m), 0, host=LOOPBACK, reactor=reactor) as server:
        client, _ = collecting_client(reactor)
        client.send(b"\xff\xfebad", server.sockaddr)
        client.send("good", server.sockaddr)
        run_until(reactor, lambda: bool(seen))
        stats = server.statistics()
        assert seen == ["good"]
        assert (stats["received"], stats["handled"], stats["dropped_decode"]) == (2, 1, 1)
        assert any("not utf-8" in r.getMessage() for r in caplog.records)
        client.close()


def test_oversize_datagram_is_reported_not_truncated(
    reactor: Reactor, caplog: pytest.LogCaptureFixture
) -> None:
    """A datagram longer than receive_size is counted and warned about, never handed over cut."""
    seen: list[Any] = []
    with UDPServer(lambda m, a, s: seen.append(m), 0, host=LOOPBACK, reactor=reactor,
                   receive_size=16) as server:
        client, _ = collecting_client(reactor)
        client.send("x" * 17, server.sockaddr)
        client.send("y" * 16, server.sockaddr)
        run_until(reactor, lambda: bool(seen))
        assert seen == ["y" * 16]
        assert server.statistics()["truncated"] == 1
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "receive_size=16" in warnings[0].getMessage()
        client.close()


def test_handler_exception_is_logged_and_server_goes_on(
    reactor: Reactor, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler that raises is logged with its traceback; later datagrams are still handled."""
    seen: list[Any] = []

    def handle(message: Any, address: Any, send: Any) -> None:
        if message == "boom":
            raise ValueError("handler bug")
        seen.append(message)

    with UDPServer(handle, 0, host=LOOPBACK, reactor=reactor) as server:
        client, _ = collecting_client(reactor)
        client.send("boom", server.sockaddr)
        client.send("fine", server.sockaddr)
        run_until(reactor, lambda: bool(seen))
        assert seen == ["fine"] and server.statistics()["errors"] == 1
        (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert record.name == "reactor" and record.exc_info is not None
        assert isinstance(record.exc_info[1], ValueError)
        client.close()


def test_reads_are_bounded_per_readiness(reactor: Reactor, raw: socket.socket) -> None:
    """One readiness event handles at most max_datagrams_per_read datagrams; the rest wait."""
    seen: list[Any] = []
    with UDPServer(lambda m, a, s: seen.append(m), 0, host=LOOPBACK, reactor=reactor) as server:
        for i in range(100):
            raw.sendto(str(i).encode(), server.sockaddr)
        reactor.run_once(0.5)
        assert len(seen) == UDPServer.max_datagrams_per_read == 64
        run_until(reactor, lambda: len(seen) == 100)
        assert seen == [str(i) for i in range(100)]


def test_handler_may_close_the_server_mid_batch(reactor: Reactor, raw: socket.socket) -> None:
    """A handler that closes its own server ends the batch quietly; the socket is released."""
    seen: list[Any] = []

    def handle(message: Any, address: Any, send: Any) -> None:
        seen.append(message)
        server.close()

    server = UDPServer(handle, 0, host=LOOPBACK, reactor=reactor)
    for _ in range(5):
        raw.sendto(b"x", server.sockaddr)
    reactor.run_once(0.5)
    assert seen == ["x"] and server.closed and server.socket.fileno() == -1
    assert server.statistics()["errors"] == 0


class EagainSocket:
    """Wraps a real socket; sendto raises BlockingIOError while ``blocked``."""

    def __init__(self, real: socket.socket) -> None:
        self.real = real
        self.blocked = True

    def sendto(self, data: bytes, address: Any) -> int:
        if self.blocked:
            raise BlockingIOError
        return self.real.sendto(data, address)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_send_queues_on_eagain_and_flushes_when_writable(reactor: Reactor) -> None:
    """send() never blocks: on EAGAIN the datagram is queued, sent in order when writable."""
    with UDPServer(echo, 0, host=LOOPBACK, reactor=reactor) as server:
        client, got = collecting_client(reactor)
        real = server.socket
        fake = EagainSocket(real)
        server.socket = fake  # type: ignore[assignment]
        for i in range(3):
            server.send(f"m{i}", client.sockaddr)
        assert server.statistics()["send_queue"] == 3 and server.statistics()["sent"] == 0
        reactor.run_once(0)  # writable, but the kernel still says EAGAIN: kept queued
        assert server.statistics()["send_queue"] == 3
        fake.blocked = False
        run_until(reactor, lambda: len(got) == 3)
        assert [m for m, _ in got] == ["m0", "m1", "m2"]
        stats = server.statistics()
        assert (stats["sent"], stats["send_queue"], stats["send_dropped"]) == (3, 0, 0)
        assert reactor.remove_writer(real) is False  # the writer went away with the queue
        server.socket = real
        client.close()


def test_send_queue_is_bounded_and_counts_drops(reactor: Reactor) -> None:
    """A full send queue drops (and counts) further datagrams instead of growing."""
    with UDPServer(echo, 0, host=LOOPBACK, reactor=reactor, send_queue_size=2) as server:
        real = server.socket
        fd = real.fileno()
        server.socket = EagainSocket(real)  # type: ignore[assignment]
        for _ in range(5):
            server.send("x", (LOOPBACK, 9))
        stats = server.statistics()
        assert (stats["send_queue"], stats["send_dropped"]) == (2, 3)
        server.socket = real
    assert reactor.remove_writer(fd) is False  # close() took the writer away


def test_send_error_is_counted_not_raised(reactor: Reactor, caplog: pytest.LogCaptureFixture) -> None:
    """A datagram the kernel refuses (too large) is logged and counted; the server goes on."""
    with UDPServer(echo, 0, host=LOOPBACK, reactor=reactor) as server:
        server.send(b"x" * 70000, (LOOPBACK, 9))
        assert server.statistics()["send_dropped"] == 1
        assert "could not send" in caplog.text


# ---------------------------------------------------- timers, threads


def test_every_and_after_run_on_the_reactor_without_threads(
    reactor: Reactor, clock: ManualClock, no_threads: None
) -> None:
    """Module-level every()/after() with reactor= are timers with cancel(), not threads."""
    ticks: list[float] = []
    once: list[str] = []
    handle = every(10.0, lambda: ticks.append(reactor.time()), reactor=reactor)
    later = after(5.0, once.append, "late", reactor=reactor)
    for _ in range(4):
        clock.advance(5.0)
        reactor.run_once(0)
    assert once == ["late"] and ticks == [1010.0, 1020.0]
    handle.cancel()
    later.cancel()
    clock.advance(30.0)
    reactor.run_once(0)
    assert ticks == [1010.0, 1020.0]


def test_every_and_after_default_to_the_default_reactor(
    monkeypatch: pytest.MonkeyPatch, reactor: Reactor, clock: ManualClock
) -> None:
    """Without reactor=, every/after and UDPServer use get_default_reactor()."""
    monkeypatch.setattr(core, "_default_reactor", reactor)
    got: list[str] = []
    every(1.0, got.append, "tick")
    after(0.5, got.append, "once")
    clock.advance(1.0)
    reactor.run_once(0)
    assert got == ["once", "tick"]  # in order of due time
    server = UDPServer(echo, 0, host=LOOPBACK)
    assert server.reactor is reactor
    server.close()


def test_server_every_and_after_methods(reactor: Reactor, clock: ManualClock, no_threads: None) -> None:
    """server.every/server.after schedule on the server's reactor, e.g. to ping clients."""
    with UDPServer(echo, 0, host=LOOPBACK, reactor=reactor) as server:
        client, got = collecting_client(reactor)
        pinger = server.every(10.0, server.send, "PING", client.sockaddr)
        server.after(15.0, server.send, "BYE", client.sockaddr)
        clock.advance(10.0)
        run_until(reactor, lambda: len(got) == 1)
        clock.advance(10.0)
        run_until(reactor, lambda: len(got) == 3)
        pinger.cancel()
        assert [m for m, _ in got] == ["PING", "BYE", "PING"]
        client.close()


def test_a_failing_every_callback_keeps_its_beat(
    reactor: Reactor, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A side task that raises is logged and still called on the next beat."""
    calls: list[int] = []

    def flaky() -> None:
        calls.append(1)
        raise RuntimeError("side task bug")

    handle = every(1.0, flaky, reactor=reactor)
    for _ in range(3):
        clock.advance(1.0)
        reactor.run_once(0)
    handle.cancel()
    assert len(calls) == 3 and "side task bug" in caplog.text


def test_create_thread_starts_a_daemon_thread_with_args() -> None:
    """create_thread runs function(*args, **kwargs) in a started daemon thread."""
    got: list[Any] = []
    thread = create_thread(lambda a, b=0: got.append((a, b)), (1,), {"b": 2})
    thread.join(5)
    assert thread.daemon and got == [(1, 2)]


def test_create_thread_start_false_returns_an_unstarted_thread(reactor: Reactor) -> None:
    """start=False hands back a thread to start later; the server method does the same."""
    done = threading.Event()
    with UDPServer(echo, 0, host=LOOPBACK, reactor=reactor) as server:
        thread = server.create_thread(done.set, start=False)
        assert not thread.is_alive() and not done.is_set()
        thread.start()
        thread.join(5)
        assert done.is_set()


def test_send_from_another_thread_goes_through_the_reactor(real_reactor: Reactor) -> None:
    """server.send from a create_thread thread is handed to the reactor thread, in order."""
    r = real_reactor
    with UDPServer(echo, 0, host=LOOPBACK, reactor=r) as server:
        client, got = collecting_client(r)
        sender_ident: list[int] = []

        def pinger() -> None:
            sender_ident.append(threading.get_ident())
            for i in range(20):
                server.send(f"PING {i}", client.sockaddr)

        thread = server.create_thread(pinger)
        run_until(r, lambda: len(got) == 20)
        thread.join(5)
        assert [m for m, _ in got] == [f"PING {i}" for i in range(20)]
        assert sender_ident[0] != threading.get_ident()
        client.close()


# ------------------------------------------------------------ threaded


def test_threaded_handles_in_a_bounded_pool(real_reactor: Reactor) -> None:
    """threaded=True runs handlers in at most max_workers pool threads, and replies arrive."""
    r = real_reactor
    idents: set[int] = set()
    lock = threading.Lock()

    def handle(message: Any, address: Any, send: Callable[[Any, Any], None]) -> None:
        with lock:
            idents.add(threading.get_ident())
        send("re " + message, address)

    before = threading.active_count()
    server = UDPServer(handle, 0, True, host=LOOPBACK, reactor=r, max_workers=3)
    client, got = collecting_client(r)
    for i in range(60):
        client.send(str(i), server.sockaddr)
    run_until(r, lambda: len(got) == 60)
    assert threading.active_count() <= before + 3
    server.close()
    client.close()
    assert sorted(m for m, _ in got) == sorted(f"re {i}" for i in range(60))
    assert 1 <= len(idents) <= 3 and threading.get_ident() not in idents
    assert threading.active_count() == before


def test_threaded_backlog_is_bounded(real_reactor: Reactor, raw: socket.socket) -> None:
    """With max_pending datagrams in the pool, further ones are dropped and counted."""
    r = real_reactor
    release = threading.Event()
    seen: list[Any] = []

    def handle(message: Any, address: Any, send: Any) -> None:
        release.wait(5)
        seen.append(message)

    server = UDPServer(handle, 0, True, host=LOOPBACK, reactor=r, max_workers=1, max_pending=2)
    for i in range(5):
        raw.sendto(str(i).encode(), server.sockaddr)
    run_until(r, lambda: server.statistics()["received"] == 5)
    stats = server.statistics()
    assert (stats["handled"], stats["dropped_busy"]) == (2, 3)
    release.set()
    run_until(r, lambda: len(seen) == 2)
    server.close()
    assert seen == ["0", "1"]


def test_threaded_handler_exception_is_logged(real_reactor: Reactor, raw: socket.socket,
                                              caplog: pytest.LogCaptureFixture) -> None:
    """A handler that raises in a worker is logged with its traceback and counted."""
    r = real_reactor

    def handle(message: Any, address: Any, send: Any) -> None:
        raise KeyError(message)

    server = UDPServer(handle, 0, True, host=LOOPBACK, reactor=r, max_workers=1)
    raw.sendto(b"k", server.sockaddr)
    run_until(r, lambda: server.statistics()["errors"] == 1)
    # Reported on the reactor's thread, through its exception handler: one more turn.
    run_until(r, lambda: any(rec.levelno == logging.ERROR for rec in caplog.records))
    server.close()
    (record,) = [rec for rec in caplog.records if rec.levelno == logging.ERROR]
    assert record.exc_info is not None and isinstance(record.exc_info[1], KeyError)


def test_worker_send_after_close_is_dropped_quietly(
    real_reactor: Reactor, raw: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that replies while the server is closing does not raise or send."""
    r = real_reactor
    started, release = threading.Event(), threading.Event()

    def handle(message: Any, address: Any, send: Callable[[Any, Any], None]) -> None:
        started.set()
        release.wait(5)
        send("late", address)

    server = UDPServer(handle, 0, True, host=LOOPBACK, reactor=r, max_workers=1)
    raw.sendto(b"q", server.sockaddr)
    run_until(r, started.is_set)
    assert server._executor is not None
    shutdown = server._executor.shutdown

    def release_then_shutdown(**kwargs: Any) -> None:  # the server is closed by now
        release.set()
        shutdown(**kwargs)

    monkeypatch.setattr(server._executor, "shutdown", release_then_shutdown)
    server.close()
    r.run_once(0)
    assert server.statistics()["errors"] == 0 and server.statistics()["sent"] == 0


# ----------------------------------------------------- run / start / stop


def test_run_serves_in_the_calling_thread_until_stop(reactor: Reactor, raw: socket.socket,
                                                      no_threads: None) -> None:
    """run() blocks this thread, serving datagrams, until a handler calls stop()."""
    seen: list[Any] = []

    def handle(message: Any, address: Any, send: Callable[[Any, Any], None]) -> None:
        seen.append((message, threading.get_ident()))
        send("bye", address)
        if message == "quit":
            server.stop()

    with UDPServer(handle, 0, host=LOOPBACK, reactor=reactor) as server:
        raw.sendto(b"one", server.sockaddr)
        raw.sendto(b"quit", server.sockaddr)
        server.run()
        assert seen == [("one", threading.get_ident()), ("quit", threading.get_ident())]
        assert not reactor.is_running()
        assert raw.recvfrom(100)[0] == b"bye"


def test_start_serves_in_a_background_thread(raw: socket.socket) -> None:
    """start() serves from one background thread; stop() ends it; the with-block closes."""
    with Reactor() as r:
        server = UDPServer(echo, 0, host=LOOPBACK, reactor=r)
        with server:
            thread = server.start()
            assert thread is not None and thread.daemon
            raw.sendto(b"ping", server.sockaddr)
            assert raw.recvfrom(100) == (b"ping", server.sockaddr)
            server.stop()
            assert not thread.is_alive() and not r.is_running()
        assert server.closed


def test_servers_sharing_a_reactor_share_one_thread(raw: socket.socket) -> None:
    """A second start() on an already started reactor returns the same thread."""
    with Reactor() as r:
        a = UDPServer(lambda m, ad, s: s("a", ad), 0, host=LOOPBACK, reactor=r)
        b = UDPServer(lambda m, ad, s: s("b", ad), 0, host=LOOPBACK, reactor=r)
        before = threading.active_count()
        first, second = a.start(), b.start()
        assert first is second and threading.active_count() == before + 1
        raw.sendto(b"?", a.sockaddr)
        raw.sendto(b"?", b.sockaddr)
        assert {raw.recvfrom(10)[0], raw.recvfrom(10)[0]} == {b"a", b"b"}
        b.stop()  # stops b only: the thread goes on serving a
        assert first is not None and first.is_alive()
        raw.sendto(b"?", a.sockaddr)
        assert raw.recvfrom(10)[0] == b"a"
        a.stop()  # the last started endpoint: the thread ends
        assert not first.is_alive()
        a.close()
        b.close()


def test_send_from_the_main_thread_while_started(raw: socket.socket) -> None:
    """While start() serves in the background, send() from the main thread is safe."""
    with Reactor() as r, UDPServer(echo, 0, host=LOOPBACK, reactor=r) as server:
        server.start()
        for i in range(10):
            server.send(str(i), raw.getsockname())
        assert [raw.recvfrom(10)[0] for _ in range(10)] == [str(i).encode() for i in range(10)]


def test_sends_made_before_stop_go_out(raw: socket.socket) -> None:
    """stop() from another thread comes after that thread's earlier send() calls."""
    for _ in range(20):  # the race it guards against is narrow: try it a few times
        with Reactor() as r, UDPServer(echo, 0, host=LOOPBACK, reactor=r) as server:
            server.start()
            server.send("last words", raw.getsockname())
            server.stop()
            assert server.statistics()["sent"] == 1
        assert raw.recvfrom(20)[0] == b"last words"


def test_server_created_while_the_reactor_runs_elsewhere(raw: socket.socket) -> None:
    """A server created while a start() thread runs the reactor registers from that thread."""
    with Reactor() as r:
        first = UDPServer(echo, 0, host=LOOPBACK, reactor=r)
        first.start()
        second = UDPServer(lambda m, a, send: send("second", a), 0, host=LOOPBACK, reactor=r)
        raw.sendto(b"?", second.sockaddr)
        assert raw.recvfrom(10)[0] == b"second"
        first.stop()
        first.close()
        second.close()


def test_bind_conflict_names_the_address(raw: socket.socket, reactor: Reactor) -> None:
    """Binding a port in use raises OSError naming host:port."""
    port = raw.getsockname()[1]
    with pytest.raises(OSError, match=f"127.0.0.1:{port}"):
        UDPServer(echo, port, host=LOOPBACK, reactor=reactor)


def test_ipv6_addresses_are_spelled_with_brackets(reactor: Reactor) -> None:
    """An IPv6 endpoint's repr and bind errors write '[::1]:port', as parse_address reads it."""
    try:
        server = UDPServer(echo, 0, host="::1", reactor=reactor)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    try:
        assert repr(server) == f"<UDPServer [::1]:{server.port}>"
        with pytest.raises(OSError, match=rf"\[::1\]:{server.port}"):
            UDPServer(echo, server.port, host="::1", reactor=reactor)
    finally:
        server.close()


def test_stop_when_nothing_runs_is_a_no_op(reactor: Reactor, raw: socket.socket) -> None:
    """stop() before run() does not make a later run() return at once."""
    with UDPServer(lambda m, a, s: server.stop(), 0, host=LOOPBACK, reactor=reactor) as server:
        server.stop()
        raw.sendto(b"x", server.sockaddr)
        server.run()
        assert server.statistics()["handled"] == 1


def test_close_is_idempotent_and_unregisters(reactor: Reactor) -> None:
    """close() twice is fine; afterwards the socket is closed and not watched."""
    server = UDPServer(echo, 0, host=LOOPBACK, reactor=reactor)
    fd = server.socket.fileno()
    server.close()
    server.close()
    assert server.closed and server.socket.fileno() == -1
    assert reactor.remove_reader(fd) is False
    with pytest.raises(RuntimeError, match="closed"):
        server.run()


def test_unclosed_server_warns() -> None:
    """A server dropped without close() emits ResourceWarning (and closes its socket)."""
    gc.collect()
    r = Reactor()
    server = UDPServer(echo, 0, host=LOOPBACK, reactor=r)
    r.close()  # lets go of the reader registration
    with pytest.warns(ResourceWarning, match="unclosed UDPServer"):
        del server  # nothing else refers to it: collected at once


# ---------------------------------------------------------------- client


def test_udp_client_gets_replies_with_their_address(reactor: Reactor, no_threads: None) -> None:
    """UDPClient.send goes out; replies reach handle_function(message, address)."""
    got: list[tuple[Any, Any]] = []
    with (
        UDPServer(lambda m, a, s: s(m.upper(), a), 0, host=LOOPBACK, reactor=reactor) as server,
        UDPClient(lambda m, a: got.append((m, a)), host=LOOPBACK, reactor=reactor) as client,
    ):
        client.send("abc", server.sockaddr)
        client.send(b"def", server.sockaddr)
        run_until(reactor, lambda: len(got) == 2)
        assert got == [("ABC", server.sockaddr), ("DEF", server.sockaddr)]
        assert client.statistics()["received"] == 2 and client.statistics()["sent"] == 2


# --------------------------------------------------- several servers


def test_several_udp_servers_in_one_reactor(reactor: Reactor, no_threads: None) -> None:
    """Three UDP servers on one reactor each answer with their own handler."""
    def tagging(tag: str) -> Callable[[Any, Any, Any], None]:
        return lambda m, a, send: send(tag + m, a)

    servers = [UDPServer(tagging(tag), 0, host=LOOPBACK, reactor=reactor) for tag in ("a:", "b:", "c:")]
    client, got = collecting_client(reactor)
    for server in servers:
        client.send("x", server.sockaddr)
    run_until(reactor, lambda: len(got) == 3)
    assert sorted(got) == sorted([("a:x", servers[0].sockaddr), ("b:x", servers[1].sockaddr),
                                  ("c:x", servers[2].sockaddr)])
    for s in [*servers, client]:
        s.close()


def test_udp_request_and_socketserver_servers_share_one_reactor(real_reactor: Reactor) -> None:
    """Two UDP servers, a TCP RequestServer and a socketserver TCPServer answer on one reactor."""
    reqrep = pytest.importorskip("reactor.reqrep")
    ss = pytest.importorskip("reactor.socketserver")
    r = real_reactor

    class Upper(reqrep.RequestServer):  # type: ignore[name-defined,misc]
        def handle_request(self, request: str) -> str:
            return request.upper()

    class Handler(ss.StreamRequestHandler):  # type: ignore[name-defined,misc]
        def handle(self) -> None:
            self.wfile.write(self.rfile.readline()[::-1].strip() + b"\n")

    request_server = Upper(f"{LOOPBACK}:0", reactor=r)
    stream_server = ss.TCPServer((LOOPBACK, 0), Handler, reactor=r)
    udp_a = UDPServer(lambda m, a, s: s("a:" + m, a), 0, host=LOOPBACK, reactor=r)
    udp_b = UDPServer(lambda m, a, s: s("b:" + m, a), 0, host=LOOPBACK, reactor=r)
    client, got = collecting_client(r)
    client.send("x", udp_a.address)
    client.send("y", udp_b.address)
    reply = r.request(request_server.address, "stream", 2.0)
    conn = socket.create_connection(stream_server.server_address, timeout=2)
    conn.setblocking(False)
    conn.sendall(b"olleh\n")
    line = bytearray()

    def all_answered() -> bool:
        try:
            line.extend(conn.recv(100))
        except BlockingIOError:
            pass
        return line.endswith(b"\n") and reply.done() and len(got) == 2

    run_until(r, all_answered)
    assert sorted(got) == [("a:x", udp_a.sockaddr), ("b:y", udp_b.sockaddr)]
    assert reply.result() == "STREAM" and bytes(line) == b"hello\n"
    conn.close()
    for server in (request_server, udp_a, udp_b, client):
        server.close()
    stream_server.server_close()


# ------------------------------------------------------------ floods


def test_kernel_drops_are_counted(reactor: Reactor, raw: socket.socket) -> None:
    """Datagrams the kernel drops on a full buffer show in kernel_drops; received + drops = sent."""
    seen: list[Any] = []
    server = UDPServer(lambda m, a, s: seen.append(m), 0, host=LOOPBACK, reactor=reactor,
                       receive_buffer=4096)
    if server.statistics()["kernel_drops"] is None:
        server.close()
        pytest.skip("SO_RXQ_OVFL is not available on this platform")
    for _ in range(500):  # nobody reads meanwhile: the small buffer overflows
        raw.sendto(b"d" * 32, server.sockaddr)
    run_until(reactor, lambda: server.statistics()["received"] == len(seen) > 0
              and not _readable(server.socket))
    raw.sendto(b"end", server.sockaddr)  # carries the kernel's final drop count
    run_until(reactor, lambda: seen[-1] == "end")
    stats = server.statistics()
    assert stats["kernel_drops"] is not None and stats["kernel_drops"] > 0
    assert stats["received"] + stats["kernel_drops"] == 501
    server.close()


def _readable(sock: socket.socket) -> bool:
    import select

    return bool(select.select([sock], [], [], 0)[0])


class FloodResult:
    """Figures of one flood run."""

    def __init__(self) -> None:
        self.sent = 0
        self.received = 0
        self.kernel_drops: int | None = None
        self.ticks = 0
        self.max_tick_gap = 0.0
        self.probe_rtts: list[float] = []
        self.elapsed = 0.0


# The flood comes from another process, so that the senders compete with the
# server for the CPU as real clients would, not for this interpreter's GIL.
_BLASTER = """
import socket, sys
host, port, per_client, clients = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(clients)]
payload = b"f" * 64
print("ready", flush=True)
sys.stdin.readline()
sent = 0
for _ in range(per_client):
    for sock in socks:
        sock.sendto(payload, (host, port))
        sent += 1
print(sent, flush=True)
"""


def flood(r: Reactor, probe: Callable[[], None] | None = None, *, total: int = 10_000,
          clients: int = 4, tick: float = 0.002) -> tuple[UDPServer, FloodResult]:
    """Blast ``total`` datagrams from ``clients`` sockets of another process at one server.

    The test thread runs the reactor the whole time; a reactor timer ticks
    every ``tick`` s and ``probe`` (if given) runs on every tick.  Afterwards
    a final datagram is sent until one gets through, so the kernel's drop
    count it carries is final: ``received + kernel_drops == sent``.
    """
    result = FloodResult()
    counts = {"flood": 0, "end": 0}

    def handle(message: Any, address: Any, send: Any) -> None:
        counts["end" if message == b"end" else "flood"] += 1

    server = UDPServer(handle, 0, host=LOOPBACK, reactor=r, encoding=None)
    ticks: list[float] = []

    def on_tick() -> None:
        ticks.append(time.monotonic())
        if probe is not None:
            probe()

    ticker = server.every(tick, on_tick)
    try:
        with (
            subprocess.Popen(
                [sys.executable, "-I", "-c", _BLASTER, LOOPBACK, str(server.port),
                 str(total // clients), str(clients)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            ) as blaster,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as end_sock,
        ):
            try:
                assert blaster.stdin is not None and blaster.stdout is not None
                assert blaster.stdout.readline() == "ready\n"
                start = time.monotonic()
                deadline = start + 10.0
                blaster.stdin.write("go\n")
                blaster.stdin.flush()
                while blaster.poll() is None and time.monotonic() < deadline:
                    r.run_once(tick)
                out, _ = blaster.communicate(timeout=5)
            finally:
                blaster.kill()  # a no-op once it has exited; never outlives a failure
            ends = 0
            while counts["end"] == 0 and time.monotonic() < deadline:
                end_sock.sendto(b"end", server.sockaddr)
                ends += 1
                for _ in range(50):
                    r.run_once(0.01)
                    if counts["end"]:
                        break
        result.elapsed = time.monotonic() - start
        ticker.cancel()
        stats = server.statistics()
        result.sent = int(out) + ends
        result.received = stats["received"]
        result.kernel_drops = stats["kernel_drops"]
        gaps = [b - a for a, b in itertools.pairwise(ticks)]
        result.ticks = len(ticks)
        result.max_tick_gap = max(gaps, default=0.0)
        assert int(out) == total // clients * clients
        assert counts["end"] >= 1, "the server never got the final datagram"
        assert counts["flood"] + counts["end"] == stats["handled"] == stats["received"]
    except BaseException:
        ticker.cancel()
        server.close()
        raise
    return server, result


def test_flood_is_counted_and_the_reactor_stays_responsive(real_reactor: Reactor) -> None:
    """10,000 datagrams from 4 clients: every one is received or counted as a kernel drop,
    while timers and a socketpair echo on the same reactor keep being served."""
    r = real_reactor
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    echo_rtts: list[float] = []
    sent_at: list[float] = []

    def on_echo() -> None:
        a.recv(64)
        echo_rtts.append(time.monotonic() - sent_at[-1])

    r.add_reader(a, on_echo)

    def probe() -> None:  # one byte through a socketpair, answered by a reader on this reactor
        if len(sent_at) == len(echo_rtts):
            sent_at.append(time.monotonic())
            b.send(b"p")

    server, result = flood(r, probe)
    run_until(r, lambda: len(echo_rtts) == len(sent_at))
    r.remove_reader(a)
    a.close()
    b.close()
    server.close()
    if result.kernel_drops is not None:
        assert result.received + result.kernel_drops == result.sent
    else:
        assert result.received <= result.sent
    assert result.received > 0
    assert result.elapsed < 8.0
    # However short the flood, the timer kept its beat (one per 50 ms at worst).
    assert result.ticks >= 1 + int(result.elapsed / 0.05) and result.max_tick_gap < 0.25
    assert len(echo_rtts) >= 1 and max(echo_rtts) < 0.25


def test_flood_keeps_a_request_server_on_the_same_reactor_responsive(real_reactor: Reactor) -> None:
    """During a 10,000-datagram flood a RequestServer on the same reactor keeps answering."""
    reqrep = pytest.importorskip("reactor.reqrep")
    r = real_reactor
    tcp = reqrep.RequestServer(f"{LOOPBACK}:0", reactor=r)
    rtts: list[float] = []
    replies: list[str] = []
    pending: list[Any] = []

    def probe() -> None:
        if pending and not pending[-1].done():
            return
        started = time.monotonic()
        fut = r.request(tcp.address, "ping", 2.0)

        def done(f: Any) -> None:
            rtts.append(time.monotonic() - started)
            replies.append(f.result())

        fut.add_done_callback(done)
        pending.append(fut)

    server, result = flood(r, probe)
    run_until(r, lambda: all(f.done() for f in pending))
    tcp.close()
    server.close()
    if result.kernel_drops is not None:
        assert result.received + result.kernel_drops == result.sent
    assert len(replies) >= 1 + int(result.elapsed / 0.1)
    assert set(replies) == {"Requested: ping"}
    assert max(rtts) < 0.25
