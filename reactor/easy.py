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
`create_thread` is still there for code that really wants one, and `send` is
safe from any thread.

*Oversize datagrams.*  ``recvfrom(n)`` silently cuts a longer datagram to
``n`` bytes (socketserver's 8192-byte ``max_packet_size`` bites people).  We
read with ``recvmsg_into`` and look at ``MSG_TRUNC``: a datagram longer than
``receive_size`` is counted, logged and dropped, never handed over cut.

*Floods.*  A readiness event is a hint that *some* datagrams wait; we read
until ``EAGAIN`` but at most `max_datagrams_per_read` per event, so a flood on
one socket cannot starve timers or the other sockets of the reactor.  What the
kernel throws away when the receive buffer is full is not invisible: on Linux
``SO_RXQ_OVFL`` makes the kernel attach its drop counter to the next datagram
we read, and `statistics` reports it (None where the option does not exist).

*Sending.*  ``sendto`` on a non-blocking socket is tried at once; only if the
kernel says ``EAGAIN`` is the datagram queued (a bounded queue; overflow is
counted) and a writer registered until the queue is empty.  Threads never
touch the socket or the queue: a `send` from another thread is handed to the
reactor with ``call_soon_threadsafe``.

*Peer faults are not fatal.*  A datagram that is not valid UTF-8 is logged and
dropped; a handler that raises is logged with its traceback; a socket error on
one datagram (an ICMP "port unreachable" reported late) is counted.  The
server goes on in every case.

*threaded=True* hands each datagram to a bounded pool of worker threads with a
bounded backlog (`max_pending`); when the backlog is full the datagram is
counted as ``dropped_busy`` -- one thread per datagram, as easyservers did, is
an open door to running out of memory.

The module is longer than most because it is one whole surface (server,
client, timers, threads, counters) that users import as a unit; the server
and the client share one class, so nothing is written twice.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import socket
import sys
import threading
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self

from .addresses import format_address
from .background import background_thread, start_background
from .core import Reactor, TimerHandle, get_default_reactor

__all__ = [
    "UDPClient",
    "UDPServer",
    "UDPStatistics",
    "after",
    "create_thread",
    "every",
]

logger = logging.getLogger("reactor.easy")

#: A socket address as the socket module gives it: ``(host, port)`` for IPv4,
#: ``(host, port, flowinfo, scope_id)`` for IPv6.
Address = tuple[Any, ...]
#: ``send(message, address)``: what handlers receive to reply with.
SendFunction = Callable[[str | bytes, Address], None]

_SO_RXQ_OVFL: int | None = getattr(socket, "SO_RXQ_OVFL", 40 if sys.platform == "linux" else None)
_MSG_TRUNC: int = getattr(socket, "MSG_TRUNC", 0)


@dataclass(frozen=True, slots=True)
class UDPStatistics:
    """A snapshot of a UDP endpoint's counters (see `UDPServer.statistics`)."""

    #: Datagrams read from the socket (including those dropped below).
    received: int
    #: Datagrams handed to the handler (or to the worker pool).
    handled: int
    #: Datagrams handed to the kernel by `send`.
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
    interval: float, function: Callable[..., object], *args: Any, reactor: Reactor | None = None
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
    delay: float, function: Callable[..., object], *args: Any, reactor: Reactor | None = None
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


_in_worker = threading.local()


class _DatagramEndpoint:
    """What a UDP server and a UDP client share: socket, reading, sending, running."""

    #: At most this many datagrams are read per readiness event.
    max_datagrams_per_read = 64

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
        self.receive_size = receive_size
        self.send_queue_size = send_queue_size
        self.threaded = threaded
        self._reactor = reactor if reactor is not None else get_default_reactor()
        self._closed = False
        self._driver_thread = threading.get_ident()
        self._buffer = bytearray(receive_size)
        self._view = memoryview(self._buffer)
        self._send_queue: deque[tuple[bytes, Address]] = deque()
        self._writing = False
        self._received = self._handled = self._sent = 0
        self._dropped_decode = self._truncated = self._dropped_busy = 0
        self._send_dropped = self._errors = 0
        self._worker_errors = 0
        self._worker_lock = threading.Lock()
        self._kernel_drops: int | None = None
        self._ancillary_size = 0
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._slots: threading.BoundedSemaphore | None = None
        if threaded:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=max_workers, thread_name_prefix="easy-worker"
            )
            self._slots = threading.BoundedSemaphore(max_pending)

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
                    pass
                else:
                    self._kernel_drops = 0
                    self._ancillary_size = socket.CMSG_SPACE(4)
            try:
                sock.bind((host, port))
            except OSError as exc:
                where = format_address(family, (host, port))
                raise OSError(exc.errno, f"cannot bind UDP {where}: {exc.strerror}") from exc
            if self._reactor.thread_ident not in (None, threading.get_ident()):
                # Created while another thread runs the reactor: register from there.
                self._reactor.call_soon_threadsafe(self._reactor.add_reader, sock, self._on_readable)
            else:
                self._reactor.add_reader(sock, self._on_readable)
        except BaseException:
            sock.close()
            if self._executor is not None:
                self._executor.shutdown(wait=False)
            raise
        #: The UDP socket (non-blocking, registered with the reactor).
        self.socket = sock

    def __repr__(self) -> str:
        state = "closed" if self._closed else format_address(self.socket.family, self.address)
        return f"<{type(self).__name__} {state}>"

    # --------------------------------------------------------------- properties

    @property
    def reactor(self) -> Reactor:
        """The reactor this endpoint is registered with."""
        return self._reactor

    @property
    def address(self) -> Address:
        """The bound address, e.g. ``("127.0.0.1", 40123)`` (the real port if 0 was asked)."""
        return tuple(self.socket.getsockname())

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self.address[1])

    @property
    def closed(self) -> bool:
        """True once `close` was called."""
        return self._closed

    def statistics(self) -> UDPStatistics:
        """A snapshot of the counters (received, sent, drops by reason, errors, kernel drops)."""
        with self._worker_lock:
            worker_errors = self._worker_errors
        return UDPStatistics(
            received=self._received,
            handled=self._handled,
            sent=self._sent,
            dropped_decode=self._dropped_decode,
            truncated=self._truncated,
            dropped_busy=self._dropped_busy,
            send_dropped=self._send_dropped,
            errors=self._errors + worker_errors,
            kernel_drops=self._kernel_drops,
            send_queue=len(self._send_queue),
        )

    # -------------------------------------------------------------- receiving

    def _on_readable(self) -> None:
        self._driver_thread = threading.get_ident()
        recvmsg_into = self.socket.recvmsg_into
        buffer = self._buffer
        buffers = [buffer]
        view = self._view
        ancillary_size = self._ancillary_size
        encoding = self.encoding
        executor = self._executor
        handle = self.handle
        send = self.send
        takes_send = self._handler_takes_send
        for _ in range(self.max_datagrams_per_read):
            try:
                nbytes, ancillary, flags, address = recvmsg_into(buffers, ancillary_size)
            except BlockingIOError:
                return
            except OSError as exc:
                if self._closed:
                    return
                # e.g. a late ICMP "port unreachable": about one datagram, not the socket.
                self._errors += 1
                logger.debug("%r: receive error %s; going on", self, exc)
                continue
            self._received += 1
            if ancillary:
                self._read_ancillary(ancillary)
            if flags & _MSG_TRUNC:
                self._truncated += 1
                logger.warning(
                    "%r: dropped a datagram from %s longer than receive_size=%d bytes",
                    self, address, self.receive_size,
                )
                continue
            message: str | bytes
            if encoding is None:
                message = bytes(view[:nbytes])
            else:
                try:
                    message = buffer[:nbytes].decode(encoding)
                except UnicodeDecodeError as exc:
                    self._dropped_decode += 1
                    logger.info("%r: dropped a datagram from %s that is not %s: %s",
                                self, address, encoding, exc)
                    continue
            if executor is not None:
                assert self._slots is not None
                if not self._slots.acquire(blocking=False):
                    self._dropped_busy += 1
                    logger.debug("%r: worker backlog full; dropped a datagram from %s",
                                 self, address)
                    continue
                self._handled += 1
                executor.submit(self._handle_in_worker, message, address)
                continue
            self._handled += 1
            try:
                if takes_send:
                    handle(message, address, send)
                else:
                    handle(message, address)
            except Exception:
                self._errors += 1
                logger.exception("%r: handler %r failed on a datagram from %s",
                                 self, handle, address)
            if self._closed:
                return

    def _read_ancillary(self, ancillary: list[tuple[int, int, bytes]]) -> None:
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == _SO_RXQ_OVFL and len(data) >= 4:
                drops = int.from_bytes(data[:4], sys.byteorder)
                if drops != self._kernel_drops:
                    logger.debug("%r: the kernel has dropped %d datagrams so far", self, drops)
                self._kernel_drops = drops

    def _handle_in_worker(self, message: str | bytes, address: Address) -> None:
        _in_worker.active = True
        try:
            if self._handler_takes_send:
                self.handle(message, address, self.send)
            else:
                self.handle(message, address)
        except Exception:
            with self._worker_lock:
                self._worker_errors += 1
            logger.exception("%r: handler %r failed on a datagram from %s",
                             self, self.handle, address)
        finally:
            assert self._slots is not None
            self._slots.release()

    # ---------------------------------------------------------------- sending

    def _in_reactor_thread(self) -> bool:
        # The thread that runs the reactor: the one inside run() if any, else a
        # start() thread about to enter run(), else the one that last drove our
        # reader (an embedding host), else our creator.
        owner = self._reactor.thread_ident
        if owner is None:
            thread = background_thread(self._reactor)
            owner = thread.ident if thread is not None else self._driver_thread
        return threading.get_ident() == owner

    def send(self, message: str | bytes, address: Address) -> None:
        """Send ``message`` (``bytes``, or ``str`` encoded with ``encoding``, UTF-8
        by default and when ``encoding`` is None) to ``address``.

        Never blocks, and is safe from any thread (worker, `create_thread`).
        If the kernel cannot take the datagram now it is queued and sent when
        the socket is writable; if the queue is full it is dropped and counted.
        """
        if isinstance(message, str):
            data = message.encode(self.encoding or "utf-8")
        elif isinstance(message, (bytes, bytearray, memoryview)):
            data = bytes(message)
        else:
            raise TypeError(f"send() takes str or bytes, got {type(message).__name__}")
        if self._in_reactor_thread():
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
        if not queue:
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

    # ------------------------------------------------------------ side tasks

    def every(self, interval: float, function: Callable[..., object], *args: Any) -> TimerHandle:
        """Call ``function(*args)`` every ``interval`` seconds on this reactor; no thread."""
        return self._reactor.call_every(interval, function, *args)

    def after(self, delay: float, function: Callable[..., object], *args: Any) -> TimerHandle:
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

    def run(self) -> None:
        """Serve in the calling thread until `stop` (from a handler, a timer, or a thread)."""
        self._check_open()
        self._reactor.run()

    def start(self) -> threading.Thread | None:
        """Serve in a background daemon thread; return it.

        Every endpoint on the same reactor shares one thread: a second
        ``start()`` returns the thread already running.  Returns None if the
        reactor is already run by someone else's ``run()``.
        """
        self._check_open()
        return start_background(self._reactor, name="easy-reactor")

    def stop(self, timeout: float | None = 5.0) -> None:
        """Make `run` return, or end the `start` thread (waiting up to ``timeout`` s).

        This stops the reactor, so every endpoint sharing it stops serving.
        Safe from any thread; from another thread the stop is queued behind
        the `send` calls that thread made before, so they go out first.  A
        no-op when nothing is running.
        """
        reactor = self._reactor
        thread = background_thread(reactor)
        if thread is not None:
            self._stop_reactor()
            if thread is not threading.current_thread():
                thread.join(timeout)
                if thread.is_alive():
                    logger.warning("%r: the reactor thread did not stop within %s s", self, timeout)
        elif reactor.is_running():
            self._stop_reactor()

    def _stop_reactor(self) -> None:
        reactor = self._reactor
        if reactor.thread_ident == threading.get_ident():
            reactor.stop()
            return
        try:
            reactor.call_soon_threadsafe(reactor.stop)
        except RuntimeError:  # closed meanwhile: nothing runs any more
            pass

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed; create a new one")

    def close(self) -> None:
        """Unregister and close the socket, and shut the worker pool down; idempotent.

        The reactor itself is left open (it may serve others).  Waits for
        handlers already running in workers; queued ones are cancelled.
        """
        if self._closed:
            return
        reactor = self._reactor
        if reactor.is_running() and not self._in_reactor_thread():
            # Only the reactor's thread may touch its registrations.
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
        if self._executor is not None:
            self._executor.shutdown(
                wait=not getattr(_in_worker, "active", False), cancel_futures=True
            )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        self.close()

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        if not getattr(self, "_closed", True) and hasattr(self, "socket"):
            _warn(f"unclosed {type(self).__name__}", ResourceWarning, source=self)
            self._closed = True
            with contextlib.suppress(OSError):
                self.socket.close()


class UDPServer(_DatagramEndpoint):
    """A UDP server that calls ``handle_function(message, address, send)`` per datagram.

    ``UDPServer(handle_function, port=8181, threaded=False, *, host="0.0.0.0",
    reactor=None, ...)`` binds at once (port 0: any free port, see `address`)
    and registers with ``reactor`` (default: `get_default_reactor`).

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
        host: str = "0.0.0.0",
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

    Binds ``host`` (default all interfaces) on a free port at once.  Replies
    are handled on the reactor (call `start` to serve it in a background
    thread, or drive the reactor yourself).  Same options and counters as
    `UDPServer`, without the worker pool.
    """

    _handler_takes_send = False

    def __init__(
        self,
        handle_function: Callable[[Any, Address], object],
        *,
        host: str = "0.0.0.0",
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
