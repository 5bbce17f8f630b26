"""Coroutine streams: `StreamReader`, `StreamWriter`, `start_server`, `open_connection`.

Readers fed by hand, streams over the in-memory transports (no socket, no
time), over loopback sockets and over TLS; backpressure through ``drain()``
and the reader's ``limit``; deadlines and ``close()`` cancelling the
callbacks' tasks on a `ManualClock`.

Adapted from CPython's ``Lib/test/test_asyncio/test_streams.py`` (3.11), in
the section marked below, rewritten for the reactor's tasks:
test_feed_empty_data, test_feed_nonempty_data, test_read_zero, test_read,
test_read_line_breaks, test_read_eof, test_read_until_eof,
test_read_exception, test_invalid_limit, test_read_limit, test_readline,
test_readline_limit_with_existing_data, test_at_eof, test_readline_limit,
test_readline_nolimit_nowait, test_readline_eof, test_readline_empty_eof,
test_readline_read_byte_count, test_readline_exception,
test_readuntil_separator, test_readuntil_multi_chunks,
test_readuntil_multi_chunks_1, test_readuntil_eof,
test_readuntil_limit_found_sep, test_readexactly_zero_or_less,
test_readexactly, test_readexactly_limit, test_readexactly_eof,
test_readexactly_exception, test_exception, test_exception_waiter,
test_exception_cancel, test_multiple_drain (through a paused memory
transport instead of asyncio's FlowControlMixin), test_drain_raises (the
peer is a plain socket accepted and closed by the test, no thread),
test_IncompleteReadError_pickleable, test_LimitOverrunError_pickleable,
test_open_connection, test_start_server, test_wait_closed_on_close and
test_async_writer_api (together in test_open_connection_and_start_server,
an echo over loopback instead of the suite's HTTP server),
test_open_unix_connection and test_start_unix_server (together),
test_open_connection_error, test_wait_closed_on_close_with_unread_data,
test_eof_feed_when_closing_writer.  tests/test_streams_parity.py runs
generated read scripts on asyncio's reader and on ours and compares them.

Left out, and why:
test_open_connection_no_loop_ssl / test_open_unix_connection_no_loop_ssl
(covered by the TLS tests here, with trustme certificates instead of the
suite's key files); test_start_tls (``StreamWriter.start_tls`` is not
provided); test_read_all_from_pipe_reader (pipes and subprocesses are not
provided); the six test_streamreader*_constructor_* cases (about asyncio's
``loop=`` argument and its deprecated global loop; here ``reactor=`` is
explicit or the running reactor is used, tested in
test_a_reader_without_a_reactor_uses_the_running_one); the seven
test___repr__* cases (the repr's exact text is asyncio's, ours differs);
test_async_writer_api_exception_after_close (here ``write()`` after
``close()`` raises `RuntimeError` at once, the transport layer's rule for
misuse, tested in test_write_after_close_raises); the resource-warning and
unhandled-exception cases (about asyncio's ``__del__`` of the writer and its
exception handler on loop shutdown; our connections are closed when the
callback returns, tested in test_the_connection_closes_when_the_callback_returns).
"""

from __future__ import annotations

import logging
import pickle
import socket
import ssl
import struct
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
from conftest import run_until

from reactor import (
    IncompleteReadError,
    LimitOverrunError,
    ManualClock,
    Reactor,
    StreamReader,
    StreamWriter,
    open_connection,
    sleep,
    start_server,
    wait_for,
)
from reactor.streams_async import StreamServer, memory_stream_pair
from reactor.transport.base import TransportLimits

T = TypeVar("T")

DATA = b"line1\nline2\nline3\n"


def run(reactor: Reactor, coro: Coroutine[Any, Any, T], turns: int = 1000) -> T:
    """Run ``coro`` as a task on ``reactor`` until it is done (bounded turns); its result."""
    task = reactor.create_task(coro)
    run_until(reactor, task.done, turns=turns)
    return task.result()


def settle(reactor: Reactor, turns: int = 5) -> None:
    """A few turns that wait for nothing."""
    for _ in range(turns):
        reactor.run_once(0)


