#!/usr/bin/python3
"""pgha-databases: bring PostgreSQL's application databases and roles in line with a plan file.

Runs on every PostgreSQL VM as the postgres OS user, over the local socket
(peer authentication: the superuser never logs in over the network). On the
primary it creates or alters what differs; on a replica it waits until
replication shows the same state (or until it becomes the primary, and then
applies itself). Either way it exits 0 only once the state matches.

The plan (JSON, 0600 postgres) holds the passwords. They never leave this
process in clear: PostgreSQL receives a SCRAM-SHA-256 verifier computed here
(as psql's \\password does), so no password reaches the server, its logs or
``pg_stat_activity``, and an unchanged password is recognised by recomputing
the verifier with the stored salt. Identifiers and literals go through
psycopg2.sql, never string formatting. What is not in the plan is never
touched; nothing is dropped unless the plan says ``absent``.

Standard library plus python3-psycopg2 (Patroni's own dependency) and pgha's VM
library (the SCRAM verifier): shipped to the VM as it is (``pgha/vmprograms.py``).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from typing import Any

INSTALL_PATH = "/usr/local/lib/pgha/pgha-databases"
# The shared library: on the VM under LIBRARY_ROOT (pgha/vmprograms.py), in the repository the package.
LIBRARY_ROOT = "/usr/local/lib/pgha"
sys.path.append(LIBRARY_ROOT)
from pgha.vmlib.scram import scram_matches, scram_verifier  # noqa: E402

# Holds the passwords: postgres 0600, installed by the same step.
SETTINGS_PATH = "/etc/pgha/pgha-databases.json"
# Membership pgha manages for a declared role: in declared roles and these predefined ones.
GRANTABLE_PREDEFINED = (
    "pg_monitor",
    "pg_read_all_settings",
    "pg_read_all_stats",
    "pg_stat_scan_tables",
    "pg_read_all_data",
    "pg_write_all_data",
    "pg_signal_backend",
    "pg_checkpoint",
    "pg_maintain",
)
# What a declared role never has, whatever it had before pgha managed it.
DENIED_ATTRIBUTES = ("superuser", "createdb", "createrole", "replication", "bypassrls")


@dataclass(frozen=True)
class Action:
    """One change: ``verb`` and its arguments; ``describe`` is what gets printed (no secret)."""

    verb: str
    args: tuple[Any, ...]

    @property
    def describe(self) -> str:
        if self.verb == "set_password":
            return f"set_password {self.args[0]}"
        if self.verb in ("create_role", "alter_role"):
            return f"{self.verb} {self.args[0]}"
        return " ".join([self.verb, *map(str, self.args)])


def actions(state: dict[str, Any], plan: dict[str, Any]) -> list[Action]:
    """What turns ``state`` (a catalog snapshot) into what ``plan`` declares, in a safe order.

    Roles first (so owners and groups exist), then memberships, databases,
    extensions; drops last, databases before roles.
    """
    roles, databases = state["roles"], state["databases"]
    declared = {r["name"] for r in plan["roles"]}
    managed_groups = declared | set(GRANTABLE_PREDEFINED)
    todo: list[Action] = []
    present_roles = [r for r in plan["roles"] if r["state"] == "present"]
    for role in present_roles:
        current = roles.get(role["name"])
        wanted = {"login": role["login"], "connection_limit": role["connection_limit"]}
        if current is None:
            todo.append(Action("create_role", (role["name"], wanted)))
        elif any(current[k] != v for k, v in wanted.items()) or any(current[a] for a in DENIED_ATTRIBUTES):
            todo.append(Action("alter_role", (role["name"], wanted)))
        if role["login"] and (current is None or not scram_matches(current["password"], role["password"])):
            todo.append(Action("set_password", (role["name"],)))
    for role in present_roles:
        current_groups = set(roles[role["name"]]["member_of"]) if role["name"] in roles else set()
        for group in role["member_of"]:
            if group not in current_groups:
                todo.append(Action("grant", (group, role["name"])))
        for group in sorted((current_groups & managed_groups) - set(role["member_of"])):
            todo.append(Action("revoke", (group, role["name"])))
    for database in plan["databases"]:
        if database["state"] != "present":
            continue
        current = databases.get(database["name"])
        if current is None:
            todo.append(Action("create_database", (database["name"], database["owner"])))
        elif current["owner"] != database["owner"]:
            todo.append(Action("alter_owner", (database["name"], database["owner"])))
        if current is None or current["public_access"]:
            todo.append(Action("revoke_public", (database["name"],)))
        installed = set(current["extensions"]) if current else set()
        for extension in database["extensions"]:
            if extension not in installed:
                todo.append(Action("create_extension", (database["name"], extension)))
    for database in plan["databases"]:
        if database["state"] == "absent" and database["name"] in databases:
            todo.append(Action("drop_database", (database["name"],)))
    for role in plan["roles"]:
        if role["state"] == "absent" and role["name"] in roles:
            todo.append(Action("drop_role", (role["name"],)))
    return todo


# ---- PostgreSQL (python3-psycopg2 on the VM) ----------------------------------------


@contextmanager
def connect(plan: dict[str, Any], dbname: str = "postgres") -> Iterator[Any]:
    """A cursor on the local socket as postgres (peer), autocommit, closed afterwards."""
    import psycopg2

    conn = psycopg2.connect(
        host=plan["socket_dir"], port=plan["port"], dbname=dbname, application_name="pgha-databases"
    )
    with closing(conn):
        conn.autocommit = True
        with conn.cursor() as cur:
            yield cur


def snapshot(plan: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
    """(primary?, the catalog state of the declared objects) read from the local PostgreSQL."""
    names = [r["name"] for r in plan["roles"]]
    with connect(plan) as cur:
        cur.execute("SELECT pg_is_in_recovery()")
        in_recovery = cur.fetchone()[0]
        cur.execute(
            "SELECT a.rolname, a.rolcanlogin, a.rolconnlimit, a.rolpassword, a.rolsuper, a.rolcreatedb,"
            " a.rolcreaterole, a.rolreplication, a.rolbypassrls,"
            " ARRAY(SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid"
            "       WHERE m.member = a.oid)"
            " FROM pg_authid a WHERE a.rolname = ANY(%s)",
            (names,),
        )
        roles = {
            row[0]: {
                "login": row[1],
                "connection_limit": row[2],
                "password": row[3],
                **dict(zip(DENIED_ATTRIBUTES, row[4:9], strict=True)),
                "member_of": row[9],
            }
            for row in cur.fetchall()
        }
        cur.execute(
            "SELECT d.datname, pg_get_userbyid(d.datdba), d.datacl IS NULL OR EXISTS ("
            "  SELECT 1 FROM aclexplode(d.datacl) x WHERE x.grantee = 0"
            "  AND x.privilege_type IN ('CONNECT', 'TEMPORARY'))"
            " FROM pg_database d WHERE d.datname = ANY(%s)",
            ([d["name"] for d in plan["databases"]],),
        )
        databases = {row[0]: {"owner": row[1], "public_access": row[2], "extensions": []} for row in cur}
        cur.execute("SELECT name FROM pg_available_extensions")
        available = {row[0] for row in cur}
    for database in plan["databases"]:
        missing = [e for e in database["extensions"] if e not in available]
        if missing and database["state"] == "present":
            raise SystemExit(f"pgha-databases: extension(s) {', '.join(missing)} not installed on this VM")
        if database["state"] == "present" and database["name"] in databases:
            with connect(plan, database["name"]) as cur:
                cur.execute("SELECT extname FROM pg_extension")
                databases[database["name"]]["extensions"] = [row[0] for row in cur]
    return not in_recovery, {"roles": roles, "databases": databases}


def statement(action: Action, plan: dict[str, Any]) -> Any:
    """The SQL of one action, identifiers and literals quoted by psycopg2.sql."""
    from psycopg2 import sql

    ident = sql.Identifier
    if action.verb in ("create_role", "alter_role"):
        name, wanted = action.args
        verb = "CREATE" if action.verb == "create_role" else "ALTER"
        return sql.SQL(
            verb + " ROLE {} WITH {} NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
            " CONNECTION LIMIT {}"
        ).format(
            ident(name),
            sql.SQL("LOGIN" if wanted["login"] else "NOLOGIN"),
            sql.Literal(wanted["connection_limit"]),
        )
    if action.verb == "set_password":
        (name,) = action.args
        password = next(r["password"] for r in plan["roles"] if r["name"] == name)
        return sql.SQL("ALTER ROLE {} PASSWORD {}").format(ident(name), sql.Literal(scram_verifier(password)))
    if action.verb == "grant":
        return sql.SQL("GRANT {} TO {}").format(ident(action.args[0]), ident(action.args[1]))
    if action.verb == "revoke":
        return sql.SQL("REVOKE {} FROM {}").format(ident(action.args[0]), ident(action.args[1]))
    if action.verb == "create_database":
        return sql.SQL("CREATE DATABASE {} OWNER {}").format(ident(action.args[0]), ident(action.args[1]))
    if action.verb == "alter_owner":
        return sql.SQL("ALTER DATABASE {} OWNER TO {}").format(ident(action.args[0]), ident(action.args[1]))
    if action.verb == "revoke_public":
        return sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(ident(action.args[0]))
    if action.verb == "create_extension":
        return sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(ident(action.args[1]))
    if action.verb == "drop_database":
        return sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident(action.args[0]))
    if action.verb == "drop_role":
        return sql.SQL("DROP ROLE IF EXISTS {}").format(ident(action.args[0]))
    raise ValueError(f"unknown action {action.verb}")


def apply(plan: dict[str, Any], todo: list[Action]) -> None:
    import psycopg2

    with connect(plan) as cur:
        for action in todo:
            if action.verb == "create_extension":
                with connect(plan, action.args[0]) as db_cur:
                    db_cur.execute(statement(action, plan))
            elif action.verb == "drop_role":
                # Its sessions go with it: a role declared absent must not keep working.
                cur.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                    (action.args[0],),
                )
                try:
                    cur.execute(statement(action, plan))
                except psycopg2.errors.DependentObjectsStillExist as error:
                    detail = (error.diag.message_detail or "").replace("\n", "; ")
                    raise SystemExit(
                        f"pgha-databases: role {action.args[0]} is declared absent but still has objects "
                        f"or privileges ({detail}); reassign or drop them, or declare its database absent too"
                    ) from None
            else:
                cur.execute(statement(action, plan))
            print(f"pgha-databases: {action.describe}", flush=True)


def run(plan: dict[str, Any]) -> int:
    """Apply on the primary, or wait as a replica until replication shows the plan done."""
    import psycopg2

    deadline = time.monotonic() + plan.get("timeout", 300)
    waiting = None
    while True:
        try:
            primary, state = snapshot(plan)
            todo = actions(state, plan)
            if not todo:
                print(f"pgha-databases: in line ({'primary' if primary else 'replica'})", flush=True)
                return 0
            if primary:
                apply(plan, todo)
                primary, state = snapshot(plan)
                left = actions(state, plan)
                if not left:
                    print(f"pgha-databases: {len(todo)} change(s) applied", flush=True)
                    return 0
                waiting = "still differs after applying: " + ", ".join(a.describe for a in left)
            else:
                waiting = "replica waiting for: " + ", ".join(a.describe for a in todo)
        except psycopg2.Error as error:
            # A switchover under way (read-only transaction, a restart): try again.
            waiting = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error) else ''}"
        if time.monotonic() > deadline:
            print(f"pgha-databases: timed out; {waiting}", file=sys.stderr)
            return 1
        time.sleep(2)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = args[0] if args else SETTINGS_PATH
    with open(path, encoding="utf-8") as handle:
        plan = json.load(handle)
    return run(plan)


if __name__ == "__main__":
    sys.exit(main())
