"""Every fenced command of README.md, docs/ and dev/ names a verb, flag or config key that exists.

The checks themselves are in tests/docs/doc_commands.py; here they run over
the pages, and over stale commands made up to show each check can fail.
"""

from __future__ import annotations

import pytest

from pgha.files import REPO_DIR
from tests.docs import doc_commands
from tests.docs.doc_commands import DocLine, all_problems, problems


def test_every_fenced_command_in_the_docs_exists() -> None:
    found = all_problems()
    assert not found, "stale commands in the docs:\n" + "\n".join(found)


def test_the_docs_do_show_commands_of_every_kind() -> None:
    """A checker that finds no command (a changed fence, a moved page) would pass silently."""
    lines = [line.text for page in doc_commands.doc_pages() for line in doc_commands.fenced_lines(page)]
    for needle in (
        "python -m lab ",
        "pulumi config set --path 'pgha:",
        "pgha-host-maintenance",
        "pgha.render",
    ):
        assert any(needle in line for line in lines), needle


def _line(text: str) -> DocLine:
    return DocLine(REPO_DIR / "docs" / "lab.md", 7, text)


@pytest.mark.parametrize(
    ("command", "bad"),
    [
        ("venv/bin/python -m lab up --stak dev", "--stak"),
        ("python -m lab --stack dev bench failovr", "failovr"),
        ("python -m lab bench failover --run 3", "--run"),
        ("python -m lab backup [--type full|diff|incremental]", "incremental"),
        ("python -m lab kill|stop NODE", "stop"),
        ("python -m lab host-maintenance pve1 begin", "begin"),
        ("python -m lab status pve1", "pve1"),
        ("venv/bin/python -m pgha.render --stack dev --outdir /tmp/x", "--outdir"),
        ("python -m pgha.nosuch", "pgha.nosuch"),
        ("pulumi config set --path 'pgha:vms[3].nam' psql-04", "pgha:vms[3].nam"),
        ("pulumi config set --path pgha:network.sdn.zoen z", "pgha:network.sdn.zoen"),
        ("pulumi config set --path pgha:roles[0].rotaton 2", "pgha:roles[0].rotaton"),
        ("pulumi config set pgha:haproxy.maxconn 900", "needs --path"),
        ("sudo pgha-host-maintenance pve1 begin", "pve1 begin"),
        ("pgha-rolling apply PLAN", "apply PLAN"),
        ("pgha-backup fulll", "fulll"),
        ("pgha-restore --now", "--now"),
        ("pgha-databases --dry-run", "--dry-run"),
        ("sudo -u postgres pgha-import cutovr", "cutovr"),
        ("pgha-nosuch status", "pgha-nosuch"),
    ],
)
def test_a_stale_command_is_named_with_its_file_line_and_token(command: str, bad: str) -> None:
    found = problems(_line(command))
    assert found, command
    assert all(p.startswith("docs/lab.md:7: ") for p in found)
    assert any(bad in p for p in found), found


@pytest.mark.parametrize(
    "command",
    [
        "sudo PGHA_LAB_PREFIX=dt venv/bin/python -m lab --stack dev up",
        "venv/bin/python -m lab restore-drill [--time T] [--sql Q] [--keep]",
        "venv/bin/python -m lab exec NODE -- psql -c 'select 1' --nosuch",
        "python -m lab bench pooler [--clients 200] [--modes=-S,-N]",
        "pulumi config set --path 'pgha:postgres.parameters.max_connections' 300",
        "pulumi config set --path 'pgha:roles[0].rotation' 2",
        "pulumi config set --path 'pgha:witness.ip' 10.0.0.9",
        "pulumi config rm --path 'pgha:vms[4]'",
        "pulumi config set --secret pgha:backupCipherPassphrase --stack new",
        "pulumi config set --secret proxmoxve:apiToken x",
        "sudo pgha-host-maintenance pve1 start|finish",
        "pgha-host-maintenance status",
        "pgha-rolling upgrade PLAN",
        "pgha-backup full|diff|incr|check",
        "pgha-restore --time T --data-dir DIR",
        "pgha-backup-status",
        "journalctl -u pgha-backup@full",
        "sudo -u postgres pgha-import cutover --database app",
    ],
)
def test_a_current_command_passes(command: str) -> None:
    assert problems(_line(command)) == []


def test_every_vm_program_without_its_own_check_takes_only_a_settings_path() -> None:
    """A program that grows verbs or flags needs an entry in VM_PYTHON_CHECKS, or its docs go unchecked."""
    programs = doc_commands.vm_python_programs()
    assert {"pgha-host-maintenance", "pgha-rolling", "pgha-databases"} <= set(programs)
    for name, module in programs.items():
        if name in doc_commands.VM_PYTHON_CHECKS:
            continue
        main = module.read_text().split("\ndef main(", 1)[1]
        assert "args[0] if args else SETTINGS_PATH" in main, name
