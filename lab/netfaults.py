"""A partition that keeps carrier up: every packet to and from a machine dropped on its bridge port.

``Machine.partition`` takes the bridge port down, so the NIC inside shows
NO-CARRIER and the kernel fails sockets fast; a dead switch or a firewall
mistake drops packets while the link stays up, and then only timeouts
(TCP retransmission, keepalives, wal_sender_timeout, etcd's heartbeats) notice.
This does that with tc on the machine's port inside the lab namespace: netem
loses 100 % of what leaves towards the machine, an ingress filter drops what
comes from it. Lab traffic only: nothing outside the namespace is touched.
"""

from __future__ import annotations

import subprocess

from .cluster import Lab


def _tc(lab: Lab, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["tc", "-n", lab.network.name, *args], capture_output=True, text=True, check=check)


def drop(lab: Lab, node: str) -> None:
    """Drop every packet to and from ``node``; its link stays up."""
    port = lab.machine(lab.spec.node(node)).host_ifname
    _tc(lab, "qdisc", "replace", "dev", port, "root", "netem", "loss", "100%")
    _tc(lab, "qdisc", "del", "dev", port, "ingress", check=False)
    _tc(lab, "qdisc", "add", "dev", port, "ingress")
    _tc(lab, "filter", "add", "dev", port, "parent", "ffff:", "matchall", "action", "drop")


def undrop(lab: Lab, node: str) -> None:
    """Undo drop(); harmless when nothing was dropped."""
    port = lab.machine(lab.spec.node(node)).host_ifname
    _tc(lab, "qdisc", "del", "dev", port, "root", check=False)
    _tc(lab, "qdisc", "del", "dev", port, "ingress", check=False)


def carrier(lab: Lab, node: str) -> bool:
    """Whether the machine's own NIC sees carrier (what drop() must keep, unlike partition())."""
    interface = lab.spec.network.interface
    result = lab.exec(node, ["cat", f"/sys/class/net/{interface}/carrier"], capture_output=True, text=True)
    return result.returncode == 0 and result.stdout.strip() == "1"
