"""The command line's conventions: where the benchmark went, ``--version``, what ``--timeout`` accepts."""

from __future__ import annotations

import pytest

from reactor import cli


def test_bench_says_where_the_benchmark_went(capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m reactor bench ...` runs nothing, names `python -m benchmarks` and exits 2."""
    assert cli.main(["bench", "--quick"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "python -m benchmarks" in err and "checkout" in err
