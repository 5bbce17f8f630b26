"""The benchmark's processes: servers in child processes, CPU pinning, and what /proc says about them.

`benchmarks.runner` (the comparison) and `benchmarks.soak` (the leak check)
both start servers and read their CPU, memory and descriptors; both import
these from here, so neither imports the other at import time.
"""

from __future__ import annotations

import os
import platform
import resource
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from typing import IO, Any

from . import child_environment

__all__ = [
    "SRC_IPS",
    "ServerProcess",
    "WorkersProcess",
    "children_cpu_seconds",
    "cpu_plan",
    "cpus_busy_seconds",
    "machine_description",
    "markdown_table",
    "open_fd_count",
    "pin",
    "process_cpu_seconds",
    "process_rss_bytes",
    "process_tree_cpu_seconds",
    "read_line",
    "worker_scaling",
]

#: The generator's source addresses: 64 loopback IPs from 127.0.0.2, so a run does not run out of ports.
SRC_IPS = ("--src-ips", "64", "--src-ip-first", "2")
_CLK_TCK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------ /proc readers


def process_cpu_seconds(pid: int) -> float:
    """utime+stime of process ``pid`` (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        text = f.read()
    fields = text[text.rindex(b")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def process_rss_bytes(pid: int) -> int:
    """Resident set size of process ``pid`` (VmRSS), in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpus_busy_seconds(cpus: set[int] | None) -> float:
    """CPU seconds the given CPUs (all when None) spent busy, from ``/proc/stat``.

    user + nice + system + steal: time a benchmark process could have had.
    Interrupt time is left out (our own packets are most of it).
    """
    total = 0
    with open("/proc/stat") as f:
        for line in f:
            if not line.startswith("cpu") or line.startswith("cpu "):
                continue
            name, *values = line.split()
            if cpus is not None and int(name[3:]) not in cpus:
                continue
            user, nice, system = (int(v) for v in values[:3])
            steal = int(values[7]) if len(values) > 7 else 0
            total += user + nice + system + steal
    return total / _CLK_TCK


def children_cpu_seconds() -> float:
    """utime+stime of the waited-for children of this process (and theirs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_tree_cpu_seconds(pid: int) -> float:
    """utime+stime of process ``pid`` and its live descendants (a supervisor and its workers)."""
    total = process_cpu_seconds(pid)
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = [int(child) for child in f.read().split()]
    except FileNotFoundError:
        return total
    for child in children:
        try:
            total += process_tree_cpu_seconds(child)
        except FileNotFoundError:
            pass  # exited meanwhile
    return total


def worker_scaling() -> tuple[int, int]:
    """The worker counts the workers workload compares: 1 and one per usable CPU (at least 2)."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return 1, max(2, usable)


def open_fd_count(pid: int) -> int:
    """How many file descriptors process ``pid`` has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def machine_description() -> dict[str, Any]:
    """nproc, CPU model, Python, kernel: what the numbers were measured on."""
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": model,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "kernel": f"{platform.system()} {platform.release()}",
    }


def cpu_plan() -> tuple[set[int] | None, set[int] | None]:
    """(server CPUs, generator CPUs): one CPU for the server, the rest for the generator."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return {cpus[0]}, set(cpus[1:])


def pin(pid: int, cpus: set[int] | None) -> None:
    """Keep process ``pid`` on ``cpus`` (all CPUs when None); best effort."""
    if cpus is not None:
        try:
            os.sched_setaffinity(pid, cpus)
        except OSError:
            pass


# ------------------------------------------------------------ processes


def read_line(stream: IO[str], seconds: float) -> str:
    """One line from a child's pipe, or '' after ``seconds`` or at EOF."""
    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        if not sel.select(seconds):
            return ""
    return stream.readline()


class ServerProcess:
    """A benchmark server in a child process, pinned; a context manager."""

    def __init__(self, kind: str, cpus: set[int] | None, extra: Iterable[str] = ()) -> None:
        self.kind = kind
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.servers", kind, *extra],
            stdout=subprocess.PIPE, stderr=self._stderr, stdin=subprocess.DEVNULL, text=True,
            env=child_environment(),
        )
        pin(self.proc.pid, cpus)
        assert self.proc.stdout is not None
        line = read_line(self.proc.stdout, 30.0)
        if not line.startswith("port="):
            self.close()
            raise RuntimeError(f"server {kind} did not start: {self.errors() or line or 'no output'}")
        self.port = int(line.split()[0].split("=")[1])
        self.pid = self.proc.pid

    def errors(self) -> str:
        """What the server wrote on stderr (its last lines)."""
        self._stderr.seek(0)
        return "".join(self._stderr.readlines()[-5:]).strip()

    def cpu(self) -> float:
        """CPU seconds used so far."""
        return process_cpu_seconds(self.pid)

    def rss(self) -> int:
        """Resident bytes now."""
        return process_rss_bytes(self.pid)

    def close(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class WorkersProcess(ServerProcess):
    """``python -m reactor serve --workers N`` on 127.0.0.1, unpinned; its CPU is the whole process tree's."""

    def __init__(self, workers: int) -> None:
        self.kind = f"workers-{workers}"
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "reactor", "serve", "--workers", str(workers), "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=self._stderr, stdin=subprocess.DEVNULL, text=True,
            env=child_environment(),
        )
        self.pid = self.proc.pid
        assert self.proc.stdout is not None
        line = read_line(self.proc.stdout, 30.0)
        if " on 127.0.0.1:" not in line:
            self.close()
            raise RuntimeError(f"{self.kind} did not start: {self.errors() or line or 'no output'}")
        self.port = int(line.split(" on 127.0.0.1:")[1].split()[0])
        deadline = time.monotonic() + 30.0
        while self._ready() < workers:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError(f"{self.kind}: the workers did not start: {self.errors()}")
            time.sleep(0.01)

    def _ready(self) -> int:
        self._stderr.seek(0)
        return self._stderr.read().count(" started (generation")

    def cpu(self) -> float:
        """CPU seconds used so far by the supervisor and its workers."""
        return process_tree_cpu_seconds(self.pid)


def markdown_table(header: list[str], align: str, rows: Iterable[list[str]]) -> list[str]:
    """A Markdown table, then a blank line; ``align`` has one letter per column, ``l`` or ``r``."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines.append("")
    return lines
