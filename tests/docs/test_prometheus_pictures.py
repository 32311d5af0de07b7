"""The Prometheus screenshots in docs/pictures/ show the current alert rules and dashboard query.

They need a running lab (``python -m lab pictures prometheus``), so they are
not re-taken here: their manifest is compared with rules.yml and
dashboard.json, and a new or renamed alert means the screenshots must be
re-taken.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from lab import pictures
from lab.pictures import prometheus
from pgha import monitoring

MANIFEST = pictures.PICTURES_DIR / prometheus.MANIFEST


def manifest_problems(manifest: dict, rules_path: Path = monitoring.RULES_PATH) -> list[str]:
    """What the screenshots no longer show: alerts added, renamed or removed, another graph query."""
    problems = []
    shown, current = manifest["alerts"]["rules"], prometheus.alert_names(rules_path)
    if shown != current:
        problems.append(f"alerts shown {shown}, rules.yml has {current}")
    query = prometheus.graph_query(manifest["stack"], manifest["graph"]["panel"])
    if manifest["graph"]["query"] != query:
        problems.append(f"graph shows {manifest['graph']['query']!r}, the panel's query is {query!r}")
    for entry in (manifest["alerts"], manifest["graph"]):
        if not (pictures.PICTURES_DIR / entry["file"]).is_file():
            problems.append(f"{entry['file']} missing")
    return problems


def test_the_prometheus_screenshots_show_the_current_rules() -> None:
    problems = manifest_problems(json.loads(MANIFEST.read_text()))
    assert not problems, (
        "re-take them (root, lab up): venv/bin/python -m lab pictures prometheus\n" + "\n".join(problems)
    )


@pytest.mark.parametrize("change", ["rename", "add"])
def test_a_changed_alert_makes_the_screenshots_stale(tmp_path: Path, change: str) -> None:
    rules = yaml.safe_load(monitoring.RULES_PATH.read_text())
    alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
    if change == "rename":
        alerts[0]["alert"] += "Renamed"
    else:
        rules["groups"][0]["rules"].append({"alert": "PghaSomethingNew", "expr": "vector(1)"})
    changed = tmp_path / "rules.yml"
    changed.write_text(yaml.safe_dump(rules))
    manifest = prometheus.manifest("dev", "now")
    assert any("alerts shown" in p for p in manifest_problems(manifest, changed))
