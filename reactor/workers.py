"""Worker processes: past one core, several reactors on the same addresses.

A reactor is one thread, so one core.  `run_workers` forks N worker
processes, each with its own `Reactor` and its own servers (built by a
callable it is given), all serving the same addresses, and stays behind as
their supervisor; ``python -m reactor serve --workers N`` is that function
with `RequestServer`.

How the workers share a port, and why
-------------------------------------
Two ways exist (docs/workers.md has the measurements).  With
``SO_REUSEPORT`` every worker binds its own socket and the kernel hashes
each new connection to one of them; with an *inherited listener* the
supervisor binds once and every worker accepts from that one socket.  We
inherit by default, as gunicorn does, because the reuse-port way loses
connections exactly when a supervisor is needed: each socket has its own
accept queue, and the connections queued on a worker's socket are reset
when that worker closes it (a rolling restart, a drain) or dies (``kill
-9``).  A shared queue outlives any one worker, so a restart loses nothing.
``reuse_port=True`` is there for measurement and for kernels and loads
where its even spread matters more.  Unix socket paths are always
inherited: ``SO_REUSEPORT`` does not apply to them.

The supervisor
--------------
It serves nothing.  It restarts a worker that dies (at once after a
healthy run; with a doubling back-off, up to `MAX_BACKOFF`, while workers die
within `MIN_UPTIME` of starting) and logs why each died.  SIGTERM and
SIGINT: every worker drains within ``grace`` and the supervisor returns.  A
worker on a shared socket first only stops accepting, waits until the
connections it accepted are answered (one accepted a moment ago may not have
sent its request yet, and ``drain`` would close it as idle), then drains.  SIGHUP: a rolling restart; a new generation
starts, and the old one is told to drain only when every new worker has
built its servers and said so.  Its loop is a plain `selectors` loop, not
a `Reactor`: a forked child must be able to drop every descriptor of the
parent's loop without touching the parent's epoll set, and this way each
one is ours to close.

Each worker has two pipes.  The *status pipe* (worker to supervisor) carries
``ready`` once its servers listen and its counters as JSON when it exits;
its EOF tells the supervisor the worker is gone.  The *control pipe*
(supervisor to worker) carries nothing: the worker's reactor watches its read
end, and EOF means the supervisor died, even by ``kill -9``, so the worker
drains and exits by itself.  That is portable, where ``PR_SET_PDEATHSIG`` is
Linux only, and a test can see it work.

Counters reach the supervisor when a worker exits; a worker killed by a
signal takes its counters with it.  Fork, not spawn: the build callable may
be any closure.  So call `run_workers` before starting threads.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import selectors
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from .addresses import Address, parse_address
from .core import Reactor
from .futures import Future
from .reqrep import stop_when_drained
from .transport.listener import UnixPathClaim, bind_listening_socket, listening_socket_source

__all__ = ["run_workers", "worker_count", "WorkerServer", "MIN_UPTIME", "MAX_BACKOFF"]

logger = logging.getLogger("reactor.workers")

#: A worker that dies sooner than this after starting counts towards the back-off.
MIN_UPTIME = 1.0
#: The longest wait before restarting a worker that keeps dying.
MAX_BACKOFF = 10.0
_FIRST_BACKOFF = 0.1
_DRAIN_POLL = 0.01
#: How long past ``grace`` the supervisor waits before it kills a worker that did not exit.
KILL_MARGIN = 5.0
_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)


class WorkerServer(Protocol):
    """What ``build`` returns a list of: `RequestServer` is one."""

    def stop_accepting(self) -> None:
        """Accept no new connection; keep the socket (others accept from it)."""

    def drain(self, grace: float) -> Future[None]:
        """Close the socket; a future that completes when the requests in flight are done (within ``grace``)."""

    def close(self) -> None:
        """Close everything at once."""

    def statistics(self) -> dict[str, int]:
        """Counters, summed over servers and workers by the supervisor."""


Build = Callable[[Reactor], Sequence[WorkerServer]]


def worker_count(workers: int) -> int:
    """``workers``, or for 0 the number of CPUs this process may run on."""
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers!r}")
    if workers:
        return workers
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _key(address: Address) -> tuple[int, Any]:
    return (int(address.family), address.sockaddr)


@dataclasses.dataclass
class _Shared:
    """One address the supervisor bound for its workers."""

    address: Address
    sock: socket.socket
    inode: UnixPathClaim | None
    reuse_port: bool  # the socket only reserves the port; each worker binds its own


def _bind_shared(addresses: Sequence[str], reuse_port: bool, backlog: int) -> list[_Shared]:
    shared: list[_Shared] = []
    try:
        for text in addresses:
            address = parse_address(text)
            if reuse_port and address.family != socket.AF_UNIX and hasattr(socket, "SO_REUSEPORT"):
                # Bound, not listening: it holds the port (port 0 resolved once for every
                # worker) but is in no accept group, so no connection ever waits on it.
                sock = socket.socket(address.family, socket.SOCK_STREAM)
                shared.append(_Shared(address, sock, None, True))
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                try:
                    sock.bind(address.sockaddr)
                except OSError as exc:
                    raise OSError(exc.errno, f"cannot bind {address.text}: {exc.strerror}") from exc
            else:
                sock, inode = bind_listening_socket(address, backlog)
                shared.append(_Shared(address, sock, inode, False))
    except BaseException:
        _close_shared(shared)
        raise
    return shared


def _close_shared(shared: Sequence[_Shared]) -> None:
    for item in shared:
        item.sock.close()
        if item.inode is not None:
            item.inode.release()  # the socket file if still ours, and the lock beside it


def shared_address(item: _Shared) -> str:
    """The bound address as a string (the real port when 0 was asked)."""
    from .addresses import format_address

    return format_address(item.address.family, item.sock.getsockname())


@contextmanager
def _adopting(shared: Sequence[_Shared]) -> Iterator[set[int]]:
    """While ``build`` runs in a worker, a listener for a shared address gets the supervisor's socket.

    Through the transport layer's `listening_socket_source` seam, a
    `Listener` built for a shared address adopts the supervisor's socket.  An
    adopted socket comes back without its Unix inode, so no worker ever
    unlinks the path: the supervisor owns it.
    """
    table = {_key(item.address): item for item in shared}
    adopted: set[int] = set()

    def source(address: Address, backlog: int, reuse_port: bool) -> Any:
        item = table.get(_key(address))
        if item is None:
            return None
        if item.reuse_port:
            bound = dataclasses.replace(address, sockaddr=item.sock.getsockname())
            return bind_listening_socket(bound, backlog, True, adopt=False)
        adopted.add(id(item))
        return item.sock, None

    with listening_socket_source(source):
        yield adopted


# ------------------------------------------------------------------ a worker


def _worker_main(build: Build, grace: float, shared: Sequence[_Shared], control_r: int, status_w: int) -> int:
    """The body of one worker process; its exit status."""
    servers: list[WorkerServer] = []
    with Reactor() as reactor:
        draining = False

        def begin_drain() -> None:
            nonlocal draining
            if draining:
                return
            draining = True
            reactor.remove_reader(control_r)
            deadline = reactor.time() + grace
            if any(item.reuse_port for item in shared):
                finish(deadline)  # its own accept queue: close it now (what is queued there is reset)
                return
            # A shared socket outlives this worker, so stop accepting but do not close the
            # connections accepted a moment ago whose request is still on its way (what
            # `drain` does with idle ones): wait until they are answered, within the grace.
            for server in servers:
                server.stop_accepting()

            def check() -> None:
                if reactor.time() >= deadline or not any(s.statistics().get("active") for s in servers):
                    poll.cancel()
                    finish(deadline)

            poll = reactor.call_every(_DRAIN_POLL, check)
            check()

        def finish(deadline: float) -> None:
            stop_when_drained(reactor, servers, max(0.0, deadline - reactor.time()))

        def on_control() -> None:
            try:
                data = os.read(control_r, 64)
            except BlockingIOError:
                return
            if not data:
                logger.warning("worker %d: the supervisor is gone; draining", os.getpid())
                begin_drain()

        signal.signal(signal.SIGTERM, lambda signum, frame: reactor.call_soon_threadsafe(begin_drain))
        try:
            with _adopting(shared) as adopted:
                servers.extend(build(reactor))
            for item in shared:
                if id(item) not in adopted:
                    item.sock.close()  # a reserved port, or an address this worker does not serve
            os.set_blocking(control_r, False)
            reactor.add_reader(control_r, on_control)
            _write_all(status_w, b"ready\n")
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
            reactor.run()
            totals: dict[str, int] = {}
            for server in servers:
                for name, value in server.statistics().items():
                    totals[name] = totals.get(name, 0) + int(value)
            _write_all(status_w, b"stats " + json.dumps(totals).encode() + b"\n")
        finally:
            for server in servers:
                server.close()
    return 0


def _write_all(fd: int, data: bytes) -> None:
    while data:
        try:
            data = data[os.write(fd, data) :]
        except BrokenPipeError:
            return  # the supervisor is gone


# -------------------------------------------------------------- the supervisor


@dataclasses.dataclass(eq=False)
class _Worker:
    pid: int
    generation: int
    status_r: int
    control_w: int
    started: float
    ready: bool = False
    retiring: bool = False
    buffer: bytes = b""
    status_open: bool = True


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"killed by {name}"
    return f"exited with code {os.waitstatus_to_exitcode(status)}"


class _Supervisor:
    def __init__(self, build: Build, workers: int, grace: float, shared: list[_Shared]) -> None:
        self.build = build
        self.count = workers
        self.grace = grace
        self.shared = shared
        self.workers: list[_Worker] = []
        self.generation = 0
        self.stopping = False
        self.kill_at: float | None = None
        self.respawn_at: list[float] = []
        self.failures = 0  # workers in a row that died within MIN_UPTIME
        self.totals: dict[str, int] = {}
        self.started = 0
        self.died = 0
        self.pending_signals: list[int] = []
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.selector.register(self.wake_r, selectors.EVENT_READ)

    # ---------------------------------------------------------- spawning

    def spawn(self) -> None:
        status_r, status_w = os.pipe()
        control_r, control_w = os.pipe()
        # Blocked across fork(): the child must not run the supervisor's handlers; it unblocks
        # them once its own are installed (a SIGTERM meanwhile waits, it is not lost).
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        pid = -1
        try:
            pid = os.fork()
        finally:
            if pid != 0:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
        if pid == 0:  # the child: never returns
            code = 1
            try:
                self._become_worker(status_r, control_w)
                code = _worker_main(self.build, self.grace, self.shared, control_r, status_w)
            except BaseException:
                traceback.print_exc()
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        os.close(status_w)
        os.close(control_r)
        os.set_blocking(status_r, False)
        worker = _Worker(pid, self.generation, status_r, control_w, time.monotonic())
        self.workers.append(worker)
        self.selector.register(status_r, selectors.EVENT_READ, worker)
        self.started += 1
        logger.info("worker %d started (generation %d)", pid, self.generation)

    def _become_worker(self, status_r: int, control_w: int) -> None:
        """In a new child: drop the supervisor's signal handling and descriptors."""
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the supervisor decides
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        self.selector.close()
        for fd in (self.wake_r, self.wake_w, status_r, control_w):
            os.close(fd)
        for other in self.workers:
            if other.status_open:
                os.close(other.status_r)
            os.close(other.control_w)
        self.workers = []

    # ------------------------------------------------------------- events

    def on_signal(self, signum: int, frame: object) -> None:
        self.pending_signals.append(signum)

    def handle_signals(self) -> None:
        pending, self.pending_signals = self.pending_signals, []
        for signum in pending:
            if signum in (signal.SIGTERM, signal.SIGINT):
                if self.stopping and signum == signal.SIGINT:
                    logger.warning("second interrupt: killing the workers")
                    self.kill_all()
                self.stop(signal.Signals(signum).name)
            elif signum == signal.SIGHUP and not self.stopping:
                self.rolling_restart()

    def stop(self, why: str) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.respawn_at.clear()
        logger.info("%s: draining %d workers within %.1f s", why, len(self.workers), self.grace)
        self.kill_at = time.monotonic() + self.grace + KILL_MARGIN
        for worker in self.workers:
            self.terminate(worker)

    def rolling_restart(self) -> None:
        logger.info("SIGHUP: starting %d new workers; the old ones drain once they listen", self.count)
        self.generation += 1
        self.respawn_at.clear()
        for worker in self.workers:
            worker.retiring = True
        for _ in range(self.count):
            self.spawn()

    def terminate(self, worker: _Worker) -> None:
        try:
            os.kill(worker.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    def kill_all(self) -> None:
        for worker in self.workers:
            try:
                os.kill(worker.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def on_status(self, worker: _Worker) -> None:
        try:
            data = os.read(worker.status_r, 65536)
        except BlockingIOError:
            return
        if not data:
            self.selector.unregister(worker.status_r)
            os.close(worker.status_r)
            worker.status_open = False
            return
        worker.buffer += data
        *lines, worker.buffer = worker.buffer.split(b"\n")
        for line in lines:
            if line == b"ready":
                worker.ready = True
                self.maybe_retire_old()
            elif line.startswith(b"stats "):
                for name, value in json.loads(line[6:]).items():
                    self.totals[name] = self.totals.get(name, 0) + int(value)

    def maybe_retire_old(self) -> None:
        current = [w for w in self.workers if w.generation == self.generation]
        if len(current) < self.count or not all(w.ready for w in current):
            return
        for worker in self.workers:
            if worker.retiring and worker.generation < self.generation and not self.stopping:
                worker.generation = -1  # told once
                self.terminate(worker)

    def reap(self) -> None:
        for worker in list(self.workers):
            try:
                pid, status = os.waitpid(worker.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = worker.pid, 0
            if pid == 0:
                continue
            self.workers.remove(worker)
            if worker.status_open:
                self.on_status(worker)  # the counters it wrote just before exiting
                if worker.status_open:
                    self.selector.unregister(worker.status_r)
                    os.close(worker.status_r)
                    worker.status_open = False
            os.close(worker.control_w)
            uptime = time.monotonic() - worker.started
            expected = self.stopping or worker.retiring
            if expected and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
                logger.info("worker %d exited after draining", worker.pid)
                continue
            self.died += 1
            level = logging.INFO if expected else logging.WARNING
            logger.log(level, "worker %d %s after %.1f s", worker.pid, _describe(status), uptime)
            if expected:
                continue
            self.failures = self.failures + 1 if uptime < MIN_UPTIME or not worker.ready else 0
            delay = 0.0 if not self.failures else min(_FIRST_BACKOFF * 2 ** (self.failures - 1), MAX_BACKOFF)
            if delay:
                logger.warning("workers keep dying; restarting in %.1f s", delay)
            self.respawn_at.append(time.monotonic() + delay)

    # --------------------------------------------------------------- loop

    def run(self) -> None:
        for _ in range(self.count):
            self.spawn()
        while self.workers or (self.respawn_at and not self.stopping):
            now = time.monotonic()
            deadlines = [*self.respawn_at, *([self.kill_at] if self.kill_at is not None else [])]
            timeout = max(0.0, min(deadlines) - now) if deadlines else None
            for key, _ in self.selector.select(timeout):
                if key.data is None:
                    try:
                        while os.read(self.wake_r, 512):
                            pass
                    except BlockingIOError:
                        pass
                else:
                    self.on_status(key.data)
            self.handle_signals()
            self.reap()
            now = time.monotonic()
            due = [when for when in self.respawn_at if when <= now]
            if due and not self.stopping:
                self.respawn_at = [when for when in self.respawn_at if when > now]
                for _ in due:
                    self.spawn()
            if self.kill_at is not None and now >= self.kill_at and self.workers:
                logger.warning("%d workers did not finish within the grace; killing them", len(self.workers))
                self.kill_all()
                self.kill_at = None

    def close(self) -> None:
        self.kill_all()
        for worker in self.workers:
            try:
                os.waitpid(worker.pid, 0)
            except ChildProcessError:
                pass
            if worker.status_open:
                os.close(worker.status_r)
            os.close(worker.control_w)
        self.workers = []
        self.selector.close()
        os.close(self.wake_r)
        os.close(self.wake_w)


def run_workers(
    build: Build,
    workers: int = 0,
    *,
    addresses: Sequence[str] = (),
    grace: float = 10.0,
    reuse_port: bool = False,
    backlog: int = socket.SOMAXCONN,
    on_listening: Callable[[list[str]], object] | None = None,
) -> dict[str, int]:
    """Run ``build`` in ``workers`` processes (0: one per usable CPU) until SIGTERM or SIGINT.

    ``build(reactor)`` runs in each worker and returns the servers it made
    on that reactor (`WorkerServer`: `RequestServer` is one).  The
    ``addresses`` are bound here, once, before any worker starts, and a
    server that a worker builds on one of them (the same string) accepts
    from that shared socket; with ``reuse_port=True`` each worker binds its
    own ``SO_REUSEPORT`` socket for TCP addresses instead.
    ``on_listening(bound)`` is called with the bound addresses (real ports
    for port 0) before the workers start.

    Blocks, supervising: SIGTERM/SIGINT drain every worker within ``grace``
    seconds; SIGHUP restarts them all, new before old.  Returns the
    counters of every server of every worker, summed, plus
    ``workers_started`` and ``workers_died``.  Call it from the main thread
    (it installs signal handlers) of a POSIX process without other threads.
    """
    if not hasattr(os, "fork"):
        raise RuntimeError("run_workers needs os.fork (POSIX)")
    if not grace >= 0:
        raise ValueError(f"grace must be >= 0 seconds, got {grace!r}")
    count = worker_count(workers)
    shared = _bind_shared(addresses, reuse_port, backlog)
    try:
        if on_listening is not None:
            on_listening([shared_address(item) for item in shared])
        supervisor = _Supervisor(build, count, grace, shared)
        previous = {sig: signal.signal(sig, supervisor.on_signal) for sig in _SIGNALS}
        previous_wakeup = signal.set_wakeup_fd(supervisor.wake_w)
        try:
            supervisor.run()
        finally:
            supervisor.close()
            signal.set_wakeup_fd(previous_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    finally:
        _close_shared(shared)
    totals = dict(supervisor.totals)
    totals["workers_started"] = supervisor.started
    totals["workers_died"] = supervisor.died
    return totals
