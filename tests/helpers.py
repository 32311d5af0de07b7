"""Helpers the lab and HA tests share: whether the lab can run, the running labs, judging a result.

Fixtures stay in tests/conftest.py; what they and the tests call lives here,
public, so no test module imports another's private names.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import pytest

from lab.cluster import Lab
from lab.machines import LabBusy
from lab.observation import patroni_logs, wait_ready
from lab.wait import WaitTimeout
from tests.ha.limits import LIMITS_S, limit

LAB_TOOLS = ("systemd-nspawn", "debootstrap", "nsenter", "unshare")


def lab_unavailable() -> str | None:
    """Why the lab cannot run here (not root, a tool missing), or None."""
    if os.geteuid() != 0:
        return "the lab needs root"
    missing = [t for t in LAB_TOOLS if not shutil.which(t)]
    return f"missing {', '.join(missing)} (run ./setup.sh)" if missing else None


class LabPool:
    """One running lab per stack for the whole run, each down after the last test that uses it.

    A lab is taken (its lock), cleared of a crashed run's leftovers and brought
    up on first use. Another live process holding the lock fails the test:
    a run never tears down a lab someone else is using.
    """

    def __init__(self) -> None:
        self.labs: dict[str, Lab] = {}

    def get(self, stack: str) -> Lab:
        if stack in self.labs:
            return self.labs[stack]
        reason = lab_unavailable()
        if reason:
            pytest.skip(reason)
        cluster = Lab(stack)
        try:
            cluster.lock.acquire()
        except LabBusy as busy:
            pytest.fail(str(busy), pytrace=False)
        self.labs[stack] = cluster  # from here on, torn down even if up() fails
        cluster.down(keep_lock=True)  # leftovers of a crashed run (the lock is ours now)
        cluster.up()
        return cluster

    def release(self, stack: str) -> None:
        """Tear a stack's lab down (and drop its lock)."""
        cluster = self.labs.pop(stack, None)
        if cluster is not None:
            cluster.down()

    def close(self) -> None:
        for stack in list(self.labs):
            self.release(stack)


def report(result: dict[str, Any]) -> str:
    """A scenario's result (and Patroni's logs, when there are any) as a failure message."""
    logs = result.get("patroni_logs", {})
    summary = {k: v for k, v in result.items() if k != "patroni_logs"}
    text = json.dumps(summary, indent=1)
    for node, log in logs.items():
        text += f"\n--- patroni on {node} ---\n{log}"
    return text


def print_result(result: dict[str, Any]) -> None:
    """One JSON line per result on stdout (``pytest -s`` shows them): the measurements."""
    print(json.dumps({k: v for k, v in result.items() if k != "patroni_logs"}))


def problems(result: dict[str, Any], failover: bool) -> list[str]:
    """What a scenario's result fails of what every scenario must show a client: writes
    acknowledged and none lost, never two primaries, writes back within the fault's limit;
    with ``failover`` a new primary and the old one streaming again. Empty when it passes."""
    found: list[str] = []
    if result["acked"] <= 0:
        found.append("no write acknowledged")
    if result["lost"]:
        found.append(f"{result['lost']} acknowledged writes lost")
    if result["split_brain"]:
        found.append("split brain seen by the writer")
    if not all(w["seconds"] is not None for w in result["windows"]):
        found.append("writes did not come back")
    allowed = limit(result["fault"])  # tests/ha/limits.py: one table, scaled by the timeout factor
    if allowed is not None and result["max_gap_s"] > allowed:
        found.append(f"{result['max_gap_s']} s without an acknowledged write > {allowed} s")
    if "etcd_healthy_after_s" in result:  # a partition, drop or freeze undone (lab/faults/primary.py)
        whole, whole_limit = result["etcd_healthy_after_s"], limit("etcd_whole_again")
        if whole is None or (whole_limit is not None and whole > whole_limit):
            found.append(f"etcd not whole again {whole_limit} s after the fault ended: {whole}")
    probe = result.get("direct_probe")
    if probe is not None:  # split brain asked of every node itself (lab/observation/probe.py)
        if probe["answered"] <= 0:
            found.append("the direct probe got no answer")
        # Some insert was acknowledged somewhere (the primary before the fault, the new one
        # after): an insert that fails everywhere could never show a split brain.
        if sum(probe["acked_by_node"].values()) <= 0:
            found.append("the direct probe saw no acknowledged insert anywhere")
        if probe["old_primary_acks_after_promotion"]:
            found.append("the old primary acknowledged a probe after another node's promotion")
    if failover:
        if result["new_primary"] == result["old_primary"]:
            found.append(f"no failover: {result['old_primary']} is still the primary")
        if result["rejoin_s"] is None:
            found.append("the old primary does not stream again")
    return found


def check_result(lab: Lab, result: dict[str, Any], failover: bool) -> None:
    """Fail with every problem of ``problems``, the result, and Patroni's and etcd's journals
    from just before the fault (the evidence a CI run leaves); then require a healthy lab."""
    print_result(result)
    found = problems(result, failover)
    if found:
        if "patroni_logs" not in result and result.get("fault_at_epoch") is not None:
            result = {**result, "patroni_logs": patroni_logs(lab, since=result["fault_at_epoch"] - 5)}
        pytest.fail("; ".join(found) + "\n" + report(result), pytrace=False)
    try:  # wait_ready scales its timeout: the table's nominal figure
        wait_ready(lab, LIMITS_S["healthy_again"])
    except WaitTimeout as unhealthy:
        pytest.fail(f"after the fault's end: {unhealthy}\n{report(result)}", pytrace=False)
