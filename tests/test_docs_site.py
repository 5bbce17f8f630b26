"""The documentation site builds cleanly, and its API reference names every public name.

With Sphinx, furo and myst-parser installed (the ``docs`` extra), the site is
built once, warnings as errors and nitpicky, and the built inventory
(``objects.inv``) must hold every public name: each name in the ``__all__``
of a public module, and each public method and property of each public
class.  Without them, the build is skipped and a check of the sources
stands in: every public module has a page with its ``automodule``, every
name autodoc would document has a docstring (or a ``#:`` comment), and a
name a page leaves to another module is linked from it.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import subprocess
import sys
import zlib
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
API = DOCS / "api"

PUBLIC_MODULES = [
    "reactor",
    "reactor.core",
    "reactor.futures",
    "reactor.tasks",
    "reactor.addresses",
    "reactor.framing",
    "reactor.proxyproto",
    "reactor.streams",
    "reactor.reqrep",
    "reactor.client",
    "reactor.easy",
    "reactor.socketserver",
    "reactor.embed",
    "reactor.workers",
    "reactor.control",
    "reactor.metrics",
    "reactor.transport",
    "reactor.transport.table",
    "reactor.transport.base",
    "reactor.transport.stream",
    "reactor.transport.listener",
    "reactor.transport.connect",
    "reactor.transport.tls",
    "reactor.transport.proxy",
    "reactor.transport.datagram",
    "reactor.transport.memory",
    "reactor.transport.threads",
    "reactor.transport.executor",
    "reactor.transport.errors",
    "reactor.compat.asyncore",
    "reactor.compat.asynchat",
]

#: asyncore has no ``__all__``; its public names are what it defines, and its map.
ASYNCORE_DATA = ["socket_map"]

#: Names a module exports that are another library's own object, and the
#: documented name that stands for it.
FOREIGN = {
    ("reactor", "CancelledError"): "reactor.futures.CancelledError",
    ("reactor.futures", "CancelledError"): "reactor.futures.CancelledError",
}

SITE_PACKAGES = ("sphinx", "furo", "myst_parser")
HAVE_SPHINX = all(importlib.util.find_spec(name) is not None for name in SITE_PACKAGES)


def public_names(module: ModuleType) -> list[str]:
    """The module's ``__all__``, or for asyncore (which has none) what it defines."""
    names = getattr(module, "__all__", None)
    if names is not None:
        return list(names)
    if module.__name__ == "reactor.transport":
        return []  # a package of modules, each documented on its own page
    defined = [
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and getattr(value, "__module__", None) == module.__name__
    ]
    return defined + ASYNCORE_DATA


def home(module: ModuleType, name: str) -> str:
    """The full name under which *name* of *module* is documented: where it is defined."""
    if (module.__name__, name) in FOREIGN:
        return FOREIGN[module.__name__, name]
    value = getattr(module, name)
    defined_in = getattr(value, "__module__", None)
    if (inspect.isclass(value) or inspect.isfunction(value)) and str(defined_in).startswith("reactor"):
        return f"{defined_in}.{name}"
    if not assigns(module, name):
        # A constant imported from another public module, which assigns and documents it.
        for other_name in PUBLIC_MODULES:
            other = importlib.import_module(other_name)
            if getattr(other, name, None) is value and name in public_names(other) and assigns(other, name):
                return f"{other_name}.{name}"
    return f"{module.__name__}.{name}"


def assigns(module: ModuleType, name: str) -> bool:
    """True if *module*'s source assigns *name* at module level (rather than importing it)."""
    return re.search(rf"^{re.escape(name)}\b\s*(:[^=\n]*)?=", inspect.getsource(module), re.M) is not None


def is_method_or_property(value: object) -> bool:
    """True for what a class's API is made of: methods, class/static methods, properties."""
    return inspect.isfunction(value) or isinstance(value, (property, classmethod, staticmethod))


def public_classes() -> dict[str, type]:
    """Every public class of the package, by the full name it is documented under."""
    classes = {}
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in public_names(module):
            value = getattr(module, name)
            if inspect.isclass(value) and value.__module__.startswith("reactor"):
                classes[home(module, name)] = value
    return classes


def expected_names() -> dict[str, list[str]]:
    """For each public name, the full names any one of which documents it."""
    expected: dict[str, list[str]] = {}
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        expected[module_name] = [module_name]
        for name in public_names(module):
            expected[f"{module_name}.{name}"] = [home(module, name)]
    for full_name, cls in public_classes().items():
        for base in cls.__mro__:
            if not base.__module__.startswith("reactor"):
                continue
            for attribute, value in vars(base).items():
                if attribute.startswith("_") or not is_method_or_property(value):
                    continue
                # Documented on the class, or on the (documented) base that defines it.
                expected.setdefault(f"{full_name}.{attribute}", [f"{full_name}.{attribute}"]).append(
                    f"{base.__module__}.{base.__qualname__}.{attribute}"
                )
    return expected


