"""The ordered remote steps of the whole cluster: one place decides the order.

Phases run cluster-wide: every VM finishes phase N before any starts N+1
(cloud-init → etcd → etcd healthy → Patroni → HAProxy → keepalived and the
host-maintenance agent → Patroni's dynamic config, on one VM only → pgBackRest
and, beside it, the application databases and roles (through the primary) →
its stanza and first backup, and beside it PgBouncer → monitoring → a rolling
package update, when asked for → verify, on one VM: what a client sees,
whenever anything else changed). Pulumi
turns that into ``depends_on``; the lab runs each phase in parallel over SSH.
"""

from __future__ import annotations

from collections import defaultdict

from . import (
    backup,
    databases,
    etcd,
    fastpath,
    haproxy,
    host_maintenance,
    keepalived,
    membership,
    monitoring,
    patroni,
    pooler,
    rolling,
    system,
    verify,
    witness,
)
from .files import RenderedFile, Step
from .pki import ClusterTls
from .secrets import ClusterSecrets
from .spec import ClusterSpec, Node

PHASE_NAMES = {
    system.PHASE: "system",
    etcd.PHASE: "etcd",
    etcd.HEALTH_PHASE: "etcd-health",
    patroni.PHASE: "patroni",
    haproxy.PHASE: "haproxy",
    keepalived.PHASE: "keepalived",
    rolling.CONFIG_PHASE: "patroni-config",
    backup.PHASE: "backup",
    backup.STANZA_PHASE: "backup-stanza",  # pooler's phase too
    rolling.UPGRADE_PHASE: "upgrade",
    monitoring.PHASE: "monitoring",
    verify.PHASE: "verify",
}


def node_steps(spec: ClusterSpec, node: Node, secrets: ClusterSecrets, tls: ClusterTls) -> list[Step]:
    steps = _service_steps(spec, node, secrets, tls)
    if node == verify.verify_node(spec):
        # Last, and tied to everything else: its digest moves with any other step's.
        others = [s for n in spec.nodes if n != node for s in _service_steps(spec, n, secrets, tls)]
        deployed = verify.fingerprint(s.digest for s in [*steps, *others])
        steps.append(verify.step(spec, node, deployed, secrets))
    return steps


def _service_steps(spec: ClusterSpec, node: Node, secrets: ClusterSecrets, tls: ClusterTls) -> list[Step]:
    steps = [
        *system.steps(spec, node, tls),
        *etcd.steps(spec, node, tls, membership.helper(spec, node)),
        *patroni.steps(spec, node, secrets, tls),
        *haproxy.steps(spec, node, secrets, tls),
        *keepalived.steps(spec, node),
        *fastpath.steps(spec, node),
        *host_maintenance.steps(spec, node),
        *backup.steps(spec, node, secrets, tls),
        *databases.steps(spec, node, secrets),
        *pooler.steps(spec, node, secrets, tls),
        *rolling.steps(spec, node),
        *monitoring.steps(spec, node, tls, secrets),
    ]
    return sorted(steps, key=lambda s: s.phase)


def cluster_steps(spec: ClusterSpec, secrets: ClusterSecrets, tls: ClusterTls) -> dict[str, list[Step]]:
    return {node.name: node_steps(spec, node, secrets, tls) for node in spec.nodes}


def phases(spec: ClusterSpec, secrets: ClusterSecrets, tls: ClusterTls) -> list[tuple[int, list[Step]]]:
    """The steps grouped by phase, in order: what may run at the same time."""
    grouped: dict[int, list[Step]] = defaultdict(list)
    for steps in cluster_steps(spec, secrets, tls).values():
        for step in steps:
            grouped[step.phase].append(step)
    return sorted(grouped.items())


def leave_step(spec: ClusterSpec, node: Node) -> Step:
    """Run on a VM before it is deleted (scale-in); not a phase: see pgha.membership."""
    return membership.leave_step(spec, node)


def node_files(spec: ClusterSpec, node: Node, secrets: ClusterSecrets, tls: ClusterTls) -> list[RenderedFile]:
    return [f for step in node_steps(spec, node, secrets, tls) for f in step.files]


def image_packages(spec: ClusterSpec) -> tuple[str, ...]:
    """Everything the steps may install, for images that should need no mirror."""
    return tuple(
        dict.fromkeys(
            (
                *system.PACKAGES,
                *etcd.PACKAGES,
                *patroni.server_packages(spec),
                *patroni.PACKAGES,
                *haproxy.PACKAGES,
                *keepalived.PACKAGES,
                *backup.PACKAGES,
                *(monitoring.PACKAGES if spec.monitoring else ()),
                *(pooler.PACKAGES if spec.pooler else ()),
                *(monitoring.POOLER_PACKAGES if spec.monitoring and spec.pooler else ()),
                *(fastpath.PACKAGES if spec.fast_path else ()),
                # An external witness's firewall; in the lab its machine boots this image too.
                *(witness.PACKAGES if any(n.external for n in spec.nodes) else ()),
                "qemu-guest-agent",
            )
        )
    )
