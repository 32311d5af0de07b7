"""lab.wait: one polling helper whose limits $PGHA_TIMEOUT_FACTOR stretches."""

from __future__ import annotations

import asyncio
import time

import pytest

from lab.wait import TIMEOUT_FACTOR_ENV, WaitTimeout, scaled, timeout_factor, wait_until, wait_until_async


def test_the_factor_defaults_to_one_and_scales_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TIMEOUT_FACTOR_ENV, raising=False)
    assert timeout_factor() == 1.0
    monkeypatch.setenv(TIMEOUT_FACTOR_ENV, "2.5")
    assert timeout_factor() == 2.5
    assert scaled(40) == 100.0


@pytest.mark.parametrize("bad", ["fast", "0", "-1", "nan", "inf"])
def test_a_bad_factor_is_an_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv(TIMEOUT_FACTOR_ENV, bad)
    with pytest.raises(ValueError, match=TIMEOUT_FACTOR_ENV):
        timeout_factor()


def test_returns_the_first_truthy_answer() -> None:
    answers = iter([None, 0, "", "pg2", "pg3"])
    assert wait_until(lambda: next(answers), 5.0, interval=0.01) == "pg2"


def test_the_timeout_is_scaled_by_the_factor(monkeypatch: pytest.MonkeyPatch) -> None:
    def waited(factor: str) -> float:
        monkeypatch.setenv(TIMEOUT_FACTOR_ENV, factor)
        started = time.monotonic()
        assert wait_until(lambda: None, 0.2, interval=0.02) is None  # the last answer on timeout
        return time.monotonic() - started

    assert 0.2 <= waited("1") < 0.6
    assert 0.6 <= waited("3") < 1.5


def test_a_span_that_is_part_of_the_experiment_is_not_scaled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TIMEOUT_FACTOR_ENV, "20")
    started = time.monotonic()
    wait_until(lambda: None, 0.2, interval=0.02, scale=False)
    assert time.monotonic() - started < 1.0


def test_with_error_a_timeout_raises_with_the_last_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TIMEOUT_FACTOR_ENV, raising=False)
    with pytest.raises(WaitTimeout, match=r"holders: \[\] \(waited 0.1 s\)"):
        wait_until(lambda: [], 0.1, interval=0.02, error=lambda last: f"holders: {last}")
    assert issubclass(WaitTimeout, TimeoutError)  # what Lab.wait_ready raised before


def test_the_predicate_is_asked_once_more_at_the_deadline() -> None:
    calls: list[float] = []
    wait_until(lambda: calls.append(time.monotonic()), 0.05, interval=1.0)
    assert len(calls) == 2


def test_the_async_twin_scales_and_raises_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TIMEOUT_FACTOR_ENV, "2")
    answers = iter([None, None, "up"])

    async def ready() -> str | None:
        return next(answers)

    assert asyncio.run(wait_until_async(ready, 1.0, interval=0.01)) == "up"

    async def never() -> None:
        return None

    started = time.monotonic()
    with pytest.raises(WaitTimeout, match=r"no answer \(waited 0.2 s\)"):
        asyncio.run(wait_until_async(never, 0.1, interval=0.02, error="no answer"))
    assert time.monotonic() - started >= 0.2
