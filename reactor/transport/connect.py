"""Non-blocking connect with a timeout: `open_connection`.

What can go wrong when connecting, and what we chose
----------------------------------------------------
*Blocking.*  ``connect()`` on a non-blocking TCP socket returns
``EINPROGRESS``; the socket becomes writable when the handshake finished or
failed, and ``SO_ERROR`` tells which.  The connection is a row in the
connection table (``CONNECTING``) from the first moment, so it is counted,
listed and closed like every other.

*Unix sockets.*  ``connect()`` on a non-blocking ``AF_UNIX`` socket never
returns ``EINPROGRESS``: ``EAGAIN`` means the listener's backlog is full.
Waiting for writability would spin, so we retry after a short delay that
doubles up to 50 ms, within the timeout.

*Timeouts.*  A connect that takes longer than ``timeout`` seconds is aborted
and the future fails with `TimeoutError`.  Cancelling the future aborts the
connection attempt too.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable
from typing import Any

from ..addresses import Address
from ..core import Reactor, TimerHandle
from ..futures import Future
from .errors import report_user_error
from .stream import _EV_WRITE, DEFAULT_LIMITS, StreamTransport, TransportLimits
from .table import State

__all__ = ["open_connection", "attach_socket", "Connector"]

_UNIX_RETRY_FIRST = 0.001
_UNIX_RETRY_MAX = 0.05


class Connector:
    """One outgoing connection attempt; the owner of its row until it closes."""

    __slots__ = ("reactor", "address", "factory", "future", "transport", "timer", "retry_delay", "timeout")

    def __init__(
        self,
        reactor: Reactor,
        address: Address,
        protocol_factory: Callable[[], Any],
        timeout: float | None,
        limits: TransportLimits,
    ) -> None:
        self.reactor = reactor
        self.address = address
        self.factory = protocol_factory
        self.timeout = timeout
        self.future: Future[tuple[StreamTransport, Any]] = reactor.create_future()
        self.retry_delay = _UNIX_RETRY_FIRST
        sock = socket.socket(address.family, socket.SOCK_STREAM)
        sock.setblocking(False)
        fd = sock.fileno()
        self.transport = transport = StreamTransport(
            reactor, sock, fd, self, address.sockaddr, reactor.time(), State.CONNECTING, limits
        )
        transport._blocking = False
        reactor.connections[fd] = transport
        self.timer: TimerHandle | None = None
        if timeout is not None:
            self.timer = reactor.call_later(timeout, self._on_timeout)
            transport.deadline = transport.started + timeout
        self.future.add_done_callback(self._on_future_done)

    def start(self) -> None:
        """Try to connect; go on from reactor callbacks."""
        transport = self.transport
        try:
            transport.sock.connect(self.address.sockaddr)
        except BlockingIOError:
            if self.address.family == socket.AF_UNIX:
                self._retry_later()
            else:
                self.reactor.add_writer(transport.fd, self._on_connected)
                transport._events = _EV_WRITE
            return
        except OSError as exc:
            self._fail(_explain(self.address, exc))
            return
        self._connected()

    def _retry_later(self) -> None:
        delay = self.retry_delay
        self.retry_delay = min(delay * 2, _UNIX_RETRY_MAX)
        self.reactor.call_later(delay, self._retry)

    def _retry(self) -> None:
        if self.transport.state == State.CONNECTING:
            self.start()

    def _on_connected(self) -> None:
        transport = self.transport
        self.reactor.remove_writer(transport.fd)
        transport._events = 0
        err = transport.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._fail(OSError(err, f"{errno.errorcode.get(err, err)}: connecting to {self.address.text}"))
            return
        self._connected()

    def _connected(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        transport = self.transport
        transport.deadline = None
        transport._set_state(State.OPEN)
        limits = transport._limits
        if limits.timeout is not None or limits.idle_timeout is not None:
            transport._active_at = self.reactor.time()
            transport._arm_deadline()
        try:
            protocol = self.factory()
        except Exception as exc:
            report_user_error(self.reactor, "protocol_factory() raised", exc, handler=self.factory)
            self._fail(exc)
            return
        if self.future.done():  # cancelled meanwhile: nobody wants this connection
            transport._close_now(None)
            return
        self.future.set_result((transport, protocol))
        transport._start(protocol)

    def _on_timeout(self) -> None:
        self.timer = None
        if self.transport.state == State.CONNECTING:
            self._fail(TimeoutError(f"could not connect to {self.address.text} within {self.timeout} s"))

    def _on_future_done(self, future: Future[Any]) -> None:
        if future.cancelled() and self.transport.state == State.CONNECTING:
            self.transport._close_now(None)

    def _fail(self, exc: BaseException) -> None:
        self.transport._close_now(None)
        if not self.future.done():
            self.future.set_exception(exc)

    # -------------------------------------------------- owner callbacks

    def _connection_waits(self, transport: StreamTransport) -> None:
        pass

    def _connection_closed(self, transport: StreamTransport, exc: BaseException | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if exc is not None and not self.future.done():
            self.future.set_exception(exc)  # closed while connecting (the reactor closed, for one)


def open_connection(
    reactor: Reactor,
    address: Address,
    protocol_factory: Callable[[], Any],
    *,
    timeout: float | None = None,
    limits: TransportLimits = DEFAULT_LIMITS,
) -> Future[tuple[StreamTransport, Any]]:
    """Connect to ``address``; a `Future` of ``(transport, protocol)``.

    The protocol is made and ``connection_made`` called once connected.  The
    future fails with the `OSError` of the connect (``ConnectionRefusedError``,
    ``FileNotFoundError`` for a missing Unix path, ...) or with `TimeoutError`
    after ``timeout`` seconds; a host that does not resolve is a
    ``socket.gaierror`` naming it.  A Unix path longer than ``UNIX_PATH_MAX``
    bytes raises `ValueError` here.  ``limits`` sets the transport's read size,
    water marks and deadlines; its whole-exchange ``timeout`` counts from now.
    """
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be positive or None, got {timeout!r}")
    if address.family == socket.AF_UNIX:
        _check_unix_path(str(address.sockaddr))
    connector = Connector(reactor, address, protocol_factory, timeout, limits)
    connector.start()
    return connector.future


#: The longest Unix socket path ``connect`` takes, in bytes: ``sun_path`` is
#: 108 bytes on Linux, one of them the terminating NUL.
UNIX_PATH_MAX = 107


def _check_unix_path(path: str) -> None:
    size = len(os.fsencode(path))
    if size > UNIX_PATH_MAX:
        raise ValueError(
            f"the Unix socket path {path!r} is {size} bytes, longer than the {UNIX_PATH_MAX}-byte limit "
            f"({UNIX_PATH_MAX + 1} with the terminating NUL): use a shorter path, e.g. one relative to "
            "the current directory or in a directory with a shorter name"
        )


def _explain(address: Address, exc: OSError) -> OSError:
    """The error of a failed ``connect``, reworded to say what was given and what to do.

    The class stays the same (handlers that catch ``gaierror`` or
    ``FileNotFoundError`` still do); the original is the ``__cause__``.
    """
    err: OSError
    if isinstance(exc, socket.gaierror) and isinstance(address.sockaddr, tuple):
        host = address.sockaddr[0]
        err = socket.gaierror(
            exc.errno,
            f"cannot resolve the host {host!r} of {address.text} ({exc.strerror}): "
            "check its spelling, or give an IP address",
        )
    elif isinstance(exc, FileNotFoundError) and address.family == socket.AF_UNIX:
        err = FileNotFoundError(
            errno.ENOENT,
            f"the Unix socket file {address.sockaddr!r} does not exist, so no server is listening "
            "there: start the server, or check the path",
        )
    else:
        return exc
    err.__cause__ = exc
    return err


class _Attached:
    """The owner of a transport made from a socket that is already connected."""

    __slots__ = ()

    def _connection_waits(self, transport: StreamTransport) -> None:
        pass

    def _connection_closed(self, transport: StreamTransport, exc: BaseException | None) -> None:
        pass


_ATTACHED = _Attached()


def attach_socket(
    reactor: Reactor, sock: socket.socket, protocol: Any, *, limits: TransportLimits = DEFAULT_LIMITS
) -> StreamTransport:
    """Make a connected stream socket (e.g. one end of `socket.socketpair`) a transport for ``protocol``.

    The transport takes the socket over: it becomes a row of the connection
    table, ``protocol.connection_made`` is called at once, and closing the
    transport closes the socket.
    """
    if sock.type != socket.SOCK_STREAM:
        raise ValueError(f"need a stream socket, got {sock!r}")
    fd = sock.fileno()
    if fd < 0:
        raise ValueError("the socket is closed")
    if fd in reactor.connections:
        raise ValueError(f"fd {fd} is already a row of the connection table")
    try:
        peer = sock.getpeername()
    except OSError:
        peer = None
    transport = StreamTransport(reactor, sock, fd, _ATTACHED, peer, reactor.time(), State.OPEN, limits)
    reactor.connections[fd] = transport
    transport._start(protocol)
    return transport
