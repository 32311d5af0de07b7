#!/usr/bin/python3
"""pgha-import: move the databases of an existing PostgreSQL (11 or later) into this cluster.

Run by an operator on the primary's VM as the postgres OS user
(``sudo -u postgres pgha-import <command>``). The local side goes over the
local socket (peer authentication); the source over TLS verified against the
CA the stack gives (``sslmode=verify-full``), its password read by libpq from
a passfile (postgres 0600): no secret on a command line, in a log, or in
``pg_subscription`` (whose connection string names the passfile, present on
every VM, so a promoted replica connects as well).

Commands, each for every database of ``pgha:import`` (or ``--database``):

- ``check``: what logical replication cannot carry, and whether the source
  and its role allow what follows; exits 1 when anything is refused.
- ``start``: check, then the schema (``pg_dump --schema-only``, restored as
  the pgha database's owner), a publication of every table on the source,
  and a subscription on the primary through the local socket (never the
  VIP): the initial copy, then the stream.
- ``status``: the copy's state per table, and the lag in bytes.
- ``resume``: after a pgha failover, end the source's walsender that still
  holds the slot for the old primary, so the new primary's apply worker
  takes it at once instead of after the source's ``wal_sender_timeout``.
- ``cutover``: the source read-only, lag to zero, sequences copied, row
  counts and checksums compared; any failure sets the source writable again.
- ``dump``: the fallback, pg_dump/pg_restore with the source read-only all along.

Standard library plus python3-psycopg2 (Patroni's own dependency); shipped
to the VM as it is.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from typing import Any

INSTALL_PATH = "/usr/local/sbin/pgha-import"
SETTINGS_PATH = "/etc/pgha/pgha-import.json"
PUBLICATION = "pgha_import"
MIN_SOURCE_VERSION = 110000
# What the cutover accepts as caught up before it refuses writes (bytes): beyond it
# the wait for zero would lengthen the refused window.
CUTOVER_START_LAG = 16 * 1024 * 1024
# The copy's states in pg_subscription_rel: ready once every table is 'r'.
SYNC_STATES = {"i": "init", "d": "copying", "f": "copied", "s": "synced", "r": "ready"}
# Extensions every database has: never refused.
BUILTIN_EXTENSIONS = frozenset({"plpgsql"})
# One row's 64-bit hash, summed over the table: independent of row order and collation.
CHECKSUM_SQL = (
    "SELECT count(*), coalesce(sum(('x' || substr(md5(t::text), 1, 16))::bit(64)::bigint), 0)::text "
    "FROM ONLY {table} AS t"
)


class Refused(Exception):
    """A check failed: nothing was changed, or what was changed has been undone."""


@dataclass
class Finding:
    """One thing logical replication cannot carry (or the source cannot do): refused unless ``note``."""

    database: str
    what: str
    fix: str
    refused: bool = True

    def line(self) -> str:
        mark = "refused" if self.refused else "note"
        return f"{self.database}: {mark}: {self.what} ({self.fix})"


@dataclass
class Settings:
    """``/etc/pgha/pgha-import.json``, written by the import step from ``pgha:import``."""

    raw: dict[str, Any]
    databases: list[dict[str, Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.databases = list(self.raw["databases"])

    def source_params(self, dbname: str) -> dict[str, str]:
        """libpq keywords for the source: TLS verified, the password from the passfile."""
        src = self.raw["source"]
        return {
            "host": src["host"],
            "port": str(src["port"]),
            "user": src["user"],
            "dbname": dbname,
            "sslmode": "verify-full",
            "sslrootcert": src["sslrootcert"],
            "passfile": src["passfile"],
            "connect_timeout": "10",
            "application_name": "pgha-import",
        }

    def conninfo(self, dbname: str) -> str:
        """The subscription's connection string: no password, only where libpq finds it."""
        params = {**self.source_params(dbname), "application_name": subscription_name(dbname)}
        return " ".join(f"{k}={quote_conninfo(v)}" for k, v in params.items())

    def source_env(self, dbname: str) -> dict[str, str]:
        """The same keywords as libpq environment, for pg_dump (nothing on its command line)."""
        names = {
            "host": "PGHOST",
            "port": "PGPORT",
            "user": "PGUSER",
            "dbname": "PGDATABASE",
            "sslmode": "PGSSLMODE",
            "sslrootcert": "PGSSLROOTCERT",
            "passfile": "PGPASSFILE",
            "connect_timeout": "PGCONNECT_TIMEOUT",
            "application_name": "PGAPPNAME",
        }
        return {names[k]: v for k, v in self.source_params(dbname).items()}

    def bin(self, tool: str) -> str:
        return f"{self.raw['bin_dir']}/{tool}"


