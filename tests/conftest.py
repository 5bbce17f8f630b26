"""Shared test helpers: a manual clock, a bounded run-until, and leak checks."""

from __future__ import annotations

import _thread
import threading
from collections.abc import Callable, Iterator

import pytest

from reactor import ManualClock, Reactor


def run_until(reactor: Reactor, predicate: Callable[[], bool], *, turns: int = 1000, timeout: float = 0.05) -> None:
    """Run turns until ``predicate()`` holds; fail after ``turns`` turns (never sleeps)."""
    for _ in range(turns):
        if predicate():
            return
        reactor.run_once(timeout)
    if not predicate():
        raise AssertionError(f"condition not reached within {turns} turns")


@pytest.fixture
def clock() -> ManualClock:
    """A clock that moves only when the test advances it."""
    return ManualClock(1000.0)


@pytest.fixture
def reactor(clock: ManualClock) -> Iterator[Reactor]:
    """A reactor on a manual clock, closed (and checked for leaks) after the test."""
    r = Reactor(clock=clock)
    yield r
    if not r.is_closed():
        assert r.connections == {}, f"connection rows left behind: {r.connections}"
        r.close()


@pytest.fixture
def real_reactor() -> Iterator[Reactor]:
    """A reactor on the real monotonic clock."""
    r = Reactor()
    yield r
    if not r.is_closed():
        assert r.connections == {}, f"connection rows left behind: {r.connections}"
        r.close()


class ThreadCreationForbidden(AssertionError):
    """Raised when code under a no-threads test tries to start a thread."""


@pytest.fixture
def no_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every way of starting a thread raise."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise ThreadCreationForbidden("this code must not start a thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    monkeypatch.setattr(_thread, "start_new_thread", refuse)
    monkeypatch.setattr(threading, "_start_new_thread", refuse, raising=False)


@pytest.fixture(autouse=True, scope="session")
def _close_default_reactor() -> Iterator[None]:
    """Close the process-wide default reactor if a test created one."""
    yield
    from reactor import core

    default = core._default_reactor
    if default is not None and not default.is_closed() and not default.is_running():
        default.close()
