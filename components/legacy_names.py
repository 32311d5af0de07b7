"""History: the numbers remote Commands had in their names, kept for their aliases only.

Commands were once named ``<node>-<NN>-<step>``, NN the step's phase number. They
are now ``<node>-<step>`` (pgha.plan.ORDER decides the order, not a number);
each carries ``pulumi.Alias(name=<old name>)`` so a stack deployed under the old
names sees neither a replacement nor a re-run. This table is frozen: a new step
never gets a number, and has no entry here.
"""

from __future__ import annotations

from types import MappingProxyType

LEGACY_PHASES = MappingProxyType(
    {
        "system": 1,
        "etcd": 2,
        "etcd-health": 3,
        "patroni": 4,
        "haproxy": 5,
        "keepalived": 6,
        "fastpath": 6,
        "host-maintenance": 6,
        "patroni-config": 7,
        "backup": 8,
        "databases": 8,
        "backup-stanza": 9,
        "pooler": 9,
        "monitoring": 10,
        "upgrade": 11,
        "verify": 12,
    }
)


def command_name(node: str, step: str) -> str:
    """A step's Command: by node and step name."""
    return f"{node}-{step}"


def legacy_command_name(node: str, step: str) -> str | None:
    """The Command's name before the rename; None for a step that came later."""
    phase = LEGACY_PHASES.get(step)
    return None if phase is None else f"{node}-{phase:02d}-{step}"
