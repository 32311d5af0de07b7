"""What each stack's remote Commands ask of the engine, as short hashes: the rename's yardstick.

``commands.golden.json`` was written by ``python -m tests.pulumi.command_golden``
from the program as it was while Commands were still named ``<node>-<NN>-<step>``
(the mocks' passwords and keys are derived from resource names, so the hashes
are deterministic). The test (test_command_names.py) fingerprints today's
program the same way and compares, Command by Command, through each Command's
alias to its old name: same script, same stdin bundle, same trigger digest, same
connection, same dependencies, same options.

Regenerate it on purpose when a step changes, and read the diff: its changed
entries are the Commands a deployed stack runs again on its next ``up``, and
its new ones are the steps added since (named ``<node>-<step>``, no alias).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from pgha.files import REPO_DIR
from tests.pulumi.harness import (
    COMMAND,
    ProgramRun,
    run_program,
    stack_file_config,
    stack_file_secret_keys,
)

GOLDEN_PATH = Path(__file__).with_name("commands.golden.json")


# Beside every stack file: a variant with the steps no stack file asks for (a rolling upgrade).
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "dev+upgrade": ("dev", {"pgha:maintenance": {"upgrade": 1}})
}


def stacks() -> list[str]:
    """Every ``Pulumi.*.yaml`` stack, then the variants."""
    files = sorted(
        p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in REPO_DIR.glob("Pulumi.*.yaml")
    )
    return [*files, *VARIANTS]


def _short_hash(value: Any) -> str:
    """Sixteen hex digits of the value's canonical JSON (secret wrappers included: a lost secret shows)."""
    text = json.dumps(value, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fingerprints(run: ProgramRun, old_name: dict[str, str] | None = None) -> dict[str, dict[str, str]]:
    """Each Command's inputs and options, hashed, keyed by its (old) name.

    ``old_name`` maps a Command's registered name to the name it had before the
    rename (through its alias); dependencies are named the same way, so an
    unchanged ``depends_on`` hashes the same.
    """
    rename = old_name or {}
    by_urn = {r.urn: r for r in run.monitor.registrations.values()}

    def name_of(urn: str) -> str:
        registration = by_urn[urn]
        return f"{registration.typ}::{rename.get(registration.name, registration.name)}"

    result = {}
    for command in run.of_type(COMMAND):
        inputs = dict(command.inputs)
        options = {
            "dependencies": sorted(name_of(u) for u in command.dependencies),
            "replace_with": sorted(name_of(u) for u in command.replace_with),
            "parent": name_of(command.parent) if command.parent in by_urn else command.parent,
            "additional_secret_outputs": sorted(command.additional_secret_outputs),
        }
        result[rename.get(command.name, command.name)] = {
            "create": _short_hash(inputs.pop("create", None)),
            "delete": _short_hash(inputs.pop("delete", None)),
            "stdin": _short_hash(inputs.pop("stdin", None)),
            "triggers": _short_hash(inputs.pop("triggers", None)),
            "connection": _short_hash(inputs.pop("connection", None)),
            "other_inputs": _short_hash(inputs),
            "options": _short_hash(options),
        }
    return dict(sorted(result.items()))


def stack_config(label: str) -> tuple[str, dict[str, Any]]:
    """The stack a label names and its config (a variant's overrides applied)."""
    stack, overrides = VARIANTS.get(label, (label, {}))
    return stack, {**stack_file_config(stack), **overrides}


def stack_run(label: str) -> ProgramRun:
    stack, config = stack_config(label)
    run = run_program(config, stack, secret_keys=stack_file_secret_keys(stack))
    if run.error is not None:
        raise RuntimeError(f"stack {label}: {run.errors}")
    return run


def main() -> int:
    import asyncio

    golden = {}
    for stack in stacks():
        asyncio.set_event_loop(asyncio.new_event_loop())
        run = stack_run(stack)
        old_name = {c.name: c.aliases[0] for c in run.of_type(COMMAND) if c.aliases}
        golden[stack] = fingerprints(run, old_name)
    GOLDEN_PATH.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
    print(f"wrote {sum(len(v) for v in golden.values())} Commands of {len(golden)} stacks to {GOLDEN_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
