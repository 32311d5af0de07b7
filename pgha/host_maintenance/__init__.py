"""Planned maintenance of a Proxmox host: ``pgha-host-maintenance HOST start|finish``.

The program (``pgha_host_maintenance.py``, a plain module installed as is) runs on any database
VM. ``start`` refuses when the cluster is not healthy, switches the primary
off the host, has that host's VMs tagged ``nofailover``/``nosync`` and their
keepalived stopped, and, when the host carries etcd's majority (two hosts, no
witness), removes the host's etcd members so that the other host's members
form a smaller cluster that survives the reboot. ``finish`` has them join
again (learners, then voters), clears the tags and waits for full
redundancy. A VM's own part is done by an agent (a systemd service on every
database VM) that follows a marker in etcd's v2 keyspace.

What the tool needs to know comes from one JSON file rendered here from the
spec: members, hosts, URLs, certificate paths. No secret in it: the REST API
password is read from Patroni's config on the VM.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import etcd, patroni, pki, vmprograms
from ..files import RenderedFile, Step, render_script, render_template
from ..secrets import ClusterSecrets
from ..service import Service
from ..spec import ClusterSpec, Node
from . import pgha_host_maintenance

HERE = Path(__file__).resolve().parent
# With keepalived: Patroni runs by then, and the agent needs nothing later.
STEP = "host-maintenance"
TOOL_PATH = pgha_host_maintenance.INSTALL_PATH
SETTINGS_PATH = pgha_host_maintenance.SETTINGS_PATH
UNIT_NAME = "pgha-host-maintenance-agent.service"
UNIT_PATH = f"/etc/systemd/system/{UNIT_NAME}"
MAINTENANCE_TAGS = ("nofailover", "nosync")


def settings(spec: ClusterSpec, node: Node) -> dict[str, Any]:
    """Everything the tool needs, from the spec: the one place that decides it."""
    members = etcd.members(spec)
    # Patroni's config is rendered for its tags only: placeholders, no secret read.
    normal = patroni.config(spec, node, ClusterSecrets.placeholders())["tags"]
    return {
        "node": node.name,
        "hosts": list(spec.proxmox_hosts),
        "members": [
            {
                "name": n.name,
                "host": n.host,
                "postgres": n.runs_postgres,
                "etcd": n in members,
                "rest_api": patroni.rest_api_url(spec, n),
                "etcd_client": etcd.client_url(spec, n),
                "etcd_peer": etcd.peer_url(spec, n),
            }
            for n in spec.nodes
            if n.runs_postgres or n in members
        ],
        "ca": pki.CA_PATH,
        # Patroni's copy of the etcd certificate, readable by root: etcd admits no other.
        "client_pem": patroni.ETCD_PEM_PATH,
        "patroni_config": patroni.CONFIG_PATH,
        "synchronous_mode": spec.patroni.synchronous_mode,
        "sync_standbys": spec.sync_standbys if spec.patroni.synchronous_mode else 0,
        # Host-aware sync: healthy includes a synchronous standby on another host (the shared rule).
        "sync_hosts": spec.sync_hosts,
        # A replica further behind than Patroni would accept for a failover is "lagging".
        "max_lag_bytes": spec.patroni.maximum_lag_on_failover,
        "marker_prefix": f"/pgha-maintenance/{spec.postgres.scope}",
        # Root's key that signs the markers the agents act on (the system step installs it).
        "marker_key": pgha_host_maintenance.MARKER_KEY_PATH,
        "membership_helper": etcd.MEMBERSHIP_PATH,
        "etcd_data_dir": etcd.DATA_DIR,
        "etcd_bootstrap_env": etcd.BOOTSTRAP_ENV_PATH,
        "normal_tags": {k: normal[k] for k in MAINTENANCE_TAGS},
    }


def files(spec: ClusterSpec, node: Node) -> list[RenderedFile]:
    """The tool as its module's file (pgha.vmprograms), its settings (root only), the agent's unit."""
    unit = render_template(HERE, "agent.service.j2", tool_path=TOOL_PATH)
    return [
        *vmprograms.program_files(pgha_host_maintenance, settings(spec, node), settings_mode=0o600),
        RenderedFile(UNIT_PATH, unit),
    ]


def steps(spec: ClusterSpec, node: Node) -> list[Step]:
    """On every database VM: the tool, its settings and the agent."""
    if not node.runs_postgres:
        return []
    script = render_script(
        HERE,
        "hostmaint.sh.j2",
        STEP,
        unit_path=UNIT_PATH,
        unit_name=UNIT_NAME,
        tool_path=TOOL_PATH,
        settings_path=SETTINGS_PATH,
    )
    return [Step(node.name, STEP, script, tuple(files(spec, node)))]


SERVICE = Service("host-maintenance", step_names=(STEP,), steps=lambda t: steps(t.spec, t.node))
