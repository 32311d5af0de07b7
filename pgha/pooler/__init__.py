"""Connection pooling (``pgha:pooler``): PgBouncer on every PostgreSQL VM, behind HAProxy.

Debian's ``pgbouncer`` runs on each PostgreSQL VM, listening on the VM's own
IP (``pooler.listenPort``, 6442) and talking only to that VM's PostgreSQL,
over TLS verified like a replica's (verify-full, the cluster's CA). HAProxy
binds ``pooler.port`` (6432) on the VIP and on each VM and sends clients to the
pooler of the VM whose Patroni answers ``/primary`` and whose PgBouncer accepts
a connection, with the timings and ``on-marked-down shutdown-sessions`` of 5432
(see pgha/haproxy/haproxy.cfg.j2).

Transaction pooling. Clients must use TLS (the node certificate, which names
the VIP) and SCRAM: PgBouncer reads the verifier PostgreSQL stores through an
``auth_query`` that calls ``pgbouncer.get_auth()``, a SECURITY DEFINER
function in the ``pgha_pooler`` database, which the ``pgha_pooler`` role may
execute and nothing else; it never returns a superuser, a replication role
or pgha's own roles, but for the verify probe's ``pgha_verify`` (its own
database only, as through 5432), so the verify phase checks 6432 as a client
would. No userlist of application secrets exists: the only
entry of ``auth_file`` is ``pgha_pooler``'s own password (postgres 0600).

Draining on a switchover or failover (docs/pooler.md): HAProxy cuts every
client session to the old primary's pooler when its ``/primary`` check fails,
and Patroni's demotion restarts that PostgreSQL as a replica, which closes
every server connection the pooler held. Patroni callbacks stay pinned empty
(pgha.patroni.PINNED_HOOKS).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from .. import patroni, pki
from ..files import RenderedFile, Step, render_script, render_template
from ..secrets import (
    POOLER_DATABASE,
    POOLER_ROLE,
    REPLICATION_USER,
    REWIND_USER,
    SUPERUSER,
    VERIFY_ROLE,
    ClusterSecrets,
)
from ..service import MetricsSource, Service
from ..spec import ClusterSpec, Node

HERE = Path(__file__).resolve().parent
# After the databases step (8) has made the role and its database.
PACKAGES = ("pgbouncer",)
# Where PgBouncer's Prometheus exporter listens (loopback: HAProxy serves it, pgha.metrics).
EXPORTER_ADDRESS = "127.0.0.1:9127"
UNIT = "pgbouncer"
CONFIG_PATH = "/etc/pgbouncer/pgbouncer.ini"
USERLIST_PATH = "/etc/pgbouncer/userlist.txt"
SQL_PATH = "/etc/pgha/pooler-auth.sql"
DROPIN_PATH = "/etc/systemd/system/pgbouncer.service.d/pgha.conf"
# Debian's unit runs PgBouncer as postgres: its own copy of the node's key pair.
PEM_PATH = f"{pki.TLS_DIR}/pgbouncer.pem"
AUTH_QUERY = "SELECT usename, passwd FROM pgbouncer.get_auth($1)"
DIGEST_SQL = "SELECT obj_description(to_regprocedure('pgbouncer.get_auth(text)'), 'pg_proc')"
# Roles the lookup never returns (pg_* and pgha* are excluded by pattern too).
NEVER_POOLED = (SUPERUSER, REPLICATION_USER, REWIND_USER, POOLER_ROLE)
# The one pgha role it does return: the verify probe's, which pg_hba already lets
# in from every member to its own database only, so 5432 and 6432 admit it alike.
PROBE_ROLE = VERIFY_ROLE
TIMEOUT_S = 120
# PgBouncer's exporter (pgha:monitoring) reads its console as this very login,
# whose password auth_file already holds: a stats_users entry runs SHOW
# commands only. No admin_users: nothing on the console is managed by hand.
STATS_USER = POOLER_ROLE
# Descriptors: every client and server connection, plus headroom.
NOFILE_HEADROOM = 1024


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def auth_sql() -> str:
    """The lookup function and its grants; run through psql with ``digest`` set."""
    return render_template(
        HERE,
        "auth.sql.j2",
        superuser=SUPERUSER,
        auth_role=POOLER_ROLE,
        auth_database=POOLER_DATABASE,
        reserved_sql=", ".join(_sql_literal(r) for r in NEVER_POOLED),
        probe_sql=_sql_literal(PROBE_ROLE),
    )


def auth_digest() -> str:
    """Names the installed function's text: the step re-creates it only when this differs."""
    return "pgha " + hashlib.sha256(auth_sql().encode()).hexdigest()[:16]


