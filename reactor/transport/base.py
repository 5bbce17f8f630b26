"""What every transport shares: limits, deadlines, flow-control bookkeeping, calling the protocol.

`StreamTransport` (a socket) and `MemoryTransport` (a test double with no
socket) must behave the same towards their protocol, or a protocol tested in
memory would behave differently on a socket.  So the parts of a transport
that do not touch its I/O live here once, in `TransportBase`, and both
classes inherit them: the two deadlines and their lazily re-armed timer, the
water marks, how ``connection_lost`` is delivered exactly once, and how an
exception from protocol code is reported.
"""

# The concrete transports hold the attributes in their own __slots__; mypy
# checks assignments against this mixin's empty __slots__ and would refuse them.
# mypy: disable-error-code="misc"

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from ..core import Reactor
from .errors import report_user_error
from .table import READABLE_STATES, WRITE_DONE_STATES, State, change_state

__all__ = [
    "TransportBase",
    "TransportLimits",
    "DEFAULT_LIMITS",
    "MAX_READ",
    "HIGH_WATER",
    "LOW_WATER",
    "HANDSHAKE_TIMEOUT",
]

logger = logging.getLogger("reactor.transport")


def _writable_bytes(data: Any) -> bytearray | memoryview:
    """What a transport's ``write()`` takes that is not ``bytes``: a bytearray, or a memoryview cast to bytes.

    TypeError for anything else (a ``str`` included).  The callers check
    ``type(data) is not bytes`` first, so the common case costs no call.
    """
    if isinstance(data, str) or not isinstance(data, (bytearray, memoryview)):
        raise TypeError(f"data must be bytes, bytearray or memoryview, not {type(data).__name__}")
    return data.cast("B") if type(data) is memoryview else data


def _count_for_owner(transport: Any, counter: str) -> None:
    """Add one to ``counter`` of the server that owns ``transport``, if it has statistics.

    How a layer above the transport (TLS, PROXY) counts what only it can
    tell: a ``rejected`` handshake or header, a handshake that ran into its
    deadline (``timeouts``).  ``transport`` may be a layer's facade over the
    row (a `ProxiedTransport`); an outgoing connection's owner keeps no
    statistics, so nothing is counted for it.
    """
    owner = getattr(transport, "owner", None)
    while owner is None and transport is not None:
        transport = getattr(transport, "_transport", None)  # a facade: look at the transport below
        owner = getattr(transport, "owner", None)
    stats = getattr(owner, "stats", None)
    if stats is not None:
        setattr(stats, counter, getattr(stats, counter) + 1)


#: Seconds a peer may take to complete a TLS handshake (default).  Here, not in
#: `reactor.transport.tls`, so that surfaces name the default without importing `ssl`.
HANDSHAKE_TIMEOUT = 10.0

#: Bytes read per readiness event, at most.  Below glibc's default mmap
#: threshold (128 KiB) on purpose: ``recv(n)`` allocates ``n`` bytes before it
#: shrinks them to what arrived, and an allocation above the threshold is an
#: ``mmap``/``munmap`` pair per read (about 9 µs instead of 0.9 µs for a small
#: message, measured) until the process happens to free a block that large.
MAX_READ = 64 * 1024
#: Default write buffer water marks (asyncio's defaults).
HIGH_WATER = 64 * 1024
#: Writing resumes when the write buffer has drained to this many bytes.
LOW_WATER = 16 * 1024

_OPEN = State.OPEN
_READ_CLOSED = State.READ_CLOSED
_CLOSED = State.CLOSED
_CLOSING = State.CLOSING
_CONNECTING = State.CONNECTING
_WRITE_CLOSED = State.WRITE_CLOSED
_HANDSHAKING = State.HANDSHAKING
_READABLE = READABLE_STATES
_WRITE_DONE = WRITE_DONE_STATES


class _Alive:
    """Marks a transport whose ``connection_lost`` is not due yet."""

    __slots__ = ()


_ALIVE: Any = _Alive()
_DELIVERED: Any = _Alive()


class TransportLimits:
    """Per-owner settings shared by its transports: read size, water marks, timeouts."""

    __slots__ = ("max_read", "high", "low", "idle_timeout", "timeout")

    def __init__(
        self,
        max_read: int = MAX_READ,
        high: int = HIGH_WATER,
        low: int | None = None,
        idle_timeout: float | None = None,
        timeout: float | None = None,
    ) -> None:
        if max_read <= 0:
            raise ValueError(f"max_read must be positive, got {max_read!r}")
        if low is None:
            low = high // 4
        if not 0 <= low <= high:
            raise ValueError(f"need 0 <= low <= high for write buffer limits, got high={high!r} low={low!r}")
        for name, value in (("idle_timeout", idle_timeout), ("timeout", timeout)):
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive or None, got {value!r}")
        self.max_read = max_read
        self.high = high
        self.low = low
        self.idle_timeout = idle_timeout
        self.timeout = timeout

    def replace(self, **changes: Any) -> TransportLimits:
        """A copy with some settings changed."""
        values = {name: getattr(self, name) for name in self.__slots__}
        values.update(changes)
        return TransportLimits(**values)


