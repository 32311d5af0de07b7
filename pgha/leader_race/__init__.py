"""The leader race without the dead primary's 2 s (``pgha:patroni.leaderRaceFailFast``).

When the leader key expires, Patroni's synchronous standby asks every member
of the last known cluster for its WAL position before it takes the lock, with
a hard-coded 2 s timeout (``Ha.fetch_node_status``). The former leader is in
that list, and after a crash, a freeze or a partition it is the one that does
not answer: every such failover waited those 2 s (docs/ha.md shows the
timeline). An agent on every database VM probes its peers' REST APIs the same
way, and refuses Patroni's connections to a peer silent for half the ttl with a
TCP reset; the request then fails at once, with the outcome it would have had.
It fails open: without the agent, no rule, and Patroni waits as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import pki, vmprograms
from ..files import RenderedFile, Step, render_script, render_template
from ..postgres_server import rest_api_url
from ..service import Service
from ..spec import ClusterSpec, Node
from . import agent

HERE = Path(__file__).resolve().parent
STEP = "leader-race"
PACKAGES = ("nftables",)
TABLE = "pgha_leader_race"
SET_NAME = "silent_peers"
PATRONI_USER = "postgres"  # Debian's patroni.service runs Patroni as postgres
AGENT_PATH = agent.INSTALL_PATH
SETTINGS_PATH = agent.SETTINGS_PATH
RULES_PATH = "/etc/pgha/leader-race.nft"
UNIT_NAME = "pgha-leader-race.service"
UNIT_PATH = f"/etc/systemd/system/{UNIT_NAME}"
WATCHDOG_S = 10
# Patroni's own limit for the same question (fetch_node_status): a peer is silent
# to the agent exactly when it would be silent to the leader race.
PROBE_TIMEOUT_S = 2.0
PROBE_INTERVAL_S = 1.0


def unanswered_s(spec: ClusterSpec) -> float:
    """Half the ttl: a former leader whose key expires has been silent at least ttl - loop_wait by then."""
    return spec.patroni.ttl / 2


def settings(spec: ClusterSpec, node: Node) -> dict[str, Any]:
    peers = [n for n in spec.postgres_nodes if n.name != node.name]
    return {
        "ca": pki.CA_PATH,
        "peers": [
            {"name": peer.name, "ip": str(peer.ip), "url": f"{rest_api_url(spec, peer)}/liveness"}
            for peer in peers
        ],
        "probe_timeout_s": PROBE_TIMEOUT_S,
        "interval_s": PROBE_INTERVAL_S,
        "unanswered_s": unanswered_s(spec),
        "table": TABLE,
        "set": SET_NAME,
    }


def files(spec: ClusterSpec, node: Node) -> list[RenderedFile]:
    """The agent (pgha.vmprograms) with its settings, the table and the unit."""
    rules = render_template(
        HERE,
        "leader-race.nft.j2",
        table=TABLE,
        set_name=SET_NAME,
        agent_path=AGENT_PATH,
        patroni_user=PATRONI_USER,
        rest_api_port=spec.patroni.rest_api_port,
    )
    unit = render_template(
        HERE,
        "leader-race.service.j2",
        agent_path=AGENT_PATH,
        rules_path=RULES_PATH,
        table=TABLE,
        watchdog_s=WATCHDOG_S,
    )
    return [
        *vmprograms.program_files(agent, settings(spec, node)),
        RenderedFile(RULES_PATH, rules),
        RenderedFile(UNIT_PATH, unit),
    ]


def steps(spec: ClusterSpec, node: Node) -> list[Step]:
    """On every database VM: the agent when the setting is on, its removal when it is off."""
    if not node.runs_postgres:
        return []
    if not spec.patroni.leader_race_fail_fast:
        script = render_script(HERE, "leader-race-absent.sh.j2", STEP, unit_name=UNIT_NAME, table=TABLE)
        return [Step(node.name, STEP, script)]
    script = render_script(
        HERE,
        "leader-race.sh.j2",
        STEP,
        packages=PACKAGES,
        unit_path=UNIT_PATH,
        unit_name=UNIT_NAME,
        agent_path=AGENT_PATH,
        settings_path=SETTINGS_PATH,
        rules_path=RULES_PATH,
    )
    return [Step(node.name, STEP, script, tuple(files(spec, node)))]


SERVICE = Service(
    "leader_race",
    step_names=(STEP,),
    steps=lambda t: steps(t.spec, t.node),
    packages=lambda spec: PACKAGES if spec.patroni.leader_race_fail_fast else (),
)
