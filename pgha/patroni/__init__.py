"""Patroni and the PostgreSQL it manages, from Debian's packages.

Patroni's YAML is built as data and dumped with PyYAML. Debian's
``patroni.service`` reads ``/etc/patroni/config.yml`` and restarts on
failure (unlike ``patroni@.service``, which does not), so that is the unit.

Every network path is TLS with the cluster's CA: PostgreSQL accepts only
``hostssl`` from the private network (scram-sha-256), replicas and pg_rewind
verify the primary's certificate, Patroni's REST API is HTTPS with a password
on its unsafe endpoints, and Patroni reaches etcd with its client certificate.
Patroni itself uses the Unix socket (peer authentication), so PostgreSQL has
no loopback listener, and the superuser logs in only there (see pg_hba()).
``systemctl reload patroni`` (SIGHUP) makes Patroni load a re-issued
certificate in its REST API and reload PostgreSQL, which then serves new
connections with it: a rotation needs no restart.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

# One way: backup contributes its archive parameters and restore bootstrap here, and needs
# nothing of this package (what it shares with Patroni is in pgha.postgres_server).
from .. import backup, etcd, pki, vmprograms
from ..files import RenderedFile, Step, render_script, render_template
from ..postgres_server import CONFIG_PATH, SOCKET_DIR, createcluster_file, rest_api_url, server_packages
from ..secrets import (
    POOLER_DATABASE,
    POOLER_ROLE,
    REPLICATION_USER,
    RESTAPI_USER,
    REWIND_USER,
    SUPERUSER,
    VERIFY_DATABASE,
    VERIFY_ROLE,
    ClusterSecrets,
)
from ..service import MetricsSource, Service
from ..spec import ClusterSpec, Node
from . import cluster_passwords, hostaware

HERE = Path(__file__).resolve().parent
PACKAGES = ("postgresql-common", "patroni", "python3-etcd")
WATCHDOG_RULE_PATH = "/etc/udev/rules.d/60-pgha-watchdog.rules"
SOFTDOG_PATH = "/etc/modules-load.d/pgha-softdog.conf"
# The postgres user's copy of the node's certificate and key: PostgreSQL's
# server certificate and the REST API's.
PEM_PATH = f"{pki.TLS_DIR}/postgres.pem"
# The node's etcd certificate and key, for Patroni's etcd client and pgha's agents
# (pki.ClusterTls.etcd_pair): PostgreSQL's configuration never names this file.
ETCD_PEM_PATH = f"{pki.TLS_DIR}/patroni-etcd.pem"
# Patroni reads its configuration as a directory (files merged in name order):
# config.yml (linked in) first, then what pgha-hostaware writes at runtime.
CONFIG_DIR = "/etc/patroni/pgha.d"
CONFIG_LINK = f"{CONFIG_DIR}/10-config.yml"
UNIT_DROPIN_PATH = "/etc/systemd/system/patroni.service.d/pgha.conf"
HOSTAWARE_UNIT_PATH = "/etc/systemd/system/pgha-hostaware.service"
HOSTAWARE_TAG_PATH = f"{CONFIG_DIR}/50-hostaware.yml"
HOSTAWARE_INTERVAL_S = 0.5
HOSTAWARE_ETCD_CHECK_S = 5.0
# How long a replica's patroni step waits for the primary's rotated passwords to replicate.
PASSWORDS_TIMEOUT_S = 300

# Parameters every node starts with; stack config ``postgres.parameters`` wins.
DEFAULT_PARAMETERS: dict[str, Any] = {
    "password_encryption": "scram-sha-256",
    "wal_level": "replica",
    "hot_standby": "on",
    "wal_log_hints": "on",
    "max_wal_senders": 10,
    "max_replication_slots": 10,
    "wal_keep_size": "256MB",
    "max_connections": 200,
    "shared_buffers": "256MB",
    "hot_standby_feedback": "on",
    # A synchronous standby that stopped answering (frozen, cut off, powered
    # off without a FIN) holds every commit until its walsender gives up and
    # Patroni drops it from the synchronous set: this bounds the first half.
    # The walsender asks for a reply after half of it without one (1.5 s
    # measured 1.7-4.2 s per fault here, 1 s: see docs/ha-durability.md).
    "wal_sender_timeout": "1s",
    # A connection that never finishes its startup (a client gone during a
    # partition, whose retransmitted SYN completes at the heal) keeps a backend
    # waiting this long, and a shutting-down PostgreSQL waits for it: the old
    # primary back from a partition streamed again only 71-78 s after the heal
    # with the default 1 min (docs/ha-durability.md). TLS and SCRAM on a LAN take
    # milliseconds.
    "authentication_timeout": "10s",
}


# Settings that make PostgreSQL run a program: pgha sets them in Patroni's
# local config, which wins over the DCS (Patroni merges local
# ``postgresql.parameters`` over the dynamic ones), so whoever can write the
# DCS (an etcd client, a holder of the REST API password) cannot make the
# primary run a command. Stack config may not set them either.
COMMAND_PARAMETERS = (
    "archive_command",
    "restore_command",
    "archive_cleanup_command",
    "recovery_end_command",
    "ssl_passphrase_command",
    "dynamic_library_path",
    # A library PostgreSQL loads to archive WAL instead of archive_command:
    # pgBackRest archives through archive_command, so it stays empty.
    "archive_library",
)
# Libraries PostgreSQL loads (absolute paths are allowed): pinned locally
# too, to what stack config says (nothing by default).
LIBRARY_PARAMETERS = ("shared_preload_libraries", "session_preload_libraries", "local_preload_libraries")
# Patroni's own hooks that run programs, pinned in the local ``postgresql``
# section, whose keys replace the DCS's: no callbacks, no pre-promote or
# before-stop script, replicas made by pg_basebackup only.
PINNED_HOOKS: dict[str, Any] = {
    "callbacks": {},
    "pre_promote": "",
    "before_stop": "",
    "create_replica_methods": ["basebackup"],
    "bin_name": {},
}

# Pinned locally like the commands, and not settable in stack config:
# without ALTER SYSTEM (PostgreSQL 17), a superuser session (pgha's own roles,
# a leaked password) cannot write postgresql.auto.conf, which PostgreSQL reads
# after the config Patroni writes and which would win over every pin above.
PINNED_SETTINGS: dict[str, str] = {"allow_alter_system": "off"}

# What pgha's security rests on: stack config may not override these.
MANAGED_PARAMETERS = (
    "listen_addresses",
    "port",
    "hba_file",
    "ssl",
    "ssl_cert_file",
    "ssl_key_file",
    "ssl_ca_file",
    "ssl_min_protocol_version",
    "password_encryption",
    "unix_socket_directories",
    *COMMAND_PARAMETERS,
    *PINNED_SETTINGS,
)


# The password and a client certificate signed by the cluster's CA.
CLUSTER_CERT = "scram-sha-256 clientcert=verify-ca"


def pg_hba(spec: ClusterSpec) -> list[str]:
    """Who may log in as whom, from where: first match wins.

    - The Unix socket, peer: the postgres OS user is the superuser. Patroni
      (health, promotion, its own queries), pgBackRest and pgha-databases use
      it; the superuser has no network line at all, its password opens nothing.
    - Replication and pg_rewind: only from each member's own address (/32)
      and with a client certificate from the cluster's CA. The address alone
      is not enough: a client of the VIP arrives from a member's address
      (HAProxy's), but HAProxy passes TLS through, so it would have to
      present a cluster certificate itself. A scale-out adds lines; Patroni
      rewrites pg_hba.conf on reload.
    - The verify probe's role (``pgha_verify``): TLS and scram-sha-256, only
      to its own database and only from the members' addresses (HAProxy on
      the VIP's VM forwards from its member's IP).
    - PgBouncer's auth_query role (``pgha_pooler``, with ``pgha:pooler``):
      TLS and scram-sha-256, only to its lookup function's database and only
      from the members' addresses (each PgBouncer reaches its own VM's IP).
    - pgha's own roles from anywhere else: rejected before any password.
    - Everyone else (the application roles): TLS and scram-sha-256 from the
      private network. Behind HAProxy PostgreSQL sees the VMs' own addresses,
      so who may reach the VIP is decided by HAProxy (``pgha:clients.allowFrom``).

    No line matches a plaintext TCP connection, so PostgreSQL refuses it
    before any password is exchanged.
    """
    members = [f"{node.ip}/32" for node in spec.postgres_nodes]
    reserved = ",".join((SUPERUSER, REPLICATION_USER, REWIND_USER, VERIFY_ROLE, POOLER_ROLE))
    pooler = (
        [f"hostssl {POOLER_DATABASE} {POOLER_ROLE} {m} scram-sha-256" for m in members] if spec.pooler else []
    )
    return [
        "local all all peer",
        *(f"hostssl replication {REPLICATION_USER} {member} {CLUSTER_CERT}" for member in members),
        # pg_rewind and Patroni's pre-rewind check read the primary's postgres database.
        *(f"hostssl postgres {REWIND_USER} {member} {CLUSTER_CERT}" for member in members),
        *(f"hostssl {VERIFY_DATABASE} {VERIFY_ROLE} {member} scram-sha-256" for member in members),
        *pooler,
        f"host all {reserved} 0.0.0.0/0 reject",
        "host replication all 0.0.0.0/0 reject",
        f"hostssl all all {spec.network.cidr} scram-sha-256",
    ]


def verified_tls() -> dict[str, str]:
    """libpq settings for a node's connections to a peer: TLS both ways.

    The peer's certificate is checked (verify-full), and the node presents
    its own, which pg_hba demands for replication and rewind (see pg_hba()).
    """
    return {"sslmode": "verify-full", "sslrootcert": pki.CA_PATH, "sslcert": PEM_PATH, "sslkey": PEM_PATH}


def dynamic_config(spec: ClusterSpec) -> dict[str, Any]:
    """Patroni's cluster-wide (DCS) configuration: the one place that decides it.

    The same document seeds a new cluster (``bootstrap.dcs``); on a running
    one each key has one writer: the keys of :func:`scaling_dcs_settings`
    the patroni step (on every database VM, phase 4), all the others the
    patroni-config step (pgha-rolling's ``PATCH /config``, one VM, phase 7;
    see ``pgha.rolling.config_plan``). Together they write this document, so
    bootstrap and running cluster always agree.
    """
    patroni = spec.patroni
    return {
        "ttl": patroni.ttl,
        "loop_wait": patroni.loop_wait,
        "retry_timeout": patroni.retry_timeout,
        "maximum_lag_on_failover": patroni.maximum_lag_on_failover,
        "failsafe_mode": patroni.failsafe_mode,
        "member_slots_ttl": patroni.member_slots_ttl,
        "synchronous_mode": patroni.synchronous_mode,
        "synchronous_mode_strict": False,
        "synchronous_node_count": spec.sync_standbys,
        "postgresql": {
            "use_pg_rewind": True,
            "use_slots": True,
            "parameters": {
                name: value
                for name, value in {
                    **DEFAULT_PARAMETERS,
                    **backup.postgres_parameters(spec),
                    **spec.postgres.parameters,
                }.items()
                if name not in pinned_parameters(spec)
            },
        },
    }


def etcd_hosts(spec: ClusterSpec, node: Node) -> list[str]:
    """Every etcd member's host:port, this node's own member first (where it is one)."""
    hosts = etcd.client_endpoints(spec)
    own = f"{node.ip}:{spec.etcd.client_port}"
    return sorted(hosts, key=lambda host: host != own)


def pinned_parameters(spec: ClusterSpec) -> dict[str, str]:
    """The settings the local config pins, out of the DCS's reach: those that run or load a
    program (see COMMAND_PARAMETERS) and ALTER SYSTEM's switch (see PINNED_SETTINGS)."""
    pinned = {name: "" for name in (*COMMAND_PARAMETERS, *LIBRARY_PARAMETERS)}
    pinned["dynamic_library_path"] = "$libdir"
    given = {**backup.postgres_parameters(spec), **spec.postgres.parameters}
    pinned.update({name: str(value) for name, value in given.items() if name in pinned})
    return {**pinned, **PINNED_SETTINGS}


