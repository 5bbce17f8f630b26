"""``python -m reactor.bench``: the same as ``python -m reactor bench``."""

from __future__ import annotations

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
