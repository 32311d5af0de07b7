"""Fault scenarios against a live lab, each judged by what a client saw.

Each scenario runs inside ``lab.faults.harness.scenario`` (a healthy lab, a writer
and a reader across the fault, healthy again afterwards) and returns its
``Run.result()`` dict; lab/faults/harness.py says what the fields mean. Cluster
facts come from lab.observation.observe, etcd from lab.observation.etcdctl, switchovers from
lab.cluster.operator: this module holds only the faults.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from pgha import etcd

from ..cluster import Lab, postmaster_pid, switchover
from ..observation import (
    DirectProbe,
    Writer,
    etcdctl,
    leader,
    node_ip,
    own_state,
    single_vip_holder,
    sync_standby,
    vip_holders,
    wait_serving,
    wait_vip_moves,
)
from ..wait import wait_until
from .harness import READY_TIMEOUT, RESUME_TIMEOUT, Run, scenario, seconds_until_etcd_healthy
from .netfaults import drop, undrop

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


def primary_drop(lab: Lab, hold: float | None = None, etcd_leader_too: bool = True) -> dict[str, Any]:
    """(3d) Drop every packet of the primary for ttl + 15 s; its link keeps carrier (netfaults.py)."""
    hold = hold if hold is not None else lab.spec.patroni.ttl + 15
    with scenario(lab, "primary_drop") as run:
        old = _require(run.old_primary)
        _hold_out(lab, run, old, lambda: drop(lab, old), lambda: undrop(lab, old), hold, etcd_leader_too)
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
        holder = single_vip_holder(lab)
        run.extra["old_vip_holder"] = holder
        try:
            since = run.inject(lambda: lab.exec(holder, ["systemctl", "stop", "haproxy"], check=True))
            run.extra["vip_moved_s"] = wait_vip_moves(lab, holder, since)
            run.writer.wait_resumed(since, RESUME_TIMEOUT)
            # Before HAProxy returns: with one hop the primary then takes the VIP back.
            run.extra["new_vip_holder"] = single_vip_holder(lab)
        finally:
            lab.exec(holder, ["systemctl", "start", "haproxy"], check=False)
    return run.result()


def vip_holder_dies(lab: Lab) -> dict[str, Any]:
    """(5b) The VIP holder's machine dies.

    Without one hop the primary is moved off the holder first, so only the VIP
    moves (scenario ``vip_holder_dies``). With one hop (keepalived.primaryWeight,
    docs/one-hop.md) the VIP follows the primary, so its holder's death is also
    the primary's: scenario ``vip_holder_dies_with_primary``, a failover judged
    like fault 1 (tests/ha/limits.py).
    """
    lab.wait_ready(timeout=READY_TIMEOUT)
    one_hop = lab.spec.keepalived.primary_weight > 0
    if one_hop:  # the VIP follows a switchover or failover within seconds: let it settle
        wait_until(lambda: vip_holders(lab) == [leader(lab)], 30.0, error="the VIP to follow the primary")
    holder = single_vip_holder(lab)
    if leader(lab) == holder and not one_hop:  # isolate the VIP from a failover: move the primary away
        others = [n.name for n in lab.spec.postgres_nodes if n.name != holder]
        sync = sync_standby(lab)
        switchover(lab, to=sync if sync in others else others[0])
        lab.wait_ready(timeout=READY_TIMEOUT)
    name = "vip_holder_dies_with_primary" if leader(lab) == holder else "vip_holder_dies"
    with scenario(lab, name) as run:
        machine = lab.machine(lab.spec.node(holder))
        run.extra["old_vip_holder"] = holder
        try:
            since = run.inject(machine.kill)
            run.extra["vip_moved_s"] = wait_vip_moves(lab, holder, since)
            run.writer.wait_resumed(since, RESUME_TIMEOUT)
        finally:
            restarted = time.monotonic()
            machine.start()
        run.rejoin_s = wait_serving(lab, holder, restarted, as_replica=True)
        run.extra["rejoin_of"] = holder  # here rejoin_s is the dead VIP holder's, not a primary's
        run.extra["new_vip_holder"] = single_vip_holder(lab)
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
    "3d": primary_drop,
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
        etcdctl.move_leader(lab, node)
    return etcdctl.leader(lab)


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
    probe = DirectProbe(lab, old).start()  # split brain, asked of every node itself (probe.py)
    try:
        since = run.inject(cut)
        run.writer.wait_resumed(since, hold, scale=False)  # the fault lasts ``hold``, however slow
        _sleep_until(since + hold)
    finally:
        restored = time.monotonic()
        restore()
        # How soon etcd is whole again, every member with a leader: until then a second
        # fault may leave it without quorum (docs/ha.md, "Network faults and TCP").
        run.extra["etcd_healthy_after_s"] = seconds_until_etcd_healthy(lab, restored)
        run.rejoin_s = wait_serving(lab, old, restored, as_replica=True)
        run.extra["direct_probe"] = probe.stop()
    run.extra["held_s"] = round(restored - since, 1)


def _sleep_until(deadline: float) -> None:
    time.sleep(max(0.0, deadline - time.monotonic()))


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
