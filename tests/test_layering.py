"""The layering the design promises, checked on the source: `connectors` and `translators` are libraries that
import neither the app (`v2v_migrate`) nor each other, modules stay under 400 lines, and no module-level
import circle exists inside the product. Every import counts, also those inside functions (lazy imports
close circles too, just later)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("connectors", "translators", "v2v_migrate")
FORBIDDEN = {"connectors": ("v2v_migrate", "translators"), "translators": ("v2v_migrate", "connectors")}


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(path: Path) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
            found += [(f"{node.module}.{a.name}", node.lineno) for a in node.names]
    return found


def test_the_libraries_import_neither_the_app_nor_each_other():
    bad = []
    for name, path in _modules().items():
        top = name.split(".")[0]
        for imported, line in _imports(path):
            if imported.split(".")[0] in FORBIDDEN.get(top, ()):
                bad.append(f"{path.relative_to(REPO)}:{line} imports {imported}")
    assert not bad, "\n".join(bad)


def test_no_import_circle_between_product_modules():
    modules = _modules()
    graph = {m: {i for i, _ in _imports(p) if i in modules and i != m}
             for m, p in modules.items()}
    # A package's __init__ is imported with any of its modules: an edge to a module implies one to its package.
    for m in graph:
        graph[m] |= {".".join(d.split(".")[:k]) for d in set(graph[m]) for k in range(1, d.count(".") + 1)
                     if ".".join(d.split(".")[:k]) != m and not m.startswith(".".join(d.split(".")[:k]) + ".")}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                pytest.fail("import circle: " + " -> ".join(path[path.index(n):] + [n]))
            if n not in state:
                visit(n)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_product_modules_stay_under_400_lines():
    long = {str(p.relative_to(REPO)): n for p in _modules().values() if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long
