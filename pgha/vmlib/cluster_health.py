"""Whether a Patroni cluster is healthy: the one rule the VM programs and the lab share.

pgha-rolling waits for it between restarts, pgha-host-maintenance refuses to
start without it, and the lab's readiness (``lab.observe.is_healthy``) is the
same rule: one running leader, every expected member streaming, enough
synchronous standbys and, with host-aware sync, one of them on another
Proxmox host than the primary. Everything works on Patroni's ``/cluster``
document (its ``members`` list), so each caller only says what it expects.

Standard library only: shipped to the VMs as it is (``pgha/vmprograms.py``).
"""

from __future__ import annotations

from typing import Any

View = dict[str, Any]
LEADER_ROLES = ("leader", "master", "primary")
# Standbys that confirm commits: synchronous, or part of Patroni's quorum commit.
CONFIRMING_ROLES = ("sync_standby", "quorum_standby")
# A standby carrying one of these tags is never chosen as synchronous (a VM
# leaving, a host in maintenance).
EXCLUDING_TAGS = ("nosync", "nofailover")


def members_by_name(view: View | None) -> dict[str, View]:
    """Patroni's members by name; empty without a view."""
    return {m["name"]: m for m in (view or {}).get("members", [])}


def running_leader(view: View | None) -> str | None:
    """The member that leads and runs, if any."""
    for name, member in members_by_name(view).items():
        if member.get("role") in LEADER_ROLES and member.get("state") == "running":
            return name
    return None


def host_crash_problem(members: dict[str, View], leader: str, hosts: dict[str, str]) -> str | None:
    """Why a crash of the primary's Proxmox host would leave nothing promotable; None if it would not.

    Host-aware sync (``hosts``: member -> Proxmox host; empty when off) promises a
    synchronous standby on another host than the primary. Right after a leader
    change the old ``/sync`` may still name a standby on the new primary's own
    host for a few seconds; Patroni promotes only ``/sync`` members, so a host
    crash then stalls the cluster until that host is back. Only standbys that
    could confirm commits count: streaming, on another host, not tagged
    nosync or nofailover (a VM leaving, a host in maintenance).
    """
    if not hosts or leader not in hosts:
        return None
    home = hosts[leader]
    elsewhere = {name for name in members if name != leader and hosts.get(name, home) != home}
    eligible = [
        name
        for name in elsewhere
        if members[name].get("state") == "streaming"
        and not any((members[name].get("tags") or {}).get(tag) for tag in EXCLUDING_TAGS)
    ]
    synchronous = [n for n in elsewhere if members[n].get("role") in CONFIRMING_ROLES]
    if eligible and not synchronous:
        waiting = ", ".join(sorted(eligible))
        return f"no synchronous standby on another host than the primary's ({home}) yet: {waiting} could be"
    return None


def problems(
    view: View | None,
    expected: list[str],
    sync_standbys: int,
    hosts: dict[str, str] | None = None,
    max_lag: int | None = None,
) -> list[str]:
    """What stands between Patroni's ``/cluster`` view and healthy; empty when healthy.

    Healthy: not paused, one running leader, every ``expected`` member in the
    cluster and, unless it leads, streaming (within ``max_lag`` bytes when
    given), at least ``sync_standbys`` synchronous standbys and, with
    host-aware sync (``hosts``), one on another host than the primary's
    (:func:`host_crash_problem`).
    """
    if view is None:
        return ["no Patroni REST API answers"]
    members = members_by_name(view)
    found = []
    if view.get("pause"):
        found.append("the cluster is paused (Patroni maintenance mode)")
    leaders = [n for n, m in members.items() if m.get("role") in LEADER_ROLES]
    if len(leaders) != 1 or members[leaders[0]].get("state") != "running":
        found.append(f"no single running leader (leaders: {leaders or 'none'})")
    for name in expected:
        member = members.get(name)
        if member is None:
            found.append(f"{name} is not in the cluster")
        elif name not in leaders:
            if member.get("state") != "streaming":
                found.append(f"{name} is {member.get('state')}, not streaming")
            lag = member.get("lag")
            if max_lag is not None and isinstance(lag, int) and lag > max_lag:
                found.append(f"{name} lags {lag} bytes behind the primary (more than {max_lag})")
    synchronous = [n for n, m in members.items() if m.get("role") == "sync_standby"]
    if len(synchronous) < sync_standbys:
        found.append(f"{len(synchronous)} synchronous standby(s) of {sync_standbys}")
    elif len(leaders) == 1:
        stall = host_crash_problem(members, leaders[0], hosts or {})
        if stall:
            found.append(stall)
    return found
