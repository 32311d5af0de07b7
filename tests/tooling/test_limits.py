"""tests/ha/limits.py: one table of fault limits, read in order and scaled for slow machines."""

from __future__ import annotations

import fnmatch

import pytest

from tests.ha.limits import LIMITS_S, limit


def test_no_pattern_is_shadowed_by_an_earlier_one() -> None:
    """limit() takes the first match: a pattern matched by an earlier one would never apply."""
    patterns = list(LIMITS_S)
    for index, pattern in enumerate(patterns):
        for earlier in patterns[:index]:
            assert not fnmatch.fnmatchcase(pattern, earlier), f"{pattern!r} is shadowed by {earlier!r}"


def test_limits_scale_with_the_timeout_factor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGHA_TIMEOUT_FACTOR", "2")
    assert limit("planned_switchover") == 2 * LIMITS_S["planned_switchover"]
    assert limit("host_crash_with_witness") == 2 * LIMITS_S["host_crash_with_witness"]
    assert limit("host_crash_pve1") == 2 * LIMITS_S["host_crash_*"]
    assert limit("quorum_host_crash_pve1") is None
