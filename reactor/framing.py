"""Sans-IO framing for the yoton request/reply wire format.

Why this module exists
----------------------
A yoton message is UTF-8 text that ends at ``b"\\r\\n"`` or at the end of the
stream, whichever comes first.  TCP delivers it in pieces of any size, so
something has to hold the bytes that have arrived, notice when a message is
complete, and refuse a peer that never stops talking.  Following h11, that
something takes bytes and returns messages: it has no socket, no clock and no
reactor, so it is tested with plain bytes, at every split point, and with
hypothesis.

What can go wrong, and what we chose
------------------------------------
* **Rescanning.**  The naive parser appends each chunk and searches the whole
  buffer again, so a request that trickles in one byte at a time costs O(n^2).
  :class:`LineParser` remembers how far it has searched and resumes there.
  The terminator may be split across two chunks (``b"a\\r"`` then
  ``b"\\nb"``), so the resume point backs off by ``len(terminator) - 1`` bytes;
  everything before it has been ruled out as the start of a terminator.
  The ``scanned`` counter makes this checkable without timing anything.
* **Unbounded input.**  A message longer than ``max_size`` raises
  :class:`MessageTooLarge` as soon as that is certain -- not when the
  terminator finally arrives, which may be never.  It is certain once
  ``max_size + 1`` bytes are buffered that are not a possible start of the
  terminator; a buffer of exactly ``max_size`` bytes plus ``b"\\r"`` may still
  be a legal message.  The search window is bounded the same way, so one huge
  chunk is not scanned past the point where it is already too large.
* **Consuming from the front.**  Complete messages are cut off the front of a
  ``bytearray`` once per :meth:`LineParser.feed` call; CPython makes ``del
  buf[:n]`` amortised O(1) by moving the start pointer instead of the bytes.
  When nothing is buffered and the chunk is ``bytes``, messages are sliced
  straight from the chunk and only the unfinished tail is copied.
* **The hot path.**  A one-shot request usually arrives whole in the first
  ``recv``.  :func:`split_request` handles that case with a single bounded
  ``find`` and no parser object at all.
"""

from __future__ import annotations

__all__ = ["LineParser", "MessageTooLarge", "split_request"]

_CRLF = b"\r\n"


class MessageTooLarge(ValueError):
    """A message (not counting its terminator) is longer than the parser's ``max_size``.

    ``max_size`` is the limit, ``size`` the number of message bytes seen when
    the parser gave up (a lower bound on the message's length), and
    ``messages`` the complete messages that preceded the oversized one in the
    same call, so that a caller that only wants the first request loses
    nothing.
    """

    max_size: int
    size: int
    messages: list[bytes]

    def __init__(self, max_size: int, size: int, messages: list[bytes] | None = None) -> None:
        super().__init__(
            f"message exceeds the limit of {max_size} bytes "
            f"({size} bytes received without a terminator)"
        )
        self.max_size = max_size
        self.size = size
        self.messages = messages if messages is not None else []


def _partial_terminator(data: bytes | bytearray, terminator: bytes) -> int:
    """Return the length of the longest proper prefix of *terminator* that ends *data*."""
    for length in range(min(len(terminator) - 1, len(data)), 0, -1):
        if data.endswith(terminator[:length]):
            return length
    return 0


def _check_limits(max_size: int, terminator: bytes) -> None:
    if type(max_size) is not int:
        raise TypeError(f"max_size must be an int, not {max_size!r}")
    if max_size <= 0:
        raise ValueError(f"max_size must be positive, not {max_size!r}")
    if not isinstance(terminator, bytes):
        raise TypeError(f"terminator must be bytes, not {terminator!r}")
    if not terminator:
        raise ValueError("terminator must not be empty")


def split_request(data: bytes, max_size: int) -> bytes | None:
    """Return the first ``b"\\r\\n"``-terminated message in *data*, or None.

    The server's fast path for a request that arrived in one ``recv``: if
    *data* contains the terminator, the bytes before its first occurrence are
    returned (anything after it is ignored); otherwise None, and the caller
    keeps reading, typically into a :class:`LineParser`.  Raises
    :class:`MessageTooLarge` when the message is, or is already certain to
    be, longer than *max_size* bytes; the search never looks further than
    ``max_size + 2`` bytes into *data*.
    """
    end = data.find(_CRLF, 0, max_size + 2)
    if end >= 0:
        return data[:end]
    size = len(data)
    if size >= max_size + 2 or size - _partial_terminator(data, _CRLF) > max_size:
        raise MessageTooLarge(max_size, min(size, max_size + 1))
    return None


