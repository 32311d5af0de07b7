"""The witness as an existing machine (``pgha:witness`` with ``external: true``).

A NAS, the host of the Proxmox cluster's QDevice, a small VPS over a VPN: any
Debian 13 machine the operator prepared with the SSH user (``pgha:ssh.user``,
passwordless sudo, the deploy key and the operators' keys). No VM is created
for it; the same steps run there over SSH and install etcd only, with TLS.

What an external machine lacks compared with a pgha VM, the system step adds:
pgha's file installer (cloud-init writes it on the VMs), and a firewall. The
firewall is an nftables table of its own, so the machine's other rules stay:
etcd's ports admit the cluster's members and drop everyone else.
"""

from __future__ import annotations

from pathlib import Path

from ..files import RenderedFile, render_template
from ..service import Service
from ..spec import ClusterSpec, Node

HERE = Path(__file__).resolve().parent
PACKAGES = ("nftables",)
RULES_PATH = "/etc/pgha/pgha-firewall.nft"
UNIT_NAME = "pgha-firewall.service"
UNIT_PATH = f"/etc/systemd/system/{UNIT_NAME}"


def admitted(spec: ClusterSpec) -> list[str]:
    """Who may reach etcd on the witness: every machine of the stack (the repository included,
    whose rolling-update turn reads etcd)."""
    return sorted({str(n.ip) for n in spec.nodes}, key=lambda a: tuple(int(p) for p in a.split(".")))


def firewall_files(spec: ClusterSpec, node: Node) -> list[RenderedFile]:
    rules = render_template(
        HERE,
        "pgha-firewall.nft.j2",
        node=node,
        scope=spec.postgres.scope,
        members=admitted(spec),
        ports=[spec.etcd.client_port, spec.etcd.peer_port],
    )
    unit = render_template(HERE, "pgha-firewall.service.j2", rules_path=RULES_PATH)
    return [RenderedFile(RULES_PATH, rules, mode=0o644), RenderedFile(UNIT_PATH, unit)]


# No step of its own (the system step installs the firewall); its packages go into images.
SERVICE = Service("witness", packages=lambda spec: PACKAGES if any(n.external for n in spec.nodes) else ())
