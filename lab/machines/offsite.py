"""The off-site S3 server a lab stands up for ``backup.offsite``: who it is, before it runs.

A stack whose ``backup.offsite.endpoint`` is an address of the lab's own
private network (``10.0.0.250:8443``) gets a machine there that is no VM of
the stack, as the restore drill's, running SeaweedFS (``lab.cluster.offsite``
boots it). This module holds what must exist before anything boots, as Pulumi
holds secrets before any VM: the server's own CA (not the cluster's: the
bucket is someone else's), its certificate, and an administrator's key pair
that creates the bucket. The stack's own key pair is a stack secret
(``backupOffsiteKey``, kept with the lab's other secrets). The lab hands the
stack that CA as ``backup.offsite.caCertificate``, as an operator pastes
their provider's.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
from ipaddress import IPv4Address, ip_address
from pathlib import Path
from typing import Any

from pgha import ClusterSpec, LocalCa, Node, pki

SERVER_NAME = "s3-offsite"
IDENTITY_FILE = "offsite-s3.json"
CERT_VALIDITY_DAYS = 30
DEFAULT_PORT = 443


def endpoint(spec: ClusterSpec) -> tuple[IPv4Address, int] | None:
    """The address and port the lab serves S3 on, or None when the stack's bucket is not the lab's."""
    offsite = spec.backup.offsite if spec.backup else None
    if offsite is None:
        return None
    host, _, port = offsite.endpoint.partition(":")
    try:
        address = ip_address(host)
    except ValueError:
        return None
    if not isinstance(address, IPv4Address) or address not in spec.network.cidr:
        return None
    return address, int(port or DEFAULT_PORT)


def server_node(spec: ClusterSpec) -> Node:
    """The S3 server's machine: on the private network, on no Proxmox host of the stack."""
    place = endpoint(spec)
    if place is None:
        raise ValueError(f"stack {spec.stack}: backup.offsite.endpoint is not an address of the lab")
    return Node(name=SERVER_NAME, host="offsite", ip=place[0], role="restore")


@dataclasses.dataclass(frozen=True)
class ServerIdentity:
    """The S3 server's CA and certificate, and the administrator's key pair (the stack never gets it)."""

    ca: LocalCa
    server: pki.NodeTls
    admin_key: str
    admin_secret: str


def save_identity(state_dir: Path, spec: ClusterSpec) -> None:
    """Make the server's identity once, root-only; nothing when the lab serves no bucket."""
    place = endpoint(spec)
    path = state_dir / IDENTITY_FILE
    if place is None or path.exists():
        return
    ca = LocalCa.create(spec, common_name=f"pgha lab {spec.stack} off-site S3 CA")
    server = ca.issue(pki.CertIdentity(SERVER_NAME, (SERVER_NAME,), (str(place[0]),)), CERT_VALIDITY_DAYS)
    document = {
        "ca": dataclasses.asdict(ca),
        "server": dataclasses.asdict(server),
        "admin_key": "ADMIN" + secrets.token_hex(8).upper(),
        "admin_secret": secrets.token_urlsafe(24),
    }
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(document))


def identity(state_dir: Path) -> ServerIdentity | None:
    path = state_dir / IDENTITY_FILE
    if not path.exists():
        return None
    document: dict[str, Any] = json.loads(path.read_text())
    return ServerIdentity(
        LocalCa(**document["ca"]),
        pki.NodeTls(**document["server"]),
        document["admin_key"],
        document["admin_secret"],
    )


def with_server_ca(spec: ClusterSpec, state_dir: Path) -> ClusterSpec:
    """``spec`` told to verify the lab's S3 server against its CA (unchanged if the lab serves none)."""
    kept = identity(state_dir) if endpoint(spec) is not None else None
    if kept is None or spec.backup is None or spec.backup.offsite is None:
        return spec
    offsite = dataclasses.replace(spec.backup.offsite, ca_certificate=kept.ca.certificate)
    return dataclasses.replace(spec, backup=dataclasses.replace(spec.backup, offsite=offsite))


def stack_keys() -> dict[str, str]:
    """A fresh key pair for the stack (its ``backupOffsiteKey`` and ``backupOffsiteKeySecret``)."""
    return {
        "backup_offsite_key": "PGHA" + secrets.token_hex(8).upper(),
        "backup_offsite_key_secret": secrets.token_urlsafe(24),
    }
