"""``mypy --strict`` passes on the package, on every example and on the README's Python code.

Each target is its own case, so a failure names the file.  mypy runs as a
subprocess from the checkout's root, so the ``[tool.mypy]`` section of
pyproject.toml applies and ``reactor`` is the checkout's package; the cases
share one cache directory, so only the first pays for checking the package and
the standard library cold.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

HAVE_MYPY = importlib.util.find_spec("mypy") is not None

pytestmark = [
    pytest.mark.skipif(not HAVE_MYPY, reason="mypy is not installed (it is in the test extra)"),
    pytest.mark.timeout(300),
]

#: A fenced block of Python in Markdown (```python or ```py).
PYTHON_BLOCK = re.compile(r"^```(?:python|py)\n(.*?)^```", re.S | re.M)


def readme_blocks() -> list[str]:
    """The README's fenced Python blocks, in order."""
    return PYTHON_BLOCK.findall((ROOT / "README.md").read_text())


EXAMPLES = sorted(path.relative_to(ROOT).as_posix() for path in (ROOT / "examples").rglob("*.py"))


@pytest.fixture(scope="session")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One mypy cache directory for every case of the session."""
    return tmp_path_factory.mktemp("mypy-cache")


def run_mypy(target: str, cache: Path) -> None:
    """Run ``mypy --strict`` on ``target`` (a path, relative to the root or absolute); fail with its report."""
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(cache), "--no-color-output", target],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert proc.returncode == 0, f"mypy --strict {target}:\n{proc.stdout}{proc.stderr}"


def test_readme_has_python_blocks() -> None:
    """The README shows Python code (so the README cases below check something)."""
    assert readme_blocks()


def test_package_type_checks(mypy_cache: Path) -> None:
    """The package itself passes mypy --strict."""
    run_mypy("reactor", mypy_cache)


@pytest.mark.parametrize("example", EXAMPLES)
def test_example_type_checks(example: str, mypy_cache: Path) -> None:
    """Each example passes mypy --strict."""
    run_mypy(example, mypy_cache)


@pytest.mark.parametrize("index", range(len(readme_blocks())), ids=lambda i: f"README-block-{i + 1}")
def test_readme_block_type_checks(index: int, mypy_cache: Path, tmp_path: Path) -> None:
    """Each Python block of the README passes mypy --strict."""
    path = tmp_path / f"readme_block_{index + 1}.py"
    path.write_text(readme_blocks()[index])
    run_mypy(str(path), mypy_cache)
