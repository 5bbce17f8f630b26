"""``--control`` and ``--metrics`` with worker processes: one view of every worker.

Each worker serves a private control socket (`reactor.control.ControlServer`)
in a directory of mode 0700 that only the serving user can open, named
after its pid.  A small process, forked by the command line before the
supervisor starts its workers, serves the public control socket and
``/metrics``: it answers each command by asking every socket in the
directory (with `Reactor.request`, since every answer ends with ``\\r\\n``)
and merging the answers (`reactor.control.merge_snapshots`).  A socket left
behind by a worker that died is removed when it refuses a connection.  The
supervisor's own loop stays as it is: it asks nothing and merges nothing.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

from .addresses import parse_address
from .control import SNAPSHOT_CHUNK, Answer, ControlServer, _local_answer, merge_snapshots
from .core import Reactor
from .futures import Future
from .metrics import MetricsServer, metrics_text
from .transport.listener import enable_request_timing

logger = logging.getLogger("reactor.control")

#: Seconds the merging process waits for a worker's answer.
WORKER_TIMEOUT = 5.0


class _WorkerCollector:
    """Asks every worker's private control socket in a directory, and merges the answers."""

    def __init__(self, reactor: Reactor, directory: str, timeout: float = WORKER_TIMEOUT) -> None:
        self.reactor = reactor
        self.directory = directory
        self.timeout = timeout

    def sockets(self) -> list[str]:
        """The workers' control sockets, by pid."""
        names = [name for name in os.listdir(self.directory) if name.endswith(".sock")]
        return [os.path.join(self.directory, name) for name in sorted(names)]

    def ask(self, command: str) -> Future[dict[str, Any]]:
        """A future of the merged answer of every worker to ``command``."""
        result: Future[dict[str, Any]] = self.reactor.create_future()
        paths = self.sockets()
        answers: list[dict[str, Any]] = []
        remaining = len(paths)
        if not paths:
            result.set_result(merge_snapshots([]))
            return result

        def one_done(path: str, fut: Future[str]) -> None:
            nonlocal remaining
            remaining -= 1
            exc = fut.exception()
            if isinstance(exc, ConnectionRefusedError | FileNotFoundError):
                for leftover in (path, path + ".lock"):  # a worker that died without removing them
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(leftover)
            elif exc is not None:
                logger.warning("control: worker socket %s did not answer: %s", path, exc)
            else:
                try:
                    answers.append(json.loads(fut.result()))
                except ValueError:
                    logger.warning("control: worker socket %s answered %r", path, fut.result()[:80])
            if remaining == 0 and not result.done():
                answers.sort(key=lambda snap: snap["reactor"]["pid"])
                result.set_result(merge_snapshots(answers))

        for path in paths:
            fut = self.reactor.request("unix:" + path, command, timeout=self.timeout)
            fut.add_done_callback(functools.partial(one_done, path))
        return result

    def answer(self, command: str) -> Answer:
        if command not in ("snapshot", "summary"):
            return _local_answer(self.reactor, SNAPSHOT_CHUNK)(command)
        merged: Future[bytes] = self.reactor.create_future()

        def done(fut: Future[dict[str, Any]]) -> None:
            if fut.exception() is not None:
                merged.set_exception(fut.exception())  # type: ignore[arg-type]
            else:
                merged.set_result((json.dumps(fut.result(), separators=(",", ":")) + "\r\n").encode())

        self.ask(command).add_done_callback(done)
        return merged

    def metrics(self) -> Future[str]:
        text: Future[str] = self.reactor.create_future()

        def done(fut: Future[dict[str, Any]]) -> None:
            if fut.exception() is not None:
                text.set_exception(fut.exception())  # type: ignore[arg-type]
            else:
                text.set_result(metrics_text(fut.result()))

        self.ask("summary").add_done_callback(done)
        return text


class MergedEndpoints:
    """The process that answers the control socket and ``/metrics`` for every worker.

    Made by `start_merged_endpoints`; ``control`` and ``metrics_url`` say
    where it listens; `close` stops it.
    """

    def __init__(self, pid: int, pipe: int, control: str | None, metrics_url: str | None) -> None:
        self.pid = pid
        self._pipe = pipe
        self.control = control
        self.metrics_url = metrics_url

    def close(self, timeout: float = 5.0) -> None:
        """Stop the process and wait for it (killed after ``timeout`` seconds); idempotent."""
        if self._pipe < 0:
            return
        os.close(self._pipe)
        self._pipe = -1
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while True:
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return
            if time.monotonic() >= deadline:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                return
            time.sleep(0.01)


