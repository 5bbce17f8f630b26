"""The package's top: what ``import reactor`` costs, its lazy names, its version, its logger."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import logging
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import reactor
from reactor import ManualClock, Reactor

ROOT = Path(__file__).resolve().parent.parent

#: Modules that ``import reactor`` must leave unimported: each costs import time
#: and is needed only by a feature that imports it when used.
HEAVY = ("asyncio", "ssl", "subprocess", "concurrent.futures", "importlib.metadata")


def run_python(code: str) -> str:
    """Run ``code`` in a fresh interpreter from the checkout's root and return its stdout."""
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=20, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def imported_by(statement: str) -> list[str]:
    """The `HEAVY` modules that ``statement`` imports in a fresh interpreter (those of startup excluded)."""
    code = (
        "import json, sys\n"
        "before = set(sys.modules)\n"
        f"{statement}\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules and m not in before]))\n"
    )
    result: list[str] = json.loads(run_python(code))
    return result


# ------------------------------------------------------------------ import cost


def test_import_reactor_imports_nothing_heavy() -> None:
    """``import reactor`` imports neither asyncio, ssl, subprocess, concurrent.futures nor importlib.metadata."""
    assert imported_by("import reactor") == []


def test_the_reactor_at_work_imports_nothing_heavy() -> None:
    """Timers, futures (cancelled ones too) and a request server never import asyncio."""
    statement = (
        "import reactor\n"
        "with reactor.Reactor() as r:\n"
        "    fut = r.create_future()\n"
        "    r.call_later(0, fut.set_result, 'done')\n"
        "    assert r.run_until_complete(fut, timeout=5) == 'done'\n"
        "    other = r.create_future()\n"
        "    assert other.cancel() and other.cancelled()\n"
        "    r.run_once(0)\n"
        "    server = reactor.RequestServer('localhost:0', reactor=r)\n"
        "    server.close()\n"
    )
    assert imported_by(statement) == []


def test_cancelled_error_is_asyncio_class_resolved_on_access() -> None:
    """``reactor.CancelledError`` imports asyncio on first access and is asyncio's class."""
    statement = (
        "import reactor, reactor.futures\n"
        "assert 'asyncio' not in sys.modules\n"
        "import asyncio\n"
        "assert reactor.CancelledError is asyncio.CancelledError\n"
        "assert reactor.futures.CancelledError is asyncio.CancelledError\n"
    )
    assert "asyncio" in imported_by(statement)


def test_cancelled_future_raises_asyncio_cancelled_error_in_fresh_interpreter() -> None:
    """The first ``result()`` of a cancelled future imports asyncio and raises its class."""
    code = (
        "import sys, reactor\n"
        "with reactor.Reactor() as r:\n"
        "    fut = r.create_future()\n"
        "    fut.cancel()\n"
        "    try:\n"
        "        fut.result()\n"
        "    except BaseException as exc:\n"
        "        import asyncio\n"
        "        print(type(exc) is asyncio.CancelledError)\n"
    )
    assert run_python(code).strip() == "True"


def test_cancelled_error_public_semantics() -> None:
    """One class for reactor and asyncio code: ``except asyncio.CancelledError`` catches a cancelled future."""
    from reactor import CancelledError
    from reactor.futures import CancelledError as FuturesCancelledError

    assert CancelledError is asyncio.CancelledError is FuturesCancelledError
    with Reactor(clock=ManualClock(0.0)) as loop:
        fut = loop.create_future()
        fut.cancel()
        with pytest.raises(asyncio.CancelledError, match="cancelled"):
            fut.result()
        with pytest.raises(CancelledError):
            fut.exception()


def test_public_names_resolve() -> None:
    """Every name in ``reactor.__all__`` resolves, is listed by ``dir()``, and ``import *`` works."""
    for name in reactor.__all__:
        assert getattr(reactor, name) is not None, name
    assert {"CancelledError", "__version__"} <= set(dir(reactor))
    assert set(reactor.__all__) <= set(dir(reactor))
    namespace: dict[str, object] = {}
    exec("from reactor import *", namespace)
    assert namespace["CancelledError"] is asyncio.CancelledError
    assert namespace["Reactor"] is Reactor


def test_unknown_attribute_raises_attribute_error() -> None:
    """A missing name is still an AttributeError naming the module (``hasattr`` keeps working)."""
    import reactor.futures

    with pytest.raises(AttributeError, match="'reactor' has no attribute 'no_such_name'"):
        reactor.no_such_name  # noqa: B018
    with pytest.raises(AttributeError, match="'reactor.futures' has no attribute 'no_such_name'"):
        reactor.futures.no_such_name  # noqa: B018
    assert not hasattr(reactor, "no_such_name")


# ------------------------------------------------------------------ version


def test_version_is_the_installed_distributions() -> None:
    """``__version__`` is the selreactor distribution's version, as in pyproject.toml, or the fallback."""
    version = reactor.__version__
    assert isinstance(version, str) and version
    try:
        installed = importlib.metadata.version("selreactor")
    except importlib.metadata.PackageNotFoundError:
        assert version == "0+unknown"
        return
    assert version == installed
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    if project["name"] == "selreactor":
        assert installed == project["version"]


def test_version_falls_back_when_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without installed metadata (a source tree on ``sys.path``) the version says it is unknown."""

    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    assert reactor._distribution_version() == "0+unknown"


def test_version_is_read_on_first_access_and_kept() -> None:
    """The first access to ``__version__`` reads the metadata; later ones reuse the value."""
    code = (
        "import reactor\n"
        "assert '__version__' not in vars(reactor)\n"
        "first = reactor.__version__\n"
        "assert vars(reactor)['__version__'] == first\n"
        "print(first)\n"
    )
    assert run_python(code).strip() == reactor.__version__


# ------------------------------------------------------------------ logging


def test_library_logger_has_a_null_handler() -> None:
    """The ``reactor`` logger carries one NullHandler, as the logging docs ask of libraries."""
    handlers = logging.getLogger("reactor").handlers
    assert [type(h) for h in handlers if isinstance(h, logging.NullHandler)] == [logging.NullHandler]


def test_unconfigured_program_gets_no_log_output() -> None:
    """In a program that configured no logging, the library's records do not reach stderr."""
    code = (
        "import logging, reactor\n"
        "with reactor.Reactor() as r:\n"
        "    r.call_soon(lambda: 1 / 0)\n"
        "    r.run_once(0)\n"
        "logging.getLogger('reactor.transport').warning('not shown')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=20, check=False
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_configured_logging_still_receives_records() -> None:
    """The NullHandler does not stop propagation: the application's handlers see the library's records."""
    code = (
        "import logging, sys, reactor\n"
        "logging.basicConfig(stream=sys.stdout, format='%(name)s %(levelname)s %(message)s')\n"
        "with reactor.Reactor() as r:\n"
        "    r.call_soon(lambda: 1 / 0)\n"
        "    r.run_once(0)\n"
    )
    out = run_python(code)
    assert out.startswith("reactor ERROR ") and "ZeroDivisionError" in out
