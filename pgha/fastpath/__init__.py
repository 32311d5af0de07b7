"""The fast path (``pgha:fastPath``): VIP:5432 served by the kernel, past HAProxy.

With one hop (keepalived.primaryWeight) the VIP sits on the primary's own VM,
yet every query still crosses HAProxy there: about 56 µs per round trip in the
lab, 0.59-0.72 of direct throughput (docs/one-hop.md). Here an agent on every
database VM follows the local Patroni and, while it is the primary, loads an
nftables DNAT rule that hands VIP:5432 connections from the private network
straight to PostgreSQL (5442). Everything else stays as it was: the rule is
out whenever the VM is not primary or the agent is not running, and then
HAProxy, which still binds VIP:5432, routes by Patroni's health as before.

What a client keeps: the same address, port and certificate (PostgreSQL's, as
through HAProxy's TCP mode). What changes: PostgreSQL sees the client's own
address (pg_hba already admits the private network), HAProxy's metrics no
longer count those sessions, and ``clients.allowFrom`` narrows the rule's
sources (anyone else still reaches HAProxy, which refuses them).
"""

from __future__ import annotations

from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from .. import patroni, pki, vmprograms
from ..files import RenderedFile, Step, render_script, render_template
from ..service import Service
from ..spec import ClusterSpec, Node
from . import agent

HERE = Path(__file__).resolve().parent
# With keepalived: Patroni answers by then, and the VIP is about to be placed.
STEP = "fastpath"
PACKAGES = ("nftables",)
TABLE = "pgha_fastpath"
AGENT_PATH = agent.INSTALL_PATH
SETTINGS_PATH = agent.SETTINGS_PATH
ON_PATH = "/etc/pgha/fastpath-on.nft"
OFF_PATH = "/etc/pgha/fastpath-off.nft"
UNIT_NAME = "pgha-fastpath.service"
UNIT_PATH = f"/etc/systemd/system/{UNIT_NAME}"
WATCHDOG_S = 5


def client_networks(spec: ClusterSpec) -> list[IPv4Network]:
    """The sources the rule forwards: the private network, narrowed to ``clients.allowFrom``.

    Only these: PostgreSQL's pg_hba admits the private network, and HAProxy
    alone enforces allowFrom, so a client outside either keeps going to HAProxy.
    """
    private = spec.network.cidr
    if not spec.clients.allow_from:
        return [private]
    narrowed: list[IPv4Network] = []
    for allowed in spec.clients.allow_from:
        if allowed.subnet_of(private):
            narrowed.append(allowed)
        elif private.subnet_of(allowed):
            narrowed.append(private)
    return list(dict.fromkeys(narrowed))


def settings(spec: ClusterSpec, node: Node) -> dict[str, Any]:
    assert spec.fast_path is not None
    return {
        "primary_url": patroni.rest_api_url(spec, node) + "/primary",
        "ca": pki.CA_PATH,
        "on": ON_PATH,
        "off": OFF_PATH,
        "poll_s": spec.fast_path.poll_ms / 1000,
    }


def files(spec: ClusterSpec, node: Node) -> list[RenderedFile]:
    """The agent (pgha.vmprograms), its settings, both rule sets and the unit."""
    on = render_template(
        HERE,
        "fastpath-on.nft.j2",
        table=TABLE,
        node=node,
        agent_path=AGENT_PATH,
        clients=[str(n) for n in client_networks(spec)],
        vip=str(spec.vip),
        vip_port=spec.haproxy.primary_port,
        postgres_port=spec.postgres.port,
    )
    off = render_template(HERE, "fastpath-off.nft.j2", table=TABLE, node=node)
    unit = render_template(
        HERE, "fastpath.service.j2", agent_path=AGENT_PATH, off_path=OFF_PATH, watchdog_s=WATCHDOG_S
    )
    return [
        *vmprograms.program_files(agent, settings(spec, node)),
        RenderedFile(ON_PATH, on),
        RenderedFile(OFF_PATH, off),
        RenderedFile(UNIT_PATH, unit),
    ]


def steps(spec: ClusterSpec, node: Node) -> list[Step]:
    """On every database VM: the agent when the fast path is on, its removal when it is off."""
    if not node.runs_postgres:
        return []
    if spec.fast_path is None:
        script = render_script(HERE, "fastpath-absent.sh.j2", STEP, unit_name=UNIT_NAME, table=TABLE)
        return [Step(node.name, STEP, script)]
    script = render_script(
        HERE,
        "fastpath.sh.j2",
        STEP,
        packages=PACKAGES,
        unit_path=UNIT_PATH,
        unit_name=UNIT_NAME,
        agent_path=AGENT_PATH,
        settings_path=SETTINGS_PATH,
        on_path=ON_PATH,
        off_path=OFF_PATH,
    )
    return [Step(node.name, STEP, script, tuple(files(spec, node)))]


SERVICE = Service(
    "fastpath",
    step_names=(STEP,),
    steps=lambda t: steps(t.spec, t.node),
    packages=lambda spec: PACKAGES if spec.fast_path else (),
)
