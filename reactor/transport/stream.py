"""`StreamTransport`: a row of the connection table that is also a transport.

What can go wrong with a stream connection, and what we chose
-------------------------------------------------------------
*One object per connection.*  asyncio has a transport and a separate
bookkeeping of it; Twisted has a ``Connection`` that is its own transport.  We
follow Twisted: the row in `Reactor.connections` is the transport, so the
table cannot disagree with the connection, and a one-shot request allocates
one object for its socket, not two.

*Reads are bounded* (``max_read`` bytes per readiness event) so one fast peer
cannot starve the others, and *readiness is a hint*: every ``recv``/``send``
handles ``EAGAIN``.  Right after accept (or connect) the transport reads once
*before* registering with the selector: on loopback a one-shot request is
nearly always there already, and then the connection never touches the
selector at all.  Until a connection must wait, its socket stays in blocking
mode and every call says ``MSG_DONTWAIT`` (saving an ``ioctl``).

*Writes are tried at once* and only the rest is buffered (asyncio's
``selector_events``).  Above the high water mark the protocol's
``pause_writing()`` is called, and ``resume_writing()`` once the buffer drains
to the low water mark, so a protocol that honours them holds a bounded amount
of memory for a slow reader.

*Half-close, both ways.*  The peer's EOF calls ``eof_received()``; a protocol
that returns True keeps its write side open (``READ_CLOSED``).  ``write_eof()``
shuts our side down once the buffer is flushed (``WRITE_CLOSED``) and keeps
reading.  When both sides are done the connection closes.  A ``shutdown()``
that fails comes after everything was handed to the kernel and means the
peer has already gone: the connection closes as after ``close()``
(``connection_lost(None)``), not as a fault.

*Close.*  ``close()`` stops reading, flushes what is buffered (``CLOSING``)
and then closes; ``abort()`` closes at once and drops the buffer.  Closing
unregisters first, then removes the row, then closes the socket: an fd is
never closed while the selector still watches it.

*Deadlines.*  Two, both optional: an idle deadline that any progress (bytes in
or out) pushes back, and a whole-exchange deadline that nothing pushes back
(so a client that drips a byte a second is still cut).  One reactor timer per
waiting connection enforces the earlier one; it is armed only when the
connection first has to wait, and moved lazily: progress only records the
time, and the timer re-arms itself when it fires early.

*Who calls the protocol.*  Protocol callbacks run on the reactor's thread.
``connection_lost()`` is called exactly once, never from inside the
``close()`` that caused it: when the close happens inside a protocol callback
the transport delivers it when that callback returns, otherwise it is
scheduled with ``call_soon``.  An exception from a protocol callback is
reported through `report_user_error` (the reactor's exception handler) and
aborts that one connection.

The module runs past our usual 600 lines because it is one class whose hot
path (accept → read → reply → close) is written out inline rather than split
into helpers that would each cost a call per request.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import sys
from typing import Any

from ..core import Reactor
from .base import (
    _ALIVE,
    _DELIVERED,
    DEFAULT_LIMITS,
    MAX_READ,
    TransportBase,
    TransportLimits,
    _writable_bytes,
)
from .table import READABLE_STATES, WRITABLE_STATES, Connection, State

__all__ = ["StreamTransport", "TransportLimits", "DEFAULT_LIMITS", "MAX_READ"]

logger = logging.getLogger("reactor.transport")

_DONTWAIT = int(socket.MSG_DONTWAIT)
#: The reads and writes of a waiting (non-blocking) connection: ``read(2)`` and
#: ``write(2)`` on its fd, which for a stream socket are ``recv``/``send`` with no
#: flags (POSIX), as libuv does them.  `os.read`/`os.write` parse their arguments
#: with fast calls where the socket methods go through ``PyArg_ParseTuple``:
#: about 0.8 k instructions less per request and reply on CPython 3.11.
_read = os.read
_write = os.write
#: SO_LINGER on with a timeout of 0: close() then resets the connection and drops unsent output.
_LINGER_RESET = struct.pack("ii", 1, 0)
#: The families whose close can be a reset (SO_LINGER means nothing to a Unix socket).
_TCP_FAMILIES = frozenset({int(socket.AF_INET), int(socket.AF_INET6)})

_SHUT_WR = socket.SHUT_WR
_OPEN = State.OPEN
_CLOSING = State.CLOSING
_CLOSED = State.CLOSED
_CONNECTING = State.CONNECTING
#: States in which the transport accepts writes / reads from its socket.
_WRITABLE = WRITABLE_STATES
_READABLE = READABLE_STATES
#: Registered selector events (a bitmask of our own, not the selector's).
_EV_READ = 1
_EV_WRITE = 2


class StreamTransport(Connection, TransportBase):
    """A stream connection: one row of the connection table, and its asyncio-style transport.

    Made by the transport layer (a `Listener` accepting, `~reactor.transport.connect.open_connection`
    connecting); protocols receive it in ``connection_made``.

    Methods for the protocol: `write`, `writelines`, `write_eof`,
    `can_write_eof`, `close`, `abort`, `pause_reading`, `resume_reading`,
    `is_reading`, `get_write_buffer_size`, `get_write_buffer_limits`,
    `set_write_buffer_limits`, `get_extra_info`, `is_closing`, `get_protocol`,
    `set_protocol`, and the reactor's own `set_timeout`/`set_idle_timeout`.
    """

    __slots__ = (
        "reactor",
        "protocol",
        "_buffer",
        "_reading",
        "_events",
        "_eof_pending",
        "_writing_paused",
        "_limits",
        "_active_at",
        "_dispatching",
        "_lost",
        "_blocking",
        "_closed_by_call",
    )

    def __init__(
        self,
        reactor: Reactor,
        sock: Any,
        fd: int,
        owner: Any,
        peer: Any,
        started: float,
        state: str = _OPEN,
        limits: TransportLimits = DEFAULT_LIMITS,
    ) -> None:
        # Written out rather than calling Connection.__init__: this runs once
        # per accepted connection on the hot path.
        self.sock = sock
        self.fd = fd
        self.owner = owner
        self.state = state
        self.peer = peer
        self.started = started
        self.bytes_in = 0
        self.bytes_out = 0
        self.deadline: float | None = None
        self.timer: Any = None
        self.reactor = reactor
        self.protocol: Any = None
        self._buffer: bytearray | None = None
        self._reading = True
        self._events = 0
        self._eof_pending = False
        self._writing_paused = False
        self._limits = limits
        self._active_at = started
        self._dispatching = False
        self._lost: Any = _ALIVE
        self._blocking = True
        self._closed_by_call = False

    def _describe(self) -> str:
        return f"connection from {self.peer}"

    # ---------------------------------------------------------------- reading

    def _start(self, protocol: Any) -> None:
        """Hand the connection to ``protocol`` (``connection_made``), then read once before waiting.

        The read is the fast path right after accept or connect: a request
        that is already there is served without touching the selector.  It
        is written out here, not called, because it runs once per accepted
        connection.
        """
        self.protocol = protocol
        self._dispatching = True
        try:
            protocol.connection_made(self)
        except Exception as exc:
            self._protocol_failed(exc, "connection_made")
        self._dispatching = False
        lost = self._lost
        if lost is not _ALIVE:
            if lost is not _DELIVERED:
                self._call_connection_lost(lost)
            return
        if not self._reading or self.state not in _READABLE:
            return
        try:
            data = self.sock.recv(self._limits.max_read, _DONTWAIT)
        except (BlockingIOError, InterruptedError):
            self._start_reading()
            return
        except OSError as exc:
            self._fatal(exc)
            return
        if not data:
            self._eof_from_peer()
            return
        self.bytes_in += len(data)
        self._dispatching = True
        try:
            protocol.data_received(data)
        except Exception as exc:
            self._protocol_failed(exc, "data_received")
        self._dispatching = False
        lost = self._lost
        if lost is not _ALIVE:
            if lost is not _DELIVERED:
                self._call_connection_lost(lost)
        elif self._reading and not self._events & _EV_READ and self.state in _READABLE:
            self._start_reading()

    def _on_readable(self) -> None:
        try:
            data = _read(self.fd, self._limits.max_read)  # non-blocking by now: see _read
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fatal(exc)
            return
        if not data:
            self._eof_from_peer()
            return
        self.bytes_in += len(data)
        if self._limits.idle_timeout is not None:
            self._active_at = self.reactor.time()
        # data_received, written out (this runs once per message on a
        # persistent connection).
        self._dispatching = True
        try:
            self.protocol.data_received(data)
        except Exception as exc:
            self._protocol_failed(exc, "data_received")
        self._dispatching = False
        lost = self._lost
        if lost is not _ALIVE and lost is not _DELIVERED:
            self._call_connection_lost(lost)

    def pause_reading(self) -> None:
        """Stop calling ``data_received`` until `resume_reading` (flow control)."""
        self._reading = False
        if self._events & _EV_READ:
            self._stop_reading()

    def resume_reading(self) -> None:
        """Call ``data_received`` again as data arrives."""
        self._reading = True
        if not self._events & _EV_READ and self.state in _READABLE:
            self._start_reading()

    # ---------------------------------------------------------------- writing

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data``: at once if the kernel takes it, else buffer the rest; never blocks."""
        if self.state not in _WRITABLE:
            self._write_refused()
            return
        if type(data) is not bytes:
            data = _writable_bytes(data)
        if not data:
            return
        buffer = self._buffer
        if not buffer:
            try:
                n = self.sock.send(data, _DONTWAIT) if self._blocking else _write(self.fd, data)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError as exc:
                self._fatal(exc, False)  # inside the protocol's write(): connection_lost comes later
                return
            self.bytes_out += n
            if n and self._limits.idle_timeout is not None:
                self._active_at = self.reactor.time()
            if n == len(data):
                return
            if buffer is None:
                self._buffer = buffer = bytearray(data[n:])
            else:
                buffer += data[n:]
            self._start_writing()
        else:
            buffer += data
        self._follow_water_marks(len(buffer))

    def _on_writable(self) -> None:
        buffer = self._buffer
        if not buffer:
            self._stop_writing()
            return
        try:
            n = _write(self.fd, buffer)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fatal(exc)
            return
        self.bytes_out += n
        del buffer[:n]
        if n and self._limits.idle_timeout is not None:
            self._active_at = self.reactor.time()
        self._follow_water_marks(len(buffer))
        if buffer:
            return
        self._stop_writing()
        if self.state == _CLOSING:
            self._close_now(None, True)
        elif self._eof_pending:
            self._shutdown_write()

    def _shutdown_write(self, inline: bool = True) -> None:
        self._eof_pending = False
        try:
            self.sock.shutdown(_SHUT_WR)
        except OSError as exc:
            # Everything written is in the kernel's hands by now: the shutdown
            # fails only because the peer has already gone (ENOTCONN after its
            # reset), typically a client that read its reply and closed at once.
            # Not a fault (Twisted's _closeWriteConnection ignores it too): the
            # connection is over, closed as if by close(), not counted in errors.
            logger.debug("%r: shutdown of the write side failed (%s); the peer has gone", self, exc)
            self._close_now(None, inline)

    def get_write_buffer_size(self) -> int:
        """Bytes accepted by `write` and not yet handed to the kernel."""
        buffer = self._buffer
        return len(buffer) if buffer else 0

    # ------------------------------------------------------------------ closing

    def abort(self) -> None:
        """Close at once, dropping anything buffered; ``connection_lost(None)`` follows."""
        if self.state != _CLOSED:
            self._closed_by_call = True
        self._close_now(None)

    def _reactor_closed(self, exc: BaseException) -> None:
        """`Reactor.close` with this connection open: close at once, ``connection_lost(exc)`` follows."""
        self._close_now(exc)

    def _reset_unsent(self) -> None:
        """At a deadline: if output is still unsent, make the close a reset (``SO_LINGER`` 0).

        A closed socket's unsent output stays with the kernel, which goes on
        offering it to the peer: up to megabytes per connection for a client
        that never reads, held long after we gave up on it.  So, as nginx's
        ``reset_timedout_connection`` does, a connection closed by a deadline
        with bytes not yet taken by the peer (our buffer, or the kernel's send
        queue) is reset, which frees them at once.  One with nothing in
        flight (a silent client) still gets an orderly close: its peer reads
        an EOF.
        """
        sock = self.sock
        if sock.family not in _TCP_FAMILIES or not (self._buffer or _unsent_in_kernel(sock)):
            return
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        except OSError as exc:  # the connection is already gone: the close frees everything anyway
            logger.debug("%r: cannot set SO_LINGER for a reset (%s)", self, exc)
            return
        logger.debug("%r: closing with a reset: output unsent at the deadline", self)

    def _fatal(self, exc: BaseException, inline: bool = True) -> None:
        logger.debug("%r: closing after %r", self, exc)
        self._close_now(exc, inline)

    def _close_now(self, exc: BaseException | None, inline: bool = False) -> None:
        """Unregister, remove the row, close the socket; then ``connection_lost``.  The only exit.

        ``inline``: the close comes from the transport's own reactor callback
        (I/O error, deadline, flush finished), not from protocol code, so
        ``connection_lost`` may run right away.
        """
        if self.state == _CLOSED:
            return
        self._set_state(_CLOSED)
        reactor = self.reactor
        events = self._events
        if events:
            if not reactor.is_closed():
                if events & _EV_READ:
                    reactor.remove_reader(self.fd)
                if events & _EV_WRITE:
                    reactor.remove_writer(self.fd)
            self._events = 0
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        table = reactor.connections
        if table.get(self.fd) is self:
            del table[self.fd]
        self.sock.close()
        self._buffer = None
        self.owner._connection_closed(self, exc)
        if self.protocol is None:
            self._lost = _DELIVERED
        elif self._dispatching:
            self._lost = exc  # delivered when the running protocol callback returns
        elif not inline and not reactor.is_closed():
            self._lost = exc
            reactor.call_soon(self._call_connection_lost, exc)
        else:
            self._call_connection_lost(exc)

    # ------------------------------------------------------------- selector

    def _make_waitable(self) -> None:
        # First time this connection must wait: make the socket non-blocking
        # (calls without MSG_DONTWAIT follow) and arm its deadline.
        self._blocking = False
        self.sock.setblocking(False)
        self.owner._connection_waits(self)
        limits = self._limits
        if limits.timeout is not None or limits.idle_timeout is not None:
            if limits.idle_timeout is not None:
                self._active_at = self.reactor.time()
            self._arm_deadline()

    def _start_reading(self) -> None:
        if self._blocking:
            self._make_waitable()
        self._events |= _EV_READ
        self.reactor.add_reader(self.fd, self._on_readable)

    def _stop_reading(self) -> None:
        if self._events & _EV_READ:
            self._events &= ~_EV_READ
            self.reactor.remove_reader(self.fd)

    def _start_writing(self) -> None:
        if self._events & _EV_WRITE:
            return
        if self._blocking:
            self._make_waitable()
        self._events |= _EV_WRITE
        self.reactor.add_writer(self.fd, self._on_writable)

    def _stop_writing(self) -> None:
        if self._events & _EV_WRITE:
            self._events &= ~_EV_WRITE
            self.reactor.remove_writer(self.fd)

    # ------------------------------------------------------------- deadlines

    # ---------------------------------------------------------- introspection

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``'peername'``, ``'sockname'`` or ``'socket'`` (as in asyncio), else ``default``."""
        if name == "socket":
            return self.sock
        if name == "peername":
            return self.peer if self.peer not in (None, "") else self._sockopt("getpeername", default)
        if name == "sockname":
            return self._sockopt("getsockname", default)
        return default

    def _sockopt(self, method: str, default: Any) -> Any:
        try:
            return getattr(self.sock, method)()
        except OSError:
            return default

    def as_dict(self) -> dict[str, Any]:
        """A snapshot of the row, with the transport's flow-control state."""
        snapshot = super().as_dict()
        snapshot["reading"] = self.is_reading()
        snapshot["writing_paused"] = self._writing_paused
        return snapshot


def _unsent_in_kernel(sock: Any) -> bool:
    """True when the kernel still holds bytes of ``sock``'s output that the peer has not acknowledged.

    ``SIOCOUTQ`` (Linux; the same number as ``TIOCOUTQ``).  Where that
    cannot be asked, False: then only our own buffer decides.  The modules
    are imported here, at a deadline, not with the package.
    """
    if not sys.platform.startswith("linux"):
        return False
    import array
    import fcntl
    import termios

    queued = array.array("i", [0])
    try:
        fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, queued)
    except OSError:
        return False
    return queued[0] > 0