def rest_api_allowlist(spec: ClusterSpec) -> list[str]:
    """Who may call the REST API's unsafe endpoints besides the members: the operators' networks."""
    return [str(network) for network in spec.patroni.rest_api_allow_from]


def config(spec: ClusterSpec, node: Node, secrets: ClusterSecrets) -> dict[str, Any]:
    pg, patroni = spec.postgres, spec.patroni
    return {
        "scope": pg.scope,
        "namespace": "/service/",
        "name": node.name,
        "restapi": {
            "listen": f"{node.ip}:{patroni.rest_api_port}",
            "connect_address": f"{node.ip}:{patroni.rest_api_port}",
            "certfile": PEM_PATH,
            "keyfile": PEM_PATH,
            # Patroni verifies its peers' REST APIs (failsafe, leader race) against it.
            "cafile": pki.CA_PATH,
            # Unsafe endpoints (switchover, restart, reinitialize, config) need this,
            # and a caller that is a member (Patroni's, pgha's tools on a VM) or
            # in the operators' allow-list; everyone else gets 403 first.
            "authentication": {"username": RESTAPI_USER, "password": secrets.restapi_password},
            "allowlist_include_members": True,
            **({"allowlist": rest_api_allowlist(spec)} if rest_api_allowlist(spec) else {}),
        },
        # etcd's v2 API, not etcd3: with etcd3 leases, an etcd leader frozen with
        # the primary revoked the healthy members' leases after its thaw
        # (etcd-io/etcd#15247) and the stale primary took its lock back, losing
        # acknowledged writes in the lab's freeze test; v2 TTL keys expire by
        # clock and have no lease to revoke. etcd 3.6 drops v2: revisit then.
        # pgha:patroni.etcdApi v3 selects etcd3, for the measured comparison.
        ("etcd3" if spec.patroni.etcd_api == "v3" else "etcd"): {
            "hosts": etcd_hosts(spec, node),
            # The hosts as listed, no topology discovery: Patroni starts on the
            # first (its own member) instead of a random one, so a standby whose
            # etcd freezes does not stall the leader's DCS calls (and with them
            # the drop of that standby from the synchronous set).
            "use_proxies": True,
            "protocol": "https",
            "cacert": pki.CA_PATH,
            "cert": ETCD_PEM_PATH,
            "key": ETCD_PEM_PATH,
        },
        "bootstrap": {
            # Patroni reads this once, when it creates the cluster; later
            # changes reach the running cluster through the patroni step
            # (scaling_dcs_settings()) and the patroni-config step (PATCH
            # /config, the rest): together the same dynamic_config().
            "dcs": dynamic_config(spec),
            "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}, "data-checksums"],
            # pgha:restore: the first primary comes from the backup repository.
            **(backup.bootstrap_method(spec) if spec.restore else {}),
        },
        "postgresql": {
            "listen": f"{node.ip}:{pg.port}",
            "connect_address": f"{node.ip}:{pg.port}",
            # Patroni's own connections: the socket, as the postgres OS user (peer).
            "use_unix_socket": True,
            "data_dir": pg.data_dir,
            "bin_dir": pg.bin_dir,
            "pgpass": "/var/lib/postgresql/.pgpass.patroni",
            "authentication": {
                "superuser": {"username": SUPERUSER, "password": secrets.superuser_password},
                # Replicas and pg_rewind reach the primary by its IP: verify-full checks it.
                "replication": {
                    "username": REPLICATION_USER,
                    "password": secrets.replication_password,
                    **verified_tls(),
                },
                "rewind": {"username": REWIND_USER, "password": secrets.rewind_password, **verified_tls()},
            },
            **PINNED_HOOKS,
            # A clone's pg_basebackup starts with a checkpoint (a restartpoint on the
            # replica it clones from). pg_basebackup's default, spread, paced it over
            # checkpoint_completion_target x checkpoint_timeout: a scale-out's clone
            # waited 187.6 s for it in the lab. Fast costs the source a burst of writes.
            "basebackup": {"checkpoint": "fast"},
            "parameters": {
                **pinned_parameters(spec),
                "unix_socket_directories": SOCKET_DIR,
                "ssl": "on",
                "ssl_cert_file": PEM_PATH,
                "ssl_key_file": PEM_PATH,
                # What the replication and rewind lines check client certificates against.
                "ssl_ca_file": pki.CA_PATH,
                "ssl_min_protocol_version": "TLSv1.2",
            },
            "pg_hba": pg_hba(spec),
        },
        # No /dev/watchdog (a container, a VM without softdog) is not fatal in
        # "automatic"; where it exists Patroni uses it to fence a hung primary.
        "watchdog": {"mode": patroni.watchdog, "device": "/dev/watchdog", "safety_margin": 5},
        # clonefrom: a new or replaced member takes its base backup from a
        # running replica with this tag, picked at random (Patroni excludes the
        # leader from these), and from the leader only when there is none: a
        # scale-out does not load the primary.
        "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": True, "nosync": False},
    }


