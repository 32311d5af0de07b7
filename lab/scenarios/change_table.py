"""``python -m lab bench changes``: the change table's rows, each replayed there and back on the lab.

A row is a small edit of the stack's file (keys set, or appended to a list)
that a volunteer would make months later. Each is replayed as
``pulumi up`` would do it (lab/scenarios/change.py): first to the edited
file, then back, under the writer; a row's result is both summaries. The
table covers the kinds of change that reach running VMs without rebuilding
them: reload-only and restart-needing parameters, Patroni's DCS settings,
HAProxy and keepalived timings, access lists, a database, credentials and
certificate generations, backup settings. Hardware, template and network
rows are refused at preview; the replay shows that without a lab
(``--plan-only``).
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pgha.files import REPO_DIR

from ..cluster import Lab
from . import change


@dataclass(frozen=True)
class Row:
    """One change: ``edits`` maps a ``pgha:`` key path (dots; ``[]`` appends) to its new value."""

    name: str
    edits: dict[str, Any]


ROWS: tuple[Row, ...] = (
    Row("reload-only parameter (work_mem)", {"postgres.parameters.work_mem": "8MB"}),
    Row("restart-needing parameter (shared_buffers)", {"postgres.parameters.shared_buffers": "160MB"}),
    # Lowered: the primary restarts first (a standby's may not be below the primary's); back up:
    # the replicas first, then a switchover.
    Row("max_connections lowered", {"postgres.parameters.max_connections": 180}),
    Row("Patroni DCS setting (maximumLagOnFailover)", {"patroni.maximumLagOnFailover": 2097152}),
    Row("HAProxy check timings", {"haproxy.checkInterMs": 1500, "haproxy.checkFall": 4}),
    Row("HAProxy maxconn", {"haproxy.maxconn": 900}),
    Row("keepalived advert interval", {"keepalived.advertIntervalMs": 1500}),
    Row("clients allowed (one more network)", {"clients.allowFrom[]": "10.0.0.0/24"}),
    Row("metrics scrapers (one more)", {"monitoring.allowFrom[]": "10.0.0.2/32"}),
    Row(
        "a database added",
        # The whole list: the default (`app`, the lab's clients' database) stays declared.
        {"databases": [{"name": "app", "owner": "app"}, {"name": "replay_db", "owner": "replay_owner"}]},
    ),
    Row("certificates re-issued (tls.rotation)", {"tls.rotation": 1}),
    Row("internal secrets rotated", {"secretRotation.replication": 1, "secretRotation.restApi": 1}),
    Row(
        "a VM added (psql-04), then removed", {"vms[]": {"name": "psql-04", "host": "pve2", "ip": "10.0.0.5"}}
    ),
    # Not vm.diskGb: its way back is a shrink, which the provider refuses at apply ('Cannot shrink'),
    # and the lab does not model a disk's size.
    Row(
        "one more operator key",
        {
            "ssh.authorizedKeys[]": "ssh-ed25519 "
            "AAAAC3NzaC1lZDI1NTE5AAAAIHq0a1gHqZKpJ9xB2m3n4o5p6q7r8s9t0u1v2w3x4y5z replay@example.org"
        },
    ),
    Row("backup schedule", {"backup.fullSchedule": "Sun *-*-* 02:30:00"}),
    Row("archive timeout", {"backup.archiveTimeoutS": 45}),
)


def _set(config: dict[str, Any], path: str, value: Any) -> None:
    """Set ``pgha:`` + ``path`` in a stack file's config; ``name[]`` appends to a list."""
    *parents, last = f"pgha:{path}".split(".")
    node = config
    for part in parents:
        node = node.setdefault(part, {})
    if last.endswith("[]"):
        last = last[:-2]
        node[last] = [*(node.get(last) or []), value]
    else:
        node[last] = value


def edited(document: dict[str, Any], row: Row) -> dict[str, Any]:
    """The stack file's document with the row's edits; the original untouched."""
    result = copy.deepcopy(document)
    config = result.setdefault("config", {})
    for path, value in row.edits.items():
        _set(config, path, copy.deepcopy(value))
    return result


def select(names: Iterable[str] | None) -> list[Row]:
    """The rows whose names contain any of ``names`` (all without); an unknown name is an error."""
    if not names:
        return list(ROWS)
    chosen = [r for r in ROWS if any(n.lower() in r.name.lower() for n in names)]
    unknown = [n for n in names if not any(n.lower() in r.name.lower() for r in ROWS)]
    if unknown:
        raise KeyError(f"no change-table row matches {unknown}; rows: {[r.name for r in ROWS]}")
    return chosen


def replay(
    lab: Lab, rows: Iterable[Row], emit: Callable[[dict[str, Any]], None] | None = None
) -> list[dict[str, Any]]:
    """Each row there and back on the lab; a failed leg is reported and the next row tried."""
    original = REPO_DIR / f"Pulumi.{lab.stack}.yaml"
    document = yaml.safe_load(original.read_text())
    results = []
    with tempfile.TemporaryDirectory(prefix="pgha-changes-") as scratch:
        for row in rows:
            there = Path(scratch) / f"Pulumi.{lab.stack}.next.yaml"
            there.write_text(yaml.safe_dump(edited(document, row)))
            entry: dict[str, Any] = {"row": row.name, "edits": {k: str(v) for k, v in row.edits.items()}}
            # Back even after a failed leg: the next row starts from the stack's own file.
            for leg, (start, to) in (("there", (original, there)), ("back", (there, original))):
                try:
                    plan = change.compute(lab.stack, to, start=start)
                    entry[leg] = change.carry_out(lab, plan, change.new_spec(lab.stack, to))
                except Exception as exc:  # a failed leg is a result too: report it, go on
                    entry[leg] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
            if emit is not None:
                emit(entry)
            results.append(entry)
    return results


def table(results: list[dict[str, Any]]) -> str:
    """The runs as docs/proxmox-changes.md's replay table: kind, longest gap and lost, both ways."""
    lines = ["| change | kind | longest gap there, back | lost | rule |", "|---|---|---|---|---|"]
    for entry in results:
        legs = [entry.get(leg) or {} for leg in ("there", "back")]
        errors = [leg["error"] for leg in legs if "error" in leg]
        if errors:
            first_line = errors[0].splitlines()[0][:160].replace("|", "/")
            lines.append(f"| {entry['row']} | failed: {first_line} | | | |")
            continue
        gaps = ", ".join(f"{leg.get('max_gap_s', 0):.2f} s" for leg in legs)
        lost = sum(int(leg.get("lost", 0)) for leg in legs)
        rules = {leg.get("rule", leg.get("kind")) for leg in legs}
        lines.append(
            f"| {entry['row']} | {legs[0].get('kind')} | {gaps} | {lost} | {', '.join(sorted(rules))} |"
        )
    return "\n".join(lines)
