"""The servers the benchmark compares, each answering the one-shot protocol.

Every server reads until the first ``\\r\\n`` or EOF, replies ``"Requested: "``
plus the request decoded as UTF-8 plus ``\\r\\n``, and closes.  Each one is
written the way that library is meant to be used, as fast as it honestly
goes, with the same listen backlog (``socket.SOMAXCONN``) for all of them:

- ``reactor``: `RequestServer` with its default handler, ``run()``.
- ``reactor-timed``: the same with the request-duration histogram on, as
  ``serve --metrics`` has it (metrics on against off).
- ``embedded``: the same `RequestServer`, its reactor driven from an asyncio
  loop through ``fileno()`` (`reactor.embed.attach_asyncio`).
- ``asyncio`` / ``uvloop``: an `asyncio.Protocol` that accumulates data until
  ``\\r\\n`` or ``eof_received``, writes the reply and closes the transport.
- ``tcpserver`` / ``threading``: the stdlib `socketserver.TCPServer` and
  `socketserver.ThreadingTCPServer` with a `StreamRequestHandler` doing
  ``rfile.readline()``.
- ``reactor-tcpserver`` / ``reactor-threading``: the same handler on
  ``reactor.socketserver``.

The line servers keep a connection open and answer every line on it (the
``persistent`` workload), and answer the one-shot protocol too (one line,
then EOF: the reply, then close):

- ``reactor-lines``: a `reactor.streams.LineProtocol` made with
  `reactor.streams.create_server`, replying per line with
  ``transport.write``, served by ``Reactor.run()``.
- ``asyncio-lines`` / ``uvloop-lines``: an `asyncio.Protocol` that buffers,
  splits on ``\\r\\n`` and writes one reply per line.
- ``reactor-streams``, ``asyncio-streams``, ``uvloop-streams``: one
  coroutine per connection reading lines (`benchmarks.streams_echo`), the
  same code on `reactor.start_server` and on ``asyncio.start_server`` (the
  ``streams`` workload).
- ``reactor-async``: `RequestServer` with the default reply from an
  ``async def handle_request``, beside ``reactor`` under the one-shot load.
- ``asynchat`` / ``asynchat-backport``: one classic ``async_chat`` line
  server (`benchmarks.asynchat_echo`) on `reactor.compat` and on the
  ``pyasyncore``/``pyasynchat`` backports, each run by
  ``asyncore.loop(use_poll=True)`` (the ``asynchat`` workload).

Run one with ``python -m benchmarks.servers KIND [--port 0]``: it binds
127.0.0.1, prints ``port=N pid=P`` on stdout when it accepts connections, and
serves until it receives SIGTERM or SIGINT.

TLS (``--certfile CHAIN.pem --keyfile KEY.pem``): the kinds in `TLS_SERVERS`
serve TLS instead, all with the same server context (`server_context`:
``ssl.create_default_context(Purpose.CLIENT_AUTH)``, the stdlib's default
protocol versions and ciphers, and that certificate chain and key): the
reactor's through ``ssl=`` of `RequestServer` and `create_server`, asyncio's
and uvloop's through ``ssl=`` of ``loop.create_server``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import socket
import socketserver
import ssl
import sys
from collections.abc import Callable
from typing import Any

__all__ = [
    "LINE_SERVERS", "SERVERS", "TLS_SERVERS", "available", "line_servers", "serve", "server_context",
    "settle_allocator", "STREAM_SERVERS", "stream_servers",
]

_CRLF = b"\r\n"


def _ready(port: int) -> None:
    sys.stdout.write(f"port={port} pid={os.getpid()}\n")
    sys.stdout.flush()


def _stop_on_signals(stop: Callable[[], object], reactor: Any = None) -> None:
    """Call ``stop()`` on SIGTERM and SIGINT.

    With ``reactor``, through `Reactor.add_signal_handler` (the signal writes
    the reactor's wakeup fd).  A plain `signal.signal` handler runs only when
    the main thread next executes Python code: a signal that lands after the
    loop's last check and before its wait blocks is handled when the wait
    returns, which for a reactor with nothing to do is never.  Without
    ``reactor`` (the socketserver kinds, whose ``serve_forever`` polls every
    0.5 s), a plain handler.
    """
    if reactor is not None:
        reactor.add_signal_handler(signal.SIGTERM, stop)
        reactor.add_signal_handler(signal.SIGINT, stop)
        return

    def handler(signum: int, frame: object) -> None:
        stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


# ---------------------------------------------------------------- reactor


def _bench_request_server(reactor: Any, port: int, tls: ssl.SSLContext | None = None) -> Any:
    from reactor.reqrep import RequestServer

    # The defaults (1,024 connections, 30 s timeout) protect a production
    # server; the idle workload holds 10,000 connections for longer than
    # that, and no other server here has either limit.
    return RequestServer(f"127.0.0.1:{port}", reactor=reactor, max_connections=1 << 20, timeout=3600.0, ssl=tls)


def serve_reactor(port: int, tls: ssl.SSLContext | None = None, *, timed: bool = False) -> None:
    """`RequestServer` with the default handler (over TLS with ``tls``), served by ``run()``.

    ``timed``: with the request-duration histogram on, as ``serve --metrics`` has it.
    """
    from reactor.core import Reactor
    from reactor.transport.listener import enable_request_timing

    with Reactor() as reactor:
        if timed:
            enable_request_timing(reactor)
        server = _bench_request_server(reactor, port, tls)
        _stop_on_signals(reactor.stop, reactor)
        _ready(server.server_address[1])
        try:
            server.run()
        finally:
            server.close()


def serve_reactor_timed(port: int) -> None:
    """`serve_reactor` with each request timed (``serve --metrics``): what metrics cost, against ``reactor``."""
    serve_reactor(port, timed=True)


def serve_embedded(port: int) -> None:
    """The same `RequestServer`, its reactor driven by an asyncio loop."""
    import asyncio

    from reactor.core import Reactor
    from reactor.embed import attach_asyncio

    loop = asyncio.new_event_loop()
    try:
        with Reactor() as reactor:
            server = _bench_request_server(reactor, port)
            driver = attach_asyncio(reactor, loop)
            loop.add_signal_handler(signal.SIGTERM, loop.stop)
            loop.add_signal_handler(signal.SIGINT, loop.stop)
            _ready(server.server_address[1])
            try:
                loop.run_forever()
            finally:
                driver.close()
                server.close()
    finally:
        loop.close()


def serve_reactor_lines(port: int, tls: ssl.SSLContext | None = None) -> None:
    """A `LineProtocol` on `reactor.streams.create_server` (over TLS with ``tls``), served by ``run()``."""
    from reactor.core import Reactor
    from reactor.streams import LineProtocol

    class Reply(LineProtocol):
        """One reply per line."""

        def line_received(self, line: bytes) -> None:
            self.transport.write(b"Requested: " + line + _CRLF)

    with Reactor() as reactor:
        # As for RequestServer: lift the 1,024-connection default so the
        # idle workload's 10,000 connections are all accepted.
        server = reactor.create_server(Reply, f"127.0.0.1:{port}", max_connections=1 << 20, ssl=tls)
        _stop_on_signals(reactor.stop, reactor)
        _ready(server.sockaddr[1])
        try:
            reactor.run()
        finally:
            server.close()


# ---------------------------------------------------------------- asyncio


def _protocol_class() -> type[Any]:
    import asyncio

    class OneShot(asyncio.Protocol):
        """Accumulate until CRLF or EOF, reply, close."""

        __slots__ = ("transport", "buffer")

        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            self.buffer = b""

        def data_received(self, data: bytes) -> None:
            buffer = self.buffer + data if self.buffer else data
            end = buffer.find(_CRLF)
            if end < 0:
                self.buffer = buffer
                return
            self._reply(buffer[:end])

        def eof_received(self) -> bool:
            if self.transport is not None and not self.transport.is_closing():
                self._reply(self.buffer)
            return False

        def _reply(self, request: bytes) -> None:
            reply = "Requested: " + request.decode("utf-8")
            transport = self.transport
            transport.write(reply.encode("utf-8") + _CRLF)
            transport.close()

    return OneShot


def _lines_protocol_class() -> type[Any]:
    import asyncio

    class Lines(asyncio.Protocol):
        """Buffer, split on CRLF, write one reply per line; at EOF answer a last partial line, close."""

        __slots__ = ("transport", "buffer")

        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            self.buffer = b""

        def data_received(self, data: bytes) -> None:
            if self.buffer:
                data = self.buffer + data
            lines = data.split(_CRLF)
            self.buffer = lines.pop()
            write = self.transport.write
            for line in lines:
                write(b"Requested: " + line + _CRLF)

        def eof_received(self) -> bool:
            if self.buffer:
                self.transport.write(b"Requested: " + self.buffer + _CRLF)
                self.buffer = b""
            return False

    return Lines


def serve_on_asyncio(loop: Any, start: Callable[[], Any], ready: Callable[[int], None]) -> None:
    """Run ``await start()`` (a listening asyncio server) on ``loop`` until SIGTERM/SIGINT; then close both."""
    import asyncio

    asyncio.set_event_loop(loop)
    try:
        server = loop.run_until_complete(start())
        loop.add_signal_handler(signal.SIGTERM, loop.stop)
        loop.add_signal_handler(signal.SIGINT, loop.stop)
        ready(server.sockets[0].getsockname()[1])
        try:
            loop.run_forever()
        finally:
            server.close()
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def _serve_asyncio(port: int, loop: Any, protocol: type[Any] | None = None, tls: ssl.SSLContext | None = None) -> None:
    serve_on_asyncio(
        loop,
        lambda: loop.create_server(protocol or _protocol_class(), "127.0.0.1", port, backlog=socket.SOMAXCONN, ssl=tls),
        _ready,
    )


def serve_asyncio(port: int, tls: ssl.SSLContext | None = None) -> None:
    """An `asyncio.Protocol` server on the stdlib selector loop."""
    import asyncio

    _serve_asyncio(port, asyncio.SelectorEventLoop(), None, tls)


def serve_uvloop(port: int, tls: ssl.SSLContext | None = None) -> None:
    """The same Protocol on uvloop."""
    import uvloop

    _serve_asyncio(port, uvloop.new_event_loop(), None, tls)


def serve_asyncio_lines(port: int, tls: ssl.SSLContext | None = None) -> None:
    """The line `asyncio.Protocol` on the stdlib selector loop."""
    import asyncio

    _serve_asyncio(port, asyncio.SelectorEventLoop(), _lines_protocol_class(), tls)


def serve_uvloop_lines(port: int, tls: ssl.SSLContext | None = None) -> None:
    """The line `asyncio.Protocol` on uvloop."""
    import uvloop

    _serve_asyncio(port, uvloop.new_event_loop(), _lines_protocol_class(), tls)


# ------------------------------------------------------------ socketserver


class _LineHandler(socketserver.StreamRequestHandler):
    """One request line in, one reply line out."""

    def handle(self) -> None:
        line = self.rfile.readline()
        if line.endswith(_CRLF):
            line = line[:-2]
        reply = "Requested: " + line.decode("utf-8")
        self.wfile.write(reply.encode("utf-8") + _CRLF)


def _serve_socketserver(cls: type[Any], port: int) -> None:
    import threading

    class Server(cls):  # type: ignore[misc]
        allow_reuse_address = True
        request_queue_size = socket.SOMAXCONN
        daemon_threads = True

    with Server(("127.0.0.1", port), _LineHandler) as server:
        # shutdown() blocks until serve_forever() returns, so it must not run
        # on the serving thread (where signal handlers run).
        _stop_on_signals(lambda: threading.Thread(target=server.shutdown).start())
        _ready(server.server_address[1])
        server.serve_forever()


def serve_tcpserver(port: int) -> None:
    """stdlib `socketserver.TCPServer`, one request at a time."""
    _serve_socketserver(socketserver.TCPServer, port)


def serve_threading(port: int) -> None:
    """stdlib `socketserver.ThreadingTCPServer`, a thread per connection."""
    _serve_socketserver(socketserver.ThreadingTCPServer, port)


def serve_reactor_tcpserver(port: int) -> None:
    """`reactor.socketserver.TCPServer` with the stdlib handler."""
    from reactor.socketserver import TCPServer

    _serve_socketserver(TCPServer, port)


def serve_reactor_threading(port: int) -> None:
    """`reactor.socketserver.ThreadingTCPServer` with the stdlib handler."""
    from reactor.socketserver import ThreadingTCPServer

    _serve_socketserver(ThreadingTCPServer, port)


def serve_reactor_streams(port: int) -> None:
    """One coroutine per connection on `reactor.start_server` (`streams_echo`)."""
    from .streams_echo import serve_reactor_streams as serve_streams

    serve_streams(port, _ready, _stop_on_signals)


def serve_asyncio_streams(port: int) -> None:
    """The same coroutine on ``asyncio.start_server`` (selector loop)."""
    from .streams_echo import serve_asyncio_streams as serve_streams

    serve_streams(port, _ready, _stop_on_signals)


def serve_uvloop_streams(port: int) -> None:
    """The same coroutine on ``asyncio.start_server`` on uvloop."""
    from .streams_echo import serve_uvloop_streams as serve_streams

    serve_streams(port, _ready, _stop_on_signals)


def serve_reactor_async(port: int) -> None:
    """`RequestServer` with an ``async def handle_request`` (`streams_echo`)."""
    from .streams_echo import serve_reactor_async as serve_async

    serve_async(port, _ready, _stop_on_signals)


def serve_asynchat(port: int) -> None:
    """An `async_chat` line server on `reactor.compat`, run by ``asyncore.loop(use_poll=True)``."""
    from .asynchat_echo import serve_compat

    serve_compat(port)


def serve_asynchat_backport(port: int) -> None:
    """The same `async_chat` line server on the pyasyncore/pyasynchat backports, ``use_poll=True``."""
    from .asynchat_echo import serve_backport

    serve_backport(port)


#: kind -> (function, short description); the functions of `TLS_SERVERS` take a second argument, the TLS context.
SERVERS: dict[str, tuple[Callable[..., None], str]] = {
    "reactor": (serve_reactor, "reactor RequestServer"),
    "reactor-timed": (serve_reactor_timed, "reactor RequestServer, requests timed (serve --metrics)"),
    "asyncio": (serve_asyncio, "asyncio Protocol (selector loop)"),
    "uvloop": (serve_uvloop, "uvloop Protocol"),
    "tcpserver": (serve_tcpserver, "stdlib socketserver.TCPServer"),
    "threading": (serve_threading, "stdlib socketserver.ThreadingTCPServer"),
    "reactor-tcpserver": (serve_reactor_tcpserver, "reactor.socketserver.TCPServer"),
    "reactor-threading": (serve_reactor_threading, "reactor.socketserver.ThreadingTCPServer"),
    "embedded": (serve_embedded, "reactor RequestServer embedded in asyncio"),
    "reactor-lines": (serve_reactor_lines, "reactor create_server + LineProtocol"),
    "asyncio-lines": (serve_asyncio_lines, "asyncio line Protocol (selector loop)"),
    "uvloop-lines": (serve_uvloop_lines, "uvloop line Protocol"),
    "asynchat": (serve_asynchat, "async_chat line server on reactor.compat (asyncore.loop)"),
    "asynchat-backport": (serve_asynchat_backport, "the same async_chat server on pyasyncore/pyasynchat (use_poll)"),
    "reactor-streams": (serve_reactor_streams, "a coroutine per connection on reactor.start_server"),
    "asyncio-streams": (serve_asyncio_streams, "the same coroutine on asyncio.start_server (selector loop)"),
    "uvloop-streams": (serve_uvloop_streams, "the same coroutine on asyncio.start_server (uvloop)"),
    "reactor-async": (serve_reactor_async, "reactor RequestServer with an async def handle_request"),
}

#: server kind -> its coroutine-streams counterpart (what the streams workload runs for it).
STREAM_SERVERS: dict[str, str] = {
    "reactor": "reactor-streams",
    "asyncio": "asyncio-streams",
    "uvloop": "uvloop-streams",
}

#: server kind -> its line-protocol counterpart (what the persistent workload runs for it).
LINE_SERVERS: dict[str, str] = {
    "reactor": "reactor-lines",
    "asyncio": "asyncio-lines",
    "uvloop": "uvloop-lines",
}


#: The kinds that can serve TLS (``--certfile``/``--keyfile``; the ``--tls`` benchmark).
TLS_SERVERS = frozenset({"reactor", "asyncio", "uvloop", "reactor-lines", "asyncio-lines", "uvloop-lines"})


def server_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    """The server-side context every TLS server here uses: stdlib defaults, this certificate chain and key."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    return context


def line_servers(kinds: list[str]) -> list[str]:
    """The line servers for ``kinds``: each line kind named, and the counterpart of each kind that has one."""
    out: list[str] = []
    for kind in kinds:
        line_kind = kind if kind in LINE_SERVERS.values() else LINE_SERVERS.get(kind)
        if line_kind is not None and line_kind not in out:
            out.append(line_kind)
    return out


def stream_servers(kinds: list[str]) -> list[str]:
    """The streams workload's servers for ``kinds``: each -streams kind named, and each kind's counterpart."""
    out: list[str] = []
    for kind in kinds:
        stream_kind = kind if kind in STREAM_SERVERS.values() else STREAM_SERVERS.get(kind)
        if stream_kind is not None and stream_kind not in out:
            out.append(stream_kind)
    return out


def available(kind: str) -> str | None:
    """None when ``kind`` can run here, else the reason it cannot."""
    if kind not in SERVERS:
        return f"unknown server {kind!r} (known: {', '.join(SERVERS)})"
    if kind.startswith("uvloop") and importlib.util.find_spec("uvloop") is None:
        return "uvloop is not installed (pip install 'selreactor[bench]')"
    if kind == "asynchat-backport":
        from .asynchat_echo import backport_unavailable

        return backport_unavailable()
    return None


def settle_allocator() -> None:
    """Free one large block, so the C allocator's state is that of a process that has run a while.

    glibc's ``malloc`` serves blocks above its mmap threshold (128 KiB at
    start) with ``mmap`` and raises the threshold only when such a block is
    freed.  asyncio reads with ``recv(256 KiB)``: in a fresh process that
    never freed a large block, every read is an ``mmap``, an ``mremap``
    (shrinking the bytes to the data) and an ``munmap``, which quadruples
    asyncio's CPU per persistent request here.  Whether a server starts in
    that state depends on what its imports happened to allocate; a
    long-running server leaves it at its first large free.  Each benchmark
    server is a fresh process, so each starts with this one free instead.
    """
    block = bytearray(1 << 20)
    del block


def serve(kind: str, port: int = 0, tls: ssl.SSLContext | None = None) -> None:
    """Run the server ``kind`` on 127.0.0.1:``port`` (over TLS with ``tls``) until SIGTERM/SIGINT."""
    reason = available(kind)
    if reason is not None:
        raise SystemExit(f"cannot run {kind}: {reason}")
    if tls is not None and kind not in TLS_SERVERS:
        raise SystemExit(f"cannot run {kind} over TLS (TLS kinds: {', '.join(sorted(TLS_SERVERS))})")
    settle_allocator()
    if tls is None:
        SERVERS[kind][0](port)
    else:
        SERVERS[kind][0](port, tls)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: ``python -m benchmarks.servers KIND``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.servers", description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=list(SERVERS))
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--certfile", help="serve TLS with this certificate chain (PEM); needs --keyfile")
    parser.add_argument("--keyfile", help="the private key (PEM) of --certfile")
    args = parser.parse_args(argv)
    if bool(args.certfile) != bool(args.keyfile):
        parser.error("--certfile and --keyfile go together")
    tls = server_context(args.certfile, args.keyfile) if args.certfile else None
    serve(args.kind, args.port, tls)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
