"""How long each fault may keep writes from being acknowledged: one table for every HA test.

Measured as ``max_gap_s`` (lab/observation/workload.py): the longest time without any
acknowledged write after the fault, failed attempts or mere waiting alike.
The goals of issue 12 (docs/ha-durability.md) with a margin for a loaded lab;
slower machines scale every limit with PGHA_TIMEOUT_FACTOR.
"""

from __future__ import annotations

import fnmatch

from lab.wait import timeout_factor

# Scenario name pattern -> seconds. Primary faults wait for the leader key's ttl (20 s).
LIMITS_S: dict[str, float] = {
    "primary_power_off": 30,
    "postmaster_sigkill": 10,
    "primary_partition": 30,
    "primary_drop": 30,
    "primary_freeze": 30,
    # Issue 13's budget for either host's crash with the primary on it, given a witness
    # (first: the table is read in order, and host_crash_* would match it too).
    "host_crash_with_witness": 25,
    "host_crash_*": 30,
    "vip_holder_loses_haproxy": 5,
    "vip_holder_dies": 5,
    # With one hop the VIP holder is the primary: its death is a failover (fault 1).
    "vip_holder_dies_with_primary": 30,
    # Goal 3 s: 1.50-2.38 s over 5 runs since HAProxy marks a refused server down at
    # once (docs/ha-durability.md); the margin is for a loaded machine.
    "planned_switchover": 5,
    "standby_*": 5,
    # A planned reboot of the host with the etcd majority (issue 13): the switchover off
    # the host plus the VIP's move, the whole start/crash/boot/finish cycle. Goal 5 s
    # (docs/two-hosts.md); it is a switchover's cost, see planned_switchover.
    "host_maintenance_cycle": 5,
    # Not a gap in writes: how long etcd takes to be whole again (every member /health
    # true) once a partition, a drop or a freeze is undone (etcd_healthy_after_s). Until
    # then a second fault may leave etcd without quorum. Measured 1.1 s after a 30 s
    # drop with net.ipv4.tcp_retries2 = 5, 25 s with Linux's default 15.
    "etcd_whole_again": 5,
    # Not a gap in writes either: once a fault's run is over (the old primary streams
    # again), how long until the lab is healthy: one leader, every replica streaming and
    # synchronous, one VIP holder. A VIP that follows the primary may still be moving
    # (CI saw a single snapshot taken right after a switchover fail on that).
    "healthy_again": 15,
}


def limit(fault: str) -> float | None:
    """The scaled limit for a scenario name; None when the table has none (e.g. quorum loss)."""
    for pattern, seconds in LIMITS_S.items():
        if fnmatch.fnmatchcase(fault, pattern):
            return seconds * timeout_factor()
    return None
