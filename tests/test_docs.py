"""Every Python example of the documentation runs, on its own, and finishes.

Each fenced ``python``/``py`` block of ``docs/*.md`` and ``README.md`` is run
in a fresh interpreter (``-X dev -W error``) with a time limit.  A block that
cannot run on its own -- a fragment, a server that runs until it is stopped,
one that needs another program or a public address -- says so on the line
before its fence, where a reader of the rendered page does not see it::

    <!-- no-run: serves until stopped -->
    ```python

`NO_RUN` counts those blocks per page, so that they cannot silently grow: a
new one is a decision, made here.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import tokenize
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
FENCE = re.compile(r"^(`{3,}|~{3,})\s*([^`\s]*)")
NO_RUN = re.compile(r"^<!--\s*no-run:\s*(?P<reason>\S.*?)\s*-->$")
PYTHON = {"python", "py", "python3"}

#: How many Python blocks of each page are marked ``no-run``.
NO_RUN_BLOCKS = {
    "asyncore.md": 2,
    "deploy.md": 1,
    "easy.md": 1,
    "reqrep.md": 2,
    "socketserver.md": 4,
    "streams.md": 1,
    "tasks.md": 1,
    "workers.md": 1,
}

#: A host of this machine followed by a port: ``"localhost:8000"``, ``("127.0.0.1", 8000)``.
LOOPBACK_PORT = re.compile(r"""(localhost|127\.0\.0\.1|\[::1\])["']?\s*[:,]\s*(\d+)""")


@dataclass(frozen=True)
class Block:
    """One fenced Python block of a page."""

    page: str
    line: int
    code: str
    no_run: str | None

    def __str__(self) -> str:
        return f"{self.page}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The Python blocks of the Markdown page *path*, with their ``no-run`` reason if any."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        fence, info = opening.groups()
        end = index + 1
        while end < len(lines) and not lines[end].startswith(fence):
            end += 1
        if info in PYTHON:
            marker = NO_RUN.match(lines[index - 1].strip()) if index else None
            code = "\n".join(lines[index + 1 : end]) + "\n"
            found.append(Block(path.name, index + 1, code, marker["reason"] if marker else None))
        index = end + 1
    return found


ALL_BLOCKS = [block for page in PAGES for block in blocks(page)]
RUNNABLE = [block for block in ALL_BLOCKS if block.no_run is None]


def test_pages_have_python_examples() -> None:
    """The collector finds the examples (a broken parser must not make the suite vacuous)."""
    assert len(RUNNABLE) >= 15
    assert {block.page for block in RUNNABLE} >= {"streams.md", "design.md", "core.md", "README.md"}


def test_no_run_blocks_are_counted() -> None:
    """Each page has exactly the number of ``no-run`` blocks recorded in `NO_RUN_BLOCKS`."""
    counted: dict[str, int] = {}
    for block in ALL_BLOCKS:
        if block.no_run is not None:
            counted[block.page] = counted.get(block.page, 0) + 1
    assert counted == NO_RUN_BLOCKS


def test_no_run_markers_precede_python_blocks() -> None:
    """Every ``no-run`` comment stands right before a Python block (none is left behind)."""
    for page in PAGES:
        lines = page.read_text(encoding="utf-8").splitlines()
        for number, text in enumerate(lines, start=1):
            if "no-run" not in text:
                continue
            assert NO_RUN.match(text.strip()), f"{page.name}:{number}: malformed marker {text!r}"
            following = FENCE.match(lines[number]) if number < len(lines) else None
            assert following and following.group(2) in PYTHON, f"{page.name}:{number}: marker before no Python block"


@pytest.mark.parametrize("block", RUNNABLE, ids=str)
def test_example_uses_loopback_port_zero(block: Block) -> None:
    """A runnable example listens and connects only on loopback, on a port the OS picks."""
    tokens = tokenize.generate_tokens(io.StringIO(block.code).readline)
    code = " ".join(token.string for token in tokens if token.type != tokenize.COMMENT)
    assert "0.0.0.0" not in code, f"{block} binds every interface"
    for host, port in LOOPBACK_PORT.findall(code):
        assert port == "0", f"{block} uses a fixed port {host}:{port}; use port 0"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("block", RUNNABLE, ids=str)
def test_example_runs(block: Block, tmp_path: Path) -> None:
    """The example exits 0 within its time, with no warning turned error."""
    try:
        result = subprocess.run(
            [sys.executable, "-X", "dev", "-W", "error", "-c", block.code],
            capture_output=True,
            text=True,
            timeout=20,
            cwd=tmp_path,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{block} did not finish") from exc
    assert result.returncode == 0, f"{block} failed:\n{result.stderr}"
