"""Moving in: a live database from a Debian 12 PostgreSQL 15 into the dev lab, with 0 rows lost.

A workload writes to the old server during the initial copy and the stream;
Patroni switches over in the middle of the copy, then the primary loses
power while changes stream (``pgha-import resume`` hands the source's slot
to the new primary); then the cutover, and the workload moves to the VIP.
Every commit the workload saw acknowledged, on either side, must be in pgha,
the two tables each commit touches must agree, and writes may be refused for
at most 10 s (``python -m lab bench moving-in`` repeats it).
"""

from __future__ import annotations

import json

import pytest

from lab.cluster import Lab
from lab.scenarios import moving_in

pytestmark = pytest.mark.lab

REFUSED_GOAL_S = 10.0


def test_a_live_database_moves_in_across_a_switchover_and_a_lost_primary(lab: Lab) -> None:
    result = moving_in.run(lab)
    print(json.dumps(result, indent=1))
    assert result["old_server_version"].startswith("15.")
    assert result["check"][-1] == "check: passed"
    assert result["acked_on_source"] > 0 and result["acked_on_pgha"] > 0
    assert result["lost_count"] == 0, result["lost"]
    assert result["totals_sum"] == result["workload_rows"]
    # The ids pgha handed out after the cutover came from the copied sequence: no clash.
    assert result["rows"] == moving_in.INITIAL_ROWS + result["workload_rows"]
    assert result["tool_refused_s"] is not None and result["tool_refused_s"] <= REFUSED_GOAL_S
    assert result["workload_refused_s"] <= REFUSED_GOAL_S