def finished_without_waiting(coro: Coroutine[Any, Any, T]) -> T:
    """The value of ``coro`` if it returns without ever suspending (else the test fails)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coro.close()
    raise AssertionError("the coroutine suspended")


# --------------------------------------------------------------- the reader


def test_readline_returns_a_buffered_line_without_suspending(reactor: Reactor) -> None:
    """A line already buffered is returned without a future or a turn of the reactor."""
    stream = StreamReader(reactor=reactor)
    stream.feed_data(b"one\ntwo\nthree")
    assert finished_without_waiting(stream.readline()) == b"one\n"
    assert finished_without_waiting(stream.readline()) == b"two\n"
    assert stream._waiter is None


def test_readline_waits_across_many_small_chunks(reactor: Reactor) -> None:
    """A line fed a byte at a time comes out whole, and the bytes after it stay."""
    stream = StreamReader(reactor=reactor)
    task = reactor.create_task(stream.readline())
    settle(reactor)
    for byte in b"hello world\nmore":
        stream.feed_data(bytes([byte]))
        settle(reactor, 1)
    run_until(reactor, task.done)
    assert task.result() == b"hello world\n"
    assert bytes(stream._buffer) == b"more"


def test_reads_in_every_split_of_the_input(reactor: Reactor) -> None:
    """readline, readexactly and readuntil give the same answers however the bytes are split."""
    wire = b"abc\r\nde\nfghij--END--tail"

    async def consume(stream: StreamReader) -> list[bytes]:
        return [
            await stream.readuntil(b"\r\n"),
            await stream.readline(),
            await stream.readexactly(3),
            await stream.readuntil(b"--END--"),
            await stream.read(),
        ]

    for split in range(len(wire) + 1):
        stream = StreamReader(reactor=reactor)
        task = reactor.create_task(consume(stream))
        settle(reactor, 1)
        stream.feed_data(wire[:split])
        settle(reactor, 1)
        stream.feed_data(wire[split:])
        stream.feed_eof()
        run_until(reactor, task.done)
        assert task.result() == [b"abc\r\n", b"de\n", b"fgh", b"ij--END--", b"tail"], split


def test_readexactly_raises_incomplete_read_with_partial_and_expected(reactor: Reactor) -> None:
    """The end before n bytes: IncompleteReadError with what came (consumed) and n."""
    stream = StreamReader(reactor=reactor)
    stream.feed_data(b"12345")
    stream.feed_eof()
    with pytest.raises(IncompleteReadError) as info:
        run(reactor, stream.readexactly(10))
    assert info.value.partial == b"12345"
    assert info.value.expected == 10
    assert isinstance(info.value, EOFError)
    assert stream.at_eof()


def test_readuntil_separator_split_over_chunks_is_found_once(reactor: Reactor) -> None:
    """A separator split across two chunks is found, and no byte is scanned from the start again."""
    stream = StreamReader(reactor=reactor)
    task = reactor.create_task(stream.readuntil(b"\r\n\r\n"))
    settle(reactor)
    stream.feed_data(b"header: 1\r\n\r")
    settle(reactor)
    assert not task.done()
    stream.feed_data(b"\nbody")
    run_until(reactor, task.done)
    assert task.result() == b"header: 1\r\n\r\n"
    assert bytes(stream._buffer) == b"body"


def test_a_second_waiting_read_is_refused(reactor: Reactor) -> None:
    """Two coroutines may not wait on one reader at once: the second gets RuntimeError."""
    stream = StreamReader(reactor=reactor)
    first = reactor.create_task(stream.readline())
    settle(reactor)
    with pytest.raises(RuntimeError, match="already waiting"):
        run(reactor, stream.read(1))
    stream.feed_data(b"x\n")
    run_until(reactor, first.done)
    assert first.result() == b"x\n"


def test_cancelling_a_waiting_read_leaves_the_reader_usable(reactor: Reactor) -> None:
    """A cancelled readline clears its waiter; the next read gets the data."""
    stream = StreamReader(reactor=reactor)
    task = reactor.create_task(stream.readline())
    settle(reactor)
    task.cancel()
    run_until(reactor, task.done)
    assert task.cancelled()
    assert stream._waiter is None
    stream.feed_data(b"after\n")
    assert run(reactor, stream.readline()) == b"after\n"


def test_async_for_yields_lines_until_the_end(reactor: Reactor) -> None:
    """``async for`` over a reader gives each line, then the unterminated last one, then stops."""
    stream = StreamReader(reactor=reactor)

    async def collect() -> list[bytes]:
        return [line async for line in stream]

    task = reactor.create_task(collect())
    stream.feed_data(b"a\nb\n")
    settle(reactor)
    stream.feed_data(b"c")
    stream.feed_eof()
    run_until(reactor, task.done)
    assert task.result() == [b"a\n", b"b\n", b"c"]


def test_a_reader_without_a_reactor_uses_the_running_one(reactor: Reactor) -> None:
    """``StreamReader()`` made inside a task waits on that task's reactor."""

    async def main() -> bytes:
        stream = StreamReader()
        reactor.call_soon(stream.feed_data, b"late\n")
        return await stream.readline()

    assert run(reactor, main()) == b"late\n"


def test_feed_data_after_feed_eof_is_an_error(reactor: Reactor) -> None:
    """Feeding after the end is a bug of the feeder: RuntimeError."""
    stream = StreamReader(reactor=reactor)
    stream.feed_eof()
    with pytest.raises(RuntimeError):
        stream.feed_data(b"x")


# --------------------------------------------- adapted from CPython's test_streams.py


def test_feed_empty_data(reactor: Reactor) -> None:
    """Feeding nothing buffers nothing."""
    stream = StreamReader(reactor=reactor)
    stream.feed_data(b"")
    assert stream._buffer == b""


def test_feed_nonempty_data(reactor: Reactor) -> None:
    """Fed bytes are buffered."""
    stream = StreamReader(reactor=reactor)
    stream.feed_data(DATA)
    assert stream._buffer == DATA


def test_read_zero(reactor: Reactor) -> None:
    """read(0) returns nothing and consumes nothing."""
    stream = StreamReader(reactor=reactor)
    stream.feed_data(DATA)
    assert run(reactor, stream.read(0)) == b""
    assert stream._buffer == DATA


def test_read(reactor: Reactor) -> None:
    """A waiting read gets the data fed later."""
    stream = StreamReader(reactor=reactor)
    task = reactor.create_task(stream.read(30))
    reactor.call_soon(stream.feed_data, DATA)
    run_until(reactor, task.done)
    assert task.result() == DATA
    assert stream._buffer == b""


def test_read_line_breaks(reactor: Reactor) -> None:
    """read(n) takes n bytes whatever the line breaks."""
    stream = StreamReader(reactor=reactor)
    stream.feed_data(b"line1")
    stream.feed_data(b"line2")
    assert run(reactor, stream.read(5)) == b"line1"
    assert stream._buffer == b"line2"


def test_read_eof(reactor: Reactor) -> None:
    """A waiting read gets b'' at the end."""
    stream = StreamReader(reactor=reactor)
    task = reactor.create_task(stream.read(1024))
    reactor.call_soon(stream.feed_eof)
    run_until(reactor, task.done)
    assert task.result() == b""


def test_read_until_eof(reactor: Reactor) -> None:
    """read() collects everything until the end."""
    stream = StreamReader(reactor=reactor)
    task = reactor.create_task(stream.read(-1))

    def feed() -> None:
        stream.feed_data(b"chunk1\n")
        stream.feed_data(b"chunk2")
        stream.feed_eof()

    reactor.call_soon(feed)
    run_until(reactor, task.done)
    assert task.result() == b"chunk1\nchunk2"
    assert stream._buffer == b""


def test_read_exception(reactor: Reactor) -> None:
    """After set_exception, read raises it."""
    stream = StreamReader(reactor=reactor)
    stream.feed_data(b"line\n")
    assert run(reactor, stream.read(2)) == b"li"
    stream.set_exception(ValueError())
    with pytest.raises(ValueError):
        run(reactor, stream.read(2))


def test_invalid_limit(reactor: Reactor) -> None:
    """A limit must be positive."""
    for limit in (0, -1):
        with pytest.raises(ValueError, match="limit"):
            StreamReader(limit=limit, reactor=reactor)


def test_read_limit(reactor: Reactor) -> None:
    """The limit bounds lines, not read(n)."""
    stream = StreamReader(limit=3, reactor=reactor)
    stream.feed_data(b"chunk")
    assert run(reactor, stream.read(5)) == b"chunk"
    assert stream._buffer == b""


