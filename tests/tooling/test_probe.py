"""The probe's verdict: a stale primary's acknowledged insert after a promotion is a split brain."""

from __future__ import annotations

from lab.observation import Probe, judge

NODES = ["psql-01", "psql-02", "psql-03"]


def probe(node: str, at: float, in_recovery: bool | None, acked: bool) -> Probe:
    return Probe(node, started=at, ended=at + 0.1, in_recovery=in_recovery, acked=acked)


def test_negative_control_a_stale_primary_acknowledging_after_the_promotion_is_caught() -> None:
    probes = [
        probe("psql-01", 0.0, False, True),  # the primary before the fault
        probe("psql-02", 5.0, False, True),  # promoted
        probe("psql-01", 6.0, False, True),  # the old primary still takes writes: split brain
    ]
    verdict = judge(probes, "psql-01", NODES)
    assert verdict["other_node_promoted"]
    assert verdict["old_primary_acks_after_promotion"] == 1
    assert verdict["acked_by_node"] == {"psql-01": 2, "psql-02": 1, "psql-03": 0}


def test_a_clean_failover_has_no_late_acknowledgement() -> None:
    probes = [
        probe("psql-01", 0.0, False, True),
        probe("psql-01", 3.0, None, False),  # cut off: no answer
        probe("psql-02", 5.0, False, True),
        probe("psql-01", 9.0, True, False),  # back as a replica: refused
    ]
    verdict = judge(probes, "psql-01", NODES)
    assert verdict["old_primary_acks_after_promotion"] == 0
    assert verdict["answered"] == 3


def test_an_acknowledgement_before_the_promotion_is_no_split_brain() -> None:
    probes = [probe("psql-01", 4.0, False, True), probe("psql-02", 4.5, False, True)]
    assert judge(probes, "psql-01", NODES)["old_primary_acks_after_promotion"] == 0
