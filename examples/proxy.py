"""A TCP proxy in one thread: end-to-end backpressure, half-close passed through.

`Proxy` listens on an address; for each client it opens a connection to the
upstream address (`Reactor.create_connection`) and pipes bytes both ways.
Every connection, both sides of every pair, is a row of `Reactor.connections`
served by one reactor in one thread.

What can go wrong in a proxy, and what we chose
-----------------------------------------------
*A slow reader on one side and a fast writer on the other.*  A proxy that
reads whatever arrives and writes it on buffers without bound: a client
downloading at modem speed from a fast upstream makes the proxy hold the
whole download.  So backpressure goes end to end: when the client side's
write buffer rises above its high water mark, the transport calls
``pause_writing()`` on the client-side protocol, which pauses *reading from
the upstream*; the upstream's kernel buffers fill, TCP flow control stops the
upstream server, and nothing piles up here.  ``resume_writing()`` (at the low
water mark) resumes the upstream.  The other direction is the mirror image.
What one pair holds is therefore at most, per direction, the high water mark
plus one read (``max_read``); both are settings.  This is asyncio's and
Twisted's producer/consumer flow control, with the proxy as the consumer of
one side and the producer of the other.

*Half-close.*  An HTTP/1.0 client or a yoton client sends its request and
shuts down its write side, then reads the reply.  A proxy that treats that
EOF as "close both" cuts the reply off.  So EOF from one side becomes
``write_eof()`` on the other (after the buffered bytes), and
``eof_received`` returns True so the other direction keeps flowing; a pair
closes when both directions are done (each transport closes itself once
both of its sides are shut).

*The upstream is not there yet.*  The client may send before the upstream
connection is up.  Rather than a second buffer, the client side does not
read at all until then (``pause_reading`` in ``connection_made``): its bytes
wait in the kernel, where TCP already bounds them.

*The upstream is not there at all.*  A failed or timed-out connect aborts the
client connection (logged, counted in `Proxy.statistics`).  A client that
leaves first cancels the connect.

*One side fails.*  A reset or a timeout on one side aborts the other; a normal
close of one side closes the other after flushing what it still holds.

Run:
    python examples/proxy.py LISTEN_ADDRESS UPSTREAM_ADDRESS   (e.g. localhost:8080 example.org:80;
        addresses as RequestServer takes them, 'unix:/path' too; Ctrl-C stops)
    python examples/proxy.py --demo     (a RequestServer upstream, yoton requests through the
        proxy, all in one reactor; finishes on its own)
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from reactor import Future, Protocol, Reactor, RequestServer
from reactor.streams import StreamTransport

logger = logging.getLogger("proxy")

#: Write buffer high water mark of each side (bytes); the low mark is a quarter.
WRITE_BUFFER_HIGH = 64 * 1024
#: Bytes read per readiness event from either side, at most.
MAX_READ = 64 * 1024
#: Seconds allowed for connecting upstream.
CONNECT_TIMEOUT = 10.0


class ClientSide(Protocol):
    """The proxy's end of one client connection; it owns the pair.

    ``upstream`` is the upstream transport once connected (None before).
    Flow control: `pause_writing`/`resume_writing` (this side's buffer is
    full/drained) pause/resume reading from the upstream.
    """

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.upstream: StreamTransport | None = None
        self.connecting: Future[Any] | None = None
        self.peer: Any = None

    def connection_made(self, transport: StreamTransport) -> None:
        """Hold the client's bytes in the kernel and start connecting upstream."""
        self.transport = transport
        self.peer = transport.get_extra_info("peername")
        transport.pause_reading()
        self.proxy.clients.add(self)
        self.connecting = self.proxy.reactor.create_connection(
            lambda: UpstreamSide(self),
            self.proxy.upstream_address,
            timeout=self.proxy.connect_timeout,
            max_read=self.proxy.max_read,
        )
        self.connecting.add_done_callback(self._connect_done)

    def upstream_made(self, upstream: StreamTransport) -> None:
        """The upstream connection is up (called from its ``connection_made``): start piping."""
        if self.transport.is_closing():  # the client left while we connected
            upstream.abort()
            return
        self.upstream = upstream
        upstream.set_write_buffer_limits(self.proxy.write_buffer_high)
        logger.info("%s: connected to %s", self.peer, self.proxy.upstream_address)
        self.transport.resume_reading()

    def _connect_done(self, connecting: Future[Any]) -> None:
        if connecting.cancelled():
            return
        exc = connecting.exception()
        if exc is not None:
            self.proxy.connect_failures += 1
            logger.warning("%s: cannot connect to %s (%s); closing", self.peer, self.proxy.upstream_address, exc)
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        """Client to upstream."""
        assert self.upstream is not None  # reading starts once the upstream is up
        self.upstream.write(data)

    def eof_received(self) -> bool:
        """The client is done sending: pass the EOF on, keep the reply flowing."""
        assert self.upstream is not None
        self.upstream.write_eof()
        return True

    def pause_writing(self) -> None:
        """The client reads slower than the upstream sends: stop reading the upstream."""
        if self.upstream is not None:
            self.upstream.pause_reading()

    def resume_writing(self) -> None:
        """The client caught up: read the upstream again."""
        if self.upstream is not None:
            self.upstream.resume_reading()

    def connection_lost(self, exc: BaseException | None) -> None:
        """Close the upstream too: flushed after a normal close, aborted after a failure."""
        self.proxy.clients.discard(self)
        upstream = self.upstream
        if upstream is None:
            if self.connecting is not None:
                self.connecting.cancel()
            return
        logger.info("%s: closed; %d bytes up, %d bytes down", self.peer, upstream.bytes_out, upstream.bytes_in)
        if exc is None:
            upstream.close()
        else:
            upstream.abort()


