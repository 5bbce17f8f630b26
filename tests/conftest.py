"""Shared test helpers: a manual clock, a bounded run-until, and leak checks."""

from __future__ import annotations

import _thread
import errno
import gc
import os
import signal
import socket
import subprocess
import threading
import time
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


def wait_for(predicate: Callable[[], object], seconds: float = 5.0, what: str = "condition") -> None:
    """Poll ``predicate`` until it holds; fail after ``seconds`` (for other processes, which no clock drives)."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {seconds} s")
        time.sleep(0.01)  # sleep-ok: polling another process, bounded


def addr(sock: socket.socket) -> str:
    """A bound socket's address as ``'host:port'``."""
    host, port = sock.getsockname()[:2]
    return f"{host}:{port}"


def end_process(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> int:
    """Send ``sig`` to a test's subprocess, wait for it (killed after 10 s), close its pipes; its exit status."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        status = proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        status = proc.wait(10)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    return status


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A plain loopback listening socket that never answers: a server that accepts and stays silent."""
    s = socket.socket()  # socket-ok: the test's own silent server
    s.bind(("127.0.0.1", 0))  # socket-ok
    s.listen(4)  # socket-ok
    yield s
    s.close()


@pytest.fixture
def clock() -> ManualClock:
    """A clock that moves only when the test advances it."""
    return ManualClock(1000.0)


_FD_DIR = "/proc/self/fd"


def open_fd_count() -> int | None:
    """How many descriptors the process has open (None where /proc/self/fd does not exist)."""
    try:
        return len(os.listdir(_FD_DIR))
    except FileNotFoundError:
        return None


def open_fds() -> dict[int, str]:
    """The process's open descriptors and what they point to, for a leak report."""
    found: dict[int, str] = {}
    for name in os.listdir(_FD_DIR):
        try:
            found[int(name)] = os.readlink(os.path.join(_FD_DIR, name))
        except OSError:
            pass  # the listing's own descriptor, already closed
    return found


def check_and_close(r: Reactor, fds_before: int | None, fd_map_before: dict[int, str] | None) -> None:
    """Teardown leak checks: no connection rows, no registered fd but the wakeup, no new open fds."""
    if not r.is_closed():
        rows = dict(r.connections)
        # fd -> its reader and writer, for every fd the wait watches or the table holds.
        watched = (set(r._wait.registrations()) - {r._wake_fd}) | set(r._io)
        registered = {fd: r._io.get(fd) for fd in watched}
        r.close()  # first, so that a failed check does not leak the reactor too
        assert rows == {}, f"connection rows left behind: {rows}"
        assert not registered, f"fds still registered with the reactor: {registered}"
    if fds_before is None:
        return
    if open_fd_count() != fds_before:
        gc.collect()  # objects in reference cycles may hold the last reference to a socket
    after = open_fd_count()
    if after != fds_before:
        now = open_fds()
        new = {fd: target for fd, target in now.items() if fd_map_before is not None and fd not in fd_map_before}
        raise AssertionError(f"{after} fds open after the test, {fds_before} before; new: {new}")


@pytest.fixture
def reactor(clock: ManualClock) -> Iterator[Reactor]:
    """A reactor on a manual clock, closed after the test and checked for leaked rows, registrations and fds."""
    fds_before = open_fd_count()
    fd_map_before = open_fds() if fds_before is not None else None
    r = Reactor(clock=clock)
    yield r
    check_and_close(r, fds_before, fd_map_before)


@pytest.fixture
def real_reactor() -> Iterator[Reactor]:
    """A reactor on the real monotonic clock, closed and checked for leaks like `reactor`."""
    fds_before = open_fd_count()
    fd_map_before = open_fds() if fds_before is not None else None
    r = Reactor()
    yield r
    check_and_close(r, fds_before, fd_map_before)


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


class EmfileSocket:
    """Wraps a listening socket; ``_accept()`` fails with EMFILE while ``fail`` is set (and counts its calls)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fail = True
        self.calls = 0

    def _accept(self) -> tuple[int, object]:
        self.calls += 1
        if self.fail:
            raise OSError(errno.EMFILE, "Too many open files")
        return self.sock._accept()  # type: ignore[attr-defined,no-any-return]

    def __getattr__(self, name: str) -> object:
        return getattr(self.sock, name)
