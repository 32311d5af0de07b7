"""An external witness in the lab: a machine its owner prepared, not a VM pgha seeded.

On a real cluster the operator prepares the machine (Debian 13, the SSH user
with passwordless sudo and the deploy key); the lab's stand-in does the same
with a minimal cloud-init seed: the user and its keys, its network, and
nothing of pgha's (no file installer, no guest agent), so the steps must
bring what they need themselves.
"""

from __future__ import annotations

import yaml

from pgha import cloudinit
from pgha.cloudinit import HOST_KEY_TYPE, HostKey
from pgha.spec import ClusterSpec, Node


def seed(spec: ClusterSpec, node: Node, deploy_public_key: str, host_key: HostKey) -> dict[str, str]:
    """The owner's preparation: hostname, its SSH host key (the one the stack pins: on a real
    witness, ``witness.hostKey`` is read off the machine instead), the SSH user with sudo and
    keys; its network."""
    user_data = {
        "hostname": node.name,
        "ssh_pwauth": False,
        "ssh_deletekeys": True,
        "ssh_genkeytypes": [],
        "ssh_keys": {
            f"{HOST_KEY_TYPE}_private": host_key.private_openssh,
            f"{HOST_KEY_TYPE}_public": host_key.public_openssh.strip(),
        },
        "users": [
            {
                "name": spec.ssh.user,
                "groups": ["sudo"],
                "shell": "/bin/bash",
                "sudo": "ALL=(ALL) NOPASSWD:ALL",
                "lock_passwd": True,
                "ssh_authorized_keys": [deploy_public_key.strip(), *spec.ssh.authorized_keys],
            }
        ],
    }
    return {
        "user-data": "#cloud-config\n" + yaml.safe_dump(user_data, sort_keys=False),
        "meta-data": cloudinit.meta_data(spec, node),
        "network-config": cloudinit.network_config(spec, node),
    }
