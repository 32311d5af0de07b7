"""Operations on a live cluster, judged by a writer on VIP:5432.

(a) A reload-only change (a sighup PostgreSQL parameter, HAProxy's maxconn,
keepalived's check interval) fails no request, and a session opened before
it keeps working on the same backend. (b) A change that needs a restart
(``max_connections``) costs one switchover's unavailability and no
acknowledged write; lowered again, a restart of the primary in place
instead. (c) The rolling package update restarts every PostgreSQL, one
at a time, with one switchover.

Its own lab stack, ``ops`` (Pulumi.ops.yaml), so it can run next to others.
Each test prints its measurements as one JSON line (``pytest -s``).
"""

from __future__ import annotations

import copy
import itertools
import json
import threading
import time
from typing import Any

import psycopg
import pytest

from lab.cluster import Lab
from lab.faults import harness
from lab.machines import StepError
from lab.observation import CLIENT_OPTIONS, Writer, connect, observe
from pgha import load_spec
from pgha.stackfile import read_config

pytestmark = pytest.mark.lab

RELOAD_ONLY = {
    "postgres": {"parameters": {"log_min_duration_statement": 250}},
    "haproxy": {"maxconn": 900},
    "keepalived": {"checkInterval": 2},
}


def spec_with(lab: Lab, changes: dict[str, Any]) -> Any:
    """The stack's config with ``changes`` merged in, validated: a `pulumi config set`."""
    config = copy.deepcopy(read_config(lab.stack))
    for section, values in changes.items():
        merged = dict(config.get(section) or {})
        for key, value in values.items():
            if isinstance(value, dict):
                value = {**(merged.get(key) or {}), **value}
            merged[key] = value
        config[section] = merged
    return load_spec(config, lab.stack)


def on_every_node(lab: Lab, query: str) -> dict[str, Any]:
    """One value per PostgreSQL node, asked of that node's own server."""
    values = {}
    for node in lab.spec.postgres_nodes:
        with connect(lab, lab.spec.postgres.port, host=str(node.ip)) as conn:
            row = conn.execute(query).fetchone()
        values[node.name] = row[0] if row else None
    return values


def max_ack_gap(writer: Writer, since: float) -> float:
    """The longest wait between two acknowledged writes after ``since``: stalls count too."""
    times = [a.at for a in writer.snapshot()[0]]
    before = [t for t in times if t < since][-1:]
    after = [t for t in times if t >= since]
    stamps = before + after
    return max((b - a for a, b in itertools.pairwise(stamps)), default=0.0)


class LongSession(threading.Thread):
    """One client session through VIP:5432, opened once and used every 200 ms."""

    def __init__(self, lab: Lab) -> None:
        super().__init__(name="pgha-long-session", daemon=True)
        port = lab.spec.haproxy.primary_port
        self.conn = connect(lab, port, application_name="long-session", **CLIENT_OPTIONS)
        self.backend_pids: set[int] = set()
        self.queries = 0
        self.errors: list[str] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                row = self.conn.execute("select pg_backend_pid()").fetchone()
                self.backend_pids.add(row[0])
                self.queries += 1
            except psycopg.Error as exc:
                self.errors.append(str(exc).strip()[:200])
                return
            self.stop_event.wait(0.2)

    def stop(self) -> None:
        self.stop_event.set()
        self.join(10)
        self.conn.close()


SHOW_INFO = """
import socket
with socket.socket(socket.AF_UNIX) as admin:
    admin.connect("/run/haproxy/admin.sock")
    admin.sendall(b"show info\\n")
    chunks = []
    while chunk := admin.recv(65536):
        chunks.append(chunk)
print(b"".join(chunks).decode())
"""


def haproxy_info(lab: Lab, node: str) -> dict[str, str]:
    """HAProxy's running settings (``show info`` on its admin socket), not its file's."""
    result = lab.exec(node, ["python3", "-c", SHOW_INFO], capture_output=True, text=True, check=True)
    return dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)


