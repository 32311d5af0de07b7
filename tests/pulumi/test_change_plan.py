"""The replay's plan: two runs of the program under mocks, diffed into the steps ``pulumi up`` takes.

Each stack edit's actions are what the providers' sources say (the rows of
components/provider_behaviour.py for the VMs, OTHER_PROVIDERS for the rest);
each test also runs the detector where it must fire (without the program's
guards, or on a hand-made plan), so none can pass by finding nothing.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

import components.tls
from components.change_plan import COMMAND, PASSWORD, Plan, Resource, diff, unknown_inputs
from components.provider_behaviour import SNIPPET, VM
from components.vm import ALLOW_NETWORK_CHANGE_ENV
from tests.pulumi.harness import LOCALLY_SIGNED_CERT, ProgramRun, first_run, replay_plan, stack_file_config


@pytest.fixture(scope="module", autouse=True)
def fixed_clock():
    """Both runs of a replay on the same day (a new day may renew certificates)."""
    import datetime as dt

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(components.tls, "utc_today", lambda: dt.date(2026, 12, 17))
        yield


@pytest.fixture(scope="module")
def dev(fixed_clock) -> ProgramRun:
    """The dev stack as deployed: every replay's old state."""
    return first_run(stack_file_config())


def edited(**keys: Any) -> dict[str, Any]:
    """The dev stack's config with ``pgha:<key>`` objects merged (``vm={"cores": 4}``)."""
    config = copy.deepcopy(stack_file_config())
    for key, value in keys.items():
        full = f"pgha:{key}"
        old = config.get(full)
        config[full] = {**old, **value} if isinstance(old, dict) and isinstance(value, dict) else value
    return config


def ops(plan: Plan, typ: str) -> dict[str, str]:
    return {s.resource.name: s.op for s in plan.steps if s.resource.typ == typ}


def test_cores_are_refused_and_as_written_reboot_every_vm_at_once(dev):
    """vm.cores: the preview refuses, one line naming the key, nothing done. Without the guards
    (no ignoreChanges, the provider's rebootAfterUpdate true) vmUpdate's cpu block sets
    rebootRequired and vmFinalizePowerState reboots every VM in the same wave: the violation."""
    new = edited(vm={"cores": 4})
    plan = replay_plan(dev, new)
    assert plan.verdict() == "refused by preview" and plan.steps == ()
    (line,) = [r for r in plan.refused if r.startswith("pgha:")]
    assert line.startswith("pgha:vm.cores: 2 -> 4")
    unguarded = replay_plan(dev, new, guards=False)
    assert unguarded.vm_actions() == dict.fromkeys(("backup-01", "psql-01", "psql-02", "psql-03"), "reboot")
    assert unguarded.verdict() == "VIOLATION"
    (violation,) = unguarded.violations()
    assert "reboot of 4 VMs at once" in violation
    assert "vmUpdate, cpu block" in unguarded.of(VM)[0].reason


def test_mtu_is_refused_and_when_allowed_every_nic_changes_at_once(dev, monkeypatch):
    """network.mtu: refused; with the operator's allowance, a live update (NICs hot-plugged, vmUpdate)
    of every VM in one wave, which the plan names as the outage it is."""
    new = edited(network={"mtu": 1400})
    plan = replay_plan(dev, new)
    assert next(r for r in plan.refused if r.startswith("pgha:")).startswith("pgha:network.mtu:")
    monkeypatch.setenv(ALLOW_NETWORK_CHANGE_ENV, "1")
    allowed = replay_plan(dev, new)
    assert set(allowed.vm_actions().values()) == {"live"}
    assert any("NICs of 4 VMs change at once" in v for v in allowed.violations())


def test_a_parameter_needing_restart_replaces_steps_only(dev):
    """max_connections: no VM input changes; the Patroni steps' triggers change, so their Commands are
    replaced (create runs again), config then verify after them: the restart rolls inside the steps."""
    plan = replay_plan(dev, edited(postgres={"parameters": {"max_connections": 150}}))
    assert plan.vm_actions() == {}
    commands = ops(plan, COMMAND)
    assert set(commands.values()) == {"replace"}
    assert {"psql-01-patroni", "psql-01-patroni-config", "psql-01-verify"} <= set(commands)
    waves = {s.resource.name: s.wave for s in plan.steps}
    assert waves["psql-01-patroni"] < waves["psql-01-patroni-config"] < waves["psql-01-verify"]
    assert plan.verdict() == "rolling"


def test_cert_validity_renews_certificates_and_reaches_no_vm_hardware(dev):
    """tls.certValidityDays moves the renewal epoch: the certificates are replaced (replacementTrigger),
    the steps carrying them run again, no VM is touched."""
    plan = replay_plan(dev, edited(tls={"certValidityDays": 200}))
    certs = ops(plan, LOCALLY_SIGNED_CERT)
    assert certs and set(certs.values()) == {"replace"}
    assert plan.vm_actions() == {}
    assert plan.verdict() == "rolling"


def test_a_role_added_creates_its_password_and_reruns_steps(dev):
    plan = replay_plan(dev, edited(roles=[{"name": "reporting"}]))
    assert ops(plan, PASSWORD) == {"pgha-role-reporting": "create"}
    assert plan.vm_actions() == {}
    assert ops(plan, COMMAND)


