"""Fault scenarios against a live lab, each judged by what a client saw.

Every scenario starts from a healthy lab, runs a ``Writer`` (VIP:5432) and a
``Reader`` (VIP:5433) across the fault, undoes the fault, waits for the lab to
be healthy again, and returns one result dict:

    fault, old_primary, new_primary, unavailability_s, windows, acked, lost,
    lost_by_node, split_brain, split_brain_acks, rejoin_s, reads, ...

``lost`` counts acknowledged rows absent from at least one node once all are
streaming again; ``rejoin_s`` is how long the old primary took to serve again
(stream as a replica, or lead again when no failover happened), counted from
the moment the fault was undone (or, with nothing to undo, from the fault).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pgha import etcd, patroni

from .cluster import Lab
from .workload import Reader, Writer, ensure_ledger

STEADY_ACKS = 50  # acknowledged writes before the fault: the writer is in steady state
RESUME_TIMEOUT = 120.0
REJOIN_TIMEOUT = 180.0
READY_TIMEOUT = 180.0
LEADING_GIVE_UP = 20.0  # s an old primary may lead again before rejoin_s is given up


# ---- cluster facts -------------------------------------------------------------------


def members(lab: Lab) -> dict[str, dict[str, Any]]:
    """Patroni's members by name (empty while no REST API answers)."""
    view = lab.cluster_view() or {}
    return {m["name"]: m for m in view.get("members", [])}


def leader(lab: Lab) -> str | None:
    """The member Patroni reports as running leader."""
    for name, member in members(lab).items():
        if member.get("role") == "leader" and member.get("state") == "running":
            return name
    return None


def sync_standby(lab: Lab) -> str | None:
    for name, member in members(lab).items():
        if member.get("role") == "sync_standby" and member.get("state") == "streaming":
            return name
    return None


def node_ip(lab: Lab, name: str) -> str:
    return str(lab.spec.node(name).ip)


def own_state(lab: Lab, name: str) -> dict[str, Any]:
    """The node's own view (its REST API's /patroni), live from its PostgreSQL; empty if silent.

    The DCS keeps a dead member's last state until its key expires (ttl), so
    asking the node itself is the only way to see that it really streams.
    """
    try:
        state = lab.http_json(patroni.rest_api_url(lab.spec, lab.spec.node(name)) + "/patroni", timeout=1.0)
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def is_streaming(lab: Lab, name: str) -> bool:
    """Whether the node is a replica whose WAL receiver streams (in its own words)."""
    state = own_state(lab, name)
    return state.get("role") == "replica" and state.get("replication_state") == "streaming"


def wait_serving(
    lab: Lab, name: str, since: float, timeout: float = REJOIN_TIMEOUT, as_replica: bool = False
) -> float | None:
    """Seconds from ``since`` until ``name`` streams as a replica, or leads (holding the
    leader key and running as primary) unless ``as_replica``; None on timeout."""
    deadline = time.monotonic() + timeout
    leading_since: float | None = None
    while time.monotonic() < deadline:
        if is_streaming(lab, name):
            return time.monotonic() - since
        leads = leader(lab) == name and own_state(lab, name).get("role") == "primary"
        if leads and not as_replica:
            return time.monotonic() - since
        # Leading again where it should follow: it will not stream, so stop waiting.
        leading_since = (leading_since or time.monotonic()) if leads else None
        if leading_since is not None and time.monotonic() - leading_since > LEADING_GIVE_UP:
            return None
        time.sleep(0.5)
    return None


