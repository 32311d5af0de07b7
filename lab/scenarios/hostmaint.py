"""Planned maintenance of a Proxmox host in the lab: the VMs' own tool, and the reboot cycle.

``python -m lab host-maintenance HOST start|finish`` runs
``pgha-host-maintenance`` inside a database machine that is not on HOST, as an
operator runs it with sudo on any VM. ``maintenance_cycle`` is the issue's
scenario: start on a host, crash it (standing in for the reboot) while a
client writes, boot it again, finish, and judge the whole cycle by the client's
ledger (lab/faults/harness.py).
"""

from __future__ import annotations

import subprocess
import time
from typing import Any

from pgha import etcd, host_maintenance

from ..cluster import Lab, switchover
from ..faults import READY_TIMEOUT, scenario
from ..observation import etcdctl, leader, own_state
from ..wait import wait_until

TOOL_TIMEOUT = 1200.0
# While the host is down, writes must go on for at least this long past the
# members' key expiry (Patroni's ttl), so a stall would show.
DOWN_EXTRA_S = 5.0


def run_tool(lab: Lab, host: str, action: str, check: bool = True) -> subprocess.CompletedProcess:
    """The VMs' own command, run on a running database machine off ``host`` (any, for status)."""
    candidates = [n for n in lab.spec.postgres_nodes if n.host != host] + [
        n for n in lab.spec.postgres_nodes if n.host == host
    ]
    via = next((n for n in candidates if lab.machine(n).is_running()), None)
    if via is None:
        raise RuntimeError("no database machine is running")
    argv = [host_maintenance.TOOL_PATH, *([host, action] if action != "status" else ["status"])]
    result = lab.exec(via, argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT)
    if check and result.returncode != 0:
        raise RuntimeError(f"pgha-host-maintenance {host} {action} on {via.name} failed:\n{result.stderr}")
    return result


def etcd_voters(lab: Lab) -> list[str]:
    """The names of etcd's voting members, asked through any running member."""
    for member in etcd_members_running(lab):
        listed = etcdctl.member_list(lab, member, retry_for=30.0)
        return sorted(m.get("name", "") for m in listed if not m.get("isLearner"))
    return []


def etcd_members_running(lab: Lab) -> list[str]:
    return [m.name for m in etcd.members(lab.spec) if lab.machine(m).is_running()]


def maintenance_cycle(lab: Lab, host: str, primary_on_host: bool = True) -> dict[str, Any]:
    """start → crash the host → boot it → finish, under a writer; one result dict.

    With ``primary_on_host`` the primary is put on ``host`` first, so start
    must switch it over (the costly case).
    """
    victims = [n for n in lab.spec.nodes if n.host == host]
    on_host = [n.name for n in victims if n.runs_postgres]
    lab.wait_ready(timeout=READY_TIMEOUT)
    if primary_on_host and on_host and leader(lab) not in on_host:
        switchover(lab, to=on_host[0])
        lab.wait_ready(timeout=READY_TIMEOUT)
    timings: dict[str, float] = {}
    with scenario(lab, f"host_maintenance_{host}") as run:
        machines = [lab.machine(n) for n in victims]
        started = run.inject(lambda: None)
        timings["start_s"] = _timed(lambda: run_tool(lab, host, "start"))
        # Safe twice: a second start changes nothing and succeeds.
        timings["start_again_s"] = _timed(lambda: run_tool(lab, host, "start"))
        run.extra["voters_during"] = etcd_voters(lab)
        run.extra["new_primary_at_start"] = leader(lab)
        crashed = time.monotonic()
        for machine in machines:
            machine.kill()
        time.sleep(lab.spec.patroni.ttl + DOWN_EXTRA_S)
        acks = [a for a in run.writer.snapshot()[0] if a.at > crashed]
        run.extra["acks_while_down"] = len(acks)
        for machine in machines:
            machine.start()
        timings["down_s"] = time.monotonic() - crashed
        booted = time.monotonic()
        _wait_patroni(lab, on_host)
        timings["boot_to_patroni_s"] = time.monotonic() - booted
        timings["finish_s"] = _timed(lambda: run_tool(lab, host, "finish"))
        again = run_tool(lab, host, "finish")
        run.extra["finish_again"] = again.stdout.strip()
        timings["cycle_s"] = time.monotonic() - started
        run.extra["host"] = host
        run.extra["vms"] = [n.name for n in victims]
    result = run.result()
    result["timings"] = {k: round(v, 1) for k, v in timings.items()}
    result["voters_after"] = etcd_voters(lab)
    return result


def _timed(action: Any) -> float:
    began = time.monotonic()
    action()
    return time.monotonic() - began


def _wait_patroni(lab: Lab, names: list[str], timeout: float = 180.0) -> None:
    wait_until(
        lambda: all(own_state(lab, n) for n in names), timeout, error=f"Patroni did not answer on {names}"
    )
