"""Coroutine streams: `start_server`, `open_connection`, `StreamReader`, `StreamWriter`.

asyncio's stream API on the reactor's transport layer and its own tasks, so
code written for ``asyncio.start_server`` moves with an import change::

    async def echo(reader: StreamReader, writer: StreamWriter) -> None:
        async for line in reader:
            writer.write(b"echo: " + line)
            await writer.drain()

    server = await start_server(echo, "localhost:0", idle_timeout=60)

What can go wrong, and what we chose
------------------------------------
*A line costs a scan and, when nothing is buffered, a wakeup.*  A reader
keeps one ``bytearray``; `StreamReader.readline` looks for the separator
once in what is buffered and returns without suspending when it is there (no
future, no hop through the ready queue).  Only when it must wait does it
park its task on a reactor future (readline reuses its last one), and while
it waits it searches only the bytes that arrived since the last look (the
scan never restarts at the start of a long line).  The transport calls the
reader's protocol directly, and when a reactor task is parked on the reader
the protocol steps that task there and then, inside the read callback, as
a protocol's ``data_received`` runs its code: the future is completed
without queueing the task's wakeup, so a line costs no hop through the
ready queue.  A whole line that arrives while ``readline`` waits on an empty
buffer is handed over as the ``bytes`` object the transport read, never
copied into the buffer and out.  Neither shortcut is taken inside another
task's step (a transport that delivers while a task writes), outside a turn
of the reactor (a test calling the protocol), or for a waiter that is not a
reactor task's: then the future is completed and the task wakes in a later
turn, as with `StreamReader.feed_data`.  The parked task is handed its
waiter through a generator marked as a coroutine (``_park``), which
``await`` takes without looking up and calling an ``__await__``.  With
these, the ``streams`` workload of ``python -m benchmarks`` (64
connections, one coroutine each) went from 1.08x to 1.4-1.5x less server
CPU per line than asyncio's streams, and half of asyncio's user-space
instructions (docs/performance.md).

*Memory is bounded both ways.*  Input: a reader holds at most about twice its
``limit`` before it pauses reading on the transport (asyncio's rule), and
resumes once a read has taken the buffer back under ``limit``; a line longer
than ``limit`` fails the read (`LimitOverrunError`, or `ValueError` from
`StreamReader.readline`) instead of growing the buffer.  Output:
`StreamWriter.drain` waits while the transport's write buffer is above its
high water mark (the transport's ``pause_writing``/``resume_writing``), so a
writer that drains after each write holds at most that much for a peer that
does not read.

*Who owns the connection.*  On a server, each connection runs
``client_connected_cb(reader, writer)`` as its own task.  When the callback
returns, the connection is closed after what was written is flushed (asyncio
leaves it open until the writer is garbage collected); when it raises, the
error goes to the reactor's exception handler and the connection is aborted
(unless the error is the connection's own end, a reset that came out of a
read or ``drain()``: that is the peer's doing, logged at INFO).
The server's ``close()`` and a connection's deadline (``timeout``,
``idle_timeout``) cancel the task, so its ``finally`` blocks run.

*Deadlines, limits, TLS* are the transport layer's: `start_server` takes
every keyword of `reactor.streams.create_server` and `open_connection` every
keyword of `reactor.streams.create_connection`.

The module runs past our usual 600 lines because it is asyncio's whole
stream API (reader, writer, server, the two functions), whose reader
semantics (limits, partial reads, separators) are spelled out in one place.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any

from .addresses import AddressLike
from .core import Reactor
from .futures import _FINISHED, _PENDING, Future, InvalidStateError, _park
from .streams import Server
from .tasks import Task, get_running_reactor
from .transport.errors import report_user_error
from .transport.memory import DEFAULT_WINDOW, memory_pair
from .transport.stream import DEFAULT_LIMITS, TransportLimits

if TYPE_CHECKING:
    import ssl as _ssl

__all__ = [
    "start_server",
    "open_connection",
    "StreamReader",
    "StreamWriter",
    "StreamServer",
    "IncompleteReadError",
    "LimitOverrunError",
    "memory_stream_pair",
    "DEFAULT_LIMIT",
]

logger = logging.getLogger("reactor.streams")

#: Bytes a reader buffers before a line is too long, by default (asyncio's 64 KiB).
DEFAULT_LIMIT = 64 * 1024

_NL = b"\n"


class IncompleteReadError(EOFError):
    """The stream ended before a read was complete.

    ``partial`` is what was read before the end (the bytes are consumed);
    ``expected`` is how many bytes were asked for (None for `StreamReader.readuntil`).
    """

    def __init__(self, partial: bytes, expected: int | None) -> None:
        what = "undefined" if expected is None else repr(expected)
        super().__init__(f"{len(partial)} bytes read on a total of {what} expected bytes")
        self.partial = partial
        self.expected = expected

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.partial, self.expected)


class LimitOverrunError(Exception):
    """A separator was not found within the reader's ``limit``.

    ``consumed`` is how many bytes the caller may consume to get past the
    overrun; the bytes stay in the reader's buffer.
    """

    def __init__(self, message: str, consumed: int) -> None:
        super().__init__(message)
        self.consumed = consumed

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.args[0], self.consumed)


class StreamReader:
    """Bytes from a connection, read by coroutines: `read`, `readline`, `readexactly`, `readuntil`.

    Made by `start_server` and `open_connection`; a test may make one and
    `feed_data` / `feed_eof` it by hand.  ``limit`` bounds a line (see the
    module docstring).  One coroutine at a time may wait for data.
    ``async for line in reader`` iterates over lines until the end.
    """

    __slots__ = ("_reactor", "_limit", "_buffer", "_eof", "_exception", "_waiter", "_waiter_task", "_line_wait",
                 "_line", "_spare", "_transport", "_paused")

    def __init__(self, limit: int = DEFAULT_LIMIT, *, reactor: Reactor | None = None) -> None:
        if limit <= 0:
            raise ValueError(f"limit must be positive, got {limit!r}")
        self._reactor = reactor  # None: the running reactor, looked up when a read first waits
        self._limit = limit
        self._buffer = bytearray()
        self._eof = False
        self._exception: BaseException | None = None
        self._waiter: Future[None] | None = None
        self._waiter_task: Task[Any] | None = None  # the task parked on _waiter, if a reactor task
        self._line_wait = False  # _waiter is readline's, on an empty buffer
        self._line: bytes | None = None  # a whole line handed to the parked readline (see _data_received)
        self._spare: Future[None] | None = None  # readline's last waiter, done and reusable
        self._transport: Any = None
        self._paused = False

    def __repr__(self) -> str:
        info = [f"{len(self._buffer)} bytes"]
        if self._eof:
            info.append("eof")
        if self._exception is not None:
            info.append(f"exception={self._exception!r}")
        if self._waiter is not None:
            info.append("waiting")
        if self._paused:
            info.append("paused")
        return f"<StreamReader {' '.join(info)}>"

    @property
    def limit(self) -> int:
        """The longest line (with its separator) a read accepts."""
        return self._limit

    # --------------------------------------------- fed by the protocol (or a test)

    def set_transport(self, transport: Any) -> None:
        """Read from ``transport``: it is paused and resumed to keep the buffer bounded."""
        if self._transport is not None:
            raise RuntimeError("the reader already has a transport")
        self._transport = transport

    def feed_data(self, data: bytes) -> None:
        """Append ``data`` to the buffer and wake the waiting read."""
        if self._eof:
            raise RuntimeError("feed_data() after feed_eof()")
        if not data:
            return
        buffer = self._buffer
        buffer += data
        waiter = self._waiter
        if waiter is not None:
            try:
                waiter.set_result(None)
            except InvalidStateError:
                pass  # cancelled with its task, which has not run since to forget it
        if len(buffer) > 2 * self._limit:
            self._pause()

    def _data_received(self, data: bytes) -> None:
        # The protocol's data_received: feed_data, except that the task parked on
        # this reader is stepped here and now, inside the transport's read
        # callback, as a protocol's data_received would run (see the module
        # docstring, "A line costs ...").  Inside another task's step (a
        # transport that delivers from a write), outside a turn that knows
        # this reactor has tasks (a test calling the protocol; a task started
        # eagerly in this very turn: see Reactor.run_once), or for a waiter
        # that is not a reactor task's, the waiter is completed as feed_data does.
        if self._eof:
            raise RuntimeError("data received after the end of the stream")
        buffer = self._buffer
        waiter = self._waiter
        if waiter is not None and waiter._state == _PENDING:
            task = self._waiter_task
            parked: Future[None] = waiter  # (mypy loses the narrowing across the `is` below)
            reactor = parked._reactor  # the task's too: a task parks only on its reactor's futures
            if task is not None and task._waiting_on is parked and reactor._current_task is None and reactor._task_turn:
                if (self._line_wait and not buffer and data.find(_NL) + 1 == len(data)
                        and len(data) <= self._limit + 1):
                    # readline waits on an empty buffer and this is one whole line:
                    # it gets these very bytes, never copied into the buffer and out.
                    self._line = data
                else:
                    buffer += data
                    if len(buffer) > 2 * self._limit:
                        self._pause()  # before the step: a read that waits again resumes reading
                parked._state = _FINISHED  # set_result(None), without queueing the task's wakeup
                parked._callbacks = []
                task._step(None)
                return
            waiter.set_result(None)
        buffer += data
        if len(buffer) > 2 * self._limit:
            self._pause()

    def _pause(self) -> None:
        # More than twice the limit is buffered: stop reading until a read takes it down.
        if not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()

    def feed_eof(self) -> None:
        """The peer will send nothing more: wake the waiting read."""
        self._eof = True
        self._wake()

    def set_exception(self, exc: BaseException) -> None:
        """Fail the waiting read and every later one with ``exc``."""
        self._exception = exc
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def exception(self) -> BaseException | None:
        """The exception reads raise, if any (see `set_exception`)."""
        return self._exception

    def at_eof(self) -> bool:
        """True when the peer has finished and everything buffered was read."""
        return self._eof and not self._buffer

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _resume_if_drained(self) -> None:
        if self._paused and len(self._buffer) <= self._limit:
            self._paused = False
            self._transport.resume_reading()

    async def _wait(self, name: str) -> None:
        """Park the calling task until data, the end or an error arrives (the callers check the end first)."""
        if self._waiter is not None:
            raise RuntimeError(f"{name}() called while another coroutine is already waiting for data on this stream")
        if self._paused:  # a read that must wait will take the buffer down: let data in again
            self._paused = False
            self._transport.resume_reading()
        reactor = self._reactor
        if reactor is None:
            reactor = self._reactor = get_running_reactor()
        waiter: Future[None] = Future(reactor)
        self._waiter = waiter
        task = self._waiter_task = reactor._current_task
        self._line_wait = False
        try:
            await _park(waiter, task)
        finally:
            self._waiter = None

    # -------------------------------------------------------- reads (coroutines)

    async def readline(self) -> bytes:
        """One line, with its ``\\n``; at the end, what is left (``b""`` once all is read).

        A line longer than ``limit`` raises `ValueError`; that line is
        dropped from the buffer (all of it if the separator has arrived,
        else what was buffered).
        """
        # What readuntil(b"\n") does, written out with its wait inline: this is the
        # loop of every line server, and the call and the coroutine of readuntil
        # and of _wait would be two more frames per line that has to be waited for.
        buffer = self._buffer
        limit = self._limit
        start = 0  # bytes before this were searched already
        while True:
            if self._exception is not None:
                raise self._exception
            if len(buffer) > start:
                end = buffer.find(_NL, start) + 1
                if end:
                    if end > limit + 1:
                        del buffer[:end]
                        self._resume_if_drained()
                        raise ValueError("separator found, but the chunk is longer than the limit")
                    if end == len(buffer):
                        line = bytes(buffer)
                        buffer.clear()
                    else:
                        line = bytes(buffer[:end])
                        del buffer[:end]
                    if self._paused:
                        self._resume_if_drained()
                    return line
                start = len(buffer)
                if start > limit:
                    buffer.clear()
                    self._resume_if_drained()
                    raise ValueError("separator not found, and the chunk exceeds the limit")
            if self._eof:
                line = bytes(buffer)
                buffer.clear()
                return line
            if self._waiter is not None:
                raise RuntimeError("readline() called while another coroutine is already waiting for data")
            if self._paused:
                self._paused = False
                self._transport.resume_reading()
            reactor = self._reactor
            if reactor is None:
                reactor = self._reactor = get_running_reactor()
            waiter = self._spare
            if waiter is None:
                waiter = Future(reactor)
            else:  # the last wait's, which ended with no result and no reference left to it
                self._spare = None
                waiter._state = _PENDING
            self._waiter = waiter
            task = self._waiter_task = reactor._current_task
            self._line_wait = not buffer
            try:
                await _park(waiter, task)
            except BaseException:
                self._waiter = None
                handed = self._line
                if handed is not None:  # handed over, then the task was cancelled: keep it for the next read
                    self._line = None
                    buffer += handed
                raise
            self._waiter = None
            if task is not None:
                # A task's wait ends once the waiter's one callback, the task's wakeup, has
                # run (or was skipped by _data_received): nobody else holds the waiter.
                self._spare = waiter
            handed = self._line
            if handed is not None:  # a whole line, handed over by _data_received
                self._line = None
                return handed

    async def readuntil(self, separator: bytes = _NL) -> bytes:
        """The bytes up to and including ``separator``.

        At the end of the stream without it: `IncompleteReadError` with what
        was left as ``partial`` (consumed).  When the separator is not
        within ``limit`` bytes: `LimitOverrunError`, and the bytes stay
        buffered.
        """
        length = len(separator)
        if length == 0:
            raise ValueError("the separator must be at least one byte")
        buffer = self._buffer
        limit = self._limit
        start = 0  # the bytes before this cannot begin the separator: never scanned twice
        while True:
            if self._exception is not None:
                raise self._exception
            size = len(buffer)
            if size - start >= length:
                found = buffer.find(separator, start)
                if found >= 0:
                    break
                start = size + 1 - length
                if start > limit:
                    raise LimitOverrunError("separator not found, and the chunk exceeds the limit", start)
            if self._eof:
                partial = bytes(buffer)
                buffer.clear()
                raise IncompleteReadError(partial, None)
            await self._wait("readuntil")
        if found > limit:
            raise LimitOverrunError("separator found, but the chunk is longer than the limit", found)
        end = found + length
        chunk = bytes(buffer[:end])
        del buffer[:end]
        self._resume_if_drained()
        return chunk

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (at least one unless at the end); ``n < 0``: everything until the end."""
        if self._exception is not None:
            raise self._exception
        if n == 0:
            return b""
        buffer = self._buffer
        if n < 0:
            blocks: list[bytes] = []
            while True:
                block = await self.read(self._limit)
                if not block:
                    return b"".join(blocks)
                blocks.append(block)
        if not buffer and not self._eof:
            await self._wait("read")
        if n >= len(buffer):
            data = bytes(buffer)
            buffer.clear()
        else:
            data = bytes(buffer[:n])
            del buffer[:n]
        self._resume_if_drained()
        return data

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes; `IncompleteReadError` if the stream ends first (``partial`` consumed)."""
        if n < 0:
            raise ValueError(f"readexactly() size cannot be negative, got {n!r}")
        if self._exception is not None:
            raise self._exception
        if n == 0:
            return b""
        buffer = self._buffer
        while len(buffer) < n:
            if self._eof:
                partial = bytes(buffer)
                buffer.clear()
                raise IncompleteReadError(partial, n)
            await self._wait("readexactly")
        if len(buffer) == n:
            data = bytes(buffer)
            buffer.clear()
        else:
            data = bytes(buffer[:n])
            del buffer[:n]
        self._resume_if_drained()
        return data

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        line = await self.readline()
        if not line:
            raise StopAsyncIteration
        return line


class _StreamProtocol:
    """The transport's protocol under a reader and a writer: feeds the one, flow-controls the other."""

    __slots__ = ("reader", "writer", "transport", "callback", "server", "task", "paused", "drain_waiters", "lost",
                 "close_waiters", "data_received")

    def __init__(self, reader: StreamReader, callback: Callable[..., Any] | None = None,
                 server: StreamServer | None = None) -> None:
        self.reader = reader
        # The transport hands every read to data_received: that is the reader's
        # own method, not one that calls it (one frame less per read).
        self.data_received: Callable[[bytes], None] = reader._data_received
        self.writer: StreamWriter | None = None
        self.transport: Any = None
        self.callback = callback
        self.server = server
        self.task: Task[Any] | None = None
        self.paused = False
        self.drain_waiters: list[Future[None]] | None = None
        self.lost = False
        self.close_waiters: list[Future[None]] | None = None

    def connection_made(self, transport: Any) -> None:
        """Give the transport to the reader; on a server, start the callback's task."""
        self.transport = transport
        reader = self.reader
        reader._transport = transport
        reactor = transport.reactor
        reader._reactor = reactor
        callback = self.callback
        if callback is None:
            return
        writer = self.writer = StreamWriter(transport, self, reader, reactor)
        result = callback(reader, writer)
        if not isinstance(result, Coroutine):
            return  # a plain function: it keeps reader and writer itself
        task = self.task = reactor.create_task(result)
        server = self.server
        if server is not None:
            server._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: Task[Any]) -> None:
        server = self.server
        if server is not None:
            server._task_finished(task)
        transport = self.transport
        if task.cancelled():
            transport.abort()
            return
        exc = task.exception()
        if exc is None:
            transport.close()  # flush what the callback wrote, then close
            return
        if exc is self.reader._exception:
            # The connection's own end (a reset, a broken pipe) came out of a read
            # or drain the callback did not guard: a fault of the peer, not a bug.
            logger.info("connection from %s lost: %r", transport.get_extra_info("peername"), exc)
            return
        report_user_error(
            transport.reactor,
            "exception in the stream server's client_connected_cb; closing the connection",
            exc,
            handler=self.callback,
            transport=transport,
        )
        transport.abort()

    def eof_received(self) -> bool:
        """The peer finished writing: the reader reaches its end; the write side stays open."""
        self.reader.feed_eof()
        return True

    def connection_lost(self, exc: BaseException | None) -> None:
        """Fail or end the reader, wake `drain` and `wait_closed`; a deadline cancels the task."""
        self.lost = True
        reader = self.reader
        if exc is None:
            reader.feed_eof()
        else:
            reader.set_exception(exc)
        waiters = self.drain_waiters
        if waiters:
            self.drain_waiters = None
            for waiter in waiters:
                if not waiter.done():
                    if exc is None:
                        waiter.set_exception(ConnectionResetError("connection lost"))
                    else:
                        waiter.set_exception(exc)
        waiters = self.close_waiters
        if waiters:
            self.close_waiters = None
            _wake_all(waiters)
        task = self.task
        if task is not None and isinstance(exc, TimeoutError) and not task.done():
            task.cancel()

    def pause_writing(self) -> None:
        """The write buffer is above its high water mark: `drain` waits from now on."""
        self.paused = True

    def resume_writing(self) -> None:
        """The write buffer drained to its low water mark: wake the waiting `drain` calls."""
        self.paused = False
        waiters = self.drain_waiters
        if waiters:
            self.drain_waiters = None
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)


