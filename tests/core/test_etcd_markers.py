"""The markers root agents act on: signed with root's key, checked against a schema, never a crash."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pgha import ClusterTls, host_maintenance, load_spec, node_steps, rolling
from pgha.host_maintenance import pgha_host_maintenance
from pgha.rolling import pgha_rolling
from pgha.vmlib import etcd_markers

PREFIX = "/pgha-maintenance/pgha"
ROOT_KEY = b"root-only-marker-key"


class Refused(Exception):
    pass


class FakeEtcd:
    """etcd's v2 keys API as the Markers client sees it: a dict of key -> stored value."""

    def __init__(self, keys: dict[str, str] | None = None, prefix: str = PREFIX) -> None:
        self.keys = dict(keys or {})
        self.prefix = prefix

    def call(self, method: str = "GET", key: str = "", value: str | None = None) -> dict[str, Any]:
        path = self.prefix + key
        if method == "PUT":
            self.keys[path] = value or ""
            return {}
        if method == "DELETE":
            self.keys.pop(path, None)
            return {}
        nodes = [{"key": k, "value": v} for k, v in self.keys.items() if k.rsplit("/", 1)[0] == path]
        return {"node": {"key": path, "dir": True, "nodes": nodes}} if nodes else {}


def markers(tmp_path, etcd: FakeEtcd, logged: list[str], key: bytes = ROOT_KEY) -> etcd_markers.Markers:
    key_file = tmp_path / "marker.key"
    key_file.write_bytes(key + b"\n")
    store = etcd_markers.Markers([], etcd.prefix, None, logged.append, Refused, key_path=str(key_file))  # type: ignore[arg-type]
    store.call = etcd.call  # type: ignore[method-assign]
    return store


def request(state: str = "start", ident: str = "1765000000") -> dict[str, str]:
    return {"state": state, "id": ident}


def test_a_marker_written_with_the_key_reads_back(tmp_path):
    etcd, logged = FakeEtcd(), []
    store = markers(tmp_path, etcd, logged)
    store.write("/host/pve1", request())
    assert json.loads(etcd.keys[f"{PREFIX}/host/pve1"])["value"] == request()
    assert store.read("host", pgha_host_maintenance.valid_request) == {"pve1": request()}
    assert logged == []


@pytest.mark.parametrize(
    ("stored", "why"),
    [
        # What the agents wrote before markers were signed, or anyone with an etcd certificate writes.
        (json.dumps(request()), "unsigned"),
        (json.dumps({"value": request()}), "unsigned"),
        ("start 1765000000", "unsigned"),
        # Signed with another key (postgres cannot read root's), or copied from another marker's key.
        (etcd_markers.seal(b"guessed-key", f"{PREFIX}/host/pve1", request()), "wrong signature"),
        (etcd_markers.seal(ROOT_KEY, f"{PREFIX}/host/pve2", request()), "wrong signature"),
        (json.dumps({"value": request(), "hmac": 7}), "wrong signature"),
        # Signed, but not the shape the agent acts on.
        (etcd_markers.seal(ROOT_KEY, f"{PREFIX}/host/pve1", request(state="reboot")), "malformed value"),
        (etcd_markers.seal(ROOT_KEY, f"{PREFIX}/host/pve1", {"state": "start"}), "malformed value"),
        (etcd_markers.seal(ROOT_KEY, f"{PREFIX}/host/pve1", request(ident="1; rm -rf /")), "malformed value"),
        (etcd_markers.seal(ROOT_KEY, f"{PREFIX}/host/pve1", "start 1"), "malformed value"),
        ("x" * 5000, "malformed"),
    ],
    ids=[
        "plain-json",
        "no-hmac",
        "plain",
        "forged",
        "moved",
        "bad-hmac",
        "state",
        "no-id",
        "id",
        "type",
        "long",
    ],
)
def test_a_marker_that_is_unsigned_forged_or_malformed_is_logged_once_and_ignored(tmp_path, stored, why):
    etcd, logged = FakeEtcd({f"{PREFIX}/host/pve1": stored}), []
    store = markers(tmp_path, etcd, logged)
    store.write("/host/pve2", request())
    for _ in range(3):  # an agent polls: one log line, not one a second
        assert store.read("host", pgha_host_maintenance.valid_request) == {"pve2": request()}
    assert len(logged) == 1 and logged[0].startswith(f"ignoring marker {PREFIX}/host/pve1: {why}"), logged


def test_a_missing_key_file_is_the_callers_error(tmp_path):
    store = etcd_markers.Markers([], PREFIX, None, print, Refused, key_path=str(tmp_path / "none"))  # type: ignore[arg-type]
    with pytest.raises(Refused, match="marker key"):
        store.write("/host/pve1", request())


