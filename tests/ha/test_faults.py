"""Faults against the live lab, judged by a client's ledger: no acknowledged write lost,
never two primaries taking writes, and a healthy cluster afterwards.

Each scenario (lab/faults/primary.py) already waits for one leader, every replica
streaming and one VIP holder before it returns; these tests check what the
client saw.
"""

from __future__ import annotations

import pytest

from lab import faults
from lab.cluster import Lab
from lab.faults.harness import recording_timeline
from lab.observation import is_healthy, timeline
from tests.ha.limits import limit
from tests.helpers import check_result, print_result, report

pytestmark = pytest.mark.lab


def test_primary_hard_power_off(lab: Lab) -> None:
    with recording_timeline():
        result = faults.primary_power_off(lab)
    check_result(lab, result, failover=True)
    # The new leader did not wait for the dead one: the leader race agent had its question refused
    # (Patroni's own 2 s would show "timed out"), and it locked within its loop of the key's expiry.
    assert result["race_request"] in ("refused", None), report(result)
    race = timeline.leader_race_s(result["timeline"] or {})
    assert race is not None and race <= limit("leader_race_after_expiry"), report(result)


def test_postmaster_sigkill(lab: Lab) -> None:
    result = faults.postmaster_sigkill(lab)
    check_result(lab, result, failover=False)
    assert result["rejoin_s"] is not None, report(result)


def test_primary_partition(lab: Lab) -> None:
    check_result(lab, faults.primary_partition(lab), failover=True)


def test_primary_drop_with_carrier_up(lab: Lab) -> None:
    """(3d) Packets dropped, link up: only timeouts can tell."""
    result = faults.primary_drop(lab, hold=lab.spec.patroni.ttl + 10)
    check_result(lab, result, failover=True)
    assert result["direct_probe"]["other_node_promoted"], report(result)


def test_primary_freeze(lab: Lab) -> None:
    result = faults.primary_freeze(lab)
    check_result(lab, result, failover=True)
    assert result["acks_from_old_primary_after_takeover"] == 0, report(result)


def test_vip_holder_loses_haproxy(lab: Lab) -> None:
    result = faults.vip_holder_loses_haproxy(lab)
    check_result(lab, result, failover=False)
    assert result["vip_moved_s"] is not None, report(result)
    assert result["new_vip_holder"] != result["old_vip_holder"], report(result)


def test_vip_holder_dies(lab: Lab) -> None:
    result = faults.vip_holder_dies(lab)
    # One hop (the dev stack): the holder is the primary, so a failover follows.
    check_result(lab, result, failover=result["fault"] == "vip_holder_dies_with_primary")
    assert result["vip_moved_s"] is not None, report(result)
    assert result["rejoin_s"] is not None, report(result)


def test_host_crash_with_the_primary(lab: Lab) -> None:
    check_result(lab, faults.host_crash(lab), failover=True)


def test_planned_switchover(lab: Lab) -> None:
    check_result(lab, faults.planned_switchover(lab), failover=True)


def test_loss_of_the_host_with_two_etcd_members(lab: Lab) -> None:
    """(7) Without a witness the quorum goes with that host: nothing may be elected,
    nothing acknowledged may be lost, and the cluster must heal when it returns."""
    result = faults.quorum_host_crash(lab)
    print_result(result)
    message = report(result)
    during = result["status_during"]
    assert sum(during["etcd"].values()) < len(during["etcd"]) // 2 + 1, message  # no quorum, visibly
    assert "primary" not in during["own_roles"].values(), message  # the survivor demoted itself
    assert result["acks_without_quorum"] == 0, message
    assert result["lost"] == 0 and not result["split_brain"], message
    assert is_healthy(lab, lab.status()), message
