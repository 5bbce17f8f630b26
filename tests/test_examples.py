"""The runnable examples and the README's code run and print what they promise."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_example(name: str) -> str:
    """Run an example script in a subprocess and return its stdout."""
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / name)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout


def test_fanout_proxy_example() -> None:
    """The fan-out proxy joins both backends' replies, in one thread."""
    out = run_example("fanout_proxy.py")
    assert "'hello' -> 'HELLO | olleh'" in out
    assert "'fan-out' -> 'FAN-OUT | tuo-naf'" in out


@pytest.mark.timeout(30)
def test_readme_python_example_runs() -> None:
    """The README's Python example runs and prints HELLO."""
    readme = (ROOT / "README.md").read_text()
    [code] = re.findall(r"```python\n(.*?)```", readme, re.S)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20, check=True).stdout
    assert out.strip() == "HELLO"


def test_multi_port_example() -> None:
    """TCP and Unix request/reply servers and a UDP server answer from one thread."""
    out = run_example("multi_port.py")
    assert "reply: Requested: over tcp" in out
    assert "reply: OVER UNIX" in out
    assert "reply: udp echo: over udp" in out
    assert "threads running: 1" in out
