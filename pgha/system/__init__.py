"""The base of every VM: cloud-init finished, kernel settings, common tools, the CA to trust.

The CA certificate comes first, before any service, so that every later
step's services can verify each other from their first start. On an external
machine (the witness, see pgha.witness) this step also brings pgha's file
installer and the firewall, which cloud-init and the VM's isolation give a VM.
"""

from __future__ import annotations

from pathlib import Path

from .. import pki, witness
from ..files import INSTALLER_PATH, INSTALLER_SOURCE, RenderedFile, Step, render_script, render_template
from ..service import Service
from ..spec import ClusterSpec, Node

HERE = Path(__file__).resolve().parent
PACKAGES = ("curl", "ca-certificates", "jq")
SYSCTL_PATH = "/etc/sysctl.d/90-pgha.conf"


def files(spec: ClusterSpec, node: Node, tls: pki.ClusterTls) -> list[RenderedFile]:
    if node.external:
        # Not a VM of ours: no kernel settings (HAProxy's VIP binding is not needed there).
        return [pki.ca_file(tls), *witness.firewall_files(spec, node)]
    return [RenderedFile(SYSCTL_PATH, render_template(HERE, "sysctl.conf.j2")), pki.ca_file(tls)]


def steps(spec: ClusterSpec, node: Node, tls: pki.ClusterTls) -> list[Step]:
    packages = (*PACKAGES, *witness.PACKAGES) if node.external else PACKAGES
    script = render_script(
        HERE,
        "system.sh.j2",
        "system",
        packages=packages,
        sysctl_path=SYSCTL_PATH,
        external=node.external,
        installer_path=INSTALLER_PATH,
        installer_source=INSTALLER_SOURCE.read_text() if node.external else "",
        firewall_rules=witness.RULES_PATH,
        firewall_unit=witness.UNIT_PATH,
        firewall_unit_name=witness.UNIT_NAME,
    )
    return [Step(node.name, "system", script, tuple(files(spec, node, tls)))]


SERVICE = Service(
    "system",
    step_names=("system",),
    steps=lambda t: steps(t.spec, t.node, t.tls),
    # Proxmox's guest agent (the VMs have agent: enabled) comes with the image, not with a step.
    packages=lambda spec: (*PACKAGES, "qemu-guest-agent"),
)