class StreamWriter:
    """Bytes to a connection: `write` never blocks, ``await drain()`` bounds the buffer.

    Made by `start_server` and `open_connection`.  ``transport`` is the
    transport underneath (a `reactor.transport.stream.StreamTransport`, or a
    TLS or in-memory transport with the same API).
    """

    __slots__ = ("_transport", "_protocol", "_reader", "_reactor")

    def __init__(self, transport: Any, protocol: _StreamProtocol, reader: StreamReader | None,
                 reactor: Reactor) -> None:
        self._transport = transport
        self._protocol = protocol
        self._reader = reader
        self._reactor = reactor

    def __repr__(self) -> str:
        return f"<StreamWriter transport={self._transport!r}>"

    @property
    def transport(self) -> Any:
        """The transport underneath."""
        return self._transport

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data`` (what the kernel does not take at once is buffered); never blocks."""
        self._transport.write(data)

    def writelines(self, data: Any) -> None:
        """Send each buffer of the iterable ``data``, in order."""
        self._transport.writelines(data)

    def write_eof(self) -> None:
        """Close the write side once the buffer is flushed; the reader keeps reading (half-close)."""
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        """True: every stream transport of the reactor can half-close."""
        return bool(self._transport.can_write_eof())

    def close(self) -> None:
        """Flush what is buffered, then close; idempotent.  ``await wait_closed()`` to see it done."""
        self._transport.close()

    def is_closing(self) -> bool:
        """True once `close` was called or the connection is gone."""
        return bool(self._transport.is_closing())

    async def wait_closed(self) -> None:
        """Wait until the connection is closed (its buffer flushed, or dropped if the peer went away)."""
        protocol = self._protocol
        if protocol.lost:
            return
        waiter: Future[None] = Future(self._reactor)  # its own: a cancelled wait cancels no other
        if protocol.close_waiters is None:
            protocol.close_waiters = [waiter]
        else:
            protocol.close_waiters.append(waiter)
        await waiter

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """The transport's ``get_extra_info``: ``'peername'``, ``'sockname'``, ``'socket'``, ``'ssl_object'``, ..."""
        return self._transport.get_extra_info(name, default)

    async def drain(self) -> None:
        """Wait while the write buffer is above its high water mark; return at once below it.

        Raises the reader's error (a reset connection) and
        `ConnectionResetError` once the connection is gone.
        """
        protocol = self._protocol
        reader = self._reader
        if reader is not None and reader._exception is not None:
            raise reader._exception
        if not protocol.paused and not protocol.lost and not self._transport.is_closing():
            return  # the fast path: room in the buffer
        if not protocol.lost and self._transport.is_closing():
            # Closed by us, or lost inside a write: nothing written now can go out.
            # Wait for the end, so that a write-and-drain loop cannot spin.
            await self.wait_closed()
        if protocol.lost:
            if reader is not None and reader._exception is not None:
                raise reader._exception
            raise ConnectionResetError("connection lost")
        waiter: Future[None] = Future(self._reactor)
        waiters = protocol.drain_waiters
        if waiters is None:
            protocol.drain_waiters = [waiter]
        else:
            waiters.append(waiter)
        try:
            await waiter
        finally:
            waiters = protocol.drain_waiters
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)

    async def start_tls(self, *args: Any, **kwargs: Any) -> None:
        """Not provided: pass ``ssl=`` to `open_connection` or `start_server` instead."""
        raise NotImplementedError("start_tls() is not provided; pass ssl= to open_connection() or start_server()")


