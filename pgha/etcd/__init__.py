"""etcd: the quorum store Patroni keeps its leader lock in.

Configured the Debian way, through the environment file ``/etc/default/etcd``
that ``etcd.service`` reads. Our data directory is not Debian's default one,
so the throwaway single-node member the package bootstraps never mixes with
the cluster's.

Clients and peers speak TLS only, on the private IP only, and must show a
certificate from the cluster's CA that names :data:`pki.ETCD_CLIENT_NAME`,
which only the etcd certificates of the nodes that use etcd carry: there is
no plaintext or loopback client listener, and the repository's certificate,
or a node's certificate that PostgreSQL or HAProxy holds, is refused. Its
metrics alone are served in plain HTTP on loopback (:data:`METRICS_ADDRESS`,
``/metrics`` and ``/health`` only), for the monitoring port to pass on:
HAProxy then holds no etcd identity.
"""

from __future__ import annotations

from pathlib import Path

from .. import pki
from ..files import RenderedFile, Step, render_script, render_template
from ..service import MetricsSource
from ..spec import ClusterSpec, Node

HERE = Path(__file__).resolve().parent
PACKAGES = ("etcd-server", "etcd-client")
ENV_PATH = "/etc/default/etcd"
# ETCD_INITIAL_CLUSTER{,_STATE} for a member's first start: found or join (see membership).
BOOTSTRAP_ENV_PATH = "/var/lib/pgha/etcd-bootstrap.env"
DROPIN_PATH = "/etc/systemd/system/etcd.service.d/pgha.conf"
MEMBERSHIP_PATH = "/usr/local/lib/pgha/membership"
DATA_DIR = "/var/lib/etcd/pgha"
# etcd's own copy of the node's etcd certificate and key, for serving and for its peers.
PEM_PATH = f"{pki.TLS_DIR}/etcd.pem"
# --listen-metrics-urls: /metrics and /health, no keys; etcd's usual metrics port.
METRICS_ADDRESS = "127.0.0.1:2381"


def members(spec: ClusterSpec) -> tuple[Node, ...]:
    """The etcd members: every node, or one per Proxmox host once there are three hosts.

    With two hosts one of them must carry two members, and losing it loses
    the quorum. Once a witness (or a third VM host) adds a third failure
    domain, one member per host lets the cluster survive the loss of any one.
    Scaling out on two hosts therefore adds members (5 VMs: 5 members, still
    tolerating two lost members but not the host carrying three); with three
    or more hosts new VMs on existing hosts join Patroni only.
    """
    candidates = spec.quorum_nodes
    if len({n.host for n in candidates}) < 3:
        return candidates
    first_per_host: dict[str, Node] = {}
    for node in candidates:
        first_per_host.setdefault(node.host, node)
    return tuple(first_per_host.values())


def client_url(spec: ClusterSpec, node: Node) -> str:
    return f"https://{node.ip}:{spec.etcd.client_port}"


def peer_url(spec: ClusterSpec, node: Node) -> str:
    return f"https://{node.ip}:{spec.etcd.peer_port}"


def client_endpoints(spec: ClusterSpec) -> list[str]:
    """host:port of every member, as Patroni's etcd section wants them."""
    return [f"{n.ip}:{spec.etcd.client_port}" for n in members(spec)]


def initial_cluster(spec: ClusterSpec) -> str:
    """name=peer URL of every member: the founding list (ETCD_INITIAL_CLUSTER)."""
    return ",".join(f"{m.name}={peer_url(spec, m)}" for m in members(spec))


def files(spec: ClusterSpec, node: Node, tls: pki.ClusterTls) -> list[RenderedFile]:
    content = render_template(
        HERE,
        "etcd.env.j2",
        node=node,
        client_url=client_url(spec, node),
        peer_url=peer_url(spec, node),
        metrics_url=f"http://{METRICS_ADDRESS}",
        spec=spec,
        data_dir=DATA_DIR,
        token=f"pgha-{spec.stack}-{spec.postgres.scope}",
        pem_path=PEM_PATH,
        ca_path=pki.CA_PATH,
        allowed_name=pki.ETCD_CLIENT_NAME,
        client_name_checked=spec.patroni.etcd_api == "v2",
        membership_path=MEMBERSHIP_PATH,
        bootstrap_env=BOOTSTRAP_ENV_PATH,
    )
    dropin = render_template(
        HERE, "etcd.service.conf.j2", membership_path=MEMBERSHIP_PATH, bootstrap_env=BOOTSTRAP_ENV_PATH
    )
    return [
        RenderedFile(ENV_PATH, content),
        RenderedFile(DROPIN_PATH, dropin),
        pki.key_file(PEM_PATH, tls.etcd_pair(node), owner="etcd"),
    ]


def etcdctl_flags(spec: ClusterSpec, node: Node) -> list[str]:
    """How root on a member reaches the cluster: over TLS, with etcd's own certificate."""
    return [
        f"--endpoints={client_url(spec, node)}",
        f"--cacert={pki.CA_PATH}",
        f"--cert={PEM_PATH}",
        f"--key={PEM_PATH}",
    ]


def steps(spec: ClusterSpec, node: Node, tls: pki.ClusterTls, membership: RenderedFile) -> list[Step]:
    """``membership`` is the node's join/leave helper (pgha.membership): installed
    here, since a member's first start needs it, and on non-members too, for leaving."""
    if node not in members(spec):
        # Not a member (one member per host once a witness exists): an etcd
        # the package may have started here would only be a stray cluster.
        script = render_script(HERE, "etcd-absent.sh.j2", "etcd")
        return [Step(node.name, "etcd", script, (membership,))]
    install = render_script(
        HERE,
        "etcd.sh.j2",
        "etcd",
        packages=PACKAGES,
        data_dir=DATA_DIR,
        env_path=ENV_PATH,
        dropin_path=DROPIN_PATH,
        membership_path=MEMBERSHIP_PATH,
    )
    health = render_script(HERE, "etcd-health.sh.j2", "etcd-health", flags=etcdctl_flags(spec, node))
    return [
        Step(node.name, "etcd", install, (*files(spec, node, tls), membership)),
        Step(node.name, "etcd-health", health),
    ]


# etcd's loopback metrics listener: no client certificate, so HAProxy holds no etcd identity.
# The service's record is in pgha.membership: etcd's steps carry its helper, and it builds on
# etcd (not the reverse).
METRICS = MetricsSource(
    "etcd",
    loss_alert="PghaMemberDown",
    serves=lambda spec, node: node in members(spec),
    address=lambda spec, node: METRICS_ADDRESS,
)
