"""The client side of the request/reply service: `request` and `do_request`.

The yoton wire format, seen from the client: connect; send the UTF-8 request
and ``\\r\\n``; ``shutdown(SHUT_WR)``; read until ``\\r\\n`` or EOF; close.

`request` is the non-blocking form.  It returns a reactor `Future` at once;
the exchange is a `ReplyProtocol` on the transport layer's `~reactor.transport.connect.open_connection`,
so the outgoing connection is a row in `Reactor.connections` (``CONNECTING``,
``OPEN``, then ``WRITE_CLOSED`` once the request is sent and half-closed;
over TLS ``HANDSHAKING`` before ``OPEN`` and ``SHUTTING_DOWN`` while the TLS
close finishes) until it closes.  A timeout covers the whole exchange,
connect included: it closes the row and fails the future with `TimeoutError`.  It is also
`Reactor.request`.

`do_request` is yoton's blocking call.  It runs the same exchange on a
private reactor that lives for the call, so it works from any thread, with or
without a reactor running elsewhere.  It starts no thread, except a worker
of that reactor's pool to look up a host name (an IP address, ``localhost``
or a Unix path needs none), so that ``timeout`` covers the lookup too.  It
returns None when the timeout passes, as yoton does.

A host name is resolved off the reactor's thread (`Reactor.getaddrinfo`),
and the timeout of `request` covers the lookup: a resolver that does not
answer fails the request on time and stalls nothing else.

Every way a request can fail is a `RequestError` (a `RuntimeError`, as
yoton raised), which also keeps the class it had before: a refused
connection is `RequestRefused` (a `ConnectionRefusedError`), a timeout
`RequestTimeout` (a `TimeoutError`), a reply over the limit `ReplyTooLarge`
(a `ValueError`), a reply that is not UTF-8 `ReplyNotUTF8` (a
`UnicodeDecodeError`), a host that does not resolve `RequestNotResolved` (a
``socket.gaierror``), a failed TLS handshake a `RequestTLSError` that is
also the `ssl.SSLError` subclass the handshake raised, a reactor closed under
the request `RequestFailed`, and any other network error a `RequestError`
that is also the `OSError` subclass it was (the original is its
``__cause__``).  A server that closes without replying is `RequestFailed`,
never an empty reply.  A cancelled request is `CancelledError`, as any
cancelled future.  Misuse (a bad address, a request that is not a str, a
reactor closed before the call) raises at the call site.

One meaning of ``timeout`` for `request`, `Reactor.request`, `do_request` and
``python -m reactor request --timeout``: yoton's.  Its ``do_request`` waits
"if larger than 0", so a number larger than 0 is a timeout in seconds, and
``0``, ``-1`` (yoton's default) and ``None`` mean no timeout.  The other
reading, 0 as "do not wait at all", has no use for a network exchange, which
can never be answered without waiting; and making the non-blocking form
reject 0 while the blocking form accepts it was a trap.
"""

from __future__ import annotations

import errno
import logging
import socket
from typing import TYPE_CHECKING, Any

from ._timeouts import yoton_timeout
from .addresses import Address, AddressLike, address_text, parse_address
from .core import Reactor, ReactorClosedError
from .framing import LineParser, MessageTooLarge
from .futures import Future
from .transport.base import HANDSHAKE_TIMEOUT
from .transport.connect import open_connection
from .transport.stream import StreamTransport, TransportLimits

if TYPE_CHECKING:
    import ssl as _ssl

    from .transport.tls import TLSProtocol

__all__ = [
    "request",
    "do_request",
    "RequestError",
    "RequestRefused",
    "RequestFailed",
    "RequestReset",
    "ReplyTooLarge",
    "RequestTimeout",
    "ReplyNotUTF8",
    "RequestNotResolved",
    "RequestTLSError",
    "ReplyProtocol",
    "DEFAULT_MAX_REPLY_SIZE",
]

logger = logging.getLogger("reactor.client")

