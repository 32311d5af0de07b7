"""No import cycle between the parts of pgha: each depends one way, at module level and inside functions.

A part is a subpackage (``pgha/patroni/``) or a top-level module (``pgha/spec.py``).
Imports are read from the source with ``ast``, including those inside
functions, which Python resolves only at run time: a cycle hidden in a
function is still a cycle in the design.
"""

from __future__ import annotations

import ast
from pathlib import Path

from pgha.files import CORE_DIR

# Cycles another change removes; each one named here with the reason it may remain meanwhile.
KNOWN_CYCLES: set[frozenset[str]] = set()


def part_of(module: str) -> str:
    """``pgha.patroni.hostaware`` -> ``pgha.patroni``; ``pgha.spec`` -> ``pgha.spec``."""
    return ".".join(module.split(".")[:2])


def module_name(path: Path) -> str:
    relative = path.relative_to(CORE_DIR.parent).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    """The pgha modules ``path`` imports, anywhere in it."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "pgha"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target.split(".")[0] != "pgha":
                continue
            for alias in node.names:
                # ``from .. import patroni`` names a submodule; ``from ..files import Step`` a module.
                candidate = f"{target}.{alias.name}"
                is_module = (CORE_DIR.parent / candidate.replace(".", "/")).is_dir() or (
                    CORE_DIR.parent / (candidate.replace(".", "/") + ".py")
                ).is_file()
                found.add(candidate if is_module else target)
    return found


def dependencies() -> dict[str, set[str]]:
    """Part -> the other parts it imports (the package root, which only re-exports, left out)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(CORE_DIR.rglob("*.py")):
        source = part_of(module_name(path))
        if source == "pgha":
            continue
        targets = {part_of(m) for m in imported_modules(path)} - {source, "pgha"}
        graph.setdefault(source, set()).update(targets)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected parts of more than one node (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_between_the_parts_of_pgha():
    found = [c for c in cycles(dependencies()) if frozenset(c) not in KNOWN_CYCLES]
    assert found == [], found


def test_the_detector_sees_a_cycle_inside_a_function(tmp_path):
    """The negative control: an import inside a function closes a cycle the test reports."""
    graph = dependencies()
    assert "pgha.patroni" not in graph["pgha.spec"]
    graph["pgha.spec"] = graph["pgha.spec"] | {"pgha.patroni"}  # as if spec imported patroni in a function
    assert any({"pgha.spec", "pgha.patroni"} <= c for c in cycles(graph))
    # And the reader finds imports inside functions.
    module = CORE_DIR / "haproxy" / "__init__.py"
    inside = [
        n
        for f in ast.walk(ast.parse(module.read_text()))
        if isinstance(f, ast.FunctionDef)
        for n in ast.walk(f)
        if isinstance(n, ast.ImportFrom)
    ]
    if inside:  # a function-level import, where one exists, is seen
        assert imported_modules(module)
