"""cloud-init NoCloud documents for each VM, from the bases in ``cloud-init/``.

Proxmox gets them as snippets; the lab writes them into the machine's seed
directory. The user-data holds one secret: the VM's SSH host key, generated
by Pulumi (or the lab) so that every step can pin the VM's identity instead
of trusting whoever answers on its address. The rest is public keys and the
file installer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from .files import INSTALLER_PATH, INSTALLER_SOURCE, REPO_DIR
from .spec import ClusterSpec, Node

CLOUD_INIT_DIR = REPO_DIR / "cloud-init"
DEPLOY_KEY_PLACEHOLDER = "PULUMI-GENERATED(deploy-public-key)"
HOST_KEY_TYPE = "ed25519"


@dataclass(frozen=True)
class HostKey:
    """A VM's SSH host key pair, OpenSSH formats; the private half is a secret."""

    private_openssh: str
    public_openssh: str

    @classmethod
    def placeholder(cls, node: Node) -> HostKey:
        return cls(
            f"PULUMI-SECRET(ssh-host-key {node.name})\n",
            f"PULUMI-GENERATED(ssh-host-public-key {node.name})",
        )


def _base(name: str) -> dict[str, Any]:
    return yaml.safe_load((CLOUD_INIT_DIR / name).read_text())


def _dump(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=False, width=1000)


def user_data(spec: ClusterSpec, node: Node, deploy_public_key: str, host_key: HostKey) -> str:
    """The deploy key is how Pulumi (or the lab) runs the steps; the others are the operators'.

    The VM's host key is the one Pulumi made: any key the image had is
    deleted and no other type is generated, so the key sshd offers is the
    one every step pins.
    """
    document = _base("user-data.yaml")
    document["hostname"] = node.name
    document["ssh_deletekeys"] = True
    document["ssh_genkeytypes"] = []
    document["ssh_keys"] = {
        f"{HOST_KEY_TYPE}_private": host_key.private_openssh,
        f"{HOST_KEY_TYPE}_public": host_key.public_openssh.strip(),
    }
    document["users"] = [
        {
            "name": spec.ssh.user,
            "groups": ["sudo"],
            "shell": "/bin/bash",
            "sudo": "ALL=(ALL) NOPASSWD:ALL",
            "lock_passwd": True,
            "ssh_authorized_keys": [deploy_public_key.strip(), *spec.ssh.authorized_keys],
        }
    ]
    document["write_files"] = [
        {
            "path": INSTALLER_PATH,
            "owner": "root:root",
            "permissions": "0755",
            "content": INSTALLER_SOURCE.read_text(),
        }
    ]
    if spec.ssh.port != 22:
        document["write_files"].append(
            {
                "path": "/etc/ssh/sshd_config.d/50-pgha-port.conf",
                "content": f"Port {spec.ssh.port}\n",
            }
        )
        document["runcmd"].append("systemctl restart ssh")
    return "#cloud-config\n" + _dump(document)


def meta_data(spec: ClusterSpec, node: Node) -> str:
    return _dump({"instance-id": f"pgha-{spec.stack}-{node.name}", "local-hostname": node.name})


def network_config(spec: ClusterSpec, node: Node) -> str:
    network = spec.network
    document = _base("network-config.yaml")
    nic: dict[str, Any] = {
        "match": {"macaddress": node.mac},
        "set-name": network.interface,
        "addresses": [str(network.interface_address(node.ip))],
    }
    if network.gateway is not None:
        # "0.0.0.0/0", not "default": every cloud-init renderer (ifupdown too) accepts it.
        nic["routes"] = [{"to": "0.0.0.0/0", "via": str(network.gateway)}]
    if network.dns:
        nic["nameservers"] = {"addresses": [str(a) for a in network.dns]}
    if network.mtu:
        nic["mtu"] = network.mtu
    document["ethernets"] = {"private": nic}
    return _dump(document)


def seed(spec: ClusterSpec, node: Node, deploy_public_key: str, host_key: HostKey) -> dict[str, str]:
    """The three NoCloud files, by their NoCloud names; the user-data holds the host key (a secret)."""
    return {
        "user-data": user_data(spec, node, deploy_public_key, host_key),
        "meta-data": meta_data(spec, node),
        "network-config": network_config(spec, node),
    }
