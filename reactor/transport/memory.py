"""`memory_pair`: two connected transports in memory, for testing protocols without sockets or time.

What a test of a protocol needs, and what we chose
--------------------------------------------------
A protocol is tested best the way h11 and Twisted test theirs: no socket, no
real time, every step driven by the test.  Twisted has ``StringTransport``
(one side, bytes collected in a buffer) and ``iosim`` (two sides and a pump);
trio has ``memory_stream_pair``.  We want the second kind, but with the exact
callback semantics of `StreamTransport`, so that a protocol that passes here
behaves the same on a socket:

* ``connection_made`` first; ``data_received`` never after the EOF;
  ``eof_received`` returning True keeps the write side open, anything else
  closes; ``connection_lost`` exactly once, never from inside the ``close()``
  that caused it; an exception in a callback is reported through
  `report_user_error` and aborts that one connection.
* *Delivery goes through the reactor.*  A write moves bytes toward the peer
  at once, but the peer's ``data_received`` runs from a ``call_soon``
  callback, the way a socket's runs from a readiness event.  Nothing waits
  for time: a test drives the pair with ``reactor.run_once(0)`` or a bounded
  run-until, and a reactor on a `ManualClock` serves deadlines.
* *A kernel window.*  At most ``window`` bytes are in flight toward a peer
  that has not read them yet (the kernel's send and receive buffers together).
  A peer that paused reading keeps them in flight; beyond the window the
  bytes stay in the writer's buffer, which is what `get_write_buffer_size`
  reports and what crosses the water marks for ``pause_writing`` /
  ``resume_writing``.  A write whose bytes fit the window returns with an
  empty buffer, like a ``send()`` the kernel took whole.
* *Closing looks like a socket's close.*  ``close()`` flushes the buffer,
  then the peer reads what was in flight followed by an EOF; ``abort()``
  drops the buffer, but what was already in flight still arrives (as with a
  socket the kernel keeps sending).  Writing toward a peer that has closed
  fails the writer with `ConnectionResetError` (what ``EPIPE``/``ECONNRESET``
  do to a `StreamTransport`).

A memory transport is not a row of `Reactor.connections`: the table maps file
descriptors to rows, and a memory transport has none, so the table (and the
leak checks that read it) never sees it.
"""

from __future__ import annotations

import logging
from typing import Any

from ..core import Reactor
from .base import _ALIVE, _DELIVERED, DEFAULT_LIMITS, TransportBase, TransportLimits, _writable_bytes
from .table import READABLE_STATES, WRITABLE_STATES, State

__all__ = ["MemoryTransport", "memory_pair", "DEFAULT_WINDOW"]

logger = logging.getLogger("reactor.transport")

#: Bytes in flight toward a peer that has not read them, at most (default).
DEFAULT_WINDOW = 64 * 1024

_OPEN = State.OPEN
_CLOSING = State.CLOSING
_CLOSED = State.CLOSED
_WRITABLE = WRITABLE_STATES
_READABLE = READABLE_STATES