#: The largest reply a client accepts by default (bytes, without ``\r\n``).
DEFAULT_MAX_REPLY_SIZE = 64 * 1024 * 1024

_CRLF = b"\r\n"


class RequestError(RuntimeError):
    """A request failed: the base of every client-side request error (a `RuntimeError`, as in yoton).

    Raised as itself for a call on a reactor that is already closed; every
    failure of an exchange is one of its subclasses.
    """


class RequestRefused(ConnectionRefusedError, RequestError):
    """Nothing listens at the address (a `ConnectionRefusedError` and, as in yoton, a `RuntimeError`)."""


class RequestFailed(ConnectionError, RequestError):
    """The server closed the connection without replying.

    A reply, even an empty one, always ends in ``\\r\\n``; a connection that
    closes before a single byte arrived is the server refusing the request
    (too large, not UTF-8) or its handler failing.  This is never reported as
    an empty reply.
    """


class RequestReset(ConnectionResetError, RequestFailed):
    """The server reset the connection before a single byte of reply arrived.

    A `RequestFailed` (the server closed without replying: a server that
    closes with the request unread makes its kernel send a reset) and a
    `ConnectionResetError`, the OS error underneath.
    """


class ReplyTooLarge(RequestError, MessageTooLarge):
    """The reply is longer than the client's ``max_reply_size``; the connection was closed.

    A `RequestError` (so ``except RequestError`` catches it with the refused
    and failed requests) and still a `reactor.framing.MessageTooLarge` (a
    `ValueError`), which is what it was before: ``max_size`` is the limit,
    ``size`` the reply bytes seen when the client gave up.
    """

    def __init__(self, address: str, max_size: int, size: int) -> None:
        MessageTooLarge.__init__(self, max_size, size)
        self.args = (f"the reply from {address} exceeds max_reply_size={max_size} bytes ({size} bytes received)",)


class RequestTimeout(TimeoutError, RequestError):
    """No reply within the request's ``timeout`` (connect, TLS handshake and name lookup included).

    A `TimeoutError`, as before; `do_request` returns None for it, as yoton does.
    """


class ReplyNotUTF8(UnicodeDecodeError, RequestError):
    """The reply is not valid UTF-8; the connection was closed.

    A `UnicodeDecodeError` (a `ValueError`), as before, with the same
    ``encoding``, ``object``, ``start``, ``end`` and ``reason``.
    """

    def __init__(self, address: str, exc: UnicodeDecodeError) -> None:
        super().__init__(exc.encoding, exc.object, exc.start, exc.end, exc.reason)
        self.address = address

    def __str__(self) -> str:
        return f"the reply from {self.address} is not UTF-8: {UnicodeDecodeError.__str__(self)}"


class RequestNotResolved(socket.gaierror, RequestError):
    """The host of the address does not resolve (a ``socket.gaierror``, as before; the lookup's error is the cause)."""


class RequestTLSError(RequestError):
    """The TLS handshake failed (an untrusted certificate, a name that does not match, no client certificate).

    An instance is also the `ssl.SSLError` subclass the handshake raised
    (``ssl.SSLCertVerificationError`` for a certificate), with its ``reason``,
    ``library`` and ``verify_message``, so ``except ssl.SSLError`` catches it
    as before; that original error is the ``__cause__``.  The class is mixed
    in when the error happens, since ``ssl`` is imported only when TLS is used.
    """


#: The classes made by `_mixed_in`: (the original class, the RequestError class) -> both.
_MIXED: dict[tuple[type[BaseException], type[RequestError]], type[BaseException]] = {}


