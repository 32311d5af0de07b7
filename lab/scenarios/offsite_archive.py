"""One backup repository lost: WAL still reaches the other, and the lost one catches up on its return.

With ``backup.offsite`` the primary archives to repo1 (the repository VM) and
repo2 (the bucket). ``repository_lost`` kills the repository VM, or cuts the
bucket's server off the network, while a client writes; switches WAL on the
primary; times the segment's arrival in the repository still there; then
brings the lost one back and waits for every segment of the outage to reach
it too (pgBackRest keeps a segment ``.ready`` in pg_wal until both
repositories hold it).
"""

from __future__ import annotations

import re
import time
from typing import Any, Literal

from pgha import backup

from ..cluster import Lab, offsite
from ..machines import offsite as offsite_identity
from ..observation import Writer, ensure_ledger, observe
from ..wait import wait_until
from .backups import status as backup_status
from .restore import _repo2_prefix, _switch_wal

Lost = Literal["repository-vm", "bucket"]
ARRIVAL_TIMEOUT = 120.0  # beyond any bound we state: a stall is measured, not cut short
CATCH_UP_TIMEOUT = 120.0
SEGMENT = re.compile(r"[0-9A-F]{24}")


def _repo1_segments(lab: Lab) -> set[str]:
    """WAL segment names in repo1's archive, read on the repository VM's disk."""
    repository = lab.spec.repository_node
    assert repository is not None and lab.spec.backup is not None
    found = lab.exec(
        repository,
        ["find", f"{lab.spec.backup.path}/archive", "-name", "0*-*"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return _segments(found.stdout.split())


def _repo2_segments(lab: Lab) -> set[str]:
    return _segments(offsite.keys(lab, _repo2_prefix(lab, "archive")))


def _segments(paths: list[str]) -> set[str]:
    """The WAL segment names among archive files (``<segment>-<sha1>.zst``): no history or backup files."""
    names = (p.rsplit("/", 1)[-1].split("-")[0] for p in paths)
    return {n for n in names if SEGMENT.fullmatch(n)}


def _pg_wal_ready(lab: Lab, primary: str) -> int:
    """Segments PostgreSQL still waits to archive: what an archiving stall piles up in pg_wal."""
    assert lab.spec.postgres is not None
    found = lab.exec(
        primary,
        ["find", f"{lab.spec.postgres.data_dir}/pg_wal/archive_status", "-name", "*.ready"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return len(found.stdout.split())


def repository_lost(lab: Lab, lost: Lost) -> dict[str, Any]:
    """Lose one repository under writes; seconds until a new segment is in the other, then the catch-up."""
    spec = lab.spec
    repository = spec.repository_node
    if repository is None or not offsite.served(spec):
        raise RuntimeError("needs a repository VM and an off-site bucket the lab serves")
    lab.wait_ready(timeout=180)
    ensure_ledger(lab)
    machine = lab.machine(repository if lost == "repository-vm" else offsite_identity.server_node(spec))
    # What the surviving repository is read with; the lost one is read after its return.
    surviving = _repo2_segments if lost == "repository-vm" else _repo1_segments
    returned = _repo1_segments if lost == "repository-vm" else _repo2_segments
    writer = Writer(lab, interval=0.05)
    writer.start()
    result: dict[str, Any] = {"lost": lost}
    cut, segment, had = time.monotonic(), "", set()
    try:
        if not writer.wait_acks(20, timeout=60):
            raise RuntimeError(f"writer not acknowledged: {writer.snapshot()[1][-3:]}")
        had = returned(lab)  # the newest segment it holds is where its catch-up starts
        cut = time.monotonic()
        if lost == "repository-vm":
            machine.kill()
        else:
            machine.partition()
        segment = _switch_wal(lab)
        switched = time.monotonic()
        arrived = wait_until(lambda: segment in surviving(lab), ARRIVAL_TIMEOUT, interval=1.0)
        result["segment"] = segment
        result["other_repo_s"] = round(time.monotonic() - switched, 1) if arrived else None
        primary = observe.leader(lab)
        result["ready_in_pg_wal"] = _pg_wal_ready(lab, primary) if primary else None
        acks = writer.snapshot()[0]
        result["acked_during_outage"] = sum(1 for a in acks if a.at > cut)
    finally:
        outage_end = time.monotonic()
        if lost == "repository-vm":
            machine.start()
        else:
            machine.heal()
    try:
        result["outage_s"] = round(outage_end - cut, 1)
        if lost == "repository-vm":
            lab.wait_ready(timeout=180)
        # Every segment the surviving repository got during the outage reaches the returned one.
        newest = max(had, default="")
        expected = {s for s in surviving(lab) if s > newest}
        back = time.monotonic()
        caught_up = wait_until(lambda: expected <= returned(lab), CATCH_UP_TIMEOUT, interval=2.0)
        result["catch_up_s"] = round(time.monotonic() - back, 1) if caught_up else None
        result["missing_in_returned"] = sorted(expected - returned(lab))
    finally:
        writer.stop()
    found = backup_status(lab) or {}
    result["status_ok"] = found.get("ok")
    result["status_problems"] = found.get("problems")
    result["archive_timeout_s"] = spec.backup.archive_timeout_s if spec.backup else None
    result["archive_push_io_timeout_s"] = backup.ARCHIVE_PUSH_IO_TIMEOUT_S
    return result
