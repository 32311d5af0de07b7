"""Monitoring in the lab: a real Prometheus scrapes the stack output's targets.

Debian's Prometheus (the host's package) runs in the lab's namespace from the
gateway address, which the dev stack's ``monitoring.allowFrom`` admits, with
the CA, target files and scrape configs of the stack output and the
repository's alert rules. About 2 minutes on the shared 2-core machine, most
of it the failover (the primary is killed and boots again), plus about 70 s
for PgBouncer stopped on the primary (PghaPoolerDown's `for: 1m`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from lab.cluster import Lab
from lab.faults import READY_TIMEOUT
from lab.observation import LabPrometheus, observe
from lab.wait import wait_until
from pgha import monitoring

pytestmark = pytest.mark.lab

TARGETS_UP_TIMEOUT = 90.0
NO_LEADER_TIMEOUT = 45.0  # kill -> no primary in Prometheus: a scrape (5 s) + staleness
FAILOVER_ALERT_TIMEOUT = 120.0  # kill -> promotion (ttl 20 s) + a scrape + a rule evaluation
# Stop -> a failed scrape (5 s) + PghaPoolerDown's `for: 1m` (the lab runs rules.yml as
# shipped: only the scrape and evaluation intervals are the lab's) + an evaluation (5 s).
POOLER_ALERT_TIMEOUT = 120.0
POOLER_BACK_TIMEOUT = 60.0  # start -> the exporter's restart (RestartSec 5 s) + a scrape


@pytest.fixture(scope="module")
def prometheus(lab: Lab) -> Iterator[LabPrometheus]:
    server = LabPrometheus(lab)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def wait_all_up(lab: Lab, prometheus: LabPrometheus) -> list[dict]:
    expected = sum(len(entries) for entries in monitoring.targets(lab.spec).values())
    targets: list[dict] = []

    def all_up() -> bool:
        targets[:] = prometheus.targets()
        return len(targets) == expected and all(t["health"] == "up" for t in targets)

    if not wait_until(all_up, TARGETS_UP_TIMEOUT, interval=2.0):
        down = [
            (t["labels"].get("node"), t["labels"].get("pgha_source"), t.get("lastError")) for t in targets
        ]
        raise AssertionError(f"{len(targets)} of {expected} targets, not all up: {down}")
    return targets


def test_every_target_of_the_stack_output_is_up(lab: Lab, prometheus: LabPrometheus) -> None:
    targets = wait_all_up(lab, prometheus)
    seen = {(t["labels"]["node"], t["labels"]["pgha_source"]) for t in targets}
    for node in lab.spec.nodes:
        assert {(node.name, s) for s in monitoring.sources(lab.spec, node)} <= seen


def test_rules_and_dashboard_metrics_exist(lab: Lab, prometheus: LabPrometheus) -> None:
    """Every exporter metric the rules and the dashboard read, and pgha's own, has series."""
    wait_all_up(lab, prometheus)
    wanted = set(monitoring.EXPORTER_METRICS) | {
        "pgha_tls_cert_not_after_timestamp_seconds",
        "pgha_vip_held",
        "pgha_sync_standbys_configured",
        "pgha_archiver_last_archived_timestamp_seconds",
        "pgha_backup_last_completion_timestamp_seconds",
        "pgha_backup_max_age_seconds",
        "pgha_collector_last_run_timestamp_seconds",
        "pgha:primaries:count",
        "pgha:replication_lag_bytes",
        *(monitoring.PGBOUNCER_METRICS if lab.spec.pooler else ()),
    }
    missing = set(wanted)

    def all_present() -> bool:
        missing.difference_update({n for n in missing if prometheus.query(f'count({{__name__="{n}"}})')})
        return not missing

    wait_until(all_present, 60.0, interval=2.0)
    assert not missing, sorted(missing)
    # postgres_exporter reaches its PostgreSQL on every VM (its role, peer auth over the socket):
    # 0.17 has no pg_up; its last scrape error is 0 only when it queried PostgreSQL. A scrape
    # that met a restart (an earlier test's switchover) errs once: the next ones must not.
    errors: list[dict] = []

    def clean() -> bool:
        errors[:] = prometheus.query("pg_exporter_last_scrape_error")
        return len(errors) == len(lab.spec.postgres_nodes) and all(s["value"][1] == "0" for s in errors)

    wait_until(clean, 60.0, interval=2.0)
    assert len(errors) == len(lab.spec.postgres_nodes), errors
    assert all(s["value"][1] == "0" for s in errors), errors
    if lab.spec.pooler:
        # PgBouncer's exporter logged in to every VM's console (pgha_pooler, a stats user, TLS).
        up = prometheus.query("pgbouncer_up")
        assert len(up) == len(lab.spec.postgres_nodes), up
        assert all(s["value"][1] == "1" for s in up), up

    # Exactly one VM holds the VIP, and one primary. The count is a recording rule: right
    # after Prometheus starts, an evaluation may have seen only the replicas' scrapes.
    def one_of_each() -> list[float]:
        return [
            float(result[0]["value"][1]) if result else 0.0
            for result in (prometheus.query("sum(pgha_vip_held)"), prometheus.query("pgha:primaries:count"))
        ]

    wait_until(lambda: one_of_each() == [1.0, 1.0], 60.0, interval=2.0)
    assert one_of_each() == [1.0, 1.0]


