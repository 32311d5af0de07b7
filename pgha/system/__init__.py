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
from ..host_maintenance import pgha_host_maintenance
from ..rolling import pgha_rolling
from ..secrets import ClusterSecrets
from ..service import Service
from ..spec import ClusterSpec, Node
from ..vmprograms import secret_key_file

HERE = Path(__file__).resolve().parent
PACKAGES = ("curl", "ca-certificates", "jq")
SYSCTL_PATH = "/etc/sysctl.d/90-pgha.conf"
# postgres.repository's source, deb822 with its key inline: apt trusts that key for it alone.
APT_SOURCE_PATH = "/etc/apt/sources.list.d/pgha-postgresql.sources"


def apt_source(spec: ClusterSpec, node: Node) -> RenderedFile | None:
    """The PGDG repository on the VMs that install PostgreSQL's server (database and repository VMs)."""
    repository = spec.postgres.repository
    if repository is None or node.external or node.role not in ("postgres", "repository"):
        return None
    version = spec.postgres.version
    text = render_template(HERE, "postgresql.sources.j2", repository=repository, version=version)
    return RenderedFile(APT_SOURCE_PATH, text)


def marker_key_files(node: Node, secrets: ClusterSecrets) -> list[RenderedFile]:
    """Root's keys that sign the etcd markers root's agents act on (pgha.vmlib.etcd_markers).

    Host maintenance's on the database VMs, the rolling update's there and on
    the witnesses (they take turns too); never on the repository VM. Here,
    before any service, so the steps that run the agents carry no secret.
    A rotated key's file holds the new key, which signs, and on the next line its
    predecessor, which still verifies: a marker written before the rotation, or by
    a VM whose step has not run yet, stays valid (pgha.vmlib.etcd_markers).
    """
    found = []
    if node.runs_postgres:
        ring = secrets.marker_keys("maintenance_marker_key")
        found.append(secret_key_file(pgha_host_maintenance.MARKER_KEY_PATH, "\n".join(ring)))
    if node.uses_etcd:
        ring = secrets.marker_keys("rolling_marker_key")
        found.append(secret_key_file(pgha_rolling.MARKER_KEY_PATH, "\n".join(ring)))
    return found


def files(spec: ClusterSpec, node: Node, tls: pki.ClusterTls, secrets: ClusterSecrets) -> list[RenderedFile]:
    if node.external:
        # Not a VM of ours: no kernel settings (HAProxy's VIP binding is not needed there).
        return [pki.ca_file(tls), *witness.firewall_files(spec, node), *marker_key_files(node, secrets)]
    source = apt_source(spec, node)
    return [
        RenderedFile(SYSCTL_PATH, render_template(HERE, "sysctl.conf.j2")),
        pki.ca_file(tls),
        *marker_key_files(node, secrets),
        *([source] if source else []),
    ]


def steps(spec: ClusterSpec, node: Node, tls: pki.ClusterTls, secrets: ClusterSecrets) -> list[Step]:
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
        apt_source=APT_SOURCE_PATH,
        has_apt_source=apt_source(spec, node) is not None,
    )
    return [Step(node.name, "system", script, tuple(files(spec, node, tls, secrets)))]


SERVICE = Service(
    "system",
    step_names=("system",),
    steps=lambda t: steps(t.spec, t.node, t.tls, t.secrets),
    # Proxmox's guest agent (the VMs have agent: enabled) comes with the image, not with a step.
    packages=lambda spec: (*PACKAGES, "qemu-guest-agent"),
)
