#!/usr/bin/python3
"""Managed by pgha. The backups' health as one JSON object; exit 1 when unhealthy.

Unhealthy: pgBackRest reports a problem with the stanza, there is no backup,
or the newest one is older than ``max_age_hours``. Alert on the exit code (or
on the failed pgha-backup-check.service). Settings (``stanza``,
``max_age_hours``) in ``SETTINGS_PATH``. Installed as one file on the VM,
standard library only (see ``pgha/vmprograms.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

INSTALL_PATH = "/usr/local/sbin/pgha-backup-status"
SETTINGS_PATH = "/etc/pgha/pgha-backup-status.json"


def pgbackrest_info(stanza: str) -> subprocess.CompletedProcess[str]:
    """``pgbackrest info`` as JSON, run as postgres (the repository's owner)."""
    command = ["pgbackrest", f"--stanza={stanza}", "info", "--output=json"]
    if os.getuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    return subprocess.run(command, capture_output=True, text=True)


def report(
    stanza: str, max_age_hours: float, answer: subprocess.CompletedProcess[str], now: float
) -> dict[str, Any]:
    """The health report of ``answer`` (pgbackrest info) at time ``now``."""
    problems: list[str] = []
    found: dict[str, Any] = {
        "stanza": stanza,
        "backups": 0,
        "lastBackup": None,
        "lastFull": None,
        "archiveMax": None,
    }
    if answer.returncode != 0:
        problems.append(f"pgbackrest info failed: {answer.stderr.strip() or answer.stdout.strip()}")
    else:
        info = (json.loads(answer.stdout) or [{}])[0]
        status = info.get("status", {})
        found["status"] = status.get("message")
        if status.get("code", 0) != 0:
            problems.append(f"stanza: {status.get('message')}")
        backups = info.get("backup", [])
        found["backups"] = len(backups)
        if backups:
            last = backups[-1]
            age = (now - last["timestamp"]["stop"]) / 3600
            found["lastBackup"] = {
                "label": last["label"],
                "type": last["type"],
                "stop": last["timestamp"]["stop"],
                "ageHours": round(age, 2),
            }
            fulls = [b for b in backups if b["type"] == "full"]
            found["lastFull"] = fulls[-1]["label"] if fulls else None
            if age > max_age_hours:
                problems.append(f"newest backup is {age:.1f} h old (limit {max_age_hours} h)")
        else:
            problems.append("no backup yet")
        archives = info.get("archive", [])
        found["archiveMax"] = archives[-1].get("max") if archives else None
    found["ok"] = not problems
    found["problems"] = problems
    return found


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    with open(args[0] if args else SETTINGS_PATH) as handle:
        settings = json.load(handle)
    stanza = settings["stanza"]
    found = report(stanza, settings["max_age_hours"], pgbackrest_info(stanza), time.time())
    print(json.dumps(found))
    return 0 if found["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
