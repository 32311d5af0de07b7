"""The cluster's generated secrets, as plain values for the renderers.

Pulumi generates them (``pulumi_random``) and hands the resolved values to the
core inside an ``apply``; the offline renderer uses :meth:`placeholders`; the
lab generates its own. Nothing else in the core knows where they come from.
"""

from __future__ import annotations

import secrets as _random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields


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
    # The verify probe's own login (pgha_verify, not a superuser): the superuser
    # has no network login, and the probe must come in through the VIP.
    verify_password: str
    # PgBouncer's auth_query login (pgha_pooler, pgha.pooler): it reads SCRAM
    # verifiers through one SECURITY DEFINER function, nothing else.
    pooler_password: str
    # The keys that sign the etcd markers root's agents act on (pgha.vmlib.etcd_markers):
    # host maintenance on the database VMs, the rolling update there and on the witnesses.
    # Root only on the VMs (0600): postgres, which holds an etcd client certificate, cannot sign.
    maintenance_marker_key: str
    rolling_marker_key: str
    # A rotated marker key's predecessor, still accepted (never used to sign), so a
    # marker written just before the rotation stays valid (empty before any rotation).
    maintenance_marker_key_previous: str = ""
    rolling_marker_key_previous: str = ""
    # Supplied by the operator as secret config, not generated: the S3
    # backup repository's key pair (empty unless the repository is s3).
    backup_s3_key: str = ""
    backup_s3_key_secret: str = ""
    # The off-site bucket's key pair (repo2; empty without backup.offsite).
    backup_offsite_key: str = ""
    backup_offsite_key_secret: str = ""
    # The source server's role password for pgha:import (empty without it).
    import_password: str = ""
    # The application roles' passwords (pgha.databases), by role name:
    # generated per role or given in the secret pgha:rolePasswords.
    role_passwords: Mapping[str, str] = field(default_factory=dict)
    # Stand-ins for the offline render and the layout: any role gets a placeholder.
    placeholder: bool = False

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The generated cluster secrets (one RandomPassword each in Pulumi)."""
        return tuple(
            f.name
            for f in fields(cls)
            if f.name not in SUPPLIED
            and f.name not in PREVIOUS.values()
            and f.name not in ("role_passwords", "placeholder")
        )

    @classmethod
    def placeholders(cls, roles: Iterable[str] = ()) -> ClusterSecrets:
        """Clearly marked stand-ins for the offline render: never valid passwords."""
        values = {name: f"PULUMI-SECRET({name})" for name in (*cls.names(), *SUPPLIED)}
        passwords = {role: f"PULUMI-SECRET(password of {role})" for role in roles}
        return cls(**values, role_passwords=passwords, placeholder=True)

    @classmethod
    def generate(cls, roles: Iterable[str] = ()) -> ClusterSecrets:
        """Fresh random values, for the lab (Pulumi uses RandomPassword instead)."""
        passwords = {role: new_password() for role in roles}
        return cls(**{name: new_password() for name in cls.names()}, role_passwords=passwords)

    def role_password(self, role: str) -> str:
        """A login role's password; a missing one is a wiring bug, never an empty password."""
        if role in self.role_passwords:
            return self.role_passwords[role]
        if self.placeholder:
            return f"PULUMI-SECRET(password of {role})"
        raise KeyError(f"no password for role {role!r}")

    def marker_keys(self, name: str) -> tuple[str, ...]:
        """A marker key's ring: the key that signs first, then its predecessor if it has one."""
        return tuple(k for k in (getattr(self, name), getattr(self, PREVIOUS[name])) if k)

    def values(self) -> tuple[str, ...]:
        """Every secret value this cluster has, for leak checks."""
        scalars = (getattr(self, name) for name in (*self.names(), *SUPPLIED, *PREVIOUS.values()))
        return (*(v for v in scalars if v), *self.role_passwords.values())


def new_password() -> str:
    """Letters, digits, '-' and '_': safe in YAML, URLs and configs without quoting."""
    return _random.token_urlsafe(24)


# Secret config keys (pgha:<camelCase>) behind the supplied fields.
SUPPLIED = {
    "backup_s3_key": "backupS3Key",
    "backup_s3_key_secret": "backupS3KeySecret",
    "backup_offsite_key": "backupOffsiteKey",
    "backup_offsite_key_secret": "backupOffsiteKeySecret",
    "import_password": "importPassword",
}

# Which generation of pgha:secretRotation (a SecretRotationSpec field) renews each generated secret.
ROTATION = {
    "superuser_password": "superuser",
    "replication_password": "replication",
    "rewind_password": "rewind",
    "restapi_password": "rest_api",
    "haproxy_stats_password": "haproxy_stats",
    "backup_cipher_pass": "backup_cipher",
    "verify_password": "verify",
    "pooler_password": "pooler",
    "maintenance_marker_key": "maintenance_marker",
    "rolling_marker_key": "rolling_marker",
}
# The marker keys keep their predecessor after a rotation (pgha.vmlib.etcd_markers verifies with both).
PREVIOUS = {
    "maintenance_marker_key": "maintenance_marker_key_previous",
    "rolling_marker_key": "rolling_marker_key_previous",
}

# Fixed role names: they appear in pg_hba and in every node's Patroni config.
SUPERUSER = "postgres"
REPLICATION_USER = "replicator"
REWIND_USER = "rewind_user"
RESTAPI_USER = "patroni"
HAPROXY_STATS_USER = "stats"
# The verify probe's role and database (pgha.verify), kept by pgha.databases:
# names starting with pgha are reserved, so no declared object clashes.
VERIFY_ROLE = "pgha_verify"
VERIFY_DATABASE = "pgha_verify"
# PgBouncer's auth_query role and the database holding its lookup function (pgha.pooler).
POOLER_ROLE = "pgha_pooler"
POOLER_DATABASE = "pgha_pooler"