def read_inventory(path: Path) -> set[str]:
    """The object names of a Sphinx ``objects.inv`` (version 2) file."""
    data = path.read_bytes()
    header_end = 0
    for _ in range(4):
        header_end = data.index(b"\n", header_end) + 1
    assert data.startswith(b"# Sphinx inventory version 2"), "unexpected inventory format"
    text = zlib.decompress(data[header_end:]).decode("utf-8")
    names = set()
    for line in text.splitlines():
        match = re.match(r"(.+?)\s+py:\S+\s", line)
        if match:
            names.add(match.group(1))
    return names


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    """The site built once, warnings as errors and nitpicky: the result and the output directory."""
    if not HAVE_SPHINX:
        pytest.skip("the docs extra (sphinx, furo, myst-parser) is not installed")
    out = tmp_path_factory.mktemp("site")
    command = [sys.executable, "-m", "sphinx", "-W", "-n", "--keep-going", "-E", "-q", "-b", "html"]
    command += ["-d", str(out / "doctrees"), str(DOCS), str(out / "html")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=100, cwd=ROOT)
    return result, out / "html"


@pytest.mark.timeout(120)
def test_site_builds_without_warnings(site: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    """``sphinx -W -n`` succeeds: no warning, no unresolved reference."""
    result, html = site
    assert result.returncode == 0, f"the site does not build cleanly:\n{result.stderr}"
    assert (html / "index.html").exists()
    assert (html / "api" / "core.html").exists()


@pytest.mark.timeout(120)
def test_every_public_name_is_in_the_built_reference(site: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    """Every public name and every public method/property of a public class is in ``objects.inv``."""
    _, html = site
    inventory = read_inventory(html / "objects.inv")
    missing = [name for name, homes in expected_names().items() if not any(h in inventory for h in homes)]
    assert not missing, "not in the API reference:\n" + "\n".join(missing)


def api_page(module_name: str) -> str:
    """The source of the API page of *module_name*."""
    page = API / (module_name.removeprefix("reactor.") + ".rst" if module_name != "reactor" else "reactor.rst")
    assert page.exists(), f"no API page for {module_name}"
    return page.read_text(encoding="utf-8")


def test_every_public_module_has_a_page() -> None:
    """Each public module has a page that documents it with ``automodule`` and is in the toctree."""
    toctree = (API / "index.rst").read_text(encoding="utf-8")
    for module_name in PUBLIC_MODULES:
        text = api_page(module_name)
        assert f".. automodule:: {module_name}\n" in text, module_name
        page = "reactor" if module_name == "reactor" else module_name.removeprefix("reactor.")
        assert re.search(rf"^   {re.escape(page)}$", toctree, re.M), f"{page} is not in the API toctree"


def test_names_a_page_leaves_out_are_linked_from_it() -> None:
    """A name excluded from a page (a re-export) is linked there to the page that documents it."""
    for module_name in PUBLIC_MODULES:
        text = api_page(module_name)
        for line in re.findall(r":exclude-members:\s*(.+)", text):
            for name in (n.strip() for n in line.split(",")):
                module = importlib.import_module(module_name)
                if inspect.isclass(getattr(module, name, None)) and getattr(module, name).__module__ == module_name:
                    # Documented further down the same page (``autoclass``).
                    assert f".. autoclass:: {name}\n" in text, f"{module_name}.{name}"
                else:
                    assert re.search(rf"(reactor\.[\w.]+\.{name}>?`|\.\. py:\w+:: {name}\n)", text), (
                        f"{module_name}.{name} is excluded from its page and linked nowhere on it"
                    )


def test_package_page_lists_every_exported_name() -> None:
    """The ``reactor`` page names each entry of ``reactor.__all__`` with a link to its home."""
    import reactor

    text = api_page("reactor")
    for name in reactor.__all__:
        assert f"`{name} <{home(reactor, name)}>`" in text, name


def documented_in_source(module: ModuleType, name: str) -> bool:
    """True if autodoc has text for *name*: a docstring, or a ``#:`` comment above it."""
    value = getattr(module, name)
    if inspect.isclass(value) or inspect.isfunction(value):
        return bool(inspect.getdoc(value))
    source = inspect.getsource(module)
    return re.search(rf"^#:.*\n(#:.*\n)*{re.escape(name)}\b", source, re.M) is not None


def test_every_public_name_has_text_to_document() -> None:
    """Without building: each public name has a docstring or a ``#:`` comment for autodoc to show."""
    missing = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in public_names(module):
            full = home(module, name)
            if full != f"{module_name}.{name}" or (module_name, name) in FOREIGN:
                continue  # documented in the module that defines it
            if not documented_in_source(module, name):
                missing.append(full)
    assert not missing, "no docstring or #: comment:\n" + "\n".join(missing)


def test_every_public_method_has_a_docstring() -> None:
    """Without building: autodoc skips an undocumented method, so each public one has a docstring."""
    missing = []
    for full_name, cls in public_classes().items():
        for attribute, value in vars(cls).items():
            if attribute.startswith("_") or not is_method_or_property(value):
                continue
            function = value.__func__ if isinstance(value, (classmethod, staticmethod)) else value
            if not inspect.getdoc(function):
                missing.append(f"{full_name}.{attribute}")
    assert not missing, "no docstring:\n" + "\n".join(missing)
