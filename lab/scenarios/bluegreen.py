"""Blue-green: a live stack ("blue", the dev lab) moved into a new stack ("green") with ``pgha:import``.

Green is the ``green`` stack, booted beside blue on blue's bridge (its own
VMs, VIP, etcd and Patroni scope, blue's image), as a second stack on the same
vmbr would be. Blue is prepared as docs/major-upgrade.md says: ``wal_level =
logical`` (the dev stack has it), the application's database, and a
``pgha_import`` role with exactly the source privileges of docs/moving-in.md.
Green imports from blue's VIP:5432, verified against blue's CA.

:func:`run` drives it as an operator would: the application writes to blue
throughout (its own ledger of acknowledged commits); green comes up with
``pgha:import`` pointing at blue; ``check``, ``start``, the stream catches
up; ``cutover`` makes blue's database read-only and moves the rest; then the
application's connection string moves to green's VIP (the DNS name or setting
the operator switches). Every acknowledged commit must be in green, and the
seconds writes were refused are measured by the tool and by the workload.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import time
from typing import Any

import psycopg

from pgha.secrets import new_password
from pgha.spec import ClusterSpec, DatabaseSpec, ImportSpec, RoleSpec

from ..cluster import Lab
from ..observation import connect, leader
from ..wait import wait_until
from . import moving_in
from .apps import primary_sql

GREEN_STACK = "green"
DATABASE = moving_in.DATABASE
IMPORT_ROLE = moving_in.IMPORT_ROLE
# Enough rows that the copy takes a few seconds, little enough for CI.
INITIAL_ROWS = 50_000


def with_database(spec: ClusterSpec) -> ClusterSpec:
    """``spec`` with the application's database and its owner declared (as in both stacks' config)."""
    databases = (*[d for d in spec.databases if d.name != DATABASE], DatabaseSpec(DATABASE, DATABASE))
    roles = (*[r for r in spec.roles if r.name != DATABASE], RoleSpec(name=DATABASE))
    return dataclasses.replace(spec, databases=databases, roles=roles)


def green_spec(blue: Lab, green: Lab) -> ClusterSpec:
    """Green's config: the database declared, ``pgha:import`` from blue's VIP:5432 and blue's CA."""
    source = ImportSpec(
        host=str(blue.spec.vip),
        port=blue.spec.haproxy.primary_port,
        databases=(DATABASE,),
        ca_certificate=blue.ca_path.read_text(),
        user=IMPORT_ROLE,
    )
    return dataclasses.replace(with_database(green.spec), importing=source)


def prepare_blue(blue: Lab, import_password: str) -> str:
    """The application's database with data on blue, and the import role; returns the app's password."""
    secrets = blue.secrets()
    app_password = new_password()
    secrets = dataclasses.replace(secrets, role_passwords={**secrets.role_passwords, DATABASE: app_password})
    reset_blue(blue)
    moving_in.apply_steps(blue, with_database(blue.spec), secrets, ("databases",))
    primary_sql(
        blue,
        f"""
        CREATE ROLE {IMPORT_ROLE} LOGIN REPLICATION PASSWORD '{import_password}';
        GRANT {DATABASE} TO {IMPORT_ROLE};
        GRANT pg_signal_backend TO {IMPORT_ROLE};
        """,
    )
    primary_sql(
        blue,
        moving_in.workload_schema(INITIAL_ROWS),
        dbname=DATABASE,
    )
    return app_password


