"""Changes that reach running PostgreSQL: dynamic config, rolling restarts, rolling updates.

Two steps, both driving one program (``pgha_rolling.py``, installed as
``pgha-rolling`` by the step with its settings and the step's plan, see
``pgha/vmprograms.py``) that talks to Patroni's REST API:

- ``patroni-config`` (every deployment, on the first PostgreSQL VM only):
  PATCHes Patroni's dynamic config to :func:`patroni.dynamic_config` where it
  differs (all but the keys the patroni step writes,
  :func:`patroni.scaling_dcs_settings`), then restarts the members left ``pending_restart``: the replicas
  one at a time, a switchover to a synchronous standby, the old primary. A lowered setting that a
  standby may not have below the primary's (``max_connections`` and kin) restarts the primary in
  place first, then the replicas.
- ``upgrade`` (on every VM, when ``maintenance.upgrade`` is set): a rolling
  package update. The steps start together; each VM waits for its turn
  (the VMs without PostgreSQL, i.e. witness and backup repository, then
  replicas by name, then the primary, decided anew from Patroni's roles
  each round and marked in etcd), so exactly one VM at a time
  upgrades and restarts, the primary only after a switchover.

Neither script nor command line holds a secret: the REST API password is read
from Patroni's config file on the VM when the script needs it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .. import backup, etcd, patroni, pki, vmprograms
from ..files import RenderedFile, Step, render_script
from ..service import Service
from ..spec import ClusterSpec, Node
from . import pgha_rolling

HERE = Path(__file__).resolve().parent
CONFIG_STEP = "patroni-config"
UPGRADE_STEP = "upgrade"
TOOL_PATH = pgha_rolling.INSTALL_PATH
CONFIG_PLAN_PATH = "/etc/pgha/patroni-dynamic.json"
UPGRADE_PLAN_PATH = "/etc/pgha/upgrade.json"


def tool_files() -> list[RenderedFile]:
    """pgha-rolling and its settings: where Patroni's config (and REST API password) is."""
    return vmprograms.program_files(pgha_rolling, {"patroni_config": patroni.CONFIG_PATH})


def _cluster_plan(spec: ClusterSpec, step: str) -> dict[str, Any]:
    """What every use of the tool needs: who the members are and how healthy looks."""
    return {
        "step": step,
        "ca": pki.CA_PATH,
        "rest_api_urls": {n.name: patroni.rest_api_url(spec, n) for n in spec.postgres_nodes},
        "members": [n.name for n in spec.postgres_nodes],
        "without_postgres": [n.name for n in spec.nodes if not n.runs_postgres],
        "synchronous_mode": spec.patroni.synchronous_mode,
        "sync_standbys": spec.sync_standbys if spec.patroni.synchronous_mode else 0,
        # Host-aware sync: healthy includes a synchronous standby on another host.
        "hosts": spec.sync_hosts,
        "loop_wait": spec.patroni.loop_wait,
    }


def config_plan(spec: ClusterSpec) -> dict[str, Any]:
    """The patroni-config step's plan: Patroni's dynamic config without the keys the patroni step
    writes (``patroni.scaling_dcs_settings``): each DCS key has one writer on a running cluster."""
    written_by_patroni_step = patroni.scaling_dcs_settings(spec)
    dynamic = {k: v for k, v in patroni.dynamic_config(spec).items() if k not in written_by_patroni_step}
    return {**_cluster_plan(spec, "patroni-config"), "dynamic": dynamic}


def config_node(spec: ClusterSpec) -> Node:
    """The one VM that applies cluster-wide changes (any would do; the first is stable)."""
    return spec.postgres_nodes[0]


def upgrade_plan(spec: ClusterSpec, node: Node) -> dict[str, Any]:
    member = node in etcd.members(spec)
    return {
        **_cluster_plan(spec, "upgrade"),
        "node": node.name,
        "generation": spec.maintenance.upgrade,
        "apt_update": spec.maintenance.apt_update,
        "etcd_urls": [etcd.client_url(spec, m) for m in etcd.members(spec)],
        "own_etcd_url": etcd.client_url(spec, node) if member else None,
        # The VM's etcd certificate where it has one, for root: etcd admits no other.
        "client_pem": _client_pem(spec, node),
        "marker_prefix": f"/pgha-maintenance/{spec.postgres.scope}/upgrade",
        # Root's key that signs this VM's turn markers (the system step installs it).
        "marker_key": pgha_rolling.MARKER_KEY_PATH,
    }


def _client_pem(spec: ClusterSpec, node: Node) -> str:
    """A copy of the VM's etcd certificate that exists on it (Patroni's or etcd's), else pgBackRest's
    (the repository VM has no etcd certificate)."""
    if node.runs_postgres:
        return patroni.ETCD_PEM_PATH
    if node in etcd.members(spec):
        return etcd.PEM_PATH
    return backup.PEM_PATH


def _json_file(path: str, document: dict[str, Any]) -> RenderedFile:
    return RenderedFile(path, json.dumps(document, indent=1, sort_keys=True) + "\n", mode=0o600)


def steps(spec: ClusterSpec, node: Node) -> list[Step]:
    found = []
    if node == config_node(spec):
        script = render_script(
            HERE, "apply-config.sh.j2", "patroni-config", tool_path=TOOL_PATH, plan_path=CONFIG_PLAN_PATH
        )
        files = (*tool_files(), _json_file(CONFIG_PLAN_PATH, config_plan(spec)))
        found.append(Step(node.name, CONFIG_STEP, script, files))
    if spec.maintenance.upgrade:
        script = render_script(
            HERE, "upgrade.sh.j2", "upgrade", tool_path=TOOL_PATH, plan_path=UPGRADE_PLAN_PATH
        )
        files = (*tool_files(), _json_file(UPGRADE_PLAN_PATH, upgrade_plan(spec, node)))
        found.append(Step(node.name, UPGRADE_STEP, script, files))
    return found


SERVICE = Service("rolling", step_names=(CONFIG_STEP, UPGRADE_STEP), steps=lambda t: steps(t.spec, t.node))