def test_readline(reactor: Reactor) -> None:
    """readline waits for the line end across chunks and leaves what follows."""
    stream = StreamReader(reactor=reactor)
    stream.feed_data(b"chunk1 ")
    task = reactor.create_task(stream.readline())

    def feed() -> None:
        stream.feed_data(b"chunk2 ")
        stream.feed_data(b"chunk3 ")
        stream.feed_data(b"\n chunk4")

    reactor.call_soon(feed)
    run_until(reactor, task.done)
    assert task.result() == b"chunk1 chunk2 chunk3 \n"
    assert stream._buffer == b" chunk4"


def test_readline_limit_with_existing_data(reactor: Reactor) -> None:
    """An over-long buffered line raises ValueError and is dropped (with its separator, if there)."""
    stream = StreamReader(limit=3, reactor=reactor)
    stream.feed_data(b"li")
    stream.feed_data(b"ne1\nline2\n")
    with pytest.raises(ValueError):
        run(reactor, stream.readline())
    assert stream._buffer == b"line2\n"

    stream = StreamReader(limit=3, reactor=reactor)
    stream.feed_data(b"li")
    stream.feed_data(b"ne1")
    stream.feed_data(b"li")
    with pytest.raises(ValueError):
        run(reactor, stream.readline())
    assert stream._buffer == b""


def test_at_eof(reactor: Reactor) -> None:
    """at_eof only once the end arrived and the buffer is empty."""
    stream = StreamReader(reactor=reactor)
    assert not stream.at_eof()
    stream.feed_data(b"some data\n")
    assert not stream.at_eof()
    run(reactor, stream.readline())
    assert not stream.at_eof()
    stream.feed_data(b"some data\n")
    stream.feed_eof()
    run(reactor, stream.readline())
    assert stream.at_eof()


def test_readline_limit(reactor: Reactor) -> None:
    """Lines longer than the limit fail while waiting too; the limit counts the separator strictly."""
    stream = StreamReader(limit=7, reactor=reactor)

    def feed_one() -> None:
        stream.feed_data(b"chunk1")
        stream.feed_data(b"chunk2")
        stream.feed_data(b"chunk3\n")
        stream.feed_eof()

    reactor.call_soon(feed_one)
    with pytest.raises(ValueError):
        run(reactor, stream.readline())
    assert stream._buffer == b""

    stream = StreamReader(limit=7, reactor=reactor)

    def feed_two() -> None:
        stream.feed_data(b"chunk1")
        stream.feed_data(b"chunk2\n")
        stream.feed_data(b"chunk3\n")
        stream.feed_eof()

    reactor.call_soon(feed_two)
    with pytest.raises(ValueError):
        run(reactor, stream.readline())
    assert stream._buffer == b"chunk3\n"

    stream = StreamReader(limit=7, reactor=reactor)
    stream.feed_data(b"1234567\n")
    assert run(reactor, stream.readline()) == b"1234567\n"
    assert stream._buffer == b""
    stream.feed_data(b"12345678\n")
    with pytest.raises(ValueError):
        run(reactor, stream.readline())
    assert stream._buffer == b""
    stream.feed_data(b"12345678")
    with pytest.raises(ValueError):
        run(reactor, stream.readline())
    assert stream._buffer == b""


def test_readline_nolimit_nowait(reactor: Reactor) -> None:
    """A line in the buffer is returned at once; the rest stays."""
    stream = StreamReader(reactor=reactor)
    stream.feed_data(DATA[:6])
    stream.feed_data(DATA[6:])
    assert run(reactor, stream.readline()) == b"line1\n"
    assert stream._buffer == b"line2\nline3\n"


def test_readline_eof(reactor: Reactor) -> None:
    """At the end, readline returns the unterminated rest."""
    stream = StreamReader(reactor=reactor)
    stream.feed_data(b"some data")
    stream.feed_eof()
    assert run(reactor, stream.readline()) == b"some data"


def test_readline_empty_eof(reactor: Reactor) -> None:
    """At the end with nothing left, readline returns b''."""
    stream = StreamReader(reactor=reactor)
    stream.feed_eof()
    assert run(reactor, stream.readline()) == b""


def test_readline_read_byte_count(reactor: Reactor) -> None:
    """read(n) after readline continues where the line ended."""
    stream = StreamReader(reactor=reactor)
    stream.feed_data(DATA)
    run(reactor, stream.readline())
    assert run(reactor, stream.read(7)) == b"line2\nl"
    assert stream._buffer == b"ine3\n"


def test_readline_exception(reactor: Reactor) -> None:
    """After set_exception, readline raises it."""
    stream = StreamReader(reactor=reactor)
    stream.feed_data(b"line\n")
    assert run(reactor, stream.readline()) == b"line\n"
    stream.set_exception(ValueError())
    with pytest.raises(ValueError):
        run(reactor, stream.readline())
    assert stream._buffer == b""


def test_readuntil_separator(reactor: Reactor) -> None:
    """An empty separator is refused."""
    stream = StreamReader(reactor=reactor)
    with pytest.raises(ValueError, match="separator"):
        run(reactor, stream.readuntil(separator=b""))


def test_readuntil_multi_chunks(reactor: Reactor) -> None:
    """readuntil returns up to and with the separator and leaves the rest."""
    stream = StreamReader(reactor=reactor)
    stream.feed_data(b"lineAAA")
    assert run(reactor, stream.readuntil(separator=b"AAA")) == b"lineAAA"
    assert stream._buffer == b""
    stream.feed_data(b"lineAAA")
    assert run(reactor, stream.readuntil(b"AAA")) == b"lineAAA"
    stream.feed_data(b"lineAAAxxx")
    assert run(reactor, stream.readuntil(b"AAA")) == b"lineAAA"
    assert stream._buffer == b"xxx"


def test_readuntil_multi_chunks_1(reactor: Reactor) -> None:
    """A separator split over chunks in every way is found, with overlapping near-matches."""
    stream = StreamReader(reactor=reactor)
    for chunks, expected in [
        ([b"QWEaa", b"XYaa", b"a"], b"QWEaaXYaaa"),
        ([b"QWEaa", b"XYa", b"aa"], b"QWEaaXYaaa"),
        ([b"aaa"], b"aaa"),
        ([b"Xaaa"], b"Xaaa"),
        ([b"XXX", b"a", b"a", b"a"], b"XXXaaa"),
    ]:
        for chunk in chunks:
            stream.feed_data(chunk)
        assert run(reactor, stream.readuntil(b"aaa")) == expected
        assert stream._buffer == b""


