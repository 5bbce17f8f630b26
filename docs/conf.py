"""Sphinx configuration for the reactor documentation site.

Build it with ``python -m sphinx -W -n --keep-going -b html docs docs/_build/html``
(the ``docs`` extra installs Sphinx, furo and myst-parser).  The pages are
Markdown (MyST); the API reference in ``api/`` is generated from the
docstrings by autodoc.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path
from typing import Any

from docutils import nodes
from pygments.lexer import RegexLexer, bygroups
from pygments.token import Comment, Keyword, Name, Number, Text, Whitespace
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util.nodes import make_refnode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import reactor  # noqa: E402

project = "reactor"
author = "the reactor authors"
copyright = "the reactor authors"
release = reactor.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "myst_parser",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

html_theme = "furo"
html_title = f"reactor {release}"

# Single backquotes in docstrings name Python objects (`Reactor.run_once`).
default_role = "py:obj"

# Markdown: heading anchors, so that pages can link to sections.
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {
    "members": True,
    "show-inheritance": True,
}
autodoc_preserve_defaults = True

nitpicky = True
# The Python documentation cannot be reached through intersphinx when the site
# is built offline, so references to standard-library and third-party names
# in signatures and docstrings are accepted as they are.
STDLIB_MODULES = (
    "_socket|_ssl|abc|asyncio|collections|concurrent|contextlib|dataclasses|enum|errno|io|ipaddress"
    "|logging|multiprocessing|os|queue|selectors|signal|socket|socketserver|ssl|subprocess|threading"
    "|time|tkinter|types|typing|weakref"
)
# Third-party packages the GUI drivers of `reactor.embed` name in their signatures.
THIRD_PARTY_MODULES = "PyQt5|PyQt6|PySide2|PySide6|qtpy"
nitpick_ignore_regex = [
    # Standard-library and third-party modules and the names in them.
    ("py:.*", rf"({STDLIB_MODULES}|{THIRD_PARTY_MODULES})(\..*)?"),
    # Type variables of generic classes and functions: placeholders, not API.
    ("py:.*", r"(reactor\.[\w.]+\.)?(T|P|R|Ts)"),
]


# -- Resolving what a docstring names ---------------------------------------
#
# Docstrings name objects as a reader of the source would: `StreamTransport`
# in `reactor.streams`, `Reactor.run_once` anywhere, `fileno()` inside
# `Reactor`, `close` inside a class that inherits it, and
# `reactor.get_default_reactor` by the name the package exports.  Sphinx's
# Python domain looks a plain name up only in the current class and module.
# When that fails, look it up as the reader does: drop a call's parentheses,
# follow a name the package re-exports to the module that defines it, look an
# attribute up along the class's bases, and then take the one documented
# object of the package whose name ends with it, nearest the current class or
# module first.  A name that matches no object, or several equally near,
# stays unresolved and fails the nitpicky build.
#
# Private names (`_MapDriver`, `Connection._set_state`) are named in the
# essays that open a module, for readers of the source; they are not part of
# the API and have no entry to link to, so they are shown as code.


def _import_object(name: str) -> Any:
    """The object a dotted ``reactor...`` name stands for, or None."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            obj = getattr(obj, attribute, None)
        return obj
    return None


def _reexported_name(name: str) -> str | None:
    """The defining module's name for *name* when it is a re-export (``reactor.Reactor``)."""
    module_name, _, attribute = name.rpartition(".")
    if not module_name.startswith("reactor"):
        return None
    obj = _import_object(name)
    defined_in = getattr(obj, "__module__", None)
    if isinstance(defined_in, str) and defined_in != module_name and defined_in.startswith("reactor"):
        return f"{defined_in}.{attribute}"
    return None


def _along_bases(objects: dict[str, Any], class_name: str, attribute: str) -> str | None:
    """The documented *attribute* of the class *class_name* or of its nearest base that documents it."""
    cls = _import_object(class_name)
    if not isinstance(cls, type):
        return None
    for base in cls.__mro__:
        candidate = f"{base.__module__}.{base.__qualname__}.{attribute}"
        if candidate in objects:
            return candidate
    return None


def _find(objects: dict[str, Any], name: str, module: str, cls: str) -> str | None:
    """The full name of the documented object *name* means in *module* and *cls* (see above)."""
    canonical = _reexported_name(name)
    if canonical in objects:
        return canonical
    if cls and "." not in name:
        inherited = _along_bases(objects, f"{module}.{cls}", name)
        if inherited:
            return inherited
    head, _, attribute = name.rpartition(".")
    if head and "." not in attribute:
        owner = _find(objects, head, module, cls)
        if owner is not None:
            return _along_bases(objects, owner, attribute)
    suffix = "." + name
    matches = [full for full in objects if full.startswith("reactor") and (full == name or full.endswith(suffix))]
    for scope in ([f"{module}.{cls}."] if cls else []) + [f"{module}.", ""]:
        near = [full for full in matches if full.startswith(scope)]
        if len(near) == 1:
            return near[0]
        if near:
            return None
    return None


def _resolve_short_name(
    app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: nodes.TextElement
) -> nodes.Element | None:
    """Resolve a Python reference the domain did not find (see the comment above)."""
    if node.get("refdomain") != "py":
        return None
    name = re.sub(r"\(.*\)$", "", node["reftarget"]).lstrip("~.")
    if not name:
        return None
    if any(part.startswith("_") for part in name.split(".")):
        return nodes.literal(contnode.astext(), contnode.astext())
    objects = env.get_domain("py").objects  # type: ignore[attr-defined]
    found = _find(objects, name, node.get("py:module") or "", node.get("py:class") or "")
    if found is None:
        return None
    entry = objects[found]
    return make_refnode(app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, found)


def _public_bases(app: Sphinx, name: str, obj: Any, options: Any, bases: list[type]) -> None:
    """Show a private base class (``easy._DatagramEndpoint``) as the public classes it extends."""
    index = 0
    while index < len(bases):
        base = bases[index]
        if base.__name__.startswith("_") and base.__module__.startswith("reactor"):
            bases[index : index + 1] = [b for b in base.__bases__ if b not in bases]
        else:
            index += 1


class HAProxyLexer(RegexLexer):
    """HAProxy configuration, which Pygments has no lexer for: sections, keywords, comments."""

    name = "HAProxy"
    aliases = ["haproxy"]
    tokens = {
        "root": [
            (r"#.*?$", Comment.Single),
            (r"^(global|defaults|frontend|backend|listen|resolvers|peers)\b", Keyword.Namespace),
            (r"^(\s+)([\w.-]+)", bygroups(Whitespace, Keyword)),
            (r"\b\d+(ms|s|m|h)?\b", Number),
            (r"\S+", Name),
            (r"\s+", Text),
        ]
    }


def setup(app: Sphinx) -> None:
    """Connect the hooks above and add the configuration-file lexers."""
    app.add_lexer("haproxy", HAProxyLexer)
    app.connect("missing-reference", _resolve_short_name)
    app.connect("autodoc-process-bases", _public_bases)
