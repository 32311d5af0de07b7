"""The dev stack, brought up by the program's own steps on real Debian 13 machines."""

from __future__ import annotations

import hashlib
import json
import time

import pytest

from lab.observation import connect, observe
from lab.wait import wait_until
from pgha import etcd, monitoring, node_files, patroni

pytestmark = pytest.mark.lab


def test_etcd_has_three_healthy_members(lab):
    node = lab.spec.nodes[0]
    result = lab.exec(
        node.name,
        ["etcdctl", *etcd.etcdctl_flags(lab.spec, node), "endpoint", "health", "--cluster"],
        capture_output=True,
        text=True,
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    assert report.count("is healthy") == 3, report


def test_patroni_one_leader_two_streaming_replicas(lab):
    result = lab.exec(
        lab.spec.nodes[0].name,
        ["patronictl", "-c", patroni.CONFIG_PATH, "list", "-f", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    members = json.loads(result.stdout)
    assert len(members) == 3
    assert [m["Role"] for m in members].count("Leader") == 1
    replicas = [m for m in members if m["Role"] != "Leader"]
    assert len(replicas) == 2 and all(m["State"] == "streaming" for m in replicas), members


def test_vip_routes_writes_to_primary_and_reads_to_replicas(lab):
    ports = lab.spec.haproxy
    with connect(lab, ports.primary_port) as primary:
        assert primary.execute("select pg_is_in_recovery()").fetchone()[0] is False
        primary.execute("create table if not exists lab_smoke (id serial primary key, note text)")
        marker = f"written-{time.time_ns()}"
        primary.execute("insert into lab_smoke (note) values (%s)", (marker,))
    seen_on = set()

    def both_replicas_have_it() -> bool:
        with connect(lab, ports.replica_port) as replica:
            in_recovery, server = replica.execute("select pg_is_in_recovery(), inet_server_addr()").fetchone()
            assert in_recovery is True
            # The asynchronous replica may not have replayed the table's creation yet.
            if replica.execute("select to_regclass('lab_smoke')").fetchone()[0] is None:
                return False
            found = replica.execute("select count(*) from lab_smoke where note = %s", (marker,)).fetchone()[0]
            if found:
                seen_on.add(str(server))
        return len(seen_on) == 2

    wait_until(both_replicas_have_it, 10.0, interval=0.2)
    # Round-robin: consecutive new connections to 5433 reach both replicas, and both have the row.
    assert len(seen_on) == 2, seen_on


def test_consecutive_replica_connections_alternate(lab):
    servers = []
    for _ in range(4):
        with connect(lab, lab.spec.haproxy.replica_port) as replica:
            servers.append(str(replica.execute("select inet_server_addr()").fetchone()[0]))
    assert servers[0] != servers[1] and servers[0] == servers[2] and servers[1] == servers[3], servers


def test_haproxy_metrics_and_patroni_api_on_every_node(lab):
    for node in lab.spec.postgres_nodes:
        # HAProxy's own exporter, on the monitoring port (the lab network's gateway is in allowFrom).
        url = f"https://{node.ip}:{lab.spec.monitoring.port}{monitoring.HAPROXY_PATH}"
        curl = ["curl", "-fsS", "--cacert", str(lab.ca_path), url]
        with_metrics = lab.run(curl, capture_output=True, text=True, check=True).stdout
        assert "haproxy_backend_status" in with_metrics or "haproxy_process_" in with_metrics
        state = lab.http_json(patroni.rest_api_url(lab.spec, node) + "/patroni")
        assert state["state"] == "running" and state["patroni"]["name"] == node.name


def test_exactly_one_vip_holder(lab):
    assert len(observe.vip_holders(lab)) == 1


def _fingerprint(lab) -> dict[str, str]:
    """Checksums of every file the steps write, and each service's start time."""
    secrets, tls = lab.secrets(), lab.tls()
    prints = {}
    for node in lab.spec.nodes:
        paths = [f.path for f in node_files(lab.spec, node, secrets, tls)]
        sums = lab.exec(node.name, ["sha256sum", *paths], capture_output=True, text=True, check=True).stdout
        starts = lab.exec(
            node.name,
            [
                "systemctl",
                "show",
                "-p",
                "ExecMainStartTimestampMonotonic",
                "etcd",
                "patroni",
                "haproxy",
                "keepalived",
                "pgbackrest",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        prints[node.name] = hashlib.sha256((sums + starts).encode()).hexdigest() + "\n" + sums + starts
    return prints


def test_rerunning_the_steps_changes_nothing(lab):
    before = _fingerprint(lab)
    _, results = lab.up()
    assert [r.step.name for r in results if r.changed] == []
    assert _fingerprint(lab) == before
