"""Which metrics sources a VM serves: collected from the service records (pgha.service).

Every service declares its own sources (``Service.metrics``); HAProxy's
monitoring frontend (pgha.haproxy), the scrape configs and the image packages
(pgha.monitoring, pgha.plan) all read this one collection, so a new exporter
touches its own service folder only.
"""

from __future__ import annotations

from . import service
from .spec import ClusterSpec, Node

# History, not a rule: the order today's sources had before they were declared by
# their services, kept so HAProxy's rendered configuration stays byte-identical.
# A source not named here follows them, in the order the records are found.
LEGACY_ORDER = ("node", "postgres", "patroni", "haproxy", "pgbouncer", "etcd")


def all_sources() -> tuple[service.MetricsSource, ...]:
    """Every declared source, the legacy ones first."""
    declared = [source for record in service.discover() for source in record.metrics]
    names = [source.name for source in declared]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"metrics sources declared twice: {duplicates}")

    def rank(source: service.MetricsSource) -> int:
        legacy = source.name in LEGACY_ORDER
        return LEGACY_ORDER.index(source.name) if legacy else len(LEGACY_ORDER) + names.index(source.name)

    return tuple(sorted(declared, key=rank))


def sources(spec: ClusterSpec, node: Node) -> list[service.MetricsSource]:
    """The sources this VM serves; none without ``pgha:monitoring`` or on an external witness.

    pgha installs only etcd on an external witness, behind a firewall that admits the
    cluster's members alone (pgha.witness).
    """
    if spec.monitoring is None or node.external:
        return []
    return [source for source in all_sources() if source.serves(spec, node)]


def served(spec: ClusterSpec) -> list[service.MetricsSource]:
    """The sources some VM of the stack serves: one scrape job each."""
    names = {source.name for node in spec.nodes for source in sources(spec, node)}
    return [source for source in all_sources() if source.name in names]
