"""Faults against the live lab, judged by a client's ledger: no acknowledged write lost,
never two primaries taking writes, and a healthy cluster afterwards.

Each scenario (lab/faults.py) already waits for one leader, every replica
streaming and one VIP holder before it returns; these tests check what the
client saw.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from lab import faults
from lab.cluster import Lab

from .limits import limit

pytestmark = pytest.mark.lab


def _report(result: dict[str, Any]) -> str:
    """The result (and Patroni's logs, when there are any) as the failure message."""
    logs = result.get("patroni_logs", {})
    summary = {k: v for k, v in result.items() if k != "patroni_logs"}
    text = json.dumps(summary, indent=1)
    for node, log in logs.items():
        text += f"\n--- patroni on {node} ---\n{log}"
    return text


def _check(lab: Lab, result: dict[str, Any], failover: bool) -> None:
    print(json.dumps({k: v for k, v in result.items() if k != "patroni_logs"}))
    message = _report(result)
    assert result["acked"] > 0, message
    assert result["lost"] == 0, message
    assert not result["split_brain"], message
    assert all(w["seconds"] is not None for w in result["windows"]), message  # writes came back
    allowed = limit(result["fault"])
    if allowed is not None:
        gap = result["max_gap_s"]
        assert gap <= allowed, f"{gap} s without an acknowledged write > {allowed} s\n{message}"
    probe = result.get("direct_probe")
    if probe is not None:  # split brain asked of every node itself
        assert probe["answered"] > 0, message
        assert probe["old_primary_acks_after_promotion"] == 0, message
    if failover:
        assert result["new_primary"] != result["old_primary"], message
        assert result["rejoin_s"] is not None, message  # the old primary streams again
    assert lab.is_healthy(lab.status()), message


def test_primary_hard_power_off(lab: Lab) -> None:
    _check(lab, faults.primary_power_off(lab), failover=True)


def test_postmaster_sigkill(lab: Lab) -> None:
    result = faults.postmaster_sigkill(lab)
    _check(lab, result, failover=False)
    assert result["rejoin_s"] is not None, _report(result)


def test_primary_partition(lab: Lab) -> None:
    _check(lab, faults.primary_partition(lab), failover=True)


def test_primary_drop_with_carrier_up(lab: Lab) -> None:
    """(3d) Packets dropped, link up: only timeouts can tell."""
    result = faults.primary_drop(lab, hold=lab.spec.patroni.ttl + 10)
    _check(lab, result, failover=True)
    assert result["direct_probe"]["other_node_promoted"], _report(result)


def test_primary_freeze(lab: Lab) -> None:
    result = faults.primary_freeze(lab)
    _check(lab, result, failover=True)
    assert result["acks_from_old_primary_after_takeover"] == 0, _report(result)


def test_vip_holder_loses_haproxy(lab: Lab) -> None:
    result = faults.vip_holder_loses_haproxy(lab)
    _check(lab, result, failover=False)
    assert result["vip_moved_s"] is not None, _report(result)
    assert result["new_vip_holder"] != result["old_vip_holder"], _report(result)


def test_vip_holder_dies(lab: Lab) -> None:
    result = faults.vip_holder_dies(lab)
    _check(lab, result, failover=False)
    assert result["vip_moved_s"] is not None, _report(result)
    assert result["rejoin_s"] is not None, _report(result)


def test_host_crash_with_the_primary(lab: Lab) -> None:
    _check(lab, faults.host_crash(lab), failover=True)


def test_planned_switchover(lab: Lab) -> None:
    _check(lab, faults.planned_switchover(lab), failover=True)


def test_loss_of_the_host_with_two_etcd_members(lab: Lab) -> None:
    """(7) Without a witness the quorum goes with that host: nothing may be elected,
    nothing acknowledged may be lost, and the cluster must heal when it returns."""
    result = faults.quorum_host_crash(lab)
    print(json.dumps({k: v for k, v in result.items() if k != "patroni_logs"}))
    message = _report(result)
    during = result["status_during"]
    assert sum(during["etcd"].values()) < len(during["etcd"]) // 2 + 1, message  # no quorum, visibly
    assert "primary" not in during["own_roles"].values(), message  # the survivor demoted itself
    assert result["acks_without_quorum"] == 0, message
    assert result["lost"] == 0 and not result["split_brain"], message
    assert lab.is_healthy(lab.status()), message
