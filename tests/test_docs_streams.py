"""Every Python example of the stream protocols page runs, on its own, and finishes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["streams.md", "design.md"]


def snippets() -> list[tuple[str, int, str]]:
    """(page, index, code) for each ```python block of the pages."""
    found = []
    for page in PAGES:
        text = (ROOT / "docs" / page).read_text()
        for i, code in enumerate(re.findall(r"```python\n(.*?)```", text, re.S)):
            found.append((page, i, code))
    return found


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("page", "index", "code"), snippets(), ids=lambda v: str(v)[:20])
def test_doc_example_runs(page: str, index: int, code: str) -> None:
    """The example exits 0 within its time, with no warning turned error."""
    try:
        result = subprocess.run(
            [sys.executable, "-X", "dev", "-W", "error", "-c", code],
            capture_output=True,
            text=True,
            timeout=20,
            cwd=ROOT,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{page} example {index} did not finish") from exc
    assert result.returncode == 0, f"{page} example {index} failed:\n{result.stderr}"
