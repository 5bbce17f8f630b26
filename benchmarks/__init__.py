"""The benchmarks of `reactor`: a development tool, run from a checkout.

They are not part of the installed package (the wheel does not ship this
directory; the source distribution does, with its tests).  From the root of
a checkout:

``python -m benchmarks [options]``
    This reactor against asyncio, uvloop and the stdlib socketserver
    (`benchmarks.runner`); ``--soak SECONDS`` is a leak check under steady
    load instead (`benchmarks.soak`).
``python -m benchmarks core [...]`` / ``python -m benchmarks wait [...]``
    The core and the wait micro-benchmarks (`benchmarks.core`,
    `benchmarks.wait`).

The load tools need the ``bench`` extra (``pip install -e '.[bench]'``).

The package imports nothing heavy at import time, so the server and
generator processes it starts (``python -m benchmarks.servers``,
``python -m benchmarks.loadgen``) load only what they use.  Those processes
find this package and the checkout's `reactor` through `child_environment`,
whatever the current directory is.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["REPOSITORY", "child_environment", "main"]

#: The checkout this package lives in: its root holds ``benchmarks/`` and ``reactor/``.
REPOSITORY = Path(__file__).resolve().parent.parent


def child_environment() -> dict[str, str]:
    """This process's environment, with the checkout first on ``PYTHONPATH``, for ``python -m benchmarks.X``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPOSITORY), env.get("PYTHONPATH", "")) if p)
    return env


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; ``argv`` as for ``python -m benchmarks``."""
    from .runner import main as run_main

    return run_main(argv)