#: The limits a transport has when none are given (every field at its default).
DEFAULT_LIMITS = TransportLimits()


class _WaterMarks:
    """The write-side flow control, written once for every transport: the water marks and their crossings.

    A transport (or the TLS layer) keeps ``_limits`` (a `TransportLimits`,
    the one source of the numbers) and ``_writing_paused``, and says how to
    tell its protocol (``_writing_signal``).  It calls `_follow_water_marks`
    with its buffered size whenever that size may have crossed a mark --
    after buffering, after a flush, after new limits -- and never on the
    fast path, where a write is sent at once and nothing is buffered: then
    no mark can be crossed, so the fast path pays nothing for this.
    ``pause_writing()`` comes once as the size rises above ``high``,
    ``resume_writing()`` once as it falls to ``low``.
    """

    __slots__ = ()

    _limits: TransportLimits
    _writing_paused: bool

    def _writing_signal(self, name: str) -> None:
        """Call ``pause_writing`` or ``resume_writing`` on the protocol (provided by the class)."""
        raise NotImplementedError

    def _follow_water_marks(self, size: int) -> None:
        """``size`` bytes are buffered now: pause or resume the protocol if a mark was crossed."""
        if self._writing_paused:
            if size <= self._limits.low:
                self._writing_paused = False
                self._writing_signal("resume_writing")
        elif size > self._limits.high:
            self._writing_paused = True
            self._writing_signal("pause_writing")

    def _set_water_marks(self, high: int | None, low: int | None) -> None:
        """New marks, with asyncio's defaults: ``high`` 64 KiB (or 4 x ``low``), ``low`` ``high // 4``.

        Raises ValueError unless ``0 <= low <= high`` (`TransportLimits`
        checks), and then nothing changed.  The caller follows them with its
        buffered size.
        """
        if high is None:
            high = HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        self._limits = self._limits.replace(high=high, low=low)


