"""Moving in: a live database from an old server into the stack, across a switchover and a lost primary.

The old server is a machine of its own outside the stack, as a user's existing
PostgreSQL would be: Debian 12 with its PostgreSQL 15 from Debian's mirror (a
second lab image), TLS from a CA of its own, and a ``pgha_import`` role with
exactly the privileges docs/moving-in.md names. Its minimal cloud-init seed is
the external witness's (an owner's preparation, nothing of pgha's).

:func:`run` drives ``pgha-import`` as an operator would: a workload writes to
the old server throughout (its own ledger of acknowledged commits); the copy
starts, Patroni switches over in the middle of it, then the primary loses
power while changes stream; ``pgha-import resume`` hands the slot to the new
primary; the cutover; the workload moves to the VIP. Every acknowledged
commit must be in pgha, and the seconds writes were refused are measured
both by the tool and by the workload (its longest gap around the cutover).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any

import psycopg

from pgha import importing, plan
from pgha.importing import pgha_import
from pgha.pki import CertIdentity, LocalCa
from pgha.secrets import new_password
from pgha.spec import ClusterSpec, DatabaseSpec, ImportSpec, Node, RoleSpec

from ..cluster import Lab, switchover
from ..machines import ensure_image, image
from ..observation import connect, leader, wait_leader, wait_ready, wait_serving
from ..wait import wait_until
from .apps import primary_sql
from .backups import drill_node
from .mediawiki import app_server

OLD_SERVER = "old-db"
PACKAGES = ("postgresql-15",)
PG_VERSION = 15
CONF_DIR = f"/etc/postgresql/{PG_VERSION}/main"
DATABASE = "shop"
IMPORT_ROLE = "pgha_import"
# Rows the old server holds before the copy starts: enough that the copy is under way
# when the switchover comes, little enough for CI.
INITIAL_ROWS = 300_000
CLIENTS = 3
TOOL = pgha_import.INSTALL_PATH


def workload_schema(initial_rows: int) -> str:
    """The workload's tables, owned by the application role, with ``initial_rows`` orders to move."""
    return f"""
        SET ROLE {DATABASE};
        CREATE TABLE orders (
            id bigserial PRIMARY KEY,
            client_seq bigint UNIQUE,
            amount int NOT NULL,
            note text,
            at timestamptz DEFAULT clock_timestamp()
        );
        CREATE TABLE totals (client int PRIMARY KEY, n bigint NOT NULL DEFAULT 0);
        INSERT INTO orders (amount, note)
            SELECT g % 1000, md5(g::text) FROM generate_series(1, {initial_rows}) g;
        INSERT INTO totals (client) SELECT g FROM generate_series(0, {CLIENTS - 1}) g;
        """