def scaling_dcs_settings(spec: ClusterSpec) -> dict[str, int]:
    """The DCS keys the patroni step writes on a running cluster, and pgha-rolling never does.

    They follow the number of VMs (the synchronous standbys) or are tuned
    for scale-in (how long a removed member's slot stays), so they must be in
    line before anything waits for a healthy cluster: pgha-rolling's health
    rule counts the synchronous standbys against the spec, and after a
    scale-out it would wait (and stop) for a count only this key brings.
    So their one writer is the patroni step, on every VM right after Patroni
    runs (compare-and-set, a loser retries); the patroni-config step PATCHes
    every other key of :func:`dynamic_config` and leaves these out.
    """
    # A subset of dynamic_config(), the one place that decides them.
    dynamic = dynamic_config(spec)
    settings = {"member_slots_ttl": dynamic["member_slots_ttl"]}
    if spec.patroni.synchronous_mode:
        # Every replica synchronous by default: the count follows the VM count.
        settings["synchronous_node_count"] = dynamic["synchronous_node_count"]
    return settings


def hostaware_settings(spec: ClusterSpec, node: Node) -> dict[str, Any]:
    """What pgha-hostaware (hostaware.py) reads: who it is, where every database VM runs."""
    return {
        "name": node.name,
        "hosts": {n.name: n.host for n in spec.postgres_nodes},
        "url": rest_api_url(spec, node),
        "cafile": pki.CA_PATH,
        "tagFile": HOSTAWARE_TAG_PATH,
        "interval": HOSTAWARE_INTERVAL_S,
        # etcd's raft leader follows the primary (see hostaware.py), where this VM is a member.
        "etcd": {
            "endpoints": [etcd.client_url(spec, m) for m in etcd.members(spec)],
            "self": etcd.client_url(spec, node),
            "cafile": pki.CA_PATH,
            "cert": ETCD_PEM_PATH,
            "every": HOSTAWARE_ETCD_CHECK_S,
        }
        if node in etcd.members(spec)
        else None,
    }


