"""Reading a live lab: Patroni's members and leader, the VIP holder, etcd's health.

Only looks, never changes anything: fault scenarios, operator commands and
tests all ask the cluster the same way. Waits go through ``lab.wait.wait_until``
so $PGHA_TIMEOUT_FACTOR stretches them all.
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import TYPE_CHECKING, Any

from pgha import Node, etcd, patroni, pki
from pgha.vmlib import cluster_health

from ..wait import wait_until

if TYPE_CHECKING:
    from ..machines import LabAccess, Machine

REJOIN_TIMEOUT = 180.0  # an old primary rewinding and streaming again
LEADING_GIVE_UP = 20.0  # s an old primary may lead again before waiting for it to stream is given up


# ---- Patroni ------------------------------------------------------------------------------


def cluster_view(lab: LabAccess) -> dict[str, Any] | None:
    """Patroni's /cluster, from the first node whose REST API answers."""
    for node in lab.spec.postgres_nodes:
        try:
            return lab.http_json(patroni.rest_api_url(lab.spec, node) + "/cluster")
        except (OSError, ValueError):
            continue
    return None


def members(lab: LabAccess) -> dict[str, dict[str, Any]]:
    """Patroni's members by name (empty while no REST API answers)."""
    view = cluster_view(lab) or {}
    return {m["name"]: m for m in view.get("members", [])}


def leader(lab: LabAccess) -> str | None:
    """The member Patroni reports as running leader."""
    for name, member in members(lab).items():
        if member.get("role") == "leader" and member.get("state") == "running":
            return name
    return None


def sync_standbys(lab: LabAccess) -> list[str]:
    """Standbys Patroni reports as synchronous (or quorum) and streaming."""
    return [
        name
        for name, m in members(lab).items()
        if m.get("role") in ("sync_standby", "quorum_standby") and m.get("state") == "streaming"
    ]


def sync_standby(lab: LabAccess) -> str | None:
    """A synchronous standby that streams, if any."""
    return next(iter(sync_standbys(lab)), None)


def node_ip(lab: LabAccess, name: str) -> str:
    return str(lab.spec.node(name).ip)


def own_state(lab: LabAccess, name: str) -> dict[str, Any]:
    """The node's own view (its REST API's /patroni), live from its PostgreSQL; empty if silent.

    The DCS keeps a dead member's last state until its key expires (ttl), so
    asking the node itself is the only way to see that it really streams.
    """
    try:
        state = lab.http_json(patroni.rest_api_url(lab.spec, lab.spec.node(name)) + "/patroni", timeout=1.0)
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def is_streaming(lab: LabAccess, name: str) -> bool:
    """Whether the node is a replica whose WAL receiver streams (in its own words)."""
    state = own_state(lab, name)
    return state.get("role") == "replica" and state.get("replication_state") == "streaming"


def wait_leader(lab: LabAccess, not_: str | None = None, timeout: float = 120.0) -> str | None:
    """The running leader, once it is not ``not_``; None on timeout."""

    def new_leader() -> str | None:
        current = leader(lab)
        return current if current is not None and current != not_ else None

    return wait_until(new_leader, timeout)


def wait_serving(
    lab: LabAccess, name: str, since: float, timeout: float = REJOIN_TIMEOUT, as_replica: bool = False
) -> float | None:
    """Seconds from ``since`` until ``name`` streams as a replica, or leads (holding the
    leader key and running as primary) unless ``as_replica``; None on timeout, or once it
    has led for LEADING_GIVE_UP s where it should follow (it will not stream then)."""
    leading_since: list[float] = []

    def serving() -> float | bool | None:
        if is_streaming(lab, name):
            return time.monotonic() - since
        leads = leader(lab) == name and own_state(lab, name).get("role") == "primary"
        if leads and not as_replica:
            return time.monotonic() - since
        if not leads:
            leading_since.clear()
        elif not leading_since:
            leading_since.append(time.monotonic())
        elif time.monotonic() - leading_since[0] > LEADING_GIVE_UP:
            return True  # stop waiting: the answer is None
        return None

    answer = wait_until(serving, timeout)
    return answer if isinstance(answer, float) else None


# Lines that say nothing about a fault: the steady loop and pg_controldata dumps.
_QUIET = (" INFO: no action. ", "]:   ")


def patroni_logs(lab: LabAccess, since: float | None = None, lines: int = 150) -> dict[str, str]:
    """Patroni's and etcd's journal on every running node: the evidence for a finding.

    With ``since`` (a wall-clock epoch) everything from then on, minus the
    steady-state noise, capped at the last ``lines`` lines per node.
    """
    window = ["--since", f"@{int(since)}"] if since is not None else ["-n", str(lines)]
    logs = {}
    for node in lab.spec.postgres_nodes:
        try:
            result = lab.exec(
                node.name,
                ["journalctl", "-u", "patroni", "-u", "etcd", "--no-pager", "-o", "short-precise", *window],
                capture_output=True,
                text=True,
                timeout=30,
            )
            kept = [line for line in result.stdout.splitlines() if not any(q in line for q in _QUIET)]
            logs[node.name] = "\n".join(kept[-lines:])
        except (RuntimeError, subprocess.SubprocessError) as exc:
            logs[node.name] = f"(unavailable: {exc})"
    return logs


# ---- the VIP ------------------------------------------------------------------------------


