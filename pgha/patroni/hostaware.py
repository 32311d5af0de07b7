#!/usr/bin/python3
"""pgha-hostaware: Patroni's ``nosync`` tag on the standbys that share the primary's Proxmox host.

Runs on every database VM (as postgres, next to Patroni). A commit must be
confirmed by a standby on *another* host than the primary: then a crash of the
primary's host leaves a standby holding every acknowledged commit, which
Patroni may promote, while a fault of a standby on the primary's own host
costs no write at all (it never confirms commits). Patroni has no notion of
hosts, so this loop gives it one: whenever the leader is on this VM's host
(and is not this VM) it writes ``tags: {nosync: true}`` into a file of
Patroni's configuration directory and reloads Patroni; otherwise it removes
the file. Patroni merges the directory's files in name order, so the file only
ever adds the tag: a ``nosync`` set in config.yml (a VM leaving) still holds.

With no leader known (mid-failover, DCS unreachable) the tag stays as it is.

On the leader it also keeps etcd's raft leader on this VM (``etcdctl
move-leader``, when this VM is an etcd member). Dropping a silent synchronous
standby starts with a write to the DCS (Patroni's /sync key, before
synchronous_standby_names), so if that standby also led etcd, commits would
wait for an etcd election too (measured: 3.5 s more). A primary's own fault
waits for its leader key's ttl anyway, during which etcd elects a new leader.

Installed as one file at ``INSTALL_PATH`` (pgha/vmprograms.py's convention).
Settings come from the JSON file at ``SETTINGS_PATH`` (the patroni step installs it):
``name``, ``hosts`` (member name -> Proxmox host), ``url`` (this node's REST
API), ``cafile``, ``tagFile``, ``interval`` (seconds), and ``etcd`` (None on a
VM that is no etcd member): ``endpoints``, ``self`` (this member's client
URL), ``cert`` (a PEM with certificate and key), ``every`` (seconds between checks).
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any

INSTALL_PATH = "/usr/local/lib/pgha/pgha-hostaware"
SETTINGS_PATH = "/etc/pgha/pgha-hostaware.json"
# Raft entries this member may be behind the leader and still be handed its leadership
# (a second's worth of Patroni's writes on a busy cluster; a member back from a fault is
# typically thousands behind until it has caught up).
MAX_RAFT_LAG = 50
TAG_DOCUMENT = "# Managed by pgha-hostaware: this VM shares the primary's host.\ntags:\n  nosync: true\n"


def wanted_nosync(me: str, leader: str | None, hosts: dict[str, str]) -> bool | None:
    """Whether this VM must not confirm commits; None when it cannot be told (no leader known)."""
    if leader is None or leader not in hosts or me not in hosts:
        return None
    return leader != me and hosts[leader] == hosts[me]


def leader_of(cluster: dict[str, Any]) -> str | None:
    """The leader in Patroni's ``GET /cluster`` answer."""
    for member in cluster.get("members", []):
        if member.get("role") in ("leader", "standby_leader"):
            return str(member.get("name"))
    return None


def read_cluster(url: str, context: ssl.SSLContext, timeout: float = 2.0) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url + "/cluster", timeout=timeout, context=context) as answer:
            document = json.load(answer)
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def set_tag(path: str, nosync: bool) -> bool:
    """Write or remove the tag file; True when something changed."""
    if not nosync:
        try:
            os.unlink(path)
        except FileNotFoundError:
            return False
        return True
    try:
        with open(path) as current:
            if current.read() == TAG_DOCUMENT:
                return False
    except FileNotFoundError:
        pass
    directory = os.path.dirname(path)
    fd, temporary = tempfile.mkstemp(prefix=".hostaware-", dir=directory)
    with os.fdopen(fd, "w") as handle:
        handle.write(TAG_DOCUMENT)
    os.chmod(temporary, 0o640)
    os.replace(temporary, path)
    return True


def reload_patroni() -> None:
    """SIGHUP to Patroni (same user): it re-reads its configuration directory, tags included."""
    answer = subprocess.run(
        ["systemctl", "show", "--property=MainPID", "--value", "patroni"],
        capture_output=True,
        text=True,
        check=False,
    )
    pid = int(answer.stdout.strip() or 0)
    if pid > 0:
        os.kill(pid, signal.SIGHUP)


