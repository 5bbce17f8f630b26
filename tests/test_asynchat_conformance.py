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

import pytest
from cpython_suites import load_suite, run_suite_test, suite_ids, suite_params

from reactor.compat import asynchat, asyncore

SUITE = "test.test_asynchat"

MODULE, REASON = load_suite(
    SUITE,
    "test_asynchat_on_reactor",
    missing="Python 3.12 removed asynchat and its tests, and some distributions ship no `test` package",
    modules={"asyncore": asyncore, "asynchat": asynchat},
)
PARAMS = suite_params(MODULE, REASON)


@pytest.mark.parametrize("test_id", PARAMS)
def test_cpython_asynchat_suite(test_id: str) -> None:
    """One test of CPython's asynchat suite passes with reactor.compat's asyncore and asynchat substituted."""
    run_suite_test(MODULE, test_id)


def test_suite_is_the_whole_module() -> None:
    """The parametrised list covers every test of the suite, and the suite ran on the substituted modules."""
    if MODULE is None:
        pytest.skip(REASON)
    assert len(PARAMS) == len(suite_ids(MODULE)) >= 20
    assert MODULE.asynchat is asynchat
    assert MODULE.asyncore is asyncore
