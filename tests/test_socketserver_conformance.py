"""CPython's own socketserver test suite, run against reactor.socketserver.

The suite is ``test.test_socketserver`` from the interpreter's ``test``
package.  Its source is loaded and executed as a fresh module with two
substitutions, each checked to apply exactly once:

- ``import socketserver`` binds ``reactor.socketserver`` instead, so every
  server class the suite uses or subclasses at import time is ours;
- ``MiscTestCase.test_all`` compares ``__module__`` with the substituted
  module's name instead of the literal ``'socketserver'`` (it checks that
  every public class the module defines is in ``__all__``).

Each test of the suite is one pytest test, so the report lists them all.
Where the ``test`` package is not installed (some distributions split it
out), the single placeholder test is skipped and says so.
"""

from __future__ import annotations

import pytest
from cpython_suites import load_suite, run_suite_test, suite_ids, suite_params

SUITE = "test.test_socketserver"
SUBSTITUTIONS = [
    ("\nimport socketserver\n", "\nimport reactor.socketserver as socketserver\n"),
    ("== 'socketserver'", "== socketserver.__name__"),
]

MODULE, REASON = load_suite(
    SUITE, "test_socketserver_on_reactor", missing="no `test` package source", substitutions=SUBSTITUTIONS
)
if MODULE is not None:
    MODULE.__dict__["verbose"] = False  # the suite's chatter
PARAMS = suite_params(MODULE, REASON)


@pytest.mark.parametrize("test_id", PARAMS)
def test_cpython_socketserver_suite(test_id: str) -> None:
    """One test of CPython's socketserver suite passes with reactor.socketserver substituted."""
    run_suite_test(MODULE, test_id)


def test_suite_is_the_whole_module() -> None:
    """The parametrised list covers every test of the suite, and it is not trivially small."""
    if MODULE is None:
        pytest.skip(REASON)
    assert len(PARAMS) == len(suite_ids(MODULE)) >= 20
    assert MODULE.socketserver.__name__ == "reactor.socketserver"