def worker_control_path(directory: str, pid: int | None = None) -> str:
    """Where the worker ``pid`` (default: this process) serves its private control socket."""
    return os.path.join(directory, f"{os.getpid() if pid is None else pid}.sock")


def start_merged_endpoints(directory: str, control: str | None, metrics: str | None) -> MergedEndpoints:
    """Fork a process that serves ``control`` and ``metrics`` for the workers' sockets in ``directory``.

    It answers every command by asking each ``*.sock`` of ``directory`` (see
    `worker_control_path`) and merging the answers.  Returns once it listens;
    raises `OSError` (or `ValueError` for a malformed address) if it cannot.
    Call it before starting threads; the process ignores SIGINT and SIGHUP
    (the supervisor decides) and ends on `MergedEndpoints.close`, SIGTERM, or
    when every copy of its pipe is closed.
    """
    if metrics is not None:
        parse_address(metrics)  # a malformed address is the caller's error, raised here
    status_r, status_w = os.pipe()
    life_r, life_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns

        def merged() -> int:
            os.close(status_r)
            os.close(life_w)
            return _merged_main(directory, control, metrics, status_w, life_r)

        exit_child(merged)
    os.close(status_w)
    os.close(life_r)
    with os.fdopen(status_r, "rb") as status:
        line = status.readline().decode("utf-8", "replace").strip()
    if not line.startswith("ready "):
        os.close(life_w)
        os.waitpid(pid, 0)
        raise OSError(line.partition(" ")[2] or "the control process exited")
    where = json.loads(line[len("ready ") :])
    return MergedEndpoints(pid, life_w, where["control"], where["metrics"])


def exit_child(body: Callable[[], int]) -> NoReturn:
    """End a forked child with ``body()``'s exit status (1 if it raised, with the traceback printed).

    ``os._exit``, never ``sys.exit``: the child must not run the parent's
    ``atexit`` handlers or flush the parent's buffered files a second time;
    its own stdout and stderr are flushed first.
    """
    code = 1
    try:
        code = body()
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _merged_main(directory: str, control: str | None, metrics: str | None, status_w: int, life_r: int) -> int:
    """The body of the merging process; its exit status."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    with Reactor() as reactor:
        collector = _WorkerCollector(reactor, directory)
        servers: list[ControlServer | MetricsServer] = []
        try:
            try:
                if control is not None:
                    servers.append(ControlServer(reactor, control, answer=collector.answer))
                if metrics is not None:
                    servers.append(MetricsServer(reactor, metrics, collector.metrics))
            except (OSError, ValueError) as exc:
                os.write(status_w, f"error {exc}\n".encode())
                return 1
            where = {
                "control": servers[0].path if control is not None else None,  # type: ignore[union-attr]
                "metrics": servers[-1].url if metrics is not None else None,  # type: ignore[union-attr]
            }
            os.write(status_w, f"ready {json.dumps(where)}\n".encode())
            os.close(status_w)
            # Through the reactor's wakeup fd: a plain Python handler runs only once the
            # main thread executes bytecode again, so a SIGTERM that lands just before
            # the wait blocks would wait for the next event, perhaps forever.
            reactor.add_signal_handler(signal.SIGTERM, reactor.stop)

            def on_life() -> None:
                try:
                    data = os.read(life_r, 64)
                except BlockingIOError:
                    return
                if not data:
                    reactor.stop()

            os.set_blocking(life_r, False)
            reactor.add_reader(life_r, on_life)
            reactor.run()
            reactor.remove_reader(life_r)
        finally:
            for server in servers:
                server.close()
    return 0


class WorkerObservers:
    """``--control`` and ``--metrics`` for worker processes: one merged view of them all.

    Makes a private directory (mode 0700) for the workers' control sockets
    and starts the merging process (`start_merged_endpoints`); each worker
    calls `serve_worker` with its reactor (in ``run_workers``'s ``build``).
    `close` stops the process and removes the directory.  Create it before
    the workers start (it forks).
    """

    def __init__(self, control: str | None, metrics: str | None) -> None:
        self.directory = tempfile.mkdtemp(prefix="reactor-control-")
        self.time_requests = metrics is not None
        try:
            self._endpoints = start_merged_endpoints(self.directory, control, metrics)
        except BaseException:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise
        self.control = self._endpoints.control
        self.metrics_url = self._endpoints.metrics_url

    def serve_worker(self, reactor: Reactor) -> ControlServer:
        """In a worker: serve its private control socket (and time its requests if metrics are on)."""
        if self.time_requests:
            enable_request_timing(reactor)
        return ControlServer(reactor, worker_control_path(self.directory))

    def close(self) -> None:
        """Stop the merging process and remove the directory; idempotent."""
        self._endpoints.close()
        shutil.rmtree(self.directory, ignore_errors=True)
