"""lab/scenarios/bench.py's failover bench: every run is reported, the failed ones included."""

from __future__ import annotations

from typing import Any

import pytest

from lab.scenarios import bench


def run_result(seconds: float) -> dict[str, Any]:
    return {
        "fault": "primary_freeze",
        "unavailability_s": seconds,
        "max_gap_s": seconds,
        "acked": 10,
        "lost": 0,
        "split_brain": False,
        "rejoin_s": 5.0,
        "old_primary": "psql-01",
        "new_primary": "psql-02",
        "patroni_logs": "long",
    }


def test_a_failed_run_is_counted_and_reported_and_the_bench_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    outcomes = iter([run_result(20.0), RuntimeError("writes did not resume"), run_result(22.0)])

    def scenario(_lab: object) -> dict[str, Any]:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setitem(bench.SCENARIOS, "4", scenario)
    emitted: list[dict[str, Any]] = []
    [summary] = bench.failover(None, runs=3, faults=["4"], emit=emitted.append)  # type: ignore[arg-type]
    assert emitted == [summary]
    assert summary["runs"] == 3
    assert summary["failed_runs"] == ["RuntimeError: writes did not resume"]
    assert [r["unavailability_s"] for r in summary["per_run"]] == [20.0, 22.0]
    assert summary["unavailability_s"] == {"min": 20.0, "median": 21.0, "max": 22.0}
    assert "patroni_logs" not in summary["per_run"][0]


def test_a_fault_that_keeps_failing_is_given_up_for_the_next_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []

    def broken(_lab: object) -> dict[str, Any]:
        calls.append("broken")
        raise TimeoutError("no leader")

    def fine(_lab: object) -> dict[str, Any]:
        calls.append("fine")
        return run_result(1.0)

    monkeypatch.setitem(bench.SCENARIOS, "x", broken)
    monkeypatch.setitem(bench.SCENARIOS, "y", fine)
    summaries = bench.failover(None, runs=5, faults=["x", "y"])  # type: ignore[arg-type]
    assert calls.count("broken") == bench.FAILED_RUNS_BEFORE_GIVING_UP
    assert (
        summaries[0]["runs"] == bench.FAILED_RUNS_BEFORE_GIVING_UP
        and summaries[0]["unavailability_s"] is None
    )
    assert summaries[1]["runs"] == 5 and not summaries[1]["failed_runs"]


def test_a_host_crash_takes_its_host_and_a_bad_key_stops_the_bench_before_any_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    crashed: list[str] = []
    monkeypatch.setattr(bench, "host_crash", lambda _lab, host: crashed.append(host) or run_result(20.0))
    [summary] = bench.failover(None, runs=2, faults=["6@pve1"])  # type: ignore[arg-type]
    assert crashed == ["pve1", "pve1"] and summary["runs"] == 2
    for bad in ("4@pve1", "nope"):
        with pytest.raises(KeyError):
            bench.failover(None, runs=1, faults=["6@pve2", bad])  # type: ignore[arg-type]
    assert crashed == ["pve1", "pve1"]
