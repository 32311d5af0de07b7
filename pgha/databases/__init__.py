"""Application databases and roles (``pgha:databases``, ``pgha:roles``), applied through the primary.

A step on every PostgreSQL VM, after Patroni's dynamic config, installs a
plan (JSON with the passwords, postgres 0600) and runs ``pgha-databases``
(``pgha_databases.py``, shipped as it is) as the postgres OS user over the local
socket: on the primary it creates or alters what differs, on the replicas it
waits until replication shows the same state, so the step ends only when
every VM agrees. Re-running it with nothing changed changes nothing.

Databases get CONNECT and TEMPORARY revoked from PUBLIC: an application
reaches only the databases it owns (or whose owner it is a member of).
pgha's own entries come first and always: the verify probe's role and
database (``pgha_verify``, see :mod:`pgha.verify`), a login role with a small
connection limit and no other attribute, owning its database; and, with
``pgha:pooler``, PgBouncer's auth_query role ``pgha_pooler`` and the database
holding its lookup function, owned by postgres (see :mod:`pgha.pooler`), both
declared absent without it. The tool treats them like declared ones; they
export no connection string.

Passwords travel on stdin in the step's bundle and only as SCRAM verifiers to
PostgreSQL; the step script and its output hold none.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .. import patroni, vmprograms
from ..files import RenderedFile, Step, render_script
from ..secrets import POOLER_DATABASE, POOLER_ROLE, SUPERUSER, VERIFY_DATABASE, VERIFY_ROLE, ClusterSecrets
from ..service import Service
from ..spec import ClusterSpec, DatabaseSpec, Node
from . import pgha_databases

HERE = Path(__file__).resolve().parent
# Shares phase 8 with pgBackRest's step (independent of it): after patroni-config.
TOOL_PATH = pgha_databases.INSTALL_PATH
PLAN_PATH = pgha_databases.SETTINGS_PATH
TIMEOUT_S = 300
# The verify probe needs one session at a time, plus the server connection the
# primary's PgBouncer keeps after its 6432 check (server_idle_timeout): 2, and
# a little room for a retry.
VERIFY_CONNECTION_LIMIT = 3
# PgBouncer opens one auth connection per VM's pool (its own IP only, see pg_hba).
POOLER_CONNECTION_LIMIT = 10


def internal_roles(spec: ClusterSpec, secrets: ClusterSecrets) -> list[dict[str, Any]]:
    """pgha's own roles in the plan: the verify probe's login and PgBouncer's auth_query login."""
    return [
        {
            "name": VERIFY_ROLE,
            "login": True,
            "connection_limit": VERIFY_CONNECTION_LIMIT,
            "member_of": [],
            "state": "present",
            "password": secrets.verify_password,
        },
        {
            "name": POOLER_ROLE,
            "login": True,
            "connection_limit": POOLER_CONNECTION_LIMIT,
            "member_of": [],
            "state": "present" if spec.pooler else "absent",
            "password": secrets.pooler_password,
        },
    ]


def internal_databases(spec: ClusterSpec) -> list[dict[str, Any]]:
    """pgha's own databases in the plan: the verify probe's (owned by its role) and the pooler's
    lookup function's, owned by the superuser so that its role only gets CONNECT and EXECUTE."""
    return [
        {"name": VERIFY_DATABASE, "owner": VERIFY_ROLE, "extensions": [], "state": "present"},
        {
            "name": POOLER_DATABASE,
            "owner": SUPERUSER,
            "extensions": [],
            "state": "present" if spec.pooler else "absent",
        },
    ]


def plan(spec: ClusterSpec, secrets: ClusterSecrets) -> dict[str, Any]:
    """What the tool reads: pgha's own and the declared roles (with passwords) and databases, and where
    PostgreSQL is."""
    return {
        "socket_dir": patroni.SOCKET_DIR,
        "port": spec.postgres.port,
        "timeout": TIMEOUT_S,
        "roles": internal_roles(spec, secrets)
        + [
            {
                "name": role.name,
                "login": role.login,
                "connection_limit": role.connection_limit,
                "member_of": list(role.member_of),
                "state": role.state,
                **({"password": secrets.role_password(role.name)} if role in spec.login_roles else {}),
            }
            for role in spec.roles
        ],
        "databases": internal_databases(spec)
        + [
            {"name": d.name, "owner": d.owner, "extensions": list(d.extensions), "state": d.state}
            for d in spec.databases
        ],
    }


def files(spec: ClusterSpec, secrets: ClusterSecrets) -> list[RenderedFile]:
    """The tool (pgha/vmprograms.py's convention) and its plan, which holds passwords: postgres 0600."""
    program, settings, *library = vmprograms.program_files(
        pgha_databases, plan(spec, secrets), settings_mode=0o600
    )
    return [program, dataclasses.replace(settings, owner="postgres", group="postgres", secret=True), *library]


def steps(spec: ClusterSpec, node: Node, secrets: ClusterSecrets) -> list[Step]:
    if not node.runs_postgres:
        return []
    script = render_script(HERE, "databases.sh.j2", "databases", tool=TOOL_PATH, plan=PLAN_PATH)
    return [Step(node.name, "databases", script, tuple(files(spec, secrets)))]


# libpq's settings in every exported connection string, beyond TLS. When the VIP moves,
# the old holder's end of an open connection dies without a word: an idle client then
# waits for the kernel's keepalive (two hours by default) and one waiting on an answer for
# the retransmission timeout (about fifteen minutes). Probing after 10 s idle, every 5 s,
# three times, declares the peer dead 25 s after its last packet; tcp_user_timeout (30 s,
# a little above) drops a connection whose sent data stays unacknowledged as long.
# connect_timeout bounds the whole connection setup (TCP, TLS, login): a connection that
# reaches HAProxy while the old primary stops in a switchover can be held there with no
# answer (HAProxy 3.0 kills it half-way and never closes it; docs/ha.md, "Clients"), and
# without a limit libpq waits for ever. All are far below a minute yet above a failover's
# few seconds, and cost one small packet per idle connection every 10 s.
CLIENT_OPTIONS = (
    ("connect_timeout", "10"),
    ("keepalives", "1"),
    ("keepalives_idle", "10"),
    ("keepalives_interval", "5"),
    ("keepalives_count", "3"),
    ("tcp_user_timeout", "30000"),
)


def connection_string(spec: ClusterSpec, database: DatabaseSpec, password: str, port: int) -> str:
    """libpq URL for a database's owner through the VIP: TLS, the server's name and CA checked.

    libpq looks for the CA in ``~/.postgresql/root.crt`` unless ``sslrootcert`` says otherwise.
    The client options (:data:`CLIENT_OPTIONS`) bound a connection's setup and end one the VIP's
    move left dangling.
    """
    secret = quote(password, safe="")
    options = "".join(f"&{name}={value}" for name, value in CLIENT_OPTIONS)
    return f"postgresql://{database.owner}:{secret}@{spec.vip}:{port}/{database.name}?sslmode=verify-full{options}"


SERVICE = Service("databases", step_names=("databases",), steps=lambda t: steps(t.spec, t.node, t.secrets))
