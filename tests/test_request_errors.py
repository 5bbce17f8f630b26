"""Every way a client-side request can fail is a `RequestError`, and keeps the class it had before."""

from __future__ import annotations

import errno
import pickle
import socket
import struct
import threading
from typing import Any

import pytest
from conftest import addr, run_until

from reactor import (
    CancelledError,
    ManualClock,
    Reactor,
    ReplyNotUTF8,
    RequestError,
    RequestFailed,
    RequestNotResolved,
    RequestRefused,
    RequestReset,
    RequestTimeout,
    do_request,
)
from reactor.client import ReplyProtocol
from reactor.futures import Future


def accepted(reactor: Reactor, listener: socket.socket) -> socket.socket:
    """Run the reactor until the client's request has arrived at ``listener``; the accepted socket."""
    run_until(reactor, lambda: any(r.state == "WRITE_CLOSED" for r in reactor.connections.values()))
    conn, _ = listener.accept()  # socket-ok: the test's own server
    return conn


def reset(conn: socket.socket) -> None:
    """Close ``conn`` with a reset (SO_LINGER 0)."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def failure(reactor: Reactor, future: Future[str]) -> BaseException:
    """Run until ``future`` is done; the exception it failed with."""
    run_until(reactor, future.done)
    exc = future.exception()
    assert exc is not None, future.result()
    run_until(reactor, lambda: reactor.connections == {})
    return exc


def test_refused_is_a_request_error(reactor: Reactor, listener: socket.socket) -> None:
    """Nothing listening: RequestRefused, a RequestError and a ConnectionRefusedError."""
    address = addr(listener)
    listener.close()
    exc = failure(reactor, reactor.request(address, "x", timeout=5))
    assert isinstance(exc, RequestRefused) and isinstance(exc, RequestError)
    assert isinstance(exc, ConnectionRefusedError)


def test_reset_before_the_reply_is_a_request_error(reactor: Reactor, listener: socket.socket) -> None:
    """A server that resets with the request unread: RequestReset, a RequestError and a ConnectionResetError."""
    future = reactor.request(addr(listener), "x", timeout=5)
    reset(accepted(reactor, listener))
    exc = failure(reactor, future)
    assert isinstance(exc, RequestReset) and isinstance(exc, RequestError)
    assert isinstance(exc, ConnectionResetError)


def test_reset_in_the_middle_of_the_reply_is_a_request_error(reactor: Reactor, listener: socket.socket) -> None:
    """A reset after part of the reply: a RequestError that is still the ConnectionResetError, with its errno."""
    future = reactor.request(addr(listener), "x", timeout=5)
    conn = accepted(reactor, listener)
    conn.recv(16)  # socket-ok: read the request, so that the reset is the server's choice
    conn.sendall(b"half a rep")  # socket-ok
    run_until(reactor, lambda: any(r.bytes_in for r in reactor.connections.values()))
    reset(conn)
    exc = failure(reactor, future)
    assert isinstance(exc, RequestError) and isinstance(exc, ConnectionResetError)
    assert exc.errno == errno.ECONNRESET and isinstance(exc.__cause__, ConnectionResetError)
    assert type(exc).__name__ == "RequestError[ConnectionResetError]"
    copy = pickle.loads(pickle.dumps(exc))
    assert type(copy) is type(exc) and copy.errno == errno.ECONNRESET


def test_timeout_is_a_request_error(reactor: Reactor, clock: ManualClock, listener: socket.socket) -> None:
    """No reply within the timeout: RequestTimeout, a RequestError and a TimeoutError."""
    future = reactor.request(addr(listener), "x", timeout=2)
    run_until(reactor, lambda: any(r.state == "WRITE_CLOSED" for r in reactor.connections.values()))
    clock.advance(2)
    exc = failure(reactor, future)
    assert isinstance(exc, RequestTimeout) and isinstance(exc, RequestError)
    assert isinstance(exc, TimeoutError) and "within 2.0 s" in str(exc)


@pytest.mark.parametrize("ending", [b"\r\n", b""])
def test_reply_not_utf8_is_a_request_error(reactor: Reactor, listener: socket.socket, ending: bytes) -> None:
    """A reply that is not UTF-8 (ended by CRLF or by EOF): ReplyNotUTF8, a RequestError and a UnicodeDecodeError."""
    future = reactor.request(addr(listener), "x", timeout=5)
    conn = accepted(reactor, listener)
    conn.recv(16)  # socket-ok: read the request, so that the close is not a reset
    conn.sendall(b"ok \xff\xfe" + ending)  # socket-ok
    conn.close()
    exc = failure(reactor, future)
    assert isinstance(exc, ReplyNotUTF8) and isinstance(exc, RequestError)
    assert isinstance(exc, UnicodeDecodeError) and isinstance(exc, ValueError)
    assert (exc.encoding, exc.object, exc.start) == ("utf-8", b"ok \xff\xfe", 3)
    assert addr(listener) in str(exc) and "not UTF-8" in str(exc)


def test_do_request_raises_reply_not_utf8(listener: socket.socket) -> None:
    """do_request raises the same ReplyNotUTF8 for a reply that is not UTF-8."""
    listener.settimeout(5)

    def serve() -> None:
        conn, _ = listener.accept()  # socket-ok: the test's own server
        with conn:
            conn.recv(16)  # socket-ok
            conn.sendall(b"\x80\r\n")  # socket-ok

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with pytest.raises(RequestError) as info:
            do_request(addr(listener), "x", 5)
    finally:
        thread.join(5)
    assert isinstance(info.value, ReplyNotUTF8) and isinstance(info.value, UnicodeDecodeError)


def test_closed_reactor_mid_request_is_a_request_error(reactor: Reactor, listener: socket.socket) -> None:
    """The reactor closed under a request: RequestFailed, a RequestError."""
    future = reactor.request(addr(listener), "x", timeout=5)
    reactor.run_once(0)
    reactor.close()
    exc = future.exception()
    assert isinstance(exc, RequestFailed) and isinstance(exc, RequestError)


def test_request_on_a_closed_reactor_raises_a_request_error(listener: socket.socket) -> None:
    """A request on a reactor closed before the call raises a RequestError (still a RuntimeError) at once."""
    closed = Reactor(clock=ManualClock())
    closed.close()
    with pytest.raises(RequestError, match="Reactor is closed") as info:
        closed.request(addr(listener), "x", timeout=5)
    assert isinstance(info.value, RuntimeError)


def refuse_to_resolve(monkeypatch: pytest.MonkeyPatch, host: str, exc: OSError) -> None:
    """Make a connect to ``host`` fail with ``exc`` (no resolver and no network is asked)."""
    real_connect = socket.socket.connect

    def connect(sock: socket.socket, address: Any) -> None:
        if isinstance(address, tuple) and address[0] == host:
            raise exc
        real_connect(sock, address)  # socket-ok: anything else connects for real

    monkeypatch.setattr(socket.socket, "connect", connect)


def test_unresolved_host_is_a_request_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A host that does not resolve: RequestNotResolved, a RequestError and a socket.gaierror naming the host."""
    refuse_to_resolve(monkeypatch, "no-such-host.invalid", socket.gaierror(socket.EAI_NONAME, "Name not known"))
    with pytest.raises(RequestError) as info:
        do_request("no-such-host.invalid:80", "x", 5)
    exc = info.value
    assert isinstance(exc, RequestNotResolved) and isinstance(exc, socket.gaierror)
    assert exc.errno == socket.EAI_NONAME and "'no-such-host.invalid'" in str(exc)
    assert isinstance(exc.__cause__, socket.gaierror)


