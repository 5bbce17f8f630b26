"""RequestServer: yoton's request/reply server, many per thread, on one reactor.

Wire format (server side): read until the first ``\\r\\n`` or EOF; call
``handle_request(request)`` with the terminator removed; send the reply and
``\\r\\n``; close.  One connection, one request.

The server is a protocol on the transport layer: a `Listener` accepts, and
each connection is a `StreamTransport` row of `Reactor.connections` with a
small `RequestProtocol`.  Everything about sockets (the bounded accept loop,
``max_connections``, ``EMFILE``, bounded reads, try-send-then-buffer,
deadlines, unregister-then-close) is the layer's; this module is framing,
the handler call and the counters.

The hot path
------------
A one-shot request costs the kernel ~21 µs; the budget for everything we do
on top is about 10 µs (the performance notes).  So:

1. The listener accepts in a loop until ``EAGAIN`` (bounded per readiness)
   and reads each new socket at once: on loopback the request is nearly
   always there already, and then the connection never touches the selector.
2. `RequestProtocol.data_received` finds the terminator with one bounded
   ``find`` (`split_request`), decodes, calls the handler, and writes the
   reply, which the transport sends at once; ``close()`` with nothing
   buffered closes the socket right away.  Only a reply that does not fit the
   socket buffer gets a writer registration and an output buffer.

Limits, all per server: ``max_request_size`` (8 MiB by default: yoton had
no limit and its users send whole files; oversized requests are rejected,
counted and logged), ``max_reply_size`` (64 MiB, the client's default reply
limit: a larger reply is a handler error, so one reply to a reader that never
reads cannot hold more than that), ``timeout`` (the whole exchange, reply
included, counted from accept and pushed back by nothing: a slowloris client
that drips a byte a second, or a reader that trickles the reply out 4 KiB at a
time, is closed like a silent one; a reply that is a `Future` or runs in a
worker gets a fresh ``timeout`` when the handler returns), ``max_connections``
and ``EMFILE``/``ENFILE`` on accept (the listener pauses).

Handlers: ``handle_request`` may return a ``str`` or a reactor `Future` of
one (a proxy or fan-out server with `Reactor.request`, no threads), or be
declared ``async def``: then each request runs as a reactor task (see
`reactor.tasks`), and the connection's deadline, the server's close or the
peer's reset cancels it, so its ``finally`` blocks run.  With
``async_=True`` it runs in the transport layer's bounded `WorkerPool` and the
reply returns through `Reactor.call_soon_threadsafe`.  A handler that raises
or returns anything else is reported to the reactor's exception handler
(`Reactor.set_exception_handler`; by default logged with its traceback) and
only its own connection is closed.
"""

from __future__ import annotations

import functools
import inspect
import logging
import socket
import sys
import threading
import warnings
from collections.abc import Coroutine, Iterable, Sequence
from types import CoroutineType
from typing import TYPE_CHECKING, Any, Protocol

from .addresses import AddressLike, address_text, parse_address
from .core import Reactor, get_default_reactor
from .framing import LineParser, MessageTooLarge, split_request
from .futures import Future
from .tasks import Task, _start_eagerly
from .transport.base import HANDSHAKE_TIMEOUT
from .transport.errors import report_user_error
from .transport.listener import ACCEPT_BACKOFF, Listener, ServerStatistics
from .transport.stream import StreamTransport, TransportLimits
from .transport.threads import (
    ServeToken,
    WorkerPool,
    call_in_reactor_thread,
    join_background,
    run_in_reactor_thread,
    serve_until_stopped,
    serving_started,
    start_background,
    stop_serving,
)

if TYPE_CHECKING:
    import ssl as _ssl

__all__ = ["RequestServer", "ServerStatistics", "RequestProtocol"]

logger = logging.getLogger("reactor.reqrep")

_CRLF = b"\r\n"


