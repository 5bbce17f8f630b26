"""The ``streams`` workload's servers: one coroutine per connection, the same code on three loops.

`handle` reads a line, writes ``Requested: <line>\\r\\n`` and drains, until
the end of the connection: how asyncio's documentation writes a stream
server.  The function is the same object on every loop (it only calls
``readline``, ``write``, ``drain`` and ``close``), so what differs is the
loop and its stream implementation underneath:

- ``reactor-streams``: `reactor.start_server`, served by ``Reactor.run()``;
- ``asyncio-streams``: ``asyncio.start_server`` on the stdlib selector loop;
- ``uvloop-streams``: ``asyncio.start_server`` on uvloop.

A last line without ``\\r\\n`` before EOF is answered too, so the servers
also speak the one-shot protocol.

``reactor-async`` is here too: the one-shot `RequestServer` with an
``async def handle_request``, to hold against ``reactor`` (the same reply
from a plain handler) under the one-shot workloads.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

__all__ = ["handle", "serve_reactor_streams", "serve_asyncio_streams", "serve_uvloop_streams", "serve_reactor_async"]

_CRLF = b"\r\n"


async def handle(reader: Any, writer: Any) -> None:
    """Answer every line of one connection with ``Requested: <line>``; close at its end."""
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            if line.endswith(_CRLF):
                line = line[:-2]
            writer.write(b"Requested: " + line + _CRLF)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


def serve_reactor_streams(port: int, ready: Callable[[int], None], stop_on_signals: Callable[..., None]) -> None:
    """`handle` on `reactor.start_server`, served by ``Reactor.run()`` until SIGTERM/SIGINT."""
    from reactor.core import Reactor
    from reactor.streams_async import start_server

    with Reactor() as reactor:
        # As for the other benchmark servers: no connection limit below the idle workload's.
        server = reactor.run_until_complete(start_server(handle, f"127.0.0.1:{port}", max_connections=1 << 20))
        stop_on_signals(reactor.stop, reactor)
        ready(server.sockaddr[1])
        try:
            reactor.run()
        finally:
            server.close()


def serve_reactor_async(port: int, ready: Callable[[int], None], stop_on_signals: Callable[..., None]) -> None:
    """`RequestServer` whose ``handle_request`` is ``async def`` (and awaits nothing), served by ``run()``.

    The default handler's reply, from a coroutine: beside the ``reactor``
    server, what running each request as a task costs.
    """
    from reactor.core import Reactor
    from reactor.reqrep import RequestServer

    class AsyncEcho(RequestServer):
        async def handle_request(self, request: str) -> str:
            return "Requested: " + request

    with Reactor() as reactor:
        server = AsyncEcho(f"127.0.0.1:{port}", reactor=reactor, max_connections=1 << 20, timeout=3600.0)
        stop_on_signals(reactor.stop, reactor)
        ready(server.server_address[1])
        try:
            server.run()
        finally:
            server.close()


def _serve_asyncio_streams(port: int, loop: Any, ready: Callable[[int], None]) -> None:
    import asyncio

    from .servers import serve_on_asyncio

    serve_on_asyncio(loop, lambda: asyncio.start_server(handle, "127.0.0.1", port, backlog=socket.SOMAXCONN), ready)


def serve_asyncio_streams(port: int, ready: Callable[[int], None], stop_on_signals: Callable[..., None]) -> None:
    """`handle` on ``asyncio.start_server``, the stdlib selector loop."""
    import asyncio

    _serve_asyncio_streams(port, asyncio.SelectorEventLoop(), ready)


def serve_uvloop_streams(port: int, ready: Callable[[int], None], stop_on_signals: Callable[..., None]) -> None:
    """`handle` on ``asyncio.start_server``, on uvloop."""
    import uvloop

    _serve_asyncio_streams(port, uvloop.new_event_loop(), ready)
