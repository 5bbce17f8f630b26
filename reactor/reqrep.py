"""RequestServer: yoton's request/reply server, many per thread, on one reactor.

Wire format (server side): read until the first ``\\r\\n`` or EOF; call
``handle_request(request)`` with the terminator removed; send the reply and
``\\r\\n``; close.  One connection, one request.

The hot path
------------
A one-shot request costs the kernel ~21 µs; the budget for everything we do
on top is about 10 µs (``shared`` performance notes).  So the path is short
and written out by hand:

1. The listener is readable: ``accept()`` in a loop until ``EAGAIN`` (bounded
   per readiness so one busy listener cannot starve others).
2. For each new socket, ``recv`` at once: on loopback the request is nearly
   always there already, and then the connection is never registered with
   the selector at all.
3. Find the terminator (`split_request`), decode, call the handler, encode,
   ``send`` once, and close.  Only a reply that does not fit the socket
   buffer gets a writer registration and an output buffer.

Every connection still gets its row in `Reactor.connections` for the time it
is open (a dict insert and a delete): the table is the one source of truth
for limits, timeouts and shutdown.  A request that has not arrived yet puts
its row in ``READING`` with a reader registration and a deadline.

Deadlines: every connection of a server has the same timeout, so deadlines
are created in increasing order; the server keeps its waiting rows in a FIFO
and one timer for the oldest, instead of one heap timer per connection.  A
deadline that was pushed back (a slow but progressing writer) is re-queued
when it comes up, which keeps the FIFO sorted.  The deadline counts from
accept and is not reset by incoming bytes, so a slowloris client that drips a
byte a second is closed like a silent one.

Limits, all per server: ``max_request_size`` (oversized requests are
rejected, counted and logged), ``timeout``, ``max_connections`` (the
listener stops accepting and resumes below the limit, so the kernel backlog
absorbs the burst) and ``EMFILE``/``ENFILE`` on accept (accepting pauses for
``accept_backoff`` seconds instead of spinning).

Handlers: ``handle_request`` may return a ``str`` or a reactor `Future` of
one (a proxy or fan-out server with `Reactor.request`, no threads).  With
``async_=True`` it runs in a bounded thread pool and the reply returns
through `Reactor.call_soon_threadsafe`.  A handler that raises or returns
anything else is logged with its traceback and only its own connection is
closed.

The server is one class with its hot path written out inline, so the module
runs past 600 lines; the client side lives in `reactor.client`.
"""

from __future__ import annotations

import _socket
import errno
import logging
import os
import socket
import stat
import sys
import threading
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .addresses import Address, format_address, parse_address
from .background import join_background, start_background
from .connections import ACCEPT_RESOURCE_ERRNOS, Connection, State
from .core import Reactor, TimerHandle, get_default_reactor
from .framing import LineParser, MessageTooLarge, split_request
from .futures import Future

__all__ = ["RequestServer", "ServerStatistics"]

logger = logging.getLogger("reactor.reqrep")

_CRLF = b"\r\n"
_STREAM = int(socket.SOCK_STREAM)
_DONTWAIT = int(socket.MSG_DONTWAIT)
_RECV_SIZE = 65536
_ACCEPT_BATCH = 64
_READING = State.READING
_HANDLING = State.HANDLING
_WRITING = State.WRITING
_CLOSED = State.CLOSED


