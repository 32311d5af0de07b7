"""What an operator does to a running cluster, done as the runbooks say: inside a node.

Planned switchover with patronictl and small lookups an operator makes
before acting; fault scenarios and tests call these rather than their own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgha import patroni

from .observe import is_streaming, leader, sync_standby, wait_leader
from .wait import scaled

if TYPE_CHECKING:
    from .cluster import Lab

SWITCHOVER_TIMEOUT = 60.0


def switchover(lab: Lab, to: str | None = None, timeout: float = SWITCHOVER_TIMEOUT) -> str:
    """Planned switchover with patronictl, run inside a node as an operator would.

    Without ``to`` the synchronous standby is chosen: in synchronous mode it is
    the only candidate Patroni accepts without risking acknowledged writes.
    Returns the new leader once it runs.
    """
    old = leader(lab)
    if old is None:
        raise RuntimeError("no running leader to switch over from")
    candidate = to or sync_standby(lab)
    if candidate is None and not lab.spec.patroni.synchronous_mode:
        # Asynchronous replication: any streaming replica is a candidate.
        candidate = next((n.name for n in lab.spec.postgres_nodes if is_streaming(lab, n.name)), None)
    if candidate is None:
        raise RuntimeError("no synchronous standby to switch over to; name one with --to")
    if candidate == old:
        return old
    result = lab.exec(
        candidate,
        ["patronictl", "-c", patroni.CONFIG_PATH, "switchover", "--force", "--candidate", candidate],
        capture_output=True,
        text=True,
        timeout=scaled(timeout),
    )
    if result.returncode != 0:
        raise RuntimeError(f"patronictl switchover failed: {result.stdout}{result.stderr}")
    new = wait_leader(lab, not_=old, timeout=timeout)
    if new != candidate:
        raise RuntimeError(f"switchover to {candidate} ended with leader {new}: {result.stdout}")
    return new


def postmaster_pid(lab: Lab, node: str) -> int:
    """The postmaster's PID inside the machine (postmaster.pid's first line)."""
    path = f"{lab.spec.postgres.data_dir}/postmaster.pid"
    result = lab.exec(node, ["cat", path], capture_output=True, text=True, check=True)
    return int(result.stdout.splitlines()[0])
