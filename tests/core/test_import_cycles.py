"""No import cycle between the parts of pgha: each depends one way, at module level and inside functions.

A part is a subpackage (``pgha/patroni/``) or a top-level module (``pgha/spec.py``).
Imports are read by ``tests/import_graph.py``, including those inside functions.
"""

from __future__ import annotations

import ast

from pgha.files import CORE_DIR
from tests.import_graph import cycles, imports_of


def part_of(module: str) -> str:
    """``pgha.patroni.hostaware`` -> ``pgha.patroni``; ``pgha.spec`` -> ``pgha.spec``."""
    return ".".join(module.split(".")[:2])


def dependencies() -> dict[str, set[str]]:
    """Part -> the other parts it imports (the package root, which only re-exports, left out)."""
    graph: dict[str, set[str]] = {}
    for module, targets in imports_of(CORE_DIR).items():
        source = part_of(module)
        if source == "pgha":
            continue
        graph.setdefault(source, set()).update({part_of(t) for t in targets} - {source, "pgha"})
    return graph


def test_no_import_cycle_between_the_parts_of_pgha():
    assert cycles(dependencies()) == []


def test_the_detector_sees_a_cycle_inside_a_function():
    """The negative control: an import inside a function closes a cycle the test reports."""
    graph = dependencies()
    assert "pgha.patroni" not in graph["pgha.spec"]
    graph["pgha.spec"] = graph["pgha.spec"] | {"pgha.patroni"}  # as if spec imported patroni in a function
    assert any({"pgha.spec", "pgha.patroni"} <= set(c) for c in cycles(graph))
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
        assert imports_of(CORE_DIR)["pgha.haproxy"]
