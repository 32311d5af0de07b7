"""How long each fault may keep writes from being acknowledged: one table for every HA test.

Measured as ``max_gap_s`` (lab/observation/workload.py): the longest time without any
acknowledged write after the fault, failed attempts or mere waiting alike.
The HA goals of docs/ha-durability.md (writes back within seconds after any single
fault, with no acknowledged write lost) with a margin for a loaded lab; slower
machines scale every limit with PGHA_TIMEOUT_FACTOR.

Every scenario a fault test or ``lab bench failover`` runs has a row: in
``LIMITS_S``, or in ``NO_LIMIT`` with the reason it has none. ``limit`` refuses a
name found in neither, so a new fault cannot go unjudged by being forgotten here
(tests/tooling/test_limits.py finds every scenario name and checks it has a row).
"""

from __future__ import annotations

import fnmatch

from lab.wait import timeout_factor

# Scenario name pattern -> seconds. Primary faults wait for the leader key's ttl (20 s):
# 20.0-21.5 s measured with the leader race agent (docs/measurements/ha-durability.md), so
# 25 s leaves a loaded machine room while a lost second above the floor still shows.
LIMITS_S: dict[str, float] = {
    "primary_power_off": 25,
    "postmaster_sigkill": 10,
    "primary_partition": 25,
    "primary_drop": 25,
    "primary_freeze": 25,
    # The two-host budget (docs/two-hosts.md) for either host's crash with the primary on
    # it, given a witness (first: the table is read in order, and host_crash_* would match
    # it too).
    "host_crash_with_witness": 25,
    "host_crash_*": 25,
    "vip_holder_loses_haproxy": 5,
    "vip_holder_dies": 5,
    # With one hop the VIP holder is the primary: its death is a failover (fault 1).
    "vip_holder_dies_with_primary": 25,
    # Goal 3 s: 1.50-2.38 s over 5 runs since HAProxy marks a refused server down at
    # once (docs/ha-durability.md); the margin is for a loaded machine.
    "planned_switchover": 5,
    "standby_*": 5,
    # A planned reboot of the host with the etcd majority (docs/two-hosts.md): the
    # switchover off the host plus the VIP's move, the whole start/crash/boot/finish cycle
    # (its unavailability, and its longest gap). Goal 5 s; it is a switchover's cost, see
    # planned_switchover.
    "host_maintenance_*": 5,
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
    # Not a gap in writes: from the leader key's expiry to the new leader's lock
    # (lab/observation/timeline.py). Patroni's replica loop notices within loop_wait (1 s) of
    # etcd's expiry tick (0.5 s); without pgha's leader race agent it then waited 2 s more for
    # the dead former leader's REST API (2.35-3.0 s measured), with it the question fails at
    # once (0.02-0.97 s from expiry to lock over 46 runs). The agent's work is judged on the
    # question's outcome (refused, not timed out: ``race_request``); this bound is the loop's,
    # two loops and the tick, since one CI run took 1.94 s (no journal kept then to say why).
    "leader_race_after_expiry": 2.5,
    # A stack change replayed (lab/scenarios/change.py, ROLLING_MAX_GAP_S): the program's promise
    # for a rolling change, none lost; a plan the replay calls a violation shows its outage instead.
    "change": 5,
}


# Scenario name pattern -> why it has no time limit (the runs are judged on the rest:
# writes acknowledged, none lost, never two primaries).
NO_LIMIT: dict[str, str] = {
    "quorum_host_crash_*": "the host with the etcd majority is lost: no quorum, so no leader and no "
    "write until it is back; how long that is is the run's own hold, not the cluster's speed",
    "scale_out_*": "a planned change that waits on purpose (members join one at a time, commits "
    "wait for a new sync standby); its duration is measured (operation_s, max_ack_gap_s), not limited",
    "scale_in_*": "a planned change, as scale_out_*: measured, not limited",
    "replace_*": "a dead VM rebuilt: the writes never stopped for it; the rebuild is measured, not limited",
    "async_loss_control": "the negative control: it must lose acknowledged writes (asynchronous "
    "replication), which is what it is judged on",
}


class NoRow(KeyError):
    """A scenario with no row in LIMITS_S nor in NO_LIMIT: say what it may take, or why nothing."""


def row(fault: str) -> str:
    """The pattern of the first row (LIMITS_S, then NO_LIMIT) matching ``fault``; NoRow if none."""
    for pattern in (*LIMITS_S, *NO_LIMIT):
        if fnmatch.fnmatchcase(fault, pattern):
            return pattern
    raise NoRow(f"{fault!r} has no row in tests/ha/limits.py: add it to LIMITS_S, or to NO_LIMIT with why")


def limit(fault: str) -> float | None:
    """The scaled limit for a scenario name; None for a NO_LIMIT row (e.g. quorum loss).
    A name with no row at all is an error (NoRow), not a free pass."""
    pattern = row(fault)
    return LIMITS_S[pattern] * timeout_factor() if pattern in LIMITS_S else None