def test_an_unchanged_config_does_nothing(dev):
    plan = replay_plan(dev, stack_file_config())
    assert plan.steps == () and plan.verdict() == "nothing reaches the VMs"


# ---- the pure part, on hand-made resources ------------------------------------------------


def res(name: str, typ: str = COMMAND, deps: tuple[str, ...] = (), **options: Any) -> Resource:
    inputs = options.pop("inputs", {"triggers": ["a"]})
    return Resource(f"urn::{name}", typ, name, inputs, frozenset(f"urn::{d}" for d in deps), **options)


def keyed(*resources: Resource) -> dict[str, Resource]:
    return {r.urn: r for r in resources}


def test_waves_follow_dependencies_through_unchanged_resources():
    """a changes, b (unchanged) waits for a, c waits for b: c runs in the wave after a's."""
    old = keyed(res("a"), res("b", deps=("a",)), res("c", deps=("b",)), res("d"))
    new = keyed(
        res("a", inputs={"triggers": ["x"]}),
        res("b", deps=("a",)),
        res("c", deps=("b",), inputs={"triggers": ["y"]}),
        res("d", inputs={"triggers": ["z"]}),
    )
    plan = diff(old, new)
    assert {s.resource.name: s.wave for s in plan.steps} == {"a": 1, "d": 1, "c": 2}


def test_replace_with_and_deletes_in_reverse_order():
    vm_old = res("vm", VM, inputs={"vmId": 100})
    vm_new = res("vm", VM, inputs={"vmId": 101})
    step = res("step", deps=("vm",), replace_with=("urn::vm",), delete_before_replace=True)
    gone = res("gone-step", deps=("gone",))
    plan = diff(keyed(vm_old, step, res("gone"), gone), keyed(vm_new, step))
    by_name = {s.resource.name: s for s in plan.steps}
    assert by_name["vm"].op == "replace" and "ForceNewIf(mkVMID)" in by_name["vm"].reason
    assert by_name["step"].op == "replace" and by_name["step"].symbol == "-+"
    assert by_name["gone-step"].wave < by_name["gone"].wave


def test_two_vms_down_in_one_wave_is_a_violation_one_is_not():
    """The detector: one VM rebooted rolls; two in the same wave break the rule."""
    old = keyed(*(res(n, VM, inputs={"cpu": {"cores": 2}}) for n in ("v1", "v2")))
    one = keyed(res("v1", VM, inputs={"cpu": {"cores": 4}}), res("v2", VM, inputs={"cpu": {"cores": 2}}))
    both = keyed(*(res(n, VM, inputs={"cpu": {"cores": 4}}) for n in ("v1", "v2")))
    assert diff(old, one).verdict() == "rolling"
    assert diff(old, both).verdict() == "VIOLATION"
    guarded = keyed(
        *(res(n, VM, inputs={"cpu": {"cores": 4}}, ignore_changes=("cpu",)) for n in ("v1", "v2"))
    )
    assert diff(old, guarded).steps == ()
    assert diff(old, guarded, guards=False).verdict() == "VIOLATION"


OPERATOR_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHq0a1gHqZKpJ9xB2m3n4o5p6q7r8s9t0u1v2w3x4y5z second@example.org"
)


def test_a_new_operator_key_replaces_snippets_and_reaches_no_vm(dev):
    """The user-data snippets are replaced (sourceRaw is ForceNew); the VMs' ``userDataFileId`` is
    unknown until then, but under ``ignoreChanges``: cloud-init ran once, the VMs keep running."""
    ssh = stack_file_config()["pgha:ssh"]
    plan = replay_plan(dev, edited(ssh={"authorizedKeys": [*ssh["authorizedKeys"], OPERATOR_KEY]}))
    snippets = {s.resource.name: s.op for s in plan.steps if s.resource.typ == SNIPPET}
    assert snippets and set(snippets.values()) == {"replace"}
    assert plan.vm_actions() == {}, plan.render()
    assert plan.verdict() == "nothing reaches the VMs", plan.render()
    # Without the guards, the unknown file id reaches every VM (and the replay cannot judge it).
    unguarded = replay_plan(
        dev, edited(ssh={"authorizedKeys": [*ssh["authorizedKeys"], OPERATOR_KEY]}), guards=False
    )
    assert len(unguarded.vm_actions()) == 4, unguarded.render()


def test_an_unknown_input_narrows_to_the_leaves_holding_the_replaced_id():
    vm = res(
        "vm",
        VM,
        inputs={
            "initialization": {"userDataFileId": "local:snippets/ud.yaml", "datastoreId": "local"},
            "cpu": {"cores": 2},
        },
        property_dependencies={"initialization": frozenset({"urn::ud"}), "cpu": frozenset({"urn::other"})},
    )
    assert unknown_inputs(vm, {"urn::ud": "local:snippets/ud.yaml"}) == ["initialization.userDataFileId"]
    # A replaced dependency whose id no leaf shows (another output feeds it): the whole input.
    assert unknown_inputs(vm, {"urn::ud": "something-else"}) == ["initialization"]
    assert unknown_inputs(vm, {"urn::other": "x"}) == ["cpu"]
    assert unknown_inputs(vm, {}) == []
