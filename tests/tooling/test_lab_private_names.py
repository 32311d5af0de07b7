"""Tests use the lab through its public names: no ``lab.<...>._something``, no ``_private``
imported from the lab, no private attribute of something imported from it or of the
``lab`` fixture, and no monkeypatching of one by name. A private name may change
without notice; what a test needs is part of the interface, named so."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS_ROOT = Path(__file__).resolve().parents[1]


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _from_lab(module: str | None) -> bool:
    return module is not None and (module == "lab" or module.startswith("lab."))


def private_uses(source: str, filename: str = "<test>") -> list[str]:
    """Each reach into a private lab name, as ``file:line: what``."""
    tree = ast.parse(source, filename)
    # Names bound to the lab by imports; ``lab`` is also the fixture holding a Lab.
    bound = {"lab"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            bound |= {(a.asname or a.name.split(".")[0]) for a in node.names if _from_lab(a.name)}
        elif isinstance(node, ast.ImportFrom) and _from_lab(node.module) and not node.level:
            bound |= {a.asname or a.name for a in node.names}
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.ImportFrom) and _from_lab(node.module) and not node.level:
            found += [
                (line, f"{where}: imports {node.module}.{a.name}") for a in node.names if _private(a.name)
            ]
            if any(_private(part) for part in (node.module or "").split(".")):
                found.append((line, f"{where}: imports from {node.module}"))
        elif isinstance(node, ast.Import):
            found += [
                (line, f"{where}: imports {a.name}")
                for a in node.names
                if _from_lab(a.name) and any(_private(p) for p in a.name.split("."))
            ]
        elif isinstance(node, ast.Attribute) and _private(node.attr) and _root_name(node.value) in bound:
            found.append((line, f"{where}: {ast.unparse(node)}"))
        elif (
            isinstance(node, ast.Call)
            and _called(node) in {"setattr", "getattr", "delattr", "hasattr"}
            and len(node.args) >= 2
            and _root_name(node.args[0]) in bound
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _private(node.args[1].value)
        ):
            found.append((line, f"{where}: {ast.unparse(node.func)}(..., {node.args[1].value!r})"))
    return [what for _, what in sorted(found)]


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _called(call: ast.Call) -> str | None:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None


def test_no_test_reaches_into_a_private_lab_name() -> None:
    found = []
    for path in sorted(TESTS_ROOT.rglob("*.py")):
        if path == Path(__file__).resolve():
            continue
        found += private_uses(path.read_text(), str(path.relative_to(TESTS_ROOT.parent)))
    assert found == []


# ---- the detector catches what it must ------------------------------------------------------


def test_each_way_of_reaching_in_is_found() -> None:
    source = """
import lab.machines.image
from lab.faults import standby
from lab.machines.image import _build
from lab.observation import observe as seen
from pgha import _other

def test(monkeypatch, lab):
    standby._actions(lab, "a", "etcd")
    lab.machines.image._build
    seen._link_up(lab, "x")
    lab._stale_machine("x")
    monkeypatch.setattr(seen, "_link_up", None)
    _other._fine
    standby.fault_actions(lab, "a", "etcd")
    lab.__class__
"""
    assert [line.split(": ", 1)[1] for line in private_uses(source)] == [
        "imports lab.machines.image._build",
        "standby._actions",
        "lab.machines.image._build",
        "seen._link_up",
        "lab._stale_machine",
        "monkeypatch.setattr(..., '_link_up')",
    ]