def quote_conninfo(value: str) -> str:
    """A libpq connection-string value: single-quoted, backslash and quote escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def subscription_name(dbname: str) -> str:
    """One subscription (and source slot) per database."""
    return f"pgha_import_{dbname}"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, name: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(name)}"


# ---- connections ---------------------------------------------------------------------


@contextmanager
def local(settings: Settings, dbname: str) -> Iterator[Any]:
    """An autocommit cursor on this VM's PostgreSQL, as the superuser over the socket."""
    import psycopg2

    conn = psycopg2.connect(
        host=settings.raw["socket_dir"], port=settings.raw["port"], dbname=dbname, user="postgres"
    )
    conn.autocommit = True
    with closing(conn), conn.cursor() as cur:
        yield cur


@contextmanager
def source(settings: Settings, dbname: str) -> Iterator[Any]:
    """An autocommit cursor on the source, as ``import.user``: read-write even once the cutover
    has made the database read-only, so that it can drop the publication or undo the read-only."""
    import psycopg2

    conn = psycopg2.connect(**settings.source_params(dbname), options="-c default_transaction_read_only=off")
    conn.autocommit = True
    with closing(conn), conn.cursor() as cur:
        yield cur


def rows(cur: Any, query: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    cur.execute(query, args or None)  # no args: a literal % stays as it is
    return list(cur.fetchall())


def value(cur: Any, query: str, args: tuple[Any, ...] = ()) -> Any:
    cur.execute(query, args or None)  # no args: a literal % stays as it is
    row = cur.fetchone()
    return row[0] if row else None


# ---- check ---------------------------------------------------------------------------

TABLES_SQL = """
SELECT n.nspname, c.relname, c.relpersistence, c.relreplident,
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),
       pg_get_userbyid(c.relowner), pg_has_role(c.relowner, 'USAGE')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2
"""


def table_findings(database: str, tables: list[tuple[Any, ...]]) -> list[Finding]:
    """Tables logical replication cannot carry: unlogged, or no way to find a row again.

    A published table without replica identity refuses UPDATE and DELETE on the
    source itself, so such a table is never published: refused before anything changes.
    """
    found = []
    for schema, name, persistence, identity, has_pk, owner, owned in tables:
        table = f"{schema}.{name}"
        if not owned:
            # CREATE PUBLICATION ... FOR TABLE needs the table's owner (FOR ALL TABLES, a superuser).
            found.append(
                Finding(
                    database,
                    f"table {table} is owned by {owner}, whom the import role is not a member of",
                    f"GRANT {owner} TO the import role, or ALTER TABLE ... OWNER TO the database's owner",
                )
            )
        if persistence == "u":
            found.append(
                Finding(
                    database, f"unlogged table {table}", "ALTER TABLE ... SET LOGGED, or import.method dump"
                )
            )
        elif identity == "n" or (identity == "d" and not has_pk):
            found.append(
                Finding(
                    database,
                    f"table {table} has no primary key nor replica identity",
                    "add a primary key, or ALTER TABLE ... REPLICA IDENTITY FULL, or import.method dump",
                )
            )
    return found


def downgrade_findings(name: str, source_version: int, local_version: int) -> list[Finding]:
    """A source of a newer major than this server is refused: this server's pg_dump reads no newer one,
    and a blue-green move goes to the same or a newer major (docs/major-upgrade.md)."""
    source_major, local_major = source_version // 10000, local_version // 10000
    if source_major <= local_major:
        return []
    what = f"source is PostgreSQL {source_major}, newer than this server's {local_major}"
    return [Finding(name, what, "import into a stack of the same or a newer major")]


def check_database(settings: Settings, database: dict[str, Any], logical: bool) -> list[Finding]:
    """Everything refused for one database, source and target; empty when it may start."""
    name = database["name"]
    found: list[Finding] = []
    with source(settings, name) as cur:
        version = int(value(cur, "SHOW server_version_num"))
        if version < MIN_SOURCE_VERSION:
            found.append(Finding(name, f"source is PostgreSQL {version // 10000}", "pgha imports from 11 on"))
            return found
        role = rows(
            cur,
            "SELECT r.rolsuper, r.rolreplication, pg_has_role(d.datdba, 'USAGE'), "
            "has_database_privilege(d.oid, 'CREATE'), pg_has_role('pg_signal_backend', 'USAGE') "
            "FROM pg_roles r, pg_database d "
            "WHERE r.rolname = current_user AND d.datname = current_database()",
        )[0]
        superuser, replication, owner, create, signal = role
        if not (owner or superuser):
            found.append(
                Finding(
                    name, "the import role is not a member of the database's owner", "GRANT owner TO role"
                )
            )
        if not (signal or superuser):
            found.append(
                Finding(name, "the import role cannot end other sessions", "GRANT pg_signal_backend TO role")
            )
        large_objects = int(value(cur, "SELECT count(*) FROM pg_largeobject_metadata"))
        extensions = [r[0] for r in rows(cur, "SELECT extname FROM pg_extension ORDER BY 1")]
        tables = rows(cur, TABLES_SQL)
        if logical:
            if value(cur, "SHOW wal_level") != "logical":
                found.append(
                    Finding(name, "wal_level is not logical", "set wal_level = logical, restart the source")
                )
            if not (replication or superuser):
                found.append(
                    Finding(name, "the import role lacks REPLICATION", "ALTER ROLE role REPLICATION")
                )
            if not (create or superuser):
                found.append(
                    Finding(name, "the import role lacks CREATE on the database", "GRANT CREATE ON DATABASE")
                )
            free = int(
                value(
                    cur,
                    "SELECT current_setting('max_replication_slots')::int - count(*) "
                    "FROM pg_replication_slots "
                    "WHERE slot_name <> %s",
                    (subscription_name(name),),
                )
            )
            if free < 2:
                found.append(
                    Finding(
                        name,
                        f"{free} free replication slots",
                        "raise max_replication_slots: one per database and one per table copied at a time",
                    )
                )
            if large_objects:
                found.append(
                    Finding(name, f"{large_objects} large objects", "import.method dump carries them")
                )
            found += table_findings(name, tables)
            found.append(
                Finding(
                    name,
                    "DDL during the sync is not replicated",
                    "start records the schema; status and cutover refuse once it changed",
                    refused=False,
                )
            )
    missing = sorted(set(extensions) - BUILTIN_EXTENSIONS - set(database["extensions"]))
    for ext in missing:
        found.append(
            Finding(name, f"extension {ext} is not declared", "add it to its pgha:databases extensions")
        )
    with local(settings, name) as cur:
        found += downgrade_findings(name, version, int(value(cur, "SHOW server_version_num")))
        existing = int(value(cur, "SELECT count(*) FROM (" + TABLES_SQL + ") t"))
        if existing and not value(
            cur, "SELECT count(*) FROM pg_subscription WHERE subname = %s", (subscription_name(name),)
        ):
            found.append(
                Finding(name, f"the pgha database already has {existing} tables", "import into an empty one")
            )
    return found


def run_check(settings: Settings, databases: list[dict[str, Any]], logical: bool) -> bool:
    """Print the findings of every database; True when nothing is refused."""
    ok = True
    for database in databases:
        for finding in check_database(settings, database, logical):
            print(finding.line())
            ok = ok and not finding.refused
    print("check: " + ("passed" if ok else "refused"))
    return ok


# ---- the schema ------------------------------------------------------------------------


def schema_digest(settings: Settings, dbname: str) -> str:
    """A fingerprint of the source's schema: DDL during the sync changes it."""
    result = subprocess.run(
        [
            settings.bin("pg_dump"),
            "--schema-only",
            "--no-owner",
            "--no-privileges",
            "--no-publications",
            "--no-subscriptions",
        ],
        env={**os.environ, **settings.source_env(dbname)},
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        lines = result.stderr.decode(errors="replace").strip().splitlines() or ["no output"]
        raise Refused(f"{dbname}: pg_dump cannot read the source's schema: {lines[-1]}")
    dumped = result.stdout
    # Comments, and psql's \restrict key (random per dump since 17.6, 16.10, 15.14, ...), change every time.
    noise = (b"--", b"\\restrict", b"\\unrestrict")
    body = b"\n".join(line for line in dumped.splitlines() if not line.startswith(noise))
    return hashlib.sha256(body).hexdigest()


def restore_list(toc: str) -> str:
    """pg_restore's list minus what the owner may not do: extensions (pgha-databases made them)."""
    kept = [
        line for line in toc.splitlines() if " EXTENSION " not in line and "COMMENT - EXTENSION" not in line
    ]
    return "\n".join(kept) + "\n"


def restore(settings: Settings, database: dict[str, Any], archive: str, env: dict[str, str]) -> None:
    """pg_restore into the pgha database as its owner (``--role``): the owner owns everything."""
    toc = subprocess.run(
        [settings.bin("pg_restore"), "-l", archive], capture_output=True, text=True, check=True
    ).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".list") as listing:
        listing.write(restore_list(toc))
        listing.flush()
        subprocess.run(
            [
                settings.bin("pg_restore"),
                "--no-owner",
                "--no-privileges",
                "--exit-on-error",
                "--single-transaction",
                f"--role={database['owner']}",
                f"--host={settings.raw['socket_dir']}",
                f"--port={settings.raw['port']}",
                "--username=postgres",
                f"--dbname={database['name']}",
                f"--use-list={listing.name}",
                archive,
            ],
            env=env,
            check=True,
        )


def state_path(settings: Settings, dbname: str) -> str:
    return f"{settings.raw['state_dir']}/{dbname}.json"


def save_state(settings: Settings, dbname: str, state: dict[str, Any]) -> None:
    os.makedirs(settings.raw["state_dir"], mode=0o700, exist_ok=True)
    with open(state_path(settings, dbname), "w") as fh:
        json.dump(state, fh)


def load_state(settings: Settings, dbname: str) -> dict[str, Any]:
    try:
        with open(state_path(settings, dbname)) as fh:
            return dict(json.load(fh))
    except FileNotFoundError:
        return {}


# ---- start -----------------------------------------------------------------------------


def published_tables(cur: Any) -> list[str]:
    """Every ordinary table of the source database (leaf partitions included), qualified."""
    return [qualified(r[0], r[1]) for r in rows(cur, TABLES_SQL)]


def start(settings: Settings, database: dict[str, Any]) -> None:
    """Schema, publication, subscription: the copy starts, then the stream."""
    name = database["name"]
    sub = subscription_name(name)
    with local(settings, name) as cur:
        if value(cur, "SELECT count(*) FROM pg_subscription WHERE subname = %s", (sub,)):
            print(f"{name}: already subscribed ({sub})")
            return
    digest = schema_digest(settings, name)
    with tempfile.TemporaryDirectory() as tmp:
        archive = f"{tmp}/schema.dump"
        subprocess.run(
            [
                settings.bin("pg_dump"),
                "--schema-only",
                "--format=custom",
                "--no-publications",
                "--no-subscriptions",
                f"--file={archive}",
            ],
            env={**os.environ, **settings.source_env(name)},
            check=True,
        )
        restore(settings, database, archive, dict(os.environ))
    print(f"{name}: schema restored, owned by {database['owner']}")
    with source(settings, name) as cur:
        tables = published_tables(cur)
        listed = ", ".join(tables)
        exists = value(cur, "SELECT count(*) FROM pg_publication WHERE pubname = %s", (PUBLICATION,))
        if tables:
            verb = (
                f"ALTER PUBLICATION {PUBLICATION} SET TABLE"
                if exists
                else f"CREATE PUBLICATION {PUBLICATION} FOR TABLE"
            )
            cur.execute(f"{verb} {listed}")
        elif not exists:
            cur.execute(f"CREATE PUBLICATION {PUBLICATION}")
    print(f"{name}: publication {PUBLICATION} of {len(tables)} tables on the source")
    save_state(settings, name, {"schema": digest, "tables": tables})
    with local(settings, name) as cur:
        # synchronous_commit on: an applied transaction is confirmed to the source only
        # once pgha's synchronous standby has it, so a failover never skips one.
        cur.execute(
            f"CREATE SUBSCRIPTION {quote_ident(sub)} CONNECTION %s PUBLICATION {PUBLICATION} "
            "WITH (synchronous_commit = 'on')",
            (settings.conninfo(name),),
        )
    print(f"{name}: subscription {sub} created: copying, then streaming")


# ---- status ----------------------------------------------------------------------------


def status(settings: Settings, database: dict[str, Any]) -> dict[str, Any]:
    """Where the copy and the stream stand: per-state table counts, the lag, the slot's holder."""
    name = database["name"]
    sub = subscription_name(name)
    result: dict[str, Any] = {"database": name, "subscription": sub}
    with local(settings, name) as cur:
        states = rows(
            cur,
            "SELECT r.srsubstate, count(*) FROM pg_subscription_rel r "
            "JOIN pg_subscription s ON s.oid = r.srsubid "
            "WHERE s.subname = %s GROUP BY 1",
            (sub,),
        )
        result["tables"] = {SYNC_STATES.get(s, s): int(n) for s, n in states}
        workers = rows(
            cur, "SELECT count(pid) FROM pg_stat_subscription WHERE subname = %s AND relid IS NULL", (sub,)
        )
        result["apply_worker"] = bool(workers and workers[0][0])
        result["subscribed"] = bool(
            value(cur, "SELECT count(*) FROM pg_subscription WHERE subname = %s", (sub,))
        )
    with source(settings, name) as cur:
        slot = rows(
            cur,
            "SELECT active, active_pid, pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint "
            "FROM pg_replication_slots WHERE slot_name = %s",
            (sub,),
        )
    if slot:
        result["slot_active"], result["slot_pid"], result["lag_bytes"] = (
            bool(slot[0][0]),
            slot[0][1],
            slot[0][2],
        )
    else:
        result["slot_active"], result["slot_pid"], result["lag_bytes"] = False, None, None
    result["ready"] = bool(result["tables"]) and set(result["tables"]) == {"ready"}
    saved = load_state(settings, name)
    try:
        result["schema_changed"] = bool(saved) and schema_digest(settings, name) != saved.get("schema")
    except Refused as unreadable:  # e.g. a table created since by a role pgha cannot read
        result["schema_changed"] = str(unreadable)
    return result


def resume(settings: Settings, database: dict[str, Any]) -> None:
    """End the source's walsender that holds the slot for a primary that is gone."""
    name = database["name"]
    sub = subscription_name(name)
    with local(settings, name) as cur:
        oid = value(cur, "SELECT oid FROM pg_subscription WHERE subname = %s", (sub,))
    with source(settings, name) as cur:
        # The slot, and the initial copy's per-table slots (pg_<subscription oid>_sync_...).
        pids = rows(
            cur,
            "SELECT s.active_pid, pg_terminate_backend(s.active_pid) FROM pg_replication_slots s "
            "WHERE s.active AND (s.slot_name = %s OR s.slot_name LIKE %s)",
            (sub, f"pg_{oid}_sync_%"),
        )
    print(
        f"{name}: ended {len(pids)} stale walsender(s) on the source; the apply worker reconnects within 5 s"
    )


# ---- cutover ---------------------------------------------------------------------------


def set_read_only(cur: Any, dbname: str, read_only: bool) -> None:
    """New sessions of ``dbname`` on the source start read-only (or no longer)."""
    if read_only:
        cur.execute(f"ALTER DATABASE {quote_ident(dbname)} SET default_transaction_read_only = on")
    else:
        cur.execute(f"ALTER DATABASE {quote_ident(dbname)} RESET default_transaction_read_only")


def end_sessions(cur: Any, dbname: str) -> list[int]:
    """End every client session of ``dbname`` but ours; return those still there (not ours to end)."""
    rows(
        cur,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = %s AND pid <> pg_backend_pid() "
        "AND backend_type = 'client backend'",
        (dbname,),
    )

    def survivors() -> list[int]:
        return [
            r[0]
            for r in rows(
                cur,
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid() "
                "AND backend_type = 'client backend'",
                (dbname,),
            )
        ]

    deadline = time.monotonic() + 5
    left = survivors()
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = survivors()
    return left


def wait_caught_up(settings: Settings, dbname: str, timeout: float) -> float:
    """Wait until the slot has confirmed everything the source wrote; seconds it took."""
    started = time.monotonic()
    with source(settings, dbname) as cur:
        target = value(cur, "SELECT pg_current_wal_lsn()::text")
        while True:
            behind = value(
                cur,
                "SELECT pg_wal_lsn_diff(%s::pg_lsn, confirmed_flush_lsn) FROM pg_replication_slots "
                "WHERE slot_name = %s",
                (target, subscription_name(dbname)),
            )
            if behind is not None and behind <= 0:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise Refused(
                    f"{dbname}: the lag did not reach zero within {timeout:.0f} s ({behind} bytes left)"
                )
            time.sleep(0.05)


def copy_sequences(settings: Settings, dbname: str) -> int:
    """Every sequence's position on the source, set on pgha: logical replication carries none."""
    with source(settings, dbname) as cur:
        found = rows(cur, "SELECT schemaname, sequencename, last_value, start_value FROM pg_sequences")
    with local(settings, dbname) as cur:
        for schema, name, last, start_value in found:
            target = qualified(schema, name)
            if last is None:
                cur.execute("SELECT setval(%s::regclass, %s, false)", (target, start_value))
            else:
                cur.execute("SELECT setval(%s::regclass, %s, true)", (target, last))
    return len(found)


def checksums(connect: Callable[[], Any], tables: list[str]) -> dict[str, tuple[int, str]]:
    """Row count and order-free checksum of each table."""
    result = {}
    with connect() as cur:
        for table in tables:
            count, total = rows(cur, CHECKSUM_SQL.format(table=table))[0]
            result[table] = (int(count), str(total))
    return result


def compare(settings: Settings, dbname: str, tables: list[str]) -> list[str]:
    """Tables whose count or checksum differ between the source and pgha (both read at once)."""
    both: dict[str, dict[str, tuple[int, str]]] = {}
    errors: list[BaseException] = []

    def side(key: str, connect: Callable[[], Any]) -> None:
        try:
            both[key] = checksums(connect, tables)
        except BaseException as error:  # reported below, in this thread
            errors.append(error)

    threads = [
        threading.Thread(target=side, args=("source", lambda: source(settings, dbname))),
        threading.Thread(target=side, args=("pgha", lambda: local(settings, dbname))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return [
        f"{t}: source {both['source'][t][0]} rows, pgha {both['pgha'][t][0]} rows"
        + ("" if both["source"][t][0] != both["pgha"][t][0] else " (checksums differ)")
        for t in tables
        if both["source"][t] != both["pgha"][t]
    ]


def refresh_materialized_views(settings: Settings, dbname: str) -> int:
    """Materialized views arrive empty with the schema: fill them, as their owner would."""
    with local(settings, dbname) as cur:
        views = [qualified(r[0], r[1]) for r in rows(cur, "SELECT schemaname, matviewname FROM pg_matviews")]
        for view in views:
            cur.execute(f"REFRESH MATERIALIZED VIEW {view}")
    return len(views)


def preflight(settings: Settings, database: dict[str, Any]) -> dict[str, Any]:
    """Refuse the cutover before touching the source: copy unfinished, lagging, or DDL since start."""
    now = status(settings, database)
    name = database["name"]
    if not now["subscribed"]:
        raise Refused(f"{name}: no subscription: run pgha-import start first")
    if not now["ready"]:
        raise Refused(f"{name}: the initial copy is not finished ({now['tables']})")
    if now["schema_changed"]:
        raise Refused(f"{name}: the source's schema changed since start (DDL is not replicated)")
    if not now["apply_worker"]:
        raise Refused(f"{name}: no apply worker runs (after a failover: pgha-import resume)")
    if now["lag_bytes"] is None or now["lag_bytes"] > CUTOVER_START_LAG:
        raise Refused(f"{name}: {now['lag_bytes']} bytes behind the source; wait for status to catch up")
    return now


def cutover(settings: Settings, databases: list[dict[str, Any]], log: Callable[[str], None] = print) -> float:
    """Move the writes: returns the seconds writes were refused. Any failure undoes the read-only."""
    for database in databases:
        preflight(settings, database)
    names = [d["name"] for d in databases]
    began = time.monotonic()
    touched: list[str] = []
    try:
        for name in names:
            with source(settings, name) as cur:
                set_read_only(cur, name, True)
                touched.append(name)
                left = end_sessions(cur, name)
                if left:
                    raise Refused(f"{name}: sessions {left} could not be ended (a superuser's?)")
                prepared = value(cur, "SELECT count(*) FROM pg_prepared_xacts WHERE database = %s", (name,))
                if prepared:
                    raise Refused(f"{name}: {prepared} prepared transactions are open on the source")
        log(f"source read-only after {time.monotonic() - began:.2f} s")
        for database in databases:
            name = database["name"]
            waited = wait_caught_up(settings, name, settings.raw["cutover_timeout"])
            log(f"{name}: lag zero after {waited:.2f} s")
            log(f"{name}: {copy_sequences(settings, name)} sequences copied")
            tables = load_state(settings, name).get("tables", [])
            differ = compare(settings, name, tables)
            if differ:
                raise Refused(f"{name}: tables differ: " + "; ".join(differ))
            log(f"{name}: {len(tables)} tables: row counts and checksums equal")
            log(f"{name}: {refresh_materialized_views(settings, name)} materialized views refreshed")
    except BaseException as error:
        for name in touched:
            with source(settings, name) as cur:
                set_read_only(cur, name, False)
        refused = time.monotonic() - began
        log(f"cutover aborted, source writable again: writes refused for {refused:.1f} s")
        if isinstance(error, Refused):
            raise
        raise Refused(f"cutover aborted: {error}") from error
    refused = time.monotonic() - began
    log(f"cutover done: writes refused for {refused:.1f} s; point the applications at pgha now")
    for name in names:
        with local(settings, name) as cur:
            cur.execute(f"DROP SUBSCRIPTION {quote_ident(subscription_name(name))}")
        with source(settings, name) as cur:
            cur.execute(f"DROP PUBLICATION IF EXISTS {PUBLICATION}")
        log(f"{name}: subscription and its source slot dropped; the source stays read-only")
    return refused


# ---- dump ------------------------------------------------------------------------------


def dump(settings: Settings, databases: list[dict[str, Any]], log: Callable[[str], None] = print) -> float:
    """pg_dump/pg_restore with the source read-only throughout; returns the seconds of downtime."""
    began = time.monotonic()
    touched: list[str] = []
    try:
        for database in databases:
            name = database["name"]
            with source(settings, name) as cur:
                set_read_only(cur, name, True)
                touched.append(name)
                left = end_sessions(cur, name)
                if left:
                    raise Refused(f"{name}: sessions {left} could not be ended")
                tables = published_tables(cur)
            with tempfile.TemporaryDirectory() as tmp:
                archive = f"{tmp}/db.dump"
                subprocess.run(
                    [
                        settings.bin("pg_dump"),
                        "--format=custom",
                        "--no-publications",
                        "--no-subscriptions",
                        f"--file={archive}",
                    ],
                    env={**os.environ, **settings.source_env(name)},
                    check=True,
                )
                restore(settings, database, archive, dict(os.environ))
            differ = compare(settings, name, tables)
            if differ:
                raise Refused(f"{name}: tables differ: " + "; ".join(differ))
            log(f"{name}: restored; {len(tables)} tables: row counts and checksums equal")
    except BaseException as error:
        for name in touched:
            with source(settings, name) as cur:
                set_read_only(cur, name, False)
        log(f"dump aborted, source writable again after {time.monotonic() - began:.1f} s")
        if isinstance(error, Refused):
            raise
        raise Refused(f"dump aborted: {error}") from error
    downtime = time.monotonic() - began
    log(f"dump done: writes refused for {downtime:.1f} s; point the applications at pgha now")
    return downtime


# ---- the command line ------------------------------------------------------------------


def on_primary(settings: Settings) -> bool:
    with local(settings, "postgres") as cur:
        return not value(cur, "SELECT pg_is_in_recovery()")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pgha-import", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("check", "start", "status", "resume", "cutover", "dump"))
    parser.add_argument("--database", help="only this database of pgha:import")
    parser.add_argument("--json", action="store_true", help="status as JSON")
    parser.add_argument("--settings", default=SETTINGS_PATH)
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # usage (exit 2) or --help (0), as a return value
        return int(stop.code or 0)
    with open(args.settings) as fh:
        settings = Settings(json.load(fh))
    databases = [d for d in settings.databases if args.database in (None, d["name"])]
    if not databases:
        print(f"pgha-import: {args.database!r} is not in pgha:import.databases", file=sys.stderr)
        return 2
    logical = settings.raw["method"] == "logical"
    import psycopg2

    try:
        if args.command != "check" and not on_primary(settings):
            print(
                "pgha-import: this VM is a replica: run it on the primary (patronictl list)", file=sys.stderr
            )
            return 2
        if args.command == "check":
            return 0 if run_check(settings, databases, logical) else 1
        if args.command == "status":
            found = [status(settings, d) for d in databases]
            if args.json:
                print(json.dumps(found))
            else:
                for one in found:
                    print(" ".join(f"{k}={v}" for k, v in one.items()))
            return 0
        if args.command == "resume":
            for database in databases:
                resume(settings, database)
            return 0
        if args.command in ("start", "dump") and not run_check(settings, databases, args.command == "start"):
            return 1
        if args.command == "start":
            if not logical:
                print("pgha-import: import.method is dump: run pgha-import dump", file=sys.stderr)
                return 2
            for database in databases:
                start(settings, database)
            return 0
        if args.command == "cutover":
            cutover(settings, databases)
            return 0
        dump(settings, databases)
        return 0
    except Refused as error:
        print(f"pgha-import: {error}", file=sys.stderr)
        return 1
    except (psycopg2.Error, subprocess.CalledProcessError) as error:
        print(f"pgha-import: {str(error).strip()}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
