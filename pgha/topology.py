"""What the cluster survives: told to users before they deploy, and exported."""

from __future__ import annotations

from . import etcd
from .spec import ClusterSpec


def failure_domains(spec: ClusterSpec) -> dict[str, str]:
    """For each Proxmox host, what losing it does to the cluster."""
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
                "Patroni's failsafe mode). Add pgha:witness on a third host to survive it."
            )
    return summary
