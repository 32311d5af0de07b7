"""Application databases and roles in the lab: local SQL as the superuser, logins as applications.

The superuser has no network login (pgha.patroni.pg_hba): what needs it runs
``psql`` as the postgres OS user on a machine's socket, as Patroni does.
"""

from __future__ import annotations

import copy
from typing import Any

import psycopg

from pgha import load_spec, patroni
from pgha.spec import ClusterSpec
from pgha.stackfile import read_config

from ..cluster import Lab
from ..observation import connect, observe


def local_sql(lab: Lab, node: str, sql: str, dbname: str = "postgres", timeout: float = 60) -> str:
    """``sql`` as the superuser over ``node``'s Unix socket; its unaligned output."""
    query = ["psql", "-h", patroni.SOCKET_DIR, "-p", str(lab.spec.postgres.port), "-d", dbname, "-XAtc", sql]
    result = lab.exec(
        node,
        ["runuser", "-u", "postgres", "--", *query],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    return result.stdout.strip()


def primary_sql(lab: Lab, sql: str, dbname: str = "postgres") -> str:
    """``sql`` on the current primary's socket."""
    leader = observe.leader(lab)
    if leader is None:
        raise RuntimeError("no running leader")
    return local_sql(lab, leader, sql, dbname)


def login(lab: Lab, role: str, dbname: str, port: int | None = None, **kwargs: Any) -> psycopg.Connection:
    """``role`` (its lab password unless given) into ``dbname`` through the VIP (or ``host``)."""
    params: dict[str, Any] = {"user": role, "dbname": dbname, "password": lab.secrets().role_password(role)}
    params.update(kwargs)
    return connect(lab, port or lab.spec.haproxy.primary_port, **params)


def spec_with(lab: Lab, **changes: Any) -> ClusterSpec:
    """The stack's config with top-level ``pgha:`` keys replaced (None removes one), validated."""
    config = copy.deepcopy(read_config(lab.stack))
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    return load_spec(config, lab.stack)
