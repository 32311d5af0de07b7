#!/usr/bin/python3
"""Managed by pgha. The backups' health as one JSON object; exit 1 when unhealthy.

Unhealthy: pgBackRest reports a problem with the stanza or with any
repository, a repository has no backup, or its newest one is older than
``max_age_hours``. Each repository is judged on its own: with an off-site
``repo2`` beside the local one, the newest backup overall can be fresh while
one repository has not received any for days, so the report (and the
metrics read from it) carries the stalest repository's newest backup.
Alert on the exit code (or on the failed pgha-backup-check.service).
Settings (``stanza``, ``max_age_hours``, ``repos``) in ``SETTINGS_PATH``.
Installed as one file on the VM, standard library only (see
``pgha/vmprograms.py``).
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


def _repo_key(entry: dict[str, Any]) -> int:
    """The repository an info entry (backup, archive) belongs to; 1 when pgBackRest names none."""
    return int((entry.get("database") or {}).get("repo-key", 1))


def _repository(
    key: int, info: dict[str, Any], max_age_hours: float, now: float
) -> tuple[dict[str, Any], list[str]]:
    """One repository's newest backup, WAL and status, and its problems (unprefixed)."""
    problems: list[str] = []
    statuses = {int(r.get("key", 0)): r.get("status") or {} for r in info.get("repo", [])}
    status = statuses.get(key, {"code": 0, "message": "ok"} if not statuses else None)
    found: dict[str, Any] = {"backups": 0, "lastBackup": None, "lastFull": None, "archiveMax": None}
    if status is None:
        problems.append("not in pgbackrest info")
    else:
        found["status"] = status.get("message")
        if status.get("code", 0) != 0:
            problems.append(f"status: {status.get('message')}")
    backups = [b for b in info.get("backup", []) if _repo_key(b) == key]
    found["backups"] = len(backups)
    if backups:
        last = max(backups, key=lambda b: b["timestamp"]["stop"])
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
    archives = [a for a in info.get("archive", []) if _repo_key(a) == key]
    found["archiveMax"] = archives[-1].get("max") if archives else None
    return found, problems


def report(
    stanza: str,
    max_age_hours: float,
    answer: subprocess.CompletedProcess[str],
    now: float,
    repos: list[int] | None = None,
) -> dict[str, Any]:
    """The health report of ``answer`` (pgbackrest info) at time ``now``, for repositories ``repos``.

    With one repository the problems read as before; with several, each
    problem names its repository (``repo2: no backup yet``), and the top-level
    ``lastBackup`` is the stalest repository's newest backup.
    """
    keys = repos or [1]
    problems: list[str] = []
    found: dict[str, Any] = {
        "stanza": stanza,
        "backups": 0,
        "lastBackup": None,
        "lastFull": None,
        "archiveMax": None,
        "repos": {},
    }
    if answer.returncode != 0:
        problems.append(f"pgbackrest info failed: {answer.stderr.strip() or answer.stdout.strip()}")
    else:
        info = (json.loads(answer.stdout) or [{}])[0]
        status = info.get("status", {})
        found["status"] = status.get("message")
        per_repo = {key: _repository(key, info, max_age_hours, now) for key in keys}
        if status.get("code", 0) != 0 and not any(p for _, p in per_repo.values()):
            problems.append(f"stanza: {status.get('message')}")
        for key, (repo, repo_problems) in per_repo.items():
            found["repos"][f"repo{key}"] = {**repo, "ok": not repo_problems, "problems": repo_problems}
            prefix = f"repo{key}: " if len(keys) > 1 else ""
            problems += [prefix + p for p in repo_problems]
        found["backups"] = sum(repo["backups"] for repo, _ in per_repo.values())
        # The stalest repository speaks for all: a fresh repo1 must not hide a stale repo2.
        newest = [repo["lastBackup"] for repo, _ in per_repo.values()]
        if newest and all(newest):
            found["lastBackup"] = min(newest, key=lambda b: b["stop"])
        first = per_repo[keys[0]][0]
        found["lastFull"] = first["lastFull"]
        found["archiveMax"] = first["archiveMax"]
    found["ok"] = not problems
    found["problems"] = problems
    return found


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    with open(args[0] if args else SETTINGS_PATH) as handle:
        settings = json.load(handle)
    stanza = settings["stanza"]
    answer = pgbackrest_info(stanza)
    found = report(stanza, settings["max_age_hours"], answer, time.time(), settings.get("repos"))
    print(json.dumps(found))
    return 0 if found["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
