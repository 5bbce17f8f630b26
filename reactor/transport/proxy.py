"""The PROXY protocol as a layer: `ProxyProtocolLayer` below the application, `ProxiedTransport` above it.

What can go wrong, and what we chose
------------------------------------
*Whom to believe.*  A PROXY header is a claim, with no proof: any client
that may send one can pretend to be anyone.  So the layer is opt-in, and it
reads a header only from a *trusted* peer (`TrustedProxies`: addresses and
networks such as ``10.0.0.0/8``, and ``"unix"`` for every Unix-socket
connection).  A connection from anyone else is, by default, *refused*
(aborted at once, logged at INFO, counted as ``rejected``): a server that
expects a balancer in front should not be reachable around it, and serving
such a client with its own address would hide the misconfiguration.  With
``untrusted="pass"`` such a connection is served instead, as if the layer
were not there (its own address, no header read), for a port that takes
both direct and balanced clients; a header it sends is then application data.

*A trusted proxy must send the header, complete, at once.*  Bytes that are
not a valid header, an EOF before it is complete, or no header within
``header_timeout`` seconds (10 s by default, like a TLS handshake) close the
connection, logged at INFO (DEBUG for a connection that closes without
sending a byte: that is a balancer's TCP health check).  The parser is the
sans-IO `reactor.proxyproto` with its bounds (107 bytes for version 1,
``max_v2_length`` for version 2).

*Where it sits.*  Like `TLSProtocol`, the layer is the protocol of the
transport below, and it hands the application a transport of its own.  The
application is made only once the header is parsed: its ``connection_made``
gets a `ProxiedTransport` whose ``get_extra_info('peername')`` (and
``peer``) is the client named by the header, ``'sockname'`` the address the
client connected to, ``'proxy'`` the parsed `ProxyHeader` and
``'proxy_peername'`` the balancer's own address.  Under TLS the order is
transport, PROXY, TLS, application: the balancer sends its header before
the client's handshake.  A ``LOCAL`` header (a balancer's own health check)
or one without an address keeps the connection's real addresses.

*Then it steps aside.*  Once the header is parsed the layer hands the
transport below to the application (``set_protocol``), so later reads,
EOF, flow control and ``connection_lost`` go straight to the application,
and writes go through a facade that forwards each call: nothing is
buffered, copied or re-parsed per request.  The plain path (the option off)
does not see this module at all.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterable
from typing import Any

from ..proxyproto import MAX_V2_LENGTH, ProxyHeader, ProxyProtocolError, parse_header
from .base import HANDSHAKE_TIMEOUT, _count_for_owner
from .errors import report_user_error

__all__ = ["ProxyProtocolLayer", "ProxiedTransport", "TrustedProxies", "proxy_protocol_factory", "UNTRUSTED_POLICIES"]

logger = logging.getLogger("reactor.transport")

#: What to do with a connection from a peer that is not a trusted proxy.
UNTRUSTED_POLICIES = ("refuse", "pass")

_CACHE_SIZE = 4096

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """The peers whose PROXY headers are believed: addresses, networks, and ``"unix"``.

    Each entry is an IP address (``"127.0.0.1"``, ``"::1"``), a network
    (``"10.0.0.0/8"``, ``"fd00::/8"``) or ``"unix"`` (every connection on a
    Unix socket).  An IPv4-mapped IPv6 peer (``::ffff:10.0.0.1``) is checked
    as its IPv4 address.  A bad entry raises `ValueError` here.
    """

    __slots__ = ("entries", "_networks", "_unix", "_cache")

    def __init__(self, entries: Iterable[str]) -> None:
        if isinstance(entries, str):
            entries = (entries,)
        self.entries: tuple[str, ...] = tuple(entries)
        if not self.entries:
            raise ValueError("trusted_proxies is empty: name the addresses of your load balancers")
        networks: list[_Network] = []
        unix = False
        for entry in self.entries:
            if entry == "unix":
                unix = True
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ValueError(
                    f"trusted proxy {entry!r} is not an IP address, a network (10.0.0.0/8) or 'unix'"
                ) from None
        self._networks = tuple(networks)
        self._unix = unix
        self._cache: dict[str, bool] = {}

    def __repr__(self) -> str:
        return f"TrustedProxies({list(self.entries)!r})"

    def is_trusted(self, peer: Any) -> bool:
        """True when ``peer`` (a ``getpeername()`` value) is one of the trusted proxies."""
        if not isinstance(peer, tuple):
            return self._unix  # a Unix socket's peer is a path, '' or bytes
        host = peer[0]
        cache = self._cache
        known = cache.get(host)
        if known is not None:
            return known
        try:
            address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(host.partition("%")[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        trusted = any(address in network for network in self._networks)
        if len(cache) >= _CACHE_SIZE:
            cache.clear()
        cache[host] = trusted
        return trusted


def _count_rejected(transport: Any) -> None:
    _count_for_owner(transport, "rejected")


class ProxyProtocolLayer:
    """The PROXY header reader as a protocol on a stream transport; the application sits above it.

    ``app_protocol`` receives a `ProxiedTransport` in ``connection_made``
    once the header is parsed (or the plain transport, for an untrusted peer
    with ``untrusted="pass"``).  See the module docstring for the policy.
    """

    __slots__ = (
        "app",
        "trusted",
        "header_timeout",
        "max_v2_length",
        "untrusted",
        "transport",
        "_buffer",
        "_timer",
        "_app_made",
    )

    def __init__(
        self,
        app_protocol: Any,
        trusted: TrustedProxies,
        *,
        header_timeout: float | None = HANDSHAKE_TIMEOUT,
        max_v2_length: int = MAX_V2_LENGTH,
        untrusted: str = "refuse",
    ) -> None:
        if untrusted not in UNTRUSTED_POLICIES:
            raise ValueError(f"untrusted must be 'refuse' or 'pass', got {untrusted!r}")
        if header_timeout is not None and not header_timeout > 0:
            raise ValueError(f"header_timeout must be positive or None, got {header_timeout!r}")
        self.app = app_protocol
        self.trusted = trusted
        self.header_timeout = header_timeout
        self.max_v2_length = max_v2_length
        self.untrusted = untrusted
        self.transport: Any = None
        #: What arrived of the header; None once the application has the connection.
        self._buffer: bytes | None = b""
        self._timer: Any = None
        self._app_made = False

    def __repr__(self) -> str:
        state = "reading header" if self._buffer is not None else "done"
        return f"<ProxyProtocolLayer {state} peer={self._peer()}>"

    def _peer(self) -> Any:
        return None if self.transport is None else self.transport.get_extra_info("peername")

    # ------------------------------------------------ protocol of the transport below

    def connection_made(self, transport: Any) -> None:
        """Check the peer; wait for its header (or refuse it, or hand it over as it is)."""
        self.transport = transport
        peer = transport.get_extra_info("peername")
        if not self.trusted.is_trusted(peer):
            if self.untrusted == "pass":
                self._buffer = None
                self._app_made = True
                transport.set_protocol(self.app)
                self.app.connection_made(transport)
                return
            logger.info("connection from %s, which is not a trusted proxy; closing", peer)
            _count_rejected(transport)
            self._buffer = None
            transport.abort()
            return
        if self.header_timeout is not None:
            self._timer = transport.reactor.call_later(self.header_timeout, self._timed_out)

    def data_received(self, data: bytes) -> None:
        """Header bytes until it is complete; then start the application and hand it the rest."""
        buffer = self._buffer
        if buffer is None:
            # The first read right after accept is delivered here even once we stepped aside.
            if self._app_made and not self.transport.is_closing():
                self.app.data_received(data)
            return
        buffer += data
        try:
            header = parse_header(buffer, self.max_v2_length)
        except ProxyProtocolError as exc:
            self._refuse(f"{exc}")
            return
        if header is None:
            self._buffer = buffer
            return
        self._cancel_timer()
        self._buffer = None
        transport = self.transport
        facade = ProxiedTransport(transport, header)
        self._app_made = True
        transport.set_protocol(self.app)
        self.app.connection_made(facade)
        rest = buffer[header.consumed :]
        if rest and not transport.is_closing():
            if transport.is_reading():
                self.app.data_received(rest)
            else:
                facade._pending = rest  # the application paused in connection_made

    def eof_received(self) -> bool:
        """The peer closed before its header was complete: close."""
        if self._buffer:
            logger.info("%s closed its connection before its PROXY header was complete", self._peer())
            _count_rejected(self.transport)
        else:
            logger.debug("%s closed its connection without sending a byte", self._peer())
        self._cancel_timer()
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        """The connection closed before the application had it."""
        self._cancel_timer()

    def pause_writing(self) -> None:
        """Nothing is written before the header is parsed."""

    def resume_writing(self) -> None:
        """See `pause_writing`."""

    # ------------------------------------------------------------- failures

    def _refuse(self, reason: str) -> None:
        self._cancel_timer()
        self._buffer = None
        logger.info("PROXY header from %s refused: %s; closing", self._peer(), reason)
        _count_rejected(self.transport)
        self.transport.abort()

    def _timed_out(self) -> None:
        self._timer = None
        if self._buffer is not None and not self.transport.is_closing():
            self._refuse(f"no complete header within {self.header_timeout} s")

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class ProxiedTransport:
    """What a protocol behind a PROXY header receives: the transport below, with the client's addresses.

    Every method forwards to the transport below (`StreamTransport` API:
    `write`, `writelines`, `write_eof`, `can_write_eof`, `close`, `abort`,
    `pause_reading`, `resume_reading`, `is_reading`,
    `get_write_buffer_size`, `get_write_buffer_limits`,
    `set_write_buffer_limits`, `is_closing`, `get_protocol`, `set_protocol`,
    `set_timeout`, `set_idle_timeout`).  `get_extra_info` answers
    ``'peername'`` and ``'sockname'`` from the header when it carries
    addresses, ``'proxy'`` with the `ProxyHeader` and ``'proxy_peername'``
    with the balancer's address.  Attributes ``header``, ``peer`` (the
    client), ``state``, ``bytes_in``, ``bytes_out``, ``reactor``.
    """

    __slots__ = ("_transport", "header", "_pending")

    def __init__(self, transport: Any, header: ProxyHeader) -> None:
        self._transport = transport
        #: The parsed PROXY header.
        self.header = header
        self._pending: bytes | None = None

    def __repr__(self) -> str:
        return f"<ProxiedTransport client={self.peer} over {self._transport!r}>"

    @property
    def peer(self) -> Any:
        """The client's address from the header (the connection's own peer if the header has none)."""
        header = self.header
        return header.source if header.source is not None else getattr(self._transport, "peer", None)

    @property
    def state(self) -> str:
        """The state of the transport below (a `State`)."""
        return str(self._transport.state)

    def _set_state(self, new: str) -> None:
        # A layer above (TLS) puts its states in the row below.
        self._transport._set_state(new)

    @property
    def bytes_in(self) -> int:
        """Bytes received below (the header included)."""
        return int(self._transport.bytes_in)

    @property
    def bytes_out(self) -> int:
        """Bytes sent below."""
        return int(self._transport.bytes_out)

    @property
    def reactor(self) -> Any:
        """The reactor of the transport below."""
        return self._transport.reactor

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``'peername'``/``'sockname'`` from the header, ``'proxy'``, ``'proxy_peername'``; else from below."""
        header = self.header
        if name == "peername" and header.source is not None:
            return header.source
        if name == "sockname" and header.destination is not None:
            return header.destination
        if name == "proxy":
            return header
        if name == "proxy_peername":
            return self._transport.get_extra_info("peername", default)
        return self._transport.get_extra_info(name, default)

    # ------------------------------------------------------------- forwarded

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data`` (see `StreamTransport.write`)."""
        self._transport.write(data)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        """Write each buffer of ``list_of_data`` in order."""
        self._transport.write(b"".join(list_of_data))

    def write_eof(self) -> None:
        """Close the write side once the buffer is flushed; keep reading."""
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        """Whether the transport below supports half-close."""
        return bool(self._transport.can_write_eof())

    def close(self) -> None:
        """Flush, then close (see `StreamTransport.close`)."""
        self._pending = None
        self._transport.close()

    def abort(self) -> None:
        """Close at once, dropping what is buffered."""
        self._pending = None
        self._transport.abort()

    def is_closing(self) -> bool:
        """True once the transport is closing or closed."""
        return bool(self._transport.is_closing())

    def pause_reading(self) -> None:
        """Stop calling ``data_received`` until `resume_reading`."""
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        """Call ``data_received`` again (bytes that followed the header first, in a later callback)."""
        if self._pending is not None:
            self._transport.reactor.call_soon(self._deliver_pending)
            return
        self._transport.resume_reading()

    def _deliver_pending(self) -> None:
        data, self._pending = self._pending, None
        transport = self._transport
        if data is None or transport.is_closing():
            return
        protocol = transport.get_protocol()
        try:
            protocol.data_received(data)
        except Exception as exc:
            report_user_error(
                transport.reactor,
                f"exception in {type(protocol).__name__}.data_received(); closing the connection",
                exc,
                protocol=protocol,
                transport=self,
            )
            transport.abort()
            return
        if not transport.is_closing():
            transport.resume_reading()

    def is_reading(self) -> bool:
        """True while data is delivered to the protocol."""
        return bool(self._transport.is_reading())

    def get_write_buffer_size(self) -> int:
        """Bytes accepted by `write` and not yet handed to the kernel."""
        return int(self._transport.get_write_buffer_size())

    def get_write_buffer_limits(self) -> tuple[int, int]:
        """The ``(low, high)`` water marks."""
        low, high = self._transport.get_write_buffer_limits()
        return int(low), int(high)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Set the water marks for ``pause_writing``/``resume_writing``."""
        self._transport.set_write_buffer_limits(high, low)

    def get_protocol(self) -> Any:
        """The application protocol."""
        return self._transport.get_protocol()

    def set_protocol(self, protocol: Any) -> None:
        """Deliver to ``protocol`` from now on."""
        self._transport.set_protocol(protocol)

    def set_timeout(self, seconds: float | None) -> None:
        """Close the connection ``seconds`` from now whatever it does."""
        self._transport.set_timeout(seconds)

    def set_idle_timeout(self, seconds: float | None) -> None:
        """Close the connection after ``seconds`` without progress either way."""
        self._transport.set_idle_timeout(seconds)


def proxy_protocol_factory(
    app_factory: Callable[[], Any],
    trusted_proxies: Iterable[str],
    *,
    header_timeout: float | None = HANDSHAKE_TIMEOUT,
    max_v2_length: int = MAX_V2_LENGTH,
    untrusted: str = "refuse",
) -> Callable[[], ProxyProtocolLayer]:
    """A ``protocol_factory`` that puts a `ProxyProtocolLayer` under each ``app_factory()`` protocol.

    The arguments are checked here, once (a bad ``trusted_proxies`` entry
    raises `ValueError`).
    """
    trusted = TrustedProxies(trusted_proxies)
    ProxyProtocolLayer(None, trusted, header_timeout=header_timeout, untrusted=untrusted)  # check the arguments

    def factory() -> ProxyProtocolLayer:
        return ProxyProtocolLayer(
            app_factory(), trusted, header_timeout=header_timeout, max_v2_length=max_v2_length, untrusted=untrusted
        )

    return factory
