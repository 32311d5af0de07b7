"""The lab's layers: each module imports only from its own layer or those below, and no
import circle exists among the lab's modules (imports inside functions and under
TYPE_CHECKING count too). The order is declared once, ``lab.LAYERS``."""

from __future__ import annotations

from pathlib import Path

import pytest

import lab
from tests.import_graph import cycles, imports_of

LAB_ROOT = Path(lab.__file__).parent


def layer_of(module: str) -> str | None:
    """The layer a module belongs to: its first name under the root (None for the root)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def upward_imports(graph: dict[str, set[str]], layers: tuple[str, ...]) -> list[str]:
    """Imports from a higher layer, and modules in no declared layer."""
    rank = {layer: i for i, layer in enumerate(layers)}
    problems = []
    for module, targets in sorted(graph.items()):
        source = layer_of(module)
        if source is None:
            problems += [f"{module} (the root) imports {t}" for t in sorted(targets)]
            continue
        if source not in rank:
            problems.append(f"{module}: its layer {source!r} is not declared in LAYERS")
            continue
        for target in sorted(targets):
            wanted = layer_of(target)
            if wanted is not None and rank.get(wanted, len(layers)) > rank[source]:
                problems.append(f"{module} ({source}) imports {target} ({wanted}), a higher layer")
    return problems


def test_layers_only_import_downward() -> None:
    assert upward_imports(imports_of(LAB_ROOT), lab.LAYERS) == []


def test_no_import_circle_among_lab_modules() -> None:
    assert cycles(imports_of(LAB_ROOT)) == []


def test_every_layer_is_a_module_or_package_of_the_lab() -> None:
    present = {layer_of(m) for m in imports_of(LAB_ROOT)} - {None}
    assert present == set(lab.LAYERS)


# ---- the detector catches what it must ------------------------------------------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "lab"
    for name, text in {"__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


LAYERS = ("low", "high")


def test_an_upward_import_inside_a_function_is_found(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "low/__init__.py": "",
            "low/reader.py": "def f():\n    from ..high import verbs\n",
            "high/__init__.py": "",
            "high/verbs.py": "from ..low import reader\n",
        },
    )
    graph = imports_of(root)
    assert graph["lab.low.reader"] == {"lab.high.verbs"}
    assert upward_imports(graph, LAYERS) == [
        "lab.low.reader (low) imports lab.high.verbs (high), a higher layer"
    ]


@pytest.mark.parametrize("guard", ["if TYPE_CHECKING:\n    ", ""])
def test_a_circle_is_found_even_under_type_checking(tmp_path: Path, guard: str) -> None:
    """The old tree's circle: cluster imported observe, observe cluster (for its type)."""
    root = _tree(
        tmp_path,
        {
            "low/__init__.py": "",
            "low/cluster.py": "from . import observe\n",
            "low/observe.py": f"from typing import TYPE_CHECKING\n{guard}from .cluster import Lab\n",
        },
    )
    assert cycles(imports_of(root)) == [["lab.low.cluster", "lab.low.observe", "lab.low.cluster"]]


def test_an_undeclared_layer_is_found(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"low.py": "", "stray.py": "from . import low\n"})
    assert upward_imports(imports_of(root), LAYERS) == [
        "lab.stray: its layer 'stray' is not declared in LAYERS"
    ]
