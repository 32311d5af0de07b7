"""HAProxy on every VM: 5432 to the primary, 5433 to the replicas.

Who is primary is Patroni's to say: HAProxy asks each node's REST API
(``OPTIONS /primary``, ``/replica?lag=``) and routes accordingly, so any
VM's HAProxy (and hence the VIP, wherever it is) reaches the right server.
"""

from __future__ import annotations

from pathlib import Path

from ..files import RenderedFile, Step, render_script, render_template
from ..secrets import HAPROXY_STATS_USER, ClusterSecrets
from ..spec import ClusterSpec, Node

HERE = Path(__file__).resolve().parent
PHASE = 5
PACKAGES = ("haproxy",)
CONFIG_PATH = "/etc/haproxy/haproxy.cfg"
HEALTH_PATH = "/health"
METRICS_PATH = "/metrics"


def health_url(spec: ClusterSpec, node: Node) -> str:
    """Answers 200 while this HAProxy runs: what keepalived tracks."""
    return f"http://{node.ip}:{spec.haproxy.stats_port}{HEALTH_PATH}"


def files(spec: ClusterSpec, node: Node, secrets: ClusterSecrets) -> list[RenderedFile]:
    content = render_template(
        HERE,
        "haproxy.cfg.j2",
        spec=spec,
        node=node,
        servers=spec.postgres_nodes,
        stats_user=HAPROXY_STATS_USER,
        stats_password=secrets.haproxy_stats_password,
        health_path=HEALTH_PATH,
        metrics_path=METRICS_PATH,
    )
    return [RenderedFile(CONFIG_PATH, content, mode=0o640, group="haproxy", secret=True)]


def steps(spec: ClusterSpec, node: Node, secrets: ClusterSecrets) -> list[Step]:
    if not node.runs_postgres:
        return []
    script = render_script(
        HERE,
        "haproxy.sh.j2",
        "haproxy",
        packages=PACKAGES,
        config_path=CONFIG_PATH,
        health_url=health_url(spec, node),
    )
    return [Step(node.name, PHASE, "haproxy", script, tuple(files(spec, node, secrets)))]