def _mixed_in(exc: BaseException, kind: type[RequestError]) -> BaseException:
    """``exc`` as an instance of both its own class and ``kind``, with ``exc`` as the cause.

    The class is named ``kind[original]`` (``RequestError[ConnectionResetError]``)
    and pickles.  Falls back to a plain ``kind`` when the original cannot be
    rebuilt from its ``args`` (an exception class with a constructor of its own).
    """
    if isinstance(exc, kind):
        return exc
    original = type(exc)
    try:
        err = _rebuild(original, kind, exc.args, getattr(exc, "__dict__", {}))
    except Exception:  # noqa: BLE001 - a class that cannot be rebuilt: say what it was instead
        err = kind(f"{original.__name__}: {exc}")
    err.__cause__ = exc
    return err


def _rebuild(
    original: type[BaseException], kind: type[RequestError], args: tuple[Any, ...], attributes: dict[str, Any]
) -> BaseException:
    """An instance of the class that is both ``original`` and ``kind`` (made once per pair)."""
    mixed = _MIXED.get((original, kind))
    if mixed is None:

        def reduce(self: BaseException) -> tuple[Any, ...]:
            return _rebuild, (original, kind, self.args, dict(self.__dict__))

        name = f"{kind.__name__}[{original.__name__}]"
        namespace = {"__module__": __name__, "__qualname__": name, "__doc__": kind.__doc__, "__reduce__": reduce}
        mixed = _MIXED[(original, kind)] = type(name, (original, kind), namespace)
    err = mixed(*args)
    err.__dict__.update(attributes)
    return err


#: What a connection that the server closed without reading says on our side:
#: a reset, a write into a closed pipe, or a half-close of a socket already gone.
_RESET_ERRNOS = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN, errno.ECONNABORTED})


def _refused(address: Address, exc: OSError | None = None) -> RequestRefused:
    if isinstance(exc, FileNotFoundError) and isinstance(address.sockaddr, str):  # AF_UNIX
        # Not "refused": there is no socket file at all (its message says so).
        err = RequestRefused(errno.ENOENT, exc.strerror or f"no Unix socket file at {address.sockaddr!r}")
    else:
        err = RequestRefused(errno.ECONNREFUSED, f"connection refused by {address.text}: no server is listening there")
    if exc is not None:
        err.__cause__ = exc
    return err


def _failed_without_reply(address: str, exc: OSError) -> RequestReset:
    err = RequestReset(
        errno.ECONNRESET, f"{address} closed the connection without replying ({exc.strerror or exc})"
    )
    err.__cause__ = exc
    return err


def _reactor_closed(address: str, exc: BaseException) -> BaseException:
    """The error a request fails with when its reactor is closed under it: a `RequestFailed`."""
    if not isinstance(exc, ReactorClosedError):
        return exc
    err = RequestFailed(f"the reactor was closed before {address} replied")
    err.__cause__ = exc
    return err


def _request_error(
    address: str, exc: BaseException, timeout: float | None, received: bool, parsed: Address | None = None
) -> BaseException:
    """What a request to ``address`` fails with for ``exc``: always a `RequestError`, but for a cancel.

    ``received`` says whether any byte of the reply arrived (a reset before
    that is the server refusing the request unread: `RequestReset`).
    """
    if isinstance(exc, RequestError) or not isinstance(exc, Exception):
        return exc  # CancelledError (a BaseException) stays itself; so do KeyboardInterrupt and SystemExit
    if isinstance(exc, ReactorClosedError):
        return _reactor_closed(address, exc)
    if isinstance(exc, TimeoutError):
        err: BaseException = RequestTimeout(f"no reply from {address} within {timeout} s")
        if timeout is None:  # the TLS handshake's own deadline
            err = RequestTimeout(f"{address}: {exc}")
        err.__cause__ = exc
        return err
    if isinstance(exc, (ConnectionRefusedError, FileNotFoundError)) and parsed is not None:
        return _refused(parsed, exc)
    if isinstance(exc, socket.gaierror):
        err = RequestNotResolved(exc.errno, exc.strerror or str(exc))
        err.__cause__ = exc
        return err
    if isinstance(exc, OSError) and exc.errno in _RESET_ERRNOS and not received:
        return _failed_without_reply(address, exc)
    if _is_tls_error(exc):
        return _mixed_in(exc, RequestTLSError)
    if isinstance(exc, UnicodeDecodeError):
        err = ReplyNotUTF8(address, exc)
        err.__cause__ = exc
        return err
    return _mixed_in(exc, RequestError)


