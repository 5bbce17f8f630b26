"""Reactor.run_in_executor: the worker pool, executors, cancellation, and no-thread mode."""

from __future__ import annotations

import concurrent.futures
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from reactor import CancelledError, ManualClock, Reactor
from reactor.transport import executor as executor_module
from reactor.transport.threads import WorkerPool

#: How long a test waits for a worker thread at most (a bound, never a sleep).
WAIT = 10.0


class InlineExecutor(concurrent.futures.Executor):
    """An executor that runs each job at once in the caller's thread (no thread at all)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future


@pytest.fixture
def one_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reactor worker pools created during the test have one thread and a backlog of three."""
    monkeypatch.setattr(executor_module, "DEFAULT_MAX_WORKERS", 1)
    # Three, not two: a job's result reaches the reactor a moment before the
    # pool gives its slot back, so a test that submits again after a result
    # may briefly see both earlier jobs still counted.
    monkeypatch.setattr(executor_module, "DEFAULT_MAX_PENDING", 3)


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """An event a blocking job waits on; set at teardown so no worker stays stuck."""
    event = threading.Event()
    yield event
    event.set()


def test_result_comes_back_from_a_worker_thread(reactor: Reactor) -> None:
    """The function runs in a pool thread and its result completes the future on the reactor's thread."""
    future = reactor.run_in_executor(None, lambda a, b: (a + b, threading.get_ident()), 2, 3)
    value, ident = reactor.run_until_complete(future)
    assert value == 5
    assert ident != threading.get_ident()
    assert isinstance(reactor._worker_pool, WorkerPool)


def test_result_arrives_only_through_a_reactor_turn(reactor: Reactor) -> None:
    """A finished job completes its future from the reactor's queue (call_soon_threadsafe), not from the worker."""
    finished = threading.Event()

    def job() -> int:
        finished.set()
        return 1

    future = reactor.run_in_executor(None, job)
    assert finished.wait(WAIT)
    assert not future.done()
    assert reactor.run_until_complete(future) == 1


def test_exception_of_the_function_fails_the_future(reactor: Reactor) -> None:
    """An exception raised in the worker is the future's exception."""

    def job() -> None:
        raise KeyError("missing")

    future = reactor.run_in_executor(None, job)
    with pytest.raises(KeyError, match="missing"):
        reactor.run_until_complete(future)


def test_cancel_before_start_skips_the_job(reactor: Reactor, one_worker: None, gate: threading.Event) -> None:
    """Cancelling the future of a queued job means the job never runs."""
    ran: list[str] = []
    blocker = reactor.run_in_executor(None, gate.wait, WAIT)
    queued = reactor.run_in_executor(None, ran.append, "queued")
    assert queued.cancel()
    reactor.run_once(0)  # the cancel reaches the job
    gate.set()
    assert reactor.run_until_complete(blocker) is True
    # One worker, in order: once this one ran, the cancelled one was taken and skipped.
    assert reactor.run_until_complete(reactor.run_in_executor(None, ran.append, "after")) is None
    assert ran == ["after"]
    assert queued.cancelled()


def test_cancel_while_running_drops_the_result(reactor: Reactor, gate: threading.Event) -> None:
    """A job already running finishes; the cancelled future stays cancelled."""
    started = threading.Event()

    def job() -> str:
        started.set()
        gate.wait(WAIT)
        return "late"

    future = reactor.run_in_executor(None, job)
    assert started.wait(WAIT)
    assert future.cancel()
    gate.set()
    probe = reactor.run_in_executor(None, lambda: None)  # queued behind nothing; proves the pool moved on
    reactor.run_until_complete(probe)
    assert future.cancelled()


def test_a_concurrent_executor_works_too(reactor: Reactor) -> None:
    """Any concurrent.futures.Executor runs the job; its result comes back the same way."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        future = reactor.run_in_executor(pool, pow, 2, 10)
        assert reactor.run_until_complete(future) == 1024
    assert reactor._worker_pool is None  # the reactor's own pool was never made


def test_cancel_reaches_the_executors_future(reactor: Reactor, gate: threading.Event) -> None:
    """Cancelling the reactor future cancels the executor's queued job."""
    ran: list[str] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        blocker = reactor.run_in_executor(pool, gate.wait, WAIT)
        queued = reactor.run_in_executor(pool, ran.append, "queued")
        queued.cancel()
        reactor.run_once(0)
        gate.set()
        reactor.run_until_complete(blocker)
    assert ran == []


