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
SIGINT: the supervisor closes its listening sockets, every worker closes its
copies of them at once and drains within ``grace``, and the supervisor
returns; once every copy is closed the kernel refuses new clients instead of
queueing them for nobody (nginx's master and gunicorn's arbiter close their
listeners first too).  A worker on a shared socket stops accepting, waits
until the connections it accepted are answered (one accepted a moment ago
may not have sent its request yet, and ``drain`` would close it as idle),
then drains.  A second SIGINT or SIGTERM kills the workers at once.
SIGHUP: a rolling restart; a new generation starts, and the old one is told
to drain only when every new worker has built its servers and said so.
``build`` runs in each new worker, so what it imports there (the CLI's
``--handler``) is imported afresh: a rolling restart runs the code as it is
on disk then, as gunicorn does without ``--preload``.

Workers that never boot: a worker whose ``build`` raises reports the
traceback and exits; the supervisor logs the first cause, backs off, and
after `BOOT_ATTEMPTS` workers in a row exited before they were ready, closes
the listening sockets, stops the others and raises `WorkerBootError`
(``serve`` exits 3, as gunicorn does), so a health check sees the port
closed rather than a backlog that nobody serves.

Signals reach the supervisor through its own `Reactor`
(`Reactor.add_signal_handler`), which also watches the workers' status pipes.
A forked child closes that reactor at once: closing drops its copy of the
epoll descriptor without touching the parent's epoll set, and restores the
signal handlers before the worker installs its own.

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
import signal
import socket
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from ._workers_control import exit_child
from .addresses import Address, parse_address
from .core import Reactor
from .futures import Future
from .reqrep import stop_when_drained
from .transport.listener import UnixPathClaim, bind_listening_socket, listening_socket_source

__all__ = [
    "run_workers",
    "worker_count",
    "WorkerServer",
    "WorkerBootError",
    "MIN_UPTIME",
    "MAX_BACKOFF",
    "BOOT_ATTEMPTS",
]

logger = logging.getLogger("reactor.workers")

#: A worker that dies sooner than this after starting counts towards the back-off.
MIN_UPTIME = 1.0
#: The longest wait before restarting a worker that keeps dying.
MAX_BACKOFF = 10.0
_FIRST_BACKOFF = 0.1
_DRAIN_POLL = 0.01
#: How long past ``grace`` the supervisor waits before it kills a worker that did not exit.
KILL_MARGIN = 5.0
#: After this many workers in a row exited before they were ready, the supervisor gives up
#: (`WorkerBootError`): it closes the listening sockets instead of backing off forever.
BOOT_ATTEMPTS = 5
#: A worker's exit status when ``build`` raised (gunicorn's, for "Worker failed to boot").
_EXIT_BOOT_FAILED = 3
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


