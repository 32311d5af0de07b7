"""The stages: every test has one, the run is sorted cheapest first, and a CI run as root
cannot pass with a lab test skipped or none selected."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.stages import LAB_REQUIRED_ENV, ROOT, STAGES, group_labs, stage_of


def pytest_run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The suite's own pytest, in a child process, from the repository root.

    Not $PGHA_LAB_REQUIRED from this run (.ci/run sets it) unless ``env`` says so.
    """
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, LAB_REQUIRED_ENV: "", **(env or {})},
    )


def collected(*args: str) -> list[str]:
    result = pytest_run("--collect-only", "-q", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return [line for line in result.stdout.splitlines() if "::" in line]


@pytest.mark.parametrize(
    ("path", "stage"),
    [
        ("tests/core/test_plan.py", "unit"),
        ("tests/pulumi/test_program.py", "unit"),
        ("tests/validators/test_debian13_validators.py", "validators"),
        ("tests/lab/test_machine_smoke.py", "smoke"),
        ("tests/lab/test_cluster.py", "cluster"),
        ("tests/ha/test_faults.py", "ha"),
    ],
)
def test_a_tests_stage_follows_from_its_path(path: str, stage: str) -> None:
    assert stage_of(ROOT / path) == stage


def test_a_test_outside_the_table_is_an_error() -> None:
    with pytest.raises(pytest.UsageError, match="no test stage"):
        stage_of(ROOT / "tests" / "test_stray.py")


def test_the_run_goes_cheapest_first() -> None:
    order = [STAGES.index(stage_of(ROOT / Path(nodeid.split("::")[0]))) for nodeid in collected()]
    assert order == sorted(order)
    assert set(order) == set(range(len(STAGES)))  # every stage has tests


def test_not_lab_is_the_unit_stage_alone() -> None:
    """``-m "not lab"`` must not reach the validators (they build the Debian image)."""
    files = {nodeid.split("::")[0] for nodeid in collected("-m", "not lab")}
    assert files and all(stage_of(ROOT / f) == "unit" for f in files), sorted(files)


def test_with_lab_required_a_skipped_lab_test_fails() -> None:
    """.ci/run as root sets $PGHA_LAB_REQUIRED: a lab test that skips (here: no nspawn on PATH) fails."""
    no_tools = {"PATH": str(Path(sys.executable).parent)}
    smoke = "tests/lab/test_machine_smoke.py"
    relaxed = pytest_run(smoke, env={**no_tools, LAB_REQUIRED_ENV: ""})
    assert relaxed.returncode == 0 and " skipped" in relaxed.stdout, relaxed.stdout
    required = pytest_run(smoke, env={**no_tools, LAB_REQUIRED_ENV: "1"})
    assert required.returncode == 1, required.stdout
    assert f"lab test skipped while {LAB_REQUIRED_ENV} is set" in required.stdout


def test_with_lab_required_a_run_without_lab_tests_fails() -> None:
    unit_only = ("-m", "not lab", "tests/tooling/test_wait.py")
    assert pytest_run(*unit_only, env={LAB_REQUIRED_ENV: ""}).returncode == 0
    required = pytest_run(*unit_only, env={LAB_REQUIRED_ENV: "1"})
    assert required.returncode == 1, required.stdout
    assert "no lab test was selected" in required.stdout


class FakeItem:
    """What group_labs reads of a test: its module, its stage marker, and (here) its lab stack."""

    def __init__(self, module: str, stage: str, stack: str | None) -> None:
        self.path = Path(module)
        self.stack = stack
        self.name = f"{module}:{stack}"
        self._marker = pytest.mark.__getattr__(stage).mark

    def iter_markers(self) -> list[pytest.Mark]:
        return [self._marker]


def lab_overlaps(items: list[FakeItem]) -> int:
    """The most labs up at once, a lab being up from its stack's first test to its last."""
    spans: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        if item.stack:
            spans.setdefault(item.stack, [index, index])[1] = index
    return max(sum(first <= i <= last for first, last in spans.values()) for i in range(len(items)))


def test_each_stage_runs_its_labs_back_to_back() -> None:
    """In file order CI's ha stage kept three labs up at once; grouped, one at a time."""
    file_order = [
        FakeItem("cluster/a.py", "cluster", "dev"),
        FakeItem("cluster/b.py", "cluster", "ops"),
        FakeItem("cluster/c.py", "cluster", "dev"),
        FakeItem("ha/control.py", "ha", "async"),
        FakeItem("ha/fastpath.py", "ha", "qdevice"),
        FakeItem("ha/faults.py", "ha", "dev"),
        FakeItem("ha/faults.py", "ha", "dev"),
        FakeItem("ha/plain.py", "ha", None),
        FakeItem("ha/scale.py", "ha", "scale"),
        FakeItem("ha/standby.py", "ha", "dev"),
        FakeItem("ha/witness.py", "ha", "qdevice"),
    ]
    assert lab_overlaps(file_order) == 3
    items = list(file_order)
    group_labs(items, lambda item: item.stack)  # type: ignore[arg-type, attr-defined]  # a fake item
    assert [item.name for item in items] == [
        "cluster/b.py:ops",  # before dev, which the ha stage goes on with
        "cluster/a.py:dev",
        "cluster/c.py:dev",
        "ha/plain.py:None",
        "ha/faults.py:dev",  # dev first, straight on from the cluster stage
        "ha/faults.py:dev",
        "ha/standby.py:dev",
        "ha/control.py:async",
        "ha/fastpath.py:qdevice",
        "ha/witness.py:qdevice",
        "ha/scale.py:scale",
    ]
    assert lab_overlaps(items) == 1
