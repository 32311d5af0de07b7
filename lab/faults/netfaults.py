"""A partition that keeps carrier up: the machine's bridge port stops forwarding, its link stays up.

``Machine.partition`` takes the bridge port down, so the NIC inside shows
NO-CARRIER and the kernel fails sockets fast; a dead switch or a firewall
mistake drops packets while the link stays up, and then only timeouts
(TCP retransmission, keepalives, wal_sender_timeout, etcd's heartbeats) notice.
This sets the port's bridge state to ``disabled`` (as a switch blocking a
port; the bridge runs without STP, so the state is ours to set): the bridge
forwards nothing to or from it, and both ends of the veth keep carrier.
(tc netem and matchall, the other way, are not in this host's kernel.)
Lab traffic only: nothing outside the lab's namespace is touched.
"""

from __future__ import annotations

import subprocess

from ..cluster import Lab

DISABLED, FORWARDING = "0", "3"  # bridge port states (BR_STATE_*)


def _port_state(lab: Lab, node: str, state: str) -> None:
    port = lab.machine(lab.spec.node(node)).host_ifname
    subprocess.run(["bridge", "-n", lab.network.name, "link", "set", "dev", port, "state", state], check=True)


def drop(lab: Lab, node: str) -> None:
    """Drop every frame to and from ``node``; its link stays up."""
    _port_state(lab, node, DISABLED)


def undrop(lab: Lab, node: str) -> None:
    """Undo drop()."""
    _port_state(lab, node, FORWARDING)


def carrier(lab: Lab, node: str) -> bool:
    """Whether the machine's own NIC sees carrier (what drop() must keep, unlike partition())."""
    interface = lab.spec.network.interface
    result = lab.exec(node, ["cat", f"/sys/class/net/{interface}/carrier"], capture_output=True, text=True)
    return result.returncode == 0 and result.stdout.strip() == "1"
