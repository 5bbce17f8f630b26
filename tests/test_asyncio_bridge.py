"""asyncio interop: awaiting, to_asyncio and to_concurrent, with cancellation crossing both ways."""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import threading
from collections.abc import Callable, Iterator

import pytest
from conftest import addr, run_until

from reactor import CancelledError, Future, Reactor
from reactor.embed import attach_asyncio
from reactor.futures import to_asyncio, to_concurrent

#: How long a test waits for another thread at most (a bound, never a sleep).
WAIT = 10.0


@pytest.fixture
def threaded_reactor() -> Iterator[Reactor]:
    """A reactor run by a thread of its own (``run()``), stopped and closed at teardown."""
    r = Reactor()
    thread = threading.Thread(target=r.run, name="test-reactor")
    thread.start()
    yield r
    r.stop()
    thread.join(WAIT)
    r.close()


def on_reactor(r: Reactor, function: object) -> concurrent.futures.Future[object]:
    """Run ``function()`` on ``r``'s thread; a concurrent future of its result."""
    done: concurrent.futures.Future[object] = concurrent.futures.Future()
    r.call_soon_threadsafe(lambda: done.set_result(function()))  # type: ignore[operator]
    return done


# ------------------------------------------------------------------ awaiting a reactor future


def test_wait_for_timeout_cancels_the_request(real_reactor: Reactor, listener: socket.socket) -> None:
    """asyncio.wait_for timing out on reactor.request cancels the request and its connection leaves the table."""
    futures: list[Future[str]] = []

    async def main() -> None:
        driver = attach_asyncio(real_reactor)
        try:
            for _ in range(2):
                futures.append(real_reactor.request(addr(listener), "hello"))
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(futures[-1], 0.05)
            await asyncio.sleep(0)
        finally:
            driver.close()

    asyncio.run(main())
    assert all(f.cancelled() for f in futures)
    run_until(real_reactor, lambda: not real_reactor.connections, timeout=0)


def test_cancelling_the_awaiting_task_cancels_the_future(real_reactor: Reactor) -> None:
    """task.cancel() on a coroutine awaiting a reactor future cancels that future."""
    future = real_reactor.create_future()

    async def main() -> None:
        driver = attach_asyncio(real_reactor)
        try:
            task = asyncio.get_running_loop().create_task(_await(future))
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            driver.close()

    asyncio.run(main())
    assert future.cancelled()


async def _await(future: Future[object]) -> object:
    return await future


async def turns_until(predicate: Callable[[], object], turns: int = 1000) -> None:
    """Let the asyncio loop (and the reactor it drives) turn until ``predicate()`` holds; never sleeps."""
    for _ in range(turns):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"condition not reached within {turns} turns")


def test_awaiting_gets_result_and_exception(real_reactor: Reactor) -> None:
    """A result or exception set on the reactor side reaches the awaiting coroutine."""

    async def main() -> tuple[object, BaseException | None]:
        driver = attach_asyncio(real_reactor)
        try:
            ok = real_reactor.create_future()
            bad = real_reactor.create_future()
            real_reactor.call_soon(ok.set_result, 42)
            real_reactor.call_soon(bad.set_exception, ValueError("no"))
            caught = None
            try:
                await bad
            except ValueError as exc:
                caught = exc
            return await ok, caught
        finally:
            driver.close()

    value, caught = asyncio.run(main())
    assert value == 42 and isinstance(caught, ValueError)


# ------------------------------------------------------------------ to_asyncio


def test_to_asyncio_crosses_both_ways_on_one_thread(real_reactor: Reactor) -> None:
    """to_asyncio copies the outcome to asyncio, and an asyncio cancel back to the reactor future."""

    async def main() -> None:
        driver = attach_asyncio(real_reactor)
        try:
            ok = real_reactor.create_future()
            bridged = to_asyncio(ok)
            assert isinstance(bridged, asyncio.Future)
            real_reactor.call_soon(ok.set_result, "yes")
            assert await bridged == "yes"

            gone = real_reactor.create_future()
            to_asyncio(gone).cancel()
            await asyncio.sleep(0)
            assert gone.cancelled()

            dropped = real_reactor.create_future()
            bridge = to_asyncio(dropped)
            dropped.cancel()
            with pytest.raises(asyncio.CancelledError):
                await bridge
        finally:
            driver.close()

    asyncio.run(main())