def wait_leader(lab: Lab, not_: str | None = None, timeout: float = RESUME_TIMEOUT) -> str | None:
    """The running leader, once it is not ``not_``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = leader(lab)
        if current is not None and current != not_:
            return current
        time.sleep(0.5)
    return None


# Lines that say nothing about a fault: the steady loop and pg_controldata dumps.
_QUIET = (" INFO: no action. ", "]:   ")


def patroni_logs(lab: Lab, since: float | None = None, lines: int = 150) -> dict[str, str]:
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


def _etcdctl(
    lab: Lab, via: str, args: list[str], endpoints: list[str] | None = None, retry_for: float = 0.0
) -> Any:
    """etcdctl with JSON output, run inside the etcd member ``via`` with that member's TLS identity.

    ``retry_for`` seconds of retries suit read-only queries: right after a fault
    or a heal, etcd may be electing a leader and answers "leader changed".
    """
    urls = endpoints or [etcd.client_url(lab.spec, m) for m in etcd.members(lab.spec)]
    flags = etcd.etcdctl_flags(lab.spec, lab.spec.node(via))
    identity = [f for f in flags if not f.startswith("--endpoints=")]
    command = ["etcdctl", *identity, f"--endpoints={','.join(urls)}", "--command-timeout=5s"]
    command += [*args, "-w", "json"]
    deadline = time.monotonic() + retry_for
    while True:
        result = lab.exec(
            via,
            command,
            capture_output=True,
            text=True,
            timeout=30,
        )
        if result.returncode == 0:
            return json.loads(result.stdout) if result.stdout.strip().startswith(("[", "{")) else None
        if time.monotonic() > deadline:
            raise RuntimeError(f"etcdctl {' '.join(args)}: {result.stderr.strip()}")
        time.sleep(1.0)


def etcd_leader(lab: Lab, via: str | None = None) -> str | None:
    """The etcd member that leads raft, by name."""
    via = via or etcd.members(lab.spec)[0].name
    listed = _etcdctl(lab, via, ["member", "list"], retry_for=30.0)
    names = {m["ID"]: m["name"] for m in listed["members"]}
    # Mid-election a member reports no leader (the JSON then has no "leader"):
    # give raft the few seconds it needs, as a client would.
    deadline = time.monotonic() + 30.0
    while True:
        for status in _etcdctl(lab, via, ["endpoint", "status"], retry_for=30.0):
            leader_id = status["Status"].get("leader")
            if leader_id in names:
                return names[leader_id]
        if time.monotonic() > deadline:
            return None
        time.sleep(1.0)


def move_etcd_leader(lab: Lab, to: str) -> bool:
    """Make ``to`` the etcd raft leader (False if it is no etcd member).

    A primary that also leads etcd is the worst case for a freeze: etcd's
    lessor on the frozen leader wakes up believing every lease expired.
    """
    if to not in {m.name for m in etcd.members(lab.spec)}:
        return False
    listed = _etcdctl(lab, to, ["member", "list"], retry_for=30.0)
    ids = {m["name"]: m["ID"] for m in listed["members"]}
    current = etcd_leader(lab, via=to)
    if current == to:
        return True
    if current is None:
        raise RuntimeError("etcd has no leader")
    leader_url = etcd.client_url(lab.spec, lab.spec.node(current))
    _etcdctl(lab, to, ["move-leader", f"{ids[to]:x}"], endpoints=[leader_url])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if etcd_leader(lab, via=to) == to:
            return True
        time.sleep(0.2)
    raise RuntimeError(f"etcd leadership did not move to {to}")


# ---- operator commands ---------------------------------------------------------------


def switchover(lab: Lab, to: str | None = None, timeout: float = 60.0) -> str:
    """Planned switchover with patronictl, run inside a node as an operator would.

    Without ``to`` the synchronous standby is chosen: in synchronous mode it is
    the only candidate Patroni accepts without risking acknowledged writes.
    Returns the new leader once it runs.
    """
    old = leader(lab)
    if old is None:
        raise RuntimeError("no running leader to switch over from")
    candidate = to or sync_standby(lab)
    if candidate is None and not lab.spec.patroni.synchronous_mode:
        # Asynchronous replication: any streaming replica is a candidate.
        candidate = next((n.name for n in lab.spec.postgres_nodes if is_streaming(lab, n.name)), None)
    if candidate is None:
        raise RuntimeError("no synchronous standby to switch over to; name one with --to")
    if candidate == old:
        return old
    result = lab.exec(
        candidate,
        ["patronictl", "-c", patroni.CONFIG_PATH, "switchover", "--force", "--candidate", candidate],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(f"patronictl switchover failed: {result.stdout}{result.stderr}")
    new = wait_leader(lab, not_=old, timeout=timeout)
    if new != candidate:
        raise RuntimeError(f"switchover to {candidate} ended with leader {new}: {result.stdout}")
    return new


def postmaster_pid(lab: Lab, node: str) -> int:
    """The postmaster's PID inside the machine (postmaster.pid's first line)."""
    path = f"{lab.spec.postgres.data_dir}/postmaster.pid"
    result = lab.exec(node, ["cat", path], capture_output=True, text=True, check=True)
    return int(result.stdout.splitlines()[0])


# ---- the harness -----------------------------------------------------------------------


class Run:
    """One scenario's client workload and measurements."""

    def __init__(self, lab: Lab, fault: str) -> None:
        self.lab = lab
        self.fault = fault
        self.writer = Writer(lab)
        self.reader = Reader(lab)
        self.old_primary: str | None = None
        self.fault_at = 0.0
        self.fault_wall: float | None = None
        self.rejoin_s: float | None = None
        self.extra: dict[str, Any] = {}

    def inject(self, action: Callable[[], None]) -> float:
        """Run the fault at a known client time."""
        self.fault_at = time.monotonic()
        self.fault_wall = time.time()
        action()
        return self.fault_at

    def result(self) -> dict[str, Any]:
        """Judge the run once the lab is healthy again and the clients have stopped."""
        writer = self.writer
        acks, failures = writer.snapshot()
        lost_by_node = {node.name: writer.missing_on(str(node.ip)) for node in self.lab.spec.postgres_nodes}
        lost = sorted(set().union(*lost_by_node.values())) if lost_by_node else []
        evidence = writer.split_brain()
        windows = writer.windows(since=self.fault_at)
        new_primary = leader(self.lab)
        result: dict[str, Any] = {
            "fault": self.fault,
            "old_primary": self.old_primary,
            "new_primary": new_primary,
            "unavailability_s": round(writer.unavailability(since=self.fault_at), 2),
            "windows": [
                {
                    "start_s": round(w.start - self.fault_at, 2),
                    "seconds": None if w.seconds is None else round(w.seconds, 2),
                    "failed_attempts": w.failures,
                }
                for w in windows
            ],
            "acked": len(acks),
            "failed_attempts": len(failures),
            "lost": len(lost),
            "lost_by_node": {k: len(v) for k, v in lost_by_node.items()},
            "lost_sample": lost[:10],
            "split_brain": bool(evidence),
            "split_brain_acks": len(evidence),
            "servers_in_order": writer.servers(),
            "rejoin_s": None if self.rejoin_s is None else round(self.rejoin_s, 1),
            "reads": self.reader.summary(),
            **self.extra,
        }
        if lost or evidence:
            since = None if self.fault_wall is None else self.fault_wall - 5
            result["patroni_logs"] = patroni_logs(self.lab, since=since)
        return result


