"""The cluster's generated secrets, as plain values for the renderers.

Pulumi generates them (``pulumi_random``) and hands the resolved values to the
core inside an ``apply``; the offline renderer uses :meth:`placeholders`; the
lab generates its own. Nothing else in the core knows where they come from.
"""

from __future__ import annotations

import secrets as _random
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class ClusterSecrets:
    superuser_password: str
    replication_password: str
    rewind_password: str
    restapi_password: str
    haproxy_stats_password: str

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def placeholders(cls) -> ClusterSecrets:
        """Clearly marked stand-ins for the offline render: never valid passwords."""
        return cls(**{name: f"PULUMI-SECRET({name})" for name in cls.names()})

    @classmethod
    def generate(cls) -> ClusterSecrets:
        """Fresh random values, for the lab (Pulumi uses RandomPassword instead)."""
        return cls(**{name: _random.token_urlsafe(24) for name in cls.names()})

    def values(self) -> tuple[str, ...]:
        return tuple(getattr(self, name) for name in self.names())


# Fixed role names: they appear in pg_hba and in every node's Patroni config.
SUPERUSER = "postgres"
REPLICATION_USER = "replicator"
REWIND_USER = "rewind_user"
RESTAPI_USER = "patroni"
HAPROXY_STATS_USER = "stats"
