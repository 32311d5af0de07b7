"""What the cluster survives: told to users before they deploy, and exported."""

from __future__ import annotations

from . import etcd
from .spec import ClusterSpec


def durability(spec: ClusterSpec, host: str) -> str:
    """What losing ``host`` with the primary on it does to acknowledged commits (docs/ha-durability.md)."""
    databases = [n for n in spec.postgres_nodes if n.host == host]
    elsewhere = [n for n in spec.postgres_nodes if n.host != host]
    if not databases:
        return "no database VM there, no commit at stake"
    if not elsewhere:
        return "every database VM is there: the data is only as safe as its disks"
    if not spec.patroni.synchronous_mode:
        return (
            "asynchronous replication: commits acknowledged but not yet streamed to another host "
            "are lost if the primary was there"
        )
    if spec.host_aware_sync:
        return (
            f"no acknowledged commit lost if the primary was there: each commit waits for "
            f"{spec.sync_standbys} standby(s) on another host (eligible: "
            f"{', '.join(n.name for n in elsewhere)}), so the survivors hold every acknowledged commit"
        )
    return (
        f"no acknowledged commit lost if the primary was there while {spec.sync_standbys} "
        "synchronous standby(s) confirm each commit and one of them runs elsewhere"
    )


def failure_domains(spec: ClusterSpec) -> dict[str, str]:
    """For each Proxmox host, what losing it does to the cluster, and to acknowledged commits."""
    members = etcd.members(spec)
    quorum = len(members) // 2 + 1
    summary: dict[str, str] = {}
    for host in spec.hosts:
        lost = [n.name for n in spec.nodes if n.host == host]
        remaining = [m for m in members if m.host != host]
        if len(remaining) >= quorum:
            summary[host] = (
                f"survived: losing {host} ({', '.join(lost)}) leaves {len(remaining)} of "
                f"{len(members)} etcd members; Patroni fails over automatically if the primary was there"
            )
        else:
            summary[host] = (
                f"NOT survived automatically: losing {host} ({', '.join(lost)}) leaves "
                f"{len(remaining)} of {len(members)} etcd members, below the quorum of {quorum}; "
                "no failover happens (a running primary elsewhere keeps serving only through "
                "Patroni's failsafe mode); add pgha:witness on a third host to survive it"
            )
        summary[host] += f". Durability: {durability(spec, host)}."
    return summary
