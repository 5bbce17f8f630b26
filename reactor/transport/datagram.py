"""`DatagramEndpoint`: one UDP socket, owned from bind to close.

What can go wrong with a UDP socket on a reactor, and what we chose
-------------------------------------------------------------------
*Oversize datagrams.*  ``recvfrom(n)`` silently cuts a longer datagram to
``n`` bytes (socketserver's 8192-byte ``max_packet_size`` bites people).  We
read with ``recvmsg_into`` into one preallocated buffer and look at
``MSG_TRUNC``: a datagram longer than ``receive_size`` is counted
(``truncated``) and dropped, never handed over cut.  One misconfigured (or
hostile) peer can send thousands a second, so a WARNING is logged at most
once per `DatagramEndpoint.truncated_warning_interval` (60 s of reactor
time) per endpoint, naming the peer and how many were dropped since the
last one; the others are logged at DEBUG.  Once per endpoint rather than
once per peer: source addresses cost nothing to forge, so per-peer state
would need a bound of its own, and a flood from many forged peers would
still flood the log.  The counter is exact either way.

*Floods.*  A readiness event is a hint that *some* datagrams wait; we read
until ``EAGAIN`` but at most `DatagramEndpoint.max_datagrams_per_read` per
event, so a flood on one socket cannot starve timers or the reactor's other
sockets.  What the kernel throws away when the receive buffer is full is not
invisible: on Linux ``SO_RXQ_OVFL`` makes the kernel attach its drop counter
to the next datagram we read (``kernel_drops``; None where the option does
not exist).

*Receive errors are about one datagram.*  A late ICMP "port unreachable"
surfaces as an error on the next ``recvmsg_into``; it is counted
(``receive_errors``) and the loop goes on.

*Sending.*  ``sendto`` on a non-blocking socket is tried at once; only if
the kernel says ``EAGAIN`` is the datagram queued, in a queue bounded by
``send_queue_size`` (overflow is counted as ``send_dropped``), and a writer
is registered only while that queue is not empty.  Threads never touch the
socket or the queue: a `DatagramEndpoint.send` from another thread is handed
to the reactor with ``call_soon_threadsafe``.

*Delivery.*  Each good datagram goes to ``on_datagram(buffer, nbytes,
address)`` (or to an overriding `DatagramEndpoint.datagram_received`): the
receive buffer itself and the datagram's length, so the receiver decodes or
copies exactly once, straight from the buffer.  Subclassing is the way for
a surface whose object *is* the endpoint: a callback that is a bound method
of an object holding the endpoint would make a reference cycle, and an
unclosed endpoint would then be collected (and reported) only by the cycle
collector, not when its last reference goes.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..addresses import format_address, parse_address
from ..core import Reactor
from .threads import in_reactor_thread, note_host

__all__ = ["Address", "DatagramCallback", "DatagramCounters", "DatagramEndpoint"]

logger = logging.getLogger("reactor.transport")

#: A socket address as the socket module gives it: ``(host, port)`` for IPv4,
#: ``(host, port, flowinfo, scope_id)`` for IPv6.
Address = tuple[Any, ...]
#: ``on_datagram(buffer, nbytes, address)``: the datagram is ``buffer[:nbytes]``;
#: the buffer is reused for the next datagram, so copy what you keep.
DatagramCallback = Callable[[bytearray, int, Address], object]

_SO_RXQ_OVFL: int | None = getattr(socket, "SO_RXQ_OVFL", 40 if sys.platform == "linux" else None)
_MSG_TRUNC: int = getattr(socket, "MSG_TRUNC", 0)


@dataclass(frozen=True, slots=True)
class DatagramCounters:
    """A snapshot of a `DatagramEndpoint`'s counters."""

    #: Datagrams read from the socket (including the truncated ones).
    received: int
    #: Datagrams dropped because they were longer than ``receive_size``.
    truncated: int
    #: Socket errors on receive (each about one datagram; the loop went on).
    receive_errors: int
    #: Datagrams handed to the kernel.
    sent: int
    #: Outgoing datagrams dropped: send queue full, or ``sendto`` failed.
    send_dropped: int
    #: The kernel's own count of datagrams it dropped for lack of receive
    #: buffer (``SO_RXQ_OVFL``); None where not available.
    kernel_drops: int | None
    #: Outgoing datagrams waiting for the socket to become writable.
    send_queue: int


