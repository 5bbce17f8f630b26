"""Micro-benchmark of one wait: ``epoll_wait`` against ``poll``, per ready descriptor.

The reactor's default wait on Linux uses ``poll(2)`` when most of its
registered descriptors were ready in recent waits, and ``epoll_wait(2)``
otherwise (``reactor._wait``, ``PollSwitch``).  This
measures why: for a few shapes (ready descriptors, idle descriptors beside
them), the time of one wait that returns every ready one, divided by the
number of ready ones, through each system call, with persistent
registrations in both (the reactor's kind of ``poll``, not asyncore's, which
rebuilds its set every turn).  The sockets are socket pairs in this process,
the ready ones made readable once and never drained.

Run: ``python -m benchmarks wait`` (or ``python -m benchmarks.wait``).
"""

from __future__ import annotations

import argparse
import resource
import select
import socket
import time
from collections.abc import Callable
from typing import Any

__all__ = ["main", "run_wait_bench", "SHAPES"]

#: (ready descriptors, idle descriptors registered beside them).
SHAPES = ((64, 0), (64, 64), (64, 192), (64, 936), (1000, 0))


def _per_ready_fd(wait: Callable[..., object], args: tuple[Any, ...], ready: int, rounds: int) -> float:
    """Nanoseconds per ready descriptor of ``wait(*args)``, the best of three batches of ``rounds`` waits."""
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(rounds):
            wait(*args)
        best = min(best, (time.perf_counter() - t0) / rounds / ready * 1e9)
    return best


def run_wait_bench(
    shapes: tuple[tuple[int, int], ...] = SHAPES, rounds: int = 2000
) -> list[tuple[int, int, float, float]]:
    """Rows (ready, idle, epoll ns per ready fd, poll ns per ready fd), one per shape."""
    if not hasattr(select, "epoll") or not hasattr(select, "poll"):
        raise SystemExit("this measurement needs select.epoll and select.poll (Linux)")
    need = 2 * max(ready + idle for ready, idle in shapes) + 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            raise SystemExit(f"needs {need} file descriptors; RLIMIT_NOFILE allows {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    rows = []
    for ready, idle in shapes:
        pairs = [socket.socketpair() for _ in range(ready + idle)]
        ep = select.epoll()
        po = select.poll()
        try:
            for _, b in pairs[:ready]:
                b.send(b"x")
            for a, _ in pairs:
                ep.register(a.fileno(), select.EPOLLIN)
                po.register(a.fileno(), select.POLLIN)
            total = ready + idle
            if len(ep.poll(0, total)) != ready or len(po.poll(0)) != ready:
                raise RuntimeError("the ready descriptors are not what the shape says")
            epoll_ns = _per_ready_fd(ep.poll, (0, total), ready, rounds)
            poll_ns = _per_ready_fd(po.poll, (0,), ready, rounds)
            rows.append((ready, idle, epoll_ns, poll_ns))
        finally:
            ep.close()
            for a, b in pairs:
                a.close()
                b.close()
    return rows


def format_table(rows: list[tuple[int, int, float, float]]) -> str:
    """A Markdown table of the rows, with poll's cost over epoll's (below 1: poll is cheaper)."""
    lines = [
        "| ready fds | idle fds | epoll_wait ns per ready fd | poll ns per ready fd | poll / epoll |",
        "|---:|---:|---:|---:|---:|",
    ]
    for ready, idle, ep, po in rows:
        lines.append(f"| {ready:,} | {idle:,} | {ep:,.0f} | {po:,.0f} | {po / ep:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks wait", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000, help="waits per batch (default 2000; best of 3 batches)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    print(format_table(run_wait_bench(rounds=args.rounds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
