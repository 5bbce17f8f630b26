"""Micro-benchmark of the reactor core against a bare asyncio loop, in one run.

Prints, for both loops: callbacks per second through ``call_soon``; timers
scheduled and fired per second; schedule+cancel per second for 1,000,000
timers with the peak memory that took (tracemalloc).  Ratios are
reactor / asyncio (higher is better for rates, lower for memory).

Run: ``python -m benchmarks core`` (or ``python -m benchmarks.core``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
import tracemalloc
from collections.abc import Callable

from reactor.core import Reactor

__all__ = ["main", "run_core_bench"]


def _schedule_all(schedule: Callable[..., object], now: float, n: int, timers: bool, cb: Callable[[], None]) -> None:
    if timers:
        for i in range(n):
            schedule(now + (i % 1000) * 1e-6, cb)
    else:
        for _ in range(n):
            schedule(cb)


def _rate_reactor(n: int, timers: bool) -> float:
    """Callbacks (or timers) per second through this reactor, scheduling included."""
    with Reactor() as r:
        count = 0

        def cb() -> None:
            nonlocal count
            count += 1

        t0 = time.perf_counter()
        _schedule_all(r.call_at if timers else r.call_soon, r.time(), n, timers, cb)
        while count < n:
            r.run_once(0)
        return n / (time.perf_counter() - t0)


def _rate_asyncio(n: int, timers: bool) -> float:
    """The same through a bare asyncio loop."""
    loop = asyncio.new_event_loop()
    try:
        count = 0
        done = loop.create_future()

        def cb() -> None:
            nonlocal count
            count += 1
            if count == n:
                done.set_result(None)

        t0 = time.perf_counter()
        _schedule_all(loop.call_at if timers else loop.call_soon, loop.time(), n, timers, cb)
        loop.run_until_complete(done)
        return n / (time.perf_counter() - t0)
    finally:
        loop.close()


def _cancel(schedule: Callable[[float, Callable[[], None]], object], n: int, traced: bool) -> tuple[float, int]:
    """Schedule and cancel ``n`` timers; return (per second, peak traced bytes or 0 when not traced)."""

    def cb() -> None:
        pass

    gc.collect()
    if traced:
        tracemalloc.start()
    t0 = time.perf_counter()
    for i in range(n):
        schedule(10.0 + i * 1e-6, cb).cancel()  # type: ignore[attr-defined]
    elapsed = time.perf_counter() - t0
    peak = 0
    if traced:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return n / elapsed, peak


def _cancel_reactor(n: int, traced: bool = True) -> tuple[float, int]:
    with Reactor() as r:
        return _cancel(r.call_later, n, traced)


def _cancel_asyncio(n: int, traced: bool = True) -> tuple[float, int]:
    loop = asyncio.new_event_loop()
    try:
        return _cancel(loop.call_later, n, traced)
    finally:
        loop.close()


def run_core_bench(
    n_callbacks: int = 1_000_000, n_timers: int = 200_000, n_cancel: int = 1_000_000, repeat: int = 3
) -> list[tuple[str, float, float, str]]:
    """Run each measurement ``repeat`` times alternating loops; return rows (name, reactor, asyncio, unit)."""

    rows: list[tuple[str, float, float, str]] = []
    cb_r, cb_a = [], []
    tm_r, tm_a = [], []
    for _ in range(repeat):  # alternate A B A B so drift hits both
        cb_r.append(_rate_reactor(n_callbacks, timers=False))
        cb_a.append(_rate_asyncio(n_callbacks, timers=False))
        tm_r.append(_rate_reactor(n_timers, timers=True))
        tm_a.append(_rate_asyncio(n_timers, timers=True))
    rows.append(("call_soon callbacks/s", max(cb_r), max(cb_a), "/s"))
    rows.append(("timers scheduled+fired/s", max(tm_r), max(tm_a), "/s"))
    cr = _cancel_reactor(n_cancel)
    ca = _cancel_asyncio(n_cancel)
    rows.append((f"schedule+cancel/s ({n_cancel:,} timers)", cr[0], ca[0], "/s"))
    rows.append(("  peak memory (bytes)", float(cr[1]), float(ca[1]), "B"))
    return rows


def format_table(rows: list[tuple[str, float, float, str]]) -> str:
    """A Markdown table of the rows with the reactor/asyncio ratio."""
    lines = ["| measurement | reactor | asyncio | ratio |", "|---|---:|---:|---:|"]
    for name, mine, theirs, _unit in rows:
        lines.append(f"| {name} | {mine:,.0f} | {theirs:,.0f} | {mine / theirs:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks core", description=__doc__.splitlines()[0])
    parser.add_argument("--callbacks", type=int, default=1_000_000)
    parser.add_argument("--timers", type=int, default=200_000)
    parser.add_argument("--cancel", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a tenth of the work, one repetition")
    args = parser.parse_args(argv)
    if args.quick:
        args.callbacks //= 10
        args.timers //= 10
        args.cancel //= 10
        args.repeat = 1
    rows = run_core_bench(args.callbacks, args.timers, args.cancel, args.repeat)
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
