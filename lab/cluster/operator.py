"""What an operator does to a running cluster, done as the runbooks say: inside a node.

Planned switchover with patronictl and small lookups an operator makes
before acting; fault scenarios and tests call these rather than their own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import yaml

from pgha import patroni

from ..observation import is_streaming, leader, members, sync_standby, sync_standbys, wait_leader
from ..wait import scaled, wait_until

if TYPE_CHECKING:
    from .verbs import Lab

SWITCHOVER_TIMEOUT = 60.0


def switchover(lab: Lab, to: str | None = None, timeout: float = SWITCHOVER_TIMEOUT) -> str:
    """Planned switchover with patronictl, run inside a node as an operator would.

    Without ``to`` the synchronous standby is chosen: in synchronous mode it is
    the only candidate Patroni accepts without risking acknowledged writes.
    A ``to`` that is not synchronous is made so first (``_make_synchronous``).
    Returns the new leader once it runs.
    """
    old = leader(lab)
    if old is None:
        raise RuntimeError("no running leader to switch over from")
    if to == old:
        return old
    if to is not None and lab.spec.patroni.synchronous_mode and to not in sync_standbys(lab):
        return _make_synchronous(lab, to, timeout)
    candidate = to or sync_standby(lab)
    if candidate is None and not lab.spec.patroni.synchronous_mode:
        # Asynchronous replication: any streaming replica is a candidate.
        candidate = next((n.name for n in lab.spec.postgres_nodes if is_streaming(lab, n.name)), None)
    if candidate is None:
        raise RuntimeError("no synchronous standby to switch over to; name one with --to")
    return _patronictl_switchover(lab, old, candidate, timeout)


def _patronictl_switchover(lab: Lab, old: str, candidate: str, timeout: float) -> str:
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


def _make_synchronous(lab: Lab, to: str, timeout: float) -> str:
    """Switch over to a standby that does not confirm commits yet.

    In synchronous mode Patroni hands over only to a synchronous standby
    (412 "candidate name does not match with sync_standby"), and host-aware
    sync keeps one, on another Proxmox host than the primary. So: if ``to``
    shares the primary's host (tagged nosync), first hand over to the
    synchronous standby; then raise synchronous_node_count until ``to`` confirms
    commits too, switch over to it, and put the count back. Commits only ever
    wait for more standbys than usual, never fewer.
    """
    old = leader(lab)
    if old is None:
        raise RuntimeError("no running leader to switch over from")
    if lab.spec.host_aware_sync and lab.spec.node(to).host == lab.spec.node(old).host:
        if switchover(lab, timeout=timeout) == to:
            return to
        old = leader(lab) or old
    wait_until(
        lambda: not _tags(lab, to).get("nosync"),
        timeout,
        error=lambda _: f"{to} stays tagged nosync: {_tags(lab, to)}",
    )
    if _tags(lab, to).get("nofailover"):
        raise RuntimeError(f"{to} is tagged nofailover: Patroni never promotes it")
    usual = _dynamic_config(lab, old).get("synchronous_node_count", 1)
    replicas = len(lab.spec.postgres_nodes) - 1
    _set_sync_count(lab, old, max(usual, replicas))
    try:
        wait_until(
            lambda: to in sync_standbys(lab), timeout, error=f"{to} did not become a synchronous standby"
        )
        return _patronictl_switchover(lab, old, to, timeout)
    finally:
        _set_sync_count(lab, to if leader(lab) == to else old, usual)


def _tags(lab: Lab, name: str) -> dict[str, Any]:
    tags = members(lab).get(name, {}).get("tags")
    return tags if isinstance(tags, dict) else {}


def _dynamic_config(lab: Lab, node: str) -> dict[str, Any]:
    result = lab.exec(
        node,
        ["patronictl", "-c", patroni.CONFIG_PATH, "show-config"],
        capture_output=True,
        text=True,
        check=True,
    )
    config = yaml.safe_load(result.stdout)
    return config if isinstance(config, dict) else {}


def _set_sync_count(lab: Lab, node: str, count: int) -> None:
    lab.exec(
        node,
        [
            "patronictl",
            "-c",
            patroni.CONFIG_PATH,
            "edit-config",
            "--force",
            "--quiet",
            "--set",
            f"synchronous_node_count={count}",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=scaled(30),
    )


def postmaster_pid(lab: Lab, node: str) -> int:
    """The postmaster's PID inside the machine (postmaster.pid's first line)."""
    path = f"{lab.spec.postgres.data_dir}/postmaster.pid"
    result = lab.exec(node, ["cat", path], capture_output=True, text=True, check=True)
    return int(result.stdout.splitlines()[0])
