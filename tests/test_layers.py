"""The architecture: imports only point down the layer stack (docs/design.md)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "reactor"

# Lower number = lower layer.  A module may import from its own layer or below;
# the pure layers import nothing of ours.  Modules of a sub-package
# (transport, compat) importing each other are not package layers and are not checked.
LAYER = {
    "futures": 0,
    "timeouts": 0,
    "core": 0,
    "wait": 0,
    "addresses": 1,
    "framing": 1,
    "proxyproto": 1,
    "transport": 2,
    "embed": 2,
    "tasks": 2.5,  # above transport and core, below the surfaces (docs/design.md)
    "client": 3,
    "streams": 3,
    "reqrep": 3,
    "socketserver": 3,
    "easy": 3,
    "compat": 3,
    "workers": 3,
    "control": 3,
    "metrics": 3,
    "cli": 4,
    "top": 4,
    "__init__": 5,
    "__main__": 5,
}
PURE = {"addresses", "framing", "proxyproto", "wait", "timeouts"}  # import nothing from the package


def package_imports(path: Path) -> set[str]:
    """The reactor modules a file imports (first component after the package)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level >= 1:
                if node.module:
                    found.add(node.module.split(".")[0])
                else:
                    found.update(alias.name for alias in node.names)
            elif node.module and node.module.split(".")[0] == "reactor":
                parts = node.module.split(".")
                found.add(parts[1] if len(parts) > 1 else "__init__")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "reactor":
                    found.add(parts[1] if len(parts) > 1 else "__init__")
    return found


def layer_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    if rel.parts[0] in ("transport", "compat"):
        return rel.parts[0]
    name = rel.stem
    return name.lstrip("_").split("_")[0] if name not in LAYER else name


def test_imports_point_down() -> None:
    """No module imports from a layer above its own; pure layers import nothing of ours."""
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        me = layer_of(path)
        late = LATE_BOUND if me == "core" else FUTURES_LATE_BOUND if me == "futures" else set()
        if me not in LAYER:
            problems.append(f"{path.name}: unknown layer {me!r} (add it to LAYER)")
            continue
        for target in package_imports(path) - late:
            them = layer_of(PACKAGE / f"{target}.py") if target in LAYER else target
            if them not in LAYER:
                continue
            if me in PURE:
                problems.append(f"{path.name} is pure but imports {target}")
            elif LAYER[them] > LAYER[me]:
                problems.append(f"{path.relative_to(PACKAGE)} ({me}) reaches up to {target}")
    assert problems == []


def module_level_imports(path: Path) -> set[str]:
    """The reactor modules a file imports outside function bodies (``if TYPE_CHECKING:`` blocks never run)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if isinstance(child, ast.If) and isinstance(child.test, ast.Name) and child.test.id == "TYPE_CHECKING":
                continue  # for the type checker only: not imported when the module runs
            if isinstance(child, ast.ImportFrom) and child.level >= 1 and child.module:
                found.add(child.module.split(".")[0])
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


#: The Reactor methods that reach a surface (or the transport layer's worker
#: pool, for run_in_executor and getaddrinfo) through a function-level import.
LATE_BOUND = {"streams", "client", "tasks", "transport", "control", "metrics"}

#: futures.to_asyncio / to_concurrent load their bridges from embed when called.
FUTURES_LATE_BOUND = {"embed"}


def test_core_imports_nothing_above() -> None:
    """core.py imports only futures and its wait at module level; core's methods late-bind surfaces."""
    assert module_level_imports(PACKAGE / "core.py") <= {"futures", "_wait"}
    assert package_imports(PACKAGE / "core.py") <= {"futures", "_wait"} | LATE_BOUND
    assert module_level_imports(PACKAGE / "futures.py") <= {"core"}
    assert package_imports(PACKAGE / "futures.py") <= {"core"} | FUTURES_LATE_BOUND


def test_every_subpackage_is_shipped() -> None:
    """pyproject.toml lists every package directory, so a non-editable install is whole."""
    import tomllib

    config = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())
    shipped = set(config["tool"]["setuptools"]["packages"])
    found = {
        ".".join(path.parent.relative_to(PACKAGE.parent).parts) for path in PACKAGE.rglob("__init__.py")
    }
    assert found <= shipped, f"missing from [tool.setuptools] packages: {sorted(found - shipped)}"


# ------------------------------------------------------------ the benchmarks, outside the package

BENCHMARKS = PACKAGE.parent / "benchmarks"


def module_level_benchmark_imports(path: Path) -> set[str]:
    """The ``benchmarks`` modules a benchmark file imports at module level (not inside a function)."""
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                found.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
            elif node.module and node.module.split(".")[0] == "benchmarks":
                parts = node.module.split(".")
                found.add(parts[1] if len(parts) > 1 else "__init__")
    return found - {"__init__"}


def test_the_package_never_imports_the_benchmarks() -> None:
    """No module of reactor imports ``benchmarks``: it is not installed with the package."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "benchmarks"]
    assert not offenders
    assert not (PACKAGE / "bench").exists()


def test_benchmark_modules_import_each_other_without_a_cycle() -> None:
    """The benchmark modules' module-level imports of each other form no cycle (runner and soak included)."""
    graph = {path.stem: module_level_benchmark_imports(path) for path in BENCHMARKS.glob("*.py")}
    assert graph["soak"] >= {"processes"} and "runner" not in graph["soak"]
    done: set[str] = set()

    def visit(name: str, trail: tuple[str, ...]) -> None:
        assert name not in trail, f"import cycle: {' -> '.join((*trail, name))}"
        if name in done or name not in graph:
            return
        for target in sorted(graph[name]):
            visit(target, (*trail, name))
        done.add(name)

    for name in sorted(graph):
        visit(name, ())
