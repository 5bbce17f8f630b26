"""`Listener`: bind, listen, and the one bounded accept loop.

What can go wrong with a listening socket, and what we chose
-------------------------------------------------------------
*A burst of clients.*  The backlog defaults to ``SOMAXCONN``: a burst queues
in the kernel instead of being reset.  Each readiness event accepts until
``EAGAIN`` but at most `ACCEPT_BATCH` connections, so one busy listener cannot
starve the other servers of the reactor (Twisted and asyncio bound it too).

*The cost of a one-shot request.*  ``socket.accept()`` spends microseconds
converting family and type to enums; the raw ``_accept()`` that it wraps and
the C socket type do the same work without that.  The new socket stays in
blocking mode and the transport reads it at once with ``MSG_DONTWAIT``
(`StreamTransport._start`): a request that is already there is answered
without the connection ever touching the selector.  A process-wide default
socket timeout would turn those calls into polls, so then the socket is made
non-blocking at once.

*Too many connections.*  ``max_connections`` caps the rows a listener owns:
at the cap it stops watching the listening socket (the kernel backlog holds
the next clients) and resumes when a connection closes.

*Out of descriptors.*  ``EMFILE``/``ENFILE``/``ENOBUFS``/``ENOMEM`` on accept
would make a level-triggered selector report the socket readable forever: the
listener stops accepting for ``accept_backoff`` seconds instead of spinning
(asyncio does the same).

*Unix sockets.*  A stale socket file left by a dead server is replaced only
after a probe connect is refused; a live listener gives ``EADDRINUSE`` and a
regular file is never replaced.  On close the listener unlinks the path only
if it is still its own inode.
"""

from __future__ import annotations

import _socket
import errno
import logging
import os
import socket
import stat
import threading
import warnings
from collections.abc import Callable
from typing import Any

from ..addresses import Address, format_address
from ..core import Reactor, TimerHandle
from ..futures import Future
from .errors import report_user_error
from .stream import DEFAULT_LIMITS, StreamTransport, TransportLimits
from .table import State

__all__ = [
    "Listener",
    "ServerStatistics",
    "ACCEPT_BATCH",
    "ACCEPT_BACKOFF",
    "ACCEPT_RESOURCE_ERRNOS",
    "bind_listening_socket",
    "accept_failed_is_resource_error",
]

logger = logging.getLogger("reactor.transport")

#: Connections accepted per readiness event of a listening socket, at most.
ACCEPT_BATCH = 64
#: Seconds a listener stops accepting after running out of descriptors or memory.
ACCEPT_BACKOFF = 0.1
#: ``accept()`` errors that mean "out of descriptors or memory": a listener
#: that gets one pauses accepting for a while instead of spinning on it.
ACCEPT_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

_STREAM = int(socket.SOCK_STREAM)
_OPEN = State.OPEN


def accept_failed_is_resource_error(exc: OSError) -> bool:
    """True when an ``accept()`` error means the process is out of descriptors or memory."""
    return exc.errno in ACCEPT_RESOURCE_ERRNOS


