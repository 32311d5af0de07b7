"""verify: the last phase, so a green deployment means a serving cluster.

One step, on the first PostgreSQL VM, running :mod:`pgha.verify.probe` (a
program for the VM by ``pgha/vmprograms.py``'s convention: the module's own
file and a JSON settings file). It checks what a client would see and fails
with the reason (with ``pgha:pooler``, a write through VIP:6432 as well). It
logs in as ``pgha_verify`` (a login role that is not a
superuser, owning only its own database, kept by :mod:`pgha.databases`; the
superuser has no network login): the settings file holds that password, so
the step carries a secret (no logging, secret outputs).

The step must run on every deployment that changed anything, and only then:
its settings carry a ``fingerprint``, a hash of every other step's digest in
the cluster, so its own digest (Pulumi's trigger, the lab's idea of a change)
moves whenever any other step's does. A replaced VM re-runs it through
``replaceWith`` in the Pulumi shell.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable
from pathlib import Path

from .. import patroni, pki, rolling, vmprograms
from ..files import Step, render_script
from ..secrets import VERIFY_DATABASE, VERIFY_ROLE, ClusterSecrets
from ..service import Service, Target
from ..spec import ClusterSpec, Node
from . import probe

HERE = Path(__file__).resolve().parent
TOOL_PATH = probe.INSTALL_PATH
SETTINGS_PATH = probe.SETTINGS_PATH
# Where the probe writes its row: a table in its own database, which its role owns.
TABLE = "public.verify"


def verify_node(spec: ClusterSpec) -> Node:
    """The VM that runs the check: the one that applies cluster-wide changes."""
    return rolling.config_node(spec)


def timeout_s(spec: ClusterSpec) -> int:
    """Long enough for a switchover by the patroni-config step, or a new replica
    becoming synchronous after a scale-out, to settle on a loaded host."""
    return max(60, 3 * spec.patroni.ttl)


def fingerprint(digests: Iterable[str]) -> str:
    """One hash of every other step's digest: changes when anything deployed changes."""
    return hashlib.sha256("\n".join(sorted(digests)).encode()).hexdigest()


def settings(spec: ClusterSpec, node: Node, deployed: str, secrets: ClusterSecrets) -> dict[str, object]:
    return {
        "fingerprint": deployed,
        "node": node.name,
        "node_ip": str(node.ip),
        "interface": spec.network.interface,
        "vip": str(spec.vip),
        "primary_port": spec.haproxy.primary_port,
        "replica_port": spec.haproxy.replica_port,
        # With pgha:pooler, a write through VIP:6432 too (pgha_verify is the one pgha
        # role PgBouncer's lookup returns, see pgha.pooler).
        "pooler_port": spec.pooler.port if spec.pooler else None,
        "database": VERIFY_DATABASE,
        "user": VERIFY_ROLE,
        "password": secrets.verify_password,
        "table": TABLE,
        "ca": pki.CA_PATH,
        "cluster_url": f"{patroni.rest_api_url(spec, node)}/cluster",
        "members": [n.name for n in spec.postgres_nodes],
        "sync_standbys": spec.sync_standbys if spec.patroni.synchronous_mode else 0,
        "macs": {n.mac: n.name for n in spec.nodes},
        "timeout_s": timeout_s(spec),
    }


def step(spec: ClusterSpec, node: Node, deployed: str, secrets: ClusterSecrets) -> Step:
    """The verify step; ``deployed`` is :func:`fingerprint` of every other step.

    The settings hold pgha_verify's password: root 0600 and marked secret.
    """
    script = render_script(HERE, "verify.sh.j2", "verify", tool_path=TOOL_PATH, settings_path=SETTINGS_PATH)
    program, config = vmprograms.program_files(
        probe, settings(spec, node, deployed, secrets), settings_mode=0o600
    )
    return Step(node.name, "verify", script, (program, dataclasses.replace(config, secret=True)))


def _steps(target: Target) -> list[Step]:
    if target.node != verify_node(target.spec):
        return []
    return [step(target.spec, target.node, fingerprint(target.cluster_digests()), target.secrets)]


SERVICE = Service("verify", step_names=("verify",), steps=_steps, whole_cluster=True)
