"""The service records (pgha.service) and the plan's one order (pgha.plan.ORDER) agree.

Each step name of ORDER belongs to one service; every metrics source names the
alert that owns its loss, and that alert exists in rules.yml.
"""

from __future__ import annotations

import ast
import re

import pytest

from pgha import monitoring, plan, service
from pgha.files import REPO_DIR
from pgha.metrics import all_sources


def alert_names() -> set[str]:
    return set(re.findall(r"^\s*- alert: (\S+)\s*$", monitoring.RULES_PATH.read_text(), re.MULTILINE))


def unowned_losses(sources: tuple[service.MetricsSource, ...]) -> list[str]:
    """The sources whose loss alert rules.yml does not define."""
    alerts = alert_names()
    return [f"{s.name}: {s.loss_alert}" for s in sources if s.loss_alert not in alerts]


def test_every_step_of_the_order_has_one_service():
    records = plan.services()
    declared = [name for record in records for name in record.step_names]
    assert sorted(declared) == sorted(plan.step_names())
    # Found without a list: every service package of pgha declares its record.
    assert {r.name for r in records} >= {
        "system",
        "etcd",
        "patroni",
        "haproxy",
        "keepalived",
        "fastpath",
        "host-maintenance",
        "backup",
        "databases",
        "pooler",
        "rolling",
        "monitoring",
        "verify",
        "witness",
    }


def test_a_step_missing_from_the_order_or_declared_twice_fails(monkeypatch: pytest.MonkeyPatch):
    without_pooler = tuple(
        tuple(n for n in entry if n != "pooler") if isinstance(entry, tuple) else entry
        for entry in plan.ORDER
    )
    monkeypatch.setattr(plan, "ORDER", without_pooler)
    with pytest.raises(ValueError, match="'pooler' of service pooler is not in ORDER"):
        plan.services()
    monkeypatch.setattr(plan, "ORDER", (*plan.ORDER, "no-such-step"))
    with pytest.raises(ValueError, match="'no-such-step' of ORDER belongs to no service"):
        plan.services()


def test_every_metrics_source_names_an_alert_that_owns_its_loss():
    sources = all_sources()
    assert {s.name for s in sources} == {"node", "postgres", "pgbouncer", "patroni", "haproxy", "etcd"}
    assert unowned_losses(sources) == []
    assert {s.name: s.loss_alert for s in sources}["pgbouncer"] == "PghaPoolerDown"
    # The check can fail: a source whose alert is missing is named.
    lost = service.MetricsSource("lost", loss_alert="PghaNoSuchAlert", serves=lambda spec, node: True)
    assert unowned_losses((*sources, lost)) == ["lost: PghaNoSuchAlert"]


def test_no_module_hard_codes_a_phase_number():
    """The order lives in pgha.plan.ORDER alone (the old numbers: components/legacy_names.py only)."""
    sources = [*(REPO_DIR / "pgha").rglob("*.py"), *(REPO_DIR / "components").glob("*.py")]
    found = [
        f"{path.relative_to(REPO_DIR)}: {match}"
        for path in sources
        if path.name != "legacy_names.py"
        for match in re.findall(r"\b\w*PHASE\w*\b", path.read_text())
    ]
    assert found == []


def test_haproxy_does_not_import_monitoring():
    """Monitoring builds on HAProxy (its port), not the other way round: no import cycle."""
    tree = ast.parse((REPO_DIR / "pgha/haproxy/__init__.py").read_text())
    imported = {
        alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names
    } | {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "monitoring" not in imported
