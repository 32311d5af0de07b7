"""pgha-install-files, run for real: writes what differs, prints it, nothing on a rerun."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

from pgha.files import INSTALLER_SOURCE

INSTALLER = INSTALLER_SOURCE


def run(bundle: dict) -> list[str]:
    result = subprocess.run(
        [sys.executable, str(INSTALLER)], input=json.dumps(bundle), text=True, capture_output=True, check=True
    )
    return result.stdout.split()


def entry(path, content, mode="0640") -> dict:
    return {"path": str(path), "content": content, "mode": mode, "owner": "root", "group": "root"}


def test_writes_then_changes_nothing(tmp_path):
    target = tmp_path / "etc" / "svc" / "config"
    bundle = {"files": [entry(target, "secret=1\n", "0600")]}
    assert run(bundle) == [str(target)]
    assert target.read_text() == "secret=1\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert run(bundle) == []
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".pgha-")]


def test_mode_or_content_change_is_reported(tmp_path):
    target = tmp_path / "file"
    run({"files": [entry(target, "a\n")]})
    assert run({"files": [entry(target, "a\n", "0644")]}) == [str(target)]
    assert run({"files": [entry(target, "b\n", "0644")]}) == [str(target)]
    os.chmod(target, 0o666)
    assert run({"files": [entry(target, "b\n", "0644")]}) == [str(target)]


def test_empty_stdin_is_a_no_op():
    result = subprocess.run([sys.executable, str(INSTALLER)], input="", text=True, capture_output=True)
    assert result.returncode == 0 and result.stdout == ""
