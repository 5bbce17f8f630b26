"""The timers workload: 1,000,000 timers scheduled and cancelled, reactor vs asyncio.

Time is measured without tracing; peak memory in a second pass under
`tracemalloc` (the measurement of `benchmarks.core`).  The two loops
alternate, ``--repeat`` times, and the best time of each is kept (the
fastest run is the one the machine disturbed least).  Prints one JSON
object on stdout.  Run: ``python -m benchmarks.timers [--timers N]``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from .core import _cancel_asyncio, _cancel_reactor

__all__ = ["run_timers", "main"]


def _time_reactor(n: int) -> float:
    return n / _cancel_reactor(n, traced=False)[0]


def _time_asyncio(n: int) -> float:
    return n / _cancel_asyncio(n, traced=False)[0]


def run_timers(n: int = 1_000_000, repeat: int = 3) -> dict[str, Any]:
    """Seconds and peak traced bytes to schedule and cancel ``n`` timers, on each loop."""
    seconds: dict[str, list[float]] = {"reactor": [], "asyncio": []}
    for _ in range(repeat):
        seconds["reactor"].append(_time_reactor(n))
        seconds["asyncio"].append(_time_asyncio(n))
    peak = {"reactor": _cancel_reactor(n)[1], "asyncio": _cancel_asyncio(n)[1]}
    return {
        "timers": n,
        "seconds": {loop: min(values) for loop, values in seconds.items()},
        "peak_bytes": peak,
    }


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: print the result as JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.timers", description=__doc__.splitlines()[0])
    parser.add_argument("--timers", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    print(json.dumps(run_timers(args.timers, args.repeat)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