class StreamServer(Server):
    """A listening stream server made by `start_server`: a `reactor.streams.Server` with tasks.

    ``address``, ``sockaddr``, `close` (stop listening, abort the
    connections, cancel their callbacks' tasks), ``await wait_closed()``
    (until those tasks have finished), ``await serve_forever()``, and
    ``async with server:`` (closes it on the way out).
    """

    def __init__(self, server: Server) -> None:
        super().__init__(server._listener)
        self._tasks: set[Task[Any]] = set()
        self._closing = False
        # One future per waiting call, never shared: a task cancelled while it
        # waits cancels its own future only.
        self._close_waiters: list[Future[None]] = []
        self._finish_waiters: list[Future[None]] = []

    def close(self, timeout: float = 5.0) -> None:
        """Stop listening, abort every connection and cancel every callback's task; idempotent.

        Safe from any thread (as `reactor.streams.Server.close`).
        """
        from .transport.threads import run_in_reactor_thread

        run_in_reactor_thread(self.reactor, self._close_in_reactor, timeout)

    def _close_in_reactor(self) -> None:
        self._listener.close()
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        waiters, self._close_waiters = self._close_waiters, []
        _wake_all(waiters)
        self._task_finished(None)

    def _task_finished(self, task: Task[Any] | None) -> None:
        if task is not None:
            self._tasks.discard(task)
        if self._closing and not self._tasks:
            waiters, self._finish_waiters = self._finish_waiters, []
            _wake_all(waiters)

    async def wait_closed(self) -> None:
        """Wait until the server is closed and every connection's task has finished."""
        if self._closing and not self._tasks:
            return
        waiter: Future[None] = Future(self.reactor)
        self._finish_waiters.append(waiter)
        await waiter

    async def serve_forever(self) -> None:
        """Wait until the server is closed (it serves from the start); closes it if this is cancelled."""
        if self._closing:
            return
        waiter: Future[None] = Future(self.reactor)
        self._close_waiters.append(waiter)
        try:
            await waiter
        finally:
            self.close()

    async def __aenter__(self) -> StreamServer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
        await self.wait_closed()