def reloads_since(lab: Lab, node: str, unit: str, since: float) -> int:
    """How many reloads systemd logged for ``unit`` since the epoch ``since``."""
    result = lab.exec(
        node,
        ["journalctl", "-u", unit, "--since", f"@{int(since)}", "--no-pager", "-o", "cat"],
        capture_output=True,
        text=True,
    )
    return sum(1 for line in result.stdout.splitlines() if line.startswith("Reloaded "))


def service_pid(lab: Lab, node: str, unit: str) -> str:
    result = lab.exec(node, ["systemctl", "show", "-P", "MainPID", unit], capture_output=True, text=True)
    return result.stdout.strip()


def test_reload_only_change_fails_no_request(ops_lab: Lab) -> None:
    lab = ops_lab
    spec = spec_with(lab, RELOAD_ONLY)
    starts_before = on_every_node(lab, "select pg_postmaster_start_time()")
    pids_before = {n.name: service_pid(lab, n.name, "keepalived") for n in lab.spec.postgres_nodes}
    holder = lab.status()["vipHolder"]
    started = time.time()
    with harness.scenario(lab, "reload_only_change") as run:
        session = LongSession(lab)
        session.start()
        try:
            since = run.inject(lambda: lab.apply(spec))
            run.writer.wait_acks(20)
        finally:
            session.stop()
        run.extra["max_ack_gap_s"] = round(max_ack_gap(run.writer, since), 2)
        run.extra["apply_s"] = round(time.monotonic() - since, 1)
    result = run.result()
    result["long_session"] = {
        "queries": session.queries,
        "errors": session.errors,
        "backends": len(session.backend_pids),
    }
    print(json.dumps({k: v for k, v in result.items() if k != "patroni_logs"}))
    assert result["lost"] == 0 and not result["split_brain"], result
    assert result["failed_attempts"] == 0, result
    assert result["new_primary"] == result["old_primary"], result
    assert session.errors == [] and len(session.backend_pids) == 1 and session.queries > 10, result
    assert set(on_every_node(lab, "show log_min_duration_statement").values()) == {"250ms"}
    assert on_every_node(lab, "select pg_postmaster_start_time()") == starts_before  # reload, no restart
    for node in lab.spec.postgres_nodes:
        assert haproxy_info(lab, node.name)["Maxconn"] == "900"  # the reloaded HAProxy runs it
        # keepalived reloaded in place: same main process, the VIP where it was.
        assert reloads_since(lab, node.name, "keepalived", started) >= 1
        assert service_pid(lab, node.name, "keepalived") == pids_before[node.name]
    status = lab.status()
    assert observe.is_healthy(lab, status) and status["vipHolder"] == holder


