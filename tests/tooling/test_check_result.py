"""tests/helpers.problems: the verdict every HA test applies, green on a good run, red on CI's bad one."""

from __future__ import annotations

from typing import Any

import pytest

from lab.observation import observe
from tests.ha.limits import LIMITS_S
from tests.helpers import check_result, problems


def failover_result(**changes: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "fault": "primary_freeze",
        "old_primary": "psql-01",
        "new_primary": "psql-02",
        "max_gap_s": 23.1,
        "windows": [{"start_s": 0.0, "seconds": 23.0, "failed_attempts": 600}],
        "acked": 4000,
        "lost": 0,
        "split_brain": False,
        "rejoin_s": 12.0,
        "direct_probe": {
            "answered": 120,
            "acked_by_node": {"psql-01": 20, "psql-02": 15, "psql-03": 0},
            "old_primary_acks_after_promotion": 0,
        },
    }
    result.update(changes)
    return result


def test_a_good_failover_passes() -> None:
    assert problems(failover_result(), failover=True) == []


def test_the_ci_run_without_a_failover_fails_on_both_counts() -> None:
    """The CI run of stop 16: the frozen primary came back as primary after 35 s."""
    found = problems(failover_result(new_primary="psql-01", max_gap_s=35.49, rejoin_s=None), failover=True)
    assert any("35.49 s without an acknowledged write" in p for p in found)
    assert any("no failover" in p for p in found)
    assert any("does not stream again" in p for p in found)


def test_loss_split_brain_and_a_blind_probe_are_each_named() -> None:
    probe = {"answered": 5, "acked_by_node": {"psql-01": 0}, "old_primary_acks_after_promotion": 1}
    found = problems(failover_result(lost=3, split_brain=True, direct_probe=probe), failover=True)
    assert "3 acknowledged writes lost" in found
    assert "split brain seen by the writer" in found
    assert "the direct probe saw no acknowledged insert anywhere" in found
    assert "the old primary acknowledged a probe after another node's promotion" in found


def test_a_standby_fault_needs_no_new_primary() -> None:
    result = failover_result(fault="standby_freeze", new_primary="psql-01", max_gap_s=1.9, rejoin_s=None)
    assert problems(result, failover=False) == []
    assert problems({**result, "max_gap_s": 9.0}, failover=False) != []


def test_etcd_must_be_whole_again_soon_after_the_fault_ends() -> None:
    """25 s was etcd's state after a 30 s drop with Linux's default tcp_retries2."""
    assert problems(failover_result(etcd_healthy_after_s=1.1), failover=True) == []
    for stuck in (25.8, None):  # None: never whole again within the harness's timeout
        found = problems(failover_result(etcd_healthy_after_s=stuck), failover=True)
        assert any("etcd not whole again" in problem for problem in found), found


class SettlingLab:
    """A lab whose status turns healthy after ``unhealthy`` views (a VIP still moving)."""

    def __init__(self, unhealthy: int) -> None:
        self.unhealthy = unhealthy
        self.views = 0

    def status(self) -> dict[str, Any]:
        self.views += 1
        return {"healthy": self.views > self.unhealthy}


@pytest.fixture
def quick_settle(monkeypatch: pytest.MonkeyPatch) -> None:
    """lab.observation.observe.wait_ready, polling the fake lab every 0.1 s for at most 1.5 s."""
    monkeypatch.setattr(observe, "status", lambda lab: lab.status())
    monkeypatch.setattr(observe, "is_healthy", lambda lab, view: view["healthy"])
    monkeypatch.setitem(LIMITS_S, "healthy_again", 1.5)


@pytest.mark.usefixtures("quick_settle")
def test_a_good_run_may_take_a_moment_to_be_healthy_again() -> None:
    lab = SettlingLab(unhealthy=2)
    check_result(lab, failover_result(), failover=True)  # type: ignore[arg-type]
    assert lab.views == 3


@pytest.mark.usefixtures("quick_settle")
def test_a_lab_that_stays_unhealthy_fails_the_run() -> None:
    with pytest.raises(pytest.fail.Exception, match="not healthy"):
        check_result(SettlingLab(unhealthy=10**6), failover_result(), failover=True)  # type: ignore[arg-type]
