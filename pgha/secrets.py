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
    # pgBackRest's repository passphrase (repo1-cipher-pass): losing it loses
    # every backup, so keep a copy outside the cluster (docs/security.md).
    backup_cipher_pass: str
    # Supplied by the operator as secret config, not generated: the S3
    # backup repository's key pair (empty unless the repository is s3).
    backup_s3_key: str = ""
    backup_s3_key_secret: str = ""

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The generated secrets (one RandomPassword each in Pulumi)."""
        return tuple(f.name for f in fields(cls) if f.name not in SUPPLIED)

    @classmethod
    def placeholders(cls) -> ClusterSecrets:
        """Clearly marked stand-ins for the offline render: never valid passwords."""
        return cls(**{f.name: f"PULUMI-SECRET({f.name})" for f in fields(cls)})

    @classmethod
    def generate(cls) -> ClusterSecrets:
        """Fresh random values, for the lab (Pulumi uses RandomPassword instead)."""
        return cls(**{name: _random.token_urlsafe(24) for name in cls.names()})

    def values(self) -> tuple[str, ...]:
        """Every secret value this cluster has, for leak checks."""
        return tuple(getattr(self, f.name) for f in fields(self) if getattr(self, f.name))


# Secret config keys (pgha:<camelCase>) behind the supplied fields.
SUPPLIED = {"backup_s3_key": "backupS3Key", "backup_s3_key_secret": "backupS3KeySecret"}

# Fixed role names: they appear in pg_hba and in every node's Patroni config.
SUPERUSER = "postgres"
REPLICATION_USER = "replicator"
REWIND_USER = "rewind_user"
RESTAPI_USER = "patroni"
HAPROXY_STATS_USER = "stats"
