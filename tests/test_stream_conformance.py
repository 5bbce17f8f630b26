"""One conformance suite for stream transports: TCP, TLS, socketpair and memory pairs behave alike.

Every test runs on four kinds of connected pair: real loopback TCP
(`create_server` + `create_connection`), the same over TLS (``ssl=``, with
certificates made by ``trustme``), a `socket.socketpair` wrapped on
both ends with `attach_socket`, and `memory_pair`.  Every case holds over TLS
(half-close included: ``write_eof`` sends ``close_notify``); only byte counts
of buffered output differ, by the TLS record overhead, which `Pairs.overhead`
allows for.  ``a`` is the side the test
drives first (the TCP client); ``b`` its peer.  The reactor runs on a manual
clock; loopback sockets are driven with bounded turns, never sleeps.
"""

from __future__ import annotations

import array
import functools
import random
import socket
import ssl
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import run_until

from reactor import Reactor
from reactor.streams import Protocol
from reactor.transport.connect import attach_socket
from reactor.transport.memory import memory_pair

KINDS = ["tcp", "tls", "socketpair", "memory"]
#: Big enough to overflow every kind's kernel (or simulated) buffers.
BIG = random.Random(7).randbytes(4 * 1024 * 1024)
#: Socket buffers for the TCP kind: small, so partial writes happen early.
TCP_BUFFER = 64 * 1024


@functools.cache
def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server and a client context, from a CA made for this test run (nothing secret is committed)."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1", "::1").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


class Boom(Exception):
    """The failure a test protocol raises on purpose."""


class Recorder(Protocol):
    """A protocol that records every callback, and can be told to misbehave."""

    def __init__(self, eof_result: bool | None = None) -> None:
        self.events: list[str] = []
        self.data = bytearray()
        self.lost: list[BaseException | None] = []
        self.eof_result = eof_result
        self.raise_in: str | None = None
        self.on_data: Callable[[bytes], None] | None = None
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.events.append("made")
        if self.raise_in == "connection_made":
            raise Boom("connection_made")

    def data_received(self, data: bytes) -> None:
        self.events.append("data")
        self.data += data
        if self.raise_in == "data_received":
            raise Boom("data_received")
        if self.on_data is not None:
            self.on_data(data)

    def eof_received(self) -> bool | None:
        self.events.append("eof")
        if self.raise_in == "eof_received":
            raise Boom("eof_received")
        return self.eof_result

    def connection_lost(self, exc: BaseException | None) -> None:
        self.events.append("lost")
        self.lost.append(exc)

    def pause_writing(self) -> None:
        self.events.append("pause_writing")

    def resume_writing(self) -> None:
        self.events.append("resume_writing")


class Pair:
    """Two connected transports ``a``/``b`` and their recorders ``pa``/``pb``."""

    def __init__(self, a: Any, b: Any, pa: Recorder, pb: Recorder) -> None:
        self.a, self.b, self.pa, self.pb = a, b, pa, pb


