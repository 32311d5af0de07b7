"""The lab's private network: one network namespace with a bridge in it.

It stands in for the Proxmox bridge (vmbr) the VMs sit on. Everything the lab
sends stays inside this namespace: machines, clients (psql, curl, ssh) and
fault injection (links down) all live here, never on the host's network.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import subprocess
from pathlib import Path
from typing import Any

NETNS_DIR = Path("/run/netns")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class LabNetwork:
    """Network namespace /run/netns/<name> holding bridge br0."""

    BRIDGE = "br0"

    def __init__(self, name: str) -> None:
        if not _NAME_RE.match(name):
            raise ValueError(f"bad network namespace name {name!r}")
        self.name = name

    @property
    def path(self) -> Path:
        """The namespace's bind-mount file, which nsenter --net= takes."""
        return NETNS_DIR / self.name

    def exists(self) -> bool:
        """Whether the namespace is there (ip netns add ran and was not undone)."""
        return self.path.exists()

    def create(self, cidr: str, bridge_ip: str) -> None:
        """Create namespace and bridge; idempotent so a crashed run can be resumed."""
        net = ipaddress.ip_network(cidr, strict=False)
        addr = ipaddress.ip_address(bridge_ip)
        if addr not in net:
            raise ValueError(f"bridge address {bridge_ip} is outside {cidr}")
        if not self.exists():
            subprocess.run(["ip", "netns", "add", self.name], check=True)
        self._ip("link", "set", "lo", "up")
        if not self.link_exists(self.BRIDGE):
            # No STP and no forwarding delay: ports forward at once, as on a
            # Proxmox vmbr; no snooping so VRRP multicast always floods.
            # A fixed MAC: otherwise the bridge takes its lowest port's MAC and
            # changes it as machines come and go, leaving stale ARP entries.
            mac = "02:" + ":".join(
                hashlib.sha1(self.name.encode()).hexdigest()[i : i + 2] for i in range(0, 10, 2)
            )
            self._ip(
                "link",
                "add",
                self.BRIDGE,
                "address",
                mac,
                "type",
                "bridge",
                "stp_state",
                "0",
                "forward_delay",
                "0",
                "mcast_snooping",
                "0",
            )
        self._ip("addr", "replace", f"{addr}/{net.prefixlen}", "dev", self.BRIDGE)
        self._ip("link", "set", self.BRIDGE, "up")

    def destroy(self) -> None:
        """Delete the namespace (and every link left in it); idempotent."""
        if self.exists():
            subprocess.run(["ip", "netns", "delete", self.name], check=True)

    def exec_args(self, argv: list[str]) -> list[str]:
        """argv wrapped to run inside the namespace.

        nsenter switches only the network namespace; `ip netns exec` would also
        remount /sys, which breaks systemd-nspawn and is not needed by clients.
        """
        return ["nsenter", f"--net={self.path}", *argv]

    def run(self, argv: list[str], **kw: Any) -> subprocess.CompletedProcess[Any]:
        """subprocess.run of argv inside the namespace (same keyword arguments)."""
        return subprocess.run(self.exec_args(argv), **kw)

    def link_exists(self, ifname: str) -> bool:
        """Whether a link of that name is in the namespace."""
        res = subprocess.run(
            ["ip", "-n", self.name, "link", "show", "dev", ifname], capture_output=True, check=False
        )
        return res.returncode == 0

    def attach(self, host_ifname: str) -> None:
        """Put a link on the bridge and bring it up (a VM's tap on vmbr)."""
        self._ip("link", "set", host_ifname, "master", self.BRIDGE)
        self._ip("link", "set", host_ifname, "up")

    def set_link(self, host_ifname: str, up: bool) -> None:
        """Bring a bridge port down/up: pulls or reconnects a machine's cable."""
        self._ip("link", "set", host_ifname, "up" if up else "down")

    def delete_link(self, ifname: str) -> None:
        """Delete a link if present (deleting one end of a veth removes both)."""
        if self.exists() and self.link_exists(ifname):
            # It may vanish meanwhile (a machine's namespace being torn down).
            subprocess.run(
                ["ip", "-n", self.name, "link", "delete", ifname], check=False, capture_output=True
            )

    def _ip(self, *args: str) -> None:
        """Run one `ip` command inside the namespace, failing loudly."""
        subprocess.run(["ip", "-n", self.name, *args], check=True)
