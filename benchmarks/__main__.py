"""``python -m benchmarks``, from the root of a checkout (see `benchmarks`)."""

from __future__ import annotations

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
