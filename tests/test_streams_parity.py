"""`StreamReader` against asyncio's, on the same input: the same results, errors and leftovers.

Hypothesis makes the input (chunks, a small ``limit``, whether the stream
ends) and a list of reads; each script runs on ``asyncio.StreamReader`` under
``asyncio.run`` and on ours under a reactor, and every step must agree: the
bytes returned, or the error's class and its ``partial`` / ``expected`` /
``consumed``, and the bytes left in the buffer.  A read that would wait for
ever (the stream does not end and the data is not there) is cut by a timeout
on both sides and recorded as such.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import reactor
from reactor import Reactor

ALPHABET = b"ab\r\nx"

chunks = st.lists(st.binary(max_size=12).map(lambda b: bytes(ALPHABET[c % len(ALPHABET)] for c in b)), max_size=6)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("readline")),
        st.tuples(st.just("readuntil"), st.sampled_from([b"\n", b"ab", b"\r\n", b"xx"])),
        st.tuples(st.just("readexactly"), st.integers(0, 10)),
        st.tuples(st.just("read"), st.integers(-1, 10)),
        st.tuples(st.just("at_eof")),
    ),
    min_size=1,
    max_size=6,
)


def outcome(exc: BaseException) -> tuple[Any, ...]:
    """An error as comparable data: its asyncio-equivalent name and attributes."""
    name = type(exc).__name__
    if name == "IncompleteReadError":
        return (name, exc.partial, exc.expected)  # type: ignore[attr-defined]
    if name == "LimitOverrunError":
        return (name, exc.consumed)  # type: ignore[attr-defined]
    return (name,)


async def play(stream: Any, ops: list[tuple[Any, ...]], wait: Any) -> list[tuple[Any, ...]]:
    """Run ``ops`` on ``stream``; each step's outcome and the buffer after it."""
    steps: list[tuple[Any, ...]] = []
    for op in ops:
        name, *args = op
        if name == "at_eof":
            steps.append(("at_eof", stream.at_eof(), bytes(stream._buffer)))
            continue
        try:
            value = await wait(getattr(stream, name)(*args))
        except TimeoutError:
            steps.append(("waits", bytes(stream._buffer)))
            break  # the reader is now in a state the script did not ask for
        except Exception as exc:
            steps.append((*outcome(exc), bytes(stream._buffer)))
        else:
            steps.append(("ok", value, bytes(stream._buffer)))
    return steps


def run_asyncio(limit: int, data: list[bytes], eof: bool, ops: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The script on asyncio's reader."""

    async def main() -> list[tuple[Any, ...]]:
        stream = asyncio.StreamReader(limit=limit)
        for chunk in data:
            stream.feed_data(chunk)
        if eof:
            stream.feed_eof()
        return await play(stream, ops, lambda aw: asyncio.wait_for(aw, 0.01))

    return asyncio.run(main())


def run_reactor(limit: int, data: list[bytes], eof: bool, ops: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The script on ours."""
    with Reactor() as loop:
        stream = reactor.StreamReader(limit=limit, reactor=loop)
        for chunk in data:
            stream.feed_data(chunk)
        if eof:
            stream.feed_eof()
        return loop.run_until_complete(play(stream, ops, lambda aw: reactor.wait_for(aw, 0.01)), timeout=10)


@settings(max_examples=150, deadline=None)
@given(limit=st.integers(1, 12), data=chunks, eof=st.booleans(), ops=operations)
def test_reads_agree_with_asyncio(limit: int, data: list[bytes], eof: bool, ops: list[tuple[Any, ...]]) -> None:
    """Every read script gives what asyncio's StreamReader gives, step by step, leftovers included."""
    assert run_reactor(limit, data, eof, ops) == run_asyncio(limit, data, eof, ops)


def test_a_known_script_agrees() -> None:
    """A fixed script through every kind of read and error, as a readable example of the comparison."""
    data = [b"ab\r\nlong line here\n", b"xxab"]
    ops = [("readuntil", b"\r\n"), ("readline",), ("readuntil", b"ab"), ("readexactly", 5), ("at_eof",)]
    expected = run_asyncio(8, data, True, ops)
    assert expected[0] == ("ok", b"ab\r\n", b"long line here\nxxab")
    assert expected[1][0] == "ValueError"
    assert run_reactor(8, data, True, ops) == expected
