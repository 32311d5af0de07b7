"""Who is using a stack's lab: a lock file naming the process, so nobody tears it down under it.

``lab up`` and the test fixture take the lock of the lab they use; ``lab down``
refuses while another live process holds it. The file names the holder's PID
and its start time (so a recycled PID is not mistaken for the holder): a lock
whose holder is gone (a crashed run, a finished ``lab up``) is stale and is
taken over. Releasing empties the file rather than removing it, so two processes
never flock two different files of one name. Locks live in /run, which a reboot
empties along with every holder.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

LOCK_ROOT = Path("/run/pgha-lab")


class LabBusy(RuntimeError):
    """Another live process uses this stack's lab."""


@dataclass(frozen=True)
class Holder:
    """A process, by PID and start time (clock ticks after boot, /proc/PID/stat field 22)."""

    pid: int
    start: int
    command: str = ""

    @classmethod
    def of(cls, pid: int) -> Holder | None:
        """The live process ``pid`` (None if there is none)."""
        start = _start_time(pid)
        if start is None:
            return None
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            command = ""
        return cls(pid, start, command.strip()[:200])

    def alive(self) -> bool:
        """Whether this very process still runs (same PID and same start time)."""
        return _start_time(self.pid) == self.start


def _start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    # After the command: state is field 3, so starttime (field 22) is index 19 here.
    if len(fields) < 20 or fields[0] == "Z":
        return None
    return int(fields[19])


class StackLock:
    """The lock file of one lab (one prefixed stack name)."""

    def __init__(self, name: str, root: Path | None = None) -> None:
        self.path = (root or LOCK_ROOT) / f"{name}.lock"

    @contextlib.contextmanager
    def _guard(self) -> Iterator[int]:
        """The lock file, open and flock()ed: reading and writing the holder is one step."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd
        finally:
            os.close(fd)

    @staticmethod
    def _read(fd: int) -> Holder | None:
        os.lseek(fd, 0, os.SEEK_SET)
        raw = os.read(fd, 4096)
        try:
            data = json.loads(raw)
            return Holder(int(data["pid"]), int(data["start"]), str(data.get("command", "")))
        except (ValueError, KeyError, TypeError):
            return None  # empty (released) or unreadable: nobody holds it

    @staticmethod
    def _write(fd: int, holder: Holder | None) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        if holder is not None:
            os.write(fd, (json.dumps(holder.__dict__) + "\n").encode())

    def holder(self) -> Holder | None:
        """The live process holding the lock, if any (a dead holder's lock is free)."""
        if not self.path.exists():
            return None
        with self._guard() as fd:
            held = self._read(fd)
        return held if held is not None and held.alive() else None

    def acquire(self, pid: int | None = None) -> None:
        """Take the lock for ``pid`` (default: this process); LabBusy if another live process has it.

        Taking a lock one already holds is fine; a stale lock is taken over.
        """
        me = Holder.of(pid if pid is not None else os.getpid())
        if me is None:
            raise ValueError(f"no live process {pid}")
        with self._guard() as fd:
            held = self._read(fd)
            if held is not None and held.alive() and held.pid != me.pid:
                raise LabBusy(self._busy_message(held))
            self._write(fd, me)

    def check(self) -> None:
        """LabBusy unless the lock is free, stale, or held by this process."""
        held = self.holder()
        if held is not None and held.pid != os.getpid():
            raise LabBusy(self._busy_message(held))

    def release(self) -> None:
        """Drop the lock if this process holds it (a stale one is cleared too)."""
        if not self.path.exists():
            return
        with self._guard() as fd:
            held = self._read(fd)
            if held is None or held.pid == os.getpid() or not held.alive():
                self._write(fd, None)

    def _busy_message(self, held: Holder) -> str:
        name = self.path.name.removesuffix(".lock")
        return (
            f"lab {name} is in use by PID {held.pid} ({held.command or 'unknown command'}); "
            f"lock {self.path}. Use another PGHA_LAB_PREFIX, or wait for it to finish"
        )