class MemoryTransport(TransportBase):
    """One end of a `memory_pair`: the public API of `StreamTransport`, with no socket.

    Methods for the protocol: `write`, `writelines`, `write_eof`,
    `can_write_eof`, `close`, `abort`, `pause_reading`, `resume_reading`,
    `is_reading`, `get_write_buffer_size`, `get_write_buffer_limits`,
    `set_write_buffer_limits`, `get_extra_info` (``'socket'`` is None;
    ``'peername'``/``'sockname'`` are the pair's names), `is_closing`,
    `get_protocol`, `set_protocol`, `set_timeout` and `set_idle_timeout`.

    Attributes for tests: ``peer`` (the other end), ``state`` (a `State`, with
    the same transitions as a connection-table row), ``bytes_in`` /
    ``bytes_out``, ``window`` and `in_flight`.  It is *not* a row of
    `Reactor.connections` (there is no file descriptor).
    """

    __slots__ = (
        "reactor",
        "protocol",
        "peer",
        "state",
        "name",
        "window",
        "started",
        "bytes_in",
        "bytes_out",
        "deadline",
        "timer",
        "_inbox",
        "_eof_in",
        "_buffer",
        "_reading",
        "_eof_pending",
        "_writing_paused",
        "_limits",
        "_active_at",
        "_dispatching",
        "_lost",
        "_closed_by_call",
        "_delivery_scheduled",
        "_flush_scheduled",
    )

    def __init__(self, reactor: Reactor, name: str, window: int, limits: TransportLimits) -> None:
        self.reactor = reactor
        self.protocol: Any = None
        self.peer: MemoryTransport = self  # linked by memory_pair
        self.state = _OPEN
        self.name = name
        self.window = window
        self.started = reactor.time()
        self.bytes_in = 0
        self.bytes_out = 0
        self.deadline: float | None = None
        self.timer: Any = None
        self._inbox = bytearray()  # bytes in flight toward this end, not read yet
        self._eof_in = False  # the peer's EOF follows the inbox
        self._buffer = bytearray()  # written, not yet in flight (beyond the window)
        self._reading = True
        self._eof_pending = False
        self._writing_paused = False
        self._limits = limits
        self._active_at = self.started
        self._dispatching = False
        self._lost: Any = _ALIVE
        self._closed_by_call = False
        self._delivery_scheduled = False
        self._flush_scheduled = False

    def __repr__(self) -> str:
        return (
            f"<MemoryTransport {self.name} {self.state} in={self.bytes_in} out={self.bytes_out} "
            f"buffered={len(self._buffer)} in_flight={self.in_flight}>"
        )

    @property
    def in_flight(self) -> int:
        """Bytes written by this end that the peer has not read yet (at most ``window``)."""
        return len(self.peer._inbox)

    # ---------------------------------------------------------------- reading

    def _describe(self) -> str:
        return f"memory connection {self.name}"

    def _start(self, protocol: Any) -> None:
        self.protocol = protocol
        self._dispatching = True
        try:
            protocol.connection_made(self)
        except Exception as exc:
            self._protocol_failed(exc, "connection_made")
        self._dispatching = False
        if self._lost is not _ALIVE:
            if self._lost is not _DELIVERED:
                self._call_connection_lost(self._lost)
            return
        if self.timer is None and (self._limits.timeout is not None or self._limits.idle_timeout is not None):
            self._arm_deadline()
        self._schedule_delivery()

    def _schedule_delivery(self) -> None:
        # The socket equivalent of "registered for reading and readable".
        if (
            not self._delivery_scheduled
            and self._reading
            and self.state in _READABLE
            and (self._inbox or self._eof_in)
            and not self.reactor.is_closed()
        ):
            self._delivery_scheduled = True
            self.reactor.call_soon(self._on_readable)

    def _on_readable(self) -> None:
        self._delivery_scheduled = False
        if not self._reading or self.state not in _READABLE or self.protocol is None:
            return
        inbox = self._inbox
        if not inbox:
            if self._eof_in:
                self._eof_from_peer()
            return
        n = min(len(inbox), self._limits.max_read)
        data = bytes(inbox[:n])
        del inbox[:n]
        self.bytes_in += n
        self._active_at = self.reactor.time()
        self.peer._schedule_flush()  # the window opened
        self._dispatching = True
        try:
            self.protocol.data_received(data)
        except Exception as exc:
            self._protocol_failed(exc, "data_received")
        self._dispatching = False
        if self._lost is not _ALIVE:
            if self._lost is not _DELIVERED:
                self._call_connection_lost(self._lost)
            return
        self._schedule_delivery()  # the rest, or the EOF, in a later callback

    def pause_reading(self) -> None:
        """Stop calling ``data_received`` until `resume_reading`; what arrives stays in flight."""
        self._reading = False

    def resume_reading(self) -> None:
        """Call ``data_received`` again (from a later reactor callback)."""
        self._reading = True
        self._schedule_delivery()

    # ---------------------------------------------------------------- writing

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Move ``data`` toward the peer as far as the window allows, buffer the rest; never blocks."""
        if self.state not in _WRITABLE:
            self._write_refused()
            return
        if type(data) is not bytes:
            data = bytes(_writable_bytes(data))
        if not data:
            return
        buffer = self._buffer
        if not buffer:
            n = self._push(data)
            if n == len(data) or self.state == _CLOSED:
                return
            buffer += data[n:]
        else:
            buffer += data
        self._follow_water_marks(len(buffer))

    def _push(self, data: bytes | bytearray) -> int:
        """Move what fits of ``data`` into the peer's inbox; how many bytes moved."""
        peer = self.peer
        if peer.state == _CLOSED:
            self._close_now(ConnectionResetError(f"memory transport {peer.name} was closed"))
            return 0
        n = min(len(data), self.window - len(peer._inbox))
        if n <= 0:
            return 0
        peer._inbox += data[:n]
        self.bytes_out += n
        self._active_at = self.reactor.time()
        peer._schedule_delivery()
        return n

    def _schedule_flush(self) -> None:
        # The socket equivalent of "registered for writing and writable".
        if (
            not self._flush_scheduled
            and (self._buffer or self._eof_pending)
            and self.state != _CLOSED
            and not self.reactor.is_closed()
        ):
            self._flush_scheduled = True
            self.reactor.call_soon(self._on_writable)

    def _on_writable(self) -> None:
        self._flush_scheduled = False
        if self.state == _CLOSED:
            return
        buffer = self._buffer
        if buffer:
            n = self._push(buffer)
            if self.state == _CLOSED:
                return
            del buffer[:n]
            self._follow_water_marks(len(buffer))
            if buffer or self.state == _CLOSED:
                return
        if self.state == _CLOSING:
            self._close_now(None)
        elif self._eof_pending:
            self._shutdown_write()

    def _shutdown_write(self, inline: bool = True) -> None:
        self._eof_pending = False
        peer = self.peer
        peer._eof_in = True
        peer._schedule_delivery()

    def get_write_buffer_size(self) -> int:
        """Bytes accepted by `write` that do not fit the window yet."""
        return len(self._buffer)

    # ------------------------------------------------------------------ closing

    def abort(self) -> None:
        """Close at once, dropping the buffer (what is in flight still arrives); ``connection_lost(None)`` follows."""
        if self.state != _CLOSED:
            self._closed_by_call = True
        self._close_now(None)

    def _close_now(self, exc: BaseException | None, inline: bool = False) -> None:
        if self.state == _CLOSED:
            return
        self._set_state(_CLOSED)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self._buffer.clear()
        self._inbox.clear()
        self._eof_pending = False
        peer = self.peer
        if peer is not self and peer.state != _CLOSED:
            # What the kernel does after close(): the in-flight bytes, then a
            # FIN; and a peer still trying to write finds the connection gone.
            peer._eof_in = True
            peer._schedule_delivery()
            peer._schedule_flush()
        reactor = self.reactor
        if self.protocol is None:
            self._lost = _DELIVERED
        elif self._dispatching:
            self._lost = exc  # delivered when the running protocol callback returns
        elif not reactor.is_closed():
            self._lost = exc
            reactor.call_soon(self._call_connection_lost, exc)
        else:
            self._call_connection_lost(exc)

    # ------------------------------------------------------------- deadlines

    # ---------------------------------------------------------- introspection

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``'socket'``: None; ``'peername'``/``'sockname'``: the names given to `memory_pair`; else ``default``."""
        if name == "socket":
            return None
        if name == "peername":
            return self.peer.name
        if name == "sockname":
            return self.name
        return default

    def as_dict(self) -> dict[str, Any]:
        """A snapshot for logs and tests, shaped like a connection-table row's."""
        return {
            "name": self.name,
            "state": self.state,
            "peer": self.peer.name,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "pending_out": len(self._buffer),
            "in_flight": self.in_flight,
            "deadline": self.deadline,
            "started": self.started,
            "reading": self.is_reading(),
            "writing_paused": self._writing_paused,
        }