class ServerStatistics:
    """Counters of one server: accepted, active, completed, errors, timeouts, rejected."""

    __slots__ = ("accepted", "active", "completed", "errors", "timeouts", "rejected", "accept_pauses", "waited")

    def __init__(self) -> None:
        self.accepted = 0  #: connections accepted
        self.active = 0  #: connections open now
        self.completed = 0  #: replies sent in full
        self.errors = 0  #: handler errors and peer I/O errors
        self.timeouts = 0  #: connections closed by the deadline
        self.rejected = 0  #: oversized or undecodable requests
        self.accept_pauses = 0  #: times accepting paused (limit reached or EMFILE)
        #: connections whose request was not complete at accept time, so they
        #: were registered with the selector (accepted - waited took the fast path)
        self.waited = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict."""
        return {name: getattr(self, name) for name in self.__slots__}

    def __repr__(self) -> str:
        return f"<ServerStatistics {self.as_dict()}>"


class RequestServer:
    """A request/reply server (yoton's ``RequestServer``) on a reactor.

    Subclass it and implement ``handle_request(request: str) -> str`` (or
    return a reactor `Future` of a str).  The default echoes
    ``"Requested: " + request``.

    ``address`` is ``'host:port'`` (port 0 lets the OS choose; names are
    hashed as yoton does), ``'[::1]:port'`` or ``'unix:/path'``.  The
    socket is bound and listening when the constructor returns:
    ``server_address`` is the bound socket address and ``address`` the string
    `do_request` accepts.

    Methods for the caller: `run` (serve in this thread until `stop`),
    `start` (serve in a background thread; one thread per reactor however
    many servers are started), `stop`, `join`, `close`, `statistics`.
    Several servers share one reactor with ``reactor=``; without it they
    share the default reactor.
    """

    def __init__(
        self,
        address: str,
        async_: bool = False,
        verbose: int = 0,
        *,
        reactor: Reactor | None = None,
        async_val: bool | None = None,
        max_request_size: int = 1 << 20,
        timeout: float = 30.0,
        max_connections: int = 1024,
        workers: int = 8,
        backlog: int = socket.SOMAXCONN,
        accept_backoff: float = 0.1,
        reuse_port: bool = False,
    ) -> None:
        if async_val is not None:
            async_ = async_val
        if max_request_size <= 0:
            raise ValueError(f"max_request_size must be positive, got {max_request_size!r}")
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        if max_connections <= 0:
            raise ValueError(f"max_connections must be positive, got {max_connections!r}")
        self.reactor = reactor if reactor is not None else get_default_reactor()
        self.verbose = verbose
        self.async_ = bool(async_)
        self.max_request_size = max_request_size
        self.timeout = timeout
        self.max_connections = max_connections
        self.accept_backoff = accept_backoff
        self.stats = ServerStatistics()
        self._rows: dict[int, Connection] = {}
        self._waiting: deque[tuple[float, Connection]] = deque()
        self._deadline_timer: TimerHandle | None = None
        self._accepting = False
        self._resume_timer: TimerHandle | None = None
        self._closed = False
        self._drain_futures: list[Future[None]] = []
        self._pool = (
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="reactor-reqrep") if self.async_ else None
        )
        if verbose:
            _make_verbose_visible()
        self._log_accepts = bool(verbose) or logger.isEnabledFor(logging.DEBUG)
        self._unix_path: str | None = None
        self._unix_ino: tuple[int, int] | None = None
        parsed = parse_address(address)
        self._sock = self._listen(parsed, backlog, reuse_port)
        self._fd = self._sock.fileno()
        self._family = int(parsed.family)
        self.server_address: Any = self._sock.getsockname()
        self.address: str = format_address(parsed.family, self.server_address)
        if self.reactor.thread_ident not in (None, threading.get_ident()):
            self.reactor.call_soon_threadsafe(self._start_accepting)
        else:
            self._start_accepting()
        logger.info("%s listening on %s", type(self).__name__, self.address)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.address} active={self.stats.active}{' closed' if self._closed else ''}>"

    # ------------------------------------------------------------- listening

    def _listen(self, address: Address, backlog: int, reuse_port: bool) -> socket.socket:
        sock = socket.socket(address.family, socket.SOCK_STREAM)
        try:
            if address.family == socket.AF_UNIX:
                self._prepare_unix_path(str(address.sockaddr))
            else:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if reuse_port:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address.sockaddr)
            if address.family == socket.AF_UNIX:
                path = str(address.sockaddr)
                st = os.stat(path)
                self._unix_path, self._unix_ino = path, (st.st_dev, st.st_ino)
            sock.listen(backlog)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    @staticmethod
    def _prepare_unix_path(path: str) -> None:
        if len(os.fsencode(path)) >= 108:
            raise ValueError(f"unix socket path too long ({len(os.fsencode(path))} bytes, max 107): {path!r}")
        directory = os.path.dirname(path) or "."
        if not os.path.isdir(directory):
            raise FileNotFoundError(errno.ENOENT, f"directory for unix socket does not exist: {directory!r}")
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise FileExistsError(errno.EEXIST, f"{path!r} exists and is not a socket; refusing to replace it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            os.unlink(path)  # a stale socket file: nothing listens there
            logger.info("replaced stale unix socket %s", path)
            return
        except OSError:
            raise
        finally:
            probe.close()
        raise OSError(errno.EADDRINUSE, f"a server is already listening on unix:{path}")

    def _start_accepting(self) -> None:
        if not self._accepting and not self._closed:
            self._accepting = True
            self.reactor.add_reader(self._fd, self._on_acceptable)

    def _pause_accepting(self, resume_after: float | None) -> None:
        if self._accepting:
            self._accepting = False
            self.stats.accept_pauses += 1
            self.reactor.remove_reader(self._fd)
        if resume_after is not None and self._resume_timer is None:
            self._resume_timer = self.reactor.call_later(resume_after, self._resume_after_backoff)

    def _resume_after_backoff(self) -> None:
        self._resume_timer = None
        if self.stats.active < self.max_connections:
            self._start_accepting()

    # ------------------------------------------------------------ hot path

    def _on_acceptable(self) -> None:
        # socket.accept() spends ~4 µs per call converting family and type to
        # enums; the raw _accept() (what socket.accept wraps, present since
        # Python 3.3) and the C socket type with plain ints do the same work,
        # and the C close() skips socket.py's wrappers.  The new socket stays
        # in blocking mode (saving an ioctl): the first recv and send say
        # MSG_DONTWAIT, and only a connection that must wait is made
        # non-blocking.  A process-wide socket default timeout would turn
        # MSG_DONTWAIT calls into polls, so then we set non-blocking at once.
        accept = self._sock._accept  # type: ignore[attr-defined]
        new_socket = _socket.socket
        set_nonblocking = socket.getdefaulttimeout() is not None
        family = self._family
        stats = self.stats
        reactor = self.reactor
        table = reactor.connections
        rows = self._rows
        now = reactor.time()  # one clock read per readiness event, not per connection
        for _ in range(_ACCEPT_BATCH):
            if stats.active >= self.max_connections:
                self._pause_accepting(None)
                return
            try:
                fd, peer = accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in ACCEPT_RESOURCE_ERRNOS:
                    logger.warning(
                        "%s: accept failed (%s); pausing accepts for %.2f s",
                        self.address,
                        exc.strerror,
                        self.accept_backoff,
                    )
                    self._pause_accepting(self.accept_backoff)
                    return
                if exc.errno == errno.ECONNABORTED:
                    continue
                raise
            sock = new_socket(family, _STREAM, 0, fd)
            if set_nonblocking:
                sock.setblocking(False)
            stats.accepted += 1
            stats.active += 1
            row = Connection(sock, fd, self, _READING, peer, now)
            table[fd] = row
            rows[fd] = row
            if self._log_accepts:
                logger.info("%s: accepted connection from %s", self.address, peer)
            try:
                data = sock.recv(_RECV_SIZE, _DONTWAIT)
            except (BlockingIOError, InterruptedError):
                self._wait_for_request(row)
                continue
            except OSError:
                stats.errors += 1
                self._close(row)
                continue
            row.bytes_in = len(data)
            if data:
                try:
                    request = split_request(data, self.max_request_size)
                except MessageTooLarge:
                    self._reject_oversized(row)
                    continue
                if request is None:
                    row.inbuf = data
                    self._wait_for_request(row)
                    continue
            else:
                request = b""
            self._dispatch(row, request)

    def _dispatch(self, row: Connection, request: bytes) -> None:
        try:
            text = request.decode("utf-8")
        except UnicodeDecodeError:
            self.stats.rejected += 1
            logger.info("%s: request from %s is not valid UTF-8; closing", self.address, row.peer)
            self._close(row)
            return
        row.state = _HANDLING
        if self._pool is not None:
            self._set_deadline(row)
            self._pool.submit(self._run_in_worker, row, text)
            return
        try:
            reply = self.handle_request(text)
        except Exception:
            self._handler_failed(row, "handle_request raised")
            return
        self._reply(row, reply)

    def _reply(self, row: Connection, reply: Any) -> None:
        if row.state == _CLOSED:
            return
        if type(reply) is not str:
            if isinstance(reply, Future):
                self._set_deadline(row)
                reply.add_done_callback(lambda fut: self._on_reply_future(row, fut))
                return
            if not isinstance(reply, str):
                self._handler_failed(row, f"handle_request returned {type(reply).__name__}, not str", exc_info=False)
                return
        out = reply.encode("utf-8") + _CRLF
        try:
            n = row.sock.send(out, _DONTWAIT)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError:
            self.stats.errors += 1
            self._close(row)
            return
        row.bytes_out += n
        if n == len(out):
            self.stats.completed += 1
            self._close(row)
            return
        row.outbuf = out
        row.sent = n
        row.state = _WRITING
        self._set_deadline(row)
        row.sock.setblocking(False)
        self.reactor.add_writer(row.fd, self._on_writable, row)

    def _close(self, row: Connection) -> None:
        if row.state == _CLOSED:
            return
        waited = row.deadline is not None
        row.state = _CLOSED
        fd = row.fd
        if waited:
            reactor = self.reactor
            reactor.remove_reader(fd)
            reactor.remove_writer(fd)
        del self.reactor.connections[fd]
        del self._rows[fd]
        row.sock.close()
        stats = self.stats
        stats.active -= 1
        if (
            not self._accepting
            and not self._closed
            and self._resume_timer is None
            and stats.active < self.max_connections
        ):
            self._start_accepting()
        if self._drain_futures and not self._rows:
            self._finish_drain()

    # ------------------------------------------------------ slower paths

    def _wait_for_request(self, row: Connection) -> None:
        self.stats.waited += 1
        row.sock.setblocking(False)
        self._set_deadline(row)
        self.reactor.add_reader(row.fd, self._on_readable, row)

    def _on_readable(self, row: Connection) -> None:
        try:
            data = row.sock.recv(_RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.stats.errors += 1
            self._close(row)
            return
        row.bytes_in += len(data)
        parser = row.extra
        if parser is None:
            parser = row.extra = LineParser(self.max_request_size)
            if row.inbuf:
                data = row.inbuf + data
                row.inbuf = b""
        try:
            if data:
                messages = parser.feed(data)
                if not messages:
                    return
                request = messages[0]
            else:
                request = parser.feed_eof() or b""
        except MessageTooLarge:
            self._reject_oversized(row)
            return
        self.reactor.remove_reader(row.fd)
        self._dispatch(row, request)

    def _on_writable(self, row: Connection) -> None:
        try:
            n = row.sock.send(memoryview(row.outbuf)[row.sent :])
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.stats.errors += 1
            self._close(row)
            return
        row.sent += n
        row.bytes_out += n
        if row.sent >= len(row.outbuf):
            self.stats.completed += 1
            self._close(row)
        elif n:
            row.deadline = self.reactor.time() + self.timeout  # progress: push the deadline back

    def _reject_oversized(self, row: Connection) -> None:
        self.stats.rejected += 1
        logger.warning(
            "%s: request from %s exceeds max_request_size (%d bytes); closing",
            self.address,
            row.peer,
            self.max_request_size,
        )
        self._close(row)

    def _handler_failed(self, row: Connection, message: str, exc_info: bool = True) -> None:
        self.stats.errors += 1
        logger.error("%s: %s; closing the connection from %s", self.address, message, row.peer, exc_info=exc_info)
        self._close(row)

    def _on_reply_future(self, row: Connection, fut: Future[Any]) -> None:
        if row.state == _CLOSED:
            return
        if fut.cancelled():
            self._handler_failed(row, "the reply future was cancelled", exc_info=False)
            return
        exc = fut.exception()
        if exc is not None:
            self.stats.errors += 1
            logger.error(
                "%s: the reply future failed; closing the connection from %s",
                self.address,
                row.peer,
                exc_info=(type(exc), exc, exc.__traceback__),
            )
            self._close(row)
            return
        self._reply(row, fut.result())

    def _run_in_worker(self, row: Connection, text: str) -> None:
        try:
            reply: Any = self.handle_request(text)
        except Exception:
            exc_info = sys.exc_info()
            self._call_in_reactor(self._worker_failed, row, exc_info)
            return
        self._call_in_reactor(self._reply, row, reply)

    def _call_in_reactor(self, fn: Any, *args: Any) -> None:
        try:
            self.reactor.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            pass  # the reactor was closed while the handler ran

    def _worker_failed(self, row: Connection, exc_info: Any) -> None:
        if row.state == _CLOSED:
            return
        self.stats.errors += 1
        logger.error(
            "%s: handle_request raised; closing the connection from %s", self.address, row.peer, exc_info=exc_info
        )
        self._close(row)

    # ------------------------------------------------------------ deadlines

    def _set_deadline(self, row: Connection) -> None:
        """Give ``row`` ``timeout`` seconds from now; queue it if it is not queued yet."""
        queued = row.deadline is not None
        row.deadline = deadline = self.reactor.time() + self.timeout
        if not queued:
            self._waiting.append((deadline, row))
            if self._deadline_timer is None:
                self._deadline_timer = self.reactor.call_at(deadline, self._expire)

    def _expire(self) -> None:
        # Entries are (deadline when queued, row).  A row whose deadline moved
        # later is re-queued at the back, which keeps the FIFO sorted: every
        # deadline ever set is at most now + timeout.
        self._deadline_timer = None
        now = self.reactor.time()
        waiting = self._waiting
        while waiting:
            queued, row = waiting[0]
            deadline = row.deadline
            if row.state == _CLOSED or deadline is None:
                waiting.popleft()
            elif deadline <= now:
                waiting.popleft()
                self.stats.timeouts += 1
                logger.info("%s: connection from %s timed out in state %s", self.address, row.peer, row.state)
                self._close(row)
            elif deadline != queued:
                waiting.popleft()
                waiting.append((deadline, row))
            else:
                break
        if waiting:
            self._deadline_timer = self.reactor.call_at(waiting[0][0], self._expire)

    # ---------------------------------------------------------- the handler

    def handle_request(self, request: str) -> str | Future[str]:
        """Answer one request; override this.  The default echoes ``"Requested: " + request``."""
        return "Requested: " + request

    # ------------------------------------------------------------ lifecycle

    def statistics(self) -> dict[str, int]:
        """The per-server counters: accepted, active, completed, errors, timeouts, rejected, accept_pauses, waited."""
        return self.stats.as_dict()

    def run(self) -> None:
        """Serve in the calling thread until `stop()` (serves every server of this reactor)."""
        self._check_open()
        self.reactor.run()

    def start(self) -> threading.Thread | None:
        """Serve in a background thread (one thread per reactor, shared by its servers).

        Returns that thread, or None if the reactor already runs in the foreground.
        """
        self._check_open()
        return start_background(self.reactor)

    def stop(self) -> None:
        """Make `run()` (or the `start()` thread) return; safe from any thread."""
        self.reactor.stop()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the background thread started by `start()` to end."""
        join_background(self.reactor, timeout)

    def stop_accepting(self) -> None:
        """Close nothing, but accept no new connections (for a graceful shutdown)."""
        self._closed_for_accepts()

    def _closed_for_accepts(self) -> None:
        if self._resume_timer is not None:
            self._resume_timer.cancel()
            self._resume_timer = None
        if self._accepting:
            self._accepting = False
            if not self.reactor.is_closed():
                self.reactor.remove_reader(self._fd)
        self._closed = True

    def drain(self) -> Future[None]:
        """Stop accepting; return a future that completes when no connection is open."""
        self._closed_for_accepts()
        fut: Future[None] = self.reactor.create_future()
        self._drain_futures.append(fut)
        if not self._rows:
            self._finish_drain()
        return fut

    def _finish_drain(self) -> None:
        futures, self._drain_futures = self._drain_futures, []
        for fut in futures:
            if not fut.done():
                fut.set_result(None)

    def close(self) -> None:
        """Stop accepting, close every open connection of this server and the listener.

        Call it from the reactor's thread, or after the reactor stopped.
        """
        if self._sock.fileno() < 0:
            return
        self._closed_for_accepts()
        for row in list(self._rows.values()):
            self._close(row)
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        self._waiting.clear()
        self._sock.close()
        if self._unix_path is not None:
            try:
                st = os.stat(self._unix_path)
                if (st.st_dev, st.st_ino) == self._unix_ino:
                    os.unlink(self._unix_path)
            except FileNotFoundError:
                pass
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._finish_drain()

    def _check_open(self) -> None:
        if self._sock.fileno() < 0:
            raise RuntimeError(f"{type(self).__name__} at {self.address} is closed")

    def __enter__(self) -> RequestServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        sock = getattr(self, "_sock", None)
        if sock is not None and sock.fileno() >= 0:
            warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=2, source=self)


_verbose_handler: logging.Handler | None = None


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