def test_readuntil_eof(reactor: Reactor) -> None:
    """The end without the separator: IncompleteReadError with everything, expected None."""
    stream = StreamReader(reactor=reactor)
    stream.feed_data(b"some dataAA")
    stream.feed_eof()
    with pytest.raises(IncompleteReadError, match="undefined expected bytes") as info:
        run(reactor, stream.readuntil(b"AAA"))
    assert info.value.partial == b"some dataAA"
    assert info.value.expected is None
    assert stream._buffer == b""


def test_readuntil_limit_found_sep(reactor: Reactor) -> None:
    """LimitOverrunError without and with the separator found; the bytes stay."""
    stream = StreamReader(limit=3, reactor=reactor)
    stream.feed_data(b"some dataAA")
    with pytest.raises(LimitOverrunError, match="not found"):
        run(reactor, stream.readuntil(b"AAA"))
    assert stream._buffer == b"some dataAA"
    stream.feed_data(b"A")
    with pytest.raises(LimitOverrunError, match="found, but") as info:
        run(reactor, stream.readuntil(b"AAA"))
    assert info.value.consumed == 9
    assert stream._buffer == b"some dataAAA"


def test_readexactly_zero_or_less(reactor: Reactor) -> None:
    """readexactly(0) is b''; a negative size is a ValueError; nothing is consumed."""
    stream = StreamReader(reactor=reactor)
    stream.feed_data(DATA)
    assert run(reactor, stream.readexactly(0)) == b""
    with pytest.raises(ValueError, match="negative"):
        run(reactor, stream.readexactly(-1))
    assert stream._buffer == DATA


def test_readexactly(reactor: Reactor) -> None:
    """readexactly waits for n bytes and leaves the rest."""
    stream = StreamReader(reactor=reactor)
    n = 2 * len(DATA)
    task = reactor.create_task(stream.readexactly(n))

    def feed() -> None:
        for _ in range(3):
            stream.feed_data(DATA)

    reactor.call_soon(feed)
    run_until(reactor, task.done)
    assert task.result() == DATA + DATA
    assert stream._buffer == DATA


def test_readexactly_limit(reactor: Reactor) -> None:
    """The limit does not bound readexactly."""
    stream = StreamReader(limit=3, reactor=reactor)
    stream.feed_data(b"chunk")
    assert run(reactor, stream.readexactly(5)) == b"chunk"


def test_readexactly_eof(reactor: Reactor) -> None:
    """The end before n bytes: IncompleteReadError and its message."""
    stream = StreamReader(reactor=reactor)
    n = 2 * len(DATA)
    task = reactor.create_task(stream.readexactly(n))

    def feed() -> None:
        stream.feed_data(DATA)
        stream.feed_eof()

    reactor.call_soon(feed)
    run_until(reactor, task.done)
    with pytest.raises(IncompleteReadError) as info:
        task.result()
    assert info.value.partial == DATA
    assert info.value.expected == n
    assert str(info.value) == "18 bytes read on a total of 36 expected bytes"


def test_readexactly_exception(reactor: Reactor) -> None:
    """After set_exception, readexactly raises it."""
    stream = StreamReader(reactor=reactor)
    stream.feed_data(b"line\n")
    assert run(reactor, stream.readexactly(2)) == b"li"
    stream.set_exception(ValueError())
    with pytest.raises(ValueError):
        run(reactor, stream.readexactly(2))


def test_exception(reactor: Reactor) -> None:
    """exception() returns what set_exception set."""
    stream = StreamReader(reactor=reactor)
    assert stream.exception() is None
    exc = ValueError()
    stream.set_exception(exc)
    assert stream.exception() is exc


def test_exception_waiter(reactor: Reactor) -> None:
    """set_exception fails the waiting read."""
    stream = StreamReader(reactor=reactor)

    async def set_error() -> None:
        stream.set_exception(ValueError())

    first = reactor.create_task(stream.readline())
    second = reactor.create_task(set_error())
    run_until(reactor, lambda: first.done() and second.done())
    with pytest.raises(ValueError):
        first.result()


def test_exception_cancel(reactor: Reactor) -> None:
    """set_exception after the waiting read was cancelled is harmless."""
    stream = StreamReader(reactor=reactor)
    task = reactor.create_task(stream.readline())
    settle(reactor)
    task.cancel()
    settle(reactor)
    stream.set_exception(RuntimeError("message"))
    settle(reactor)
    assert stream._waiter is None


def test_IncompleteReadError_pickleable() -> None:  # noqa: N802 - CPython's name
    """IncompleteReadError survives pickling."""
    e = IncompleteReadError(b"abc", 10)
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        e2 = pickle.loads(pickle.dumps(e, protocol=proto))
        assert (str(e2), e2.partial, e2.expected) == (str(e), e.partial, e.expected)


def test_LimitOverrunError_pickleable() -> None:  # noqa: N802 - CPython's name
    """LimitOverrunError survives pickling."""
    e = LimitOverrunError("message", 10)
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        e2 = pickle.loads(pickle.dumps(e, protocol=proto))
        assert (str(e2), e2.consumed) == (str(e), e.consumed)


def test_multiple_drain(reactor: Reactor) -> None:
    """Ten coroutines draining one paused writer all finish when it resumes."""
    (_, writer), (peer_reader, _) = memory_stream_pair(
        reactor, window=10, limits=TransportLimits(high=100, low=50)
    )
    peer_reader._transport.pause_reading()
    writer.write(b"x" * 500)
    assert writer.transport.get_write_buffer_size() > 100
    drained = 0

    async def drainer() -> None:
        nonlocal drained
        await writer.drain()
        drained += 1

    tasks = [reactor.create_task(drainer()) for _ in range(10)]
    settle(reactor)
    assert drained == 0
    peer_reader._transport.resume_reading()
    run(reactor, peer_reader.readexactly(500))
    run_until(reactor, lambda: all(task.done() for task in tasks))
    assert drained == 10
    writer.close()
    settle(reactor)