def old_server(lab: Lab) -> Node:
    """A free address of the private network: not the restore drill's nor the wiki's."""
    taken = {n.ip for n in lab.spec.nodes} | {lab.spec.vip, lab.bridge_ip(), drill_node(lab).ip}
    taken.add(app_server(lab).ip)
    free: list[IPv4Address] = [a for a in lab.spec.network.cidr.hosts() if a not in taken]
    return Node(name=OLD_SERVER, host="old", ip=free[len(free) // 2 + 1], role="restore", external=True)


def boot(lab: Lab, log: Any = print) -> Node:
    """The old server, afresh, on the Debian 12 image with PostgreSQL 15 (built and cached on first use)."""
    node = old_server(lab)
    lab.save_host_key(node)
    machine = lab.machine(node, seeded=True)
    machine.remove()
    machine.boot(ensure_image(PACKAGES, log=log, suite=image.OLD_SUITE))

    # Its image holds the cluster already: wait for systemd (degraded counts: the minimal
    # seed leaves a unit of a cloud image failed).
    def booted() -> bool:
        state = sh(lab, node, "systemctl is-system-running", check=False).stdout.strip()
        return state in ("running", "degraded")

    wait_until(booted, 120, error="the old server did not finish booting")
    return node


def remove(lab: Lab) -> None:
    lab.machine(old_server(lab)).remove()


def sh(lab: Lab, node: Node, script: str, stdin: str = "", check: bool = True) -> subprocess.CompletedProcess:
    """A shell script on a machine, as root; a failure raises with its output."""
    result = lab.exec(node, ["bash", "-c", script], input=stdin, capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{node.name}: {script!r} exited {result.returncode}: {result.stdout}{result.stderr}"
        )
    return result


def old_sql(lab: Lab, node: Node, sql: str, dbname: str = "postgres") -> str:
    """SQL as the old server's superuser, over its socket (stdin: no value on a command line)."""
    result = lab.exec(
        node,
        ["runuser", "-u", "postgres", "--", "psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-d", dbname],
        input=sql,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"old server: {result.stderr.strip()}")
    return result.stdout.strip()


@dataclass
class Source:
    """What the old server is to the test: its address, CA, and the application's and pgha's logins."""

    node: Node
    ca: str
    app_password: str
    import_password: str


def prepare(lab: Lab, node: Node) -> Source:
    """TLS from the old server's own CA, wal_level logical, the app's database and data, the import role."""
    ca = LocalCa.create(lab.spec, common_name="old-db CA")
    pair = ca.issue(CertIdentity(OLD_SERVER, (OLD_SERVER,), (str(node.ip),)), 30)
    source = Source(node, ca.certificate, new_password(), new_password())
    sh(
        lab,
        node,
        f"install -o postgres -g postgres -m 0644 /dev/stdin {CONF_DIR}/old-db.crt",
        pair.certificate,
    )
    sh(
        lab,
        node,
        f"install -o postgres -g postgres -m 0600 /dev/stdin {CONF_DIR}/old-db.key",
        pair.private_key,
    )
    settings = (
        "listen_addresses = '*'\nwal_level = logical\nssl = on\n"
        f"ssl_cert_file = '{CONF_DIR}/old-db.crt'\nssl_key_file = '{CONF_DIR}/old-db.key'\n"
    )
    sh(lab, node, f"install -m 0644 /dev/stdin {CONF_DIR}/conf.d/pgha-lab.conf", settings)
    # A logical replication connection matches the database's name, not `replication`.
    hba = f"hostssl {DATABASE} all {lab.spec.network.cidr} scram-sha-256\n"
    sh(lab, node, f"cat >> {CONF_DIR}/pg_hba.conf", hba)
    sh(lab, node, f"systemctl restart postgresql@{PG_VERSION}-main && pg_isready -t 30")
    old_sql(
        lab,
        node,
        f"""
        CREATE ROLE {DATABASE} LOGIN PASSWORD '{source.app_password}';
        CREATE ROLE {IMPORT_ROLE} LOGIN REPLICATION PASSWORD '{source.import_password}';
        GRANT {DATABASE} TO {IMPORT_ROLE};
        GRANT pg_signal_backend TO {IMPORT_ROLE};
        CREATE DATABASE {DATABASE} OWNER {DATABASE};
        """,
    )
    old_sql(
        lab,
        node,
        workload_schema(INITIAL_ROWS),
        dbname=DATABASE,
    )
    return source


def import_spec(lab: Lab, source: Source) -> ClusterSpec:
    """The stack with the database declared and pgha:import pointing at the old server."""
    databases = (*[d for d in lab.spec.databases if d.name != DATABASE], DatabaseSpec(DATABASE, DATABASE))
    roles = (*[r for r in lab.spec.roles if r.name != DATABASE], RoleSpec(name=DATABASE))
    importing_spec = ImportSpec(
        host=str(source.node.ip), databases=(DATABASE,), ca_certificate=source.ca, user=IMPORT_ROLE
    )
    return dataclasses.replace(lab.spec, databases=databases, roles=roles, importing=importing_spec)


def apply_steps(lab: Lab, spec: ClusterSpec, secrets: Any, names: tuple[str, ...]) -> None:
    """The named steps of ``spec`` on every VM, in plan order: what ``pulumi up`` re-runs after the edit."""
    wanted = [
        (n, [s for s in steps if s.name in names]) for n, steps in plan.phases(spec, secrets, lab.tls())
    ]
    asyncio.run(lab.runner().run_phases([p for p in wanted if p[1]], lab.targets(), report=lab.report))


def reset_pgha(lab: Lab) -> None:
    """Drop what an earlier run left in pgha: the subscription (without its slot: the old server
    is gone) and the database."""
    sub = pgha_import.subscription_name(DATABASE)
    exists = primary_sql(lab, f"SELECT count(*) FROM pg_database WHERE datname = '{DATABASE}'")
    if exists == "1":
        found = primary_sql(
            lab, f"SELECT count(*) FROM pg_subscription WHERE subname = '{sub}'", dbname=DATABASE
        )
        if found == "1":
            for statement in ("DISABLE", "SET (slot_name = NONE)"):
                primary_sql(lab, f"ALTER SUBSCRIPTION {sub} {statement}", dbname=DATABASE)
            primary_sql(lab, f"DROP SUBSCRIPTION {sub}", dbname=DATABASE)
        primary_sql(lab, f"DROP DATABASE {DATABASE} WITH (FORCE)")


def tool(lab: Lab, node: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``pgha-import`` on a database VM, as the postgres OS user (its settings are postgres 0600)."""
    result = lab.exec(
        node, ["runuser", "-u", "postgres", "--", TOOL, *args], capture_output=True, text=True, timeout=600
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"pgha-import {' '.join(args)} on {node}: {result.stdout}{result.stderr}")
    return result


def status(lab: Lab) -> dict[str, Any]:
    """pgha-import status on the current primary (an empty dict while there is none)."""
    primary = leader(lab)
    if primary is None:
        return {}
    result = tool(lab, primary, "status", "--json", check=False)
    if result.returncode != 0:
        return {}
    return dict(json.loads(result.stdout)[0]) | {"primary": primary}


@dataclass
class Ack:
    seq: int
    at: float
    where: str  # "source" or "pgha"


@dataclass
class Workload:
    """Application writers: a commit inserts an order and bumps its client's total; the ledger is theirs."""

    lab: Lab
    source: Source
    pgha_password: str
    target: str = "source"
    acks: list[Ack] = field(default_factory=list)
    errors: list[tuple[float, str, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    next_seq: int = 1

    def connect(self) -> psycopg.Connection:
        if self.target == "source":
            ca_path = self.lab.state_dir / "old-db-ca.crt"
            ca_path.write_text(self.source.ca)
            return connect(
                self.lab,
                5432,
                host=str(self.source.node.ip),
                user=DATABASE,
                password=self.source.app_password,
                dbname=DATABASE,
                sslrootcert=str(ca_path),
                timeout=2,
            )
        return connect(
            self.lab,
            self.lab.spec.haproxy.primary_port,
            user=DATABASE,
            password=self.pgha_password,
            dbname=DATABASE,
            timeout=2,
        )

    def loop(self, client: int) -> None:
        """One application connection: reconnect after any failure, and when told to move."""
        conn: psycopg.Connection | None = None
        conn_where = ""
        while not self.stop.is_set():
            with self.lock:
                seq, self.next_seq = self.next_seq, self.next_seq + 1
                where = self.target
            try:
                if conn is None or conn_where != where:
                    if conn is not None:
                        conn.close()
                    conn, conn_where = self.connect(), where
                with conn.transaction():
                    conn.execute(
                        "INSERT INTO orders (client_seq, amount, note) VALUES (%s, %s, 'workload')",
                        (seq, client),
                    )
                    conn.execute("UPDATE totals SET n = n + 1 WHERE client = %s", (client,))
                with self.lock:
                    self.acks.append(Ack(seq, time.monotonic(), where))
            except (psycopg.Error, OSError) as error:
                with self.lock:
                    self.errors.append(
                        (time.monotonic(), where, (str(error).strip().splitlines() or ["?"])[0])
                    )
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                conn = None
                self.stop.wait(0.1)
            self.stop.wait(0.02)
        if conn is not None:
            conn.close()

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self.loop, args=(c,), daemon=True) for c in range(CLIENTS)]
        for thread in threads:
            thread.start()
        return threads

    def refused_window(self) -> float:
        """The workload's view of the cutover: last commit on the source to first commit on pgha."""
        last_source = max(a.at for a in self.acks if a.where == "source")
        first_pgha = min(a.at for a in self.acks if a.where == "pgha")
        return first_pgha - last_source


def wait_status(lab: Lab, check: Any, timeout: float, what: str) -> dict[str, Any]:
    return wait_until(lambda: (s := status(lab)) and check(s) and s, timeout, interval=1.0, error=what)


def caught_up(s: dict[str, Any]) -> bool:
    return bool(
        s.get("ready")
        and s.get("apply_worker")
        and s.get("lag_bytes") is not None
        and s["lag_bytes"] < 1 << 20
    )


def run(lab: Lab, kill: bool = True) -> dict[str, Any]:
    """The whole move, with its figures; the old server and pgha:import are removed at the end."""
    result: dict[str, Any] = {"initial_rows": INITIAL_ROWS}
    started = time.monotonic()
    node = boot(lab, log=lab.report)
    result["old_server_boot_s"] = round(time.monotonic() - started, 1)
    base_secrets = lab.secrets()
    pgha_password = new_password()
    try:
        source = prepare(lab, node)
        result["old_server_version"] = old_sql(lab, node, "SHOW server_version")
        spec = import_spec(lab, source)
        secrets = dataclasses.replace(
            base_secrets,
            import_password=source.import_password,
            role_passwords={**base_secrets.role_passwords, DATABASE: pgha_password},
        )
        reset_pgha(lab)
        apply_steps(lab, spec, secrets, ("databases", importing.STEP))
        workload = Workload(lab, source, pgha_password)
        threads = workload.start()
        wait_until(lambda: len(workload.acks) > 20, 30, error="the workload never wrote to the old server")
        primary = leader(lab)
        assert primary is not None
        checked = tool(lab, primary, "check")
        result["check"] = checked.stdout.strip().splitlines()
        t0 = time.monotonic()
        tool(lab, primary, "start")
        result["start_s"] = round(time.monotonic() - t0, 1)
        # Mid-copy: a planned switchover.
        copying = status(lab)
        result["tables_at_switchover"] = copying.get("tables")
        t0 = time.monotonic()
        new_primary = switchover(lab)
        after = wait_status(lab, caught_up, 180, "the import did not catch up after the switchover")
        result["switchover_to_caught_up_s"] = round(time.monotonic() - t0, 1)
        result["apply_worker_after_switchover_on"] = after["primary"]
        # A second fault only once the cluster is whole again: the demoted primary streams.
        wait_ready(lab)
        if kill:
            # Streaming: the primary loses power.
            machine = lab.machine(lab.spec.node(new_primary))
            t0 = time.monotonic()
            machine.kill()
            promoted = wait_leader(lab, not_=new_primary, timeout=120)
            result["failover_s"] = round(time.monotonic() - t0, 1)
            # The slot is still held by the source's walsender for the dead VM: one command.
            resumed = tool(lab, promoted or "", "resume")
            result["resume"] = resumed.stdout.strip()
            wait_status(lab, caught_up, 120, "the import did not catch up after the failover")
            result["kill_to_caught_up_s"] = round(time.monotonic() - t0, 1)
            restarted = time.monotonic()
            machine.start()
            result["old_primary_rejoined_s"] = wait_serving(lab, new_primary, restarted, as_replica=True)
            wait_ready(lab)
        # The cutover, then the applications move.
        primary = leader(lab)
        assert primary is not None
        cut = tool(lab, primary, "cutover", check=False)
        result["cutover"] = (cut.stdout + cut.stderr).strip().splitlines()
        if cut.returncode != 0:
            raise RuntimeError("cutover failed: " + "\n".join(result["cutover"]))
        with workload.lock:
            workload.target = "pgha"
        refused = re.search(r"writes refused for ([0-9.]+) s", cut.stdout)
        result["tool_refused_s"] = float(refused.group(1)) if refused else None
        wait_until(
            lambda: any(a.where == "pgha" for a in workload.acks),
            60,
            error="no write reached pgha after the cutover",
        )
        time.sleep(2)
        workload.stop.set()
        for thread in threads:
            thread.join(10)
        result["workload_refused_s"] = round(workload.refused_window(), 2)
        result.update(judge(lab, workload))
    finally:
        remove(lab)
        with contextlib.suppress(Exception):
            reset_pgha(lab)
        with contextlib.suppress(Exception):
            apply_steps(lab, lab.spec, base_secrets, (importing.STEP,))
    return result


def judge(lab: Lab, workload: Workload) -> dict[str, Any]:
    """Every acknowledged commit in pgha, the totals consistent, the ids from the copied sequence."""
    acked = {a.seq for a in workload.acks}
    with connect(
        lab, lab.spec.haproxy.primary_port, user=DATABASE, password=workload.pgha_password, dbname=DATABASE
    ) as conn:
        present = {r[0] for r in conn.execute("SELECT client_seq FROM orders WHERE client_seq IS NOT NULL")}
        total = conn.execute("SELECT sum(n) FROM totals").fetchone()
        written = conn.execute("SELECT count(*) FROM orders WHERE client_seq IS NOT NULL").fetchone()
        rows = conn.execute("SELECT count(*) FROM orders").fetchone()
    return {
        "acked": len(acked),
        "acked_on_source": sum(1 for a in workload.acks if a.where == "source"),
        "acked_on_pgha": sum(1 for a in workload.acks if a.where == "pgha"),
        "lost": sorted(acked - present)[:20],
        "lost_count": len(acked - present),
        # Each commit inserts one order and bumps one total: equal in any consistent copy.
        "totals_sum": int(total[0]) if total else None,
        "workload_rows": int(written[0]) if written else None,
        "rows": int(rows[0]) if rows else None,
        "errors_on_source": sum(1 for e in workload.errors if e[1] == "source"),
        "first_errors": [e[2] for e in workload.errors[:3]],
    }