@contextmanager
def scenario(lab: Lab, fault: str) -> Iterator[Run]:
    """A healthy lab, clients running in steady state; clients stopped and joined afterwards."""
    lab.wait_ready(timeout=READY_TIMEOUT)
    ensure_ledger(lab)
    run = Run(lab, fault)
    run.old_primary = leader(lab)
    run.writer.start()
    run.reader.start()
    try:
        if not run.writer.wait_acks(STEADY_ACKS):
            raise RuntimeError(f"writer not acknowledged before the fault: {run.writer.snapshot()[1][-3:]}")
        yield run
        lab.wait_ready(timeout=READY_TIMEOUT)
        run.writer.wait_acks(STEADY_ACKS)  # acknowledged writes after recovery, too
    finally:
        for looper in (run.writer, run.reader):
            looper.stop()
    if run.writer.crash is not None:
        raise RuntimeError(f"writer crashed: {run.writer.crash!r}")


# ---- the scenarios ------------------------------------------------------------------------


def primary_power_off(lab: Lab) -> dict[str, Any]:
    """(1) Pull the primary's plug; boot it again: it must rejoin by pg_rewind on its own."""
    with scenario(lab, "primary_power_off") as run:
        machine = lab.machine(lab.spec.node(_require(run.old_primary)))
        try:
            since = run.inject(machine.kill)
            run.writer.wait_resumed(since, RESUME_TIMEOUT)
        finally:
            restarted = time.monotonic()
            machine.start()
        run.rejoin_s = wait_serving(lab, _require(run.old_primary), restarted, as_replica=True)
    return run.result()


