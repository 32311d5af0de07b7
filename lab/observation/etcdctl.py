"""etcdctl against the lab's etcd, run inside a member with that member's TLS identity.

The flags come from ``pgha.etcd.etcdctl_flags``, the same ones the steps use
on a VM, so the lab asks etcd exactly as an operator on the VM would.
"""

from __future__ import annotations

import json
import subprocess
from typing import TYPE_CHECKING, Any

from pgha import etcd

from ..wait import wait_until

if TYPE_CHECKING:
    from ..machines import LabAccess

ELECTION_TIMEOUT = 30.0  # s etcd may need to elect a leader right after a fault or a heal


def etcdctl(
    lab: LabAccess, via: str, args: list[str], endpoints: list[str] | None = None, retry_for: float = 0.0
) -> Any:
    """etcdctl ARGS with JSON output, run inside the etcd member ``via``; the parsed answer.

    ``retry_for`` seconds (scaled by the timeout factor) of retries suit read-only
    queries: right after a fault or a heal, etcd may be electing a leader and
    answers "leader changed". RuntimeError with etcdctl's stderr once they run out.
    """
    urls = endpoints or [etcd.client_url(lab.spec, m) for m in etcd.members(lab.spec)]
    flags = etcd.etcdctl_flags(lab.spec, lab.spec.node(via))
    identity = [f for f in flags if not f.startswith("--endpoints=")]
    command = ["etcdctl", *identity, f"--endpoints={','.join(urls)}", "--command-timeout=5s"]
    command += [*args, "-w", "json"]
    failed: list[str] = []

    def attempt() -> subprocess.CompletedProcess | None:
        result = lab.exec(via, command, capture_output=True, text=True, timeout=30)
        failed[:] = [result.stderr.strip()]
        return result if result.returncode == 0 else None

    answered = wait_until(attempt, retry_for, interval=1.0)
    if answered is None:
        raise RuntimeError(f"etcdctl {' '.join(args)}: {failed[0]}")
    return json.loads(answered.stdout) if answered.stdout.strip().startswith(("[", "{")) else None


def member_list(lab: LabAccess, via: str, retry_for: float = ELECTION_TIMEOUT) -> list[dict[str, Any]]:
    """``etcdctl member list``: each member's ID, name and URLs."""
    return etcdctl(lab, via, ["member", "list"], retry_for=retry_for)["members"]


def leader(lab: LabAccess, via: str | None = None) -> str | None:
    """The etcd member that leads raft, by name; None if raft has none after ELECTION_TIMEOUT."""
    via = via or etcd.members(lab.spec)[0].name
    names = {m["ID"]: m["name"] for m in member_list(lab, via)}

    def leader_name() -> str | None:
        # Mid-election a member reports no leader (the JSON then has no "leader"):
        # give raft the few seconds it needs, as a client would.
        for status in etcdctl(lab, via, ["endpoint", "status"], retry_for=ELECTION_TIMEOUT):
            leader_id = status["Status"].get("leader")
            if leader_id in names:
                return names[leader_id]
        return None

    return wait_until(leader_name, ELECTION_TIMEOUT, interval=1.0)


def move_leader(lab: LabAccess, to: str) -> bool:
    """Make ``to`` the etcd raft leader (False if it is no etcd member).

    A primary that also leads etcd is the worst case for a freeze: etcd's
    lessor on the frozen leader wakes up believing every lease expired.
    """
    if to not in {m.name for m in etcd.members(lab.spec)}:
        return False
    ids = {m["name"]: m["ID"] for m in member_list(lab, to)}
    current = leader(lab, via=to)
    if current == to:
        return True
    if current is None:
        raise RuntimeError("etcd has no leader")
    leader_url = etcd.client_url(lab.spec, lab.spec.node(current))
    etcdctl(lab, to, ["move-leader", f"{ids[to]:x}"], endpoints=[leader_url])
    wait_until(
        lambda: leader(lab, via=to) == to,
        10.0,
        interval=0.2,
        error=f"etcd leadership did not move to {to}",
    )
    return True