class WorkerBootError(RuntimeError):
    """No worker could boot: `BOOT_ATTEMPTS` workers in a row exited before they were ready.

    `run_workers` raises it after closing the listening sockets and stopping
    every worker, so that a health check sees the port closed.  ``cause``
    is what the last of them reported: the traceback of the exception its
    ``build`` raised, or how it died.
    """

    def __init__(self, cause: str) -> None:
        lines = [line for line in cause.strip().splitlines() if line.strip()]
        super().__init__(lines[-1].strip() if lines else cause)
        #: The full cause, as the worker reported it.
        self.cause = cause


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
    status = 0
    with Reactor() as reactor:
        draining = False

        def on_sigterm() -> None:
            nonlocal status
            if draining:
                logger.warning("worker %d: second SIGTERM during the drain: exiting at once", os.getpid())
                status = 128 + signal.SIGTERM
                reactor.stop()
            else:
                begin_drain()

        def begin_drain() -> None:
            nonlocal draining, status
            if draining:
                return
            draining = True
            try:
                start_drain()
            except Exception:  # never a worker that drains forever and ignores SIGTERM
                logger.exception("worker %d: the drain failed; exiting at once", os.getpid())
                status = 1
                reactor.stop()

        def start_drain() -> None:
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
            # But close this process's copies of the shared listening sockets now: once the
            # supervisor and every worker have, the kernel refuses new clients at once
            # instead of queueing them for nobody (nginx and gunicorn close listeners first).
            # The supervisor owns these sockets; the listeners that adopted them accept no more.
            for item in shared:
                item.sock.close()

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

        reactor.add_signal_handler(signal.SIGTERM, on_sigterm)
        try:
            try:
                with _adopting(shared) as adopted:
                    servers.extend(build(reactor))
            except (Exception, SystemExit) as exc:  # the supervisor logs it once and counts the failed boot
                cause = str(exc) if isinstance(exc, SystemExit) else "".join(traceback.format_exception(exc))
                _write_all(status_w, b"boot-error " + json.dumps(cause.rstrip()).encode() + b"\n")
                return _EXIT_BOOT_FAILED
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
            reactor.remove_reader(control_r)
    return status


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
    boot_error: str | None = None  # what it reported when its build raised
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
        self.boot_failures = 0  # workers in a row that exited before they were ready
        self.boot_cause_logged = False
        #: The cause, once the supervisor gave up because no worker could boot.
        self.gave_up: str | None = None
        #: The signal that ended a drain at once (a second SIGINT/SIGTERM), or 0.
        self.second_signal = 0
        self.reactor = Reactor()

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

            def serve() -> int:
                self._become_worker(status_r, control_w)
                return _worker_main(self.build, self.grace, self.shared, control_r, status_w)

            exit_child(serve)
        os.close(status_w)
        os.close(control_r)
        os.set_blocking(status_r, False)
        worker = _Worker(pid, self.generation, status_r, control_w, time.monotonic())
        self.workers.append(worker)
        self.reactor.add_reader(status_r, self.on_status, worker)
        self.started += 1
        logger.info("worker %d started (generation %d)", pid, self.generation)

    def _become_worker(self, status_r: int, control_w: int) -> None:
        """In a new child: drop the supervisor's signal handling and descriptors."""
        self.reactor.close()  # restores the signal handlers; closes its epoll fd, never touching the set
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the supervisor decides
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for fd in (status_r, control_w):
            os.close(fd)
        for other in self.workers:
            if other.status_open:
                os.close(other.status_r)
            os.close(other.control_w)
        self.workers = []

    # ------------------------------------------------------------- events

    def on_signal(self, signum: int) -> None:
        self.pending_signals.append(signum)  # in a turn of the supervisor's reactor; acted on after it

    def handle_signals(self) -> None:
        pending, self.pending_signals = self.pending_signals, []
        for signum in pending:
            if signum in (signal.SIGTERM, signal.SIGINT):
                name = signal.Signals(signum).name
                if self.stopping:
                    if not self.second_signal:
                        logger.warning("second %s during the drain: killing the workers and exiting at once", name)
                        self.second_signal = signum
                    self.kill_all()
                self.stop(name)
            elif signum == signal.SIGHUP and not self.stopping:
                self.rolling_restart()

    def stop(self, why: str) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.respawn_at.clear()
        # Listeners first (as nginx and gunicorn do): with every worker closing its copy as
        # it starts draining, the kernel refuses new clients at once instead of queueing them.
        _close_shared(self.shared)
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
            self.reactor.remove_reader(worker.status_r)
            os.close(worker.status_r)
            worker.status_open = False
            return
        worker.buffer += data
        *lines, worker.buffer = worker.buffer.split(b"\n")
        for line in lines:
            if line == b"ready":
                worker.ready = True
                self.boot_failures = 0
                self.maybe_retire_old()
            elif line.startswith(b"boot-error "):
                worker.boot_error = str(json.loads(line[11:]))
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
                    self.reactor.remove_reader(worker.status_r)
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
            if not worker.ready and self.failed_to_boot(worker, status):
                continue
            self.failures = self.failures + 1 if uptime < MIN_UPTIME or not worker.ready else 0
            delay = 0.0 if not self.failures else min(_FIRST_BACKOFF * 2 ** (self.failures - 1), MAX_BACKOFF)
            if delay:
                logger.warning("workers keep dying; restarting in %.1f s", delay)
            self.respawn_at.append(time.monotonic() + delay)

    def failed_to_boot(self, worker: _Worker, status: int) -> bool:
        """Count a worker that exited before it was ready; True once the supervisor gives up."""
        self.boot_failures += 1
        cause = worker.boot_error or f"the worker {_describe(status)} before it was ready"
        if not self.boot_cause_logged:  # once: the next ones are most likely the same
            self.boot_cause_logged = True
            logger.error("worker %d failed to boot: %s", worker.pid, cause)
        if self.boot_failures < BOOT_ATTEMPTS:
            return False
        logger.error(
            "no worker became ready in %d boots in a row; closing the listening sockets and giving up",
            self.boot_failures,
        )
        self.gave_up = cause
        self.stop("no worker could boot")
        return True

    # --------------------------------------------------------------- loop

    def run(self) -> None:
        for _ in range(self.count):
            self.spawn()
        while self.workers or (self.respawn_at and not self.stopping):
            now = time.monotonic()
            deadlines = [*self.respawn_at, *([self.kill_at] if self.kill_at is not None else [])]
            timeout = max(0.0, min(deadlines) - now) if deadlines else None
            self.reactor.run_once(timeout)  # status lines and signals
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
        self.reactor.close()  # restores the signal handlers and the wakeup fd


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
        try:
            for sig in _SIGNALS:
                supervisor.reactor.add_signal_handler(sig, supervisor.on_signal, sig)
            supervisor.run()
        finally:
            supervisor.close()
    finally:
        _close_shared(shared)
    if supervisor.gave_up is not None:
        raise WorkerBootError(supervisor.gave_up)
    totals = dict(supervisor.totals)
    totals["workers_started"] = supervisor.started
    totals["workers_died"] = supervisor.died
    totals["second_signal"] = supervisor.second_signal
    return totals