def _datagram_sockaddr(address: str) -> Address:
    """The socket address an address string names, for ``sendto``; a Unix address is refused."""
    parsed = parse_address(address)
    if isinstance(parsed.sockaddr, str):
        raise ValueError(f"a UDP endpoint cannot send to the Unix socket address {address!r}")
    return parsed.sockaddr


class DatagramEndpoint:
    """A bound, non-blocking UDP socket registered with a reactor.

    ``DatagramEndpoint(reactor, host, port, on_datagram=None, *,
    receive_size=65535, receive_buffer=None, send_queue_size=1024)`` binds
    ``(host, port)`` at once (IPv6 when ``host`` contains ``:``; port 0: any
    free port, see `address` and `sockaddr`) and starts reading.  ``receive_buffer`` sets
    ``SO_RCVBUF`` (bytes).  It may be created from another thread while the
    reactor runs; it then registers from the reactor's thread.

    Methods for the caller: `send` (any thread), `close` (idempotent),
    `counters`.  May be overridden: `datagram_received`, called when no
    ``on_datagram`` was given.  ``socket`` is the socket itself.
    """

    #: At most this many datagrams are read per readiness event.
    max_datagrams_per_read = 64
    #: Seconds of reactor time between two WARNINGs about oversized datagrams
    #: (the ones in between are counted and logged at DEBUG).
    truncated_warning_interval = 60.0

    def __init__(
        self,
        reactor: Reactor,
        host: str,
        port: int,
        on_datagram: DatagramCallback | None = None,
        *,
        receive_size: int = 65535,
        receive_buffer: int | None = None,
        send_queue_size: int = 1024,
    ) -> None:
        # Closed until fully set up, so __del__ of a half-built one stays quiet.
        self._closed = True
        if on_datagram is None and type(self).datagram_received is DatagramEndpoint.datagram_received:
            raise TypeError("give on_datagram, or subclass DatagramEndpoint and override datagram_received")
        if receive_size < 1 or send_queue_size < 0:
            raise ValueError(f"receive_size must be >= 1 and send_queue_size >= 0, "
                             f"got {receive_size} and {send_queue_size}")
        self.receive_size = receive_size
        self.send_queue_size = send_queue_size
        self._reactor = reactor
        self._on_datagram = on_datagram
        self._buffer = bytearray(receive_size)
        self._send_queue: deque[tuple[bytes, Address]] = deque()
        self._writing = False
        self._received = self._truncated = self._receive_errors = 0
        self._sent = self._send_dropped = 0
        self._kernel_drops: int | None = None
        self._ancillary_size = 0
        self._truncated_warned_at: float | None = None  # reactor time of the last WARNING
        self._truncated_at_warning = 0  # the truncated count then

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            if receive_buffer is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            if _SO_RXQ_OVFL is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, _SO_RXQ_OVFL, 1)
                except OSError:
                    pass  # not on this kernel: kernel_drops stays None
                else:
                    self._kernel_drops = 0
                    self._ancillary_size = socket.CMSG_SPACE(4)
            try:
                sock.bind((host, port))
            except OSError as exc:
                where = format_address(family, (host, port))
                raise OSError(exc.errno, f"cannot bind UDP {where}: {exc.strerror}") from exc
            if not in_reactor_thread(reactor):
                # Created while another thread runs the reactor: register from there.
                reactor.call_soon_threadsafe(reactor.add_reader, sock, self._on_readable)
            else:
                note_host(reactor)  # an embedding host creates its endpoints in its own thread
                reactor.add_reader(sock, self._on_readable)
        except BaseException:
            sock.close()
            raise
        #: The UDP socket (non-blocking, registered with the reactor).
        self.socket = sock
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else self.address
        return f"<{type(self).__name__} {state}>"

    # --------------------------------------------------------------- properties

    @property
    def reactor(self) -> Reactor:
        """The reactor this endpoint is registered with."""
        return self._reactor

    @property
    def address(self) -> str:
        """The bound address in the package's syntax, e.g. ``'127.0.0.1:40123'`` (the real port if 0 was asked).

        Every server's ``address`` is this string (`reactor.addresses`);
        the tuple the socket module uses is `sockaddr`.
        """
        return format_address(self.socket.family, self.socket.getsockname())

    @property
    def sockaddr(self) -> Address:
        """The bound socket address as the socket module gives it, e.g. ``("127.0.0.1", 40123)``."""
        return tuple(self.socket.getsockname())

    @property
    def closed(self) -> bool:
        """True once `close` was called."""
        return self._closed

    def counters(self) -> DatagramCounters:
        """A snapshot of the counters (received, truncated, errors, sent, drops, queue)."""
        return DatagramCounters(
            received=self._received,
            truncated=self._truncated,
            receive_errors=self._receive_errors,
            sent=self._sent,
            send_dropped=self._send_dropped,
            kernel_drops=self._kernel_drops,
            send_queue=len(self._send_queue),
        )

    # -------------------------------------------------------------- receiving

    def datagram_received(self, buffer: bytearray, nbytes: int, address: Address) -> None:
        """Called with each good datagram, ``buffer[:nbytes]``, when no ``on_datagram`` was given.

        ``buffer`` is reused for the next datagram: copy what you keep.  The
        endpoint may be closed from here; reading stops at once.
        """
        raise NotImplementedError

    def _on_readable(self) -> None:
        # The hot loop: everything it uses per datagram is a local.
        note_host(self._reactor)  # a host loop driving run_once() is known from here on
        recvmsg_into = self.socket.recvmsg_into
        buffers = [self._buffer]
        buffer = self._buffer
        ancillary_size = self._ancillary_size
        deliver = self._on_datagram or self.datagram_received
        for _ in range(self.max_datagrams_per_read):
            try:
                nbytes, ancillary, flags, address = recvmsg_into(buffers, ancillary_size)
            except BlockingIOError:
                return
            except OSError as exc:
                if self._closed:
                    return
                # e.g. a late ICMP "port unreachable": about one datagram, not the socket.
                self._receive_errors += 1
                logger.debug("%r: receive error %s; going on", self, exc)
                continue
            self._received += 1
            if ancillary:
                self._read_ancillary(ancillary)
            if flags & _MSG_TRUNC:
                self._truncated += 1
                self._report_truncated(address)
                continue
            deliver(buffer, nbytes, address)
            if self._closed:
                return

    def _report_truncated(self, address: Address) -> None:
        now = self._reactor.time()
        last = self._truncated_warned_at
        if last is not None and now - last < self.truncated_warning_interval:
            logger.debug(
                "%r: dropped a datagram from %s longer than receive_size=%d bytes", self, address, self.receive_size
            )
            return
        since = self._truncated - self._truncated_at_warning - 1
        self._truncated_warned_at = now
        self._truncated_at_warning = self._truncated
        logger.warning(
            "%r: dropped a datagram from %s longer than receive_size=%d bytes%s; "
            "more within %g s are counted (truncated) and logged at DEBUG",
            self,
            address,
            self.receive_size,
            f" ({since} more dropped since the last warning)" if since else "",
            self.truncated_warning_interval,
        )

    def _read_ancillary(self, ancillary: list[tuple[int, int, bytes]]) -> None:
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == _SO_RXQ_OVFL and len(data) >= 4:
                drops = int.from_bytes(data[:4], sys.byteorder)
                if drops != self._kernel_drops:
                    logger.debug("%r: the kernel has dropped %d datagrams so far", self, drops)
                self._kernel_drops = drops

    # ---------------------------------------------------------------- sending

    def send(self, data: bytes | bytearray | memoryview, address: Address | str) -> None:
        """Send ``data`` as one datagram to ``address``; never blocks; safe from any thread.

        ``address`` is a socket address tuple (what a handler is given as
        the sender) or an address string such as another endpoint's
        `address` (``'127.0.0.1:40123'``, ``'[::1]:40123'``, ``'localhost:9000'``).
        If the kernel cannot take it now it is queued and sent when the socket
        is writable; if the queue is full it is dropped and counted.  From the
        reactor's thread, sending on a closed endpoint raises RuntimeError;
        from another thread the datagram is dropped quietly (the endpoint may
        have been closed while it was on its way).
        """
        if not isinstance(data, bytes):
            if not isinstance(data, (bytearray, memoryview)):
                raise TypeError(f"send() takes bytes, got {type(data).__name__}")
            data = bytes(data)  # the caller may reuse its buffer before we send
        if isinstance(address, str):
            address = _datagram_sockaddr(address)
        if in_reactor_thread(self._reactor):
            if self._closed:
                raise RuntimeError(f"{self!r} is closed; create a new one to send")
            self._send_now(data, address)
        elif not self._closed:
            try:
                self._reactor.call_soon_threadsafe(self._send_later, data, address)
            except RuntimeError:  # the reactor was closed meanwhile
                pass

    def _send_later(self, data: bytes, address: Address) -> None:
        if not self._closed:  # closed while the datagram was on its way from a thread
            self._send_now(data, address)

    def _send_now(self, data: bytes, address: Address) -> None:
        queue = self._send_queue
        if not queue:  # datagrams keep their order: only an empty queue may be bypassed
            try:
                self.socket.sendto(data, address)
            except BlockingIOError:
                pass
            except OSError as exc:
                self._send_dropped += 1
                logger.warning("%r: could not send to %s: %s", self, address, exc)
                return
            else:
                self._sent += 1
                return
        if len(queue) >= self.send_queue_size:
            self._send_dropped += 1
            logger.debug("%r: send queue full; dropped a datagram to %s", self, address)
            return
        queue.append((data, address))
        if not self._writing:
            self._writing = True
            self._reactor.add_writer(self.socket, self._on_writable)

    def _on_writable(self) -> None:
        queue = self._send_queue
        sendto = self.socket.sendto
        while queue:
            data, address = queue[0]
            try:
                sendto(data, address)
            except BlockingIOError:
                return
            except OSError as exc:
                self._send_dropped += 1
                logger.warning("%r: could not send to %s: %s", self, address, exc)
            else:
                self._sent += 1
            queue.popleft()
        self._writing = False
        self._reactor.remove_writer(self.socket)

    # ---------------------------------------------------------------- closing

    def close(self) -> None:
        """Unregister, then close the socket; queued datagrams are dropped; idempotent.

        From a thread other than the one that drives the reactor
        (`reactor.transport.threads.reactor_thread`), the close is handed to
        the reactor's thread (only it may touch the registrations).
        """
        if self._closed:
            return
        reactor = self._reactor
        if not in_reactor_thread(reactor):
            reactor.call_soon_threadsafe(self.close)
            return
        self._closed = True
        if not reactor.is_closed():
            reactor.remove_reader(self.socket)
            if self._writing:
                reactor.remove_writer(self.socket)
        self._writing = False
        self._send_queue.clear()
        self.socket.close()
        self._on_datagram = None  # a callback that refers back to us: no cycle left

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        if not getattr(self, "_closed", True) and hasattr(self, "socket"):
            _warn(f"unclosed {type(self).__name__}", ResourceWarning, source=self)
            self._closed = True
            with contextlib.suppress(OSError):
                self.socket.close()
