"""The easy way: a UDP server from one function, with timers instead of threads.

The python-easyservers surface, rebuilt on the reactor::

    def handle(message, address, send):
        send("echo: " + message, address)

    server = UDPServer(handle, port=8181)
    server.every(10.0, ping_clients, server)   # a side task, no thread
    server.run()

What can go wrong with a tiny UDP server, and what we chose
-----------------------------------------------------------
*Side tasks.*  easyservers runs them in threads (``create_thread``) that
sleep between beats and share the server's state without a lock.  Here they
are reactor timers (`every`, `after`): they run in the same thread as the
handler, between datagrams, so they need no lock and cost no thread.
`create_thread` is still there for code that really wants one, and
`UDPServer.send` is safe from any thread.

*The socket.*  Everything about the socket itself -- reading at most
`max_datagrams_per_read` datagrams per readiness event, dropping (and
counting) datagrams longer than ``receive_size`` instead of handing them over
cut, the kernel's own drop counter, the bounded send queue behind a
``sendto`` that is tried at once, and a ``send`` that is safe from any thread
-- is `reactor.transport.datagram.DatagramEndpoint`'s, and its module says
why.  This module decodes datagrams, calls the handler and runs the server.

*Peer faults are not fatal.*  A datagram that is not valid UTF-8 is logged and
dropped; a handler that raises is reported like any failing callback (the
reactor's exception handler: by default logged with its traceback); a socket
error on one datagram (an ICMP "port unreachable" reported late) is counted.
The server goes on in every case.

*threaded=True* hands each datagram to a `reactor.transport.threads.WorkerPool`:
a bounded pool of worker threads with a bounded backlog (`max_pending`); when
the backlog is full the datagram is counted as ``dropped_busy`` -- one thread
per datagram, as easyservers did, is an open door to running out of memory.

The module is longer than most because it is one whole surface (server,
client, timers, threads, counters) that users import as a unit; the server
and the client share one class, so nothing is written twice.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any, Self, TypedDict, TypeVarTuple

from .core import Reactor, TimerHandle, get_default_reactor
from .transport.datagram import Address, DatagramEndpoint
from .transport.errors import report_user_error
from .transport.threads import (
    ServeToken,
    WorkerPool,
    background_thread,
    in_reactor_thread,
    run_in_reactor_thread,
    serve_until_stopped,
    serving_started,
    start_background,
    stop_serving,
)

__all__ = [
    "UDPClient",
    "UDPServer",
    "UDPStatistics",
    "after",
    "create_thread",
    "every",
]

logger = logging.getLogger("reactor.easy")

#: The default ``host`` of servers and clients: this machine only.  Every
#: interface (``"0.0.0.0"``) exposes a server to every network the machine is
#: on, so it is never a default; pass it explicitly.
LOOPBACK = "127.0.0.1"

#: The arguments of a side task: ``every(1.0, f, "a")`` type-checks only if ``f("a")`` does.
Ts = TypeVarTuple("Ts")

#: ``send(message, address)``: what handlers receive to reply with.
SendFunction = Callable[[str | bytes, Address | str], None]


class UDPStatistics(TypedDict):
    """What `UDPServer.statistics` and `UDPClient.statistics` return: a plain dict of these keys.

    A dict, like every ``statistics()`` of the package (`Reactor`, the
    stream and request servers), so it goes to JSON or a snapshot as it is;
    this class only names and types its keys.
    """

    #: Datagrams read from the socket (including those dropped below).
    received: int
    #: Datagrams handed to the handler (or to the worker pool).
    handled: int
    #: Datagrams handed to the kernel by ``send``.
    sent: int
    #: Datagrams dropped because they were not valid in the encoding.
    dropped_decode: int
    #: Datagrams dropped because they were longer than ``receive_size``.
    truncated: int
    #: Datagrams dropped because the worker backlog was full (``threaded=True``).
    dropped_busy: int
    #: Outgoing datagrams dropped: send queue full, or ``sendto`` failed.
    send_dropped: int
    #: Handler exceptions plus socket errors on receive.
    errors: int
    #: Datagrams the kernel dropped for lack of receive buffer, as last
    #: reported by the kernel (``SO_RXQ_OVFL``); None where not available.
    kernel_drops: int | None
    #: Outgoing datagrams waiting for the socket to become writable.
    send_queue: int


def every(
    interval: float, function: Callable[[*Ts], object], *args: *Ts, reactor: Reactor | None = None
) -> TimerHandle:
    """Call ``function(*args)`` every ``interval`` seconds on a reactor; no thread.

    The first call is one interval from now.  Runs on ``reactor`` (default:
    `get_default_reactor`); cancel the returned handle to stop.  Call it from
    the reactor's thread (or before the reactor runs).
    """
    return (reactor if reactor is not None else get_default_reactor()).call_every(
        interval, function, *args
    )


def after(
    delay: float, function: Callable[[*Ts], object], *args: *Ts, reactor: Reactor | None = None
) -> TimerHandle:
    """Call ``function(*args)`` once, ``delay`` seconds from now, on a reactor; no thread."""
    return (reactor if reactor is not None else get_default_reactor()).call_later(
        delay, function, *args
    )


def create_thread(
    function: Callable[..., object],
    args: tuple[Any, ...] | list[Any] = (),
    kwargs: dict[str, Any] | None = None,
    start: bool = True,
) -> threading.Thread:
    """Run ``function(*args, **kwargs)`` in a new daemon thread, as easyservers does.

    The thread is started unless ``start=False``.  Prefer `every`/`after` for
    periodic side tasks: they need no thread and no lock.
    """
    thread = threading.Thread(
        target=function,
        args=tuple(args),
        kwargs=dict(kwargs or {}),
        name=f"easy-{getattr(function, '__name__', 'thread')}",
        daemon=True,
    )
    if start:
        thread.start()
    return thread


class _DatagramEndpoint(DatagramEndpoint):
    """What a UDP server and a UDP client share: decoding, the handler, threads, running.

    The socket side (bind, bounded reads, truncation, the send queue,
    thread-safe `send`, close) is `reactor.transport.datagram.DatagramEndpoint`;
    this subclass turns each datagram into a message and calls the handler.
    """

    _handler_takes_send = True

    def __init__(
        self,
        handle_function: Callable[..., object],
        host: str,
        port: int,
        *,
        reactor: Reactor | None,
        encoding: str | None,
        receive_size: int,
        send_queue_size: int,
        receive_buffer: int | None,
        threaded: bool = False,
        max_workers: int = 8,
        max_pending: int = 1024,
    ) -> None:
        if not callable(handle_function):
            raise TypeError(f"handle_function must be callable, got {handle_function!r}")
        if receive_size < 1 or send_queue_size < 0 or max_workers < 1 or max_pending < 1:
            raise ValueError(
                "receive_size, max_workers and max_pending must be >= 1, send_queue_size >= 0"
            )
        self.handle = handle_function
        self.encoding = encoding
        self.threaded = threaded
        self._token: ServeToken | None = None
        self._handled = self._dropped_decode = self._dropped_busy = self._errors = 0
        self._worker_errors = 0
        self._worker_lock = threading.Lock()
        # The pool exists before the socket is registered: a datagram may be
        # read (on a reactor running in another thread) as soon as it is.
        self._pool = (
            WorkerPool(max_workers, max_pending, thread_name_prefix="easy-worker") if threaded else None
        )
        try:
            super().__init__(
                reactor if reactor is not None else get_default_reactor(),
                host,
                port,
                receive_size=receive_size,
                receive_buffer=receive_buffer,
                send_queue_size=send_queue_size,
            )
        except BaseException:
            if self._pool is not None:
                self._pool.shutdown(wait=False)
            raise
        self._view = memoryview(self._buffer)

    # --------------------------------------------------------------- properties

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self.sockaddr[1])

    @property
    def _executor(self) -> WorkerPool | None:
        # The worker pool under its former name (tests reach for it).
        return self._pool

    def statistics(self) -> UDPStatistics:
        """A snapshot of the counters, a dict (keys: `UDPStatistics`): received, sent, drops by reason, errors."""
        counters = self.counters()
        with self._worker_lock:
            worker_errors = self._worker_errors
        return {
            "received": counters.received,
            "handled": self._handled,
            "sent": counters.sent,
            "dropped_decode": self._dropped_decode,
            "truncated": counters.truncated,
            "dropped_busy": self._dropped_busy,
            "send_dropped": counters.send_dropped,
            "errors": self._errors + counters.receive_errors + worker_errors,
            "kernel_drops": counters.kernel_drops,
            "send_queue": counters.send_queue,
        }

    # -------------------------------------------------------------- receiving

    def datagram_received(self, buffer: bytearray, nbytes: int, address: Address) -> None:
        """Decode one datagram and hand it to the handler (inline or in the pool)."""
        message: str | bytes
        encoding = self.encoding
        if encoding is None:
            message = bytes(self._view[:nbytes])
        else:
            try:
                message = buffer[:nbytes].decode(encoding)
            except UnicodeDecodeError as exc:
                self._dropped_decode += 1
                logger.info("%r: dropped a datagram from %s that is not %s: %s",
                            self, address, encoding, exc)
                return
        pool = self._pool
        if pool is not None:
            if not pool.submit(self._handle_in_worker, message, address):
                self._dropped_busy += 1
                logger.debug("%r: worker backlog full; dropped a datagram from %s", self, address)
                return
            self._handled += 1
            return
        self._handled += 1
        handle = self.handle
        try:
            if self._handler_takes_send:
                handle(message, address, self.send)
            else:
                handle(message, address)
        except Exception as exc:
            self._errors += 1
            report_user_error(self._reactor, f"{self!r}: handler failed on a datagram from {address}", exc,
                              handler=handle, address=address)

    def _handle_in_worker(self, message: str | bytes, address: Address) -> None:
        # Counted here under a lock; reported on the reactor's thread, through
        # its exception handler like every other failure of user code (the
        # handler may assume that thread).
        try:
            if self._handler_takes_send:
                self.handle(message, address, self.send)
            else:
                self.handle(message, address)
        except Exception as exc:
            with self._worker_lock:
                self._worker_errors += 1
            message_text = f"{self!r}: handler failed in a worker on a datagram from {address}"
            try:
                self._reactor.call_soon_threadsafe(
                    functools.partial(
                        report_user_error, self._reactor, message_text, exc, handler=self.handle, address=address
                    )
                )
            except RuntimeError:  # the reactor is closed: nobody else can report it
                logger.error("%s", message_text, exc_info=(type(exc), exc, exc.__traceback__))

    # ---------------------------------------------------------------- sending

    def send(self, message: str | bytes | bytearray | memoryview, address: Address | str) -> None:
        """Send ``message`` (``bytes``, or ``str`` encoded with ``encoding``, UTF-8
        by default and when ``encoding`` is None) to ``address``: the sender's
        address a handler was given, or an address string such as another
        endpoint's `address` (``'127.0.0.1:8181'``).

        Never blocks, and is safe from any thread (worker, `create_thread`).
        If the kernel cannot take the datagram now it is queued and sent when
        the socket is writable; if the queue is full it is dropped and counted.
        """
        if isinstance(message, str):
            message = message.encode(self.encoding or "utf-8")
        elif not isinstance(message, (bytes, bytearray, memoryview)):
            raise TypeError(f"send() takes str or bytes, got {type(message).__name__}")
        super().send(message, address)  # socket-ok: the transport layer's DatagramEndpoint.send

    # ------------------------------------------------------------ side tasks

    def every(self, interval: float, function: Callable[[*Ts], object], *args: *Ts) -> TimerHandle:
        """Call ``function(*args)`` every ``interval`` seconds on this reactor; no thread."""
        return self._reactor.call_every(interval, function, *args)

    def after(self, delay: float, function: Callable[[*Ts], object], *args: *Ts) -> TimerHandle:
        """Call ``function(*args)`` once, ``delay`` seconds from now, on this reactor."""
        return self._reactor.call_later(delay, function, *args)

    def create_thread(
        self,
        function: Callable[..., object],
        args: tuple[Any, ...] | list[Any] = (),
        kwargs: dict[str, Any] | None = None,
        start: bool = True,
    ) -> threading.Thread:
        """`create_thread` as a method, as in easyservers (`send` is thread-safe)."""
        return create_thread(function, args, kwargs, start)

    # ---------------------------------------------------------------- running

    def _serve_token(self) -> ServeToken:
        # A token per serving period: stop() ends one, a later run()/start() begins the next.
        token = self._token
        if token is None or token.stopped():
            token = self._token = ServeToken(repr(self))
        return token

    def run(self) -> None:
        """Serve in the calling thread until `stop` (from a handler, a timer, or a thread).

        Other servers of the same reactor are served too.  If another thread
        already runs the reactor (its own server's ``run()``), this one waits
        until this endpoint is stopped, and takes over the serving if that
        thread's server is stopped first.
        """
        self._check_open()
        serve_until_stopped(self._reactor, self._serve_token())

    def start(self) -> threading.Thread | None:
        """Serve in a background daemon thread; return it.

        Every endpoint on the same reactor shares one thread: a second
        ``start()`` returns the thread already running, and the thread ends
        when the last started endpoint is stopped.  Returns None if the
        reactor is already run by someone else's ``run()``.
        """
        self._check_open()
        return start_background(self._reactor, self._serve_token(), name="easy-reactor")

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop serving this endpoint: its `run` returns, and the `start` thread ends if it served only this.

        The reactor and the other endpoints and servers on it go on.  Safe
        from any thread; from another thread the stop is queued behind the
        `send` calls that thread made before, so they go out first, and it
        waits up to ``timeout`` s for the stop (and for the background
        thread, when this was its last endpoint).  A no-op when nothing runs.
        The socket stays open until `close` (a later `run` serves again).
        """
        token = self._token
        if token is None or token.stopped():
            return
        reactor = self._reactor
        if in_reactor_thread(reactor):
            stop_serving(reactor, token)
            return
        # Looked up before the stop: a background thread forgets itself as it
        # leaves, some time before it has ended, and then could not be joined.
        thread = background_thread(reactor)
        try:
            reactor.call_soon_threadsafe(stop_serving, reactor, token)
        except RuntimeError:  # closed meanwhile: nothing runs any more
            stop_serving(reactor, token)
            return
        if not token._stopped.wait(timeout):
            logger.warning("%r: the reactor thread did not stop serving within %s s", self, timeout)
            return
        if thread is not None and thread is not threading.current_thread() and not serving_started(reactor):
            thread.join(timeout)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed; create a new one")

    def close(self, timeout: float = 5.0) -> None:
        """Unregister and close the socket, and shut the worker pool down; idempotent.

        Safe from any thread: from another thread while the reactor runs, the
        socket is closed by the reactor's thread and this call waits for it
        (at most ``timeout`` seconds).  The reactor itself is left open (it
        may serve others).  Waits for handlers already running in workers;
        queued ones are cancelled.
        """
        if self._closed:
            return
        if not run_in_reactor_thread(self._reactor, super().close, timeout) or not self._closed:
            return
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        self.close()


class UDPServer(_DatagramEndpoint):
    """A UDP server that calls ``handle_function(message, address, send)`` per datagram.

    ``UDPServer(handle_function, port=8181, threaded=False, *, host="127.0.0.1",
    reactor=None, ...)`` binds at once (port 0: any free port, see `address`)
    and registers with ``reactor`` (default: `get_default_reactor`).

    - ``host`` is loopback by default: only programs on this machine can
      reach the server.  ``host="0.0.0.0"`` (every interface) exposes it on
      every network the machine is on -- a choice to make on purpose
      (easyservers bound every interface without asking).

    - ``message`` is a ``str`` decoded with ``encoding`` (default UTF-8;
      ``encoding=None`` hands over ``bytes``).  Undecodable datagrams and
      datagrams longer than ``receive_size`` are counted, logged and dropped.
    - ``send(message, address)`` accepts ``str`` or ``bytes``; `send` is the
      same function as a method.
    - ``threaded=True``: handlers run in a pool of ``max_workers`` threads with
      at most ``max_pending`` datagrams waiting or running; more are dropped
      and counted (``dropped_busy``).
    - ``receive_buffer`` sets ``SO_RCVBUF`` (bytes); ``send_queue_size`` bounds
      the datagrams queued while the kernel says ``EAGAIN``.

    Methods for the caller: `send`, `every`, `after`, `create_thread`, `run`,
    `start`, `stop`, `close`, `statistics`; a context manager (stop + close).
    Call `every`, `after` and `close` from the reactor's thread (or before it
    runs); `send` and `stop` from anywhere.
    """

    _handler_takes_send = True

    def __init__(
        self,
        handle_function: Callable[[Any, Address, SendFunction], object],
        port: int = 8181,
        threaded: bool = False,
        *,
        host: str = LOOPBACK,
        reactor: Reactor | None = None,
        encoding: str | None = "utf-8",
        receive_size: int = 65535,
        receive_buffer: int | None = None,
        send_queue_size: int = 1024,
        max_workers: int = 8,
        max_pending: int = 1024,
    ) -> None:
        super().__init__(
            handle_function,
            host,
            port,
            reactor=reactor,
            encoding=encoding,
            receive_size=receive_size,
            send_queue_size=send_queue_size,
            receive_buffer=receive_buffer,
            threaded=threaded,
            max_workers=max_workers,
            max_pending=max_pending,
        )


class UDPClient(_DatagramEndpoint):
    """A UDP client: `send` datagrams anywhere; replies go to ``handle_function(message, address)``.

    Binds ``host`` on a free port at once: loopback by default, which reaches
    servers on this machine only; to talk to other machines bind
    ``host="0.0.0.0"`` (or this machine's address on that network), so that
    their replies can come in.  Replies are handled on the reactor (call `start` to serve it in a background
    thread, or drive the reactor yourself).  Same options and counters as
    `UDPServer`, without the worker pool.
    """

    _handler_takes_send = False

    def __init__(
        self,
        handle_function: Callable[[Any, Address], object],
        *,
        host: str = LOOPBACK,
        port: int = 0,
        reactor: Reactor | None = None,
        encoding: str | None = "utf-8",
        receive_size: int = 65535,
        receive_buffer: int | None = None,
        send_queue_size: int = 1024,
    ) -> None:
        super().__init__(
            handle_function,
            host,
            port,
            reactor=reactor,
            encoding=encoding,
            receive_size=receive_size,
            send_queue_size=send_queue_size,
            receive_buffer=receive_buffer,
        )
