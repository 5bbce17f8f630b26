"""Benchmarks: ``python -m reactor bench`` compares this reactor with asyncio,
uvloop and the stdlib socketserver (`reactor.bench.runner`); ``bench --soak
SECONDS`` is a leak check under steady load (`reactor.bench.soak`); ``bench
core`` runs the core micro-benchmark (`reactor.bench.core`).

The package imports nothing heavy at import time, so the server and
generator processes it starts (``python -m reactor.bench.servers``,
``python -m reactor.bench.loadgen``) load only what they use.
"""

from __future__ import annotations

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; ``argv`` as for ``python -m reactor bench`` (without ``bench``)."""
    from .runner import main as run_main

    return run_main(argv)
