"""The source distribution is whole: it builds, declares its license and name, and its tests run.

An sdist is what a packager downloads, unpacks and tests.  One that ships
``tests/`` without ``conftest.py``, or without the examples and documents the
tests read, fails there and nowhere else, so this builds one the way a
frontend does -- ``setuptools.build_meta.build_sdist`` in a fresh process, no
network, no isolated environment -- and checks what a packager would meet:

- every file git tracks under ``tests/``, ``examples/``, ``docs/`` and
  ``benchmarks/`` is in the archive, and so are ``LICENSE``, ``CHANGELOG.md`` and ``README.md``;
- ``PKG-INFO`` names the distribution ``selreactor``, carries the PEP 639
  ``License-Expression: MIT`` and no license classifier, and says
  ``Typing :: Typed``; the build warns about no license deprecation;
- a quick part of the suite passes when run from the unpacked tree, with the
  unpacked package first on ``sys.path`` (a missing helper fails it).

The wheel is what a user installs: it holds the package and ``py.typed``, and
not the benchmarks (a development tool run from a checkout).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DISTRIBUTION = "selreactor"
TOP_LEVEL_FILES = ("LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml")
SHIPPED_DIRECTORIES = ("tests", "examples", "docs", "benchmarks")
#: A quick part of the suite that needs conftest.py, the examples and the README.
QUICK_TESTS = ("tests/test_core.py", "tests/test_examples.py")
BUILD_TIMEOUT = 60.0
QUICK_TESTS_TIMEOUT = 60.0

BUILD_SDIST = "import sys, setuptools.build_meta as backend; print(backend.build_sdist(sys.argv[1]))"
BUILD_WHEEL = "import sys, setuptools.build_meta as backend; print(backend.build_wheel(sys.argv[1]))"


@dataclass(frozen=True)
class Sdist:
    """A built source distribution: the archive, its member names (relative to its top directory), the tree."""

    archive: Path
    members: frozenset[str]
    tree: Path
    build_output: str


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Sdist:
    """Build the sdist from this checkout in a subprocess, and unpack it."""
    out = tmp_path_factory.mktemp("sdist")
    build = subprocess.run(
        [sys.executable, "-c", BUILD_SDIST, str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
    )
    assert build.returncode == 0, (
        f"building the sdist failed (the test extra needs setuptools>=77):\n{build.stdout}\n{build.stderr}"
    )
    archive = out / build.stdout.strip().splitlines()[-1]
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        tar.extractall(out / "unpacked", filter="data")
    top = f"{DISTRIBUTION}-"
    roots = {name.split("/", 1)[0] for name in names}
    assert len(roots) == 1 and roots.pop().startswith(top), f"not one top directory: {sorted(roots)}"
    members = frozenset(name.split("/", 1)[1] for name in names if "/" in name)
    (tree,) = (out / "unpacked").iterdir()
    return Sdist(archive, members, tree, build.stdout + build.stderr)


def tracked_files(*directories: str) -> list[str]:
    """The files git tracks under ``directories`` that exist in the working tree."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--", *directories],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    return [name for name in listed.split("\0") if name and (ROOT / name).is_file()]


def test_archive_holds_every_tracked_test_example_and_document(sdist: Sdist) -> None:
    """Every git-tracked file under tests/, examples/, docs/ and benchmarks/ is in the sdist."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (or no git): the tracked files cannot be listed")
    tracked = tracked_files(*SHIPPED_DIRECTORIES)
    assert "tests/conftest.py" in tracked
    missing = sorted(set(tracked) - sdist.members)
    assert not missing, f"tracked files missing from the sdist: {missing}"


def test_archive_holds_the_top_level_files_and_the_test_helpers(sdist: Sdist) -> None:
    """LICENSE, CHANGELOG.md, README.md and the suite's conftest and helpers are in the sdist; no caches are."""
    for name in (*TOP_LEVEL_FILES, "tests/conftest.py", "tests/cpython_suites.py", "reactor/py.typed"):
        assert name in sdist.members, name
    helpers = {path.relative_to(ROOT).as_posix() for path in (ROOT / "tests").glob("*.py")}
    assert helpers <= sdist.members, sorted(helpers - sdist.members)
    assert not [name for name in sdist.members if "__pycache__" in name or "_cache/" in name or name.endswith(".pyc")]


