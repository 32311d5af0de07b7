"""Every database VM lost: the stack comes back from its pgBackRest repository (pgha:restore).

Runs last in tests/ha (file order), on the session's dev lab: afterwards the
lab is a restored cluster, healthy, with the same names and secrets. The
repository first loses a timeline history file (a primary switched over
before it could archive its own): the restore must still reach the newest
timeline, where PostgreSQL's 'latest' would stop at the gap.
"""

from __future__ import annotations

import json

import pytest

from lab.cluster import Lab
from lab.faults import READY_TIMEOUT
from lab.observation import is_healthy
from lab.scenarios.restore import disaster_recovery

pytestmark = pytest.mark.lab


# Slack over archive_timeout for the WAL switch and the lab's load.
RPO_SLACK_S = 5.0


def test_everything_lost_then_restored(lab: Lab) -> None:
    result = disaster_recovery(lab, history_gap=True)
    print(json.dumps(result))
    message = json.dumps(result)
    assert result["lost_history"], message
    assert result["acked_before_archive_point"] > 0, message
    # Every row acknowledged before the archive point survived.
    assert result["missing_before_archive_point"] == 0, message
    # What is lost is only the tail archive_timeout allows.
    assert result["rpo_s"] is not None, message
    assert result["rpo_s"] <= result["archive_timeout_s"] + RPO_SLACK_S, message
    assert result["oldest_missing_before_crash_s"] <= result["archive_timeout_s"] + RPO_SLACK_S, message
    lab.wait_ready(timeout=READY_TIMEOUT)
    assert is_healthy(lab, lab.status())
