"""The one health rule (pgha/vmlib/cluster_health.py): pgha-rolling, pgha-host-maintenance and the lab."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from lab.observation import observe
from pgha import host_maintenance
from pgha.files import REPO_DIR
from pgha.host_maintenance import pgha_host_maintenance
from pgha.rolling import pgha_rolling
from pgha.vmlib import cluster_health

# The dev stack's layout: psql-01 and psql-03 on pve1, psql-02 on pve2.
HOSTS = {"psql-01": "pve1", "psql-02": "pve2", "psql-03": "pve1"}
EXPECTED = list(HOSTS)
# What CI saw right after a leader change: the leader psql-01 and its synchronous
# standby psql-03 on the same host; a crash of pve1 would leave nothing promotable.
SAME_HOST_SYNC = {
    "members": [
        {"name": "psql-01", "role": "leader", "state": "running"},
        {"name": "psql-02", "role": "replica", "state": "streaming", "lag": 0},
        {"name": "psql-03", "role": "sync_standby", "state": "streaming", "lag": 0},
    ]
}
SAME_HOST_PROBLEM = "no synchronous standby on another host than the primary's (pve1) yet: psql-02 could be"


def _view(**roles: str) -> dict[str, Any]:
    """Leader psql-01; the others' roles as given (streaming)."""
    members = [{"name": "psql-01", "role": "leader", "state": "running"}]
    members += [{"name": n.replace("_", "-"), "role": r, "state": "streaming"} for n, r in roles.items()]
    return {"members": members}


def test_the_leader_and_its_only_sync_standby_on_one_host_is_not_healthy():
    assert cluster_health.problems(SAME_HOST_SYNC, EXPECTED, 1, HOSTS) == [SAME_HOST_PROBLEM]
    # Without host-aware sync the same cluster is healthy.
    assert cluster_health.problems(SAME_HOST_SYNC, EXPECTED, 1, {}) == []
    # The sync standby on the other host: healthy.
    assert cluster_health.problems(_view(psql_02="sync_standby", psql_03="replica"), EXPECTED, 1, HOSTS) == []


def test_a_standby_elsewhere_that_may_not_confirm_commits_is_no_reason_to_wait():
    view = _view(psql_02="replica", psql_03="sync_standby")
    view["members"][1]["tags"] = {"nosync": True}
    assert cluster_health.problems(view, EXPECTED, 1, HOSTS) == []
    # A quorum standby elsewhere confirms commits too.
    assert (
        cluster_health.host_crash_problem(
            cluster_health.members_by_name(_view(psql_02="quorum_standby", psql_03="replica")),
            "psql-01",
            HOSTS,
        )
        is None
    )


@pytest.mark.parametrize(
    ("view", "wanted", "max_lag", "reason"),
    [
        ({"members": [], "pause": True}, 0, None, "the cluster is paused (Patroni maintenance mode)"),
        (_view(psql_02="sync_standby"), 1, None, "psql-03 is not in the cluster"),
        (_view(psql_02="sync_standby", psql_03="replica"), 2, None, "1 synchronous standby(s) of 2"),
        (
            {
                "members": [
                    {**m, "lag": 5_000_000}
                    for m in _view(psql_02="sync_standby", psql_03="replica")["members"]
                ]
            },
            1,
            1_048_576,
            "psql-02 lags 5000000 bytes behind the primary (more than 1048576)",
        ),
        (None, 0, None, "no Patroni REST API answers"),
    ],
)
def test_what_is_not_healthy(view, wanted, max_lag, reason):
    assert reason in cluster_health.problems(view, EXPECTED, wanted, HOSTS, max_lag)


def test_a_leader_not_running_is_no_leader():
    view = _view(psql_02="sync_standby", psql_03="replica")
    view["members"][0]["state"] = "stopped"
    assert cluster_health.running_leader(view) is None
    assert cluster_health.problems(view, EXPECTED, 1, HOSTS) == [
        "no single running leader (leaders: ['psql-01'])"
    ]


class _Offline(pgha_host_maintenance.Cluster):
    """pgha-host-maintenance's cluster with a fixed Patroni view, healthy etcd, no markers."""

    def __init__(self, settings: dict[str, Any], view: dict[str, Any]) -> None:
        super().__init__({**settings, "ca": None, "client_pem": None})
        self.fixed = view
        self.requested: list[str] = []

    def view(self) -> dict[str, Any] | None:
        return self.fixed

    def etcd_problems(self) -> list[str]:
        return []

    def markers(self, kind: str) -> dict[str, str]:
        return {}

    def set_request(self, host: str, state: str, ident: str) -> None:
        self.requested.append(host)


def test_host_maintenance_refuses_to_start_with_the_sync_standby_on_the_primarys_host(spec):
    """The drift this rule's sharing fixed: pgha-host-maintenance's own copy had no host rule
    and would have started maintenance (switched over, tagged, removed etcd members) here."""
    settings = host_maintenance.settings(spec, spec.node("psql-01"))
    assert settings["sync_hosts"] == HOSTS
    cluster = _Offline(settings, SAME_HOST_SYNC)
    with pytest.raises(
        pgha_host_maintenance.Refused, match=r"not safe to start maintenance of pve2: no synch"
    ):
        pgha_host_maintenance.start(cluster, "pve2")
    assert cluster.requested == []  # nothing was changed
    healthy = _Offline(settings, _view(psql_02="sync_standby", psql_03="replica"))
    assert healthy.problems(max_lag=settings["max_lag_bytes"]) == []


def test_the_lab_applies_the_same_rule(spec):
    class _Lab:
        pass

    lab = _Lab()
    lab.spec = spec  # type: ignore[attr-defined]
    nodes = [{**m, "tags": {}} for m in SAME_HOST_SYNC["members"]]
    status = {"nodes": nodes, "vipHolder": "psql-01"}
    assert observe.health_problems(lab, status) == [SAME_HOST_PROBLEM]  # type: ignore[arg-type]
    assert not observe.is_healthy(lab, status)  # type: ignore[arg-type]
    nodes[1]["role"], nodes[2]["role"] = "sync_standby", "replica"
    assert observe.is_healthy(lab, status)  # type: ignore[arg-type]
    assert not observe.is_healthy(lab, {**status, "vipHolder": None})  # type: ignore[arg-type]


def _defined_functions(path: Path) -> set[str]:
    return {n.name for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.FunctionDef)}


def test_no_second_copy_of_the_rule():
    """Each program and the lab call the shared rule; none keeps a health function of its own."""
    rule = Path(cluster_health.__file__)
    users = [Path(pgha_rolling.__file__), Path(pgha_host_maintenance.__file__), Path(observe.__file__)]
    for path in users:
        source = path.read_text()
        assert "cluster_health.problems(" in source, path
        assert not _defined_functions(path) & {"host_crash_problem", "cluster_problems"}, path
    # The rule's own words appear nowhere else in the code.
    for path in [*(REPO_DIR / "pgha").rglob("*.py"), *(REPO_DIR / "lab").rglob("*.py")]:
        if path != rule:
            text = path.read_text()
            assert "synchronous standby(s) of" not in text, path
            assert "not streaming" not in text, path