def _agent(spec, tmp_path, etcd: FakeEtcd, logged: list[str]) -> tuple[Any, list[str]]:
    """The agent of the first database VM, on a fake etcd, its actions recorded instead of done."""
    settings = host_maintenance.settings(spec, spec.postgres_nodes[0])
    cluster = pgha_host_maintenance.Cluster.__new__(pgha_host_maintenance.Cluster)
    cluster.settings, cluster.members = settings, pgha_host_maintenance.members_of(settings)
    cluster.log = logged.append  # type: ignore[method-assign]
    cluster.marker_store = markers(tmp_path, etcd, logged)
    agent = pgha_host_maintenance.Agent(cluster)
    acted: list[str] = []
    agent.start_here = lambda: acted.append("start")  # type: ignore[method-assign]
    agent.finish_here = lambda: acted.append("finish")  # type: ignore[method-assign]
    return agent, acted


@pytest.mark.parametrize(
    "stored",
    [
        json.dumps(request()),
        etcd_markers.seal(b"postgres-guess", f"{PREFIX}/host/pve1", request()),
        etcd_markers.seal(ROOT_KEY, f"{PREFIX}/host/pve1", ["start"]),
        "{not json",
    ],
    ids=["unsigned", "forged", "malformed", "garbage"],
)
def test_the_host_maintenance_agent_acts_only_on_a_signed_well_formed_request(spec, tmp_path, stored):
    host = spec.postgres_nodes[0].host
    etcd, logged = FakeEtcd({f"{PREFIX}/host/{host}": stored}), []
    agent, acted = _agent(spec, tmp_path, etcd, logged)
    agent.once()  # neither acts nor raises: the agent's loop would only log a raise, then repeat it
    assert acted == [] and agent.done is None
    assert any(line.startswith(f"ignoring marker {PREFIX}/host/{host}") for line in logged), logged
    agent.cluster.set_request(host, "start", "1765000000")  # root's tool on a database VM
    agent.once()
    assert acted == ["start"]
    acks = agent.cluster.markers("agent")
    assert acks == {spec.postgres_nodes[0].name: "start 1765000000"}


def test_the_rolling_update_takes_only_signed_well_formed_turn_markers(dev_config, tmp_path):
    dev_config["maintenance"] = {"upgrade": 7}
    spec = load_spec(dev_config, "dev")
    plan = rolling.upgrade_plan(spec, spec.node("psql-02"))
    prefix = plan["marker_prefix"]
    etcd, logged = FakeEtcd(prefix=prefix), []
    etcd.keys[f"{prefix}/psql-03"] = "failed 7: forged by the postgres user"  # unsigned: would stop everyone
    etcd.keys[f"{prefix}/psql-01"] = etcd_markers.seal(ROOT_KEY, f"{prefix}/psql-01", "done seven")
    tool = pgha_rolling.RollingOperation({**plan, "ca": None})
    tool.log = logged.append  # type: ignore[method-assign]
    tool._markers = markers(tmp_path, etcd, logged)
    tool.mark("running")
    assert tool.markers() == {"psql-02": "running 7"}
    tool.mark("done")
    assert tool.markers() == {"psql-02": "done 7"}
    assert sorted(line.split(":")[0] for line in logged) == [
        f"ignoring marker {prefix}/psql-01",
        f"ignoring marker {prefix}/psql-03",
    ]


@pytest.mark.parametrize(
    ("value", "valid"),
    [("done 7", True), ("running 7", True), ("failed 7: apt-get failed", True), ("failed 7", False),
     ("done", False), ("done 7 extra", False), (7, False), ({"state": "done"}, False)],
)  # fmt: skip
def test_the_rolling_markers_schema(value, valid):
    assert pgha_rolling.valid_marker(value) is valid


def test_each_marker_key_is_root_only_and_only_where_its_markers_are_written(dev_config, secrets):
    """Host maintenance: the database VMs. The rolling update: they and the witnesses (the VMs
    that reach etcd). Never the backup repository."""
    dev_config["maintenance"] = {"upgrade": 7}
    dev_config["witness"] = {"name": "witness-01", "host": "pve3", "ip": "10.0.0.9"}
    spec = load_spec(dev_config, "dev")
    tls = ClusterTls.placeholders(spec)
    keys = {
        pgha_host_maintenance.MARKER_KEY_PATH: (secrets.maintenance_marker_key, lambda n: n.runs_postgres),
        pgha_rolling.MARKER_KEY_PATH: (secrets.rolling_marker_key, lambda n: n.uses_etcd),
    }
    assert secrets.maintenance_marker_key != secrets.rolling_marker_key
    assert {n.role for n in spec.nodes} >= {"postgres", "witness", "repository"}
    for node in spec.nodes:
        files = [f for s in node_steps(spec, node, secrets, tls) for f in s.files]
        for path, (value, holds) in keys.items():
            found = [f for f in files if f.path == path]
            assert bool(found) == holds(node), (node.name, path)
            assert all(f.content == value + "\n" for f in found)
            assert all((f.mode, f.owner, f.group, f.secret) == (0o600, "root", "root", True) for f in found)
    settings = host_maintenance.settings(spec, spec.postgres_nodes[0])
    assert settings["marker_key"] == pgha_host_maintenance.MARKER_KEY_PATH
    assert rolling.upgrade_plan(spec, spec.node("witness-01"))["marker_key"] == pgha_rolling.MARKER_KEY_PATH
