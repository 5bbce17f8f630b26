"""``serve --control/--metrics`` and ``top`` from the command line: real processes, a real terminal (tmux)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reactor.client import do_request

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="serve --workers needs os.fork"),
    pytest.mark.timeout(60),
]

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(ROOT), os.environ.get("PYTHONPATH", "")]))


def wait_for(predicate: Callable[[], object], seconds: float = 10.0, what: str = "condition") -> None:
    """Poll ``predicate`` until it holds; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {seconds} s")
        time.sleep(0.02)  # sleep-ok: polling other processes (a server, a terminal), bounded


class Serving:
    """``python -m reactor serve ... --control PATH --metrics 127.0.0.1:0`` in a subprocess."""

    def __init__(self, tmp: Path, *extra: str) -> None:
        self.control = str(tmp / "c.sock")
        self.out_path, self.err_path = tmp / "stdout", tmp / "stderr"
        command = [sys.executable, "-m", "reactor", "serve", "127.0.0.1:0", "--handler", "worker_handlers:PidServer"]
        command += ["--control", self.control, "--metrics", "127.0.0.1:0", *extra]
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(command, stdout=out, stderr=err, env=ENV, cwd=tmp)
        wait_for(lambda: "serving" in self.stdout() and "metrics on" in self.stdout() or self.proc.poll() is not None)
        assert self.proc.poll() is None, self.err_path.read_text()
        self.address = re.search(r"serving \S+ on (\S+)", self.stdout()).group(1)  # type: ignore[union-attr]
        self.metrics = re.search(r"metrics on (\S+)", self.stdout()).group(1)  # type: ignore[union-attr]
        wait_for(lambda: self.ask("pid") is not None, what="a first reply")

    def stdout(self) -> str:
        return self.out_path.read_text()

    def ask(self, text: str) -> str | None:
        try:
            return do_request(self.address, text, 5)
        except OSError:
            return None

    def top(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "reactor", "top", self.control, *args]
        return subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=20)

    def close(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise


@pytest.fixture
def serving() -> Iterator[Callable[..., Serving]]:
    """Start servers in a short temporary directory; stop them after the test."""
    started: list[Serving] = []
    with tempfile.TemporaryDirectory(prefix="rt-") as name:

        def start(*extra: str) -> Serving:
            server = Serving(Path(name), *extra)
            started.append(server)
            return server

        yield start
        for server in started:
            if server.proc.poll() is None:
                server.proc.kill()
                server.proc.wait(5)


def metric(text: str, name: str, **labels: str) -> float:
    """One sample of the /metrics text, parsed by prometheus_client's parser."""
    parser = pytest.importorskip("prometheus_client.parser")
    values = [
        s.value
        for family in parser.text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(values) == 1, (name, labels, values)
    return float(values[0])


def test_two_workers_are_both_visible_with_distinct_pids_and_summed_totals(
    serving: Callable[..., Serving],
) -> None:
    """With --workers 2, top --once --json shows both workers, rows and counters summed; so does /metrics."""
    server = serving("--workers", "2")
    replies: list[str | None] = []
    lock = threading.Lock()

    def client() -> None:
        for _ in range(2):
            reply = server.ask("block 0.02")
            with lock:
                replies.append(reply)

    threads = [threading.Thread(target=client) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    pids = {int(reply) for reply in replies if reply is not None}
    assert len(replies) == 32 and len(pids) == 2, replies
    made = 33  # with the first "pid" request
    done = server.top("--once", "--json")
    assert done.returncode == 0, done.stderr
    snap: dict[str, Any] = json.loads(done.stdout)
    assert {worker["pid"] for worker in snap["workers"]} == pids
    assert snap["reactor"]["workers"] == 2 and snap["reactor"]["pid"] not in pids
    (entry,) = snap["servers"]
    assert entry["address"] == server.address and sorted(entry["pids"]) == sorted(pids)
    assert entry["completed"] == entry["accepted"] == made
    assert sum(worker["completed"] for worker in snap["workers"]) == made
    assert all(worker["completed"] > 0 for worker in snap["workers"])
    with urllib.request.urlopen(server.metrics, timeout=5) as response:
        text = response.read().decode()
    assert metric(text, "reactor_requests_completed_total", server=server.address) == made
    assert metric(text, "reactor_request_duration_seconds_count", server=server.address) == made
    assert metric(text, "reactor_workers") == 2
    for pid in pids:
        assert metric(text, "reactor_worker_requests_completed_total", worker=str(pid)) > 0
    assert server.close() == 0
    assert f"stopped: {made} requests completed" in server.stdout()
    assert not os.path.exists(server.control)


def test_a_worker_killed_is_dropped_and_its_successor_shows(serving: Callable[..., Serving]) -> None:
    """After kill -9 of a worker, the merged view lists the survivor and the replacement, and no stale socket."""
    server = serving("--workers", "2")

    def pids() -> set[int]:
        done = server.top("--once", "--json")
        assert done.returncode == 0, done.stderr
        return {worker["pid"] for worker in json.loads(done.stdout)["workers"]}

    wait_for(lambda: len(pids()) == 2, what="both workers answering")
    before = pids()
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: len(pids()) == 2 and victim not in pids(), what="the replacement answering")
    after = pids()
    assert len(after & before) == 1 and victim not in after
    sockets = os.listdir(next(Path(tempfile.gettempdir()).glob(f"reactor-control-*/{max(after)}.sock")).parent)
    # Each live worker's socket and the lock file beside it; nothing of the victim's.
    assert sorted(sockets) == sorted(f"{pid}.sock{lock}" for pid in after for lock in ("", ".lock"))
    assert server.close() == 0


def test_top_once_prints_the_table_and_top_of_nothing_fails(serving: Callable[..., Serving]) -> None:
    """top --once prints the header, the server line and the rows; a socket nobody serves exits 1."""
    server = serving()
    assert server.ask("again") is not None
    done = server.top("--once")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"reactor top {server.control}  pid {server.proc.pid}")
    (line,) = [line for line in lines if line.startswith(server.address)]
    assert line.split()[1:] == ["2", "2", "0", "0", "0", "0"]
    assert "0 rows, by age" in lines
    assert server.close() == 0
    gone = server.top("--once")
    assert gone.returncode == 1 and "reactor top: cannot read the control socket" in gone.stderr
    usage = server.top("--json")
    assert usage.returncode == 2 and "--json needs --once" in usage.stderr


def tmux(socket_path: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a tmux command on a private server (its own socket)."""
    tmux_path = shutil.which("tmux")
    assert tmux_path is not None
    return subprocess.run([tmux_path, "-S", socket_path, *args], capture_output=True, text=True, timeout=10)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (.ci/run installs it)")
def test_live_view_in_a_real_terminal_refreshes_and_quits_with_q(serving: Callable[..., Serving]) -> None:
    """Under tmux: the full-screen view shows the server and the idle clients' rows, refreshes, and q quits."""
    server = serving()
    host, port = server.address.rsplit(":", 1)
    import socket

    idle = [socket.create_connection((host, int(port))) for _ in range(3)]  # socket-ok: idle clients to show
    tmux_socket = str(Path(server.control).parent / "tmux.sock")
    command = [sys.executable, "-m", "reactor", "top", server.control, "--interval", "0.2"]
    env = [f"PYTHONPATH={ENV['PYTHONPATH']}", "TERM=xterm-256color"]
    try:
        started = tmux(tmux_socket, "new-session", "-d", "-s", "top", "-x", "120", "-y", "30", "env", *env, *command)
        assert started.returncode == 0, started.stderr

        def screen() -> str:
            return tmux(tmux_socket, "capture-pane", "-p", "-t", "top").stdout

        wait_for(lambda: "3 rows, by age" in screen(), what="the live view with 3 rows")
        text = screen()
        assert "SERVER" in text and server.address in text and "q quit" in text
        rows = [line.split() for line in text.splitlines() if line.split()[:1] == [str(server.proc.pid)]]
        assert [row[2] for row in rows] == ["OPEN"] * 3
        assert "connections 3: OPEN 3" in text
        tmux(tmux_socket, "send-keys", "-t", "top", "s")
        wait_for(lambda: "3 rows, by bytes" in screen(), what="the sort key switched")
        tmux(tmux_socket, "send-keys", "-t", "top", "f", "READ_CLOSED", "Enter")
        wait_for(lambda: "0 rows, by bytes  filter 'READ_CLOSED'" in screen(), what="the filter")
        tmux(tmux_socket, "send-keys", "-t", "top", "q")
        wait_for(lambda: tmux(tmux_socket, "has-session", "-t", "top").returncode != 0, what="top quitting on q")
    finally:
        tmux(tmux_socket, "kill-server")
        for client in idle:
            client.close()
    assert server.close() == 0
