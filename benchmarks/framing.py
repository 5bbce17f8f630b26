"""Micro-benchmark for :class:`reactor.framing.LineParser`.

Feeds a stream of CRLF-terminated messages to the parser, first one byte per
``feed`` call (the worst case a slow or hostile peer can produce, where a
rescanning parser goes quadratic), then in 1 KiB chunks (a typical ``recv``),
and prints throughput and total time for each.  Beside each result it prints
the ratio against a naive parser that searches its whole buffer on every
chunk, measured in the same run.

Run it with ``python -m benchmarks.framing [--size BYTES] [--message BYTES]``.
This is a measurement, not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import sys
import time

from reactor.framing import LineParser

_CRLF = b"\r\n"


class _NaiveParser:
    """The baseline: append, then search the whole buffer from the start."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        messages: list[bytes] = []
        while True:
            end = self._buffer.find(_CRLF)
            if end < 0:
                return messages
            messages.append(bytes(self._buffer[:end]))
            del self._buffer[: end + 2]


def _payload(size: int, message: int) -> bytes:
    """Return *size* bytes made of messages of *message* bytes plus CRLF."""
    line = (b"x" * message) + _CRLF
    count = -(-size // len(line))
    return (line * count)[:size]


def _chunks(data: bytes, chunk: int) -> list[bytes]:
    return [data[index : index + chunk] for index in range(0, len(data), chunk)]


def _run(parser: LineParser | _NaiveParser, chunks: list[bytes]) -> tuple[float, int]:
    """Feed every chunk; return elapsed seconds and the number of messages."""
    feed = parser.feed
    count = 0
    start = time.perf_counter()
    for chunk in chunks:
        count += len(feed(chunk))
    return time.perf_counter() - start, count


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print one line per case; return the exit status."""
    options = argparse.ArgumentParser(
        prog="python -m benchmarks.framing", description=__doc__.split("\n\n")[0]
    )
    options.add_argument("--size", type=int, default=1 << 20, help="bytes fed per case")
    options.add_argument("--message", type=int, default=1022, help="message length before CRLF")
    options.add_argument("--no-baseline", action="store_true", help="skip the naive parser")
    args = options.parse_args(argv)
    if args.size <= 0 or args.message < 0:
        options.error("--size must be positive and --message not negative")

    data = _payload(args.size, args.message)
    expected = data.count(_CRLF)
    megabytes = len(data) / 1e6
    print(f"LineParser: {len(data)} bytes, messages of {args.message} bytes + CRLF")
    for label, chunk in (("1 byte per feed", 1), ("1 KiB per feed", 1024)):
        chunks = _chunks(data, chunk)
        elapsed, count = _run(LineParser(max_size=max(args.message, 1)), chunks)
        if count != expected:
            print(f"error: got {count} messages, expected {expected}", file=sys.stderr)
            return 1
        line = f"  {label:<16} {megabytes / elapsed:9.2f} MB/s  {elapsed * 1e3:9.1f} ms total"
        if not args.no_baseline:
            naive, _ = _run(_NaiveParser(), chunks)
            line += f"  ({naive / elapsed:.2f}x the naive parser's speed)"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