def _wake_all(waiters: list[Future[None]]) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)


async def start_server(
    client_connected_cb: Callable[[StreamReader, StreamWriter], Awaitable[None] | None],
    address: AddressLike,
    *,
    limit: int = DEFAULT_LIMIT,
    backlog: int = socket.SOMAXCONN,
    max_connections: int = 1024,
    idle_timeout: float | None = None,
    timeout: float | None = None,
    max_read: int = 64 * 1024,
    write_buffer_high: int = 64 * 1024,
    write_buffer_low: int | None = None,
    reuse_port: bool = False,
    accept_backoff: float = 0.1,
    ssl: _ssl.SSLContext | None = None,
    ssl_handshake_timeout: float | None = 10.0,
    proxy_protocol: bool = False,
    trusted_proxies: Iterable[str] = ("127.0.0.1", "::1"),
) -> StreamServer:
    """Listen on ``address`` and run ``client_connected_cb(reader, writer)`` as a task per connection.

    On the running reactor.  ``address`` takes every form of
    `reactor.streams.create_server` (``'host:port'``, port 0 for any,
    ``'[::1]:port'``, ``'unix:/path'``), and so do the keywords
    (``idle_timeout``, ``timeout``, ``max_connections``, ``ssl``, the
    write buffer water marks, ...).  ``limit`` bounds each reader (see
    `StreamReader`).  The connection is closed when the callback returns
    (aborted when it raises; the error is reported to the reactor's
    exception handler); a deadline and the server's ``close()`` cancel the
    callback's task.
    """
    reactor = get_running_reactor()
    if limit <= 0:
        raise ValueError(f"limit must be positive, got {limit!r}")
    server: StreamServer | None = None

    def factory() -> _StreamProtocol:
        return _StreamProtocol(StreamReader(limit, reactor=reactor), client_connected_cb, server)

    server = StreamServer(reactor.create_server(
        factory, address, backlog=backlog, max_connections=max_connections, idle_timeout=idle_timeout,
        timeout=timeout, max_read=max_read, write_buffer_high=write_buffer_high, write_buffer_low=write_buffer_low,
        reuse_port=reuse_port, accept_backoff=accept_backoff, ssl=ssl, ssl_handshake_timeout=ssl_handshake_timeout,
        proxy_protocol=proxy_protocol, trusted_proxies=trusted_proxies,
    ))
    return server


