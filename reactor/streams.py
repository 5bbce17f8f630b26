"""Stream protocols on the reactor: `Reactor.create_server`, `Reactor.create_connection`, `Protocol`, `LineProtocol`.

The asyncio protocol/transport model, on the reactor's transport layer, so a
line-based chat over TCP, a proxy, or any protocol over a long-lived TCP or
Unix connection is a small class::

    class Echo(LineProtocol):
        def line_received(self, line: bytes) -> None:
            self.transport.write(b"echo: " + line + b"\\r\\n")

    server = reactor.create_server(Echo, "localhost:0", idle_timeout=60)

A protocol gets ``connection_made(transport)``, ``data_received(data)``,
``eof_received()`` (return True to keep writing after the peer's EOF),
``connection_lost(exc)`` (exactly once; ``exc`` is None after a normal close,
the error or `TimeoutError` otherwise), and ``pause_writing()`` /
``resume_writing()`` when its output buffer crosses the water marks.  All of
them run on the reactor's thread.  An exception in one is reported to the
reactor's exception handler and closes that connection only.

The transport is a `reactor.transport.stream.StreamTransport`: ``write``,
``writelines``, ``write_eof``, ``can_write_eof``, ``close`` (flush, then
close), ``abort``, ``pause_reading``, ``resume_reading``, ``is_reading``,
``get_write_buffer_size``, ``set_write_buffer_limits``, ``get_extra_info``,
``is_closing``.  Every open connection is a row of `Reactor.connections`.
"""

from __future__ import annotations

import functools
import logging
import socket
import warnings
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from .addresses import AddressLike as AddressLike
from .addresses import address_text, parse_address
from .core import Reactor
from .framing import LineParser, MessageTooLarge
from .futures import Future
from .transport.base import HANDSHAKE_TIMEOUT
from .transport.connect import open_connection
from .transport.listener import ACCEPT_BACKOFF, Listener, ServerStatistics
from .transport.stream import MAX_READ, StreamTransport, TransportLimits

if TYPE_CHECKING:
    import ssl as _ssl

    # Named here for Reactor's annotations: the core imports only this module.
    from .transport.tls import TLSTransport as TLSTransport


__all__ = [
    "Protocol",
    "LineProtocol",
    "Server",
    "StreamTransport",
    "create_server",
    "create_connection",
]

logger = logging.getLogger("reactor.streams")

P = TypeVar("P")


class Protocol:
    """Base class for stream protocols: every callback is a no-op until overridden.

    ``self.transport`` is set by `connection_made`.
    """

    transport: StreamTransport

    def connection_made(self, transport: StreamTransport) -> None:
        """The connection is open; keep ``transport`` to write to it."""
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        """Bytes arrived (any amount; message boundaries are not kept)."""

    def eof_received(self) -> bool | None:
        """The peer closed its write side; return True to keep writing, else the transport closes."""
        return None

    def connection_lost(self, exc: BaseException | None) -> None:
        """The connection is closed; ``exc`` is None after a normal close."""

    def pause_writing(self) -> None:
        """The output buffer went above the high water mark: stop writing for now."""

    def resume_writing(self) -> None:
        """The output buffer drained to the low water mark: writing may go on."""


