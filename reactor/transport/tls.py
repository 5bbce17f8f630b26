"""TLS as a layer: `TLSProtocol` below the application, `TLSTransport` above it.

What can go wrong with TLS, and what we chose
---------------------------------------------
*Written once.*  ``ssl.SSLSocket`` wants to own the socket (it rejects the
``MSG_DONTWAIT`` fast path and hides the handshake inside ``recv``).  So, as
asyncio's ``sslproto``, Twisted's ``TLSMemoryBIOProtocol`` and trio's
``SSLStream`` do, the TLS engine here never touches a socket: an
``ssl.SSLObject`` reads ciphertext from one ``MemoryBIO`` and writes it to
another.  `TLSProtocol` is an ordinary protocol on any stream transport (a
`StreamTransport` row, a `MemoryTransport`), and it hands the application a
`TLSTransport` with the same API.  A listener's ``protocol_factory`` becomes
``lambda: TLSProtocol(context, app_factory(), server_side=True)`` and every
limit, deadline and fault fix of the transport below still applies.

*The handshake comes first.*  The application's ``connection_made`` runs
only once the handshake is complete; for a client the connect future
completes then too.  Meanwhile the row below is ``HANDSHAKING`` in the
connection table (and ``SHUTTING_DOWN`` while a close waits for the peer's
``close_notify``): the layer keeps its own engine state, but what an
operator sees is the row's.  A reactor timer (``handshake_timeout``, 10 s
by default) aborts a peer that connects and never finishes.  A failed handshake (a plain
TCP client, an untrusted certificate, a wrong name, a missing client
certificate, a reset) closes only that connection, sends the TLS alert when
there is one, and is logged once at INFO with the peer and the reason.  The
server's statistics count it as the PROXY layer counts a bad header: a
handshake that ran out of time in ``timeouts``, one that failed (bad bytes,
a refused certificate, an EOF after part of a ClientHello) in ``rejected``;
a peer that closes without sending a byte (a TCP health check) is not
counted, and a reset is counted by the transport below, in ``errors``.
With TLS 1.3 the client finishes its handshake before the server has checked
the client's certificate: a refused client certificate reaches the client as
an `ssl.SSLError` in ``connection_lost`` (and in a pending request's future).

*Half-close is close_notify.*  ``write_eof()`` sends ``close_notify`` and
then shuts the socket's write side; the transport goes on reading.  OpenSSL
keeps reading after sending ``close_notify`` and keeps writing after
receiving one (TLS 1.3 says so, RFC 8446 section 6.1; with TLS 1.2 OpenSSL
allows it too), so ``can_write_eof()`` is True and the stream conformance
suite holds over TLS.  A peer that follows TLS 1.2 strictly may answer our
``close_notify`` by closing: protocols that need the reply afterwards
should not half-close over TLS (the request/reply client does not).

*Closing.*  ``close()`` stops delivering data and sends ``close_notify``
after what is buffered; ``abort()`` closes at once.  Then the layer shuts the
socket's write side and *keeps reading* (discarding) until the peer's
``close_notify`` or EOF, for at most `SHUTDOWN_TIMEOUT` seconds, before it
closes the socket.  Closing at once would be cheaper, but a TLS 1.3 server
sends session tickets after the handshake that a client which closes before
reading them still has unread: the kernel then answers the close with a
reset, which can destroy the tail of what we sent (the `StreamTransport`
never closes with unread input in normal use; a TLS stream often would).
asyncio waits for the peer's ``close_notify`` the same way.  A peer that
closes without ``close_notify`` is treated as an EOF (``eof_received``, then
``connection_lost(None)``), as asyncio does, logged at DEBUG only.

*Backpressure through the layer.*  Application bytes are encrypted at once;
the ciphertext is buffered by the transport below.  ``get_write_buffer_size``
is both (plaintext that could not be encrypted yet, during a renegotiation,
plus ciphertext below), the transport below carries the same water marks,
and its ``pause_writing``/``resume_writing`` drive the application's.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterable
from typing import Any

from ..futures import Future
from .base import DEFAULT_LIMITS, HANDSHAKE_TIMEOUT, MAX_READ, _count_for_owner, _WaterMarks, _writable_bytes
from .errors import report_user_error
from .table import WRITE_DONE_STATES, State

__all__ = ["TLSProtocol", "TLSTransport", "HANDSHAKE_TIMEOUT", "SHUTDOWN_TIMEOUT", "default_server_hostname"]

logger = logging.getLogger("reactor.transport")

#: Seconds a closing connection waits for the peer's close_notify or EOF before it is aborted.
SHUTDOWN_TIMEOUT = 10.0

_HANDSHAKING = "HANDSHAKING"
_WRAPPED = "WRAPPED"
_FAILED = "FAILED"
_CLOSED = "CLOSED"


def default_server_hostname(address: str, family: int) -> str | None:
    """The host part of ``address`` as written (``'localhost:80'`` gives ``'localhost'``); None for Unix."""
    import socket

    if family == socket.AF_UNIX:
        return None
    if address.startswith("["):
        return address[1 : address.find("]")]
    host = address.rpartition(":")[0]
    return host or None


def _move_row(transport: Any, old: str, new: str) -> None:
    """Move the row below from ``old`` to ``new`` (if it is in ``old``), along the table's transitions.

    The transport below is a row (or a facade that forwards to one, or a
    memory transport of a test); a transport without states of its own is
    left alone.
    """
    if transport.state == old and hasattr(transport, "_set_state"):
        transport._set_state(new)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"{exc.reason}: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    return str(exc) or type(exc).__name__


class TLSProtocol(_WaterMarks):
    """The TLS engine as a protocol on a stream transport; the application sits above it.

    ``app_protocol`` receives a `TLSTransport` in ``connection_made`` once
    the handshake is complete.  ``server_hostname`` is checked against the
    peer's certificate (client side).  ``waiter``, if given, gets
    ``(tls_transport, app_protocol)`` when the handshake completes, or the
    handshake's exception.
    """

    __slots__ = (
        "context",
        "server_side",
        "server_hostname",
        "handshake_timeout",
        "waiter",
        "app",
        "transport",
        "tls_transport",
        "sslobj",
        "state",
        "_incoming",
        "_outgoing",
        "_timer",
        "_exc",
        "_app_made",
        "_app_lost",
        "_reading",
        "_eof_in",
        "_eof_sent",
        "_closing",
        "_closed_by_call",
        "_pending",
        "_eof_pending",
        "_close_pending",
        "_writing_paused",
        "_limits",
        "bytes_in",
        "bytes_out",
        "_read_scheduled",
    )

    def __init__(
        self,
        context: ssl.SSLContext,
        app_protocol: Any,
        *,
        server_side: bool,
        server_hostname: str | None = None,
        handshake_timeout: float | None = HANDSHAKE_TIMEOUT,
        waiter: Future[tuple[Any, Any]] | None = None,
    ) -> None:
        if not isinstance(context, ssl.SSLContext):
            raise TypeError(f"ssl must be an ssl.SSLContext, got {type(context).__name__}")
        if handshake_timeout is not None and not handshake_timeout > 0:
            raise ValueError(f"ssl_handshake_timeout must be positive or None, got {handshake_timeout!r}")
        if not server_side and context.check_hostname and not server_hostname:
            raise ValueError(
                "this SSLContext checks host names: pass server_hostname=, or set check_hostname=False"
            )
        self.context = context
        self.server_side = server_side
        self.server_hostname = server_hostname
        self.handshake_timeout = handshake_timeout
        self.waiter = waiter
        self.app = app_protocol
        self.transport: Any = None
        self.tls_transport = TLSTransport(self)
        self.sslobj: ssl.SSLObject | None = None
        self.state = _HANDSHAKING
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._timer: Any = None
        self._exc: BaseException | None = None  # what connection_lost reports when the layer closed it
        self._app_made = False
        self._app_lost = False
        self._reading = True  # the application wants data
        self._eof_in = False  # close_notify (or the transport's EOF) arrived
        self._eof_sent = False  # our close_notify went out (write_eof or close)
        self._closing = False  # the application called close() or abort()
        self._closed_by_call = False
        self._pending: list[bytes] = []  # plaintext the engine could not take yet (renegotiation)
        self._eof_pending = False
        self._close_pending = False
        self._writing_paused = False
        self._limits = DEFAULT_LIMITS  # the water marks: those of the transport below, from connection_made
        self.bytes_in = 0  # plaintext delivered to the application
        self.bytes_out = 0  # plaintext accepted from the application
        self._read_scheduled = False

    def __repr__(self) -> str:
        side = "server" if self.server_side else "client"
        return f"<TLSProtocol {side} {self.state} peer={self._peer()}>"

    def _peer(self) -> Any:
        if self.transport is None:
            return None
        return self.transport.get_extra_info("peername")

    # ------------------------------------------------ protocol of the transport below

    def connection_made(self, transport: Any) -> None:
        """Start the handshake (and its timer)."""
        self.transport = transport
        low, high = transport.get_write_buffer_limits()
        self._set_water_marks(high, low)
        self.sslobj = self.context.wrap_bio(
            self._incoming, self._outgoing, server_side=self.server_side, server_hostname=self.server_hostname
        )
        if self.handshake_timeout is not None:
            self._timer = transport.reactor.call_later(self.handshake_timeout, self._handshake_timed_out)
        _move_row(transport, State.OPEN, State.HANDSHAKING)  # the table shows the handshake
        self._do_handshake()

    def data_received(self, data: bytes) -> None:
        """Ciphertext arrived: go on with the handshake, or decrypt for the application."""
        self._incoming.write(data)
        if self.state == _WRAPPED:
            if self._closing:
                self._discard_after_close()
            else:
                self._read_app_data()
        elif self.state == _HANDSHAKING:
            self._do_handshake()

    def eof_received(self) -> bool:
        """The peer closed its write side of the connection below."""
        if self.state == _HANDSHAKING:
            exc = ConnectionResetError("the peer closed the connection during the TLS handshake")
            # A peer that closes without sending a byte (a TCP health check) is not a failed handshake.
            self._handshake_failed(exc, counted=bool(self.transport.bytes_in))
            return False
        if self.state != _WRAPPED or self._closing:
            return False  # closing: this is the EOF we waited for; the application has said goodbye
        if not self._eof_in:
            logger.debug("%r: EOF without close_notify; treated as EOF", self)
            self._app_eof()
        return not (self._closing or self._eof_sent)

    def connection_lost(self, exc: BaseException | None) -> None:
        """The connection below is closed: tell the application (once), or fail the handshake."""
        self._cancel_timer()
        state = self.state
        self.state = _CLOSED
        if state == _HANDSHAKING:
            error = exc if exc is not None else ConnectionResetError("connection closed during the TLS handshake")
            if exc is not None:
                logger.info("TLS handshake with %s failed: %s", self._peer(), _reason(exc))
            else:
                logger.debug("%r: closed during the TLS handshake", self)
            self._fail_waiter(error)
            return
        if not self._app_made or self._app_lost:
            return
        self._app_lost = True
        reported = self._exc if self._exc is not None else exc
        if self._eof_in and self._closing and isinstance(reported, (BrokenPipeError, ConnectionResetError)):
            reported = None  # the peer had finished and went away before our close_notify: a normal end
        try:
            self.app.connection_lost(reported)
        except Exception as err:
            report_user_error(
                self.transport.reactor,
                "exception in connection_lost",
                err,
                protocol=self.app,
                transport=self.tls_transport,
            )

    def pause_writing(self) -> None:
        """The transport below is above its high water mark."""
        self._update_writing_paused()

    def resume_writing(self) -> None:
        """The transport below drained to its low water mark."""
        self._update_writing_paused()

    # ------------------------------------------------------------- handshake

    def _do_handshake(self) -> None:
        assert self.sslobj is not None
        try:
            self.sslobj.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        except ssl.SSLError as exc:
            self._flush()  # the alert, so that the peer learns why
            self._handshake_failed(exc)
            return
        self._flush()
        self._handshake_done()

    def _handshake_timed_out(self) -> None:
        self._timer = None
        if self.state == _HANDSHAKING:
            exc = TimeoutError(f"TLS handshake not complete within {self.handshake_timeout} s")
            _count_for_owner(self.transport, "timeouts")
            self._handshake_failed(exc, abort=True, counted=False)

    def _handshake_failed(self, exc: BaseException, abort: bool = False, counted: bool = True) -> None:
        """The handshake cannot complete: log, fail the waiter, close; ``counted``: as ``rejected``."""
        self._cancel_timer()
        self.state = _FAILED
        logger.info("TLS handshake with %s failed: %s", self._peer(), _reason(exc))
        if counted:
            _count_for_owner(self.transport, "rejected")
        self._fail_waiter(exc)
        if abort:
            self.transport.abort()
        else:
            self.transport.close()

    def _fail_waiter(self, exc: BaseException) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _handshake_done(self) -> None:
        self._cancel_timer()
        self.state = _WRAPPED
        _move_row(self.transport, State.HANDSHAKING, State.OPEN)
        if logger.isEnabledFor(logging.DEBUG):
            assert self.sslobj is not None
            logger.debug("%r: TLS handshake done (%s, %s)", self, self.sslobj.version(), self.sslobj.cipher())
        waiter = self.waiter
        if waiter is not None:
            if waiter.done():  # cancelled meanwhile: nobody wants this connection
                self.transport.abort()
                return
            waiter.set_result((self.tls_transport, self.app))
        self._app_made = True
        try:
            self.app.connection_made(self.tls_transport)
        except Exception as exc:
            self._app_failed(exc, "connection_made")
            return
        if self._pending:
            self._write_pending()
        self._read_app_data()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # ------------------------------------------------------------- reading

    def _read_app_data(self) -> None:
        self._read_scheduled = False
        sslobj = self.sslobj
        assert sslobj is not None
        while self._reading and not self._eof_in and not self._closing and self.state == _WRAPPED:
            try:
                chunk = sslobj.read(MAX_READ)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self._flush()
                self._app_eof()
                return
            except ssl.SSLError as exc:
                self._fatal(exc)
                return
            if not chunk:
                break
            self.bytes_in += len(chunk)
            try:
                self.app.data_received(chunk)
            except Exception as exc:
                self._app_failed(exc, "data_received")
                return
            if not self._incoming.pending and not sslobj.pending():
                # Nothing left to decrypt: another read would only raise
                # SSLWantReadError, whose construction costs about as much as
                # the decryption of a short record.
                break
        if self.state == _WRAPPED:
            self._flush()  # TLS 1.3 key updates and tickets answered while reading
            if self._pending:
                self._write_pending()

    def _app_eof(self) -> None:
        self._eof_in = True
        try:
            keep_open = self.app.eof_received()
        except Exception as exc:
            self._app_failed(exc, "eof_received")
            return
        if self._closing or self.state != _WRAPPED:
            return
        if self._eof_sent:
            self._closing = True  # both directions are done
            self.transport.close()
            self._closed_by_call = False
        elif not keep_open:
            self.tls_transport.close()
            self._closed_by_call = False  # the peer finished it: later writes are dropped, not errors

    def _fatal(self, exc: BaseException) -> None:
        logger.info("TLS error on the connection with %s: %s; closing", self._peer(), _reason(exc))
        self._exc = exc
        self._closing = True
        self.transport.abort()

    def _app_failed(self, exc: Exception, where: str) -> None:
        report_user_error(
            self.transport.reactor,
            f"exception in {type(self.app).__name__}.{where}(); closing the TLS connection with {self._peer()}",
            exc,
            protocol=self.app,
            transport=self.tls_transport,
        )
        self._exc = exc
        self._closing = True
        self.transport.abort()

    def _schedule_read(self) -> None:
        if not self._read_scheduled and self.state == _WRAPPED:
            self._read_scheduled = True
            self.transport.reactor.call_soon(self._read_app_data)

    # ------------------------------------------------------------- writing

    def _flush(self) -> None:
        if not self._outgoing.pending:
            return
        data = self._outgoing.read()
        if not self.transport.is_closing() and self.transport.state not in WRITE_DONE_STATES:
            self.transport.write(data)

    def _encrypt(self, data: bytes | bytearray | memoryview) -> None:
        sslobj = self.sslobj
        assert sslobj is not None
        offset = 0
        try:
            offset = sslobj.write(data)  # with memory BIOs this takes it all: no memoryview slicing
            if offset < len(data):
                view = memoryview(data)
                while offset < len(view):
                    offset += sslobj.write(view[offset:])
        except ssl.SSLWantReadError:  # a renegotiation in progress: keep the rest for later
            self._pending.append(bytes(memoryview(data)[offset:]))
        except ssl.SSLError as exc:
            self._fatal(exc)
            return
        self._flush()

    def _write_pending(self) -> None:
        pending, self._pending = self._pending, []
        for i, data in enumerate(pending):
            self._encrypt(data)
            if self._pending:
                self._pending.extend(pending[i + 1 :])
                return
        if self._eof_pending:
            self._eof_pending = False
            self._send_close_notify()
            if not self._close_pending:
                self.transport.write_eof()
        if self._close_pending:
            self._close_pending = False
            self._finish_close()
        self._update_writing_paused()

    def _send_close_notify(self) -> None:
        self._eof_sent = True
        assert self.sslobj is not None
        try:
            self.sslobj.unwrap()
        except ssl.SSLError:
            pass  # SSLWantReadError: the peer's close_notify has not come (we do not wait for it)
        self._flush()

    def _finish_close(self) -> None:
        if not self._eof_sent:
            self._send_close_notify()
        transport = self.transport
        if self._eof_in:
            transport.close()  # both close_notify alerts are out: nothing more can come
            return
        # Wait for the peer's close_notify or EOF (see the module docstring).
        transport.write_eof()
        _move_row(transport, State.WRITE_CLOSED, State.SHUTTING_DOWN)  # the table shows the closing exchange
        if not transport.is_closing():
            transport.resume_reading()
            self._cancel_timer()
            self._timer = transport.reactor.call_later(SHUTDOWN_TIMEOUT, self._shutdown_timed_out)

    def _discard_after_close(self) -> None:
        assert self.sslobj is not None
        try:
            while self.sslobj.read(MAX_READ):
                pass
        except ssl.SSLWantReadError:
            return
        except ssl.SSLZeroReturnError:
            self._eof_in = True
            self.transport.close()
        except ssl.SSLError:
            self.transport.abort()

    def _shutdown_timed_out(self) -> None:
        self._timer = None
        logger.debug("%r: no close_notify from the peer within %s s; aborting", self, SHUTDOWN_TIMEOUT)
        self.transport.abort()

    def _buffered(self) -> int:
        pending = sum(len(data) for data in self._pending) if self._pending else 0
        below: int = self.transport.get_write_buffer_size()
        return pending + below

    def _update_writing_paused(self) -> None:
        if self._app_made and not self._app_lost:
            self._follow_water_marks(self._buffered())

    def _call_app(self, name: str) -> None:
        try:
            getattr(self.app, name)()
        except Exception as exc:
            self._app_failed(exc, name)

    _writing_signal = _call_app


class TLSTransport:
    """What a protocol over TLS receives: the `StreamTransport` API, through the TLS layer.

    Methods: `write`, `writelines`, `write_eof` (sends ``close_notify``, then
    keeps reading), `can_write_eof`, `close` (flush, ``close_notify``,
    close), `abort`, `pause_reading`, `resume_reading`, `is_reading`,
    `get_write_buffer_size` (plaintext not yet encrypted plus ciphertext
    buffered below), `get_write_buffer_limits`, `set_write_buffer_limits`,
    `get_extra_info` (``'ssl_object'``, ``'peercert'``, ``'cipher'``,
    ``'sslcontext'``, and the names of the transport below), `is_closing`,
    `get_protocol`, `set_protocol`, `set_timeout`, `set_idle_timeout`.
    Attributes ``peer``, ``state``, ``bytes_in``/``bytes_out`` (plaintext).
    """

    __slots__ = ("_tls",)

    def __init__(self, tls: TLSProtocol) -> None:
        self._tls = tls

    def __repr__(self) -> str:
        return f"<TLSTransport over {self._tls.transport!r}>"

    @property
    def peer(self) -> Any:
        """The peer's address (as on the transport below)."""
        return getattr(self._tls.transport, "peer", None)

    @property
    def state(self) -> str:
        """The state of the transport below (a `State`)."""
        return str(self._tls.transport.state)

    @property
    def bytes_in(self) -> int:
        """Plaintext bytes delivered to the protocol."""
        return self._tls.bytes_in

    @property
    def bytes_out(self) -> int:
        """Plaintext bytes accepted by `write`."""
        return self._tls.bytes_out

    @property
    def reactor(self) -> Any:
        """The reactor of the transport below."""
        return self._tls.transport.reactor

    # ------------------------------------------------------------- writing

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt ``data`` and send it: what the socket does not take is buffered below; never blocks."""
        tls = self._tls
        if tls._closing or tls._eof_sent or tls.state != _WRAPPED or tls.transport.is_closing():
            self._write_refused()
            return
        if type(data) is not bytes:
            data = _writable_bytes(data)
        if not data:
            return
        tls.bytes_out += len(data)
        if tls._pending:
            tls._pending.append(bytes(data))
        else:
            tls._encrypt(data)
        # What _update_writing_paused decides, without its calls when nothing can change.
        if tls._writing_paused or tls._pending or tls.transport.get_write_buffer_size() > tls._limits.high:
            tls._update_writing_paused()

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        """Write each buffer of ``list_of_data`` in order."""
        self.write(b"".join(list_of_data))

    def _write_refused(self) -> None:
        tls = self._tls
        if tls.state == _HANDSHAKING:
            raise RuntimeError("the TLS handshake is not complete yet")
        if tls._eof_sent and not tls._closing:
            raise RuntimeError("cannot write after write_eof()")
        if tls._closed_by_call:
            raise RuntimeError("cannot write to a transport that was closed with close() or abort()")
        logger.debug("%r: write after the connection was lost; dropped", self)

    def write_eof(self) -> None:
        """Send ``close_notify`` after what is buffered, then shut the write side below; keep reading."""
        tls = self._tls
        if tls._eof_sent or tls._closing or tls.state != _WRAPPED:
            return
        if tls._eof_in:
            self.close()  # both directions are done once this is flushed
            return
        if tls._pending:
            tls._eof_sent = True
            tls._eof_pending = True
            return
        tls._send_close_notify()
        tls.transport.write_eof()

    def can_write_eof(self) -> bool:
        """True: `write_eof` sends ``close_notify`` and the connection stays readable."""
        return True

    def get_write_buffer_size(self) -> int:
        """Plaintext not yet encrypted plus ciphertext not yet handed to the kernel."""
        tls = self._tls
        if tls.transport is None:
            return 0
        return tls._buffered()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        """The ``(low, high)`` water marks."""
        limits = self._tls._limits
        return limits.low, limits.high

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Set the water marks for ``pause_writing``/``resume_writing`` (asyncio's defaults)."""
        tls = self._tls
        tls._set_water_marks(high, low)  # checks them; nothing changes if they are wrong
        limits = tls._limits
        tls.transport.set_write_buffer_limits(limits.high, limits.low)  # its signals come back to us
        tls._update_writing_paused()

    # ------------------------------------------------------------- closing

    def close(self) -> None:
        """Stop reading, flush, send ``close_notify``, close below; ``connection_lost(None)`` follows.  Idempotent."""
        tls = self._tls
        if tls._closing or tls.state == _CLOSED:
            return
        tls._closing = True
        tls._closed_by_call = True
        if tls.state != _WRAPPED:
            tls.transport.close()
            return
        if tls._pending:
            tls._close_pending = True
            return
        tls._finish_close()

    def abort(self) -> None:
        """Close at once, dropping what is buffered; ``connection_lost(None)`` follows."""
        tls = self._tls
        if tls.state != _CLOSED:
            tls._closed_by_call = True
        tls._closing = True
        tls._pending = []
        tls.transport.abort()

    def is_closing(self) -> bool:
        """True once the transport is closing or closed."""
        tls = self._tls
        return tls._closing or tls.state == _CLOSED or tls.transport.is_closing()

    # ------------------------------------------------------------- reading

    def pause_reading(self) -> None:
        """Stop calling ``data_received`` until `resume_reading`."""
        tls = self._tls
        tls._reading = False
        tls.transport.pause_reading()

    def resume_reading(self) -> None:
        """Call ``data_received`` again (what the TLS engine holds already comes in a later callback)."""
        tls = self._tls
        tls._reading = True
        tls.transport.resume_reading()
        tls._schedule_read()

    def is_reading(self) -> bool:
        """True while data is delivered to the protocol."""
        tls = self._tls
        return tls._reading and not tls._eof_in and not self.is_closing()

    # ------------------------------------------------------------- the rest

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``'ssl_object'``, ``'peercert'``, ``'cipher'``, ``'sslcontext'``; else the transport below's answer."""
        tls = self._tls
        sslobj = tls.sslobj
        if name == "ssl_object":
            return sslobj
        if name == "sslcontext":
            return tls.context
        if name == "peercert":
            return sslobj.getpeercert() if sslobj is not None and tls.state == _WRAPPED else default
        if name == "cipher":
            return sslobj.cipher() if sslobj is not None else default
        return tls.transport.get_extra_info(name, default)

    def get_protocol(self) -> Any:
        """The application protocol."""
        return self._tls.app

    def set_protocol(self, protocol: Any) -> None:
        """Deliver to ``protocol`` from now on."""
        self._tls.app = protocol

    def set_timeout(self, seconds: float | None) -> None:
        """Close the connection ``seconds`` from now whatever it does (on the transport below)."""
        self._tls.transport.set_timeout(seconds)

    def set_idle_timeout(self, seconds: float | None) -> None:
        """Close the connection after ``seconds`` without progress either way (on the transport below)."""
        self._tls.transport.set_idle_timeout(seconds)