def test_any_other_network_error_is_a_request_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another OSError of the connect (no route to host): a RequestError that is still an OSError, errno kept."""
    refuse_to_resolve(monkeypatch, "192.0.2.7", OSError(errno.EHOSTUNREACH, "No route to host"))
    with pytest.raises(RequestError) as info:
        do_request("192.0.2.7:80", "x", 5)
    exc = info.value
    assert isinstance(exc, OSError) and exc.errno == errno.EHOSTUNREACH
    assert isinstance(exc.__cause__, OSError) and not isinstance(exc.__cause__, RequestError)


def test_cancelled_request_stays_cancelled(reactor: Reactor, listener: socket.socket) -> None:
    """A cancelled request is cancelled: CancelledError, not a RequestError, and its row is gone."""
    future = reactor.request(addr(listener), "x", timeout=5)
    reactor.run_once(0)
    future.cancel()
    run_until(reactor, lambda: reactor.connections == {})
    assert future.cancelled()
    with pytest.raises(CancelledError):
        future.result()


class Picky(Exception):
    """An exception whose constructor cannot be called with its own args."""

    def __init__(self, *, what: str) -> None:
        super().__init__(what)


def test_an_error_that_cannot_be_rebuilt_is_still_a_request_error(reactor: Reactor) -> None:
    """An unusual error losing the connection still fails the request with a RequestError that names it."""
    future: Future[str] = reactor.create_future()
    protocol = ReplyProtocol(future, b"x\r\n", 64, "memory", None)
    protocol.connection_lost(Picky(what="odd"))
    exc = future.exception()
    assert isinstance(exc, RequestError) and "Picky: odd" in str(exc)
    assert isinstance(exc.__cause__, Picky)
