"""Blue-green: the live dev lab ("blue") moved into the green stack beside it, with 0 rows lost.

Green boots on blue's bridge (its own VMs, VIP, etcd and scope), imports from
blue's VIP:5432 with ``pgha:import`` while the application writes to blue,
then the cutover, and the application's connection string moves to green's
VIP. Every commit the workload saw acknowledged, on either side, must be in
green, blue must refuse writes afterwards, and writes may be refused for at
most 10 s (``python -m lab bench blue-green`` repeats it).
"""

from __future__ import annotations

import json

import pytest

from lab.cluster import Lab
from lab.scenarios import bluegreen

pytestmark = pytest.mark.lab

REFUSED_GOAL_S = 10.0


def test_a_live_stack_moves_into_a_new_stack(lab: Lab) -> None:
    result = bluegreen.run(lab)
    print(json.dumps(result, indent=1))
    assert result["check"][-1] == "check: passed"
    assert result["acked_on_source"] > 0 and result["acked_on_pgha"] > 0
    assert result["lost_count"] == 0, result["lost"]
    assert result["totals_sum"] == result["workload_rows"]
    assert result["rows"] == bluegreen.INITIAL_ROWS + result["workload_rows"]
    assert result["blue_read_only"]
    assert result["tool_refused_s"] is not None and result["tool_refused_s"] <= REFUSED_GOAL_S
    assert result["workload_refused_s"] <= REFUSED_GOAL_S