def hostaware_files(spec: ClusterSpec, node: Node) -> list[RenderedFile]:
    """The watcher that keeps nosync on the standbys sharing the primary's host (if host-aware)."""
    if not spec.host_aware_sync:
        return []
    unit = render_template(
        HERE, "pgha-hostaware.service.j2", program=hostaware.INSTALL_PATH, settings=hostaware.SETTINGS_PATH
    )
    return [
        *vmprograms.program_files(hostaware, hostaware_settings(spec, node)),
        RenderedFile(HOSTAWARE_UNIT_PATH, unit),
    ]


def cluster_password_files(spec: ClusterSpec, secrets: ClusterSecrets) -> list[RenderedFile]:
    """pgha-cluster-passwords and its settings (the passwords of Patroni's roles: postgres 0600).

    A rotated password must be in the primary before any Patroni loads it (see
    cluster_passwords.py); the step runs the tool before it reloads Patroni.
    """
    settings = {
        "socket_dir": SOCKET_DIR,
        "port": spec.postgres.port,
        "timeout": PASSWORDS_TIMEOUT_S,
        "roles": {
            SUPERUSER: secrets.superuser_password,
            REPLICATION_USER: secrets.replication_password,
            REWIND_USER: secrets.rewind_password,
        },
    }
    program, plan, *library = vmprograms.program_files(cluster_passwords, settings, settings_mode=0o600)
    return [program, dataclasses.replace(plan, owner="postgres", group="postgres", secret=True), *library]