def _is_tls_error(exc: BaseException) -> bool:
    """True for an ``ssl.SSLError``; ``ssl`` is only looked at if something imported it (TLS was used)."""
    import sys

    ssl_module = sys.modules.get("ssl")
    return ssl_module is not None and isinstance(exc, ssl_module.SSLError)


def _encode(text: str) -> bytes:
    if not isinstance(text, str):
        raise TypeError(f"a request must be a str, got {type(text).__name__}")
    return text.encode("utf-8") + _CRLF


class ReplyProtocol:
    """The client side of one exchange: send the request, half-close, read one reply.

    Sans-socket: it talks only to its transport, so tests drive it with an
    in-memory transport.  The reply (or the failure) goes to ``future``.
    """

    __slots__ = ("future", "payload", "parser", "transport", "address", "timeout", "half_close", "target")

    def __init__(
        self,
        future: Future[str],
        payload: bytes,
        max_reply_size: int,
        address: str,
        timeout: float | None,
        half_close: bool = True,
        target: Address | None = None,
    ) -> None:
        self.target = target
        self.half_close = half_close
        self.future = future
        self.payload = payload
        self.parser = LineParser(max_reply_size)
        self.transport: Any = None
        self.address = address
        self.timeout = timeout

    def connection_made(self, transport: Any) -> None:
        """Send the request and half-close (the yoton client does; over TLS it does not, see `request`)."""
        self.transport = transport
        transport.write(self.payload)
        if self.half_close:
            transport.write_eof()

    def data_received(self, data: bytes) -> None:
        """Collect the reply up to its terminator."""
        try:
            messages = self.parser.feed(data)
        except MessageTooLarge as exc:
            self._fail(ReplyTooLarge(self.address, exc.max_size, exc.size))
            return
        if messages:
            self._finish(messages[0])

    def eof_received(self) -> None:
        """The server closed: what arrived is the reply; nothing at all is `RequestFailed`."""
        received = self.transport.bytes_in if self.transport is not None else 0
        try:
            reply = self.parser.feed_eof()
        except MessageTooLarge as exc:
            self._fail(ReplyTooLarge(self.address, exc.max_size, exc.size))
            return
        if reply is None and not received:
            self._fail(RequestFailed(f"{self.address} closed the connection without replying"))
            return
        self._finish(reply or b"")

    def connection_lost(self, exc: BaseException | None) -> None:
        """A connection lost before the reply fails the future."""
        if self.future.done():
            return
        if exc is None:
            exc = RequestFailed(f"the connection to {self.address} closed before the reply")
        error = _request_error(self.address, exc, self.timeout, self._received_any(), self.target)
        self.future.set_exception(error)

    def _received_any(self) -> bool:
        transport = self.transport
        return transport is not None and bool(transport.bytes_in)

    def pause_writing(self) -> None:
        """The request is written once: nothing to pause."""

    def resume_writing(self) -> None:
        """See `pause_writing`."""

    def _finish(self, reply: bytes) -> None:
        try:
            text = reply.decode("utf-8")
        except UnicodeDecodeError as exc:
            self._fail(_request_error(self.address, exc, self.timeout, True))
            return
        self.transport.close()
        if not self.future.done():
            self.future.set_result(text)

    def _fail(self, exc: BaseException) -> None:
        self.transport.abort()
        if not self.future.done():
            self.future.set_exception(exc)