class LineParser:
    """Split a byte stream into terminator-delimited messages, incrementally.

    Feed it chunks as they arrive with :meth:`feed`, which returns the
    messages completed so far (terminator removed); call :meth:`feed_eof` at
    end of stream for the unterminated rest.  A message longer than
    *max_size* bytes raises :class:`MessageTooLarge`, after which the parser
    is unusable.  Each byte is searched for the terminator at most once, plus
    ``len(terminator) - 1`` bytes per call at a chunk boundary.

    ``scanned`` counts the bytes searched so far; it exists so tests can
    check the no-rescan property and costs one addition per call.
    """

    __slots__ = (
        "_buffer",
        "_closed",
        "_eof",
        "_max_size",
        "_overlap",
        "_scan_from",
        "_terminator",
        "_window",
        "scanned",
    )

    scanned: int

    def __init__(self, max_size: int = 1 << 20, terminator: bytes = _CRLF) -> None:
        """Create a parser for messages of at most *max_size* bytes ending at *terminator*."""
        _check_limits(max_size, terminator)
        self._max_size = max_size
        self._terminator = terminator
        # Bytes at the end of the buffer that may be the start of a terminator.
        self._overlap = len(terminator) - 1
        # How far past a message's start a terminator can begin and still end
        # a message that fits: max_size + len(terminator).
        self._window = max_size + len(terminator)
        self._buffer = bytearray()
        # Offset into _buffer where the next terminator search starts.
        self._scan_from = 0
        self._eof = False
        # Why feed() is refused, or None while the parser accepts input.
        self._closed: str | None = None
        self.scanned = 0

    @property
    def max_size(self) -> int:
        """The largest message, in bytes without the terminator, that is accepted."""
        return self._max_size

    @property
    def terminator(self) -> bytes:
        """The byte string that ends a message."""
        return self._terminator

    @property
    def buffered(self) -> int:
        """The number of bytes held that do not yet form a complete message."""
        return len(self._buffer)

    @property
    def eof(self) -> bool:
        """True once :meth:`feed_eof` has been called."""
        return self._eof

    def __repr__(self) -> str:
        """Show the limit, the state and the amount buffered."""
        state = "eof" if self._eof else ("failed" if self._closed else "open")
        return (
            f"<LineParser {state} buffered={len(self._buffer)} "
            f"max_size={self._max_size} terminator={self._terminator!r}>"
        )

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Add *data* (any bytes-like object) and return every message it completes, in order.

        Messages do not include the terminator; an empty message (two
        terminators in a row) is returned as ``b""``.  Raises
        :class:`MessageTooLarge` if a message exceeds ``max_size`` and
        :class:`RuntimeError` after :meth:`feed_eof` or a previous
        :class:`MessageTooLarge`.
        """
        if self._closed is not None:
            raise RuntimeError(f"LineParser.feed() called after {self._closed}")
        buffer = self._buffer
        if not buffer and type(data) is bytes:
            # The common case on a persistent connection: nothing buffered and
            # the chunk is exactly one whole message.  One find and one slice
            # instead of the general loop (a third of its cost).
            terminator = self._terminator
            size = len(data)
            last = size - self._overlap - 1
            if 0 <= last <= self._max_size and data.find(terminator) == last:
                self.scanned += size
                return [data[:last]]
        source: bytes | bytearray
        if buffer or type(data) is not bytes:
            buffer += data
            source = buffer
        else:
            source = data  # slice messages straight from the chunk; copy only the tail
        terminator = self._terminator
        begin = position = self._scan_from
        # A terminator starting after start + max_size ends a message that is
        # too long, so no search looks past start + window.
        window = self._window
        end = source.find(terminator, position, window)
        if end < 0:
            # The common case while a message trickles in: nothing complete.
            size = len(source)
            # Conditional expressions, not min()/max(): a builtin call costs
            # about 70 ns, a quarter of this whole path.
            self.scanned += (size if size < window else window) - begin  # noqa: FURB136
            if size > self._max_size:
                self._check_rest(source, size, size >= window, [])
            if source is not buffer:
                buffer += data
            tail = size - self._overlap
            self._scan_from = tail if tail > 0 else 0  # noqa: FURB136
            return []
        term_len = len(terminator)
        find = source.find
        start = 0
        messages: list[bytes] = []
        while end >= 0:
            messages.append(bytes(source[start:end]))
            start = position = end + term_len
            end = find(terminator, position, start + window)
        size = len(source)
        self.scanned += min(size, start + window) - begin
        rest = size - start
        if rest > self._max_size:
            self._check_rest(source, rest, size >= start + window, messages)
        if source is buffer:
            del buffer[:start]
        elif start < size:
            buffer += memoryview(data)[start:]
        tail = rest - self._overlap
        self._scan_from = tail if tail > 0 else 0  # noqa: FURB136
        return messages

    def _check_rest(
        self, source: bytes | bytearray, rest: int, window_full: bool, messages: list[bytes]
    ) -> None:
        """Fail if the *rest* unterminated bytes ending *source* are surely too long.

        *window_full* says a whole search window was searched in vain.
        Otherwise a tail that may be the start of the terminator does not
        count yet.
        """
        if window_full or rest - _partial_terminator(source, self._terminator) > self._max_size:
            self._fail(min(rest, self._max_size + 1), messages)

    def feed_eof(self) -> bytes | None:
        """Mark the end of input; return the buffered rest as the last message, or None.

        None means nothing was buffered (the stream ended right after a
        terminator, or was empty).  Calling it again returns None.  Raises
        :class:`MessageTooLarge` if the rest exceeds ``max_size`` (possible
        when it ends with part of the terminator) and :class:`RuntimeError`
        after a previous :class:`MessageTooLarge`.
        """
        if self._eof:
            return None
        if self._closed is not None:
            raise RuntimeError(f"LineParser.feed_eof() called after {self._closed}")
        self._eof = True
        self._closed = "feed_eof()"
        if not self._buffer:
            return None
        rest = bytes(self._buffer)
        self._buffer.clear()
        self._scan_from = 0
        if len(rest) > self._max_size:
            self._fail(len(rest), [])
        return rest

    def _fail(self, size: int, messages: list[bytes]) -> None:
        """Drop the buffer, refuse further input, and raise MessageTooLarge."""
        self._closed = "MessageTooLarge"
        self._buffer.clear()
        self._scan_from = 0
        raise MessageTooLarge(self._max_size, size, messages)