def test_to_asyncio_across_threads(threaded_reactor: Reactor) -> None:
    """With the reactor in its own thread, outcome and cancellation still cross, thread-safely."""
    r = threaded_reactor

    async def main() -> None:
        future = on_reactor(r, r.create_future).result(WAIT)
        assert isinstance(future, Future)
        bridged = to_asyncio(future)
        r.call_soon_threadsafe(future.set_result, 7)
        assert await bridged == 7

        other = on_reactor(r, r.create_future).result(WAIT)
        assert isinstance(other, Future)
        to_asyncio(other).cancel()
        await asyncio.sleep(0)  # the bridge's done-callback hands the cancel over
        assert await asyncio.wrap_future(on_reactor(r, other.cancelled)) is True

    asyncio.run(main())


def test_to_asyncio_needs_a_loop_and_a_reactor_future(reactor: Reactor) -> None:
    """Outside a coroutine to_asyncio needs loop=; anything but a reactor Future is a TypeError."""
    future = reactor.create_future()
    with pytest.raises(RuntimeError, match="loop="):
        to_asyncio(future)
    loop = asyncio.new_event_loop()
    try:
        bridged = to_asyncio(future, loop=loop)
        future.set_result(1)
        reactor.run_once(0)
        assert loop.run_until_complete(bridged) == 1
    finally:
        loop.close()
    with pytest.raises(TypeError, match="reactor Future"):
        to_asyncio(concurrent.futures.Future(), loop=loop)  # type: ignore[arg-type]


def test_wrap_future_of_a_reactor_future_is_asyncios_assertion(reactor: Reactor) -> None:
    """asyncio.wrap_future takes only concurrent futures; to_asyncio (or to_concurrent first) is the way."""
    future = reactor.create_future()

    async def main() -> None:
        with pytest.raises(AssertionError):
            asyncio.wrap_future(future)  # type: ignore[arg-type]
        wrapped = asyncio.wrap_future(to_concurrent(future))
        future.set_result("via concurrent")
        reactor.run_once(0)
        assert await wrapped == "via concurrent"

    asyncio.run(main())


# ------------------------------------------------------------------ to_concurrent


def test_to_concurrent_result_from_another_thread(real_reactor: Reactor) -> None:
    """Another thread waits on the concurrent future and gets the result the reactor set."""
    future = real_reactor.create_future()
    bridged = to_concurrent(future)
    got: list[object] = []
    waiter = threading.Thread(target=lambda: got.append(bridged.result(WAIT)))
    waiter.start()
    future.set_result("hello")
    real_reactor.run_once(0)
    waiter.join(WAIT)
    assert got == ["hello"]


def test_to_concurrent_exception_and_reactor_cancel(reactor: Reactor) -> None:
    """An exception crosses as the concurrent future's exception; a reactor-side cancel cancels it."""
    failing = reactor.create_future()
    cancelled = reactor.create_future()
    bad, gone = to_concurrent(failing), to_concurrent(cancelled)
    failing.set_exception(OSError("down"))
    cancelled.cancel()
    reactor.run_once(0)
    assert isinstance(bad.exception(0), OSError)
    assert gone.cancelled()


def test_cancelling_the_concurrent_future_from_a_thread_cancels_the_reactor_future(real_reactor: Reactor) -> None:
    """cancel() on the concurrent future, in another thread, reaches the reactor future via call_soon_threadsafe."""
    future = real_reactor.create_future()
    bridged = to_concurrent(future)
    canceller = threading.Thread(target=bridged.cancel)
    canceller.start()
    canceller.join(WAIT)
    assert not future.cancelled()  # only the reactor's thread changes it
    run_until(real_reactor, future.cancelled)


def test_bridges_are_the_same_functions_in_embed() -> None:
    """reactor.futures' names load the bridges of reactor.embed; no import cycle."""
    import reactor.embed
    import reactor.futures

    assert reactor.futures.to_asyncio.__module__ == "reactor.futures"
    assert callable(reactor.embed.to_asyncio) and callable(reactor.embed.to_concurrent)
    with pytest.raises(TypeError, match="reactor Future"):
        to_concurrent(concurrent.futures.Future())  # type: ignore[arg-type]


