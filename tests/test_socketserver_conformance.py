"""CPython's own socketserver test suite, run against reactor.socketserver.

The suite is ``test.test_socketserver`` from the running interpreter's
``test`` package, so each Python checks the module against its own
standard library: from 3.12 on, the suite also serves with
``socketserver.ForkingUnixStreamServer`` and ``ForkingUnixDatagramServer``,
which ``reactor.socketserver`` then has too.  Its source is loaded and
executed as a fresh module with two substitutions, each checked to apply
exactly once:

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

import sys

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


def test_forking_unix_tests_serve_with_our_classes() -> None:
    """The suite's forking Unix tests serve with reactor.socketserver's classes: the module's own from 3.12."""
    if MODULE is None:
        pytest.skip(REASON)
    ids = set(suite_ids(MODULE))
    assert {"SocketServerTest.test_ForkingUnixStreamServer", "SocketServerTest.test_ForkingUnixDatagramServer"} <= ids
    if sys.version_info >= (3, 12):
        # The suite takes them from the module under test, so the module must have them.
        stream = MODULE.socketserver.ForkingUnixStreamServer
        datagram = MODULE.socketserver.ForkingUnixDatagramServer
    else:
        # 3.11's suite defines them itself, from the module's mix-in and servers.
        stream, datagram = MODULE.ForkingUnixStreamServer, MODULE.ForkingUnixDatagramServer
    for cls in (stream, datagram):
        assert {base.__module__ for base in cls.__mro__[1:-1]} == {"reactor.socketserver"}, cls
