"""The architecture's arrows, checked on the source: no import circles, and each room imports only what it may.

Imports are read with ``ast`` (every ``import`` statement, at any depth,
``TYPE_CHECKING`` blocks included: a circle hidden behind one is still a
circle in the design).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("app", "scheduler", "simulator")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The project modules ``path`` imports (a ``from pkg import mod`` counts as ``pkg.mod``)."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    modules = set(files)
    # A package's __init__ is not an edge worth following: importing app.x runs app/__init__.
    return {name: {m for m in imports_of(path, modules) if m != name and not name.startswith(m + ".")}
            for name, path in files.items()}


def external_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_there_is_no_import_circle():
    edges = graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                circle = stack[stack.index(nxt):] + [nxt]
                raise AssertionError("import circle: " + " -> ".join(circle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)


def rooms_imported_by(prefix: str) -> set[str]:
    edges = graph()
    return {target for source, targets in edges.items() if source == prefix or source.startswith(prefix + ".")
            for target in targets}


def test_relay_never_imports_routes_and_observe_imports_no_views():
    assert not {m for m in rooms_imported_by("app.relay") if m.startswith(("app.routes", "app.runtime"))}
    assert not {m for m in rooms_imported_by("app.observe")
                if m.startswith(("app.routes", "app.runtime", "app.relay", "app.naming"))}
    assert not {m for m in rooms_imported_by("app.naming") if m.startswith(("app.routes", "app.runtime", "app.relay"))}


def test_the_core_knows_nothing_of_http_or_the_app():
    for path in (ROOT / "scheduler").rglob("*.py"):
        assert not external_imports(path) & {"app", "flask", "werkzeug", "requests", "urllib3"}, path


def test_the_simulator_stands_alone():
    for path in (ROOT / "simulator").rglob("*.py"):
        assert not external_imports(path) & {"app", "scheduler", "flask", "requests", "gevent"}, path


def test_test_modules_have_unique_names():
    # The test folders are not packages: two test modules named alike cannot both be collected.
    names = [path.name for path in (ROOT / "tests").rglob("test_*.py")]
    assert sorted(names) == sorted(set(names)), sorted({n for n in names if names.count(n) > 1})
