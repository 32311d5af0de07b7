"""The ordered remote steps of the whole cluster: :data:`ORDER` is the one place that decides it.

Steps run cluster-wide, group after group: every VM finishes one group before
any starts the next (cloud-init → etcd → etcd healthy → Patroni → HAProxy →
keepalived, the fast path and the host-maintenance agent → Patroni's dynamic
config, on one VM only → pgBackRest and, beside it, the application databases
and roles (through the primary) → its stanza and first backup, and beside it
PgBouncer → monitoring → a rolling package update, when asked for → verify, on
one VM: what a client sees, whenever anything else changed). Pulumi turns that
into ``depends_on``; the lab runs each group in parallel over SSH.

What each step does, which packages it needs and what metrics it serves come
from the service records (:mod:`pgha.service`), found without a list.
"""

from __future__ import annotations

from . import membership, metrics, service
from .files import RenderedFile, Step
from .pki import ClusterTls
from .secrets import ClusterSecrets
from .spec import ClusterSpec, Node

# Every step name, in the order they run; a tuple groups steps that run at the same time.
ORDER: tuple[str | tuple[str, ...], ...] = (
    "system",
    "etcd",
    "etcd-health",
    "patroni",
    "haproxy",
    ("keepalived", "fastpath", "host-maintenance", "leader-race"),
    "patroni-config",
    ("backup", "databases"),
    ("backup-stanza", "pooler", "import"),
    "monitoring",
    "upgrade",
    "verify",
)


def groups(order: tuple[str | tuple[str, ...], ...] | None = None) -> tuple[tuple[str, ...], ...]:
    """:data:`ORDER` with every entry a tuple: the steps that may run at the same time."""
    return tuple((entry,) if isinstance(entry, str) else tuple(entry) for entry in (order or ORDER))


def step_names() -> tuple[str, ...]:
    """Every step name, in plan order."""
    return tuple(name for group in groups() for name in group)


def group_number(step_name: str) -> int:
    """Where a step's group stands in the plan, counted from one (the renderer's file prefix)."""
    for number, group in enumerate(groups(), start=1):
        if step_name in group:
            return number
    raise KeyError(f"step {step_name!r} is not in pgha.plan.ORDER")


def runs_before(first: str, then: str) -> bool:
    """Whether step ``first``'s group runs before step ``then``'s (same group: at the same time)."""
    return group_number(first) < group_number(then)


def services() -> tuple[service.Service, ...]:
    """The discovered service records, in the order of their first step; checked against ORDER.

    Each step name of ORDER belongs to exactly one service, and every name a
    service declares is in ORDER once: a record or an ORDER line forgotten fails here.
    """
    names = step_names()
    records = service.discover()
    owners: dict[str, str] = {}
    for record in records:
        for name in record.step_names:
            if name in owners:
                raise ValueError(f"step {name!r} is declared by both {owners[name]} and {record.name}")
            owners[name] = record.name
    problems = [
        f"step {n!r} appears {names.count(n)} times in ORDER" for n in set(names) if names.count(n) > 1
    ]
    problems += [f"step {n!r} of ORDER belongs to no service" for n in names if n not in owners]
    problems += [f"step {n!r} of service {s} is not in ORDER" for n, s in owners.items() if n not in names]
    problems += [
        f"step {n!r}: the scale-in command has that name" for n in owners if n == membership.LEAVE_STEP
    ]
    if problems:
        raise ValueError("pgha.plan: " + "; ".join(sorted(problems)))
    with_steps = sorted((r for r in records if r.step_names), key=lambda r: names.index(r.step_names[0]))
    return (*with_steps, *(r for r in records if not r.step_names))


def _position(step: Step) -> int:
    return step_names().index(step.name)


def _build(record: service.Service, target: service.Target) -> list[Step]:
    built = list(record.steps(target))
    for step in built:
        if step.name not in record.step_names:
            raise ValueError(f"service {record.name} built step {step.name!r}, which it does not declare")
    return built


def _service_steps(
    spec: ClusterSpec, node: Node, secrets: ClusterSecrets, tls: ClusterTls, *, whole_cluster: bool
) -> list[Step]:
    def cluster_digests() -> list[str]:
        return [
            s.digest for n in spec.nodes for s in _service_steps(spec, n, secrets, tls, whole_cluster=False)
        ]

    target = service.Target(spec, node, secrets, tls, cluster_digests)
    return [s for r in services() if r.whole_cluster == whole_cluster for s in _build(r, target)]


def node_steps(spec: ClusterSpec, node: Node, secrets: ClusterSecrets, tls: ClusterTls) -> list[Step]:
    """The node's steps in plan order; whole-cluster ones (verify) built last, tied to all others."""
    steps = _service_steps(spec, node, secrets, tls, whole_cluster=False)
    steps += _service_steps(spec, node, secrets, tls, whole_cluster=True)
    return sorted(steps, key=_position)


def cluster_steps(spec: ClusterSpec, secrets: ClusterSecrets, tls: ClusterTls) -> dict[str, list[Step]]:
    return {node.name: node_steps(spec, node, secrets, tls) for node in spec.nodes}


def phases(spec: ClusterSpec, secrets: ClusterSecrets, tls: ClusterTls) -> list[tuple[int, list[Step]]]:
    """The steps grouped as in ORDER, in order, by group number: what may run at the same time.

    Groups no VM has a step of are left out.
    """
    grouped: dict[int, list[Step]] = {}
    for steps in cluster_steps(spec, secrets, tls).values():
        for step in steps:
            grouped.setdefault(group_number(step.name), []).append(step)
    return sorted(grouped.items())


def sees_whole_cluster(step_name: str) -> bool:
    """A step that checks the whole cluster (verify): any VM replaced, it runs again."""
    return any(step_name in r.step_names for r in services() if r.whole_cluster)


def leave_step(spec: ClusterSpec, node: Node) -> Step:
    """Run on a VM before it is deleted (scale-in); not in ORDER: see pgha.membership."""
    return membership.leave_step(spec, node)


def node_files(spec: ClusterSpec, node: Node, secrets: ClusterSecrets, tls: ClusterTls) -> list[RenderedFile]:
    return [f for step in node_steps(spec, node, secrets, tls) for f in step.files]


def image_packages(spec: ClusterSpec) -> tuple[str, ...]:
    """Everything the steps may install, for images that should need no mirror.

    Each service's packages, then the packages of the metrics sources the stack
    serves (with ``pgha:monitoring``).
    """
    found = [p for record in services() for p in record.packages(spec)]
    found += [p for source in metrics.served(spec) for p in source.packages]
    return tuple(dict.fromkeys(found))