def test_an_executor_that_cancels_cancels_the_future(reactor: Reactor, gate: threading.Event) -> None:
    """A job the executor drops (shutdown with cancel_futures) cancels the reactor future."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    blocker = reactor.run_in_executor(pool, gate.wait, WAIT)
    queued = reactor.run_in_executor(pool, int, "1")
    pool.shutdown(wait=False, cancel_futures=True)
    gate.set()
    reactor.run_until_complete(blocker)
    with pytest.raises(CancelledError):
        reactor.run_until_complete(queued)
    pool.shutdown(wait=True)


def test_full_pool_fails_the_future(reactor: Reactor, one_worker: None, gate: threading.Event) -> None:
    """A job beyond the pool's backlog fails its future at once with a clear RuntimeError."""
    accepted = [reactor.run_in_executor(None, gate.wait, WAIT) for _ in range(3)]
    refused = reactor.run_in_executor(None, gate.wait, WAIT)
    with pytest.raises(RuntimeError, match="worker pool .* is full"):
        refused.result()
    gate.set()
    assert all(reactor.run_until_complete(future) for future in accepted)


def test_close_shuts_the_pool_down(clock: ManualClock) -> None:
    """Reactor.close shuts the worker pool down without waiting for a job that is stuck."""
    stuck = threading.Event()
    reactor = Reactor(clock=clock)
    future = reactor.run_in_executor(None, stuck.wait, WAIT)
    pool = reactor._worker_pool
    assert isinstance(pool, WorkerPool)
    reactor.close()  # returns although the job still runs
    assert pool.is_shut_down
    assert not future.done()
    stuck.set()  # the job ends; its result finds the reactor closed and is dropped quietly
    pool._executor.shutdown(wait=True)


def test_bad_arguments_raise(reactor: Reactor) -> None:
    """A non-callable or something that is not an executor raises TypeError at the call."""
    with pytest.raises(TypeError, match="callable"):
        reactor.run_in_executor(None, 42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="concurrent.futures.Executor"):
        reactor.run_in_executor(object(), print)  # type: ignore[arg-type]


def test_closed_reactor_refuses() -> None:
    """run_in_executor on a closed reactor raises RuntimeError."""
    reactor = Reactor()
    reactor.close()
    with pytest.raises(RuntimeError, match="closed"):
        reactor.run_in_executor(None, print)


# ------------------------------------------------------------------ no threads


def test_threads_option_and_its_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Threads are allowed by default, forbidden with threads=False and on platforms without threads."""
    with Reactor() as allowed, Reactor(threads=False) as forbidden:
        assert allowed.threads and not forbidden.threads
    monkeypatch.setattr(sys, "platform", "emscripten")
    with Reactor() as wasm, Reactor(threads=True) as forced:
        assert not wasm.threads and forced.threads


def test_no_threads_fails_at_once(no_threads: None, clock: ManualClock) -> None:
    """On a reactor with threads=False, run_in_executor(None, ...) raises a clear RuntimeError and starts nothing."""
    with Reactor(clock=clock, threads=False) as reactor:
        with pytest.raises(RuntimeError, match=r"may not start threads .*threads=False.*executor of your own"):
            reactor.run_in_executor(None, print)
        assert reactor._worker_pool is None


def test_no_threads_accepts_an_executor_of_your_own(no_threads: None, clock: ManualClock) -> None:
    """An executor passed explicitly is used as given, even where the reactor may not start threads."""
    with Reactor(clock=clock, threads=False) as reactor:
        future = reactor.run_in_executor(InlineExecutor(), str.upper, "done")
        assert reactor.run_until_complete(future) == "DONE"


def test_thread_that_cannot_start_is_a_clear_error(reactor: Reactor, monkeypatch: pytest.MonkeyPatch) -> None:
    """When starting a worker thread fails (RuntimeError: can't start new thread), the call says so and what to do."""

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    ran: list[int] = []
    with pytest.raises(RuntimeError, match=r"cannot start a worker thread.*can't start new thread.*threads=False"):
        reactor.run_in_executor(None, ran.append, 1)
    monkeypatch.undo()
    # The job the executor had queued before its thread failed never runs later.
    assert reactor.run_until_complete(reactor.run_in_executor(None, ran.append, 2)) is None
    assert ran == [2]
