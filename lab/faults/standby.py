"""Standby faults: losing a standby must not stop writes for more than a few seconds.

Each scenario picks a standby by its part in the cluster and breaks it for
``HOLD_S`` (longer than it takes Patroni to drop a silent synchronous standby),
then undoes the fault and waits until it streams again. What is judged is the
longest time without an acknowledged write (``max_gap_s``): a commit that
waits for a silent synchronous standby fails nothing, it only waits.

Which standby:
- ``sync``: the synchronous standby (host-aware: always on another Proxmox
  host than the primary); its fault holds commits until its walsender gives up
  (wal_sender_timeout) and the leader's next loop drops it;
- ``local``: a standby on the primary's own host (host-aware: tagged nosync,
  it confirms no commit, so its fault should cost nothing). The primary is
  first switched over to a host carrying another database VM if need be.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pgha import etcd

from ..cluster import Lab, switchover
from ..observation import leader, sync_standbys, vip_holders, wait_serving
from ..wait import wait_until
from .harness import READY_TIMEOUT, Run, scenario
from .netfaults import carrier, drop, undrop

HOLD_S = 12.0


def _local_standby(lab: Lab) -> str:
    """A standby on the primary's host, after moving the primary to a host that has one."""
    lab.wait_ready(timeout=READY_TIMEOUT)
    nodes = lab.spec.postgres_nodes
    primary = leader(lab)
    host = lab.spec.node(primary).host if primary else None
    local = [n.name for n in nodes if n.host == host and n.name != primary]
    if local:
        return local[0]
    crowded = [n for n in nodes if sum(1 for o in nodes if o.host == n.host) > 1]
    if not crowded:
        raise RuntimeError("no Proxmox host carries two database VMs")
    target = sync_standbys(lab)
    to = next((n.name for n in crowded if n.name in target), crowded[0].name)
    switchover(lab, to=to)
    lab.wait_ready(timeout=READY_TIMEOUT)
    return _local_standby(lab)


def _sync_standby(lab: Lab) -> str:
    lab.wait_ready(timeout=READY_TIMEOUT)
    return wait_until(lambda: next(iter(sync_standbys(lab)), None), 30.0, error="no synchronous standby")


class NotApplicable(RuntimeError):
    """The fault has nothing to act on in this layout (reported as a failed run, with why)."""


FAULTS: dict[str, tuple[str, str]] = {
    # kind: (break, undo) described by name; the functions are below
    "kill": ("power off", "boot"),
    "freeze": ("freeze", "thaw"),
    "partition": ("link down", "link up"),
    "drop": ("drop packets, carrier up", "stop dropping"),
    "etcd": ("SIGKILL its etcd", "start etcd"),
}


def fault_actions(lab: Lab, node: str, kind: str) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """The cut and the restore of a ``kind`` fault on ``node``; NotApplicable when the
    layout gives it nothing to act on (e.g. no etcd member on that VM)."""
    machine = lab.machine(lab.spec.node(node))
    if kind == "kill":
        return machine.kill, machine.start
    if kind == "freeze":
        return machine.freeze, machine.thaw
    if kind == "partition":
        return machine.partition, machine.heal
    if kind == "drop":
        return (lambda: drop(lab, node)), (lambda: undrop(lab, node))
    if kind == "etcd":
        if node not in {m.name for m in etcd.members(lab.spec)}:
            # With a witness, one host's second VM runs no etcd member: nothing to kill there.
            raise NotApplicable(f"{node} runs no etcd member in stack {lab.stack}")
        return (
            lambda: lab.exec(node, ["systemctl", "kill", "--signal=SIGKILL", "etcd"], check=True),
            lambda: lab.exec(node, ["systemctl", "start", "etcd"], check=True),
        )
    raise ValueError(f"unknown standby fault {kind!r}")


def standby_fault(lab: Lab, which: str, kind: str, hold: float = HOLD_S) -> dict[str, Any]:
    """Break one standby (``which``: sync or local) in the way ``kind`` names, for ``hold`` seconds."""
    victim = _sync_standby(lab) if which == "sync" else _local_standby(lab)
    cut, restore = fault_actions(lab, victim, kind)
    with scenario(lab, f"standby_{which}_{kind}") as run:
        run.extra.update(_roles(lab, run, victim))
        try:
            since = run.inject(cut)
            if kind == "drop":
                run.extra["carrier_during_drop"] = carrier(lab, victim)
            time.sleep(max(0.0, since + hold - time.monotonic()))
            run.extra["sync_during"] = sync_standbys(lab)
        finally:
            restored = time.monotonic()
            restore()
        run.rejoin_s = wait_serving(lab, victim, restored, as_replica=True)
        run.extra["rejoin_of"] = victim
    return run.result()


def _roles(lab: Lab, run: Run, victim: str) -> dict[str, Any]:
    primary = run.old_primary or "?"
    return {
        "victim": victim,
        "victim_host": lab.spec.node(victim).host,
        "primary_host": lab.spec.node(primary).host if primary != "?" else None,
        "sync_before": sync_standbys(lab),
        # A standby that also holds the VIP costs a VIP move as well (about 2 s).
        "victim_held_vip": victim in vip_holders(lab),
    }


SCENARIOS: dict[str, Callable[[Lab], dict[str, Any]]] = {
    **{f"sync-{kind}": (lambda lab, k=kind: standby_fault(lab, "sync", k)) for kind in FAULTS},
    **{f"local-{kind}": (lambda lab, k=kind: standby_fault(lab, "local", k)) for kind in FAULTS},
}