def postmaster_sigkill(lab: Lab) -> dict[str, Any]:
    """(2) SIGKILL the primary's postmaster while Patroni lives: Patroni must restart or fail over."""
    with scenario(lab, "postmaster_sigkill") as run:
        old = _require(run.old_primary)
        pid = postmaster_pid(lab, old)
        since = run.inject(lambda: lab.exec(old, ["kill", "-9", str(pid)], check=True))
        run.writer.wait_resumed(since, RESUME_TIMEOUT)
        run.rejoin_s = wait_serving(lab, old, since)
        run.extra["postmaster_pid"] = pid
    return run.result()


def primary_partition(lab: Lab, hold: float | None = None, etcd_leader_too: bool = True) -> dict[str, Any]:
    """(3) Cut the primary off for ttl + 15 s, then reconnect: it must follow the new leader.

    With ``etcd_leader_too`` the primary's machine leads etcd as well (the worst case).
    """
    hold = hold if hold is not None else lab.spec.patroni.ttl + 15
    with scenario(lab, "primary_partition") as run:
        old = _require(run.old_primary)
        machine = lab.machine(lab.spec.node(old))
        _hold_out(lab, run, old, machine.partition, machine.heal, hold, etcd_leader_too)
    return run.result()


def primary_freeze(lab: Lab, hold: float | None = None, etcd_leader_too: bool = True) -> dict[str, Any]:
    """(4) Freeze the primary for ttl + 15 s, then thaw: it must not take a single write more.

    With ``etcd_leader_too`` the primary's machine leads etcd as well: a paused
    VM pauses both, and that is the case that loses writes (see move_etcd_leader).
    """
    hold = hold if hold is not None else lab.spec.patroni.ttl + 15
    with scenario(lab, "primary_freeze") as run:
        old = _require(run.old_primary)
        machine = lab.machine(lab.spec.node(old))
        _hold_out(lab, run, old, machine.freeze, machine.thaw, hold, etcd_leader_too)
    result = run.result()
    old_ip = node_ip(lab, old)
    takeover = _first_ack_elsewhere(run.writer, old_ip)
    result["acks_from_old_primary_after_takeover"] = sum(
        1 for a in run.writer.snapshot()[0] if takeover is not None and a.server == old_ip and a.at > takeover
    )
    return result


def vip_holder_loses_haproxy(lab: Lab) -> dict[str, Any]:
    """(5a) HAProxy dies on the VIP holder (stopped: systemd would restart a killed one)."""
    with scenario(lab, "vip_holder_loses_haproxy") as run:
        holder = _single_holder(lab)
        run.extra["old_vip_holder"] = holder
        try:
            since = run.inject(lambda: lab.exec(holder, ["systemctl", "stop", "haproxy"], check=True))
            run.extra["vip_moved_s"] = _wait_vip_moves(lab, holder, since)
            run.writer.wait_resumed(since, RESUME_TIMEOUT)
            # Before HAProxy returns: with one hop the primary then takes the VIP back.
            run.extra["new_vip_holder"] = _single_holder(lab)
        finally:
            lab.exec(holder, ["systemctl", "start", "haproxy"], check=False)
    return run.result()


