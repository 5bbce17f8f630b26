"""The command line's conventions: where the benchmark went, ``--version``, what ``--timeout`` accepts."""

from __future__ import annotations

import pytest

from reactor import cli


def test_bench_says_where_the_benchmark_went(capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m reactor bench ...` runs nothing, names `python -m benchmarks` and exits 2."""
    assert cli.main(["bench", "--quick"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "python -m benchmarks" in err and "checkout" in err


def test_version_prints_the_package_version_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m reactor --version` prints `reactor <version>` (the package's own) and exits 0."""
    import reactor

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"reactor {reactor.__version__}\n"


def test_version_from_a_fresh_interpreter() -> None:
    """`python -m reactor --version` works as a command, not only in-process."""
    import subprocess
    import sys

    import reactor

    proc = subprocess.run([sys.executable, "-m", "reactor", "--version"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"reactor {reactor.__version__}"
