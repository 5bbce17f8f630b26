"""CPython's own asyncore test suite, run against reactor.compat.asyncore.

The suite is ``test.test_asyncore`` from the interpreter's ``test`` package
(Python 3.11 and older; 3.12 removed asyncore and its tests).  Its source is
loaded and executed as a fresh module while ``sys.modules['asyncore']`` is
``reactor.compat.asyncore``, so the suite's ``import_deprecated('asyncore')``
binds our module.  One expectation is adapted, checked to apply exactly once:

- ``DispatcherTests.test_repr`` expects ``<asyncore.dispatcher at 0x...>``:
  a dispatcher's repr starts with its class's module, which for ours is
  ``reactor.compat.asyncore``; the expected text uses ``asyncore.__name__``
  instead of the literal module name.

Nothing else changes.  Each test of the suite is one pytest test, run in a
temporary directory (the suite makes files and Unix sockets named
``os_helper.TESTFN`` in the current directory).  Where the ``test`` package or
the suite is missing, the single placeholder test is skipped and says why.
"""

from __future__ import annotations

import importlib.util
import sys
import types
import unittest
from pathlib import Path

import pytest

import reactor.compat.asyncore as our_asyncore

SUITE = "test.test_asyncore"
SUBSTITUTIONS = [
    (
        "'<asyncore.dispatcher at %#x>' % id(d)",
        "'<%s.dispatcher at %#x>' % (asyncore.__name__, id(d))",
    ),
]


def load_suite() -> tuple[types.ModuleType | None, str]:
    """The suite as a module bound to reactor.compat.asyncore, or None and the reason."""
    try:
        spec = importlib.util.find_spec(SUITE)
    except ImportError as exc:
        return None, f"the interpreter's test package is not installed ({exc})"
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return None, f"{SUITE} is not installed with this interpreter (Python 3.12 removed asyncore and its tests)"
    source = Path(spec.origin).read_text(encoding="utf-8")
    for old, new in SUBSTITUTIONS:
        if source.count(old) != 1:
            return None, f"{SUITE} changed shape: {old!r} occurs {source.count(old)} times"
        source = source.replace(old, new)
    module = types.ModuleType("test_asyncore_on_reactor")
    module.__file__ = spec.origin
    saved = sys.modules.get("asyncore")
    sys.modules["asyncore"] = our_asyncore
    try:
        exec(compile(source, spec.origin, "exec"), module.__dict__)
    except unittest.SkipTest as exc:
        return None, f"{SUITE} skips itself here: {exc}"
    finally:
        if saved is None:
            del sys.modules["asyncore"]
        else:
            sys.modules["asyncore"] = saved
    return module, ""


def suite_ids(module: types.ModuleType) -> list[str]:
    """Every test id of the suite, e.g. ``DispatcherTests.test_repr``."""
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
def test_cpython_asyncore_suite(test_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One test of CPython's asyncore suite passes with reactor.compat.asyncore substituted."""
    assert MODULE is not None
    monkeypatch.chdir(tmp_path)
    case = unittest.defaultTestLoader.loadTestsFromName(test_id, MODULE)
    result = unittest.TestResult()
    case.run(result)
    problems = [f"{test}:\n{trace}" for test, trace in result.errors + result.failures]
    problems += [f"{test}: unexpected success" for test in result.unexpectedSuccesses]
    assert not problems, "\n".join(problems)
    if result.skipped:
        pytest.skip("; ".join(reason for _, reason in result.skipped))
    assert result.testsRun == 1
    assert our_asyncore.socket_map == {}, "the test left dispatchers in the map"


def test_suite_is_the_whole_module() -> None:
    """The parametrised list covers every test of the suite, and it is ours that the suite uses."""
    if MODULE is None:
        pytest.skip(REASON)
    assert len(PARAMS) == len(suite_ids(MODULE)) >= 40
    assert MODULE.asyncore is our_asyncore
