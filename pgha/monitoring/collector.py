#!/usr/bin/python3
"""pgha's own metrics, for node_exporter's textfile collector.

Runs on every VM from a systemd timer, as root, with the standard library
only (pgha/vmprograms.py's convention); reads what to look at from
``SETTINGS_PATH``, which the monitoring step installs, and rewrites one
``.prom`` file atomically. What it
reports is what no exporter does: the certificates' expiry, whether this VM
holds the VIP, the synchronous standby count the stack asks for, WAL
archiving as PostgreSQL sees it (pg_stat_archiver, on the primary), and the
backups' health from ``pgha-backup-status``. Every value is a number; a
probe that fails reports ``pgha_probe_ok{probe=...} 0`` instead of crashing
the rest.
"""

from __future__ import annotations

import calendar
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

INSTALL_PATH = "/usr/local/lib/pgha/pgha-metrics"
SETTINGS_PATH = "/etc/pgha/pgha-metrics.json"

Sample = tuple[str, dict[str, str], float]

HELP = {
    "pgha_collector_last_run_timestamp_seconds": "When this collector last wrote its file.",
    "pgha_probe_ok": "1 when the probe named in the label answered.",
    "pgha_tls_cert_not_after_timestamp_seconds": "End of validity of each certificate pgha installed.",
    "pgha_vip_held": "1 when this VM holds the cluster's virtual IP.",
    "pgha_sync_standbys_configured": "Synchronous standbys the stack asks Patroni for.",
    "pgha_postgres_in_recovery": "1 on a standby, 0 on the primary.",
    "pgha_archiver_archived_count": "WAL files archived since the statistics reset (pg_stat_archiver).",
    "pgha_archiver_failed_count": "Failed WAL archiving attempts since the statistics reset.",
    "pgha_archiver_last_archived_timestamp_seconds": "Last successful WAL archiving (0: never).",
    "pgha_archiver_last_failed_timestamp_seconds": "Last failed WAL archiving (0: never).",
    "pgha_backup_ok": "1 when pgha-backup-status finds the backups healthy.",
    "pgha_backup_count": "Backups in the repository.",
    "pgha_backup_last_completion_timestamp_seconds": (
        "When the stalest repository's newest backup finished (0: none)."
    ),
    "pgha_backup_max_age_seconds": "The age past which the newest backup is too old (backup.maxAgeHours).",
}


def _run(argv: list[str], timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def certificates(directory: str) -> list[Sample]:
    samples: list[Sample] = []
    for path in sorted(Path(directory).glob("*")):
        if path.suffix not in (".crt", ".pem"):
            continue
        answer = _run(["openssl", "x509", "-noout", "-enddate", "-in", str(path)])
        if answer.returncode != 0 or "=" not in answer.stdout:
            samples.append(("pgha_probe_ok", {"probe": f"certificate {path}"}, 0))
            continue
        stamp = answer.stdout.strip().split("=", 1)[1]
        not_after = calendar.timegm(time.strptime(stamp, "%b %d %H:%M:%S %Y %Z"))
        samples.append(("pgha_tls_cert_not_after_timestamp_seconds", {"path": str(path)}, not_after))
    return samples


def vip(address: str) -> list[Sample]:
    answer = _run(["ip", "-o", "-4", "addr", "show"])
    if answer.returncode != 0:
        return [("pgha_probe_ok", {"probe": "vip"}, 0)]
    held = any(f" {address}/" in line for line in answer.stdout.splitlines())
    return [("pgha_vip_held", {"vip": address}, 1 if held else 0)]


ARCHIVER_QUERY = (
    "SELECT pg_is_in_recovery()::int, archived_count, failed_count, "
    "coalesce(extract(epoch FROM last_archived_time), 0), "
    "coalesce(extract(epoch FROM last_failed_time), 0) FROM pg_stat_archiver"
)


def archiver(socket_dir: str, port: int) -> list[Sample]:
    argv = ["runuser", "-u", "postgres", "--", "psql", "-XAtq", "-F", " ", "-h", socket_dir]
    answer = _run([*argv, "-p", str(port), "-d", "postgres", "-c", ARCHIVER_QUERY])
    fields = answer.stdout.split()
    if answer.returncode != 0 or len(fields) != 5:
        return [("pgha_probe_ok", {"probe": "postgres"}, 0)]
    recovery, archived, failed, last_archived, last_failed = (float(f) for f in fields)
    samples: list[Sample] = [("pgha_postgres_in_recovery", {}, recovery)]
    if not recovery:  # a standby archives nothing: only the primary's counters mean something
        samples += [
            ("pgha_archiver_archived_count", {}, archived),
            ("pgha_archiver_failed_count", {}, failed),
            ("pgha_archiver_last_archived_timestamp_seconds", {}, last_archived),
            ("pgha_archiver_last_failed_timestamp_seconds", {}, last_failed),
        ]
    return samples


def backups(status_path: str, max_age_s: float) -> list[Sample]:
    answer = _run([status_path], timeout=60)
    try:
        report = json.loads(answer.stdout)
    except ValueError:
        return [("pgha_probe_ok", {"probe": "backup"}, 0)]
    last = report.get("lastBackup") or {}
    return [
        ("pgha_backup_max_age_seconds", {}, max_age_s),
        ("pgha_backup_ok", {}, 1 if report.get("ok") else 0),
        ("pgha_backup_count", {}, float(report.get("backups") or 0)),
        ("pgha_backup_last_completion_timestamp_seconds", {}, float(last.get("stop") or 0)),
    ]


def collect(settings: dict[str, Any]) -> list[Sample]:
    samples = certificates(settings["tlsDir"])
    if settings.get("vip"):
        samples += vip(settings["vip"])
    if settings.get("syncStandbysConfigured") is not None:
        samples.append(("pgha_sync_standbys_configured", {}, float(settings["syncStandbysConfigured"])))
    if settings.get("postgresPort"):
        samples += archiver(settings["socketDir"], int(settings["postgresPort"]))
    if settings.get("backupStatus"):
        samples += backups(settings["backupStatus"], float(settings["backupMaxAgeSeconds"]))
    samples.append(("pgha_collector_last_run_timestamp_seconds", {}, time.time()))
    return samples


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(samples: list[Sample]) -> str:
    """The Prometheus text format, one HELP/TYPE header per metric."""
    lines: list[str] = []
    seen: set[str] = set()
    for name, labels, value in sorted(samples, key=lambda s: s[0]):
        if name not in seen:
            seen.add(name)
            lines += [f"# HELP {name} {HELP[name]}", f"# TYPE {name} gauge"]
        text = ",".join(f'{k}="{_label_value(v)}"' for k, v in sorted(labels.items()))
        lines.append(f"{name}{{{text}}} {value:.17g}" if text else f"{name} {value:.17g}")
    return "\n".join(lines) + "\n"


def write_atomically(path: str, content: str) -> None:
    """node_exporter must never read half a file: write beside it, then rename."""
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".pgha-", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    settings = json.loads(Path(args[0] if args else SETTINGS_PATH).read_text())
    write_atomically(settings["out"], render(collect(settings)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