def test_a_scrape_from_outside_allow_from_is_refused(lab: Lab, prometheus: LabPrometheus) -> None:
    node, outsider = lab.spec.nodes[0], lab.spec.nodes[1]
    url = f"https://{node.ip}:{lab.spec.monitoring.port}/metrics/node"
    # Positive control: from the lab network's gateway address (in allowFrom).
    allowed = lab.run(
        ["curl", "-fsS", "--max-time", "10", "--cacert", str(lab.ca_path), url], capture_output=True
    )
    assert allowed.returncode == 0 and b"node_cpu_seconds_total" in allowed.stdout
    # A VM of the cluster itself is outside allowFrom: closed before the TLS handshake,
    # while the positive control above proved the port serves.
    refused = lab.exec(
        outsider.name,
        ["curl", "-sS", "--max-time", "10", "--cacert", "/etc/pgha/tls/ca.crt", url],
        capture_output=True,
        text=True,
    )
    # HAProxy accepts and closes at once: curl sees it as 7 (connect), 35 (handshake) or 56 (recv).
    assert refused.returncode in (7, 35, 56), (refused.returncode, refused.stderr)
    assert "node_cpu" not in refused.stdout
    # HAProxy's metrics left the unauthenticated stats port.
    stats = f"https://{node.ip}:{lab.spec.haproxy.stats_port}/metrics"
    old = lab.run(
        ["curl", "-sS", "--max-time", "10", "--cacert", str(lab.ca_path), stats], capture_output=True
    )
    assert b"haproxy_process" not in old.stdout and b"haproxy_frontend" not in old.stdout


def test_exporters_listen_on_loopback_only(lab: Lab) -> None:
    for node in lab.spec.nodes:
        out = lab.exec(node.name, ["ss", "-tlnpH"], capture_output=True, text=True, check=True).stdout
        exporters = [line.split()[3] for line in out.splitlines() if "prometheus" in line]
        assert exporters, node.name
        assert all(address.startswith("127.0.0.1:") for address in exporters), (node.name, exporters)


