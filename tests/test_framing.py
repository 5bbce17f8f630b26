"""Tests for reactor.framing: the sans-IO yoton line framing."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reactor.framing import LineParser, MessageTooLarge, split_request

CRLF = b"\r\n"


def reference(data: bytes, terminator: bytes = CRLF) -> list[bytes]:
    """Return the messages of a whole stream: split, dropping a final empty piece."""
    pieces = data.split(terminator)
    if pieces[-1] == b"":
        pieces.pop()
    return pieces


def feed_all(parser: LineParser, chunks: list[bytes]) -> list[bytes]:
    """Feed every chunk, then EOF, and collect all messages."""
    messages: list[bytes] = []
    for chunk in chunks:
        messages.extend(parser.feed(chunk))
    last = parser.feed_eof()
    if last is not None:
        messages.append(last)
    return messages


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    """Split data at the given (unsorted, possibly repeated) cut points."""
    points = sorted({min(cut, len(data)) for cut in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


# --- construction -------------------------------------------------------------


def test_defaults() -> None:
    """A default parser has a 1 MiB limit, CRLF terminator and nothing buffered."""
    parser = LineParser()
    assert parser.max_size == 1 << 20
    assert parser.terminator == CRLF
    assert parser.buffered == 0
    assert parser.eof is False
    assert "open" in repr(parser)


def test_slots() -> None:
    """LineParser has no per-instance dict."""
    assert not hasattr(LineParser(), "__dict__")


@pytest.mark.parametrize("max_size", [0, -1])
def test_nonpositive_max_size_rejected(max_size: int) -> None:
    """max_size must be positive."""
    with pytest.raises(ValueError):
        LineParser(max_size)


@pytest.mark.parametrize("max_size", [1.5, "10", True, None])
def test_non_int_max_size_rejected(max_size: object) -> None:
    """max_size must be an int."""
    with pytest.raises(TypeError):
        LineParser(max_size)  # type: ignore[arg-type]


def test_empty_terminator_rejected() -> None:
    """An empty terminator is a ValueError."""
    with pytest.raises(ValueError):
        LineParser(10, b"")


@pytest.mark.parametrize("terminator", ["\r\n", bytearray(b"\n"), 10])
def test_non_bytes_terminator_rejected(terminator: object) -> None:
    """The terminator must be bytes."""
    with pytest.raises(TypeError):
        LineParser(10, terminator)  # type: ignore[arg-type]


# --- feeding ------------------------------------------------------------------


def test_single_message() -> None:
    """A terminated message comes out without its terminator."""
    parser = LineParser()
    assert parser.feed(b"hello\r\n") == [b"hello"]
    assert parser.buffered == 0


def test_terminator_split_across_feeds() -> None:
    """b'a\\r' then b'\\nb' gives b'a' and keeps b'b'."""
    parser = LineParser()
    assert parser.feed(b"a\r") == []
    assert parser.buffered == 2
    assert parser.feed(b"\nb") == [b"a"]
    assert parser.buffered == 1
    assert parser.feed_eof() == b"b"


def test_lone_cr_and_lf_are_data() -> None:
    """A CR or LF on its own is message data."""
    parser = LineParser()
    assert parser.feed(b"a\rb\nc\n\r") == []
    assert parser.feed(b"d\r\n") == [b"a\rb\nc\n\rd"]


def test_many_messages_in_one_feed() -> None:
    """One chunk holding several messages yields them all, in order."""
    parser = LineParser()
    assert parser.feed(b"one\r\ntwo\r\nthree\r\nfour") == [b"one", b"two", b"three"]
    assert parser.feed_eof() == b"four"


def test_empty_messages() -> None:
    """Consecutive terminators yield empty messages."""
    parser = LineParser()
    assert parser.feed(b"\r\n\r\n") == [b"", b""]
    assert parser.feed_eof() is None


def test_empty_feed_is_harmless() -> None:
    """Feeding b'' returns nothing and changes nothing."""
    parser = LineParser()
    assert parser.feed(b"") == []
    assert parser.feed(b"x") == []
    assert parser.feed(b"") == []
    assert parser.buffered == 1


def test_bytearray_and_memoryview_chunks() -> None:
    """Any bytes-like chunk works, and messages are always bytes."""
    parser = LineParser()
    assert parser.feed(bytearray(b"a\r\nb")) == [b"a"]
    messages = parser.feed(memoryview(b"c\r\n"))
    assert messages == [b"bc"]
    assert all(type(message) is bytes for message in messages)


def test_messages_are_bytes_on_fast_path() -> None:
    """Messages sliced from a bytes chunk are bytes too."""
    messages = LineParser().feed(b"a\r\nb\r\n")
    assert [type(message) for message in messages] == [bytes, bytes]


def test_custom_terminator() -> None:
    """A custom one-byte terminator splits on it alone."""
    parser = LineParser(100, b"\n")
    assert parser.feed(b"a\r\nb\n") == [b"a\r", b"b"]


def test_self_overlapping_terminator_split() -> None:
    """A terminator that overlaps itself is found across feeds like bytes.split."""
    parser = LineParser(100, b"aab")
    assert feed_all(parser, [b"xa", b"a", b"aab", b"y"]) == reference(b"xaaaaby", b"aab")


def test_str_chunk_rejected() -> None:
    """Feeding str is a TypeError."""
    with pytest.raises(TypeError):
        LineParser().feed("text\r\n")  # type: ignore[arg-type]


# --- end of input -------------------------------------------------------------


def test_eof_with_buffered_bytes() -> None:
    """EOF returns the unterminated rest as the last message."""
    parser = LineParser()
    parser.feed(b"partial")
    assert parser.feed_eof() == b"partial"
    assert parser.eof is True
    assert parser.buffered == 0


def test_eof_without_buffered_bytes() -> None:
    """EOF right after a terminator, or on an empty stream, returns None."""
    parser = LineParser()
    parser.feed(b"done\r\n")
    assert parser.feed_eof() is None
    assert LineParser().feed_eof() is None


def test_eof_keeps_trailing_cr() -> None:
    """A trailing half terminator at EOF is part of the last message."""
    parser = LineParser()
    parser.feed(b"abc\r")
    assert parser.feed_eof() == b"abc\r"


def test_eof_twice_returns_none() -> None:
    """A second feed_eof returns None."""
    parser = LineParser()
    parser.feed(b"x")
    assert parser.feed_eof() == b"x"
    assert parser.feed_eof() is None


def test_feed_after_eof_raises() -> None:
    """feed after feed_eof raises RuntimeError naming the cause."""
    parser = LineParser()
    parser.feed_eof()
    with pytest.raises(RuntimeError, match="feed_eof"):
        parser.feed(b"more")
    assert "eof" in repr(parser)


# --- size limit ---------------------------------------------------------------


def test_exactly_max_size_is_accepted() -> None:
    """A message of exactly max_size bytes is fine."""
    parser = LineParser(8)
    assert parser.feed(b"12345678") == []
    assert parser.feed(b"\r\n") == [b"12345678"]


def test_oversize_raised_at_max_size_plus_one() -> None:
    """max_size + 1 bytes without a terminator raise at once, quoting the limit."""
    parser = LineParser(8)
    parser.feed(b"1234")
    parser.feed(b"5678")
    with pytest.raises(MessageTooLarge, match="8 bytes") as info:
        parser.feed(b"9")
    assert info.value.max_size == 8
    assert info.value.size == 9
    assert isinstance(info.value, ValueError)


def test_max_size_plus_half_terminator_waits() -> None:
    """max_size bytes plus b'\\r' may still be legal, so it does not raise yet."""
    parser = LineParser(8)
    assert parser.feed(b"12345678\r") == []
    assert parser.feed(b"\n") == [b"12345678"]


def test_max_size_plus_half_terminator_then_data_raises() -> None:
    """max_size bytes plus b'\\r' followed by other data is too large."""
    parser = LineParser(8)
    parser.feed(b"12345678\r")
    with pytest.raises(MessageTooLarge):
        parser.feed(b"x")


def test_max_size_plus_half_terminator_at_eof_raises() -> None:
    """At EOF the trailing b'\\r' is data, making the message too large."""
    parser = LineParser(8)
    parser.feed(b"12345678\r")
    with pytest.raises(MessageTooLarge):
        parser.feed_eof()


def test_oversize_with_terminator_present() -> None:
    """A terminator that comes too late still raises, keeping earlier messages."""
    parser = LineParser(4)
    with pytest.raises(MessageTooLarge) as info:
        parser.feed(b"ok\r\ntoolong\r\nlater\r\n")
    assert info.value.messages == [b"ok"]
    assert info.value.size == 5


def test_oversize_huge_chunk_is_not_fully_scanned() -> None:
    """A huge chunk without terminator is given up on after max_size + 2 bytes."""
    parser = LineParser(10)
    with pytest.raises(MessageTooLarge):
        parser.feed(b"x" * 1_000_000)
    assert parser.scanned <= 12


def test_parser_unusable_after_oversize() -> None:
    """After MessageTooLarge, feed and feed_eof raise RuntimeError."""
    parser = LineParser(2)
    with pytest.raises(MessageTooLarge):
        parser.feed(b"abc")
    assert parser.buffered == 0
    assert "failed" in repr(parser)
    with pytest.raises(RuntimeError, match="MessageTooLarge"):
        parser.feed(b"\r\n")
    with pytest.raises(RuntimeError, match="MessageTooLarge"):
        parser.feed_eof()


# --- no rescanning ------------------------------------------------------------


def test_byte_at_a_time_does_not_rescan() -> None:
    """200 KiB fed one byte at a time is scanned O(n), not O(n^2)."""
    size = 200 * 1024
    parser = LineParser(max_size=size)
    data = b"x" * (size - 2) + CRLF
    out: list[bytes] = []
    view = memoryview(data)
    for index in range(size):
        out.extend(parser.feed(view[index : index + 1]))
    assert out == [data[:-2]]
    # Each byte is searched once, plus len(terminator) - 1 bytes per call.
    assert parser.scanned <= 2 * size


def test_many_small_messages_scanned_once() -> None:
    """Many messages in many chunks: every byte is scanned about once."""
    data = b"abc\r\n" * 10_000
    parser = LineParser()
    chunks = chunked(data, list(range(7, len(data), 7)))
    assert feed_all(parser, chunks) == [b"abc"] * 10_000
    assert parser.scanned <= len(data) + len(chunks)


# --- split_request ------------------------------------------------------------


def test_split_request_complete() -> None:
    """split_request returns the bytes before the first terminator."""
    assert split_request(b"GET x\r\nrest\r\n", 100) == b"GET x"
    assert split_request(b"\r\n", 100) == b""


def test_split_request_incomplete() -> None:
    """Without a terminator split_request returns None."""
    assert split_request(b"partial", 100) is None
    assert split_request(b"", 100) is None
    assert split_request(b"12345\r", 5) is None


def test_split_request_limit() -> None:
    """split_request raises once the message is certain to exceed max_size."""
    assert split_request(b"12345\r\n", 5) == b"12345"
    with pytest.raises(MessageTooLarge):
        split_request(b"123456", 5)
    with pytest.raises(MessageTooLarge):
        split_request(b"123456\r\n", 5)
    with pytest.raises(MessageTooLarge):
        split_request(b"12345\rx", 5)
    assert split_request(b"1\r\n" + b"x" * 100, 5) == b"1"


# --- properties ---------------------------------------------------------------

streams = st.lists(
    st.sampled_from([b"\r\n", b"\r", b"\n", b"a", b"bc", b"\r\r\n", b"\n\r"]), max_size=40
).map(b"".join) | st.binary(max_size=200)


@given(streams, st.lists(st.integers(0, 400), max_size=20))
def test_any_chunking_matches_reference(data: bytes, cuts: list[int]) -> None:
    """Any split into chunks gives the same messages as bytes.split on the whole."""
    expected = reference(data)
    assert feed_all(LineParser(), [data]) == expected
    assert feed_all(LineParser(), chunked(data, cuts)) == expected


@given(streams)
def test_byte_at_a_time_matches_reference(data: bytes) -> None:
    """Feeding one byte at a time (h11 style) gives the reference messages."""
    chunks = [data[i : i + 1] for i in range(len(data))]
    assert feed_all(LineParser(), chunks) == reference(data)


@given(
    st.lists(st.sampled_from([b"ab", b"a", b"b", b"x"]), max_size=30).map(b"".join),
    st.lists(st.integers(0, 60), max_size=10),
    st.sampled_from([b"ab", b"aab", b"aba", b"x"]),
)
def test_custom_terminators_match_reference(
    data: bytes, cuts: list[int], terminator: bytes
) -> None:
    """Multi-byte and self-overlapping terminators also match bytes.split."""
    parser = LineParser(1000, terminator)
    assert feed_all(parser, chunked(data, cuts)) == reference(data, terminator)


@given(streams, st.lists(st.integers(0, 400), max_size=20), st.integers(1, 12))
def test_limit_is_exact(data: bytes, cuts: list[int], max_size: int) -> None:
    """MessageTooLarge is raised iff some reference message exceeds max_size."""
    expected = reference(data)
    parser = LineParser(max_size)
    too_large = any(len(message) > max_size for message in expected)
    if too_large:
        with pytest.raises(MessageTooLarge):
            feed_all(parser, chunked(data, cuts))
    else:
        assert feed_all(parser, chunked(data, cuts)) == expected


@given(streams, st.integers(1, 12))
def test_split_request_agrees_with_parser(data: bytes, max_size: int) -> None:
    """split_request returns the parser's first message when one is complete."""
    messages = data.split(CRLF)
    try:
        result = split_request(data, max_size)
    except MessageTooLarge:
        assert len(messages[0]) > max_size
        return
    if len(messages) == 1:
        assert result is None
        assert len(data) <= max_size + 1
    else:
        assert result == messages[0]