class ServerStatistics:
    """Counters of one server: accepted, active, completed, errors, timeouts, rejected, ..."""

    __slots__ = ("accepted", "active", "completed", "errors", "timeouts", "rejected", "accept_pauses", "waited")

    def __init__(self) -> None:
        self.accepted = 0  #: connections accepted
        self.active = 0  #: connections open now (rows in the table owned by this server)
        self.completed = 0  #: exchanges finished in full (counted by the protocol layer)
        self.errors = 0  #: handler and protocol errors, and peer I/O errors
        self.timeouts = 0  #: connections closed by a deadline
        self.rejected = 0  #: oversized or malformed input (counted by the protocol layer)
        self.accept_pauses = 0  #: times accepting paused (limit reached or EMFILE)
        #: connections whose first read found nothing, so they were registered
        #: with the selector (accepted - waited took the fast path)
        self.waited = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict."""
        return {name: getattr(self, name) for name in self.__slots__}

    def __repr__(self) -> str:
        return f"<ServerStatistics {self.as_dict()}>"


def _prepare_unix_path(path: str) -> None:
    if len(os.fsencode(path)) >= 108:
        raise ValueError(f"unix socket path too long ({len(os.fsencode(path))} bytes, max 107): {path!r}")
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        raise FileNotFoundError(errno.ENOENT, f"directory for unix socket does not exist: {directory!r}")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise FileExistsError(errno.EEXIST, f"{path!r} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)  # a stale socket file: nothing listens there
        logger.info("replaced stale unix socket %s", path)
        return
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, f"a server is already listening on unix:{path}")


def bind_listening_socket(
    address: Address, backlog: int = socket.SOMAXCONN, reuse_port: bool = False
) -> tuple[socket.socket, tuple[int, int] | None]:
    """A non-blocking listening stream socket bound to ``address``.

    Returns the socket and, for a Unix path, its ``(st_dev, st_ino)`` so that
    the owner unlinks only its own file.
    """
    sock = socket.socket(address.family, socket.SOCK_STREAM)
    inode = None
    try:
        if address.family == socket.AF_UNIX:
            _prepare_unix_path(str(address.sockaddr))
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address.sockaddr)
        if address.family == socket.AF_UNIX:
            st = os.stat(str(address.sockaddr))
            inode = (st.st_dev, st.st_ino)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock, inode


class Listener:
    """A listening stream socket that accepts into the connection table.

    Every accepted connection becomes a `StreamTransport` row owned by this
    listener, with a protocol from ``protocol_factory()``.  The listener is
    listening when the constructor returns.

    Methods for the owner: `close`, `drain`, `stop_accepting`, `connections`,
    `statistics`; attributes ``address`` (the string form), ``sockaddr``
    (the bound socket address), ``stats`` and ``limits``.
    """

    def __init__(
        self,
        reactor: Reactor,
        address: Address,
        protocol_factory: Callable[[], Any],
        *,
        backlog: int = socket.SOMAXCONN,
        max_connections: int = 1024,
        accept_backoff: float = ACCEPT_BACKOFF,
        reuse_port: bool = False,
        limits: TransportLimits = DEFAULT_LIMITS,
        log: logging.Logger = logger,
        log_accepts: bool = False,
        name: str = "server",
    ) -> None:
        if max_connections <= 0:
            raise ValueError(f"max_connections must be positive, got {max_connections!r}")
        if not accept_backoff >= 0:
            raise ValueError(f"accept_backoff must be >= 0, got {accept_backoff!r}")
        if not callable(protocol_factory):
            raise TypeError(f"protocol_factory must be callable, got {protocol_factory!r}")
        self.reactor = reactor
        self.protocol_factory = protocol_factory
        self.max_connections = max_connections
        self.accept_backoff = accept_backoff
        self.limits = limits
        self.log = log
        self.log_accepts = log_accepts
        self.name = name
        self.stats = ServerStatistics()
        self._accepting = False
        self._closed = False  # no more accepting (drain, stop_accepting, close)
        self._resume_timer: TimerHandle | None = None
        self._drain_futures: list[Future[None]] = []
        self._sock, self._unix_inode = bind_listening_socket(address, backlog, reuse_port)
        self._fd = self._sock.fileno()
        self._family = int(address.family)
        self._unix_path = str(address.sockaddr) if address.family == socket.AF_UNIX else None
        #: The bound socket address (the real port when 0 was asked).
        self.sockaddr: Any = self._sock.getsockname()
        #: The bound address as a string that `parse_address` accepts.
        self.address: str = format_address(address.family, self.sockaddr)
        if reactor.thread_ident not in (None, threading.get_ident()):
            reactor.call_soon_threadsafe(self._start_accepting)
        else:
            self._start_accepting()

    def __repr__(self) -> str:
        state = " closed" if self._sock.fileno() < 0 else ""
        return f"<Listener {self.name} {self.address} active={self.stats.active}{state}>"

    @property
    def socket(self) -> socket.socket:
        """The listening socket (do not accept from it yourself)."""
        return self._sock

    def fileno(self) -> int:
        """The listening socket's descriptor."""
        return self._fd

    def is_serving(self) -> bool:
        """True while the listener accepts (or will resume accepting) connections."""
        return not self._closed and self._sock.fileno() >= 0

    # ------------------------------------------------------------ accepting

    def _start_accepting(self) -> None:
        if not self._accepting and not self._closed:
            self._accepting = True
            self.reactor.add_reader(self._fd, self._on_acceptable)

    def _pause_accepting(self, resume_after: float | None) -> None:
        if self._accepting:
            self._accepting = False
            self.stats.accept_pauses += 1
            self.reactor.remove_reader(self._fd)
        if resume_after is not None and self._resume_timer is None:
            self._resume_timer = self.reactor.call_later(resume_after, self._resume_after_backoff)

    def _resume_after_backoff(self) -> None:
        self._resume_timer = None
        if self.stats.active < self.max_connections:
            self._start_accepting()

    def _on_acceptable(self) -> None:
        accept = self._sock._accept  # type: ignore[attr-defined]
        new_socket = _socket.socket
        set_nonblocking = socket.getdefaulttimeout() is not None
        family = self._family
        stats = self.stats
        reactor = self.reactor
        table = reactor.connections
        limits = self.limits
        factory = self.protocol_factory
        now = reactor.time()  # one clock read per readiness event, not per connection
        for _ in range(ACCEPT_BATCH):
            if stats.active >= self.max_connections:
                self._pause_accepting(None)
                return
            try:
                fd, peer = accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in ACCEPT_RESOURCE_ERRNOS:
                    self.log.warning(
                        "%s: accept failed (%s); pausing accepts for %.2f s",
                        self.address,
                        exc.strerror,
                        self.accept_backoff,
                    )
                    self._pause_accepting(self.accept_backoff)
                    return
                if exc.errno == errno.ECONNABORTED:
                    continue
                raise
            sock = new_socket(family, _STREAM, 0, fd)
            if set_nonblocking:
                sock.setblocking(False)
            stats.accepted += 1
            stats.active += 1
            transport = StreamTransport(reactor, sock, fd, self, peer, now, _OPEN, limits)
            table[fd] = transport
            if self.log_accepts:
                self.log.info("%s: accepted connection from %s", self.address, peer)
            try:
                protocol = factory()
            except Exception as exc:
                report_user_error(reactor, f"{self.address}: protocol_factory() raised", exc, handler=factory)
                transport._close_now(exc)
                continue
            transport._start(protocol)

    # ------------------------------------------------------------ rows

    def _connection_waits(self, transport: StreamTransport) -> None:
        self.stats.waited += 1

    def _connection_closed(self, transport: StreamTransport, exc: BaseException | None) -> None:
        stats = self.stats
        stats.active -= 1
        if exc is not None:
            if isinstance(exc, TimeoutError):
                stats.timeouts += 1
            else:
                stats.errors += 1
        if not self._accepting and not self._closed and self._resume_timer is None:
            if stats.active < self.max_connections and self._sock.fileno() >= 0:
                self._start_accepting()
        if self._drain_futures and not stats.active:
            self._finish_drain()

    def connections(self) -> list[Any]:
        """The rows of the connection table this listener owns (read from the table)."""
        return [row for row in self.reactor.connections.values() if row.owner is self]

    def statistics(self) -> dict[str, int]:
        """The counters as a dict."""
        return self.stats.as_dict()

    # ------------------------------------------------------------ lifecycle

    def stop_accepting(self) -> None:
        """Accept no new connection (the socket stays open); idempotent."""
        if self._resume_timer is not None:
            self._resume_timer.cancel()
            self._resume_timer = None
        if self._accepting:
            self._accepting = False
            if not self.reactor.is_closed():
                self.reactor.remove_reader(self._fd)
        self._closed = True

    def drain(self) -> Future[None]:
        """Stop accepting; a future that completes when this listener owns no connection."""
        self.stop_accepting()
        fut: Future[None] = self.reactor.create_future()
        self._drain_futures.append(fut)
        if not self.stats.active:
            self._finish_drain()
        return fut

    def _finish_drain(self) -> None:
        futures, self._drain_futures = self._drain_futures, []
        for fut in futures:
            if not fut.done():
                fut.set_result(None)

    def close(self) -> None:
        """Stop accepting, abort every connection this listener owns, close the socket.

        Unlinks a Unix socket path if it is still ours.  Idempotent; call it
        from the reactor's thread or after the reactor stopped.
        """
        if self._sock.fileno() < 0:
            return
        self.stop_accepting()
        # Not row.abort(): the server closed these, not their protocols, so a
        # protocol that writes before its connection_lost arrives is dropped
        # quietly, as after a peer reset.
        for row in self.connections():
            row._close_now(None)
        self._sock.close()
        if self._unix_path is not None:
            try:
                st = os.stat(self._unix_path)
                if (st.st_dev, st.st_ino) == self._unix_inode:
                    os.unlink(self._unix_path)
            except FileNotFoundError:
                pass
        self._finish_drain()

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        sock = getattr(self, "_sock", None)
        if sock is not None and sock.fileno() >= 0:
            _warn(f"unclosed {self!r}", ResourceWarning, source=self)
            sock.close()