def request(
    reactor: Reactor,
    address: AddressLike,
    request: str,
    timeout: float | None = None,
    *,
    max_reply_size: int = DEFAULT_MAX_REPLY_SIZE,
    ssl: _ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = HANDSHAKE_TIMEOUT,
) -> Future[str]:
    """Send ``request`` to the server at ``address``; return a `Future` of the reply.

    Non-blocking: connect, send, half-close and read all happen in reactor
    callbacks.  The future fails with a `RequestError` whatever goes wrong:
    `RequestTimeout` (a `TimeoutError`) after ``timeout`` seconds,
    `RequestRefused` when nothing listens, `RequestFailed` when the server
    closes without replying (it refused the request or its handler failed)
    or the reactor is closed first, `ReplyTooLarge` when the reply is longer
    than ``max_reply_size``, `ReplyNotUTF8` for a reply that is not UTF-8,
    `RequestNotResolved` (a ``socket.gaierror``) for a host that does not
    resolve, `RequestTLSError` for a failed handshake, and for any other
    network failure a `RequestError` that is also its `OSError`.  A
    cancelled future is cancelled (`CancelledError`).
    A host name is looked up off the reactor's thread (`Reactor.getaddrinfo`),
    within ``timeout``; IP literals need no lookup.
    Cancelling the future closes the connection.  ``address`` (a string, or
    a ``(host, port)`` tuple) is parsed at once: a bad one raises
    `ValueError` here.

    ``timeout`` means what it means for `do_request` and in yoton: a number
    of seconds if it is larger than 0; ``None``, ``0`` or a negative number
    means no timeout (the exchange may then wait for ever on a server that
    never answers, unless the future is cancelled).  This is the package's
    one exception to "None means no timeout, a positive number is seconds,
    anything else raises" (``docs/design.md``); ``nan`` raises `ValueError`
    here too.

    ``ssl``: speak TLS with that client-side `ssl.SSLContext`;
    ``server_hostname`` (by default the host of ``address`` as written) must
    match the server's certificate.  A failed handshake fails the future with
    its `ssl.SSLError`.  Over TLS the client does not half-close after the
    request (the server answers at the request's ``\\r\\n``); see `TLSProtocol`.
    """
    address = address_text(address)
    parsed = parse_address(address)
    payload = _encode(request)
    tls = _tls_options(address, parsed, ssl, server_hostname, ssl_handshake_timeout)
    if reactor.is_closed():
        raise RequestError(f"cannot send a request to {parsed.text}: this Reactor is closed; create a new one")
    return _exchange(reactor, parsed, payload, _seconds(timeout), max_reply_size, tls)


def _seconds(timeout: float | None) -> float | None:
    """yoton's reading of a timeout: seconds when larger than 0, else (0, -1, None) no timeout; nan raises."""
    return yoton_timeout(timeout)


_TLSOptions = tuple["_ssl.SSLContext", "str | None", "float | None"]


def _tls_options(
    address: str,
    parsed: Address,
    context: _ssl.SSLContext | None,
    server_hostname: str | None,
    handshake_timeout: float | None,
) -> _TLSOptions | None:
    if context is None:
        return None
    from .transport.tls import TLSProtocol, default_server_hostname  # imports ssl: only when TLS is asked for

    hostname = server_hostname if server_hostname is not None else default_server_hostname(address, parsed.family)
    TLSProtocol(context, None, server_side=False, server_hostname=hostname, handshake_timeout=handshake_timeout)
    return context, hostname, handshake_timeout