def vip_holder_dies(lab: Lab) -> dict[str, Any]:
    """(5b) The VIP holder's machine dies; the primary is elsewhere, so only the VIP moves.

    With one hop (keepalived.primaryWeight, docs/one-hop.md) the VIP follows the
    primary, so its holder's death is also the primary's (fault 1's case).
    """
    lab.wait_ready(timeout=READY_TIMEOUT)
    holder = _single_holder(lab)
    one_hop = lab.spec.keepalived.primary_weight > 0
    if leader(lab) == holder and not one_hop:  # isolate the VIP from a failover: move the primary away
        others = [n.name for n in lab.spec.postgres_nodes if n.name != holder]
        sync = sync_standby(lab)
        switchover(lab, to=sync if sync in others else others[0])
        lab.wait_ready(timeout=READY_TIMEOUT)
    with scenario(lab, "vip_holder_dies") as run:
        machine = lab.machine(lab.spec.node(holder))
        run.extra["old_vip_holder"] = holder
        try:
            since = run.inject(machine.kill)
            run.extra["vip_moved_s"] = _wait_vip_moves(lab, holder, since)
            run.writer.wait_resumed(since, RESUME_TIMEOUT)
        finally:
            restarted = time.monotonic()
            machine.start()
        run.rejoin_s = wait_serving(lab, holder, restarted, as_replica=True)
        run.extra["rejoin_of"] = holder  # here rejoin_s is the dead VIP holder's, not a primary's
        run.extra["new_vip_holder"] = _single_holder(lab)
    return run.result()


def host_crash(lab: Lab, host: str | None = None) -> dict[str, Any]:
    """(6) A Proxmox host carrying one VM crashes, with that VM primary; then it boots again."""
    host = host or _host_with_one_vm(lab)
    victims = [n for n in lab.spec.nodes if n.host == host]
    postgres_victims = [n.name for n in victims if n.runs_postgres]
    lab.wait_ready(timeout=READY_TIMEOUT)
    if postgres_victims and leader(lab) not in postgres_victims:
        switchover(lab, to=postgres_victims[0])
        lab.wait_ready(timeout=READY_TIMEOUT)
    with scenario(lab, f"host_crash_{host}") as run:
        machines = [lab.machine(n) for n in victims]

        def crash() -> None:
            for m in machines:
                m.kill()

        try:
            since = run.inject(crash)
            run.writer.wait_resumed(since, RESUME_TIMEOUT)
        finally:
            restarted = time.monotonic()
            for m in machines:
                m.start()
        run.rejoin_s = wait_serving(lab, _require(run.old_primary), restarted, as_replica=True)
        run.extra["host"] = host
        run.extra["vms"] = [n.name for n in victims]
    return run.result()


def planned_switchover(lab: Lab, to: str | None = None) -> dict[str, Any]:
    """(8) The documented operator switchover: how long 5432 refuses writes."""
    with scenario(lab, "planned_switchover") as run:
        old = _require(run.old_primary)
        holder: dict[str, str] = {}
        since = run.inject(lambda: holder.setdefault("new", switchover(lab, to=to)))
        run.writer.wait_resumed(since, RESUME_TIMEOUT)
        run.rejoin_s = wait_serving(lab, old, since, as_replica=True)
        run.extra["candidate"] = holder.get("new")
    return run.result()


def _host_with_most_etcd_members(lab: Lab) -> str:
    counts = Counter(m.host for m in etcd.members(lab.spec))
    return counts.most_common(1)[0][0]