def test_stopping_pgbouncer_pages_the_pooler_alert_not_the_member_alert(
    lab: Lab, prometheus: LabPrometheus
) -> None:
    """PgBouncer really stopped on the primary: PghaPoolerDown fires, PghaMemberDown does not.

    systemd stops its exporter with it (Debian's unit Requires= pgbouncer.service), so
    pgbouncer_up vanishes (the pgbouncer target's up is 0) instead of reading 0: the
    rule must see that. Starting PgBouncer starts the exporter again (WantedBy=).
    """
    assert lab.spec.pooler is not None, "the dev stack enables pgha:pooler"
    lab.wait_ready(timeout=READY_TIMEOUT)
    wait_all_up(lab, prometheus)
    primary = observe.leader(lab)
    assert primary is not None
    on_primary = f'node="{primary}"'
    assert not prometheus.query(f'ALERTS{{alertstate="firing",{on_primary}}}')
    member_alerts: list[dict] = []

    def pooler_alert_firing() -> list[dict]:
        # PghaMemberDown, in any state, at every poll: the stop must never make it pending
        # for PgBouncer's target, nor fire for any target of the VM.
        member_alerts.extend(prometheus.query(f'ALERTS{{alertname="PghaMemberDown",{on_primary}}}'))
        return prometheus.query(f'ALERTS{{alertname="PghaPoolerDown",alertstate="firing",{on_primary}}}')

    lab.exec(primary, ["systemctl", "stop", "pgbouncer"], check=True)
    try:
        wait_until(
            pooler_alert_firing,
            POOLER_ALERT_TIMEOUT,
            interval=2.0,
            error=lambda _: f"PghaPoolerDown never fired for {primary}: {prometheus.query('ALERTS')}",
        )
        firing = {
            a["metric"]["alertname"] for a in prometheus.query(f'ALERTS{{alertstate="firing",{on_primary}}}')
        }
        scraped = {
            "up": prometheus.query(f'up{{pgha_source="pgbouncer",{on_primary}}}'),
            "pgbouncer_up": prometheus.query(f"pgbouncer_up{{{on_primary}}}"),
        }
    finally:
        lab.exec(primary, ["systemctl", "start", "pgbouncer"], check=True)
    print(f"\nPgBouncer stopped on {primary}: firing {sorted(firing)}, scraped {scraped}")
    assert firing == {"PghaPoolerDown"}, firing
    paged = [
        a["metric"]
        for a in member_alerts
        if a["metric"]["alertstate"] == "firing" or a["metric"].get("pgha_source") == "pgbouncer"
    ]
    assert not paged, paged
    # As the stop really looks: the exporter stopped too, so nothing reads pgbouncer_up 0.
    assert [s["value"][1] for s in scraped["up"]] == ["0"], scraped
    assert scraped["pgbouncer_up"] == [], scraped

    def pooler_healthy() -> bool:
        up = prometheus.query(f"pgbouncer_up{{{on_primary}}} == 1")
        return bool(up) and not prometheus.query(f'ALERTS{{alertname="PghaPoolerDown",{on_primary}}}')

    wait_until(pooler_healthy, POOLER_BACK_TIMEOUT, interval=1.0, error=f"PgBouncer on {primary} not back")
    lab.wait_ready(timeout=READY_TIMEOUT)


def test_killing_the_primary_fires_no_leader_and_the_failover_alert(
    lab: Lab, prometheus: LabPrometheus
) -> None:
    lab.wait_ready(timeout=READY_TIMEOUT)
    wait_all_up(lab, prometheus)
    assert not prometheus.firing("PghaFailover")
    old = observe.leader(lab)
    assert old is not None
    machine = lab.machine(lab.spec.node(old))
    machine.kill()
    try:
        no_leader = prometheus.wait_for(
            "pgha:primaries:count == 0 or sum by (pgha_stack) (patroni_primary) == 0",
            NO_LEADER_TIMEOUT,
            interval=0.5,
        )
        failover = prometheus.wait_for(
            'ALERTS{alertname="PghaFailover",alertstate="firing"}', FAILOVER_ALERT_TIMEOUT
        )
    finally:
        machine.start()
    print(f"\nno-leader expression after {no_leader} s, PghaFailover firing after {failover} s (+ no-leader)")
    assert no_leader is not None, "the no-leader expression never fired"
    assert failover is not None, "PghaFailover never fired"
    observe.wait_serving(lab, old, time.monotonic(), as_replica=True)
    lab.wait_ready(timeout=READY_TIMEOUT)
