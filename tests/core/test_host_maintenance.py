"""Host maintenance: what the tool decides, and what the step installs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from pgha import host_maintenance, load_spec, node_steps
from pgha.files import REPO_DIR
from pgha.host_maintenance import pgha_host_maintenance
from pgha.vmlib import cluster_health


def _members(spec) -> list[pgha_host_maintenance.Member]:
    return pgha_host_maintenance.members_of(host_maintenance.settings(spec, spec.postgres_nodes[0]))


def test_two_hosts_without_witness_remove_the_majority_hosts_members(spec):
    members = _members(spec)
    # pve1 carries psql-01 and psql-03: both go, psql-02 alone keeps the quorum.
    assert pgha_host_maintenance.etcd_members_to_remove(members, "pve1") == ["psql-01", "psql-03"]
    # pve2 carries one of three: the other two keep the quorum already.
    assert pgha_host_maintenance.etcd_members_to_remove(members, "pve2") == []


def test_a_witness_means_no_member_is_removed(dev_config):
    dev_config["witness"] = {"name": "witness", "host": "pve3", "ip": "10.0.0.5"}
    members = _members(load_spec(dev_config, "dev"))
    assert [m.name for m in members if m.etcd] == ["psql-01", "psql-02", "witness"]
    for host in ("pve1", "pve2", "pve3"):
        assert pgha_host_maintenance.etcd_members_to_remove(members, host) == []


def test_five_vms_on_two_hosts(dev_config):
    dev_config["vms"] += [
        {"name": "psql-04", "host": "pve2", "ip": "10.0.0.8"},
        {"name": "psql-05", "host": "pve1", "ip": "10.0.0.9"},
    ]
    members = _members(load_spec(dev_config, "dev"))
    # pve1: three of five; without them two remain, below the quorum of three.
    assert pgha_host_maintenance.etcd_members_to_remove(members, "pve1") == ["psql-01", "psql-03", "psql-05"]
    assert pgha_host_maintenance.etcd_members_to_remove(members, "pve2") == []


def _view(**overrides: dict[str, Any]) -> dict[str, Any]:
    members = {
        "psql-01": {"name": "psql-01", "role": "leader", "state": "running"},
        "psql-02": {"name": "psql-02", "role": "sync_standby", "state": "streaming", "lag": 0},
        "psql-03": {"name": "psql-03", "role": "sync_standby", "state": "streaming", "lag": 0},
    }
    for name, change in overrides.items():
        members[name.replace("_", "-")] = {**members[name.replace("_", "-")], **change}
    return {"members": list(members.values())}


EXPECTED = ["psql-01", "psql-02", "psql-03"]


def test_a_healthy_cluster_has_no_problem():
    assert cluster_health.problems(_view(), EXPECTED, 2, max_lag=1048576) == []


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"psql_03": {"lag": 5_000_000}}, "psql-03 lags 5000000 bytes"),
        ({"psql_02": {"state": "starting"}}, "psql-02 is starting, not streaming"),
        ({"psql_02": {"role": "replica"}}, "1 synchronous standby(s) of 2"),
        ({"psql_01": {"state": "stopped"}}, "no single running leader"),
    ],
)
def test_refusal_reasons(change, reason):
    found = cluster_health.problems(_view(**change), EXPECTED, 2, max_lag=1048576)
    assert any(reason in p for p in found), found


def test_a_missing_member_and_no_api_are_problems():
    view = _view()
    view["members"] = view["members"][:2]
    assert cluster_health.problems(view, EXPECTED, 1) == ["psql-03 is not in the cluster"]
    assert cluster_health.problems(None, EXPECTED, 1) == ["no Patroni REST API answers"]


def test_tags_are_set_once():
    document: dict[str, Any] = {"tags": {"nofailover": False, "clonefrom": True}}
    assert pgha_host_maintenance.with_tags(document, pgha_host_maintenance.MAINTENANCE_TAGS)
    assert document["tags"] == {"nofailover": True, "clonefrom": True, "nosync": True}
    assert not pgha_host_maintenance.with_tags(document, pgha_host_maintenance.MAINTENANCE_TAGS)


def test_the_step_installs_the_module_as_is_with_its_settings(spec, secrets, tls):
    for node in spec.nodes:
        steps = [s for s in node_steps(spec, node, secrets, tls) if s.name == host_maintenance.STEP]
        if not node.runs_postgres:
            assert steps == []  # the repository VM has no Patroni to tag
            continue
        files = {f.path: f for f in steps[0].files}
        assert (
            files[host_maintenance.TOOL_PATH].content
            == (host_maintenance.HERE / "pgha_host_maintenance.py").read_text()
        )
        assert files[host_maintenance.TOOL_PATH].mode == 0o755
        settings = json.loads(files[host_maintenance.SETTINGS_PATH].content)
        assert settings["node"] == node.name
        assert settings["hosts"] == ["pve1", "pve2"]
        assert {m["name"] for m in settings["members"]} == {"psql-01", "psql-02", "psql-03"}
        assert settings["normal_tags"] == {"nofailover": False, "nosync": False}
        # No secret in the settings: the REST API password is read on the VM.
        assert secrets.restapi_password not in files[host_maintenance.SETTINGS_PATH].content
        assert files[host_maintenance.SETTINGS_PATH].mode == 0o600


def test_the_tool_refuses_a_bad_command_line():
    result = subprocess.run(
        [sys.executable, str(host_maintenance.HERE / "pgha_host_maintenance.py"), "pve1", "reboot"],
        capture_output=True,
        text=True,
        # Run from the repository: the shared library is this package (on a VM, LIBRARY_ROOT).
        env={**os.environ, "PYTHONPATH": str(REPO_DIR)},
    )
    assert result.returncode == 2
    assert "HOST start" in result.stderr


class _EtcdStub(pgha_host_maintenance.Cluster):
    """Cluster without network: etcdctl answers from a member list kept here."""

    def __init__(self, settings: dict[str, Any], fail_after_removing: bool) -> None:
        self.settings = settings
        self.members = pgha_host_maintenance.members_of(settings)
        self.fail_after_removing = fail_after_removing
        self.asked: list[tuple[tuple[str, ...], list[str] | None]] = []
        self.listed = [
            {"ID": index + 1, "name": m.name, "peerURLs": [m.etcd_peer], "clientURLs": [m.etcd_client]}
            for index, m in enumerate(self.members)
            if m.etcd
        ]
        self.leader = self.listed[0]["ID"]  # on pve1: leadership moves first

    def log(self, message: str) -> None:
        pass

    def etcdctl(self, *args: str, endpoints: list[str] | None = None) -> Any:
        self.asked.append((args, endpoints))
        if args[:2] == ("member", "list"):
            return {"members": self.listed}
        if args[:2] == ("member", "remove"):
            self.listed = [e for e in self.listed if f"{e['ID']:x}" != args[2]]
            if self.fail_after_removing:
                raise pgha_host_maintenance.Refused("etcdctl member remove: context deadline exceeded")
            return None
        if args[:2] == ("endpoint", "status"):
            return [{"Status": {"leader": self.leader}}]
        if args[0] == "move-leader":
            self.leader = int(args[1], 16)
            return None
        raise AssertionError(args)

    def etcd_health(self, listed: list[dict[str, Any]]) -> dict[str, bool]:
        return {e["name"]: True for e in listed}


@pytest.mark.parametrize("fail_after_removing", [False, True])
def test_etcd_members_are_removed_through_the_members_that_stay(spec, fail_after_removing):
    """A member asked to remove itself stops before it answers: ask the others, and trust the list."""
    settings = host_maintenance.settings(spec, spec.postgres_nodes[0])
    cluster = _EtcdStub(settings, fail_after_removing)
    leaving = pgha_host_maintenance.etcd_members_to_remove(cluster.members, "pve1")
    cluster.remove_etcd_members(leaving, "pve1")
    staying = {m.etcd_client for m in cluster.members if m.etcd and m.host != "pve1"}
    removals = [endpoints for args, endpoints in cluster.asked if args[:2] == ("member", "remove")]
    assert len(removals) == len(leaving) > 0
    assert all(endpoints and set(endpoints) == staying for endpoints in removals), removals
    assert {e["name"] for e in cluster.listed} == {
        m.name for m in cluster.members if m.etcd and m.host != "pve1"
    }


def test_a_removal_that_did_not_happen_is_still_refused(spec):
    settings = host_maintenance.settings(spec, spec.postgres_nodes[0])
    cluster = _EtcdStub(settings, fail_after_removing=False)

    def refuse(*args: str, endpoints: list[str] | None = None) -> Any:
        if args[:2] == ("member", "remove"):
            raise pgha_host_maintenance.Refused("etcdctl member remove: permission denied")
        return _EtcdStub.etcdctl(cluster, *args, endpoints=endpoints)

    cluster.etcdctl = refuse  # type: ignore[method-assign]
    with pytest.raises(pgha_host_maintenance.Refused, match="permission denied"):
        cluster.remove_etcd_members(
            pgha_host_maintenance.etcd_members_to_remove(cluster.members, "pve1"), "pve1"
        )
