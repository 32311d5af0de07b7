"""Standby faults cost at most a few seconds of writes, judged like the primary faults.

About 2.5 minutes on the dev lab (4 scenarios, each ~12 s of fault plus the
way back to a healthy cluster).
"""

from __future__ import annotations

import pytest

from lab.cluster import Lab
from lab.faults import standby
from tests.helpers import check_result, report

pytestmark = pytest.mark.lab


@pytest.mark.parametrize("kind", ["kill", "freeze", "drop"])
def test_synchronous_standby_fault(lab: Lab, kind: str) -> None:
    """The standby that confirms commits goes silent: the leader must drop it within the limit."""
    result = standby.standby_fault(lab, "sync", kind)
    check_result(lab, result, failover=False)
    assert result["victim_host"] != result["primary_host"], report(result)  # host-aware
    assert result["victim"] not in result["sync_during"], report(result)  # dropped from the set
    assert result["rejoin_s"] is not None, report(result)
    if kind == "drop":
        assert result["carrier_during_drop"], report(result)


def test_standby_on_the_primarys_host_confirms_nothing(lab: Lab) -> None:
    """Host-aware: the standby sharing the primary's host is nosync; freezing it costs no write."""
    result = standby.standby_fault(lab, "local", "freeze")
    check_result(lab, result, failover=False)
    assert result["victim_host"] == result["primary_host"], report(result)
    assert result["victim"] not in result["sync_before"], report(result)
    if not result["victim_held_vip"]:  # else the VIP moves too: the 5 s limit of every standby fault
        assert result["max_gap_s"] < 1.5, report(result)
