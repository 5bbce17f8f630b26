"""CPython's own asynchat test suite, run against reactor.compat.asynchat.

The suite is ``test.test_asynchat`` from the interpreter's ``test`` package
(3.11 and earlier; 3.12 removed the module and its tests).  Its source is
executed, unmodified, as a fresh module while ``sys.modules['asyncore']`` is
`reactor.compat.asyncore` and ``sys.modules['asynchat']`` is
`reactor.compat.asynchat`; the suite imports both by name at module level
(through ``warnings_helper.import_deprecated``), so every channel it builds,
and every ``asyncore.loop()`` it runs, is ours.  The previous entries are put
back afterwards, so the rest of the test session is unaffected.

Nothing is adapted: no test of this suite looks at the module's own name
(its ``__name__``, a ``repr`` or ``__all__``).  A check below fails if the
suite ever stops binding the substituted modules.

Each test of the suite is one pytest test, so the report lists them all.
Where the ``test`` package or this suite is not installed, the single
placeholder test is skipped and says why.
"""

from __future__ import annotations

import importlib.util
import sys
import types
import unittest
from pathlib import Path

import pytest

from reactor.compat import asynchat, asyncore

SUITE = "test.test_asynchat"


def load_suite() -> tuple[types.ModuleType | None, str]:
    """The suite as a module bound to reactor.compat's asyncore and asynchat, or None and the reason."""
    try:
        spec = importlib.util.find_spec(SUITE)
    except ImportError as exc:
        return None, f"the interpreter's test package is not installed ({exc})"
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return None, (f"{SUITE} is not installed with this interpreter (Python 3.12 removed asynchat "
                      "and its tests, and some distributions ship no `test` package)")
    source = Path(spec.origin).read_text(encoding="utf-8")
    module = types.ModuleType("test_asynchat_on_reactor")
    module.__file__ = spec.origin
    saved = {name: sys.modules.get(name) for name in ("asyncore", "asynchat")}
    sys.modules["asyncore"] = asyncore
    sys.modules["asynchat"] = asynchat
    try:
        exec(compile(source, spec.origin, "exec"), module.__dict__)
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous
    return module, ""


def suite_ids(module: types.ModuleType) -> list[str]:
    """Every test id of the suite, e.g. ``TestAsynchat.test_line_terminator1``."""
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
def test_cpython_asynchat_suite(test_id: str) -> None:
    """One test of CPython's asynchat suite passes with reactor.compat's asyncore and asynchat substituted."""
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
    """The parametrised list covers every test of the suite, and the suite ran on the substituted modules."""
    if MODULE is None:
        pytest.skip(REASON)
    assert len(PARAMS) == len(suite_ids(MODULE)) >= 20
    assert MODULE.asynchat is asynchat
    assert MODULE.asyncore is asyncore
