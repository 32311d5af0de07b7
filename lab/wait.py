"""The lab's one polling helper, and the time limits a slow machine stretches.

Every wait in the lab and its tests polls through ``wait_until``: its timeout
is multiplied by ``timeout_factor()``, read from $PGHA_TIMEOUT_FACTOR (default
1), so a loaded or slow machine gets more time everywhere at once instead of
one hand-tuned limit at a time. Use ``scaled`` for a limit that is not a poll
(a table of acceptable failover times, a subprocess timeout). Coroutines poll
through ``wait_until_async``, the same rule for an awaited predicate.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

TIMEOUT_FACTOR_ENV = "PGHA_TIMEOUT_FACTOR"

T = TypeVar("T")


class WaitTimeout(TimeoutError):
    """A ``wait_until`` whose predicate never came true in time."""


def timeout_factor() -> float:
    """$PGHA_TIMEOUT_FACTOR as a positive number (default 1); a bad value is an error, not ignored."""
    raw = os.environ.get(TIMEOUT_FACTOR_ENV, "").strip()
    if not raw:
        return 1.0
    try:
        factor = float(raw)
    except ValueError:
        raise ValueError(f"{TIMEOUT_FACTOR_ENV}={raw!r}: not a number") from None
    if not factor > 0 or factor == float("inf"):
        raise ValueError(f"{TIMEOUT_FACTOR_ENV}={raw!r}: must be a positive finite number")
    return factor


def scaled(seconds: float) -> float:
    """A time limit stretched by the machine's timeout factor."""
    return seconds * timeout_factor()


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    *,
    interval: float = 0.5,
    error: str | Callable[[T], str] | None = None,
    scale: bool = True,
) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that.

    ``timeout`` is nominal seconds, scaled by ``timeout_factor()`` unless ``scale``
    is False (a span that is part of an experiment, e.g. how long a fault lasts,
    not a limit on a slow machine). On timeout
    the last (falsy) answer is returned, or, with ``error``, ``WaitTimeout`` is
    raised with that message (a callable gets the last answer). The predicate
    is always asked at least once, and once more at the deadline.
    """
    limit = scaled(timeout) if scale else timeout
    deadline = time.monotonic() + limit
    while True:
        answer = predicate()
        if answer:
            return answer
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        time.sleep(min(interval, remaining))
    if error is None:
        return answer
    message = error(answer) if callable(error) else error
    raise WaitTimeout(f"{message} (waited {limit:.1f} s)")


async def wait_until_async(
    predicate: Callable[[], Awaitable[T]],
    timeout: float,
    *,
    interval: float = 0.5,
    error: str | Callable[[T], str] | None = None,
    scale: bool = True,
) -> T:
    """``wait_until`` for a coroutine: awaits ``predicate`` and sleeps without blocking the loop."""
    limit = scaled(timeout) if scale else timeout
    deadline = time.monotonic() + limit
    while True:
        answer = await predicate()
        if answer:
            return answer
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        await asyncio.sleep(min(interval, remaining))
    if error is None:
        return answer
    message = error(answer) if callable(error) else error
    raise WaitTimeout(f"{message} (waited {limit:.1f} s)")
