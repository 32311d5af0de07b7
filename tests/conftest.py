"""Shared fixtures (the dev stack's config and spec; one running lab per stack) and the stages.

tests/stages.py decides each test's stage; tests/helpers.py holds what the
fixtures and tests call. Lab fixtures are session-scoped and share one
LabPool: a stack's lab comes up at its first test and goes down after its last.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest

from lab.cluster import Lab
from pgha import ClusterSecrets, ClusterSpec, ClusterTls, LocalCa, load_spec
from pgha.render import main as render_main
from pgha.stackfile import load_stack, read_config
from tests import stages
from tests.helpers import LabPool

# Lab fixture -> its stack. Another stack of the same layout (own namespace) lets
# two checkouts test side by side; PGHA_LAB_PREFIX keeps their names apart as well.
LAB_FIXTURES = {
    "lab": os.environ.get("PGHA_LAB_STACK", "dev"),
    "ops_lab": os.environ.get("PGHA_OPS_STACK", "ops"),
    "scale_lab": os.environ.get("PGHA_SCALE_STACK", "scale"),
    # The witness on an existing machine (witness.external); "witness" for the VM witness.
    "witness_lab": os.environ.get("PGHA_WITNESS_STACK", "qdevice"),
    "async_lab": os.environ.get("PGHA_ASYNC_STACK", "async"),
    # Its repository VM and an off-site bucket the lab serves (SeaweedFS): the rebuild from repo2.
    "offsite_lab": os.environ.get("PGHA_OFFSITE_STACK", "offsite"),
}
_POOL = pytest.StashKey[LabPool]()
_LAST_USER = pytest.StashKey[dict[str, str]]()  # stack -> nodeid of the last test using it


# ---- stages ----------------------------------------------------------------------------


@pytest.hookimpl(tryfirst=True)  # before -m deselects: the stage markers must be there
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    stages.apply_stages(items)
    stages.group_labs(items, lambda item: next(iter(pooled_stacks(item)), None))


def pooled_stacks(item: pytest.Item) -> list[str]:
    """The stacks of the pooled labs a test uses (a module's own ``lab`` fixture is not pooled)."""
    names = getattr(item, "fixturenames", ())
    if "lab_pool" not in names:
        return []
    return [stack for fixture, stack in LAB_FIXTURES.items() if fixture in names]


def pytest_collection_finish(session: pytest.Session) -> None:
    """Note the last selected test of each stack, so its lab goes down right after it."""
    last: dict[str, str] = {}
    for item in session.items:
        for stack in pooled_stacks(item):
            last[stack] = item.nodeid
    session.config.stash[_LAST_USER] = last


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    pool = item.config.stash.get(_POOL, None)
    if pool is None:
        return
    for stack, nodeid in item.config.stash[_LAST_USER].items():
        if nodeid == item.nodeid:
            pool.release(stack)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """With $PGHA_LAB_REQUIRED (.ci/run as root), a lab test that skips fails instead."""
    report = yield
    # An expected failure (xfail) reports as skipped too: it ran, so it is no skip here.
    skipped = report.skipped and not hasattr(report, "wasxfail")
    if skipped and stages.lab_required() and item.get_closest_marker("lab") is not None:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"lab test skipped while {stages.LAB_REQUIRED_ENV} is set: {reason}"
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    pool = session.config.stash.get(_POOL, None)
    if pool is not None:
        pool.close()
    ran_lab = any(item.get_closest_marker("lab") for item in session.items)
    collecting = session.config.option.collectonly
    if stages.lab_required() and not ran_lab and not collecting and exitstatus == pytest.ExitCode.OK:
        session.config.get_terminal_writer().line(
            f"error: {stages.LAB_REQUIRED_ENV} is set but no lab test was selected", red=True
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# ---- one running lab per stack -----------------------------------------------------------


@pytest.fixture(scope="session")
def lab_pool(request: pytest.FixtureRequest) -> LabPool:
    return request.config.stash.setdefault(_POOL, LabPool())


@pytest.fixture(scope="session")
def lab(lab_pool: LabPool) -> Lab:
    """The dev stack's lab ($PGHA_LAB_STACK), up from its first test to its last."""
    return lab_pool.get(LAB_FIXTURES["lab"])


@pytest.fixture(scope="session")
def ops_lab(lab_pool: LabPool) -> Lab:
    """The ops stack's lab: the operations tests change its config."""
    return lab_pool.get(LAB_FIXTURES["ops_lab"])


@pytest.fixture(scope="session")
def scale_lab(lab_pool: LabPool) -> Lab:
    """The scale stack's lab: scaled out and in by tests/ha/test_scale.py."""
    return lab_pool.get(LAB_FIXTURES["scale_lab"])


@pytest.fixture(scope="session")
def witness_lab(lab_pool: LabPool) -> Lab:
    """The witness stack's lab: by default qdevice, an etcd witness on an existing machine."""
    return lab_pool.get(LAB_FIXTURES["witness_lab"])


@pytest.fixture(scope="session")
def offsite_lab(lab_pool: LabPool) -> Lab:
    """The offsite stack's lab: lost with its repository VM, rebuilt from the bucket alone."""
    return lab_pool.get(LAB_FIXTURES["offsite_lab"])


@pytest.fixture(scope="session")
def async_lab(lab_pool: LabPool) -> Lab:
    """The async stack's lab (synchronous mode off): the negative control's."""
    return lab_pool.get(LAB_FIXTURES["async_lab"])


# ---- the dev stack's config ----------------------------------------------------------------


@pytest.fixture
def dev_config() -> dict[str, Any]:
    """A fresh deep copy of Pulumi.dev.yaml's pgha: namespace, safe to mutate."""
    return copy.deepcopy(read_config("dev"))


@pytest.fixture
def spec(dev_config: dict[str, Any]) -> ClusterSpec:
    return load_spec(dev_config, "dev")


@pytest.fixture
def secrets() -> ClusterSecrets:
    return ClusterSecrets(
        superuser_password="su-Secret-1",
        replication_password="repl-Secret-2",
        rewind_password="rewind-Secret-3",
        restapi_password="api-Secret-4",
        haproxy_stats_password="stats-Secret-5",
        backup_cipher_pass="cipher-Secret-6",
        verify_password="verify-Secret-7",
        pooler_password="pooler-Secret-8",
        maintenance_marker_key="maintenance-Marker-Key-9",
        rolling_marker_key="rolling-Marker-Key-10",
        role_passwords={"app": "app-Secret-6-abcdefgh"},
    )


@pytest.fixture
def render_edited_dev_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], int]:
    """Render Pulumi.dev.yaml with ``old`` replaced by ``new`` through ``python -m pgha.render``'s main.

    Returns its exit status; the stack file sits in ``tmp_path``, where every
    stackfile lookup is pointed.
    """

    def render(old: str, new: str) -> int:
        stack = (Path(__file__).parents[1] / "Pulumi.dev.yaml").read_text()
        edited = stack.replace(old, new)
        assert edited != stack, f"{old!r} is not in Pulumi.dev.yaml"
        (tmp_path / "Pulumi.bad.yaml").write_text(edited)
        monkeypatch.setattr("pgha.stackfile.REPO_DIR", tmp_path)
        for function in ("stack_file", "read_config", "load_stack"):
            monkeypatch.setattr(f"pgha.stackfile.{function}.__defaults__", (tmp_path,))
        return render_main(["--stack", "bad", "--out", str(tmp_path / "out")])

    return render


@pytest.fixture(scope="session")
def tls() -> ClusterTls:
    """Real certificates for the dev stack, issued locally once (the lab's code path)."""
    spec = load_stack("dev")
    return LocalCa.create(spec).issue_cluster(spec)


# Seconds spent per stage in this run: setup, call and teardown (a lab comes up in a setup).
_stage_seconds: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    try:
        stage = stages.stage_of(stages.ROOT / report.nodeid.split("::")[0])
    except (pytest.UsageError, ValueError):
        return
    _stage_seconds[stage] = _stage_seconds.get(stage, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """The suite's duration per stage, the figure the issue notes report."""
    if _stage_seconds:
        ran = [stage for stage in stages.STAGES if stage in _stage_seconds]
        parts = [f"{stage} {_stage_seconds[stage]:.0f} s" for stage in ran]
        terminalreporter.write_line("time per stage: " + ", ".join(parts))
