"""Backups from a replica, their health, and restores onto a fresh machine (the dev stack's repository VM)."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from lab.cluster import operator
from lab.observation import connect, observe
from lab.scenarios import backups
from lab.scenarios.apps import local_sql
from lab.wait import wait_until
from pgha import backup

pytestmark = pytest.mark.lab

BACKUP_START_TIMEOUT = 60.0  # s from launching pgha-backup to pgBackRest's session on the primary


def sql(lab, statement: str) -> list[tuple]:
    with connect(lab, lab.spec.haproxy.primary_port, timeout=10) as conn:
        cursor = conn.execute(statement)
        return cursor.fetchall() if cursor.description else []


def backup_session_on(lab, node: str) -> bool:
    """Whether pgBackRest has its backup session (``pgBackRest [backup]``) open on ``node``."""
    count = local_sql(
        lab, node, "select count(*) from pg_stat_activity where application_name = 'pgBackRest [backup]'"
    )
    return int(count) > 0


def pgbackrest_info(lab) -> dict:
    result = lab.exec(
        backups.runner(lab),
        ["runuser", "-u", "postgres", "--", "pgbackrest", "--stanza=pgha", "info", "--output=json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)[0]


def test_the_deployment_took_a_first_backup_and_reports_healthy(lab):
    report = backups.status(lab)
    assert report is not None and report["ok"], report
    assert report["backups"] >= 1 and report["lastFull"], report
    assert report["archiveMax"], report


def test_only_the_repository_vm_has_backup_timers(lab):
    timers = [backup.timer_name(k) for k in ("full", "diff", "check")]
    for node in lab.spec.nodes:
        result = lab.exec(node.name, ["systemctl", "is-enabled", *timers], capture_output=True, text=True)
        if node.role == "repository":
            assert result.stdout.split() == ["enabled"] * 3, result.stdout
        else:
            assert result.returncode != 0, (node.name, result.stdout)


def test_backup_files_are_read_from_a_standby(lab):
    result = backups.take(lab, "incr")
    assert result.returncode == 0, result.stdout + result.stderr
    # pgBackRest names the host it copies from; it must not be the primary.
    primary = observe.leader(lab)
    standbys = {str(n.ip) for n in lab.spec.postgres_nodes if n.name != primary}
    log = result.stdout + result.stderr
    assert "backup standby" in log or any(ip in log for ip in standbys), log
    assert pgbackrest_info(lab)["backup"][-1]["type"] == "incr"


def test_point_in_time_restore_on_a_fresh_machine(lab):
    """Rows, a backup, more rows, a time T, more rows: restoring to T finds exactly the rows before it."""
    sql(lab, "DROP TABLE IF EXISTS drill; CREATE TABLE drill (id int PRIMARY KEY)")
    sql(lab, "INSERT INTO drill SELECT generate_series(1, 100)")
    result = backups.take(lab, "diff")
    assert result.returncode == 0, result.stdout + result.stderr
    sql(lab, "INSERT INTO drill SELECT generate_series(101, 200)")
    time.sleep(1.5)
    (target,) = sql(
        lab, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US+00')"
    )
    time.sleep(1.5)
    sql(lab, "INSERT INTO drill SELECT generate_series(201, 300)")
    # Gets the last rows' WAL into the archive, as archive_timeout would within a minute.
    checked = backups.take(lab, "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr

    drilled = backups.restore_drill(
        lab, target_time=target[0], sql="SELECT count(*), min(id), max(id) FROM drill"
    )
    assert drilled.answer == "200|1|200", drilled.output
    latest = backups.restore_drill(lab, sql="SELECT count(*) FROM drill")
    assert latest.answer == "300", latest.output


def test_a_backup_whose_standby_fails_over_ends_cleanly_and_the_next_one_works(lab):
    sql(lab, "DROP TABLE IF EXISTS bulk")
    sql(
        lab,
        "CREATE TABLE bulk AS SELECT g AS id, repeat(md5(random()::text), 8) AS pad"
        " FROM generate_series(1, 300000) g",
    )
    primary = observe.leader(lab)
    # pgBackRest reads from the first standby in its pg1..pgN list: make that one the new primary mid-backup.
    source = next(n.name for n in lab.spec.postgres_nodes if n.name != primary)
    started = time.monotonic()
    running = subprocess.Popen(
        lab.exec_args(backups.runner(lab), [backup.BACKUP_PATH, "full"]),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    # Mid-backup means between pg_backup_start and pg_backup_stop, which pgBackRest holds one
    # session on the primary for: wait for that session, not for a guessed second.
    def backup_state() -> str | None:
        if backup_session_on(lab, primary):
            return "under way"
        return "ended" if running.poll() is not None else None

    state = wait_until(backup_state, BACKUP_START_TIMEOUT, interval=0.2)
    assert state == "under way", (
        f"backup {state or 'not started'} (exit {running.returncode}): nothing tested"
    )
    operator.switchover(lab, to=source)
    output, _ = running.communicate(timeout=600)
    errors = [line for line in output.splitlines() if "ERROR" in line]
    print(
        f"backup during switchover: exit {running.returncode}",
        f"after {time.monotonic() - started:.1f} s {errors[:1]}",
    )
    if running.returncode != 0:
        # Failing is acceptable; failing unclearly, or leaving a lock behind, is not.
        assert "ERROR" in output, output
    lab.wait_ready()
    after = backups.take(lab, "diff")
    assert after.returncode == 0, after.stdout + after.stderr
    report = backups.status(lab)
    assert report is not None and report["ok"], report