def test_restart_needing_change_costs_one_switchover(ops_lab: Lab) -> None:
    lab = ops_lab
    changes = copy.deepcopy(RELOAD_ONLY)
    changes["postgres"]["parameters"]["max_connections"] = 300
    spec = spec_with(lab, changes)
    with harness.scenario(lab, "restart_needing_change") as run:
        since = run.inject(lambda: lab.apply(spec))
        run.extra["max_ack_gap_s"] = round(max_ack_gap(run.writer, since), 2)
        run.extra["apply_s"] = round(time.monotonic() - since, 1)
    result = run.result()
    print(json.dumps({k: v for k, v in result.items() if k != "patroni_logs"}))
    assert result["lost"] == 0 and not result["split_brain"], result
    assert result["new_primary"] != result["old_primary"], result  # the primary went through a switchover
    assert all(w["seconds"] is not None for w in result["windows"]), result
    assert result["unavailability_s"] < 15, result
    assert set(on_every_node(lab, "show max_connections").values()) == {"300"}
    pending = on_every_node(lab, "select count(*) from pg_settings where pending_restart")
    assert set(pending.values()) == {0}, pending
    view = observe.cluster_view(lab) or {}
    assert not any(m.get("pending_restart") for m in view.get("members", [])), view
    # A second run finds nothing to do: no restart, no switchover.
    leader = observe.leader(lab)
    starts = on_every_node(lab, "select pg_postmaster_start_time()")
    lab.apply(spec)
    assert observe.leader(lab) == leader
    assert on_every_node(lab, "select pg_postmaster_start_time()") == starts
    # Back to 200: a standby's max_connections may not be below the primary's, so the primary
    # restarts first, in place (no switchover), then the replicas; the rule's 5 s holds.
    with harness.scenario(lab, "restart_needing_change_lowered") as run:
        since = run.inject(lambda: lab.apply(spec_with(lab, RELOAD_ONLY)))
        run.extra["max_ack_gap_s"] = round(max_ack_gap(run.writer, since), 2)
        run.extra["apply_s"] = round(time.monotonic() - since, 1)
    result = run.result()
    print(json.dumps({k: v for k, v in result.items() if k != "patroni_logs"}))
    assert result["lost"] == 0 and not result["split_brain"], result
    assert result["new_primary"] == result["old_primary"] == leader, result
    assert result["max_ack_gap_s"] < 5, result
    assert set(on_every_node(lab, "show max_connections").values()) == {"200"}
    restarted = on_every_node(lab, "select pg_postmaster_start_time()")
    assert all(restarted[n] != starts[n] for n in starts), (starts, restarted)
    pending = on_every_node(lab, "select count(*) from pg_settings where pending_restart")
    assert set(pending.values()) == {0}, pending


def test_rolling_update_restarts_every_node_once(ops_lab: Lab) -> None:
    lab = ops_lab
    starts_before = on_every_node(lab, "select pg_postmaster_start_time()")
    with harness.scenario(lab, "rolling_update") as run:
        since = run.inject(lab.rolling_update)
        run.extra["max_ack_gap_s"] = round(max_ack_gap(run.writer, since), 2)
        run.extra["update_s"] = round(time.monotonic() - since, 1)
    result = run.result()
    print(json.dumps({k: v for k, v in result.items() if k != "patroni_logs"}))
    starts_after = on_every_node(lab, "select pg_postmaster_start_time()")
    assert result["lost"] == 0 and not result["split_brain"], result
    assert result["new_primary"] != result["old_primary"], result
    assert all(w["seconds"] is not None for w in result["windows"]), result
    assert result["unavailability_s"] < 15, result
    assert all(starts_after[n] != starts_before[n] for n in starts_before), (starts_before, starts_after)
    assert observe.is_healthy(lab, lab.status())


def test_rolling_update_stops_on_an_unhealthy_cluster(ops_lab: Lab) -> None:
    """A replica down: every VM's turn is refused with the reason, and nothing restarts."""
    lab = ops_lab
    lab.wait_ready()
    leader = observe.leader(lab)
    replica = next(n.name for n in lab.spec.postgres_nodes if n.name != leader)
    lab.exec(replica, ["systemctl", "stop", "patroni"], check=True)
    lines: list[str] = []
    report, lab.report = lab.report, lines.append
    try:
        running = [n for n in lab.spec.postgres_nodes if n.name != replica]

        def starts_now() -> dict[str, Any]:
            return {n.name: observe.own_state(lab, n.name).get("postmaster_start_time") for n in running}

        starts = starts_now()
        with pytest.raises(StepError):
            lab.rolling_update()
        assert starts_now() == starts
        assert observe.leader(lab) == leader
    finally:
        lab.report = report
        lab.exec(replica, ["systemctl", "start", "patroni"], check=True)
        lab.wait_ready(timeout=180)
    text = "\n".join(lines)
    print(text[-2000:])
    assert "STOPPED: cluster unhealthy before the rolling update" in text, text
    assert f"{replica} is not in the cluster" in text or f"{replica} is stopped" in text, text