def vip_holders(lab: LabAccess) -> list[str]:
    """Every running, unfrozen machine that has the VIP on an interface."""
    holders = []
    for name, machine in lab.machines().items():
        if not machine.is_running() or machine.is_frozen():
            continue
        result = lab.exec(name, ["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True)
        if f" {lab.spec.vip}/" in result.stdout:
            holders.append(name)
    return holders


def single_vip_holder(lab: LabAccess, timeout: float = 30.0) -> str:
    """The one machine holding the VIP, once there is exactly one."""
    seen: list[str] = []

    def one() -> str | None:
        seen[:] = vip_holders(lab)
        return seen[0] if len(seen) == 1 else None

    return wait_until(one, timeout, error=lambda _: f"VIP holders: {seen}")


def wait_vip_moves(lab: LabAccess, old: str, since: float, timeout: float = 60.0) -> float | None:
    """Seconds from ``since`` until exactly one other machine holds the VIP; None on timeout."""

    def moved() -> float | None:
        holders = vip_holders(lab)
        return round(time.monotonic() - since, 2) if len(holders) == 1 and holders[0] != old else None

    return wait_until(moved, timeout, interval=0.2)


# ---- etcd ---------------------------------------------------------------------------------


def etcd_health(lab: LabAccess) -> dict[str, bool]:
    """Each etcd member's /health (with the operator's client certificate)."""
    health = {}
    for member in etcd.members(lab.spec):
        if member.external:
            # Its firewall admits the members only: ask on the machine itself.
            health[member.name] = _etcd_healthy_on(lab, member)
            continue
        try:
            answer = lab.http_json(etcd.client_url(lab.spec, member) + "/health", client_cert=True)
            health[member.name] = answer["health"] in ("true", True)
        except (OSError, ValueError, KeyError):
            health[member.name] = False
    return health


def _etcd_healthy_on(lab: LabAccess, node: Node) -> bool:
    """Asked on the machine itself: an external witness's firewall admits the members only,
    not the lab's bridge."""
    url = etcd.client_url(lab.spec, node) + "/health"
    command = ["curl", "-fsS", "--max-time", "2", "--cacert", pki.CA_PATH]
    command += ["--cert", etcd.PEM_PATH, "--key", etcd.PEM_PATH, url]
    try:
        result = lab.exec(node, command, capture_output=True, text=True, timeout=10)
        answer: Any = json.loads(result.stdout) if result.returncode == 0 else {}
    except (RuntimeError, subprocess.SubprocessError, ValueError):
        return False
    return answer.get("health") in ("true", True)


# ---- the whole picture --------------------------------------------------------------------


def machine_state(lab: LabAccess, machine: Machine) -> str:
    """stopped, frozen, partitioned or running: what the lab did to the machine."""
    if not machine.is_running():
        return "stopped"
    if machine.is_frozen():
        return "frozen"
    if not _link_up(lab, machine.host_ifname):
        return "partitioned"
    return "running"


def _link_up(lab: LabAccess, ifname: str) -> bool:
    result = subprocess.run(
        ["ip", "-n", lab.network.name, "-o", "link", "show", "dev", ifname],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode == 0 and ",UP" in result.stdout


def _absent_state(node: Node, machine: str) -> str:
    """A node Patroni does not list: a witness is as its machine is; a database node is down."""
    if not node.runs_postgres or machine != "running":
        return machine
    return "unknown"


def status(lab: LabAccess) -> dict[str, Any]:
    """Roles, states, lag, machine states, the VIP holder and etcd health: `python -m lab status`."""
    listed = members(lab)
    machines = lab.machines()
    nodes = []
    for node in lab.spec.nodes:
        member = listed.get(node.name, {})
        state = machine_state(lab, machines[node.name])
        lag = member.get("lag")
        nodes.append(
            {
                "name": node.name,
                "host": node.host,
                "ip": str(node.ip),
                "role": member.get("role", node.role if not node.runs_postgres else "unknown"),
                "state": member.get("state", _absent_state(node, state)),
                "lagBytes": lag if isinstance(lag, int) else None,
                "tags": member.get("tags") or {},
                "machine": state,
            }
        )
    holders = vip_holders(lab)
    return {
        "vip": str(lab.spec.vip),
        "primaryPort": lab.spec.haproxy.primary_port,
        "replicaPort": lab.spec.haproxy.replica_port,
        "nodes": nodes,
        "vipHolder": holders[0] if len(holders) == 1 else (holders or None),
        "etcd": etcd_health(lab),
    }


def health_problems(lab: LabAccess, view: dict[str, Any]) -> list[str]:
    """What keeps the lab from healthy: the VMs' own rule (``pgha.vmlib.cluster_health``:
    one running leader, every other database node streaming, the synchronous standbys
    and, host-aware, one on another host) on the members of ``status``, and one VIP holder."""
    members = [
        {"name": n["name"], "role": n["role"], "state": n["state"], "tags": n["tags"]} for n in view["nodes"]
    ]
    databases = [n.name for n in lab.spec.postgres_nodes]
    patroni_view = {"members": [m for m in members if m["name"] in databases]}
    wanted_sync = lab.spec.sync_standbys if lab.spec.patroni.synchronous_mode else 0
    found = cluster_health.problems(patroni_view, databases, wanted_sync, lab.spec.sync_hosts)
    if not isinstance(view["vipHolder"], str):
        found.append(f"VIP holders: {view['vipHolder']}")
    return found


def is_healthy(lab: LabAccess, view: dict[str, Any]) -> bool:
    """Healthy by ``health_problems``: the same rule pgha-rolling and pgha-host-maintenance apply."""
    return not health_problems(lab, view)


def wait_ready(lab: LabAccess, timeout: float = 120.0) -> dict[str, Any]:
    """The status, once healthy (``is_healthy``); WaitTimeout with the last status otherwise."""
    last: list[dict[str, Any]] = []

    def healthy() -> dict[str, Any] | None:
        last[:] = [status(lab)]
        return last[0] if is_healthy(lab, last[0]) else None

    return wait_until(
        healthy,
        timeout,
        interval=1.0,
        error=lambda _: f"lab not healthy: {json.dumps(last[0] if last else None)}",
    )