class RequestProtocol:
    """The server side of one request/reply exchange (a protocol on the transport layer).

    Sans-socket: it takes bytes and EOF from its transport and hands one
    request to its server; tests drive it with an in-memory transport.
    """

    __slots__ = ("server", "transport", "parser", "replied")

    def __init__(self, server: RequestServer) -> None:
        self.server = server
        self.transport: Any = None
        self.parser: LineParser | None = None
        self.replied = False

    def connection_made(self, transport: Any) -> None:
        """Keep the transport."""
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        """Find the request; hand it to the server once complete."""
        parser = self.parser
        server = self.server
        try:
            if parser is None:
                request = split_request(data, server.max_request_size)
                if request is None:
                    self.parser = parser = LineParser(server.max_request_size)
                    parser.feed(data)
                    return
            else:
                messages = parser.feed(data)
                if not messages:
                    return
                request = messages[0]
        except MessageTooLarge:
            server._reject_oversized(self)
            return
        server._dispatch(self, request)

    def eof_received(self) -> bool:
        """The client half-closed: what arrived is the request.  Keep the write side for the reply."""
        parser = self.parser
        try:
            request = (parser.feed_eof() if parser is not None else None) or b""
        except MessageTooLarge:
            self.server._reject_oversized(self)
            return False
        self.server._dispatch(self, request)
        return True

    def connection_lost(self, exc: BaseException | None) -> None:
        """Count the exchange as completed if the reply went out in full."""
        if exc is None and self.replied:
            stats = self.server._stats
            stats.completed += 1
            if stats.durations is not None:  # request timing on (serve --metrics): one clock read
                transport = self.transport
                stats.durations.observe(transport.reactor.time() - transport.started)

    def pause_writing(self) -> None:
        """The reply is one write followed by close: nothing to pause."""

    def resume_writing(self) -> None:
        """See `pause_writing`."""


class TaskRequestProtocol(RequestProtocol):
    """`RequestProtocol` for an ``async def handle_request``: it holds the handler's task.

    The connection's end (its deadline, the server's close, the peer's reset)
    cancels the task, so the handler's ``finally`` blocks run.  Used only by
    servers whose handler is a coroutine function, so the plain path's
    protocol carries nothing more.
    """

    __slots__ = ("task",)

    def __init__(self, server: RequestServer) -> None:
        # RequestProtocol.__init__'s four fields, written out: one call less per connection.
        self.server = server
        self.transport: Any = None
        self.parser: LineParser | None = None
        self.replied = False
        self.task: Any = None

    def connection_lost(self, exc: BaseException | None) -> None:
        """Count the exchange, and cancel the handler's task if it is still running."""
        if exc is None and self.replied:
            self.server._stats.completed += 1
        task = self.task
        if task is not None and not task.done():
            task.cancel()


