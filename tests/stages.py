"""The test stages, cheapest first: unit -> validators -> smoke -> cluster -> ha.

A test's stage follows from where it lives (STAGE_PATHS, the one table); the
root conftest marks each test with its stage, sorts the run by stage, gives
each stage its time limit, and marks every stage but unit ``lab`` (needs root,
the lab tools and the Debian image), so ``-m "not lab"`` is the fast part.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from lab.wait import scaled

STAGES = ("unit", "validators", "smoke", "cluster", "ha")

# First match wins: the smoke test sits in tests/lab but runs before the cluster tests.
STAGE_PATHS = (
    ("tests/core/", "unit"),
    ("tests/pulumi/", "unit"),
    ("tests/tooling/", "unit"),
    ("tests/docs/", "unit"),
    ("tests/validators/", "validators"),
    ("tests/lab/test_machine_smoke.py", "smoke"),
    ("tests/lab/", "cluster"),
    ("tests/ha/", "ha"),
)

# Per-test limit (setup included: the first test of a stack brings its lab up, the first
# validator or smoke test may build an image), in nominal seconds scaled by
# $PGHA_TIMEOUT_FACTOR. The longest tests measured: see dev/testing.md.
STAGE_TIMEOUTS = {"unit": 120.0, "validators": 1800.0, "smoke": 1800.0, "cluster": 900.0, "ha": 1200.0}

# Set by .ci/run when it runs as root: a lab test that skips is a failure there.
LAB_REQUIRED_ENV = "PGHA_LAB_REQUIRED"

ROOT = Path(__file__).resolve().parent.parent


def stage_of(path: Path) -> str:
    """The stage of a test file; a file outside the table is an error, not a silent default."""
    relative = path.resolve().relative_to(ROOT).as_posix()
    for prefix, stage in STAGE_PATHS:
        if relative.startswith(prefix):
            return stage
    raise pytest.UsageError(f"{relative}: no test stage for this path (add it to tests/stages.py)")


def apply_stages(items: list[pytest.Item]) -> None:
    """Mark each test with its stage (and ``lab``, and its time limit), then sort by stage."""
    for item in items:
        stage = stage_of(item.path)
        declared = {m.name for m in item.iter_markers() if m.name in STAGES}
        if declared - {stage}:
            raise pytest.UsageError(f"{item.nodeid}: marked {sorted(declared)} but lives in stage {stage}")
        item.add_marker(stage)
        if stage != "unit":
            item.add_marker("lab")
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(scaled(STAGE_TIMEOUTS[stage])))
    # A stable sort keeps each module's order (and its module-scoped fixtures) intact.
    items.sort(key=lambda item: STAGES.index(item_stage(item)))


StackOf = Callable[[pytest.Item], str | None]  # the pooled lab stack a test uses, if any


def group_labs(items: list[pytest.Item], stack_of: StackOf) -> None:
    """Within each stage, run each lab stack's modules back to back, so one lab runs at a time.

    A lab is up from its stack's first test to its last. In file order CI's ha stage
    kept three labs up at once (load average 40 on 2 cores). So, per stage: modules
    without a lab first, then the stacks the stage before used, then the others, then
    the ones the stage after uses. A module keeps its place among its stack's modules,
    and its tests their order.
    """
    module_stack: dict[Path, str | None] = {}
    for item in items:
        if module_stack.get(item.path) is None:
            module_stack[item.path] = stack_of(item)
    first_seen = {stack: n for n, stack in enumerate(dict.fromkeys(module_stack.values()))}
    per_stage = [[item for item in items if item_stage(item) == name] for name in STAGES]
    stacks = [{module_stack[item.path] for item in stage_items} - {None} for stage_items in per_stage]

    def rank(item: pytest.Item, before: set[str | None], after: set[str | None]) -> tuple[int, int]:
        stack = module_stack[item.path]
        if stack is None:
            return (0, 0)
        tier = 1 if stack in before else 3 if stack in after else 2
        return (tier, first_seen[stack])

    items.clear()
    for index, stage_items in enumerate(per_stage):
        before = next((s for s in reversed(stacks[:index]) if s), set())
        after = next((s for s in stacks[index + 1 :] if s), set())
        # Stable: modules and tests keep their order within a stack.
        items.extend(sorted(stage_items, key=lambda item, b=before, a=after: rank(item, b, a)))


def item_stage(item: pytest.Item) -> str:
    return next(m.name for m in item.iter_markers() if m.name in STAGES)


def lab_required() -> bool:
    return os.environ.get(LAB_REQUIRED_ENV, "") not in ("", "0")