def listen_address(node: Node, spec: ClusterSpec) -> str:
    assert spec.pooler is not None
    return f"{node.ip}:{spec.pooler.listen_port}"


def stats_users(spec: ClusterSpec) -> list[str]:
    """Who may read the console: the exporter's login, and only with ``pgha:monitoring``."""
    return [STATS_USER] if spec.monitoring is not None else []


def files(spec: ClusterSpec, node: Node, secrets: ClusterSecrets, tls: pki.ClusterTls) -> list[RenderedFile]:
    """The config (no secret), the auth_file and the key pair (postgres 0600), the SQL, the drop-in."""
    assert spec.pooler is not None
    config = render_template(
        HERE,
        "pgbouncer.ini.j2",
        spec=spec,
        node=node,
        userlist_path=USERLIST_PATH,
        auth_role=POOLER_ROLE,
        auth_database=POOLER_DATABASE,
        auth_query=AUTH_QUERY,
        stats_users=stats_users(spec),
        pem_path=PEM_PATH,
        ca_path=pki.CA_PATH,
    )
    userlist = render_template(
        HERE, "userlist.txt.j2", auth_role=POOLER_ROLE, auth_password=secrets.pooler_password
    )
    nofile = 2 * spec.pooler.max_client_conn + NOFILE_HEADROOM
    return [
        RenderedFile(CONFIG_PATH, config, mode=0o644),
        RenderedFile(USERLIST_PATH, userlist, mode=0o600, owner="postgres", group="postgres", secret=True),
        pki.key_file(PEM_PATH, tls.node(node), owner="postgres"),
        RenderedFile(SQL_PATH, auth_sql(), mode=0o644),
        RenderedFile(DROPIN_PATH, render_template(HERE, "pgbouncer.service.conf.j2", nofile=nofile)),
    ]


def steps(spec: ClusterSpec, node: Node, secrets: ClusterSecrets, tls: pki.ClusterTls) -> list[Step]:
    if spec.pooler is None or node.external:
        # An existing machine (an external witness) is the operator's: its services are left alone.
        return []
    if not node.runs_postgres:
        # The repository VM or a witness VM: nothing to pool; the lab's image carries the package.
        script = render_script(HERE, "pooler-absent.sh.j2", "pooler", unit=UNIT)
        return [Step(node.name, "pooler", script)]
    script = render_script(
        HERE,
        "pooler.sh.j2",
        "pooler",
        packages=PACKAGES,
        dropin_path=DROPIN_PATH,
        config_path=CONFIG_PATH,
        sql_path=SQL_PATH,
        socket_dir=patroni.SOCKET_DIR,
        port=spec.postgres.port,
        auth_database=POOLER_DATABASE,
        digest=auth_digest(),
        digest_sql=DIGEST_SQL,
        ca_path=pki.CA_PATH,
        primary_url=patroni.rest_api_url(spec, node) + "/primary",
        timeout_s=TIMEOUT_S,
        listen=listen_address(node, spec),
        node_ip=str(node.ip),
    )
    return [Step(node.name, "pooler", script, tuple(files(spec, node, secrets, tls)))]


SERVICE = Service(
    "pooler",
    step_names=("pooler",),
    steps=lambda t: steps(t.spec, t.node, t.secrets, t.tls),
    packages=lambda spec: PACKAGES if spec.pooler else (),
    metrics=(
        # Debian 13's Go exporter (0.10), installed and configured by the monitoring step.
        MetricsSource(
            "pgbouncer",
            loss_alert="PghaPoolerDown",
            serves=lambda spec, node: node.runs_postgres and spec.pooler is not None,
            address=lambda spec, node: EXPORTER_ADDRESS,
            packages=("prometheus-pgbouncer-exporter",),
        ),
    ),
)