class RequestServer:
    """A request/reply server (yoton's ``RequestServer``) on a reactor.

    Subclass it and implement ``handle_request(request: str) -> str`` (or
    return a reactor `Future` of a str, or write it ``async def``: it then
    runs as a task, cancelled when the connection's deadline passes or the
    server closes).  The default echoes
    ``"Requested: " + request``.

    ``address`` is ``'host:port'`` (port 0 lets the OS choose; names are
    hashed as yoton does), ``'[::1]:port'``, ``'unix:/path'`` or a
    ``(host, port)`` tuple.  The socket is bound and listening when the
    constructor returns: ``address`` is the bound address as the string
    `do_request` accepts, ``sockaddr`` (also ``server_address``) the bound
    socket address, as on every server of the package.

    Methods for the caller: `run` (serve in this thread until `stop`),
    `start` (serve in a background thread; one thread per reactor however
    many servers are started), `stop`, `join`, `close`, `drain`,
    `statistics`.  Several servers share one reactor with ``reactor=``;
    without it they share the default reactor.

    ``ssl``: serve over TLS with that server-side `ssl.SSLContext` (the
    handshake must complete within ``ssl_handshake_timeout`` seconds).  The
    request ends at its ``\\r\\n``; a client need not half-close.

    ``proxy_protocol``: behind a load balancer (nginx ``stream``, HAProxy),
    read the PROXY protocol header (v1 or v2) it sends first, and accept
    connections only from ``trusted_proxies`` (addresses, networks such as
    ``'10.0.0.0/8'``, ``'unix'``; loopback by default); others are refused.
    During ``handle_request`` the client's address is then `current_peer`.
    See ``docs/deploy.md``.
    """

    #: See `current_peer`; set per instance only with ``proxy_protocol=True``.
    _peer_local: threading.local | None = None

    def __init__(
        self,
        address: AddressLike,
        async_: bool = False,
        verbose: int = 0,
        *,
        reactor: Reactor | None = None,
        async_val: bool | None = None,
        max_request_size: int = 8 << 20,
        max_reply_size: int = 64 << 20,
        timeout: float = 30.0,
        max_connections: int = 1024,
        workers: int = 8,
        backlog: int = socket.SOMAXCONN,
        accept_backoff: float = ACCEPT_BACKOFF,
        reuse_port: bool = False,
        ssl: _ssl.SSLContext | None = None,
        ssl_handshake_timeout: float | None = HANDSHAKE_TIMEOUT,
        proxy_protocol: bool = False,
        trusted_proxies: Iterable[str] = ("127.0.0.1", "::1"),
    ) -> None:
        if async_val is not None:
            async_ = async_val
        if max_request_size <= 0:
            raise ValueError(f"max_request_size must be positive, got {max_request_size!r}")
        if max_reply_size <= 0:
            raise ValueError(f"max_reply_size must be positive, got {max_reply_size!r}")
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        if max_connections <= 0:
            raise ValueError(f"max_connections must be positive, got {max_connections!r}")
        coroutine_handler = inspect.iscoroutinefunction(self.handle_request)
        if coroutine_handler and async_:
            raise ValueError(
                "handle_request is a coroutine function: it runs as a task on the reactor; "
                "async_=True (worker threads) does not apply"
            )
        self.reactor = reactor if reactor is not None else get_default_reactor()
        self.verbose = verbose
        self.async_ = bool(async_)
        self.max_request_size = max_request_size
        self.max_reply_size = max_reply_size
        self.timeout = timeout
        self._pool = WorkerPool(workers, thread_name_prefix="reactor-reqrep") if self.async_ else None
        self._stopping = False
        self._serving_thread: threading.Thread | None = None  # the start() thread, joined by close()
        if verbose:
            _make_verbose_visible()
        parsed = parse_address(address_text(address))
        # An async def handler runs as a task that its connection's protocol holds (and
        # cancels when the connection ends).  Decided once here: the plain path's
        # protocol carries nothing more, and no request pays a check for it.
        protocol_class: Any = TaskRequestProtocol if coroutine_handler else RequestProtocol
        factory: Any = functools.partial(protocol_class, self)
        if ssl is not None:
            # TLS is a layer under the same RequestProtocol; the plain path is untouched.
            from .transport.tls import TLSProtocol  # imports ssl: only when TLS is asked for

            context = ssl
            TLSProtocol(context, None, server_side=True, handshake_timeout=ssl_handshake_timeout)  # check arguments

            def factory() -> TLSProtocol:
                return TLSProtocol(
                    context, protocol_class(self), server_side=True, handshake_timeout=ssl_handshake_timeout
                )

        if proxy_protocol:
            # A layer under the rest (TLS included): the balancer's header comes first.  Only
            # then is the handler's peer worth tracking, so only then do these two methods
            # change; the plain path pays nothing.
            from .transport.proxy import proxy_protocol_factory

            factory = proxy_protocol_factory(factory, trusted_proxies)
            self._peer_local = threading.local()
            self._dispatch = self._dispatch_with_peer  # type: ignore[method-assign]
            self._run_in_worker = self._run_in_worker_with_peer  # type: ignore[method-assign]
        self._listener = Listener(
            self.reactor,
            parsed,
            factory,
            backlog=backlog,
            max_connections=max_connections,
            accept_backoff=accept_backoff,
            reuse_port=reuse_port,
            limits=TransportLimits(timeout=timeout),
            log=logger,
            log_accepts=bool(verbose) or logger.isEnabledFor(logging.DEBUG),
            name=type(self).__name__,
        )
        self._token = ServeToken(f"{type(self).__name__} {self._listener.address}")
        # The live counters (shared with the listener, which counts accepts, pauses and
        # timeouts); `statistics` is their public, plain-data form.
        self._stats: ServerStatistics = self._listener.stats
        #: The bound socket address, as the socket module gives it (``('127.0.0.1', 40123)``).
        self.sockaddr: Any = self._listener.sockaddr
        #: The same, under the name the stdlib's socketserver gives it.
        self.server_address: Any = self.sockaddr
        #: The bound address as text (``'127.0.0.1:40123'``, ``'unix:/path'``): what ``request()`` takes.
        self.address: str = self._listener.address
        logger.info("%s listening on %s", type(self).__name__, self.address)

    def __repr__(self) -> str:
        closed = "" if self._listener.is_serving() else " closed"
        return f"<{type(self).__name__} {self.address} active={self._stats.active}{closed}>"

    @property
    def max_connections(self) -> int:
        """Connections open at once, at most; at the limit the server stops accepting."""
        return self._listener.max_connections

    @property
    def accept_backoff(self) -> float:
        """Seconds accepting pauses after ``EMFILE``/``ENFILE``."""
        return self._listener.accept_backoff

    # ------------------------------------------------------------ hot path

    def _dispatch(self, protocol: RequestProtocol, request: bytes) -> None:
        transport = protocol.transport
        try:
            text = request.decode("utf-8")
        except UnicodeDecodeError:
            self._stats.rejected += 1
            logger.info("%s: request from %s is not valid UTF-8; closing", self.address, transport.peer)
            transport.abort()
            return
        if self._pool is not None:
            transport.pause_reading()
            transport.set_timeout(self.timeout)
            if not self._pool.submit(self._run_in_worker, protocol, text):
                self._handler_failed(protocol, "the worker pool is full", None)
            return
        try:
            reply = self.handle_request(text)
        except Exception as exc:
            self._handler_failed(protocol, "handle_request raised", exc)
            return
        if type(reply) is CoroutineType:  # an async def handle_request
            self._run_task(protocol, reply)
        else:
            self._reply(protocol, reply)

    def _reply(self, protocol: RequestProtocol, reply: Any) -> None:
        transport = protocol.transport
        if transport.state == "CLOSED":
            return
        if type(reply) is not str:
            # A reply future whose result is a coroutine; _dispatch sends an
            # async handler's coroutine straight to _run_task.
            if type(reply) is CoroutineType:
                self._run_task(protocol, reply)
                return
            if isinstance(reply, Future):
                transport.pause_reading()
                transport.set_timeout(self.timeout)
                reply.add_done_callback(lambda fut: self._on_reply_future(protocol, fut))
                return
            if not isinstance(reply, str):
                message = f"handle_request returned {type(reply).__name__}, not str"
                self._handler_failed(protocol, message, None)
                return
        try:
            data = reply.encode("utf-8")
        except UnicodeEncodeError as exc:  # e.g. a lone surrogate: the handler's fault, reported as such
            self._handler_failed(protocol, "handle_request returned a str that is not encodable as UTF-8", exc)
            return
        if len(data) > self.max_reply_size:
            self._handler_failed(
                protocol, f"the reply is {len(data)} bytes, more than max_reply_size={self.max_reply_size}", None
            )
            return
        protocol.replied = True
        transport.write(data + _CRLF)
        transport.close()

    # ------------------------------------------------------ slower paths

    def _reject_oversized(self, protocol: RequestProtocol) -> None:
        self._stats.rejected += 1
        logger.warning(
            "%s: request from %s exceeds max_request_size (%d bytes); closing",
            self.address,
            protocol.transport.peer,
            self.max_request_size,
        )
        protocol.transport.abort()

    def _handler_failed(self, protocol: RequestProtocol, message: str, exc: BaseException | None) -> None:
        self._stats.errors += 1
        transport = protocol.transport
        report_user_error(
            self.reactor,
            f"{self.address}: {message}; closing the connection from {transport.peer}",
            exc,
            handler=self.handle_request,
            server=self,
            transport=transport,
        )
        transport.abort()

    def _run_task(self, protocol: RequestProtocol, coro: Any) -> None:
        """Run the coroutine an ``async def handle_request`` returned as a task; its result is the reply.

        The first step runs here, in the callback that read the request
        (`reactor.tasks._start_eagerly`): a handler that returns without
        suspending has replied (and closed) when this returns, and no task,
        queued step or re-armed deadline timer was made for it.  Only a
        handler that suspends gets what a pending reply needs: its task held
        by the protocol (cancelled when the connection ends), reading paused
        and a fresh ``timeout``, as a `Future` reply gets them, and the
        reply is written from the task's done callback.  Measured in-process
        (a one-shot loop over socketpairs, 16 requests a turn, server CPU per
        request): an async handler that awaits nothing cost 2.1x the plain
        handler with the task started in the next turn, 1.27x with this.
        The handler's own coroutine is stepped, not a wrapper coroutine that
        awaits it and then replies: one coroutine and one frame less per
        request.
        """
        task, reply = _start_eagerly(coro, self.reactor)
        if task is None:  # returned in its first step
            self._reply(protocol, reply)
            return
        if task.done():
            self._task_done(protocol, task)
            return
        transport = protocol.transport
        if transport.state == "CLOSED":  # closed under the first step (the server's close): end the task too
            task.cancel()
            return
        if isinstance(protocol, TaskRequestProtocol):
            protocol.task = task
        transport.pause_reading()
        transport.set_timeout(self.timeout)
        task.add_done_callback(functools.partial(self._task_done, protocol))

    def _task_done(self, protocol: RequestProtocol, task: Task[Any]) -> None:
        """The handler's task ended: reply with its result, report its error, or drop the connection."""
        if task.cancelled():
            # By the connection's end (deadline, close, reset), or by someone
            # else, and then this connection gets no reply either.
            protocol.transport.abort()
            return
        exc = task.exception()
        if exc is None:
            self._reply(protocol, task.result())
        elif isinstance(exc, Exception):
            self._handler_failed(protocol, "handle_request raised", exc)
        else:
            protocol.transport.abort()

    def _on_reply_future(self, protocol: RequestProtocol, fut: Future[Any]) -> None:
        if protocol.transport.state == "CLOSED":
            return
        if fut.cancelled():
            self._handler_failed(protocol, "the reply future was cancelled", None)
            return
        exc = fut.exception()
        if exc is not None:
            self._handler_failed(protocol, "the reply future failed", exc)
            return
        self._reply(protocol, fut.result())

    def _run_in_worker(self, protocol: RequestProtocol, text: str) -> None:
        try:
            reply: Any = self.handle_request(text)
        except Exception as exc:
            self._call_in_reactor(self._handler_failed, protocol, "handle_request raised", exc)
            return
        self._call_in_reactor(self._reply, protocol, reply)

    def _call_in_reactor(self, fn: Any, *args: Any) -> None:
        try:
            self.reactor.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            pass  # the reactor was closed while the handler ran

    def _dispatch_with_peer(self, protocol: RequestProtocol, request: bytes) -> None:
        local = self._peer_local
        assert local is not None
        local.peer = protocol.transport.get_extra_info("peername")
        try:
            RequestServer._dispatch(self, protocol, request)
        finally:
            local.peer = None

    def _run_in_worker_with_peer(self, protocol: RequestProtocol, text: str) -> None:
        local = self._peer_local
        assert local is not None
        local.peer = protocol.transport.get_extra_info("peername")  # fixed since the header was read
        try:
            RequestServer._run_in_worker(self, protocol, text)
        finally:
            local.peer = None

    @property
    def current_peer(self) -> Any:
        """The client's address during a ``handle_request`` call (None outside one).

        Only with ``proxy_protocol=True``: then it is the client named by the
        balancer's PROXY header (the connection's own peer after a LOCAL
        header), in the form of ``getpeername()``, e.g. ``('203.0.113.7',
        51000)``.  It is per call and per thread (right in ``async_`` worker
        threads too); a handler that returns a `Future` reads it before
        returning.  Without a proxy it is None: the plain path keeps no
        per-request state.
        """
        local = self._peer_local
        return None if local is None else getattr(local, "peer", None)

    # ---------------------------------------------------------- the handler

    def handle_request(self, request: str) -> str | Future[str] | Coroutine[Any, Any, str]:
        """Answer one request; override it (plain or ``async def``).  The default echoes ``"Requested: " + request``."""
        return "Requested: " + request

    # ------------------------------------------------------------ lifecycle

    def statistics(self) -> dict[str, int]:
        """A snapshot of this server's counters, a plain dict (``docs/reqrep.md`` describes every key).

        Keys: accepted, active, completed, errors, timeouts, rejected,
        accept_pauses, waited, exhaustions, refused.
        """
        return self._stats.as_dict()

    @property
    def stats(self) -> ServerStatistics:
        """Deprecated: the live counters object; use `statistics`, which returns them as a dict."""
        warnings.warn("RequestServer.stats is deprecated; use statistics(), a dict of the same counters",
                      DeprecationWarning, stacklevel=2)
        return self._stats

    def connections(self) -> list[StreamTransport]:
        """The open connections of this server (rows of `Reactor.connections`)."""
        return self._listener.connections()

    def run(self) -> None:
        """Serve in the calling thread until this server is stopped (`stop`, `close`).

        Every server of the reactor is served meanwhile.  If another thread
        already runs the reactor (another server's ``run()``, or the `start`
        thread), this call waits until this server is stopped, and takes the
        serving over if that thread's server is stopped first.  It also
        returns when the reactor itself is stopped (`Reactor.stop`).
        """
        self._check_open()
        serve_until_stopped(self.reactor, self._token)

    def start(self) -> threading.Thread | None:
        """Serve in a background thread (one thread per reactor, shared by its started servers).

        The thread ends when the last server it serves is stopped.  Returns
        that thread, or None if a plain `Reactor.run` already runs the reactor.
        """
        self._check_open()
        thread = start_background(self.reactor, self._token)
        if thread is not None:
            self._serving_thread = thread
        return thread

    def stop(self, grace: float = 0.0) -> None:
        """End this server; the reactor and its other servers go on.  Safe from any thread; idempotent.

        The listening socket is closed at once (the port is free again, a
        Unix path is unlinked, new clients are refused), idle connections
        are closed, requests in flight get ``grace`` seconds to finish and
        the rest is then closed.  `run` returns (and the `start` thread ends
        if this was its last server) once that is done.
        """
        if self._stopping:
            return
        self._stopping = True
        call_in_reactor_thread(self.reactor, lambda: self._stop_in_reactor(grace))

    def _stop_in_reactor(self, grace: float) -> None:
        if self.reactor.is_closed():
            stop_serving(self.reactor, self._token)
            return
        done = self._listener.shutdown(grace)
        done.add_done_callback(lambda _: self._stopped())

    def _stopped(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        stop_serving(self.reactor, self._token)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the background thread started by `start()` to end."""
        join_background(self.reactor, timeout)

    def stop_accepting(self) -> None:
        """Close nothing, but accept no new connections (the socket stays open)."""
        self._listener.stop_accepting()

    def drain(self, grace: float | None = None) -> Future[None]:
        """Shut down gracefully: a future that completes when no connection of this server is left.

        The listening socket is closed at once (late clients are refused),
        idle connections are closed at once, requests in flight finish
        within ``grace`` seconds (default: ``timeout``) and the rest are
        then closed.  Call it from the reactor's thread.
        """
        return self._listener.shutdown(self.timeout if grace is None else grace)

    def close(self, timeout: float = 5.0) -> None:
        """Stop serving, close every open connection of this server and the listener; idempotent.

        Safe from any thread.  From a thread other than the reactor's while
        the reactor runs (``with server: server.start(); ...``), the close is
        done by the reactor's thread -- only it may close a socket it may be
        waiting on -- and this call waits for it (at most ``timeout``
        seconds), then for the `start` thread to end if this server started
        it and no other started server still needs it.
        """
        self._stopping = True
        if not run_in_reactor_thread(self.reactor, self._close_in_reactor, timeout):
            return
        thread = self._serving_thread
        if thread is not None and thread is not threading.current_thread() and not serving_started(self.reactor):
            self._serving_thread = None
            thread.join(timeout)
            if thread.is_alive():
                logger.warning("%s: the serving thread did not end within %s s", self.address, timeout)

    def _close_in_reactor(self) -> None:
        stop_serving(self.reactor, self._token)
        self._listener.close()  # idempotent, and aborts what a graceful stop left running
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _check_open(self) -> None:
        if self._listener.socket.fileno() < 0:
            raise RuntimeError(f"{type(self).__name__} at {self.address} is closed")

    def __enter__(self) -> RequestServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        listener = getattr(self, "_listener", None)
        if listener is not None and listener.socket.fileno() >= 0:
            warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=2, source=self)


_verbose_handler: logging.Handler | None = None


class Drainable(Protocol):
    """A server that shuts down gracefully: `RequestServer`, or a worker's server."""

    def drain(self, grace: float) -> Future[None]:
        """A future that completes when the server has finished its connections (within ``grace`` s)."""
        ...


def stop_when_drained(reactor: Reactor, servers: Sequence[Drainable], grace: float) -> None:
    """Drain every server within ``grace`` seconds, then stop ``reactor``.

    The reactor stops when the last drain completes, at once when there is
    no server, and a second after ``grace`` at the latest (a drain that
    overruns it).  Call it from the reactor's thread.  The command line's
    ``serve`` and each worker process shut down through it.
    """
    drains = [server.drain(grace) for server in servers]
    if not drains:
        reactor.stop()
        return
    reactor.call_later(grace + 1.0, reactor.stop)
    remaining = len(drains)

    def one_done(_: Future[None]) -> None:
        nonlocal remaining
        remaining -= 1
        if remaining == 0:
            reactor.stop()

    for fut in drains:
        fut.add_done_callback(one_done)


def _make_verbose_visible() -> None:
    """As in yoton, ``verbose`` shows accepted connections on the console.

    If the application configured logging, that configuration decides;
    otherwise a stderr handler is attached to this module's logger once.
    """
    global _verbose_handler
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    if _verbose_handler is None and not logging.getLogger().handlers and not logger.handlers:
        _verbose_handler = logging.StreamHandler(sys.stderr)
        _verbose_handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        logger.addHandler(_verbose_handler)
