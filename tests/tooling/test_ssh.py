"""lab.machines.SshRunner.connect_settled: retry an sshd that is restarting, nothing else."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncssh
import pytest

from lab.machines import SshRunner


class FlakyRunner(SshRunner):
    """A runner whose connection attempts fail with ``errors`` in turn, then succeed."""

    def __init__(self, errors: list[BaseException]) -> None:  # no key, no namespace
        self.errors = errors
        self.attempts = 0

    async def connect_once(self, target: Any, timeout: float) -> Any:
        self.attempts += 1
        if self.errors:
            raise self.errors.pop(0)
        return "connection"


def settle(runner: FlakyRunner) -> Any:
    return asyncio.run(runner.connect_settled(target=None, settle=5.0))


def test_an_sshd_restarting_during_the_handshake_is_retried() -> None:
    """CI: "Connection reset by peer" right after the drill machine first answered."""
    runner = FlakyRunner([ConnectionRefusedError(), ConnectionResetError(104, "reset by peer")])
    assert settle(runner) == "connection" and runner.attempts == 3


@pytest.mark.parametrize(
    "error",
    [asyncssh.HostKeyNotVerifiable("another key"), asyncssh.PermissionDenied("no"), TimeoutError()],
)
def test_anything_else_is_raised_at_once(error: BaseException) -> None:
    runner = FlakyRunner([error])
    with pytest.raises(type(error)):
        settle(runner)
    assert runner.attempts == 1