def test_drain_raises(reactor: Reactor) -> None:
    """Writing and draining to a peer that closed ends in a connection error, not a loop."""
    messages: list[Any] = []
    reactor.set_exception_handler(lambda r, ctx: messages.append(ctx))
    listening = socket.create_server(("127.0.0.1", 0))

    async def client() -> None:
        _, writer = await open_connection(f"127.0.0.1:{listening.getsockname()[1]}")
        accepted, _ = listening.accept()  # socket-ok: the test's own peer
        accepted.close()
        try:
            while True:
                writer.write(b"foo\n")
                await writer.drain()
        finally:
            writer.close()

    try:
        with pytest.raises((ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
            run(reactor, client())
    finally:
        listening.close()
    settle(reactor)
    assert messages == []


# ------------------------------------------------------- streams in memory


def test_a_conversation_in_memory(reactor: Reactor) -> None:
    """Two ends in memory: lines both ways, half-close, the end seen by the reader."""
    (reader_a, writer_a), (reader_b, writer_b) = memory_stream_pair(reactor)

    async def side_a() -> list[bytes]:
        writer_a.write(b"ping\n")
        writer_a.write_eof()
        return [await reader_a.readline(), await reader_a.read()]

    async def side_b() -> bytes:
        line = await reader_b.readline()
        writer_b.writelines([b"pong: ", line])
        rest = await reader_b.read()
        writer_b.close()
        await writer_b.wait_closed()
        return rest

    a = reactor.create_task(side_a())
    b = reactor.create_task(side_b())
    run_until(reactor, lambda: a.done() and b.done(), timeout=0)
    assert a.result() == [b"pong: ping\n", b""]
    assert b.result() == b""
    assert reader_a.at_eof() and reader_b.at_eof()
    assert writer_a.can_write_eof()
    assert writer_b.is_closing()


def test_drain_bounds_memory_for_a_peer_that_does_not_read(reactor: Reactor) -> None:
    """A writer that drains stays pending while the peer reads nothing; its buffer stays bounded; it resumes."""
    high = 4096
    (_, writer), (peer, _) = memory_stream_pair(reactor, window=8192, limits=TransportLimits(high=high))
    peer._transport.pause_reading()
    chunk = b"x" * 1000
    written = 0

    async def produce() -> None:
        nonlocal written
        for _ in range(100):
            writer.write(chunk)
            written += len(chunk)
            await writer.drain()

    task = reactor.create_task(produce())
    settle(reactor, 20)
    assert not task.done()
    assert writer.transport.get_write_buffer_size() <= high + len(chunk)
    assert written <= 8192 + high + len(chunk)
    peer._transport.resume_reading()
    got = run(reactor, peer.readexactly(100 * len(chunk)))
    run_until(reactor, task.done, timeout=0)
    assert got == chunk * 100
    writer.close()
    settle(reactor)


def test_one_cancelled_wait_closed_leaves_the_others_waiting(reactor: Reactor) -> None:
    """Two tasks wait for the writer to close; cancelling one does not disturb the other."""
    (_, writer), _ = memory_stream_pair(reactor)
    first = reactor.create_task(writer.wait_closed())
    second = reactor.create_task(writer.wait_closed())
    settle(reactor)
    first.cancel()
    settle(reactor)
    assert first.cancelled() and not second.done()
    writer.close()
    run_until(reactor, second.done, timeout=0)
    assert second.result() is None
    run(reactor, writer.wait_closed())  # once closed, at once


def test_the_reader_limit_pauses_the_transport(reactor: Reactor) -> None:
    """A reader holding more than twice its limit pauses reading, and resumes once read down."""
    (reader, _), (_, peer) = memory_stream_pair(reactor, limit=100, window=100_000,
                                                limits=TransportLimits(max_read=64))
    peer.write(b"y" * 5000)
    settle(reactor, 50)
    assert not reader._transport.is_reading()
    assert 200 < len(reader._buffer) <= 200 + 64
    assert peer.transport.in_flight == 5000 - len(reader._buffer)  # the rest waits below, not in the reader
    got = run(reactor, reader.readexactly(5000))
    assert got == b"y" * 5000
    assert reader._transport.is_reading()
    peer.close()
    settle(reactor)


def test_a_deadline_fails_the_read(reactor: Reactor, clock: ManualClock) -> None:
    """An idle deadline on a memory pair ends the waiting read with TimeoutError."""
    (reader, writer), _ = memory_stream_pair(reactor, limits=TransportLimits(idle_timeout=5.0))
    task = reactor.create_task(reader.readline())
    settle(reactor)
    clock.advance(5.1)
    run_until(reactor, task.done, timeout=0)
    with pytest.raises(TimeoutError):
        task.result()
    with pytest.raises(TimeoutError):
        run(reactor, writer.drain())


# ------------------------------------------------------------ over sockets


async def echo_lines(reader: StreamReader, writer: StreamWriter) -> None:
    """The server callback the socket tests use: echo each line with a prefix."""
    async for line in reader:
        writer.write(b"echo: " + line)
        await writer.drain()


async def started(address: str, cb: Callable[..., Any] = echo_lines, **kwargs: Any) -> StreamServer:
    """A stream server (a coroutine, to run as a task)."""
    return await start_server(cb, address, **kwargs)


def test_open_connection_and_start_server(reactor: Reactor) -> None:
    """An echo over loopback: lines back and forth, then the client closes and waits for it."""
    server = run(reactor, started("127.0.0.1:0"))

    async def client() -> list[bytes]:
        reader, writer = await open_connection(server.address)
        assert writer.get_extra_info("peername")[1] == server.sockaddr[1]
        replies = []
        for word in (b"one", b"two", b"three"):
            writer.write(word + b"\n")
            await writer.drain()
            replies.append(await reader.readline())
        writer.close()
        await writer.wait_closed()
        return replies

    assert run(reactor, client()) == [b"echo: one\n", b"echo: two\n", b"echo: three\n"]
    server.close()
    run(reactor, server.wait_closed())
    run_until(reactor, lambda: not reactor.connections)


def test_open_unix_connection_and_start_unix_server(reactor: Reactor, tmp_path: Any) -> None:
    """The same echo over a Unix socket."""
    server = run(reactor, started(f"unix:{tmp_path}/echo.sock"))

    async def client() -> bytes:
        reader, writer = await open_connection(server.address)
        writer.write(b"over unix\n")
        line = await reader.readline()
        writer.close()
        await writer.wait_closed()
        return line

    assert run(reactor, client()) == b"echo: over unix\n"
    server.close()
    run(reactor, server.wait_closed())


def test_open_connection_error(reactor: Reactor) -> None:
    """A refused connect raises ConnectionRefusedError from open_connection."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with pytest.raises(ConnectionRefusedError):
        run(reactor, open_connection(f"127.0.0.1:{port}"))


def test_the_connection_closes_when_the_callback_returns(reactor: Reactor) -> None:
    """The server flushes what the callback wrote and closes when it returns; the client sees the end."""

    async def greet(reader: StreamReader, writer: StreamWriter) -> None:
        writer.write(b"hello and goodbye\n")

    server = run(reactor, started("127.0.0.1:0", greet))

    async def client() -> bytes:
        reader, writer = await open_connection(server.address)
        data = await reader.read()
        writer.close()
        return data

    assert run(reactor, client()) == b"hello and goodbye\n"
    run_until(reactor, lambda: not reactor.connections)
    server.close()


def test_a_failing_callback_is_reported_and_its_connection_aborted(reactor: Reactor) -> None:
    """An exception in the callback goes to the exception handler; only that connection closes."""
    reported: list[dict[str, Any]] = []
    reactor.set_exception_handler(lambda r, ctx: reported.append(ctx))

    async def broken(reader: StreamReader, writer: StreamWriter) -> None:
        await reader.readline()
        raise KeyError("bug")

    server = run(reactor, started("127.0.0.1:0", broken))

    async def client() -> bytes:
        reader, writer = await open_connection(server.address)
        writer.write(b"go\n")
        try:
            return await reader.read()
        except ConnectionResetError:
            return b"reset"
        finally:
            writer.close()

    assert run(reactor, client()) in (b"", b"reset")
    assert len(reported) == 1 and isinstance(reported[0]["exception"], KeyError)
    assert server.is_serving()
    server.close()
    run_until(reactor, lambda: not reactor.connections)


def test_a_peer_reset_out_of_an_unguarded_read_is_not_an_error(reactor: Reactor, caplog: Any) -> None:
    """A reset that leaves the callback through its read is the peer's fault: logged at INFO, not reported."""
    reported: list[dict[str, Any]] = []
    reactor.set_exception_handler(lambda r, ctx: reported.append(ctx))
    entered: list[int] = []

    async def reads(reader: StreamReader, writer: StreamWriter) -> None:
        entered.append(1)
        await reader.read()

    server = run(reactor, started("127.0.0.1:0", reads))
    client = socket.create_connection(server.sockaddr[:2], timeout=5)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    run_until(reactor, lambda: entered == [1])
    with caplog.at_level(logging.INFO, logger="reactor.streams"):
        client.close()  # with SO_LINGER 0: a reset
        run_until(reactor, lambda: not reactor.connections and not server._tasks)
    assert reported == []
    assert any("lost" in record.getMessage() for record in caplog.records)
    server.close()


def test_server_close_cancels_the_callbacks(reactor: Reactor) -> None:
    """close() aborts every connection and cancels each callback's task, whose finally runs."""
    entered: list[int] = []
    finished: list[str] = []

    async def waits_forever(reader: StreamReader, writer: StreamWriter) -> None:
        entered.append(1)
        try:
            await sleep(3600)
        finally:
            finished.append("finally")

    server = run(reactor, started("127.0.0.1:0", waits_forever))
    clients = [run(reactor, open_connection(server.address)) for _ in range(3)]
    run_until(reactor, lambda: len(entered) == 3)
    server.close()
    run(reactor, server.wait_closed())
    assert finished == ["finally"] * 3
    for reader, writer in clients:
        assert run(reactor, reader.read()) == b""
        writer.close()
    run_until(reactor, lambda: not reactor.connections)


def test_a_deadline_cancels_the_callback(reactor: Reactor, clock: ManualClock) -> None:
    """The connection's timeout passes: the callback's task is cancelled and its finally runs."""
    finished: list[str] = []

    async def slow(reader: StreamReader, writer: StreamWriter) -> None:
        try:
            await sleep(3600)
        finally:
            finished.append("finally")

    server = run(reactor, started("127.0.0.1:0", slow, timeout=10.0))
    reader, writer = run(reactor, open_connection(server.address))
    run_until(reactor, lambda: server.statistics()["active"] == 1 and len(server._tasks) == 1)
    settle(reactor)
    clock.advance(10.5)
    run_until(reactor, lambda: finished == ["finally"])
    assert run(reactor, reader.read()) == b""
    writer.close()
    server.close()
    run_until(reactor, lambda: not reactor.connections)


def test_async_with_server_and_serve_forever(reactor: Reactor) -> None:
    """``async with`` closes the server; serve_forever returns when it is closed."""

    async def main() -> bool:
        async with await start_server(echo_lines, "127.0.0.1:0") as server:
            forever = reactor.create_task(server.serve_forever())
            reader, writer = await open_connection(server.address)
            writer.write(b"x\n")
            assert await reader.readline() == b"echo: x\n"
            writer.close()
            await writer.wait_closed()
            server.close()
            await forever
        return server.is_serving()

    assert run(reactor, main()) is False
    run_until(reactor, lambda: not reactor.connections)


def test_a_cancelled_wait_closed_is_cancelled_and_the_next_one_works(reactor: Reactor, clock: ManualClock) -> None:
    """wait_for around wait_closed times out (the cancel is not swallowed); a later wait_closed still completes."""
    entered: list[int] = []

    async def lingers(reader: StreamReader, writer: StreamWriter) -> None:
        entered.append(1)
        await reader.read()

    server = run(reactor, started("127.0.0.1:0", lingers))
    _, writer = run(reactor, open_connection(server.address))
    run_until(reactor, lambda: entered == [1])

    async def impatient() -> str:
        try:
            await wait_for(server.wait_closed(), 0.01)
        except TimeoutError:
            return "timed out"
        return "closed"

    task = reactor.create_task(impatient())
    settle(reactor)
    clock.advance(0.02)
    run_until(reactor, task.done)
    assert task.result() == "timed out"
    server.close()
    run(reactor, server.wait_closed())
    assert server._tasks == set()
    writer.close()
    run_until(reactor, lambda: not reactor.connections)


def test_a_plain_callback_keeps_reader_and_writer_itself(reactor: Reactor) -> None:
    """A plain function as client_connected_cb: no task, the connection stays open for whoever keeps the writer."""
    kept: list[tuple[StreamReader, StreamWriter]] = []
    server = run(reactor, started("127.0.0.1:0", lambda r, w: kept.append((r, w))))
    reader, writer = run(reactor, open_connection(server.address))
    run_until(reactor, lambda: bool(kept))
    assert server._tasks == set()
    server_reader, server_writer = kept[0]
    writer.write(b"to the kept reader\n")
    assert run(reactor, server_reader.readline()) == b"to the kept reader\n"
    server_writer.write(b"back\n")
    assert run(reactor, reader.readline()) == b"back\n"
    writer.close()
    server.close()
    run_until(reactor, lambda: not reactor.connections)


def test_eof_feed_when_closing_writer(reactor: Reactor) -> None:
    """After close() and wait_closed(), the client's reader is at its end and read() gives b'' (no error reported)."""
    messages: list[Any] = []
    reactor.set_exception_handler(lambda r, ctx: messages.append(ctx))
    server = run(reactor, started("127.0.0.1:0"))

    async def client() -> tuple[bool, bytes]:
        reader, writer = await open_connection(server.address)
        writer.close()
        await writer.wait_closed()
        return reader.at_eof(), await reader.read()

    assert run(reactor, client()) == (True, b"")
    server.close()
    run_until(reactor, lambda: not reactor.connections)
    assert messages == []


def test_write_after_close_raises(reactor: Reactor) -> None:
    """write() after close() is misuse: RuntimeError at once; drain() then raises ConnectionResetError."""
    server = run(reactor, started("127.0.0.1:0"))

    async def client() -> None:
        _, writer = await open_connection(server.address)
        writer.close()
        with pytest.raises(RuntimeError):
            writer.write(b"late")
        with pytest.raises(ConnectionResetError):
            await writer.drain()
        await writer.wait_closed()

    run(reactor, client())
    server.close()
    run_until(reactor, lambda: not reactor.connections)


def test_wait_closed_on_close_with_unread_data(reactor: Reactor) -> None:
    """Closing with a reply unread still completes wait_closed; the reader then sees the end."""

    async def chatty(reader: StreamReader, writer: StreamWriter) -> None:
        writer.write(b"first\n" + b"more" * 1000)
        await reader.read()

    server = run(reactor, started("127.0.0.1:0", chatty))

    async def client() -> bytes:
        reader, writer = await open_connection(server.address)
        line = await reader.readline()
        assert not writer.is_closing()
        writer.close()
        assert writer.is_closing()
        await writer.wait_closed()
        return line

    assert run(reactor, client()) == b"first\n"
    server.close()
    run_until(reactor, lambda: not reactor.connections)


def test_drain_over_sockets_waits_for_a_slow_reader(reactor: Reactor) -> None:
    """Over a socket, a writer draining to a peer that reads nothing stays pending with a bounded buffer."""
    gate: list[Any] = []
    high = 16 * 1024

    async def flood(reader: StreamReader, writer: StreamWriter) -> None:
        writer.transport.set_write_buffer_limits(high)
        gate.append(writer)
        for _ in range(10_000):
            writer.write(b"z" * 1024)
            await writer.drain()

    server = run(reactor, started("127.0.0.1:0", flood))
    reader, writer = run(reactor, open_connection(server.address))
    reader._transport.pause_reading()
    run_until(reactor, lambda: bool(gate))
    settle(reactor, 50)
    server_writer = gate[0]
    assert server_writer.transport.get_write_buffer_size() <= high + 1024
    (task,) = server._tasks
    assert not task.done()
    reader._transport.resume_reading()
    got = run(reactor, reader.readexactly(10_000 * 1024), turns=100_000)
    assert len(got) == 10_000 * 1024
    run_until(reactor, task.done)
    writer.close()
    server.close()
    run_until(reactor, lambda: not reactor.connections)


def test_a_server_that_does_not_read_holds_a_bounded_buffer(reactor: Reactor) -> None:
    """Over sockets: the server's reader stops at about twice its limit, and the client's drain then waits."""
    readers: list[StreamReader] = []
    gate = reactor.create_future()

    async def slow_reader(reader: StreamReader, writer: StreamWriter) -> None:
        readers.append(reader)
        await gate
        while await reader.read(65536):
            pass

    server = run(reactor, started("127.0.0.1:0", slow_reader, limit=1024, max_read=4096))
    reader, writer = run(reactor, open_connection(server.address))
    sent = 0

    async def flood() -> None:
        nonlocal sent
        for _ in range(2000):
            writer.write(b"w" * 4096)
            sent += 4096
            await writer.drain()
        writer.write_eof()

    task = reactor.create_task(flood())
    run_until(reactor, lambda: bool(readers))
    settle(reactor, 200)
    assert not task.done()
    (server_reader,) = readers
    assert 2 * 1024 < len(server_reader._buffer) <= 2 * 1024 + 4096
    assert sent < 2000 * 4096
    gate.set_result(None)
    run_until(reactor, task.done, turns=100_000)
    assert sent == 2000 * 4096
    run_until(reactor, lambda: not server._tasks, turns=100_000)
    writer.close()
    server.close()
    run_until(reactor, lambda: not reactor.connections)


def test_start_server_behind_a_proxy_sees_the_client_it_names(reactor: Reactor) -> None:
    """proxy_protocol=True (a create_server keyword): the callback's peername is the client the PROXY header names."""

    async def who(reader: StreamReader, writer: StreamWriter) -> None:
        await reader.readline()
        writer.write(repr(writer.get_extra_info("peername")).encode() + b"\n")

    server = run(reactor, started("127.0.0.1:0", who, proxy_protocol=True))

    async def client() -> bytes:
        reader, writer = await open_connection(server.address)
        writer.write(b"PROXY TCP4 203.0.113.7 127.0.0.1 51000 80\r\nhi\n")
        line = await reader.readline()
        writer.close()
        return line

    assert run(reactor, client()) == b"('203.0.113.7', 51000)\n"
    server.close()
    run_until(reactor, lambda: not reactor.connections)


# ------------------------------------------------------------------ TLS


def test_streams_over_tls(reactor: Reactor) -> None:
    """start_server(ssl=) and open_connection(ssl=): an echo over TLS, the cipher visible to both."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    ciphers: list[Any] = []

    async def tls_echo(reader: StreamReader, writer: StreamWriter) -> None:
        ciphers.append(writer.get_extra_info("cipher"))
        await echo_lines(reader, writer)

    server = run(reactor, started("127.0.0.1:0", tls_echo, ssl=server_context))
    port = server.sockaddr[1]

    async def client() -> bytes:
        reader, writer = await open_connection(f"localhost:{port}", ssl=client_context)
        assert writer.get_extra_info("ssl_object") is not None
        writer.write(b"secret\n")
        line = await reader.readline()
        writer.close()
        await writer.wait_closed()
        return line

    assert run(reactor, client()) == b"echo: secret\n"
    assert ciphers and ciphers[0] is not None
    server.close()
    run(reactor, server.wait_closed())
    run_until(reactor, lambda: not reactor.connections)


def test_tls_handshake_failure_raises_from_open_connection(reactor: Reactor) -> None:
    """A certificate the client does not trust: open_connection raises ssl.SSLError."""
    trustme = pytest.importorskip("trustme")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("localhost").configure_cert(server_context)
    server = run(reactor, started("127.0.0.1:0", ssl=server_context))
    with pytest.raises(ssl.SSLError):
        run(reactor, open_connection(f"localhost:{server.sockaddr[1]}", ssl=ssl.create_default_context()))
    server.close()
    run_until(reactor, lambda: not reactor.connections)


# ------------------------------------------- the wakeup inside the read callback


def test_data_from_the_transport_steps_the_waiting_task_in_the_same_callback(reactor: Reactor) -> None:
    """A line delivered by the transport runs the parked readline's task inside that delivery: nothing is queued."""
    (reader, _), (_, peer) = memory_stream_pair(reactor)
    seen: list[bytes] = []

    async def consume() -> None:
        while True:
            line = await reader.readline()
            if not line:
                return
            seen.append(line)

    task = reactor.create_task(consume())
    settle(reactor)
    peer.write(b"one\n")
    reactor.run_once(0)  # the memory transport delivers in this turn
    assert seen == [b"one\n"]
    assert len(reactor._ready) == 0  # no wakeup left queued for a later turn
    peer.write_eof()
    run_until(reactor, task.done, timeout=0)
    assert task.result() is None


def test_a_whole_line_is_handed_over_as_the_bytes_received(reactor: Reactor) -> None:
    """readline waiting on an empty buffer gets the received bytes object itself, not a copy."""
    (reader, _), _ = memory_stream_pair(reactor)
    task = reactor.create_task(reader.readline())
    settle(reactor)
    line = b"exactly one line\n"
    reactor.call_soon(reader._data_received, line)  # as the transport does, from inside a turn
    run_until(reactor, task.done, timeout=0)
    assert task.result() is line
    assert not reader._buffer


def test_data_that_is_not_one_whole_line_goes_through_the_buffer(reactor: Reactor) -> None:
    """Two lines, or a partial one, in one delivery: readline returns the first, the rest stays buffered."""
    (reader, _), _ = memory_stream_pair(reactor)
    task = reactor.create_task(reader.readline())
    settle(reactor)
    reactor.call_soon(reader._data_received, b"first\nsecond\npart")
    run_until(reactor, task.done, timeout=0)
    assert task.result() == b"first\n"
    assert bytes(reader._buffer) == b"second\npart"
    assert run(reactor, reader.readline()) == b"second\n"


def test_a_line_handed_over_to_a_task_then_cancelled_is_kept(reactor: Reactor) -> None:
    """If the step that receives a handed-over line throws CancelledError instead, the line stays readable."""
    (reader, _), _ = memory_stream_pair(reactor)
    task = reactor.create_task(reader.readline())
    settle(reactor)
    task._must_cancel = True  # a cancellation that reaches the task at its next step
    reactor.call_soon(reader._data_received, b"keep me\n")
    run_until(reactor, task.done, timeout=0)
    assert task.cancelled()
    assert finished_without_waiting(reader.readline()) == b"keep me\n"


def test_data_inside_another_tasks_step_is_queued_not_nested(reactor: Reactor) -> None:
    """Data that reaches a reader while some task is being stepped wakes its reader's task through the queue."""
    (reader, _), _ = memory_stream_pair(reactor)
    steps: list[str] = []

    async def consume() -> bytes:
        line = await reader.readline()
        steps.append("consumer resumed")
        return line

    async def feed() -> None:
        reader._data_received(b"from a task\n")
        steps.append("feeder went on")

    consumer = reactor.create_task(consume())
    settle(reactor)
    reactor.create_task(feed())
    run_until(reactor, consumer.done, timeout=0)
    assert steps == ["feeder went on", "consumer resumed"]
    assert consumer.result() == b"from a task\n"


def test_data_outside_a_turn_wakes_the_task_in_the_next_turn(reactor: Reactor) -> None:
    """A protocol called by plain code (not from a reactor callback) does not run the task inside that call."""
    (reader, _), _ = memory_stream_pair(reactor)
    task = reactor.create_task(reader.readline())
    settle(reactor)
    reader._data_received(b"later\n")
    assert not task.done()
    run_until(reactor, task.done, timeout=0)
    assert task.result() == b"later\n"


def test_readline_reuses_its_waiter_and_a_cancelled_wait_does_not_spoil_the_next(reactor: Reactor) -> None:
    """Waits one after another, a cancelled one between them: every later read still gets its line."""
    (reader, _), (_, peer) = memory_stream_pair(reactor)
    for n in range(3):
        task = reactor.create_task(reader.readline())
        settle(reactor)
        peer.write(b"line %d\n" % n)
        run_until(reactor, task.done, timeout=0)
        assert task.result() == b"line %d\n" % n
    cancelled = reactor.create_task(reader.readline())
    settle(reactor)
    cancelled.cancel()
    settle(reactor)
    assert cancelled.cancelled()
    assert reader._spare is None or reader._spare.done()
    peer.write(b"after\n")
    assert run(reactor, reader.readline()) == b"after\n"


def test_a_task_started_eagerly_in_a_turn_and_fed_in_it_still_knows_its_reactor(reactor: Reactor) -> None:
    """A task made eagerly by a callback, parked on a reader, then fed in the same turn: current_task() works."""
    from reactor.tasks import current_task

    (reader, _), _ = memory_stream_pair(reactor)
    seen: list[Any] = []

    async def consume() -> None:
        await reader.readline()
        seen.append(current_task())

    def start_and_feed() -> None:
        seen.append(reactor.create_task(consume(), eager_start=True))
        reader._data_received(b"same turn\n")

    reactor.call_soon(start_and_feed)
    run_until(reactor, lambda: len(seen) == 2, timeout=0)
    assert seen[1] is seen[0]
