"""lab/faults/harness.py: a fault is injected only once every etcd member is healthy again."""

from __future__ import annotations

import pytest

from lab.faults import harness
from lab.wait import WaitTimeout


def test_waits_until_every_member_answers_healthy(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter([{"a": True, "b": False}, {"a": True, "b": False}, {"a": True, "b": True}])
    monkeypatch.setattr(harness, "etcd_health", lambda _lab: next(answers))
    assert harness.wait_etcd_healthy(None, timeout=5) == {"a": True, "b": True}  # type: ignore[arg-type]


def test_a_member_without_a_leader_keeps_the_fault_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness, "etcd_health", lambda _lab: {"a": True, "b": False})
    with pytest.raises(WaitTimeout, match="'b': False"):
        harness.wait_etcd_healthy(None, timeout=0.2)  # type: ignore[arg-type]