def reset_blue(blue: Lab) -> None:
    """What a run leaves on blue: the database (read-only after a cutover), its publication's slots,
    the import role. The application role stays, as in moving-in."""
    # A database with a logical slot cannot be dropped: its walsenders first, then its slots.
    slots = f"FROM pg_replication_slots WHERE slot_type = 'logical' AND database = '{DATABASE}'"
    primary_sql(blue, f"SELECT pg_terminate_backend(active_pid) {slots} AND active_pid IS NOT NULL")
    wait_until(
        lambda: primary_sql(blue, f"SELECT count(*) {slots} AND active") == "0",
        30,
        error="a walsender kept blue's import slot",
    )
    primary_sql(blue, f"SELECT pg_drop_replication_slot(slot_name) {slots}")
    primary_sql(blue, f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    primary_sql(blue, f"DROP ROLE IF EXISTS {IMPORT_ROLE}")


@dataclasses.dataclass
class StackWorkload(moving_in.Workload):
    """The application's writers: "source" is blue's VIP, "pgha" is green's (its CA, its password)."""

    green: Lab | None = None
    blue_password: str = ""

    def connect(self) -> psycopg.Connection:
        moved = self.target != "source"
        lab = self.green if moved and self.green is not None else self.lab
        password = self.pgha_password if moved else self.blue_password
        return connect(
            lab, lab.spec.haproxy.primary_port, user=DATABASE, password=password, dbname=DATABASE, timeout=2
        )


def green_lab(blue: Lab) -> Lab:
    return Lab(GREEN_STACK, report=blue.report, beside=blue.stack)


def run(blue: Lab, keep_green: bool = False) -> dict[str, Any]:
    """The whole move, with its figures; green goes down and blue's database goes at the end."""
    result: dict[str, Any] = {"initial_rows": INITIAL_ROWS}
    green = green_lab(blue)
    try:
        green.spec = green_spec(blue, green)
        green.save_identity()
        green_secrets = green.secrets()
        assert green_secrets.import_password, "the lab made no import password"
        blue_password = prepare_blue(blue, green_secrets.import_password)
        result["blue_version"] = primary_sql(blue, "SHOW server_version")
        workload = StackWorkload(
            blue,
            None,  # type: ignore[arg-type]  # no old server: blue is the source
            green_secrets.role_password(DATABASE),
            green=green,
            blue_password=blue_password,
        )
        threads = workload.start()
        wait_until(lambda: len(workload.acks) > 20, 30, error="the workload never wrote to blue")
        t0 = time.monotonic()
        timings, _ = green.up()
        result["green_up_s"] = round(time.monotonic() - t0, 1)
        result["green_up"] = timings.as_dict()
        result["green_version"] = primary_sql(green, "SHOW server_version")
        primary = leader(green)
        assert primary is not None
        result["check"] = moving_in.tool(green, primary, "check").stdout.strip().splitlines()
        t0 = time.monotonic()
        moving_in.tool(green, primary, "start")
        result["start_s"] = round(time.monotonic() - t0, 1)
        moving_in.wait_status(green, moving_in.caught_up, 300, "green did not catch up with blue")
        result["start_to_caught_up_s"] = round(time.monotonic() - t0, 1)
        cut = moving_in.tool(green, primary, "cutover", check=False)
        result["cutover"] = (cut.stdout + cut.stderr).strip().splitlines()
        if cut.returncode != 0:
            raise RuntimeError("cutover failed: " + "\n".join(result["cutover"]))
        # The connection string moves: what the operator's DNS name or setting does.
        with workload.lock:
            workload.target = "pgha"
        refused = re.search(r"writes refused for ([0-9.]+) s", cut.stdout)
        result["tool_refused_s"] = float(refused.group(1)) if refused else None
        wait_until(lambda: any(a.where == "pgha" for a in workload.acks), 60, error="no write reached green")
        time.sleep(2)
        workload.stop.set()
        for thread in threads:
            thread.join(10)
        result["workload_refused_s"] = round(workload.refused_window(), 2)
        result["blue_read_only"] = blue_refuses_writes(blue, blue_password)
        result.update(moving_in.judge(green, workload))
    finally:
        if not keep_green:
            with contextlib.suppress(Exception):
                green.down()
        with contextlib.suppress(Exception):
            reset_blue(blue)
    return result


def blue_refuses_writes(blue: Lab, password: str) -> bool:
    """After the cutover blue's database must refuse a write: never two writable copies."""
    with connect(
        blue, blue.spec.haproxy.primary_port, user=DATABASE, password=password, dbname=DATABASE
    ) as conn:
        try:
            conn.execute("INSERT INTO totals (client) VALUES (-1)")
        except psycopg.errors.ReadOnlySqlTransaction:
            return True
    return False
