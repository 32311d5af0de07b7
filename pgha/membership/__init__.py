"""Joining and leaving the running cluster: scale-out, scale-in, a replaced VM.

Rendering stays deterministic: the files and scripts depend on the spec only.
What depends on the running cluster (found it or join it, a stale member of a
replaced VM to remove) is decided on the VM by the helper this module renders,
which asks the other etcd members with the VM's own certificate. The helper
changes etcd's membership one VM at a time, under an etcd lock: a new member
is added as a learner (outside the quorum) and promoted once it has caught
up; a leaving one first hands over the VIP and the primary, leaves Patroni's
synchronous set, stops Patroni and then leaves etcd.

The leave step is not part of the phases: Pulumi runs it as the ``delete`` of
a per-VM command just before deleting the VM, and the lab runs it on each
machine that is absent from the new spec before removing the machine.
"""

from __future__ import annotations

from pathlib import Path

from .. import etcd, haproxy, patroni, pki
from ..files import RenderedFile, Step, render_script, render_template
from ..service import Service, Target
from ..spec import ClusterSpec, Node

HERE = Path(__file__).resolve().parent
HELPER_PATH = etcd.MEMBERSHIP_PATH
# Patroni's leader key lives in etcd's v2 keyspace; this lock in v3's.
LOCK = "pgha/membership"
LOCK_TIMEOUT_S = 900
LEAVE_STEP = "leave"


def helper(spec: ClusterSpec, node: Node) -> RenderedFile:
    """The node's join/leave helper, installed by the etcd step (its join runs there)."""
    members = etcd.members(spec)
    others = [m for m in members if m != node]
    # The VM's etcd certificate: etcd's copy on a member (its join runs before Patroni's
    # step), Patroni's on a database VM that is not one.
    pem = patroni.ETCD_PEM_PATH if node.runs_postgres and node not in members else etcd.PEM_PATH
    content = render_template(
        HERE,
        "membership.sh.j2",
        node=node,
        etcd_member=node in members,
        peer_url=etcd.peer_url(spec, node),
        client_url=etcd.client_url(spec, node),
        initial_cluster=etcd.initial_cluster(spec),
        others=",".join(etcd.client_url(spec, m) for m in others),
        data_dir=etcd.DATA_DIR,
        bootstrap_env=etcd.BOOTSTRAP_ENV_PATH,
        lock=LOCK,
        lock_timeout=LOCK_TIMEOUT_S,
        tls_flags=[f"--cacert={pki.CA_PATH}", f"--cert={pem}", f"--key={pem}"],
        patroni_config=patroni.CONFIG_PATH,
        patroni_url=patroni.rest_api_url(spec, node),
        haproxy_config=haproxy.CONFIG_PATH,
        ca_path=pki.CA_PATH,
    )
    return RenderedFile(HELPER_PATH, content, mode=0o755)


def leave_step(spec: ClusterSpec, node: Node) -> Step:
    """What runs on a VM before it is deleted; no files, no secret: safe to keep in state."""
    script = render_script(HERE, "leave.sh.j2", LEAVE_STEP, helper_path=HELPER_PATH)
    return Step(node.name, LEAVE_STEP, script)


def _etcd_steps(target: Target) -> list[Step]:
    return etcd.steps(target.spec, target.node, target.tls, helper(target.spec, target.node))


# etcd's record, here rather than in pgha/etcd: its steps install this package's
# helper, which builds on etcd's paths; declared here, the dependency stays one way.
SERVICE = Service(
    "etcd",
    step_names=("etcd", "etcd-health"),
    steps=_etcd_steps,
    packages=lambda spec: etcd.PACKAGES,
    metrics=(etcd.METRICS,),
)
