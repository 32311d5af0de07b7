"""HAProxy on every VM: 5432 to the primary, 5433 to the replicas.

Who is primary is Patroni's to say: HAProxy asks each node's REST API
(``OPTIONS /primary``, ``/replica?lag=``) over HTTPS, verifying its
certificate against the cluster's CA and its name, and routes accordingly,
so any VM's HAProxy (and hence the VIP, wherever it is) reaches the right
server. 5432/5433 pass TCP through: the TLS clients see is PostgreSQL's own.
A reload keeps the servers' check states (a saved server-state file), so
neither a config change nor a rotated certificate routes a write astray.
The stats page and the liveness URL are HTTPS with the node's certificate,
on the private IP only; the stats page needs a password and hides the
version. With ``pgha:pooler``, 6432 goes to the primary's PgBouncer as 5432
goes to its PostgreSQL (pgha.pooler), but only while that PgBouncer accepts
connections too: its check is Patroni's ``/primary`` then a connect to
PgBouncer's port, so a dead pooler is not sent clients. HAProxy's Prometheus
metrics are served on the monitoring port (pgha.monitoring), to
``monitoring.allowFrom`` only.
With ``pgha:clients.allowFrom``, 5432/5433 accept only those source networks:
PostgreSQL sees HAProxy's address, so this is where the client's is known.
The verify probe's VM (and the VIP, its source when it holds the VIP itself)
stays allowed, or a restricted stack could never pass its own verify phase.
"""

from __future__ import annotations

from pathlib import Path

from .. import metrics, pki, vmprograms
from ..files import RenderedFile, Step, render_script, render_template
from ..secrets import HAPROXY_STATS_USER, ClusterSecrets
from ..service import MetricsSource, Service
from ..spec import ClusterSpec, Node
from . import save_state

HERE = Path(__file__).resolve().parent
PACKAGES = ("haproxy",)
CONFIG_PATH = "/etc/haproxy/haproxy.cfg"
HEALTH_PATH = "/health"
STATS_PATH = "/stats"
ADMIN_SOCKET = "/run/haproxy/admin.sock"
STATE_FILE = "/var/lib/haproxy/server-state"
SAVE_STATE_PATH = save_state.INSTALL_PATH
DROPIN_PATH = "/etc/systemd/system/haproxy.service.d/pgha.conf"
# Read by HAProxy's master process, which runs as root: nobody else needs it.
PEM_PATH = f"{pki.TLS_DIR}/haproxy.pem"


def stats_url(spec: ClusterSpec, node: Node) -> str:
    return f"https://{node.ip}:{spec.haproxy.stats_port}"


def health_url(spec: ClusterSpec, node: Node) -> str:
    """Answers 200 while this HAProxy runs: what keepalived tracks."""
    return stats_url(spec, node) + HEALTH_PATH


def allow_from(spec: ClusterSpec) -> list[str]:
    """5432/5433's allowed sources: ``clients.allowFrom`` plus the verify probe's (none: anyone)."""
    from .. import verify  # it builds on the whole cluster

    if not spec.clients.allow_from:
        return []
    probe = [f"{verify.verify_node(spec).ip}/32", f"{spec.vip}/32"]
    declared = [str(network) for network in spec.clients.allow_from]
    return declared + [p for p in probe if p not in declared]


def frontend(spec: ClusterSpec, node: Node) -> str:
    """The section serving the monitoring port (pgha.monitoring); '' without ``pgha:monitoring``.

    One backend per metrics source the VM serves (pgha.metrics), as the services declare them.
    """
    if spec.monitoring is None:
        return ""
    verify = f"ssl verify required ca-file {pki.CA_PATH} verifyhost {node.name}"
    served = metrics.sources(spec, node)
    backends = {}
    for source in served:
        if source.address is None:
            continue  # HAProxy's own exporter, not a backend
        server = source.address(spec, node)
        server += f" {verify}" if source.tls else ""
        server += f" crt {PEM_PATH}" if source.client_cert else ""
        backends[source.path] = {"name": f"metrics_{source.name}", "server": server}
    own = [source.path for source in served if source.address is None]
    return render_template(
        HERE,
        "frontend.cfg.j2",
        m=spec.monitoring,
        node=node,
        pem_path=PEM_PATH,
        allow_from=[str(n) for n in spec.monitoring.allow_from],
        haproxy_metrics_path=own[0] if own else None,
        backends=backends,
    )


def files(spec: ClusterSpec, node: Node, secrets: ClusterSecrets, tls: pki.ClusterTls) -> list[RenderedFile]:
    content = render_template(
        HERE,
        "haproxy.cfg.j2",
        spec=spec,
        node=node,
        servers=spec.postgres_nodes,
        allow_from=allow_from(spec),
        stats_user=HAPROXY_STATS_USER,
        stats_password=secrets.haproxy_stats_password,
        health_path=HEALTH_PATH,
        monitoring=frontend(spec, node),
        stats_path=STATS_PATH,
        pem_path=PEM_PATH,
        ca_path=pki.CA_PATH,
        admin_socket=ADMIN_SOCKET,
        state_file=STATE_FILE,
    )
    paths = {"admin_socket": ADMIN_SOCKET, "state_file": STATE_FILE, "save_state_path": SAVE_STATE_PATH}
    return [
        RenderedFile(CONFIG_PATH, content, mode=0o640, group="haproxy", secret=True),
        pki.key_file(PEM_PATH, tls.node(node), owner="root"),
        *vmprograms.program_files(save_state, {"admin_socket": ADMIN_SOCKET, "state_file": STATE_FILE}),
        RenderedFile(DROPIN_PATH, render_template(HERE, "haproxy.service.conf.j2", **paths)),
    ]


def steps(spec: ClusterSpec, node: Node, secrets: ClusterSecrets, tls: pki.ClusterTls) -> list[Step]:
    if not node.runs_postgres:
        return []
    script = render_script(
        HERE,
        "haproxy.sh.j2",
        "haproxy",
        packages=PACKAGES,
        config_path=CONFIG_PATH,
        health_url=health_url(spec, node),
        ca_path=pki.CA_PATH,
        dropin_path=DROPIN_PATH,
    )
    return [Step(node.name, "haproxy", script, tuple(files(spec, node, secrets, tls)))]


# HAProxy's own prometheus-exporter, on the monitoring port it serves.
METRICS = MetricsSource("haproxy", loss_alert="PghaMemberDown", serves=lambda spec, node: node.runs_postgres)

SERVICE = Service(
    "haproxy",
    step_names=("haproxy",),
    steps=lambda t: steps(t.spec, t.node, t.secrets, t.tls),
    packages=lambda spec: PACKAGES,
    metrics=(METRICS,),
)
