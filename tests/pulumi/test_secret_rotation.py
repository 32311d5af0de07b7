"""pgha:secretRotation under mocks: a new generation renews one secret, and re-runs only its steps.

Compared the way ``pulumi preview`` would after ``pulumi config set --path
pgha:secretRotation.<key> 1``: the RandomPassword whose keepers changed is
replaced (the mocks derive a new value from the new keeper, as the provider
draws one), and a Command runs again exactly when its trigger (the digest of
its script and bundle) changed.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest

from components.legacy_names import command_name
from pgha.schema import camel
from pgha.secrets import ROTATION
from tests.pulumi.harness import COMMAND, PASSWORD, ProgramRun, run_program, stack_file_config, unwrap

DATABASE_VMS = ("psql-01", "psql-02", "psql-03")
# What each generation renews in the dev stack: the steps holding the secret, on the VMs
# holding it. verify's digest is the fingerprint of every other step: it runs again whenever
# anything else does.
EXPECTED: dict[str, set[str]] = {
    "superuser": {"patroni"},
    "replication": {"patroni"},
    "rewind": {"patroni"},
    "rest_api": {"patroni"},
    "haproxy_stats": {"haproxy"},
    "verify": {"databases", "verify"},
    # The PgBouncer exporter logs into PgBouncer's console as pgha_pooler (pgha:monitoring).
    "pooler": {"databases", "pooler", "monitoring"},
    "maintenance_marker": {"system"},
    "rolling_marker": {"system"},
}


def rotated(**generations: int) -> ProgramRun:
    config = stack_file_config()
    config["pgha:secretRotation"] = {camel(k): v for k, v in generations.items()}
    return run_program(config)


@functools.cache
def baseline() -> ProgramRun:
    run = run_program(stack_file_config())
    assert run.error is None, run.errors
    return run


def passwords(run: ProgramRun) -> dict[str, dict[str, Any]]:
    """Each generated cluster secret's inputs (keepers included), by resource name."""
    return {r.name: unwrap(r.inputs) for r in run.of_type(PASSWORD) if not r.name.startswith("pgha-role-")}


def triggers(run: ProgramRun) -> dict[str, Any]:
    return {r.name: unwrap(r.inputs)["triggers"] for r in run.of_type(COMMAND) if "triggers" in r.inputs}


def changed_commands(before: ProgramRun, after: ProgramRun) -> set[str]:
    old, new = triggers(before), triggers(after)
    assert set(old) == set(new)
    return {name for name in new if new[name] != old[name]}


def field_of(key: str) -> str:
    (field,) = [f for f, k in ROTATION.items() if k == key]
    return field


def resource_of(key: str) -> str:
    return "pgha-" + field_of(key).replace("_", "-")


def test_generation_zero_adds_no_keeper_to_a_deployed_stack():
    """Stacks made before rotations existed have no keepers: adding {"rotation": "0"} would be
    a diff, a new value of every secret (and the backup cipher's) on the next up."""
    found = passwords(baseline())
    assert {resource_of(k) for k in ROTATION.values()} == set(found)
    assert all("keepers" not in inputs for inputs in found.values()), found


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_a_generation_renews_its_secret_and_reruns_only_its_steps(key):
    after = rotated(**{key: 1})
    assert after.error is None, after.errors
    old, new = passwords(baseline()), passwords(after)
    if key.endswith("_marker"):
        # The even slot keeps the previous key (no keeper change); a new odd slot signs.
        assert new.keys() - old.keys() == {resource_of(key) + "-odd"}
        assert new[resource_of(key) + "-odd"]["keepers"] == {"rotation": "1"}
        assert {n for n in old if old[n] != new[n]} == set()
    else:
        assert new.keys() == old.keys()
        assert {n for n in old if old[n] != new[n]} == {resource_of(key)}
        assert new[resource_of(key)]["keepers"] == {"rotation": "1"}
    wanted = {command_name(vm, step) for vm in DATABASE_VMS for step in EXPECTED[key] - {"verify"}}
    (verify,) = [n for n in triggers(after) if n.endswith("-verify")]
    assert changed_commands(baseline(), after) == wanted | {verify}
    # The secrets the cluster hands the steps: that one new, every other one as before.
    fields = {f for f in ROTATION if f != "backup_cipher_pass"}
    before_values = baseline().mocks.secrets()
    after_values = after.mocks.secrets()
    assert {f for f in fields if getattr(before_values, f) != getattr(after_values, f)} <= {field_of(key)}


def test_every_rotatable_secret_has_an_expectation():
    spec_keys = {f for f in ROTATION.values() if f != "backup_cipher"}
    assert set(EXPECTED) == spec_keys


def test_a_marker_key_keeps_its_predecessor_for_one_generation():
    """Generation 1: the odd slot signs, the untouched even one verifies; generation 2: a new even
    key signs and the odd one (generation 1's) verifies. The key file holds that ring."""
    one, two = rotated(rolling_marker=1), rotated(rolling_marker=2)
    assert one.error is None and two.error is None, (one.errors, two.errors)
    even, odd = "pgha-rolling-marker-key", "pgha-rolling-marker-key-odd"
    assert passwords(one)[even] == passwords(baseline())[even]
    assert passwords(two)[odd] == passwords(one)[odd]
    assert passwords(two)[even]["keepers"] == {"rotation": "2"}
    rings = {}
    for generation, run in ((1, one), (2, two)):
        step = unwrap(run.named(COMMAND, command_name("psql-01", "system")).inputs)["stdin"]
        values = run.mocks.passwords
        rings[generation] = (values, step)
    values, stdin = rings[1]
    assert f"{values[odd]}\\n{values[even]}\\n" in stdin
    values, stdin = rings[2]
    assert f"{values[even]}\\n{values[odd]}\\n" in stdin


def test_the_backup_cipher_is_refused_at_preview_naming_the_key():
    run = rotated(backup_cipher=1)
    assert run.error is not None
    (line,) = [e for e in run.errors if "secretRotation" in e]
    assert line.startswith("pgha:secretRotation.backupCipher: ")
    assert "new repository" in line and "\n" not in line
    assert not run.of_type(COMMAND)  # nothing was created


def test_all_at_once_renews_every_rotatable_secret():
    after = rotated(**dict.fromkeys(EXPECTED, 1))
    assert after.error is None, after.errors
    old, new = passwords(baseline()), passwords(after)
    markers = {resource_of("maintenance_marker"), resource_of("rolling_marker")}
    # Generation 1: the markers' new odd slots sign, their even slots (generation 0) verify.
    assert {n for n in old if old[n] != new[n]} == {resource_of(k) for k in EXPECTED} - markers
    assert new.keys() - old.keys() == {m + "-odd" for m in markers}
    steps = set().union(*EXPECTED.values()) - {"verify"}
    wanted = {command_name(vm, s) for vm in DATABASE_VMS for s in steps}
    (verify,) = [n for n in triggers(after) if n.endswith("-verify")]
    # Nothing on the repository VM: the backup cipher is not rotated.
    assert changed_commands(baseline(), after) == wanted | {verify}


def test_jumping_generations_renews_both_marker_slots():
    """From 0 to 3: the even slot's keeper is 2 and the odd one's 3, both new: no key of generation 0
    survives, as no generation in between was ever deployed to hand it over."""
    after = rotated(maintenance_marker=3)
    new = passwords(after)
    assert new[resource_of("maintenance_marker")]["keepers"] == {"rotation": "2"}
    assert new[resource_of("maintenance_marker") + "-odd"]["keepers"] == {"rotation": "3"}