class Pairs:
    """Makes pairs of one kind on one reactor, and tears them all down."""

    def __init__(self, reactor: Reactor, kind: str) -> None:
        self.reactor = reactor
        self.kind = kind
        self.made: list[Pair] = []
        self.servers: list[Any] = []

    def make(self, pa: Recorder | None = None, pb: Recorder | None = None) -> Pair:
        """A connected pair; both ``connection_made`` calls have happened."""
        pa = pa or Recorder()
        pb = pb or Recorder()
        reactor = self.reactor
        if self.kind == "tcp":
            server = reactor.create_server(lambda: pb, "localhost:0")
            self.servers.append(server)
            fut = reactor.create_connection(lambda: pa, server.address)
            run_until(reactor, lambda: fut.done() and pb.transport is not None)
            a, _ = fut.result()
            b = pb.transport
            for t in (a, b):
                sock = t.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, TCP_BUFFER)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, TCP_BUFFER)
        elif self.kind == "tls":
            server_context, client_context = tls_contexts()
            server = reactor.create_server(lambda: pb, "localhost:0", ssl=server_context)
            self.servers.append(server)
            fut = reactor.create_connection(lambda: pa, server.address, ssl=client_context)
            run_until(reactor, lambda: fut.done() and pb.transport is not None)
            a, _ = fut.result()
            b = pb.transport
            for t in (a, b):
                sock = t.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, TCP_BUFFER)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, TCP_BUFFER)
        elif self.kind == "socketpair":
            sa, sb = socket.socketpair()
            a = attach_socket(reactor, sa, pa)
            b = attach_socket(reactor, sb, pb)
        else:
            a, b = memory_pair(reactor, pa, pb)
        pair = Pair(a, b, pa, pb)
        self.made.append(pair)
        return pair

    def overhead(self, size: int) -> int:
        """How many more bytes than ``size`` written may be buffered (TLS records: header, tag, padding)."""
        return 0 if self.kind != "tls" else (size // 16384 + 1) * 64

    def close(self) -> None:
        """Abort what is still open, check connection_lost came exactly once, close the servers."""
        recorders = [p for pair in self.made for p in (pair.pa, pair.pb) if p.transport is not None]
        for pair in self.made:
            pair.a.abort()
            pair.b.abort()
        run_until(self.reactor, lambda: all(p.lost for p in recorders), turns=50)
        for _ in range(3):
            self.reactor.run_once(0)
        for p in recorders:
            assert len(p.lost) == 1, f"connection_lost called {len(p.lost)} times: {p.events}"
        for server in self.servers:
            server.close()


@pytest.fixture(params=KINDS)
def pairs(request: pytest.FixtureRequest, reactor: Reactor) -> Iterator[Pairs]:
    """A maker of connected pairs of one kind (tcp, tls, socketpair, memory)."""
    maker = Pairs(reactor, request.param)
    yield maker
    maker.close()


def both_lost(pair: Pair) -> Callable[[], bool]:
    """A predicate: both ends got connection_lost."""
    return lambda: bool(pair.pa.lost and pair.pb.lost)


def slow_reader(reactor: Reactor, transport: Any) -> Callable[[bytes], None]:
    """An on_data hook that pauses reading after each chunk and resumes in a later turn."""

    def on_data(data: bytes) -> None:
        transport.pause_reading()
        reactor.call_soon(transport.resume_reading)

    return on_data


# ------------------------------------------------------------ ordering and partial writes


def test_many_writes_arrive_in_order(reactor: Reactor, pairs: Pairs) -> None:
    """Thousands of small writes of every buffer type arrive in order, byte-exact."""
    p = pairs.make()
    expected = bytearray()
    for i in range(3000):
        chunk = b"%d," % i
        expected += chunk
        if i % 3 == 0:
            p.a.write(chunk)
        elif i % 3 == 1:
            p.a.write(bytearray(chunk))
        else:
            p.a.write(memoryview(chunk))
    p.a.writelines([b"x" * 1000, b"", b"end"])
    expected += b"x" * 1000 + b"end"
    run_until(reactor, lambda: len(p.pb.data) >= len(expected))
    assert p.pb.data == expected


def test_write_takes_any_buffer_of_bytes_and_refuses_the_rest(reactor: Reactor, pairs: Pairs) -> None:
    """A memoryview of wider items is sent as its bytes; a str or an int is a TypeError, and nothing is sent."""
    p = pairs.make()
    wide = array.array("i", [1, 2, 3])
    for bad in ("text", 42):
        with pytest.raises(TypeError, match="data must be bytes, bytearray or memoryview"):
            p.a.write(bad)  # type: ignore[arg-type]
    p.a.write(memoryview(wide))
    p.a.write(b"!")
    run_until(reactor, lambda: len(p.pb.data) >= len(wide.tobytes()) + 1)
    assert p.pb.data == wide.tobytes() + b"!"


def test_multi_mib_write_to_slow_reader_arrives_whole(reactor: Reactor, pairs: Pairs) -> None:
    """A 4 MiB write is partly buffered, and a peer reading a chunk per turn gets all of it."""
    p = pairs.make()
    p.pb.on_data = slow_reader(reactor, p.b)
    p.a.write(BIG)
    assert 0 < p.a.get_write_buffer_size() < len(BIG)  # a partial write: the rest is buffered
    run_until(reactor, lambda: len(p.pb.data) >= len(BIG), turns=50_000, timeout=0.01)
    assert p.pb.data == BIG
    assert p.a.get_write_buffer_size() == 0
    assert p.pb.events.count("data") > 1


# ------------------------------------------------------------ backpressure


def test_backpressure_pauses_and_resumes_writing(reactor: Reactor, pairs: Pairs) -> None:
    """A peer that does not read makes the buffer grow past high water (pause_writing); reading drains it."""
    p = pairs.make()
    p.b.pause_reading()
    low, high = p.a.get_write_buffer_limits()
    chunk = b"y" * 65536
    sent = 0
    for _ in range(400):
        if "pause_writing" in p.pa.events:
            break
        p.a.write(chunk)
        sent += len(chunk)
        reactor.run_once(0)
    assert p.pa.events.count("pause_writing") == 1
    size = p.a.get_write_buffer_size()
    assert size > high
    p.a.write(chunk)
    sent += len(chunk)
    for _ in range(5):
        reactor.run_once(0)
    grown = p.a.get_write_buffer_size() - size  # nobody reads: it only grows
    assert len(chunk) <= grown <= len(chunk) + pairs.overhead(len(chunk))
    assert "resume_writing" not in p.pa.events
    p.b.resume_reading()
    run_until(reactor, lambda: len(p.pb.data) >= sent, turns=20_000, timeout=0.01)
    assert p.pa.events.count("resume_writing") == 1
    assert p.pa.events.index("pause_writing") < p.pa.events.index("resume_writing")
    assert p.a.get_write_buffer_size() == 0
    assert len(p.pb.data) == sent


def test_lower_limits_pause_at_once(reactor: Reactor, pairs: Pairs) -> None:
    """set_write_buffer_limits below the buffered size calls pause_writing at once; raising them resumes."""
    p = pairs.make()
    p.b.pause_reading()
    p.a.write(BIG)
    assert p.pa.events.count("pause_writing") == 1
    p.a.set_write_buffer_limits(high=len(BIG) * 4)
    assert p.a.get_write_buffer_limits() == (len(BIG), len(BIG) * 4)
    assert p.pa.events.count("resume_writing") == 1
    p.a.set_write_buffer_limits(high=1024, low=0)
    assert p.pa.events.count("pause_writing") == 2


def fill_until_paused(reactor: Reactor, pair: Pair) -> int:
    """Write to ``pair.a`` (whose peer does not read) until ``pause_writing`` comes; the bytes written."""
    chunk = b"w" * 65536
    sent = 0
    pauses = pair.pa.events.count("pause_writing")
    for _ in range(400):
        if pair.pa.events.count("pause_writing") > pauses:
            return sent
        pair.a.write(chunk)
        sent += len(chunk)
        reactor.run_once(0)
    raise AssertionError("pause_writing never came")


def test_water_marks_pause_and_resume_once_per_crossing(reactor: Reactor, pairs: Pairs) -> None:
    """Three fill-and-drain cycles give exactly pause, resume, pause, resume, pause, resume, and nothing between."""
    p = pairs.make()
    sent = 0
    for cycle in range(1, 4):
        p.b.pause_reading()
        sent += fill_until_paused(reactor, p)
        p.a.write(b"z" * 1000)  # above high already: no second pause
        sent += 1000
        for _ in range(3):
            reactor.run_once(0)
        assert p.a.get_write_buffer_size() > p.a.get_write_buffer_limits()[1]
        p.b.resume_reading()
        run_until(reactor, functools.partial(lambda n: len(p.pb.data) >= n, sent), turns=20_000, timeout=0.01)
        assert p.a.get_write_buffer_size() == 0
        signals = [e for e in p.pa.events if e.endswith("_writing")]
        assert signals == ["pause_writing", "resume_writing"] * cycle
    assert len(p.pb.data) == sent


def test_water_marks_defaults_and_bad_limits(reactor: Reactor, pairs: Pairs) -> None:
    """asyncio's defaults (64 KiB, high // 4, 4 x low); low > high or a negative mark raise and change nothing."""
    p = pairs.make()
    assert p.a.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
    p.a.set_write_buffer_limits(low=1000)
    assert p.a.get_write_buffer_limits() == (1000, 4000)
    p.a.set_write_buffer_limits(high=8000)
    assert p.a.get_write_buffer_limits() == (2000, 8000)
    for high, low in ((10, 20), (-1, None), (100, -1)):
        with pytest.raises(ValueError, match="low <= high"):
            p.a.set_write_buffer_limits(high=high, low=low)
        assert p.a.get_write_buffer_limits() == (2000, 8000)
    assert [e for e in p.pa.events if e.endswith("_writing")] == []


def test_a_write_sent_at_once_crosses_no_mark(reactor: Reactor, pairs: Pairs) -> None:
    """With both marks at 0, writes the peer takes at once buffer nothing and signal nothing."""
    p = pairs.make()
    p.a.set_write_buffer_limits(high=0, low=0)
    for i in range(50):
        p.a.write(b"%d;" % i)
        assert p.a.get_write_buffer_size() == 0
        reactor.run_once(0)
    run_until(reactor, lambda: p.pb.data.endswith(b"49;"))
    assert [e for e in p.pa.events if e.endswith("_writing")] == []


# ------------------------------------------------------------ half-close


def test_write_eof_then_read_replies(reactor: Reactor, pairs: Pairs) -> None:
    """After write_eof a side keeps reading; a peer whose eof_received returns True keeps writing."""
    p = pairs.make(pb=Recorder(eof_result=True))
    assert p.a.can_write_eof()
    p.a.write(b"request")
    p.a.write_eof()
    with pytest.raises(RuntimeError, match="write_eof"):
        p.a.write(b"more")
    run_until(reactor, lambda: "eof" in p.pb.events)
    assert p.pb.data == b"request"
    assert not p.b.is_closing() and not p.b.is_reading()
    p.b.write(b"reply-1 ")
    run_until(reactor, lambda: p.pa.data == b"reply-1 ")
    assert not p.a.is_closing()
    p.b.write(b"reply-2")
    p.b.write_eof()  # both directions done: the connection closes
    run_until(reactor, both_lost(p))
    assert p.pa.data == b"reply-1 reply-2"
    assert p.pa.lost == [None] and p.pb.lost == [None]


def test_eof_received_after_own_write_eof(reactor: Reactor, pairs: Pairs) -> None:
    """A side that sent its EOF still gets eof_received (a line protocol's last unterminated line needs it)."""
    p = pairs.make(pb=Recorder(eof_result=True))
    p.a.write_eof()
    run_until(reactor, lambda: "eof" in p.pb.events)
    p.b.write(b"tail")
    p.b.close()
    run_until(reactor, both_lost(p))
    assert p.pa.data == b"tail"
    assert p.pa.events == ["made", "data", "eof", "lost"]
    assert p.pa.lost == [None]


def test_eof_received_returning_none_closes(reactor: Reactor, pairs: Pairs) -> None:
    """eof_received returning None closes the transport; both sides see connection_lost(None)."""
    p = pairs.make()
    p.a.write(b"bye")
    p.a.write_eof()
    run_until(reactor, both_lost(p))
    assert p.pb.events == ["made", "data", "eof", "lost"]
    assert p.b.is_closing()
    assert p.pa.lost == [None] and p.pb.lost == [None]


def test_peer_write_eof_first(reactor: Reactor, pairs: Pairs) -> None:
    """Half-close works the other way too: b closes its write side, a keeps writing."""
    p = pairs.make(pa=Recorder(eof_result=True))
    p.b.write(b"early")
    p.b.write_eof()
    run_until(reactor, lambda: "eof" in p.pa.events)
    p.a.write(b"late")
    run_until(reactor, lambda: p.pb.data == b"late")
    p.a.close()
    run_until(reactor, both_lost(p))
    assert p.pa.data == b"early"
    assert p.pa.lost == [None] and p.pb.lost == [None]


def test_simultaneous_half_close_keeps_buffered_output(reactor: Reactor, pairs: Pairs) -> None:
    """Both sides write_eof at once: the peer's EOF arriving first does not drop our buffered output."""
    p = pairs.make()
    p.a.write(BIG)
    p.a.write_eof()
    assert p.a.get_write_buffer_size() > 0
    p.b.write(b"short")
    p.b.write_eof()
    run_until(reactor, both_lost(p), turns=20_000, timeout=0.01)
    assert p.pa.data == b"short"
    assert p.pb.data == BIG
    assert p.pa.lost == [None] and p.pb.lost == [None]


# ------------------------------------------------------------ close and abort


def test_close_flushes_then_connection_lost_none(reactor: Reactor, pairs: Pairs) -> None:
    """close() with a full buffer flushes it all, then both sides get connection_lost(None)."""
    p = pairs.make()
    p.a.write(BIG)
    assert p.a.get_write_buffer_size() > 0
    p.a.close()
    assert p.a.is_closing() and not p.a.is_reading()
    assert p.pa.lost == []  # never from inside close()
    run_until(reactor, both_lost(p), turns=20_000, timeout=0.01)
    assert p.pb.data == BIG
    assert p.pa.lost == [None] and p.pb.lost == [None]


def test_close_inside_a_callback_delivers_lost_after_it(reactor: Reactor, pairs: Pairs) -> None:
    """close() from data_received: connection_lost follows the callback, not inside close()."""
    p = pairs.make()
    seen: list[int] = []

    def on_data(data: bytes) -> None:
        p.b.close()
        seen.append(len(p.pb.lost))

    p.pb.on_data = on_data
    p.a.write(b"x")
    run_until(reactor, both_lost(p))
    assert seen == [0]
    assert p.pb.lost == [None] and p.pa.lost == [None]


def test_abort_drops_the_buffer(reactor: Reactor, pairs: Pairs) -> None:
    """abort() drops what is buffered: the peer gets a strict prefix, and both sides connection_lost once."""
    p = pairs.make()
    p.a.write(BIG)
    buffered = p.a.get_write_buffer_size()
    assert buffered > 0
    p.a.abort()
    assert p.a.is_closing()
    assert p.a.get_write_buffer_size() == 0
    assert p.pa.lost == []
    run_until(reactor, both_lost(p), turns=20_000, timeout=0.01)
    assert len(p.pb.data) <= len(BIG) - buffered + pairs.overhead(len(BIG))
    assert p.pb.data == BIG[: len(p.pb.data)]
    assert p.pa.lost == [None]
    assert p.pb.lost[0] is None or isinstance(p.pb.lost[0], ConnectionError)


def test_close_and_abort_are_idempotent(reactor: Reactor, pairs: Pairs) -> None:
    """Closing twice, aborting after close, and write_eof after close do nothing more."""
    p = pairs.make()
    p.a.close()
    p.a.close()
    p.a.abort()
    p.a.write_eof()
    run_until(reactor, both_lost(p))
    p.a.abort()
    p.b.close()
    for _ in range(3):
        reactor.run_once(0)
    assert p.pa.lost == [None] and p.pb.lost == [None]


# ------------------------------------------------------------ EOF


def test_no_data_after_eof_and_lost_exactly_once(reactor: Reactor, pairs: Pairs) -> None:
    """The peer's EOF comes after all its data; nothing is delivered after it; connection_lost comes last, once."""
    p = pairs.make(pb=Recorder(eof_result=True))
    for i in range(100):
        p.a.write(b"%d;" % i)
    p.a.write_eof()
    run_until(reactor, lambda: "eof" in p.pb.events)
    for _ in range(5):
        reactor.run_once(0)
    p.b.close()
    run_until(reactor, both_lost(p))
    events = p.pb.events
    assert events[0] == "made" and events[-1] == "lost" and events.count("lost") == 1
    assert "data" not in events[events.index("eof") :]
    assert p.pb.data == b"".join(b"%d;" % i for i in range(100))


def test_get_extra_info_and_protocol(reactor: Reactor, pairs: Pairs) -> None:
    """get_extra_info answers the asyncio names; get_protocol/set_protocol swap the receiver."""
    p = pairs.make()
    assert p.a.get_extra_info("no-such-thing", "dflt") == "dflt"
    sock = p.a.get_extra_info("socket")
    assert sock is None or sock.fileno() >= 0
    if pairs.kind != "socketpair":  # unnamed unix sockets have empty names
        assert p.a.get_extra_info("peername") == p.b.get_extra_info("sockname")
    assert p.b.get_protocol() is p.pb
    other = Recorder()
    p.b.set_protocol(other)
    p.a.write(b"to the other")
    run_until(reactor, lambda: other.data == b"to the other")
    assert p.pb.data == b""
    p.b.set_protocol(p.pb)


# ------------------------------------------------------------ reading flow control


def test_pause_and_resume_reading(reactor: Reactor, pairs: Pairs) -> None:
    """While reading is paused neither data nor EOF is delivered; resume_reading delivers both."""
    p = pairs.make(pb=Recorder(eof_result=True))
    p.b.pause_reading()
    assert not p.b.is_reading()
    p.a.write(b"hello")
    p.a.write_eof()
    for _ in range(10):
        reactor.run_once(0)
    assert p.pb.events == ["made"]
    p.b.resume_reading()
    assert p.b.is_reading()
    run_until(reactor, lambda: "eof" in p.pb.events)
    assert p.pb.data == b"hello"


# ------------------------------------------------------------ protocol errors


@pytest.mark.parametrize("where", ["data_received", "eof_received"])
def test_protocol_exception_closes_only_that_connection(reactor: Reactor, pairs: Pairs, where: str) -> None:
    """An exception in a protocol callback reaches the exception handler and aborts only its connection."""
    reports: list[dict[str, Any]] = []
    reactor.set_exception_handler(lambda r, context: reports.append(context))
    bad = pairs.make()
    good = pairs.make()
    bad.pb.raise_in = where
    bad.a.write(b"boom")
    bad.a.write_eof()
    good.a.write(b"fine")
    run_until(reactor, lambda: bool(bad.pb.lost and bad.pa.lost and good.pb.data == b"fine"))
    assert len(reports) == 1
    assert isinstance(reports[0]["exception"], Boom)
    assert reports[0]["transport"] is bad.b
    assert where in reports[0]["message"]
    assert isinstance(bad.pb.lost[0], Boom)
    assert not good.a.is_closing() and not good.b.is_closing()
    good.b.write(b"still here")
    run_until(reactor, lambda: good.pa.data == b"still here")
    assert good.pa.lost == [] and good.pb.lost == []


def test_exception_in_connection_lost_is_reported(reactor: Reactor, pairs: Pairs) -> None:
    """An exception in connection_lost is reported and does not call connection_lost again."""
    reports: list[dict[str, Any]] = []
    reactor.set_exception_handler(lambda r, context: reports.append(context))

    class Failing(Recorder):
        def connection_lost(self, exc: BaseException | None) -> None:
            super().connection_lost(exc)
            raise Boom("connection_lost")

    p = pairs.make(pa=Failing())
    p.a.close()
    run_until(reactor, both_lost(p))
    assert [type(r["exception"]) for r in reports] == [Boom]
    assert p.pa.lost == [None]