def test_metadata_names_the_distribution_and_its_license(sdist: Sdist) -> None:
    """PKG-INFO: name selreactor, License-Expression MIT and no license classifier, Typing :: Typed."""
    info = HeaderParser().parsestr((sdist.tree / "PKG-INFO").read_text(encoding="utf-8"))
    assert info["Name"] == DISTRIBUTION
    assert info["License-Expression"] == "MIT"
    assert info.get_all("License-File") == ["LICENSE"]
    classifiers = info.get_all("Classifier") or []
    assert "Typing :: Typed" in classifiers
    assert not [c for c in classifiers if c.startswith("License ::")], "PEP 639 forbids a license classifier too"
    deprecations = [
        line for line in sdist.build_output.splitlines() if "deprecat" in line.lower() and "licen" in line.lower()
    ]
    assert not deprecations, deprecations


def test_quick_tests_pass_from_the_unpacked_sdist(sdist: Sdist) -> None:
    """A quick part of the suite passes in the unpacked tree, importing the unpacked package."""
    env = {**os.environ, "PYTHONPATH": str(sdist.tree), "PYTHONDONTWRITEBYTECODE": "1"}
    where = subprocess.run(
        [sys.executable, "-c", "import reactor; print(reactor.__file__)"],
        cwd=sdist.tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=QUICK_TESTS_TIMEOUT,
        check=True,
    ).stdout.strip()
    assert Path(where).resolve().is_relative_to(sdist.tree.resolve()), where
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", *QUICK_TESTS],
        cwd=sdist.tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=QUICK_TESTS_TIMEOUT,
    )
    assert run.returncode == 0, f"the sdist's own tests failed:\n{run.stdout[-4000:]}\n{run.stderr[-2000:]}"


def test_wheel_ships_the_package_and_not_the_benchmarks(tmp_path: Path) -> None:
    """The wheel holds reactor (with py.typed and every sub-package) and nothing of benchmarks/."""
    import zipfile

    build = subprocess.run(
        [sys.executable, "-c", BUILD_WHEEL, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
    )
    assert build.returncode == 0, f"building the wheel failed:\n{build.stdout}\n{build.stderr}"
    with zipfile.ZipFile(tmp_path / build.stdout.strip().splitlines()[-1]) as wheel:
        names = wheel.namelist()
    tops = {name.split("/", 1)[0] for name in names if not name.split("/", 1)[0].endswith(".dist-info")}
    assert tops == {"reactor"}, sorted(tops)
    for name in ("reactor/__init__.py", "reactor/py.typed", "reactor/transport/__init__.py",
                 "reactor/compat/__init__.py"):
        assert name in names, name
    assert not [name for name in names if "bench" in name], [name for name in names if "bench" in name]


BUILD_EDITABLE = "import sys, setuptools.build_meta as backend; print(backend.build_editable(sys.argv[1]))"


def test_editable_install_is_a_path_type_checkers_follow(tmp_path: Path) -> None:
    """`pip install -e .` writes a .pth holding the checkout's root, and mypy finds `reactor` through it.

    setuptools' other editable form is an import hook, which mypy and
    pyright cannot follow ("cannot find implementation or library stub").
    This builds the editable wheel as pip does, puts its .pth into the
    site-packages of a fresh virtual environment (no pip, no network) and
    type-checks a snippet against that environment from outside the checkout.
    """
    import venv
    import zipfile

    pytest.importorskip("mypy.api", reason="mypy is in the test extra")
    build = subprocess.run(
        [sys.executable, "-c", BUILD_EDITABLE, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
    )
    assert build.returncode == 0, f"building the editable wheel failed:\n{build.stdout}\n{build.stderr}"
    with zipfile.ZipFile(tmp_path / build.stdout.strip().splitlines()[-1]) as wheel:
        (pth,) = [name for name in wheel.namelist() if name.endswith(".pth")]
        lines = wheel.read(pth).decode().split()
    assert lines == [str(ROOT)], f"not a plain path entry (an import hook?): {lines}"
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=False)
    (site,) = env_dir.glob("lib/python*/site-packages")
    (site / Path(pth).name).write_text(f"{lines[0]}\n")
    snippet = tmp_path / "uses_reactor.py"
    snippet.write_text("from reactor import Reactor\n\nr: Reactor = Reactor()\nr.close()\nbad: int = r.time()\n")
    check = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir", os.devnull,
         "--show-error-codes", "--python-executable", str(env_dir / "bin" / "python"), snippet.name],
        cwd=tmp_path,  # not the checkout: mypy also searches the current directory
        env={key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "MYPYPATH")},
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
    )
    assert "import-not-found" not in check.stdout, check.stdout
    # The package's own types were read: assigning its float to an int is caught.
    assert 'Incompatible types in assignment (expression has type "float", variable has type "int")' in check.stdout, (
        check.stdout + check.stderr
    )
    assert check.returncode == 1, check.stdout + check.stderr
