"""A stack change replayed on the running dev lab: the plan from two mock runs, carried out under a writer.

One representative change, there and back: a PostgreSQL parameter that needs
a restart (``max_connections``). The plan replaces only the Patroni steps'
Commands (no VM input changes); carried out, the restart rolls one member at
a time, primary last after a switchover, and the writer must see at most 5 s
without an acknowledged write and lose nothing (the program's rule for a
rolling change). The whole table of changes is the bench, not CI:
``python -m lab change --to FILE`` (docs/proxmox-changes.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lab.cluster import Lab
from lab.scenarios import change
from pgha.files import REPO_DIR

pytestmark = pytest.mark.lab


def stack_file_with(lab: Lab, tmp_path: Path, name: str, **keys: object) -> Path:
    document = yaml.safe_load((REPO_DIR / f"Pulumi.{lab.stack}.yaml").read_text())
    document["config"].update({f"pgha:{k}": v for k, v in keys.items()})
    path = tmp_path / f"Pulumi.{lab.stack}.{name}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_a_parameter_needing_restart_rolls_with_no_write_lost(lab: Lab, tmp_path: Path) -> None:
    original = REPO_DIR / f"Pulumi.{lab.stack}.yaml"
    parameters = dict(lab.spec.postgres.parameters)
    wanted = int(parameters.get("max_connections", 100)) + 10
    there = stack_file_with(
        lab, tmp_path, "next", postgres={"parameters": {**parameters, "max_connections": wanted}}
    )
    back = stack_file_with(lab, tmp_path, "back", postgres={"parameters": parameters} if parameters else {})
    for start, to in ((original, there), (there, back)):
        plan = change.compute(lab.stack, to, start=start)
        print(plan.render(lab.stack))
        assert plan.verdict() == "rolling" and plan.vm_actions() == {}, plan.render()
        summary = change.carry_out(lab, plan, change.new_spec(lab.stack, to))
        print(summary)
        assert any("patroni" in line for line in summary["done"]), summary
        assert summary["rule"] == "kept", summary
    assert lab.spec.postgres.parameters == original_parameters(lab)


def original_parameters(lab: Lab) -> dict:
    return dict(change.new_spec(lab.stack, REPO_DIR / f"Pulumi.{lab.stack}.yaml").postgres.parameters)
