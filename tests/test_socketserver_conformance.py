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

import importlib.util
import types
import unittest
from pathlib import Path

import pytest

SUITE = "test.test_socketserver"
SUBSTITUTIONS = [
    ("\nimport socketserver\n", "\nimport reactor.socketserver as socketserver\n"),
    ("== 'socketserver'", "== socketserver.__name__"),
]


def load_suite() -> tuple[types.ModuleType | None, str]:
    """The suite as a module bound to reactor.socketserver, or None and the reason."""
    try:
        spec = importlib.util.find_spec(SUITE)
    except ImportError as exc:
        return None, f"the interpreter's test package is not installed ({exc})"
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return None, f"{SUITE} is not installed with this interpreter (no `test` package source)"
    source = Path(spec.origin).read_text(encoding="utf-8")
    for old, new in SUBSTITUTIONS:
        if source.count(old) != 1:
            return None, f"{SUITE} changed shape: {old.strip()!r} occurs {source.count(old)} times"
        source = source.replace(old, new)
    module = types.ModuleType("test_socketserver_on_reactor")
    module.__file__ = spec.origin
    exec(compile(source, spec.origin, "exec"), module.__dict__)
    module.__dict__["verbose"] = False  # the suite's chatter
    return module, ""


def suite_ids(module: types.ModuleType) -> list[str]:
    """Every test id of the suite, e.g. ``SocketServerTest.test_TCPServer``."""
    ids: list[str] = []
    pending: list[unittest.TestSuite | unittest.TestCase] = [unittest.defaultTestLoader.loadTestsFromModule(module)]
    while pending:
        item = pending.pop()
        if isinstance(item, unittest.TestSuite):
            pending.extend(item)
        else:
            ids.append(item.id().split(".", 1)[1])
    return sorted(ids)


MODULE, REASON = load_suite()
if MODULE is not None:
    PARAMS = [pytest.param(test_id, id=test_id) for test_id in suite_ids(MODULE)]
else:
    PARAMS = [pytest.param("", id="suite-unavailable", marks=pytest.mark.skip(reason=REASON))]


@pytest.mark.parametrize("test_id", PARAMS)
def test_cpython_socketserver_suite(test_id: str) -> None:
    """One test of CPython's socketserver suite passes with reactor.socketserver substituted."""
    assert MODULE is not None
    case = unittest.defaultTestLoader.loadTestsFromName(test_id, MODULE)
    result = unittest.TestResult()
    case.run(result)
    problems = [f"{test}:\n{trace}" for test, trace in result.errors + result.failures]
    problems += [f"{test}: unexpected success" for test in result.unexpectedSuccesses]
    assert not problems, "\n".join(problems)
    if result.skipped:
        pytest.skip("; ".join(reason for _, reason in result.skipped))
    assert result.testsRun == 1


def test_suite_is_the_whole_module() -> None:
    """The parametrised list covers every test of the suite, and it is not trivially small."""
    if MODULE is None:
        pytest.skip(REASON)
    assert len(PARAMS) == len(suite_ids(MODULE)) >= 20
    assert MODULE.socketserver.__name__ == "reactor.socketserver"