async def open_connection(
    address: AddressLike,
    *,
    limit: int = DEFAULT_LIMIT,
    timeout: float | None = None,
    idle_timeout: float | None = None,
    max_read: int = 64 * 1024,
    write_buffer_high: int = 64 * 1024,
    write_buffer_low: int | None = None,
    ssl: _ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = 10.0,
) -> tuple[StreamReader, StreamWriter]:
    """Connect to ``address``; ``(reader, writer)`` once connected (and the TLS handshake done).

    On the running reactor.  The keywords are those of
    `reactor.streams.create_connection` (``timeout`` bounds the connect,
    ``idle_timeout``, ``ssl``, ``server_hostname``, the water marks, ...);
    ``limit`` bounds the reader.  A refused or timed-out connect raises its
    `OSError` or `TimeoutError`.
    """
    reactor = get_running_reactor()
    if limit <= 0:
        raise ValueError(f"limit must be positive, got {limit!r}")
    reader = StreamReader(limit, reactor=reactor)
    transport, protocol = await reactor.create_connection(
        lambda: _StreamProtocol(reader), address, timeout=timeout, idle_timeout=idle_timeout, max_read=max_read,
        write_buffer_high=write_buffer_high, write_buffer_low=write_buffer_low, ssl=ssl,
        server_hostname=server_hostname, ssl_handshake_timeout=ssl_handshake_timeout,
    )
    writer = protocol.writer = StreamWriter(transport, protocol, reader, reactor)
    return reader, writer


def memory_stream_pair(
    reactor: Reactor,
    *,
    limit: int = DEFAULT_LIMIT,
    window: int = DEFAULT_WINDOW,
    limits: TransportLimits | None = None,
) -> tuple[tuple[StreamReader, StreamWriter], tuple[StreamReader, StreamWriter]]:
    """Two connected ``(reader, writer)`` ends in memory, for testing stream code without sockets.

    Built on `reactor.transport.memory.memory_pair`: ``window`` bytes at
    most in flight each way, ``limits`` for the water marks and deadlines;
    drive it by running ``reactor``.
    """
    ends = []
    protocols = [_StreamProtocol(StreamReader(limit, reactor=reactor)) for _ in range(2)]
    transports = memory_pair(
        reactor, protocols[0], protocols[1], window=window, limits=DEFAULT_LIMITS if limits is None else limits
    )
    for transport, protocol in zip(transports, protocols, strict=True):
        protocol.writer = StreamWriter(transport, protocol, protocol.reader, reactor)
        ends.append((protocol.reader, protocol.writer))
    return ends[0], ends[1]
