"""The two thread-safe entry points: call_soon_threadsafe and stop."""

from __future__ import annotations

import threading
import time

from reactor import Reactor


def test_call_soon_threadsafe_wakes_blocked_reactor() -> None:
    """Another thread's call_soon_threadsafe wakes run_once(None) within 100 ms."""
    with Reactor() as r:
        got: list[str] = []
        waiting = threading.Event()

        def other() -> None:
            waiting.wait(5)
            r.call_soon_threadsafe(got.append, "woken")

        t = threading.Thread(target=other)
        t.start()
        # Blocked with nothing scheduled: only the wakeup can end this turn.
        r.call_soon(waiting.set)
        r.run_once(0)
        start = time.monotonic()
        while not got:
            r.run_once(None)
        elapsed = time.monotonic() - start
        t.join()
        assert got == ["woken"]
        assert elapsed < 0.1


def test_stop_from_another_thread() -> None:
    """stop() from another thread ends run() promptly."""
    with Reactor() as r:
        started = threading.Event()
        r.call_soon(started.set)
        t = threading.Thread(target=lambda: (started.wait(5), r.stop()))
        t.start()
        start = time.monotonic()
        r.run()
        t.join()
        assert time.monotonic() - start < 1.0
        assert not r.is_running()


def test_many_threadsafe_calls_are_all_run() -> None:
    """Thousands of cross-thread calls are neither lost nor duplicated."""
    with Reactor() as r:
        got: list[int] = []
        n = 4 * 2000

        def producer(base: int) -> None:
            for i in range(2000):
                r.call_soon_threadsafe(got.append, base + i)

        threads = [threading.Thread(target=producer, args=(k * 2000,)) for k in range(4)]
        for t in threads:
            t.start()
        turns = 0
        while len(got) < n and turns < 100_000:
            r.run_once(0.05)
            turns += 1
        for t in threads:
            t.join()
        assert sorted(got) == list(range(n))


def test_stop_from_signal_handler_wakes_blocked_run() -> None:
    """stop() from a signal handler ends a run() blocked in select (no other wakeup)."""
    import signal

    with Reactor() as r:
        previous = signal.signal(signal.SIGALRM, lambda signum, frame: r.stop())
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.05)
            start = time.monotonic()
            r.run()  # nothing scheduled: only the signal can end this
            assert time.monotonic() - start < 2.0
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