def _exchange(
    reactor: Reactor,
    parsed: Address,
    payload: bytes,
    timeout: float | None,
    max_reply_size: int,
    tls: _TLSOptions | None = None,
) -> Future[str]:
    future: Future[str] = reactor.create_future()
    protocol = ReplyProtocol(future, payload, max_reply_size, parsed.text, timeout, tls is None, parsed)
    factory: Any = lambda: protocol  # noqa: E731
    layer: list[TLSProtocol] = []
    if tls is not None:
        from .transport.tls import TLSProtocol

        context, hostname, handshake_timeout = tls
        handshake: Future[Any] = reactor.create_future()

        def factory() -> TLSProtocol:
            layer.append(
                TLSProtocol(
                    context,
                    protocol,
                    server_side=False,
                    server_hostname=hostname,
                    handshake_timeout=handshake_timeout,
                    waiter=handshake,
                )
            )
            return layer[0]

        def handshake_done(done: Future[Any]) -> None:
            if future.done() or done.cancelled():
                return
            exc = done.exception()
            if exc is None:
                return
            whole = timeout if isinstance(exc, TimeoutError) and layer[0].transport.is_closing() else None
            future.set_exception(_request_error(parsed.text, exc, whole, protocol._received_any(), parsed))

        handshake.add_done_callback(handshake_done)
    connecting = open_connection(reactor, parsed, factory, timeout=timeout, limits=TransportLimits(timeout=timeout))

    def connected(done: Future[tuple[StreamTransport, Any]]) -> None:
        if done.cancelled() or future.done():
            return
        exc = done.exception()
        if exc is None:
            return
        future.set_exception(_request_error(parsed.text, exc, timeout, False, parsed))

    def cancelled(done: Future[str]) -> None:
        # The caller may cancel the future: the connection goes with it.
        if done.cancelled():
            if protocol.transport is not None:
                protocol.transport.abort()
            elif layer and layer[0].transport is not None:
                layer[0].transport.abort()  # cancelled during the TLS handshake
            else:
                connecting.cancel()

    connecting.add_done_callback(connected)
    future.add_done_callback(cancelled)
    return future


#: Seconds `do_request` lets a TLS connection finish its close after the reply, at most.
_CLOSE_WAIT = 1.0


def _finish_closing(reactor: Reactor, seconds: float) -> None:
    """Run ``reactor`` until its connections have closed, for at most ``seconds``.

    After the reply the exchange closes its connection.  In plain TCP that is
    done at once; over TLS the close sends ``close_notify`` and waits for the
    server's, which is already on its way.  Aborting instead would close
    with that unread, so the kernel would reset the connection and the server
    would see its own, successful, exchange fail.
    """
    deadline = reactor.time() + seconds
    while reactor.connections:
        left = deadline - reactor.time()
        if left <= 0:
            return
        reactor.run_once(left)


def do_request(
    address: AddressLike,
    request: str,
    timeout: float | None = -1,
    *,
    max_reply_size: int = DEFAULT_MAX_REPLY_SIZE,
    ssl: _ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = HANDSHAKE_TIMEOUT,
) -> str | None:
    """Send ``request`` to ``address`` and wait for the reply (yoton's blocking call).

    Returns the reply string, or None if ``timeout`` seconds pass first.  As
    in yoton, only a ``timeout`` larger than 0 is a timeout: ``-1`` (the
    default), ``0`` and ``None`` wait as long as the exchange takes; ``nan``
    raises `ValueError`.  Raises the `RequestError` that `request` fails
    with (`RequestRefused`, `RequestFailed` -- never an empty reply --,
    `ReplyTooLarge`, `ReplyNotUTF8`, `RequestNotResolved`,
    `RequestTLSError`, or the `OSError` of any other network failure as a
    `RequestError`); a timeout returns None instead.
    Runs on a private reactor for the length of the call; starts no thread
    but a worker to look up a host name (the timeout covers the lookup).
    ``ssl``/``server_hostname``: over TLS, as for `request`.
    """
    address = address_text(address)
    parsed = parse_address(address)  # a bad address raises before anything is created
    payload = _encode(request)
    tls = _tls_options(address, parsed, ssl, server_hostname, ssl_handshake_timeout)
    seconds = _seconds(timeout)
    with Reactor() as reactor:
        future = _exchange(reactor, parsed, payload, seconds, max_reply_size, tls)
        try:
            reply = reactor.run_until_complete(future)
        except TimeoutError:
            return None
        else:
            _finish_closing(reactor, _CLOSE_WAIT if seconds is None else min(_CLOSE_WAIT, seconds))
            return reply
        finally:
            for row in list(reactor.connections.values()):
                row.abort()
            reactor.run_once(0)
