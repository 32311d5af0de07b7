"""Commands are named ``<node>-<step>``; a stack deployed under the numbered names sees no change.

Every stack (and a variant with a rolling upgrade) runs under the mocks; each
Command that had a numbered name carries an alias to it, the aliases map one to
one onto the Commands of the golden file (written from the program before the
rename, tests/pulumi/command_golden.py), and each Command's script, stdin,
trigger, connection, dependencies and options hash as they did then.
"""

from __future__ import annotations

import json

import pytest

from components.legacy_names import LEGACY_PHASES, command_name, legacy_command_name
from pgha import ClusterSecrets, ClusterTls, load_spec, plan
from tests.pulumi.command_golden import GOLDEN_PATH, fingerprints, stack_config, stack_run, stacks
from tests.pulumi.harness import COMMAND, ProgramRun

GOLDEN = json.loads(GOLDEN_PATH.read_text())


def renamed(run: ProgramRun) -> dict[str, str]:
    """Each Command's name -> the name its alias gives (the name before the rename)."""
    result = {}
    for command in run.of_type(COMMAND):
        assert len(command.aliases) <= 1, command.name
        if command.aliases:
            result[command.name] = command.aliases[0]
    return result


def expected_names(label: str) -> dict[str, str | None]:
    """Each step's Command name -> its legacy name, from the core's plan."""
    stack, config = stack_config(label)
    spec = load_spec({k.removeprefix("pgha:"): v for k, v in config.items() if k.startswith("pgha:")}, stack)
    secrets = ClusterSecrets.placeholders(r.name for r in spec.login_roles)
    return {
        command_name(node.name, step.name): legacy_command_name(node.name, step.name)
        for node in spec.nodes
        for step in plan.node_steps(spec, node, secrets, ClusterTls.placeholders(spec))
    }


def test_every_stack_has_a_golden_entry():
    assert sorted(GOLDEN) == sorted(stacks())


@pytest.mark.parametrize("label", stacks())
def test_commands_named_by_step_alias_their_old_names_and_ask_the_same(label: str):
    run = stack_run(label)
    old_name = renamed(run)
    expected = expected_names(label)
    # Named <node>-<step>; the aliased ones are exactly those with a legacy name.
    assert {c.name for c in run.of_type(COMMAND) if not c.name.endswith("-leave")} == set(expected)
    assert old_name == {new: old for new, old in expected.items() if old}
    # One to one onto the golden names: none claimed twice, none lost.
    assert len(set(old_name.values())) == len(old_name)
    assert {old_name.get(c.name, c.name) for c in run.of_type(COMMAND)} == set(GOLDEN[label])
    # Same script, stdin, trigger, connection, dependencies and options as before the rename.
    assert fingerprints(run, old_name) == GOLDEN[label]


def test_the_legacy_table_names_todays_steps_only():
    """History is frozen: only steps that existed under numbered names have a number."""
    assert set(LEGACY_PHASES) <= set(plan.step_names())
    assert legacy_command_name("psql-01", "haproxy") == "psql-01-05-haproxy"
    assert legacy_command_name("psql-01", "a-step-added-later") is None
