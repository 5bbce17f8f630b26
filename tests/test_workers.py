"""Worker processes under a supervisor (`reactor.workers`): real processes on loopback, every wait bounded."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import end_process, wait_for

from reactor.client import do_request

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="worker processes need os.fork"),
    pytest.mark.timeout(30),
]

TESTS = Path(__file__).resolve().parent
HANDLER = "worker_handlers:PidServer"


def gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (reaped, or a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


class Supervisor:
    """``python -m reactor serve --workers N`` in a subprocess, its output in files."""

    def __init__(
        self,
        tmp: Path,
        workers: int,
        *extra: str,
        address: str = "127.0.0.1:0",
        handler: str = HANDLER,
        cwd: Path | None = None,
    ) -> None:
        self.out_path, self.err_path = tmp / "stdout", tmp / "stderr"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "reactor",
                    "serve",
                    "--workers",
                    str(workers),
                    "--handler",
                    handler,
                    *extra,
                    address,
                ],
                stdout=out,
                stderr=err,
                env=env,
                cwd=cwd,
            )
        try:
            self._wait_until_serving(workers)
        except BaseException:
            self.close()
            raise

    def _wait_until_serving(self, workers: int) -> None:
        wait_for(lambda: "serving" in self.stdout(), what="the listening line")
        self.address = re.search(r" on (\S+) with", self.stdout()).group(1)  # type: ignore[union-attr]
        expected = workers or len(os.sched_getaffinity(0))
        wait_for(lambda: len(self.started()) >= expected, what="the workers")
        wait_for(lambda: self.ask("pid") is not None, what="a first reply")

    def stdout(self) -> str:
        return self.out_path.read_text()

    def stderr(self) -> str:
        return self.err_path.read_text()

    def started(self) -> list[int]:
        return [int(pid) for pid in re.findall(r"worker (\d+) started", self.stderr())]

    def ask(self, text: str, timeout: float = 2.0) -> str | None:
        try:
            return do_request(self.address, text, timeout)
        except OSError:
            return None

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        for pid in self.started():  # a failed test must not leave workers behind either
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def supervise(tmp_path: Path) -> Iterator[Callable[..., Supervisor]]:
    started: list[Supervisor] = []

    def start(workers: int, *extra: str, **options: Any) -> Supervisor:
        sup = Supervisor(tmp_path, workers, *extra, **options)
        started.append(sup)
        return sup

    yield start
    for sup in started:
        sup.close()


def concurrently(n: int, fn: Callable[[int], object]) -> list[object]:
    """Run ``fn(i)`` for i in range(n) in n threads; their results."""
    results: list[object] = [None] * n

    def one(i: int) -> None:
        results[i] = fn(i)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return results


def test_workers_share_one_port_and_report_totals(supervise: Callable[..., Supervisor]) -> None:
    """Two workers answer on one port, both get requests, and the exit prints the summed counters."""
    sup = supervise(2)
    replies = concurrently(16, lambda i: [sup.ask("block 0.02") for _ in range(2)])
    pids = {int(reply) for pair in replies for reply in pair}  # type: ignore[attr-defined]
    assert len(pids) == 2 and pids <= set(sup.started())
    sup.signal(signal.SIGTERM)
    assert sup.proc.wait(10) == 0
    assert "stopped: 33 requests completed, 33 connections accepted, 0 errors" in sup.stdout()


def test_a_killed_worker_is_replaced_within_a_second(supervise: Callable[..., Supervisor]) -> None:
    """kill -9 of the only worker: the supervisor logs why, and a new worker answers within 1 s."""
    sup = supervise(1)
    old = int(sup.ask("pid") or 0)
    os.kill(old, signal.SIGKILL)
    killed = time.monotonic()
    wait_for(lambda: (sup.ask("pid", timeout=0.2) or str(old)) != str(old), seconds=1.0, what="a replacement")
    assert time.monotonic() - killed < 1.0
    assert f"worker {old} killed by SIGKILL" in sup.stderr()


def test_sigterm_finishes_requests_in_flight(supervise: Callable[..., Supervisor], tmp_path: Path) -> None:
    """SIGTERM with requests in flight: each gets its reply, and the exit is 0 within the grace."""
    sup = supervise(2, "--grace", "5")
    markers = [tmp_path / f"in-flight-{i}" for i in range(4)]
    replies: list[object] = []
    clients = threading.Thread(
        target=lambda: replies.extend(concurrently(4, lambda i: sup.ask(f"sleep 0.5 {markers[i]}", timeout=5)))
    )
    clients.start()
    wait_for(lambda: all(marker.exists() for marker in markers), what="four requests in flight")
    stopping = time.monotonic()
    sup.signal(signal.SIGTERM)
    assert sup.proc.wait(5) == 0
    clients.join(5)
    assert time.monotonic() - stopping < 5
    assert len(replies) == 4 and all(reply is not None and reply.isdigit() for reply in replies)  # type: ignore[attr-defined]
    assert sup.ask("pid", timeout=0.5) is None  # the port is closed


def test_sighup_under_steady_load_fails_no_request(supervise: Callable[..., Supervisor]) -> None:
    """A rolling restart while four clients loop: every request is answered, by old workers then new."""
    sup = supervise(2)
    old = set(sup.started())
    stop = threading.Event()
    answered: list[list[int]] = [[] for _ in range(4)]  # per client, in its order
    failed: list[str] = []

    def client(mine: list[int]) -> None:
        while not stop.is_set():
            reply = sup.ask("pid", timeout=5)
            if reply is None:
                failed.append("no reply")
            else:
                mine.append(int(reply))

    def total() -> int:
        return sum(len(replies) for replies in answered)

    clients = [threading.Thread(target=client, args=(mine,)) for mine in answered]
    for thread in clients:
        thread.start()
    try:
        wait_for(lambda: total() >= 50, what="steady load")
        sup.signal(signal.SIGHUP)
        wait_for(lambda: sup.stderr().count("exited after draining") >= 2, seconds=10, what="the old workers gone")
        new = set(sup.started()) - old
        assert len(new) == 2
        seen = [len(replies) for replies in answered]
        wait_for(lambda: total() >= sum(seen) + 50, what="load on the new workers")
    finally:
        stop.set()
        for thread in clients:
            thread.join(10)
    assert failed == []
    assert old & {pid for replies in answered for pid in replies}
    # Once the old workers are gone, each client may still append the one reply an
    # old worker sent it before exiting; every reply after that comes from a new worker.
    later = [pid for replies, count in zip(answered, seen, strict=True) for pid in replies[count + 1 :]]
    assert later and set(later) <= new
    sup.signal(signal.SIGTERM)
    assert sup.proc.wait(10) == 0


def test_supervisor_killed_leaves_no_worker_behind(supervise: Callable[..., Supervisor]) -> None:
    """SIGKILL to the supervisor: each worker sees its control pipe close and exits by itself."""
    sup = supervise(2)
    workers = sup.started()
    sup.proc.kill()
    sup.proc.wait(5)
    wait_for(lambda: all(gone(pid) for pid in workers), what="the workers gone")


def test_unix_path_served_by_one_worker_per_cpu(supervise: Callable[..., Supervisor], tmp_path: Path) -> None:
    """--workers 0 starts one worker per usable CPU; a Unix path is shared, and removed on exit."""
    path = tmp_path / "s.sock"
    sup = supervise(0, address=f"unix:{path}")
    assert len(sup.started()) == len(os.sched_getaffinity(0))
    assert (sup.ask("pid") or "").isdigit()
    sup.signal(signal.SIGINT)
    assert sup.proc.wait(10) == 0
    assert not path.exists()


def test_reuse_port_workers_each_bind_the_port(supervise: Callable[..., Supervisor]) -> None:
    """--reuse-port: each worker binds the port itself (SO_REUSEPORT), both answer, SIGTERM exits 0."""
    sup = supervise(2, "--reuse-port")
    replies = concurrently(16, lambda i: [sup.ask("block 0.02") for _ in range(2)])
    pids = {int(reply) for pair in replies for reply in pair}  # type: ignore[attr-defined]
    assert pids <= set(sup.started()) and len(pids) >= 1
    sup.signal(signal.SIGTERM)
    assert sup.proc.wait(10) == 0


def connect_refused(address: str) -> bool:
    """True if a connection to ``address`` is refused; a connection the kernel accepts is closed again."""
    host, port = address.rsplit(":", 1)
    try:
        probe = socket.create_connection((host, int(port)), timeout=1)  # socket-ok: a raw late client
    except ConnectionRefusedError:
        return True
    probe.close()
    return False


def test_sigterm_refuses_late_clients_at_once_while_requests_in_flight_finish(
    supervise: Callable[..., Supervisor], tmp_path: Path
) -> None:
    """After SIGTERM every process closes its listening socket: a late client is refused, a slow request completes."""
    sup = supervise(2, "--grace", "10")
    marker = tmp_path / "in-flight"
    replies: list[str | None] = []
    client = threading.Thread(target=lambda: replies.append(sup.ask(f"sleep 2 {marker}", timeout=10)))
    client.start()
    try:
        wait_for(marker.exists, what="the request in flight")
        sup.signal(signal.SIGTERM)
        signalled = time.monotonic()
        wait_for(lambda: connect_refused(sup.address), seconds=1.0, what="late clients refused")
        refused_after = time.monotonic() - signalled
        assert not replies and sup.proc.poll() is None  # the slow request is still being served
    finally:
        client.join(10)
    assert replies and (replies[0] or "").isdigit()
    assert sup.proc.wait(10) == 0
    assert refused_after < 1.0


def test_a_second_sigterm_kills_the_draining_workers(supervise: Callable[..., Supervisor], tmp_path: Path) -> None:
    """A second SIGTERM during the drain kills the workers and exits at once, with 143 and a line saying so."""
    sup = supervise(1, "--grace", "30")
    marker = tmp_path / "in-flight"
    client = threading.Thread(target=lambda: sup.ask(f"sleep 20 {marker}", timeout=30))
    client.start()
    try:
        wait_for(marker.exists, what="the request in flight")
        sup.signal(signal.SIGTERM)
        wait_for(lambda: "draining 1 workers" in sup.stderr(), what="the drain")
        sup.signal(signal.SIGTERM)
        assert sup.proc.wait(5) == 143
    finally:
        client.join(10)
    assert "second SIGTERM during the drain: killing the workers and exiting at once" in sup.stderr()
    assert all(gone(pid) for pid in sup.started())


def test_workers_that_cannot_boot_close_the_port_and_exit_3(tmp_path: Path) -> None:
    """A handler whose construction raises: after a few failed boots the port is closed and serve exits 3."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    err_path = tmp_path / "stderr"
    with open(err_path, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "reactor", "serve", "--workers", "2", "--handler", "worker_handlers:Unbootable",
             "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=err, env=env, text=True,
        )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        address = line.split(" on ", 1)[-1].split()[0]
        assert line.startswith("serving Unbootable on ") and line.endswith(" with 2 workers\n"), line
        status = proc.wait(20)
    finally:
        end_process(proc, signal.SIGKILL)
    stderr = err_path.read_text()
    assert status == 3, stderr
    assert stderr.count("Traceback") == 1 and stderr.count("failed to boot") == 1, stderr  # the cause, once
    assert "no worker could boot, giving up: RuntimeError: no database here" in stderr
    assert connect_refused(address)
    started = [int(pid) for pid in re.findall(r"worker (\d+) started", stderr)]
    assert len(started) >= 5 and all(gone(pid) for pid in started)


DEPLOYED = """\
from reactor import RequestServer

class Deployed(RequestServer):
    def handle_request(self, request):
        return {reply!r}
"""


def test_sighup_runs_the_handler_code_as_it_is_on_disk(supervise: Callable[..., Supervisor], tmp_path: Path) -> None:
    """Each new worker imports the handler: after editing its file, the next SIGHUP serves the new code."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "deployed.py").write_text(DEPLOYED.format(reply="v1"))
    sup = supervise(1, handler="deployed:Deployed", cwd=app)
    assert sup.ask("x") == "v1"
    sup.signal(signal.SIGHUP)  # a restart with nothing changed: still v1
    wait_for(lambda: sup.stderr().count("exited after draining") >= 1, seconds=10, what="the first restart")
    assert sup.ask("x") == "v1" and len(sup.started()) == 2
    (app / "deployed.py").write_text(DEPLOYED.format(reply="version 2"))  # another size: no stale .pyc
    sup.signal(signal.SIGHUP)
    wait_for(lambda: sup.stderr().count("exited after draining") >= 2, seconds=10, what="the second restart")
    assert sup.ask("x") == "version 2"
    sup.signal(signal.SIGTERM)
    assert sup.proc.wait(10) == 0
