"""Disaster recovery in the lab: every database VM lost, the stack rebuilt from its backups.

``disaster_recovery`` is the issue's drill: a client writes, the archive
point is noted (``pgha-backup check``: a WAL switch that reaches the
repository), the client writes on, every machine but the repository VM is
powered off and its disk destroyed, and the stack comes up again with
``pgha:restore`` set, so Patroni's first primary is restored by pgBackRest
and the replicas clone from it. Measured: RPO (acknowledged rows missing, and
how far back the newest surviving one is from the crash) and RTO (from the
start of ``up`` to the first write accepted through the VIP).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from pgha.spec import RestoreSpec

from ..cluster import Lab
from ..observation import Writer, connect, ensure_ledger
from . import backups

STEADY_ACKS = 200
WRITE_ON_S = 10.0  # writes after the archive point: what the archive may not hold yet


def disaster_recovery(lab: Lab, restore: RestoreSpec | None = None) -> dict[str, Any]:
    """Crash and destroy every VM but the repository, then ``up`` with ``restore``; one result dict."""
    if lab.spec.repository_node is None:
        raise RuntimeError("the drill needs a stack whose backup repository is a VM of its own")
    lab.wait_ready(timeout=180)
    ensure_ledger(lab)
    writer = Writer(lab)
    writer.start()
    try:
        if not writer.wait_acks(STEADY_ACKS, timeout=120):
            raise RuntimeError(f"writer not acknowledged: {writer.snapshot()[1][-3:]}")
        archive_point = time.monotonic()
        check = backups.take(lab, "check")
        if check.returncode != 0:
            raise RuntimeError(f"pgha-backup check failed: {check.stderr[-2000:]}")
        time.sleep(WRITE_ON_S)
        crashed = time.monotonic()
        lost_vms = [n for n in lab.spec.nodes if n.role != "repository"]
        for node in lost_vms:
            lab.machine(node).kill()
    finally:
        writer.stop()
    acks = writer.snapshot()[0]
    for node in lost_vms:
        lab.machine(node).remove()  # the disks are gone too

    original = lab.spec
    lab.spec = dataclasses.replace(original, restore=restore or RestoreSpec())
    probe = Writer(lab, interval=0.2)
    began = time.monotonic()
    timings: dict[str, float] = {}
    try:
        probe.start()  # retries from now on: the first acknowledgement ends the outage
        timings["up_s"] = _timed(lab.up)
        if not probe.wait_acks(1, timeout=120):
            raise RuntimeError(f"no write accepted after the restore: {probe.snapshot()[1][-3:]}")
    finally:
        probe.stop()
        lab.spec = original
    first = probe.snapshot()[0][0]
    present = _present(lab, [a.seq for a in acks])
    missing = [a for a in acks if a.seq not in present]
    surviving = [a for a in acks if a.seq in present]
    return {
        "vms_lost": [n.name for n in lost_vms],
        "acked_before_crash": len(acks),
        "acked_before_archive_point": sum(1 for a in acks if a.at <= archive_point),
        "missing_acked": len(missing),
        "missing_before_archive_point": sum(1 for a in missing if a.at <= archive_point),
        "rpo_s": round(crashed - max(a.at for a in surviving), 2) if surviving else None,
        "oldest_missing_before_crash_s": round(crashed - min(a.at for a in missing), 2) if missing else 0.0,
        "archive_timeout_s": original.backup.archive_timeout_s if original.backup else None,
        "rto_s": round(first.at - began, 1),
        "up_s": round(timings.get("up_s", 0.0), 1),
    }


def _timed(action: Any) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def _present(lab: Lab, seqs: list[int]) -> set[int]:
    """Which of these client_seq values the restored primary holds."""
    if not seqs:
        return set()
    with connect(lab, lab.spec.haproxy.primary_port) as conn:
        rows = conn.execute(
            "select client_seq from ha_ledger where client_seq between %s and %s", (min(seqs), max(seqs))
        ).fetchall()
    return {r[0] for r in rows}
