"""A stack change replayed on the running dev lab: the plan from two mock runs, carried out under a writer.

One representative change, there and back: a login role added, then removed
(``pgha:roles``). The plan creates its password and replaces the
``databases`` steps' Commands, then ``verify``'s; no VM input changes.
Carried out, only those steps run again, and the writer must see the
program's rule kept: at most 5 s without an acknowledged write, none lost.
The other changes (a parameter needing a restart, hardware refused, the
control without guards) are the bench: ``python -m lab change --to FILE``
(docs/proxmox-changes.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lab.cluster import Lab
from lab.scenarios import change
from pgha.files import REPO_DIR

pytestmark = pytest.mark.lab

ROLE = "replay_reporting"


def test_a_role_added_and_removed_reruns_its_steps_only(lab: Lab, tmp_path: Path) -> None:
    original = REPO_DIR / f"Pulumi.{lab.stack}.yaml"
    document = yaml.safe_load(original.read_text())
    roles = document["config"].get("pgha:roles") or []
    document["config"]["pgha:roles"] = [*roles, {"name": ROLE}]
    there = tmp_path / f"Pulumi.{lab.stack}.next.yaml"
    there.write_text(yaml.safe_dump(document))
    for start, to in ((original, there), (there, original)):
        plan = change.compute(lab.stack, to, start=start)
        print(plan.render(lab.stack))
        assert plan.verdict() == "rolling" and plan.vm_actions() == {}, plan.render()
        rerun = {s.resource.name for s in plan.steps if s.op == "replace"}
        assert {f"{n.name}-databases" for n in lab.spec.postgres_nodes} <= rerun, rerun
        summary = change.carry_out(lab, plan, change.new_spec(lab.stack, to))
        print(summary)
        assert any("databases" in line for line in summary["done"]), summary
        assert summary["rule"] == "kept", summary
    assert ROLE not in {r.name for r in lab.spec.login_roles}