class UpstreamSide(Protocol):
    """The proxy's end of one upstream connection: the mirror image of its `ClientSide`."""

    def __init__(self, client: ClientSide) -> None:
        self.client = client

    def connection_made(self, transport: StreamTransport) -> None:
        """Hand the transport to the client side, which starts piping."""
        self.transport = transport
        self.client.upstream_made(transport)

    def data_received(self, data: bytes) -> None:
        """Upstream to client."""
        self.client.transport.write(data)

    def eof_received(self) -> bool:
        """The upstream is done sending: pass the EOF on, keep the client's bytes flowing."""
        self.client.transport.write_eof()
        return True

    def pause_writing(self) -> None:
        """The upstream reads slower than the client sends: stop reading the client."""
        self.client.transport.pause_reading()

    def resume_writing(self) -> None:
        """The upstream caught up: read the client again."""
        self.client.transport.resume_reading()

    def connection_lost(self, exc: BaseException | None) -> None:
        """Close the client too: flushed after a normal close, aborted after a failure."""
        if exc is None:
            self.client.transport.close()
        else:
            self.client.transport.abort()


class Proxy:
    """Listen on ``listen_address``; pipe each client to a new connection to ``upstream_address``.

    Addresses take every form `create_server` accepts (``'host:port'``, port
    0 for any, ``'[::1]:port'``, ``'unix:/path'``).  ``write_buffer_high``
    and ``max_read`` bound what one pair holds (see the module docstring);
    ``max_connections`` bounds the pairs.

    Methods for the caller: `buffered`, `statistics`, `close`; attributes
    ``address`` (where clients connect), ``server`` (the stream `Server`),
    ``clients`` (the open pairs' `ClientSide` protocols).
    """

    def __init__(
        self,
        reactor: Reactor,
        listen_address: str,
        upstream_address: str,
        *,
        write_buffer_high: int = WRITE_BUFFER_HIGH,
        max_read: int = MAX_READ,
        connect_timeout: float = CONNECT_TIMEOUT,
        max_connections: int = 512,
    ) -> None:
        self.reactor = reactor
        self.upstream_address = upstream_address
        self.write_buffer_high = write_buffer_high
        self.max_read = max_read
        self.connect_timeout = connect_timeout
        self.clients: set[ClientSide] = set()
        self.connect_failures = 0
        self.server = reactor.create_server(
            lambda: ClientSide(self),
            listen_address,
            write_buffer_high=write_buffer_high,
            max_read=max_read,
            max_connections=max_connections,
        )

    @property
    def address(self) -> str:
        """Where clients connect, as ``'host:port'`` (the real port if 0 was asked) or ``'unix:/path'``."""
        return self.server.address

    def transports(self) -> list[StreamTransport]:
        """This proxy's transports, both sides, read from `Reactor.connections`."""
        return [
            row
            for row in self.reactor.connections.values()
            if isinstance(protocol := getattr(row, "protocol", None), (ClientSide, UpstreamSide))
            and (protocol.proxy if isinstance(protocol, ClientSide) else protocol.client.proxy) is self
        ]

    def buffered(self) -> int:
        """Bytes this proxy holds in its write buffers, both sides of every pair."""
        return sum(row.get_write_buffer_size() for row in self.transports())

    def statistics(self) -> dict[str, int]:
        """Counters: open pairs, bytes buffered now, failed upstream connects, and the server's counters."""
        return {
            "pairs": len(self.clients),
            "buffered": self.buffered(),
            "connect_failures": self.connect_failures,
            **self.server.statistics(),
        }

    def close(self) -> None:
        """Stop listening and abort every pair (and every upstream connect under way); idempotent."""
        for client in list(self.clients):
            if client.upstream is not None:
                client.upstream.abort()
            elif client.connecting is not None:
                client.connecting.cancel()
        self.server.close()


