"""verify: the last phase, so a green deployment means a serving cluster.

One step, on the first PostgreSQL VM, running :mod:`pgha.verify.probe` (a
plain module shipped in the step's bundle, with a JSON settings file). It
checks what a client would see and fails with the reason.

The step must run on every deployment that changed anything, and only then:
its settings carry a ``fingerprint``, a hash of every other step's digest in
the cluster, so its own digest (Pulumi's trigger, the lab's idea of a change)
moves whenever any other step's does. A replaced VM re-runs it through
``replaceWith`` in the Pulumi shell.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from .. import maintenance, patroni, pki
from ..files import RenderedFile, Step, render_script
from ..secrets import SUPERUSER
from ..spec import ClusterSpec, Node

HERE = Path(__file__).resolve().parent
PHASE = 11
TOOL_PATH = "/usr/local/lib/pgha/pgha-verify"
SETTINGS_PATH = "/etc/pgha/verify.json"
# Where the probe writes its row: a schema of its own in the default database.
SCHEMA = "pgha"
TABLE = f"{SCHEMA}.verify"


def verify_node(spec: ClusterSpec) -> Node:
    """The VM that runs the check: the one that applies cluster-wide changes."""
    return maintenance.config_node(spec)


def timeout_s(spec: ClusterSpec) -> int:
    """Long enough for a switchover by the patroni-config step, or a new replica
    becoming synchronous after a scale-out, to settle on a loaded host."""
    return max(60, 3 * spec.patroni.ttl)


def fingerprint(digests: Iterable[str]) -> str:
    """One hash of every other step's digest: changes when anything deployed changes."""
    return hashlib.sha256("\n".join(sorted(digests)).encode()).hexdigest()


def settings(spec: ClusterSpec, node: Node, deployed: str) -> dict[str, object]:
    return {
        "fingerprint": deployed,
        "node": node.name,
        "node_ip": str(node.ip),
        "interface": spec.network.interface,
        "vip": str(spec.vip),
        "primary_port": spec.haproxy.primary_port,
        "replica_port": spec.haproxy.replica_port,
        "database": "postgres",
        "user": SUPERUSER,
        "schema": SCHEMA,
        "table": TABLE,
        "ca": pki.CA_PATH,
        "patroni_config": patroni.CONFIG_PATH,
        "cluster_url": f"{patroni.rest_api_url(spec, node)}/cluster",
        "members": [n.name for n in spec.postgres_nodes],
        "sync_standbys": spec.sync_standbys if spec.patroni.synchronous_mode else 0,
        "macs": {n.mac: n.name for n in spec.nodes},
        "timeout_s": timeout_s(spec),
    }


def step(spec: ClusterSpec, node: Node, deployed: str) -> Step:
    """The verify step; ``deployed`` is :func:`fingerprint` of every other step."""
    script = render_script(HERE, "verify.sh.j2", "verify", tool_path=TOOL_PATH, settings_path=SETTINGS_PATH)
    document = json.dumps(settings(spec, node, deployed), indent=1, sort_keys=True) + "\n"
    files = (
        RenderedFile(TOOL_PATH, (HERE / "probe.py").read_text(), mode=0o755),
        RenderedFile(SETTINGS_PATH, document, mode=0o600),
    )
    return Step(node.name, PHASE, "verify", script, files)
