"""The lab's lock: a run never tears down (or re-deploys) a lab another live process uses."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import lab.cluster.verbs
import lab.machines.access
import lab.machines.lock
import tests.helpers
from lab.cluster import Lab
from lab.machines import Holder, LabBusy, StackLock
from tests.helpers import LabPool


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A live process that is not us: the fake holder of someone else's lab."""
    process = subprocess.Popen(["sleep", "300"])
    yield process
    process.kill()
    process.wait()


def _must_not_run(*args: object, **kwargs: object) -> None:
    raise AssertionError("the lock let a verb through to the machines")


@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Lock and state roots in a temporary directory, a prefix no real lab uses, and no
    machine or image: should the lock fail, the test fails before anything is created."""
    monkeypatch.setattr(lab.machines.lock, "LOCK_ROOT", tmp_path / "run")
    monkeypatch.setattr(lab.machines.access, "STATE_ROOT", tmp_path / "state")
    monkeypatch.setattr(lab.cluster.verbs, "ensure_image", _must_not_run)
    monkeypatch.setattr(Lab, "machine", _must_not_run)
    monkeypatch.setenv("PGHA_LAB_PREFIX", f"locktest{os.getpid()}-")
    return tmp_path


def test_down_refuses_a_lab_another_live_process_holds(roots: Path, sleeper: subprocess.Popen) -> None:
    cluster = Lab("dev")
    cluster.state_dir.mkdir(parents=True)
    (cluster.state_dir / "secrets.json").write_text("{}")
    StackLock(cluster.name).acquire(pid=sleeper.pid)
    with pytest.raises(LabBusy, match=rf"in use by PID {sleeper.pid} \(sleep 300\)"):
        cluster.down()
    with pytest.raises(LabBusy):
        cluster.up()
    assert (cluster.state_dir / "secrets.json").exists()  # nothing was touched


def test_the_test_fixture_fails_instead_of_taking_a_busy_lab(
    roots: Path, sleeper: subprocess.Popen, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tests.helpers, "lab_unavailable", lambda: None)
    cluster = Lab("dev")
    cluster.state_dir.mkdir(parents=True)
    StackLock(cluster.name).acquire(pid=sleeper.pid)
    with pytest.raises(pytest.fail.Exception, match="in use by PID"):
        LabPool().get("dev")
    assert cluster.state_dir.exists()


def test_a_dead_holders_lock_is_taken_over(roots: Path, sleeper: subprocess.Popen) -> None:
    lock = StackLock("dev")
    lock.acquire(pid=sleeper.pid)
    with pytest.raises(LabBusy):
        lock.check()
    sleeper.kill()
    sleeper.wait()
    assert lock.holder() is None  # stale: a crashed run's leftover
    lock.check()
    lock.acquire()
    assert lock.holder() == Holder.of(os.getpid())
    lock.release()
    assert lock.holder() is None


def test_a_recycled_pid_is_not_the_holder(roots: Path) -> None:
    me = Holder.of(os.getpid())
    assert me is not None and me.alive()
    assert not Holder(me.pid, me.start + 1).alive()  # same PID, another process
    assert Holder.of(2**22 + 1) is None  # above pid_max: no such process


def test_taking_ones_own_lock_again_is_fine(roots: Path) -> None:
    lock = StackLock("dev")
    lock.acquire()
    lock.acquire()
    lock.check()
    lock.release()
    assert lock.path.read_text() == ""  # emptied, not removed