# ------------------------------------------------------------------- programs


def run_proxy(listen_address: str, upstream_address: str) -> None:
    """Proxy ``listen_address`` to ``upstream_address`` until Ctrl-C."""
    with Reactor() as reactor:
        proxy = Proxy(reactor, listen_address, upstream_address)
        logger.info("proxying %s -> %s", proxy.address, upstream_address)
        try:
            reactor.run()
        except KeyboardInterrupt:
            pass
        finally:
            proxy.close()
            reactor.run_once(0)


class Upper(RequestServer):
    """The demo's upstream: replies with the request in capitals."""

    def handle_request(self, request: str) -> str:
        return request.upper()


def run_demo() -> None:
    """A RequestServer upstream and yoton requests through the proxy, all in one reactor."""
    with Reactor() as reactor:
        upstream = Upper("127.0.0.1:0", reactor=reactor)
        proxy = Proxy(reactor, "127.0.0.1:0", upstream.address)
        print(f"proxy {proxy.address} -> upstream {upstream.address}")
        try:
            # Each request is sent, then half-closed, then the reply read: the
            # client's EOF must cross the proxy while the reply still comes back.
            texts = ["hello through the proxy", "half-close passes through", "x" * 300_000]
            replies = [reactor.request(proxy.address, text, timeout=10) for text in texts]
            for text, reply in zip(texts, replies, strict=True):
                answer = reactor.run_until_complete(reply, timeout=10)
                shown = answer if len(answer) < 60 else f"{answer[:10]}... ({len(answer)} characters)"
                print(f"{text[:30]!r} -> {shown!r}", "ok" if answer == text.upper() else "WRONG")
            for _ in range(100):  # let the pairs finish closing
                if not proxy.clients:
                    break
                reactor.run_once(0.05)
            print("statistics:", proxy.statistics())
        finally:
            proxy.close()
            upstream.close()
            reactor.run_once(0)


def main(argv: list[str] | None = None) -> int:
    """Command line: ``LISTEN_ADDRESS UPSTREAM_ADDRESS`` or ``--demo``."""
    args = sys.argv[1:] if argv is None else argv
    if args != ["--demo"] and (len(args) != 2 or args[0].startswith("-")):
        print(__doc__.split("Run:")[1].rstrip(), file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stdout)
    if args == ["--demo"]:
        run_demo()
    else:
        run_proxy(args[0], args[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
