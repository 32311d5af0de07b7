"""docs/configuration.md is what the schema declares: every key, with its type, default and range."""

from __future__ import annotations

import difflib
import re

from pgha import config_docs
from pgha.config import top_level_keys


def stale_lines(page: str) -> list[str]:
    """The lines where ``page`` differs from the generated one (empty: up to date)."""
    diff = difflib.unified_diff(page.splitlines(), config_docs.generate().splitlines(), lineterm="", n=0)
    return [line for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def test_the_committed_page_is_the_generated_one():
    stale = stale_lines(config_docs.PAGE.read_text())
    assert not stale, f"docs/configuration.md is stale; run {config_docs.COMMAND}:\n" + "\n".join(stale[:20])


def test_a_stale_page_is_caught():
    """The negative control: a page missing one row, or with an old default, is told apart."""
    page = config_docs.generate()
    without_row = "".join(
        line for line in page.splitlines(keepends=True) if "synchronousNodeCount" not in line
    )
    assert any("synchronousNodeCount" in line for line in stale_lines(without_row))
    old_default = page.replace("| `patroni.ttl` | integer | `20` |", "| `patroni.ttl` | integer | `30` |")
    assert old_default != page
    assert stale_lines(old_default)


def _rows(page: str) -> dict[str, list[str]]:
    rows = {}
    for line in page.splitlines():
        if line.startswith("| `"):
            cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
            rows[cells[0].strip("`")] = cells
    return rows


def test_every_key_has_a_row_with_type_default_and_meaning():
    rows = _rows(config_docs.generate())
    for key in (
        *top_level_keys(),
        "patroni.synchronousNodeCount",
        "patroni.ttl",
        "vm.image",
        "clients.allowFrom",
        "roles[].memberOf",
        "databases[].owner",
        "network.sdn.peers",
        "ssh.jumpHost.privateKey",
        "pooler.defaultPoolSize",
        "vmId",
    ):
        assert key in rows, key
        _, type_, default, _, meaning = rows[key]
        assert type_ and default and meaning, rows[key]


def test_ranges_come_from_the_declarations():
    rows = _rows(config_docs.generate())
    assert rows["postgres.port"][2:4] == ["`5442`", "1-65535"]
    assert rows["patroni.etcdApi"][3] == r"`v2` \| `v3`"
    assert rows["keepalived.virtualRouterId"][2:4] == ["last octet of the VIP", "1-255"]
    assert rows["backup.retentionFull"][3] == "at least 1"
