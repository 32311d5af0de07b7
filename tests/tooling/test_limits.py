"""tests/ha/limits.py: one table of fault limits, read in order and scaled for slow machines."""

from __future__ import annotations

import ast
import fnmatch
from pathlib import Path

import pytest

from tests.ha.limits import LIMITS_S, NO_LIMIT, NoRow, limit, row


def test_no_pattern_is_shadowed_by_an_earlier_one() -> None:
    """limit() takes the first match: a pattern matched by an earlier one would never apply."""
    patterns = [*LIMITS_S, *NO_LIMIT]
    for index, pattern in enumerate(patterns):
        for earlier in patterns[:index]:
            assert not fnmatch.fnmatchcase(pattern, earlier), f"{pattern!r} is shadowed by {earlier!r}"


def test_limits_scale_with_the_timeout_factor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGHA_TIMEOUT_FACTOR", "2")
    assert limit("planned_switchover") == 2 * LIMITS_S["planned_switchover"]
    assert limit("host_crash_with_witness") == 2 * LIMITS_S["host_crash_with_witness"]
    assert limit("host_crash_pve1") == 2 * LIMITS_S["host_crash_*"]
    assert limit("quorum_host_crash_pve1") is None  # declared: NO_LIMIT says why


# ---- every fault scenario has a row ---------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
# Where the fault scenarios are run that check_result judges: the lab and the HA tests.
SCENARIO_SOURCES = (ROOT / "lab", ROOT / "tests" / "ha")


def _names(expr: ast.expr, assigned: dict[str, list[ast.expr]]) -> list[str]:
    """The scenario names an argument can be: an f-string's fields become ``x``; a variable is
    every string its assignments in the function hold."""
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        return [expr.value]
    if isinstance(expr, ast.JoinedStr):
        parts = [v.value if isinstance(v, ast.Constant) else "x" for v in expr.values]
        return ["".join(str(p) for p in parts)]
    if isinstance(expr, ast.Name) and expr.id in assigned:
        found = []
        for value in assigned[expr.id]:
            for node in ast.walk(value):
                if isinstance(node, ast.JoinedStr) or (
                    isinstance(node, ast.Constant) and isinstance(node.value, str)
                ):
                    found += _names(node, {})
        return found
    raise AssertionError(f"a scenario name the test cannot read: {ast.unparse(expr)}")


def scenario_names(source: str) -> list[str]:
    """The names of every ``scenario(lab, NAME)`` / ``harness.scenario(lab, NAME)`` call."""
    names = []
    for function in ast.walk(ast.parse(source)):
        if not isinstance(function, ast.FunctionDef):
            continue
        assigned: dict[str, list[ast.expr]] = {}
        for node in ast.walk(function):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        assigned.setdefault(target.id, []).append(node.value)
        for node in ast.walk(function):
            if not isinstance(node, ast.Call) or len(node.args) < 2:
                continue
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if called == "scenario":
                names += _names(node.args[1], assigned)
    return names


def fault_scenarios() -> dict[str, str]:
    """Every fault scenario's name (fields as ``x``) -> the file it is run in."""
    found = {}
    for root in SCENARIO_SOURCES:
        for path in sorted(root.rglob("*.py")):
            for name in scenario_names(path.read_text()):
                found[name] = str(path.relative_to(ROOT))
    return found


def test_every_fault_scenario_has_a_row() -> None:
    """A fault missing from the table would get no time limit: it must have a row, in LIMITS_S
    or in NO_LIMIT with the reason it has none."""
    scenarios = fault_scenarios()
    assert {"primary_power_off", "host_crash_x", "quorum_host_crash_x", "standby_x_x"} <= set(scenarios)
    missing = []
    for name, where in sorted(scenarios.items()):
        try:
            row(name)
        except NoRow:
            missing.append(f"{name} ({where})")
    assert missing == []


def test_the_vip_holders_two_names_are_both_found() -> None:
    assert {"vip_holder_dies", "vip_holder_dies_with_primary"} <= set(fault_scenarios())


def test_a_new_fault_without_a_row_is_refused() -> None:
    source = 'def brand_new(lab):\n    with scenario(lab, f"brand_new_{lab.stack}") as run:\n        pass\n'
    assert scenario_names(source) == ["brand_new_x"]
    with pytest.raises(NoRow, match="brand_new_x"):
        row("brand_new_x")
    with pytest.raises(NoRow):
        limit("brand_new_x")


def test_a_row_is_in_one_table_only_and_says_why_it_has_no_limit() -> None:
    assert not set(LIMITS_S) & set(NO_LIMIT)
    assert all(reason.strip() for reason in NO_LIMIT.values())
