"""pgha: HA PostgreSQL on two Proxmox VE hosts, from the ``pgha:`` stack config.

Thin on purpose: validate the whole namespace (unknown keys included) before
any resource exists, then build one :class:`PghaCluster`. The Proxmox provider
is the default one, configured by the ``proxmoxve:`` namespace.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config

from components.cluster import PghaCluster, PghaClusterArgs
from pgha.config import NAMESPACE, ConfigError, load_spec


def namespace_config(namespace: str) -> dict[str, Any]:
    """Every key of one config namespace, objects decoded, so typos can be reported.

    ``pulumi.Config`` only answers for keys one asks about. The CLI hands the
    program its whole config as JSON in ``PULUMI_CONFIG``; tests and the
    Automation API set it with ``set_all_config``: read both.
    """
    keys = set(runtime_config.get_config_env()) | set(runtime_config.CONFIG.get())
    values: dict[str, Any] = {}
    for full_key in sorted(keys):
        prefix, _, key = full_key.partition(":")
        if prefix != namespace or not key:
            continue
        raw = runtime_config.get_config(full_key)
        # Structured values (objects, lists) arrive as JSON text; scalars as plain text.
        if isinstance(raw, str) and raw.lstrip()[:1] in ("{", "["):
            # Unparsable JSON stays text: load_spec then reports the key and its value.
            with contextlib.suppress(json.JSONDecodeError):
                raw = json.loads(raw)
        values[key.removeprefix("config:")] = raw
    return values


def is_secret_config(key: str) -> bool:
    """Whether the stack keeps ``key`` encrypted (``pulumi config set --secret``)."""
    return runtime_config.is_config_secret(key) or key in runtime_config.get_config_secret_keys_env()


def main() -> None:
    stack = pulumi.get_stack()
    config = namespace_config(NAMESPACE)
    # What the stack keeps encrypted: load_spec refuses a secret key held in clear text.
    encrypted = [key for key in config if is_secret_config(f"{NAMESPACE}:{key}")]
    try:
        spec = load_spec(config, stack, encrypted)
    except ConfigError as error:
        for problem in error.problems:
            pulumi.log.error(problem)
        raise pulumi.RunError(
            f"invalid stack config for {stack}: {len(error.problems)} problem(s) under "
            f"'{NAMESPACE}:', listed above; nothing was created"
        ) from None

    cluster = PghaCluster("pgha", PghaClusterArgs(spec))
    pulumi.export("vip", cluster.vip)
    pulumi.export("caCertificate", cluster.ca_certificate)
    pulumi.export("primaryPort", cluster.primary_port)
    pulumi.export("replicaPort", cluster.replica_port)
    pulumi.export("primaryConnectionString", cluster.primary_connection_string)
    pulumi.export("replicaConnectionString", cluster.replica_connection_string)
    # Per database: {primary, replica, pooler (with pgha:pooler)} connection strings for its owner (secret).
    pulumi.export("databases", cluster.databases)
    pulumi.export("nodes", cluster.nodes)
    pulumi.export("failureDomains", cluster.failure_domains)
    if cluster.prometheus is not None:
        pulumi.export("prometheus", cluster.prometheus)
    if spec.backup is not None:
        # Secret: the only key to this stack's backups; a new stack imports it
        # (pgha:backupCipherPassphrase) to restore from them (docs/backups.md).
        pulumi.export("backupCipherPassphrase", cluster.passwords.backup_cipher_passphrase)
    # Public: what the owner of an external witness adds to its SSH user's authorized_keys.
    pulumi.export("deployPublicKey", cluster.passwords.deploy_public_key)


main()