class LineProtocol(Protocol):
    """A protocol that receives lines: override `line_received`.

    Lines end with ``terminator`` (``b"\\r\\n"`` by default), which is removed.
    A line longer than ``max_line_length`` bytes calls `line_too_long`, which
    by default logs and aborts the connection; a last line without a
    terminator at EOF is delivered too.  Parsing is the sans-IO
    `reactor.framing.LineParser`, so a line split over many reads costs no
    rescanning.
    """

    #: The longest line accepted (bytes, without the terminator).
    max_line_length = 64 * 1024
    #: What ends a line.
    terminator = b"\r\n"

    def connection_made(self, transport: StreamTransport) -> None:
        """Keep the transport and start a parser."""
        self.transport = transport
        self._parser = LineParser(self.max_line_length, self.terminator)

    def data_received(self, data: bytes) -> None:
        """Split ``data`` into lines and call `line_received` for each."""
        try:
            lines = self._parser.feed(data)
        except MessageTooLarge as exc:
            for line in exc.messages:
                self.line_received(line)
                if self.transport.is_closing():
                    return
            self.line_too_long(exc)
            return
        if len(lines) == 1:  # the common case: one line per read
            self.line_received(lines[0])
            return
        for line in lines:
            self.line_received(line)
            if self.transport.is_closing():
                return

    def eof_received(self) -> bool | None:
        """Deliver a last unterminated line, if any; then let the transport close."""
        try:
            last = self._parser.feed_eof()
        except MessageTooLarge as exc:
            self.line_too_long(exc)
            return None
        if last:
            self.line_received(last)
        return None

    def line_received(self, line: bytes) -> None:
        """One line arrived, without its terminator.  Override this."""
        raise NotImplementedError(f"{type(self).__name__} must implement line_received()")

    def line_too_long(self, exc: MessageTooLarge) -> None:
        """A line exceeded ``max_line_length``: log it and abort the connection.  May be overridden."""
        logger.info(
            "line from %s longer than %d bytes; closing",
            self.transport.get_extra_info("peername"),
            self.max_line_length,
        )
        self.transport.abort()

    def send_line(self, line: bytes | str) -> None:
        """Write ``line`` and the terminator (a ``str`` is encoded as UTF-8)."""
        if isinstance(line, str):
            line = line.encode("utf-8")
        self.transport.write(line + self.terminator)


