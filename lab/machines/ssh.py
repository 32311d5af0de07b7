"""Run the program's own steps over real SSH, as Pulumi's remote.Command does.

Each step is executed as ``step.command`` (the exact string Pulumi sends)
with ``step.stdin`` (the file bundle) on standard input, phase by phase: all
VMs finish a phase before the next one starts, which is what the components'
``depends_on`` chain does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from pgha import Step

from ..wait import WaitTimeout, wait_until_async
from .inside import connect


@dataclass(frozen=True)
class Target:
    """How to reach one machine: its private IP inside the lab namespace, and
    the SSH host key the lab gave it (OpenSSH public format), which every
    connection pins, as Pulumi's remote.Command does with ``hostKey``."""

    host: str
    port: int
    user: str
    host_key: str


@dataclass
class StepResult:
    step: Step
    exit_status: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    @property
    def changed(self) -> list[str]:
        """The step's own report of what it changed or restarted (see lib.sh.j2)."""
        return [
            line
            for line in self.stderr.splitlines()
            if any(
                mark in line
                for mark in ("] changed:", "] starting", "] reloading", "(re)starting", "] switching")
            )
        ]


class StepError(RuntimeError):
    pass


# An sshd that is (re)starting: refused, or reset / closed before the session was set up.
SETTLING_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionRefusedError,
    ConnectionResetError,
    asyncssh.ConnectionLost,
)


class SshRunner:
    """Opens SSH sessions inside the lab namespace with the lab's deploy key."""

    def __init__(self, netns: Path, key_path: Path) -> None:
        self.netns = netns
        self.key = asyncssh.read_private_key(str(key_path))

    async def connect_once(self, target: Target, timeout: float) -> asyncssh.SSHClientConnection:
        loop = asyncio.get_running_loop()
        sock = await loop.run_in_executor(None, connect, self.netns, target.host, target.port, timeout)
        sock.setblocking(False)
        pinned = asyncssh.import_public_key(target.host_key)
        # Only the pinned key is trusted, and only its algorithm is offered: a
        # machine presenting any other key is refused before authentication,
        # so it never receives a command or a stdin bundle.
        return await asyncssh.connect(
            sock=sock,
            username=target.user,
            client_keys=[self.key],
            known_hosts=([pinned], [], []),
            server_host_key_algs=[pinned.get_algorithm()],
            connect_timeout=timeout,
        )

    async def wait_for_ssh(self, target: Target, timeout: float = 120.0) -> None:
        """Until the machine answers SSH with the pinned host key (``timeout`` scaled)."""

        async def answers() -> bool:
            try:
                conn = await self.connect_once(target, 3.0)
            except asyncssh.HostKeyNotVerifiable as error:
                # Not a machine still booting: whoever answers is not the machine we made.
                raise StepError(f"{target.host}:{target.port} presented another host key: {error}") from None
            except (OSError, asyncssh.Error, TimeoutError):
                return False
            conn.close()
            return True

        try:
            await wait_until_async(answers, timeout, error=f"no SSH on {target.host}:{target.port}")
        except WaitTimeout as timed_out:
            raise StepError(str(timed_out)) from None

    async def connect_settled(self, target: Target, settle: float = 15.0) -> asyncssh.SSHClientConnection:
        """Connect, retrying a refused or dropped connection for ``settle`` seconds (scaled).

        A machine that answered wait_for_ssh may still restart sshd once as its
        first boot finishes: seen under load as "Connection refused", and in CI as
        "Connection reset by peer" during the handshake, right after the drill
        machine's first answer. No command was sent yet, so a retry is safe; a
        wrong host key, a refused login or a timeout is raised at once; once
        ``settle`` is over, the last settling error.
        """
        settling: list[BaseException] = []

        async def connected() -> asyncssh.SSHClientConnection | None:
            try:
                return await self.connect_once(target, 10.0)
            except SETTLING_ERRORS as error:
                settling[:] = [error]
                return None

        conn = await wait_until_async(connected, settle)
        if conn is None:
            raise settling[0]
        return conn

    async def run(
        self, target: Target, command: str, stdin: str = "", timeout: float = 1800
    ) -> tuple[int, str, str]:
        async with await self.connect_settled(target) as conn:
            # No input: /dev/null, so a reader sees EOF at once, as with Pulumi's unset stdin.
            feed = {"input": stdin} if stdin else {"stdin": asyncssh.DEVNULL}
            result = await asyncio.wait_for(conn.run(command, check=False, **feed), timeout)
        status = result.exit_status if result.exit_status is not None else 255
        return status, str(result.stdout or ""), str(result.stderr or "")

    async def run_step(self, target: Target, step: Step) -> StepResult:
        started = time.monotonic()
        status, out, err = await self.run(target, step.command, step.stdin)
        return StepResult(step, status, out, err, time.monotonic() - started)

    async def run_phases(
        self,
        phases: list[tuple[int, list[Step]]],
        targets: dict[str, Target],
        report: Callable[[str], None] = print,
    ) -> list[StepResult]:
        """All steps of a phase in parallel, phases in order; stop at the first failure."""
        results: list[StepResult] = []
        for _, steps in phases:
            outcome = await asyncio.gather(*(self.run_step(targets[s.node], s) for s in steps))
            for result in outcome:
                mark = "ok" if result.ok else f"FAILED (exit {result.exit_status})"
                report(f"  {result.step.name:<16} {result.step.node:<10} {mark} ({result.seconds:.1f} s)")
                for line in result.changed:
                    report(f"      {line}")
            results.extend(outcome)
            failed = [r for r in outcome if not r.ok]
            if failed:
                for result in failed:
                    report(f"--- {result.step.node} {result.step.name} stderr ---\n{result.stderr[-3000:]}")
                raise StepError(f"step {failed[0].step.name} failed on {failed[0].step.node}")
        return results