class TransportBase(_WaterMarks):
    """The shared half of a transport (see the module docstring); no state of its own."""

    __slots__ = ()

    # Provided by the concrete class (slots there).
    reactor: Reactor
    protocol: Any
    state: str
    started: float
    deadline: float | None
    timer: Any
    _limits: TransportLimits
    _active_at: float
    _lost: Any
    _reading: bool
    _writing_paused: bool
    _closed_by_call: bool
    _buffer: Any
    _eof_pending: bool
    _dispatching: bool

    def _describe(self) -> str:
        """How log lines and error reports name this connection."""
        return repr(self)

    def _close_now(self, exc: BaseException | None, inline: bool = False) -> None:
        raise NotImplementedError

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data`` (implemented by the concrete transport)."""
        raise NotImplementedError

    def get_write_buffer_size(self) -> int:
        """Bytes accepted by `write` and not yet handed on (implemented by the concrete transport)."""
        raise NotImplementedError

    #: Change the state along the table (`reactor.transport.table.change_state`).
    _set_state = change_state

    def _stop_reading(self) -> None:
        """Stop taking input from below (a socket: unregister the reader).  Nothing by default."""

    def _shutdown_write(self, inline: bool = True) -> None:
        """Close the write side below, once the buffer is flushed (implemented by the concrete transport)."""
        raise NotImplementedError

    def _eof_from_peer(self) -> None:
        state = self.state
        if state == _CLOSED:
            return
        if state == _CLOSING:
            self._close_now(None)
            return
        self._stop_reading()
        if state == _OPEN or state == _HANDSHAKING:
            self._set_state(_READ_CLOSED)
        self._dispatching = True
        try:
            keep_open = self.protocol.eof_received()
        except Exception as exc:
            keep_open = False
            self._protocol_failed(exc, "eof_received")
        self._dispatching = False
        state = self.state
        if state in _WRITE_DONE or (state == _READ_CLOSED and not keep_open):
            self.close()  # both directions are done (or the protocol wants no more)
            self._closed_by_call = False  # the peer finished it: later writes are dropped, not errors
        if self._lost is not _ALIVE and self._lost is not _DELIVERED:
            self._call_connection_lost(self._lost)

    def close(self) -> None:
        """Stop reading, flush the buffer, then close; ``connection_lost(None)`` follows.  Idempotent."""
        state = self.state
        if state == _CLOSED or state == _CLOSING:
            return
        self._closed_by_call = True
        if state == _CONNECTING or not self._buffer:
            self._close_now(None)
            return
        self._set_state(_CLOSING)
        self._reading = False
        self._stop_reading()

    def write_eof(self) -> None:
        """Close the write side once the buffer is flushed; keep reading (half-close)."""
        state = self.state
        if state in _WRITE_DONE or state == _CLOSING or state == _CLOSED:
            return
        if state == _CONNECTING:
            raise RuntimeError("the transport is not connected yet")
        if state == _READ_CLOSED:
            # Both directions are done once this is flushed.
            self.close()
            return
        self._set_state(_WRITE_CLOSED)
        if self._buffer:
            self._eof_pending = True
        else:
            self._shutdown_write(False)


    def _arm_deadline(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        due = self._due()
        self.deadline = due
        if due is not None and self.state != _CLOSED:
            self.timer = self.reactor.call_at(due, self._on_deadline)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        if self._lost is _DELIVERED:
            return
        self._lost = _DELIVERED
        protocol = self.protocol
        try:
            protocol.connection_lost(exc)
        except Exception as err:
            report_user_error(self.reactor, "exception in connection_lost", err, protocol=protocol, transport=self)
        # The protocol is told; let go of it, as asyncio's transports do.  A
        # protocol that keeps its transport (most do) made a reference cycle
        # with it, so every closed connection was garbage for the cyclic
        # collector instead of freed at once.
        self.protocol = None

    def _call_protocol(self, name: str) -> None:
        try:
            getattr(self.protocol, name)()
        except Exception as exc:
            self._protocol_failed(exc, name)

    _writing_signal = _call_protocol

    def _due(self) -> float | None:
        limits = self._limits
        due = None if limits.timeout is None else self.started + limits.timeout
        if limits.idle_timeout is not None:
            idle_due = self._active_at + limits.idle_timeout
            if due is None or idle_due < due:
                due = idle_due
        return due

    def _on_deadline(self) -> None:
        self.timer = None
        if self.state == _CLOSED:
            return
        due = self._due()
        if due is None:
            self.deadline = None
            return
        if due > self.reactor.time():
            self.deadline = due
            self.timer = self.reactor.call_at(due, self._on_deadline)  # progress moved it: re-arm
            return
        limits = self._limits
        idle = limits.idle_timeout is not None and (limits.timeout is None or due < self.started + limits.timeout)
        what = f"idle for {limits.idle_timeout} s" if idle else f"open for {limits.timeout} s"
        logger.info("%s timed out (%s) in state %s", self._describe(), what, self.state)
        self._reset_unsent()
        self._close_now(TimeoutError(f"connection {what}"), True)

    def _reset_unsent(self) -> None:
        """Make the coming close a reset if output is still unsent (a socket); nothing by default."""

    def _protocol_failed(self, exc: Exception, where: str) -> None:
        report_user_error(
            self.reactor,
            f"exception in {type(self.protocol).__name__}.{where}(); closing the {self._describe()}",
            exc,
            protocol=self.protocol,
            transport=self,
        )
        self._close_now(exc)

    def set_timeout(self, seconds: float | None) -> None:
        """Close the connection ``seconds`` from now whatever it does (None: no such deadline).

        Restarts the whole-exchange deadline; progress does not push it back.
        """
        self.started = self.reactor.time()
        if seconds != self._limits.timeout:  # a server re-arming its own timeout per request changes nothing here
            self._limits = self._limits.replace(timeout=seconds)
        self._arm_deadline()

    def set_idle_timeout(self, seconds: float | None) -> None:
        """Close the connection after ``seconds`` without progress either way (None: never)."""
        self._active_at = self.reactor.time()
        self._limits = self._limits.replace(idle_timeout=seconds)
        self._arm_deadline()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Set the water marks: ``pause_writing()`` above ``high``, ``resume_writing()`` at ``low``.

        As in asyncio: ``high`` defaults to 64 KiB (or 4 x ``low``), ``low`` to ``high // 4``.
        """
        self._set_water_marks(high, low)
        self._follow_water_marks(self.get_write_buffer_size())

    def can_write_eof(self) -> bool:
        """True: stream transports support half-close."""
        return True

    def get_protocol(self) -> Any:
        """The protocol this transport delivers to."""
        return self.protocol

    def set_protocol(self, protocol: Any) -> None:
        """Deliver to ``protocol`` from now on."""
        self.protocol = protocol

    def is_closing(self) -> bool:
        """True once the transport is closing or closed."""
        return self.state == _CLOSING or self.state == _CLOSED

    def is_reading(self) -> bool:
        """True while the transport delivers incoming data to its protocol."""
        return self._reading and self.state in _READABLE

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        """Write each buffer of ``list_of_data`` in order."""
        self.write(b"".join(list_of_data))

    def get_write_buffer_limits(self) -> tuple[int, int]:
        """The ``(low, high)`` water marks."""
        return self._limits.low, self._limits.high

    def _write_refused(self) -> None:
        state = self.state
        if state == _CLOSED and not self._closed_by_call:
            # The connection was lost (peer reset, timeout): the protocol learns
            # it from connection_lost; writing into the void is not an error.
            logger.debug("%r: write after the connection was lost; dropped", self)
            return
        if state == _CONNECTING:
            raise RuntimeError("the transport is not connected yet")
        if state in _WRITE_DONE:
            raise RuntimeError("cannot write after write_eof()")
        if state == _CLOSED:
            raise RuntimeError("cannot write to a transport that was closed with close() or abort()")
        raise RuntimeError("cannot write to a transport that is closing; it was closed with close()")