class Server:
    """A listening stream server made by `Reactor.create_server`.

    Attributes: ``address`` (``'host:port'`` or ``'unix:/path'``, with the
    real port when 0 was asked), ``sockaddr`` (the bound socket address) and
    ``reactor``.  Methods: `close`, `drain`, `connections`, `statistics`,
    `is_serving`; a context manager that closes it.
    """

    def __init__(self, listener: Listener) -> None:
        self._listener = listener
        self.reactor = listener.reactor
        self.address: str = listener.address
        self.sockaddr: Any = listener.sockaddr

    def __repr__(self) -> str:
        return f"<Server {self.address} active={self._listener.stats.active}>"

    @property
    def stats(self) -> ServerStatistics:
        """Deprecated: the live counters object; use `statistics`, which returns them as a dict."""
        warnings.warn("Server.stats is deprecated; use statistics(), a dict of the same counters",
                      DeprecationWarning, stacklevel=2)
        return self._listener.stats

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening socket, as a tuple (asyncio's ``Server.sockets``)."""
        return (self._listener.socket,)

    def statistics(self) -> dict[str, int]:
        """A snapshot of the counters, a plain dict (``docs/streams.md`` describes every key).

        Keys: accepted, active, completed, errors, timeouts, rejected,
        accept_pauses, waited, exhaustions, refused.
        """
        return self._listener.statistics()

    def connections(self) -> list[StreamTransport]:
        """The open connections of this server (rows of `Reactor.connections`)."""
        return self._listener.connections()

    def is_serving(self) -> bool:
        """True until `close` or `drain`."""
        return self._listener.is_serving()

    def drain(self) -> Future[None]:
        """Stop accepting; a future that completes when every connection has closed."""
        return self._listener.drain()

    def close(self, timeout: float = 5.0) -> None:
        """Stop listening and abort every open connection of this server; idempotent.

        Safe from any thread: from another thread while the reactor runs, the
        reactor's thread does the closing and this call waits for it (at most
        ``timeout`` seconds).
        """
        from .transport.threads import run_in_reactor_thread

        run_in_reactor_thread(self.reactor, self._listener.close, timeout)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _create_server(
    reactor: Reactor,
    protocol_factory: Callable[[], Any],
    address: AddressLike,
    *,
    backlog: int = socket.SOMAXCONN,
    max_connections: int = 1024,
    idle_timeout: float | None = None,
    timeout: float | None = None,
    max_read: int = MAX_READ,
    write_buffer_high: int = 64 * 1024,
    write_buffer_low: int | None = None,
    reuse_port: bool = False,
    accept_backoff: float = ACCEPT_BACKOFF,
    ssl: _ssl.SSLContext | None = None,
    ssl_handshake_timeout: float | None = HANDSHAKE_TIMEOUT,
    proxy_protocol: bool = False,
    trusted_proxies: Iterable[str] = ("127.0.0.1", "::1"),
) -> Server:
    """Listen on ``address`` and serve each connection with a new ``protocol_factory()``.

    ``address`` takes every form `RequestServer` accepts: ``'host:port'``
    (port 0: the OS chooses; see ``Server.address``), ``'[::1]:port'`` and
    ``'unix:/path'``, or a ``(host, port)`` tuple as asyncio and the socket
    module spell it.  The server is listening when this returns.

    ``idle_timeout``: close a connection after that many seconds without
    progress either way.  ``timeout``: close it that many seconds after it was
    accepted, whatever it does.  ``max_connections``: at the limit the server
    stops accepting until one closes (the kernel backlog holds the rest).
    ``write_buffer_high``/``write_buffer_low``: the water marks for
    ``pause_writing``/``resume_writing``.

    ``ssl``: serve TLS with that (server-side) context.  Each protocol then
    gets a `TLSTransport` in ``connection_made``, once the handshake is
    complete; a client that has not completed it within
    ``ssl_handshake_timeout`` seconds is closed, and a failed handshake closes
    only that connection (logged once at INFO).  `Server.connections` lists
    the rows below the TLS layer.

    ``proxy_protocol``: behind a load balancer, read a PROXY protocol header
    (version 1 or 2) first on every connection, and give the protocol a
    transport whose ``get_extra_info('peername')`` is the client it names
    (``'proxy'``: the parsed header).  Only peers in ``trusted_proxies``
    (addresses, networks such as ``'10.0.0.0/8'``, ``'unix'``; loopback by
    default) may send one; connections from any other peer are refused.  See
    `reactor.transport.proxy` and ``docs/deploy.md``.
    """
    parsed = parse_address(address_text(address))
    limits = TransportLimits(max_read, write_buffer_high, write_buffer_low, idle_timeout, timeout)
    factory = protocol_factory
    if ssl is not None:
        from .transport.tls import TLSProtocol  # imports ssl: only when TLS is asked for

        context = ssl
        TLSProtocol(context, None, server_side=True, handshake_timeout=ssl_handshake_timeout)  # check the arguments now

        def factory() -> TLSProtocol:
            return TLSProtocol(context, protocol_factory(), server_side=True, handshake_timeout=ssl_handshake_timeout)

    if proxy_protocol:
        from .transport.proxy import proxy_protocol_factory

        factory = proxy_protocol_factory(factory, trusted_proxies)  # below TLS: the header comes first
    listener = Listener(
        reactor,
        parsed,
        factory,
        backlog=backlog,
        max_connections=max_connections,
        accept_backoff=accept_backoff,
        reuse_port=reuse_port,
        limits=limits,
        log=logger,
        name="streams",
    )
    return Server(listener)


def _create_connection(
    reactor: Reactor,
    protocol_factory: Callable[[], P],
    address: AddressLike,
    *,
    timeout: float | None = None,
    idle_timeout: float | None = None,
    max_read: int = MAX_READ,
    write_buffer_high: int = 64 * 1024,
    write_buffer_low: int | None = None,
    ssl: _ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = HANDSHAKE_TIMEOUT,
) -> Future[tuple[Any, P]]:
    """Connect to ``address``; a `Future` of ``(transport, protocol)``.

    ``timeout`` bounds the connect; the future fails with `TimeoutError`, or
    with the connect's `OSError` (`ConnectionRefusedError`, ...).
    ``idle_timeout`` closes the connection after that many seconds without
    progress.  ``write_buffer_high``/``write_buffer_low`` are the water marks
    for ``pause_writing``/``resume_writing``.  ``address`` is an address
    string or a ``(host, port)`` tuple; a bad one raises `ValueError` here.

    ``ssl``: speak TLS with that (client-side) context.  The future completes
    once the handshake is complete, with a `TLSTransport`; it fails with the
    handshake's `ssl.SSLError` (an untrusted certificate, a wrong name), or
    `TimeoutError` after ``ssl_handshake_timeout`` seconds.
    ``server_hostname`` is the name the certificate must carry (and the SNI
    name sent); by default the host of ``address`` as written
    (``'localhost:8000'`` checks ``localhost``).  A Unix address has no host:
    pass ``server_hostname=``, or use a context with ``check_hostname=False``.
    """
    address = address_text(address)
    parsed = parse_address(address)
    limits = TransportLimits(max_read, write_buffer_high, write_buffer_low, idle_timeout)
    if ssl is None:
        return open_connection(reactor, parsed, protocol_factory, timeout=timeout, limits=limits)
    from .transport.tls import TLSProtocol, default_server_hostname  # imports ssl: only when TLS is asked for

    context = ssl
    hostname = server_hostname if server_hostname is not None else default_server_hostname(address, parsed.family)
    TLSProtocol(context, None, server_side=False, server_hostname=hostname, handshake_timeout=ssl_handshake_timeout)
    waiter: Future[tuple[Any, Any]] = reactor.create_future()
    layers: list[TLSProtocol] = []

    def factory() -> TLSProtocol:
        tls = TLSProtocol(
            context,
            protocol_factory(),
            server_side=False,
            server_hostname=hostname,
            handshake_timeout=ssl_handshake_timeout,
            waiter=waiter,
        )
        layers.append(tls)
        return tls

    connecting = open_connection(reactor, parsed, factory, timeout=timeout, limits=limits)

    def connected(done: Future[Any]) -> None:
        if not done.cancelled() and done.exception() is not None and not waiter.done():
            waiter.set_exception(done.exception())  # type: ignore[arg-type]

    def cancelled(done: Future[Any]) -> None:
        if done.cancelled():
            if layers and layers[0].transport is not None:
                layers[0].transport.abort()
            else:
                connecting.cancel()

    connecting.add_done_callback(connected)
    waiter.add_done_callback(cancelled)
    return waiter


# ------------------------------------------------------------ the deprecated spelling

_Params = ParamSpec("_Params")
_Result = TypeVar("_Result")


def _deprecated_spelling(function: Callable[_Params, _Result], method: str) -> Callable[_Params, _Result]:
    """``function`` as a module function that warns it is deprecated in favour of ``Reactor.<method>``."""

    @functools.wraps(function)
    def deprecated(*args: _Params.args, **kwargs: _Params.kwargs) -> _Result:
        warnings.warn(
            f"{method}(reactor, ...) is deprecated; call the reactor's method: reactor.{method}(...)",
            DeprecationWarning,
            stacklevel=2,
        )
        return function(*args, **kwargs)

    deprecated.__name__ = deprecated.__qualname__ = method
    deprecated.__doc__ = (
        f"Deprecated: use `Reactor.{method}` (the same, as a method, as in asyncio).\n\n"
        f"``{method}(reactor, protocol_factory, address, ...)`` is "
        f"``reactor.{method}(protocol_factory, address, ...)``; it warns with `DeprecationWarning`."
    )
    return deprecated


#: Deprecated: `Reactor.create_server`.
create_server = _deprecated_spelling(_create_server, "create_server")
#: Deprecated: `Reactor.create_connection`.
create_connection = _deprecated_spelling(_create_connection, "create_connection")