def _etcdctl(etcd: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        "etcdctl",
        f"--endpoints={','.join(etcd['endpoints'])}",
        f"--cacert={etcd['cafile']}",
        f"--cert={etcd['cert']}",
        f"--key={etcd['cert']}",
        "--command-timeout=3s",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)


def etcd_leadership(statuses: list[dict[str, Any]], own_url: str) -> tuple[int | None, int | None]:
    """(this member's ID, the raft leader's ID) from ``etcdctl endpoint status -w json``."""
    own = leader = None
    for status in statuses:
        header = status.get("Status", {}).get("header", {})
        if status.get("Endpoint") == own_url:
            own = header.get("member_id")
        leader = status.get("Status", {}).get("leader") or leader
    return own, leader


def caught_up(statuses: list[dict[str, Any]], own_url: str) -> bool:
    """Whether this member is in the raft leader's term and has applied all but
    ``MAX_RAFT_LAG`` of its entries (both as ``etcdctl endpoint status`` saw them).

    While etcd hands its leadership over, the leader drops every proposal, for up
    to an election timeout if the new one must first catch up. A Patroni that still
    believes itself primary (just thawed, just back from a partition) would ask
    for exactly that: the move waits until this member is current.
    """
    members = {s.get("Status", {}).get("header", {}).get("member_id"): s.get("Status", {}) for s in statuses}
    own = next((s.get("Status", {}) for s in statuses if s.get("Endpoint") == own_url), None)
    leader = members.get(own.get("leader")) if own else None
    if own is None or leader is None:
        return False
    same_term = own.get("raftTerm", 0) == leader.get("raftTerm", 0)
    applied = own.get("raftAppliedIndex", own.get("raftIndex", 0))
    return same_term and leader.get("raftIndex", 0) - applied <= MAX_RAFT_LAG


def keep_etcd_leader_here(etcd: dict[str, Any]) -> None:
    """Move etcd's raft leadership to this member if another member holds it and this one is current."""
    try:
        answer = _etcdctl(etcd, "endpoint", "status", "-w", "json")
        statuses = json.loads(answer.stdout or "[]")
        own, leader = etcd_leadership(statuses, etcd["self"])
        if own is None or leader is None or own == leader:
            return
        if not caught_up(statuses, etcd["self"]):
            log(f"etcd leader {leader:x} stays: this member {own:x} is not caught up")
            return
        moved = _etcdctl(etcd, "move-leader", f"{own:x}")
        said = moved.stdout.strip() or moved.stderr.strip()
        log(f"etcd leader {leader:x} -> {own:x} (here, with the primary): {said}")
    except (OSError, ValueError, subprocess.SubprocessError) as error:
        log(f"etcd leadership not checked: {error}")


def log(message: str) -> None:
    print(message, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    with open(args[0] if args else SETTINGS_PATH) as handle:
        settings = json.load(handle)
    me, hosts = settings["name"], settings["hosts"]
    context = ssl.create_default_context(cafile=settings["cafile"])
    tag_file = settings["tagFile"]
    reloaded_for: bool | None = None
    etcd = settings.get("etcd")
    etcd_checked = 0.0
    while True:
        cluster = read_cluster(settings["url"], context)
        leader = leader_of(cluster) if cluster is not None else None
        wanted = wanted_nosync(me, leader, hosts)
        if wanted is not None and (set_tag(tag_file, wanted) or reloaded_for != wanted):
            # Reload also once after a start: Patroni may have started before the file changed.
            reload_patroni()
            if reloaded_for is not None or wanted:
                log(f"leader {leader} on {hosts[leader]}: nosync {'on' if wanted else 'off'}")
            reloaded_for = wanted
        if etcd and leader == me and time.monotonic() - etcd_checked > etcd["every"]:
            keep_etcd_leader_here(etcd)
            etcd_checked = time.monotonic()
        if leader != me:
            etcd_checked = 0.0  # check at once when this VM becomes the leader
        time.sleep(settings["interval"])


if __name__ == "__main__":
    sys.exit(main())