def test_cancelled_error_is_asyncios(reactor: Reactor) -> None:
    """A cancelled reactor future raises asyncio's CancelledError, so asyncio code catches it."""
    future = reactor.create_future()
    future.cancel()
    with pytest.raises(asyncio.CancelledError):
        future.result()
    assert CancelledError is asyncio.CancelledError


# ------------------------------------------------------------------ a reactor task awaiting asyncio


def test_a_task_awaits_asyncio_futures_and_coroutines(real_reactor: Reactor) -> None:
    """A reactor task, on a reactor attached to asyncio, awaits the loop's futures and coroutines."""

    async def in_task(loop: asyncio.AbstractEventLoop) -> list[object]:
        future = loop.create_future()
        loop.call_soon(future.set_result, "from asyncio")
        failing = loop.create_future()
        loop.call_soon(failing.set_exception, LookupError("asyncio said no"))
        got: list[object] = [await future, await asyncio.sleep(0.001, "slept")]
        try:
            await failing
        except LookupError as exc:
            got.append(str(exc))
        return got

    async def main() -> list[object]:
        driver = attach_asyncio(real_reactor)
        try:
            task = real_reactor.create_task(in_task(asyncio.get_running_loop()))
            return await task  # type: ignore[no-any-return]
        finally:
            driver.close()

    assert asyncio.run(main()) == ["from asyncio", "slept", "asyncio said no"]


def test_cancelling_the_task_cancels_the_asyncio_future(real_reactor: Reactor) -> None:
    """Cancelling a reactor task parked on an asyncio future cancels that future; the task's finally runs."""
    cleaned: list[str] = []

    async def in_task(future: asyncio.Future[None]) -> None:
        cleaned.append("parked")
        try:
            await future
        finally:
            cleaned.append("finally")

    async def main() -> asyncio.Future[None]:
        driver = attach_asyncio(real_reactor)
        try:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            task = real_reactor.create_task(in_task(future))
            await turns_until(lambda: cleaned)  # the task started and parked on the asyncio future
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return future
        finally:
            driver.close()

    assert asyncio.run(main()).cancelled()
    assert cleaned == ["parked", "finally"]


def test_an_asyncio_cancel_reaches_the_task_as_cancelled_error(real_reactor: Reactor) -> None:
    """An asyncio future cancelled on the asyncio side raises CancelledError at the task's await."""

    parked: list[bool] = []

    async def in_task(future: asyncio.Future[None]) -> str:
        parked.append(True)
        try:
            await future
        except asyncio.CancelledError:
            return "caught"
        return "not cancelled"

    async def main() -> object:
        driver = attach_asyncio(real_reactor)
        try:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            task = real_reactor.create_task(in_task(future))
            await turns_until(lambda: parked)
            future.cancel()
            return await task
        finally:
            driver.close()

    assert asyncio.run(main()) == "caught"


def test_a_task_in_the_reactors_thread_awaits_a_future_of_a_loop_in_another(threaded_reactor: Reactor) -> None:
    """With the reactor run by its own thread, a task awaits an asyncio future of the loop in this thread."""
    r = threaded_reactor

    async def in_task(future: asyncio.Future[str]) -> str:
        return (await future).upper()

    async def main() -> object:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        task = on_reactor(r, lambda: to_concurrent(r.create_task(in_task(future)))).result(WAIT)
        assert isinstance(task, concurrent.futures.Future)
        future.set_result("across")
        return await asyncio.wrap_future(task)

    assert asyncio.run(main()) == "ACROSS"


def test_an_asyncio_coroutine_reads_lines_from_a_reactor_stream(real_reactor: Reactor) -> None:
    """`StreamReader.readline` awaited by an asyncio task (no reactor task stepping it) waits as any future.

    The reader's wait is then an asyncio future following the reactor's,
    and the lines arrive in order, whether buffered already or written
    while the coroutine waits.
    """
    from reactor.streams_async import memory_stream_pair

    (reader, _), (_, writer) = memory_stream_pair(real_reactor)
    lines: list[bytes] = []

    async def main() -> None:
        driver = attach_asyncio(real_reactor)
        try:
            writer.write(b"first\n")
            real_reactor.call_later(0.01, writer.write, b"sec")
            real_reactor.call_later(0.02, writer.write, b"ond\nthird\n")
            for _ in range(3):
                lines.append(await asyncio.wait_for(reader.readline(), WAIT))
        finally:
            driver.close()

    asyncio.run(main())
    assert lines == [b"first\n", b"second\n", b"third\n"]
