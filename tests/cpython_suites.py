"""Run one of CPython's own test suites against a reactor module, one pytest test per suite test.

The conformance tests (``test_*_conformance.py``) share this: each loads a
suite from the interpreter's ``test`` package with its own substitutions and
module bindings, lists its tests as pytest parameters, and runs them one at a
time.  What each file adapts, and why, is documented in that file.
"""

from __future__ import annotations

import importlib.util
import sys
import types
import unittest
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest


def load_suite(
    suite: str,
    module_name: str,
    *,
    missing: str,
    substitutions: Sequence[tuple[str, str]] = (),
    modules: Mapping[str, types.ModuleType] | None = None,
) -> tuple[types.ModuleType | None, str]:
    """The suite as a fresh module, or None and the reason it cannot be run.

    ``missing`` says why, when the suite's source is not installed.  Each of
    ``substitutions`` (old, new) must occur exactly once in the source.  While
    the source executes, ``sys.modules`` maps each name in ``modules`` to the
    given module; the previous entries are put back afterwards.
    """
    try:
        spec = importlib.util.find_spec(suite)
    except ImportError as exc:
        return None, f"the interpreter's test package is not installed ({exc})"
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return None, f"{suite} is not installed with this interpreter ({missing})"
    source = Path(spec.origin).read_text(encoding="utf-8")
    for old, new in substitutions:
        if source.count(old) != 1:
            return None, f"{suite} changed shape: {old.strip()!r} occurs {source.count(old)} times"
        source = source.replace(old, new)
    module = types.ModuleType(module_name)
    module.__file__ = spec.origin
    modules = modules or {}
    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)
    try:
        exec(compile(source, spec.origin, "exec"), module.__dict__)
    except unittest.SkipTest as exc:
        return None, f"{suite} skips itself here: {exc}"
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous
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


def suite_params(module: types.ModuleType | None, reason: str) -> list[Any]:
    """One pytest parameter per suite test, or a single skipped placeholder saying why there are none."""
    if module is not None:
        return [pytest.param(test_id, id=test_id) for test_id in suite_ids(module)]
    return [pytest.param("", id="suite-unavailable", marks=pytest.mark.skip(reason=reason))]


def run_suite_test(module: types.ModuleType | None, test_id: str) -> None:
    """Run one test of the suite: fail on its errors, failures or unexpected success; skip if it skips."""
    assert module is not None
    case = unittest.defaultTestLoader.loadTestsFromName(test_id, module)
    result = unittest.TestResult()
    case.run(result)
    problems = [f"{test}:\n{trace}" for test, trace in result.errors + result.failures]
    problems += [f"{test}: unexpected success" for test in result.unexpectedSuccesses]
    assert not problems, "\n".join(problems)
    if result.skipped:
        pytest.skip("; ".join(reason for _, reason in result.skipped))
    assert result.testsRun == 1