def files(spec: ClusterSpec, node: Node, secrets: ClusterSecrets, tls: pki.ClusterTls) -> list[RenderedFile]:
    document = yaml.safe_dump(config(spec, node, secrets), sort_keys=False, default_flow_style=False)
    dropin = render_template(HERE, "patroni.service.conf.j2", config_dir=CONFIG_DIR)
    return [
        RenderedFile(UNIT_DROPIN_PATH, dropin),
        *hostaware_files(spec, node),
        createcluster_file(),
        RenderedFile(SOFTDOG_PATH, "# Managed by pgha: a watchdog for Patroni.\nsoftdog\n"),
        RenderedFile(WATCHDOG_RULE_PATH, render_template(HERE, "watchdog.rules.j2")),
        RenderedFile(
            CONFIG_PATH,
            "# Managed by pgha.\n" + document,
            mode=0o600,
            owner="postgres",
            group="postgres",
            secret=True,
        ),
        pki.key_file(PEM_PATH, tls.node(node), owner="postgres"),
        pki.key_file(ETCD_PEM_PATH, tls.etcd_pair(node), owner="postgres"),
        *cluster_password_files(spec, secrets),
    ]


def steps(spec: ClusterSpec, node: Node, secrets: ClusterSecrets, tls: pki.ClusterTls) -> list[Step]:
    if not node.runs_postgres:
        return []
    restore = spec.restore is not None
    script = render_script(
        HERE,
        "patroni.sh.j2",
        "patroni",
        spec=spec,
        # pgha:restore: pgBackRest must be there before Patroni bootstraps with it.
        packages=(*PACKAGES, *backup.PACKAGES) if restore else PACKAGES,
        server_packages=server_packages(spec),
        health_url=rest_api_url(spec, node) + "/health",
        ca_path=pki.CA_PATH,
        config_path=CONFIG_PATH,
        config_dir=CONFIG_DIR,
        config_link=CONFIG_LINK,
        dropin_path=UNIT_DROPIN_PATH,
        hostaware=spec.host_aware_sync,
        hostaware_unit_path=HOSTAWARE_UNIT_PATH,
        hostaware_tag_path=HOSTAWARE_TAG_PATH,
        scaling_dcs=scaling_dcs_settings(spec),
        passwords_tool=cluster_passwords.INSTALL_PATH,
        passwords_settings=cluster_passwords.SETTINGS_PATH,
    )
    found = files(spec, node, secrets, tls)
    if restore:
        found += backup.bootstrap_files(spec, node, secrets, tls)
    return [Step(node.name, "patroni", script, tuple(found))]


SERVICE = Service(
    "patroni",
    step_names=("patroni",),
    steps=lambda t: steps(t.spec, t.node, t.secrets, t.tls),
    packages=lambda spec: (*server_packages(spec), *PACKAGES),
    metrics=(
        # Patroni's REST API serves /metrics itself.
        MetricsSource(
            "patroni",
            loss_alert="PghaMemberDown",
            serves=lambda spec, node: node.runs_postgres,
            address=lambda spec, node: f"{node.ip}:{spec.patroni.rest_api_port}",
            tls=True,
        ),
    ),
)