def quorum_host_crash(lab: Lab, host: str | None = None, hold: float | None = None) -> dict[str, Any]:
    """(7) The host carrying two etcd members crashes: etcd loses its quorum.

    The primary is put on the surviving host first: the hard case, a live
    primary that can no longer renew its leader key. Nothing can be elected
    while the host is down; what must hold is that no acknowledged write is
    lost and no second primary appears, and that the cluster heals by itself
    once the host boots again.
    """
    host = host or _host_with_most_etcd_members(lab)
    hold = hold if hold is not None else lab.spec.patroni.ttl + 20
    victims = [n for n in lab.spec.nodes if n.host == host]
    survivors = [n.name for n in lab.spec.postgres_nodes if n.host != host]
    lab.wait_ready(timeout=READY_TIMEOUT)
    if leader(lab) not in survivors:
        switchover(lab, to=survivors[0])
        lab.wait_ready(timeout=READY_TIMEOUT)
    with scenario(lab, f"quorum_host_crash_{host}") as run:
        machines = [lab.machine(n) for n in victims]
        try:
            since = run.inject(lambda: [m.kill() for m in machines])
            _sleep_until(since + hold)
            during = lab.status()
            run.extra["status_during"] = {
                "etcd": during["etcd"],
                # The DCS view is frozen without a quorum: ask each survivor itself.
                "dcs_roles": {n["name"]: n["role"] for n in during["nodes"]},
                "own_roles": {
                    n.name: own_state(lab, n.name).get("role", "unreachable") for n in lab.spec.postgres_nodes
                },
                "vipHolder": during["vipHolder"],
            }
            # Once the leader key has expired, no write may be acknowledged anywhere.
            quiet_from = since + lab.spec.patroni.ttl
            run.extra["acks_without_quorum"] = sum(1 for a in run.writer.snapshot()[0] if a.at > quiet_from)
        finally:
            restarted = time.monotonic()
            for m in machines:
                m.start()
        run.extra["host"] = host
        run.extra["vms"] = [n.name for n in victims]
        run.rejoin_s = wait_serving(lab, _require(run.old_primary), restarted)
    return run.result()


SCENARIOS: dict[str, Callable[[Lab], dict[str, Any]]] = {
    "1": primary_power_off,
    "2": postmaster_sigkill,
    "3": primary_partition,
    "4": primary_freeze,
    "5a": vip_holder_loses_haproxy,
    "5b": vip_holder_dies,
    "6": host_crash,
    "7": quorum_host_crash,
    "8": planned_switchover,
}


# ---- helpers ------------------------------------------------------------------------------


def _require(name: str | None) -> str:
    if name is None:
        raise RuntimeError("no running leader before the fault")
    return name


def _etcd_leader_on(lab: Lab, node: str, wanted: bool) -> str | None:
    """Move etcd leadership to ``node`` if ``wanted``; the etcd leader either way."""
    if wanted:
        move_etcd_leader(lab, node)
    return etcd_leader(lab)


def _hold_out(
    lab: Lab,
    run: Run,
    old: str,
    cut: Callable[[], None],
    restore: Callable[[], None],
    hold: float,
    etcd_leader_too: bool,
) -> None:
    """Cut the primary ``old`` off for ``hold`` seconds, then bring it back: it must rejoin as a replica.

    The partition and the freeze differ only in how the machine is cut off.
    """
    run.extra["etcd_leader_at_fault"] = _etcd_leader_on(lab, old, etcd_leader_too)
    try:
        since = run.inject(cut)
        run.writer.wait_resumed(since, hold)
        _sleep_until(since + hold)
    finally:
        restored = time.monotonic()
        restore()
    run.rejoin_s = wait_serving(lab, old, restored, as_replica=True)
    run.extra["held_s"] = round(restored - since, 1)


def _sleep_until(deadline: float) -> None:
    time.sleep(max(0.0, deadline - time.monotonic()))


def _single_holder(lab: Lab, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        holders = lab.vip_holders()
        if len(holders) == 1:
            return holders[0]
        if time.monotonic() > deadline:
            raise RuntimeError(f"VIP holders: {holders}")
        time.sleep(0.5)


def _wait_vip_moves(lab: Lab, old: str, since: float, timeout: float = 60.0) -> float | None:
    """Seconds from ``since`` until exactly one other machine holds the VIP."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        holders = lab.vip_holders()
        if len(holders) == 1 and holders[0] != old:
            return round(time.monotonic() - since, 2)
        time.sleep(0.2)
    return None


def _first_ack_elsewhere(writer: Writer, old_ip: str) -> float | None:
    """When a server other than the old primary first acknowledged a write."""
    return next((a.at for a in writer.snapshot()[0] if a.server != old_ip), None)


def _host_with_one_vm(lab: Lab) -> str:
    """The host with a single PostgreSQL VM (it may also carry the backup repository)."""
    for host in lab.spec.hosts:
        databases = [n for n in lab.spec.postgres_nodes if n.host == host]
        if len(databases) == 1:
            return host
    raise RuntimeError("no Proxmox host carries exactly one PostgreSQL VM")