def memory_pair(
    reactor: Reactor,
    protocol_a: Any,
    protocol_b: Any,
    *,
    window: int = DEFAULT_WINDOW,
    limits: TransportLimits = DEFAULT_LIMITS,
    names: tuple[str, str] = ("memory-a", "memory-b"),
) -> tuple[MemoryTransport, MemoryTransport]:
    """Connect ``protocol_a`` and ``protocol_b`` in memory; return their transports ``(a, b)``.

    Both ``connection_made`` calls happen before this returns (``a`` first);
    everything after that is delivered by reactor callbacks, so drive the pair
    with ``reactor.run_once(0)``.  ``window`` bounds the bytes in flight each
    way (see the module docstring); ``limits`` gives the read size, the water
    marks and the deadlines, as for `attach_socket` (deadlines follow the
    reactor's clock, so a `ManualClock` serves them).  ``names`` are what
    ``get_extra_info('sockname')`` returns on each end (and ``'peername'`` on
    the other).
    """
    if window <= 0:
        raise ValueError(f"window must be positive, got {window!r}")
    a = MemoryTransport(reactor, names[0], window, limits)
    b = MemoryTransport(reactor, names[1], window, limits)
    a.peer = b
    b.peer = a
    a._start(protocol_a)
    b._start(protocol_b)
    return a, b
