"""Backups in the lab: take one, read their health, and the restore drill.

The drill is what an operator would do after losing everything: boot a
machine that never belonged to the cluster, give it pgBackRest and a client
certificate the repository accepts (``pgha-restore``), and run the program's
own ``pgha-restore`` there. It crosses the lab's network to the repository
VM, like a restore onto a new Proxmox VM would.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

from pgha import backup, patroni, pki
from pgha.spec import Node

from ..cluster import Lab
from ..machines import StepError, ensure_image
from ..observation import observe


def runner(lab: Lab) -> str:
    """The VM whose pgha-backup does the work: the repository VM, or the primary."""
    repository = lab.spec.repository_node
    if repository is not None:
        return repository.name
    view = observe.cluster_view(lab) or {"members": []}
    leaders = [m["name"] for m in view.get("members", []) if m.get("role") == "leader"]
    if not leaders:
        raise RuntimeError("no leader: with a path or s3 repository the primary takes the backups")
    return leaders[0]


def take(lab: Lab, kind: str = "full", timeout: float = 600.0) -> subprocess.CompletedProcess:
    """One backup, as its timer would take it (``pgha-backup KIND`` on the runner)."""
    return lab.exec(runner(lab), [backup.BACKUP_PATH, kind], capture_output=True, text=True, timeout=timeout)


def status(lab: Lab) -> dict[str, Any] | None:
    """pgha-backup-status of the runner; None without backups configured."""
    if lab.spec.backup is None:
        return None
    try:
        result = lab.exec(runner(lab), [backup.STATUS_PATH], capture_output=True, text=True, timeout=60)
        return json.loads(result.stdout)
    except (RuntimeError, subprocess.SubprocessError, ValueError) as exc:
        return {"ok": False, "problems": [f"unreachable: {exc}"]}


@dataclass(frozen=True)
class DrillResult:
    machine: str
    target_time: str | None
    output: str
    answer: str | None


def drill_node(lab: Lab) -> Node:
    """The fresh machine: a free address of the private network, no Proxmox host of the cluster."""
    taken = {n.ip for n in lab.spec.nodes} | {lab.spec.vip, lab.bridge_ip()}
    free = [a for a in lab.spec.network.cidr.hosts() if a not in taken]
    ip: IPv4Address = free[len(free) // 2]
    return Node(name=backup.RESTORE_CLIENT, host="drill", ip=ip, role="restore")


def restore_drill(
    lab: Lab, target_time: str | None = None, sql: str | None = None, keep: bool = False
) -> DrillResult:
    """Restore the latest backup (or the state at ``target_time``) on a fresh machine; run ``sql`` there."""
    if lab.spec.backup is None or lab.spec.repository_node is None:
        raise RuntimeError("the restore drill needs pgha:backup with repository host")
    node = drill_node(lab)
    lab.save_host_key(node)  # the drill's machine is no node of the stack: its own key, kept
    machine = lab.machine(node, seeded=True)
    machine.remove()  # leftovers of an earlier drill: it must start fresh
    machine.boot(ensure_image(lab.image_packages(), log=lab.report))
    try:
        runner_ = lab.runner()
        asyncio.run(runner_.wait_for_ssh(lab.target(node)))
        ca = lab.ca()
        client = ca.issue(pki.CertIdentity(backup.RESTORE_CLIENT), 1)
        step = backup.restore_step(lab.spec, node.name, lab.tls(), client, target_time)
        results = asyncio.run(
            runner_.run_phases([(0, [step])], {node.name: lab.target(node)}, report=lab.report)
        )
        output = results[-1].stdout + results[-1].stderr if results else ""
        if not results or not results[-1].ok:
            raise StepError(f"restore failed: {output}")
        answer = None
        if sql is not None:
            # The clients' database: where the lab's writers put their tables.
            database = lab.spec.client_database.name if lab.spec.client_database else "postgres"
            socket = ["-h", patroni.SOCKET_DIR, "-p", str(backup.RESTORE_PORT), "-d", database]
            query = ["psql", *socket, "-XAtc", sql]
            result = lab.exec(
                node,
                ["runuser", "-u", "postgres", "--", *query],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
            answer = result.stdout.strip()
        return DrillResult(node.name, target_time, output, answer)
    finally:
        if not keep:
            machine.remove()
