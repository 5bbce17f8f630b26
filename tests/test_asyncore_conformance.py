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

from pathlib import Path

import pytest
from cpython_suites import load_suite, run_suite_test, suite_ids, suite_params

import reactor.compat.asyncore as our_asyncore

SUITE = "test.test_asyncore"
SUBSTITUTIONS = [
    (
        "'<asyncore.dispatcher at %#x>' % id(d)",
        "'<%s.dispatcher at %#x>' % (asyncore.__name__, id(d))",
    ),
]

MODULE, REASON = load_suite(
    SUITE,
    "test_asyncore_on_reactor",
    missing="Python 3.12 removed asyncore and its tests",
    substitutions=SUBSTITUTIONS,
    modules={"asyncore": our_asyncore},
)
PARAMS = suite_params(MODULE, REASON)


@pytest.mark.parametrize("test_id", PARAMS)
def test_cpython_asyncore_suite(test_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One test of CPython's asyncore suite passes with reactor.compat.asyncore substituted."""
    monkeypatch.chdir(tmp_path)
    run_suite_test(MODULE, test_id)
    assert our_asyncore.socket_map == {}, "the test left dispatchers in the map"


def test_suite_is_the_whole_module() -> None:
    """The parametrised list covers every test of the suite, and it is ours that the suite uses."""
    if MODULE is None:
        pytest.skip(REASON)
    assert len(PARAMS) == len(suite_ids(MODULE)) >= 40
    assert MODULE.asyncore is our_asyncore
