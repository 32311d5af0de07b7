"""keepalived: one VIP, held by a VM whose HAProxy is alive, preferably the primary.

Every node starts as BACKUP with the same priority; a failing HAProxy check
puts that node in FAULT, which hands the VIP over. A second, weighted check
(local Patroni's ``/primary``) raises the primary's priority, so the VIP
follows the primary and client traffic crosses one HAProxy on the primary's
own VM instead of a second VM's (docs/one-hop.md). With
``keepalived.primaryWeight: 0`` the nodes keep ``nopreempt`` instead and the
VIP stays where it is until its holder fails. Peers talk unicast over the
private network, so nothing depends on multicast reaching across hosts, and
only the listed peers' adverts count. VRRP carries no secret; a forged
advert could at worst move the VIP, and clients that check PostgreSQL's
certificate (``sslmode=verify-full``) would then refuse the impostor.
"""

from __future__ import annotations

from pathlib import Path

from .. import haproxy, patroni, pki
from ..files import RenderedFile, Step, render_script, render_template
from ..service import Service
from ..spec import ClusterSpec, Node

HERE = Path(__file__).resolve().parent
PACKAGES = ("keepalived",)
CONFIG_PATH = "/etc/keepalived/keepalived.conf"
CHECK_PATH = "/usr/local/lib/pgha/check-haproxy"
PRIMARY_CHECK_PATH = "/usr/local/lib/pgha/check-primary"
SCRIPT_USER = "keepalived_script"


def files(spec: ClusterSpec, node: Node) -> list[RenderedFile]:
    peers = [n for n in spec.postgres_nodes if n != node]
    config = render_template(
        HERE,
        "keepalived.conf.j2",
        spec=spec,
        node=node,
        peers=peers,
        check_path=CHECK_PATH,
        primary_check_path=PRIMARY_CHECK_PATH,
        script_user=SCRIPT_USER,
        vip=spec.network.interface_address(spec.vip),
    )
    check = render_template(
        HERE, "check-haproxy.sh.j2", url=haproxy.health_url(spec, node), ca_path=pki.CA_PATH
    )
    primary_check = render_template(
        HERE,
        "check-primary.sh.j2",
        url=patroni.rest_api_url(spec, node) + "/primary",
        ca_path=pki.CA_PATH,
    )
    return [
        RenderedFile(CHECK_PATH, check, mode=0o755),
        RenderedFile(PRIMARY_CHECK_PATH, primary_check, mode=0o755),
        RenderedFile(CONFIG_PATH, config, mode=0o640),
    ]


def steps(spec: ClusterSpec, node: Node) -> list[Step]:
    if not node.runs_postgres:
        return []
    script = render_script(
        HERE,
        "keepalived.sh.j2",
        "keepalived",
        packages=PACKAGES,
        config_path=CONFIG_PATH,
        script_user=SCRIPT_USER,
    )
    return [Step(node.name, "keepalived", script, tuple(files(spec, node)))]


SERVICE = Service(
    "keepalived",
    step_names=("keepalived",),
    steps=lambda t: steps(t.spec, t.node),
    packages=lambda spec: PACKAGES,
)
