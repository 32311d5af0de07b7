"""lab/scenarios/change_table.py: the change table's rows are valid stack files, each a real change."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lab.scenarios import change, change_table
from pgha.files import REPO_DIR


def dev_document() -> dict:
    return yaml.safe_load((REPO_DIR / "Pulumi.dev.yaml").read_text())


@pytest.mark.parametrize("row", change_table.ROWS, ids=lambda row: row.name)
def test_each_row_is_a_valid_stack_that_differs_from_dev(row: change_table.Row, tmp_path: Path) -> None:
    document = dev_document()
    there = tmp_path / "Pulumi.dev.next.yaml"
    there.write_text(yaml.safe_dump(change_table.edited(document, row)))
    assert change.new_spec("dev", there) != change.new_spec("dev", REPO_DIR / "Pulumi.dev.yaml")
    assert document == dev_document(), "the original document must stay untouched"


def test_edits_set_nested_keys_and_append_to_lists() -> None:
    row = change_table.Row("x", {"postgres.parameters.work_mem": "8MB", "roles[]": {"name": "a"}})
    config = change_table.edited({"config": {"pgha:postgres": {"parameters": {"wal_level": "logical"}}}}, row)
    assert config["config"]["pgha:postgres"]["parameters"] == {"wal_level": "logical", "work_mem": "8MB"}
    assert config["config"]["pgha:roles"] == [{"name": "a"}]


def test_rows_are_chosen_by_name_and_an_unknown_name_is_refused() -> None:
    assert [r.name for r in change_table.select(["maxconn"])] == ["HAProxy maxconn"]
    assert len(change_table.select(None)) == len(change_table.ROWS)
    with pytest.raises(KeyError, match="no change-table row"):
        change_table.select(["vm.cores"])


def test_a_failed_leg_is_one_table_line() -> None:
    failed = {"row": "x", "there": {"error": "RuntimeError: one | two\nLINE 1: select"}, "back": {}}
    kept = {
        "row": "y",
        "there": {"kind": "rolling", "max_gap_s": 0.5, "lost": 0, "rule": "kept"},
        "back": {"kind": "rolling", "max_gap_s": 6.0, "lost": 0, "rule": "BROKEN"},
    }
    lines = change_table.table([failed, kept]).splitlines()
    assert len(lines) == 4
    assert lines[2] == "| x | failed: RuntimeError: one / two | | | |"
    assert lines[3] == "| y | rolling | 0.50 s, 6.00 s | 0 | BROKEN, kept |"
