"""Months later, `pulumi up` must not be what takes the cluster down.

Two stack configs are compared the way ``pulumi preview`` would after a
``pulumi config set``: the second run goes through :class:`PreviousState`,
which does what the engine does with a previous state (ignored inputs keep
their old values, ``processIgnoreChanges`` in Pulumi's step generator), so
the VMs' outputs there are the values the running VMs have. What the
provider would then do to each VM is read off components/provider_behaviour.py,
whose rows cite bpg/terraform-provider-proxmox (commit ``d6bd1ffe``):

- ``proxmoxtf/resource/vm/vm.go``, ``vmUpdate``: cores and memory need a
  restart (the cpu and memory blocks set ``rebootRequired``);
  ``vmFinalizePowerState`` restarts the VM only if ``reboot_after_update``;
  with it false, ``rebootAfterUpdateDisabledWarning`` leaves it pending, and
  disk or cloud-init drive moves fail (``rebootAfterUpdateDisabledError``);
- network devices are hot-plugged ("Network devices can be hotplugged, no
  reboot required"): every VM's NIC changes in the same ``up``;
- every field of ``clone`` is ``ForceNew`` (``VM()`` schema).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pulumi
import pytest

import components.tls
from components.provider_behaviour import (
    IMAGE,
    PROVIDER_BEHAVIOUR,
    SNIPPET,
    Effect,
    Handling,
    generic_path,
    predict,
    row,
)
from components.tls import ca_renew_before_days, renewal_epoch
from components.vm import (
    ALLOW_NETWORK_CHANGE_ENV,
    HARDWARE_INPUTS,
    NETWORK_INPUTS,
    TEMPLATE_INPUTS,
    Hardware,
    hardware_problems,
    vm_ignore_changes,
)
from pgha.files import REPO_DIR
from tests.pulumi.harness import (
    LOCALLY_SIGNED_CERT,
    PASSWORD,
    SELF_SIGNED_CERT,
    VM,
    ProgramRun,
    previous_state,
    run_program,
    stack_file_config,
    unwrap,
)
from tests.pulumi.test_proxmox_changes import paths

CIPHER_PASSWORD = "pgha-backup-cipher-pass"
REPOSITORY_VM = "backup-01"


# --- two runs, as two `pulumi up`s ---------------------------------------------------------


def first_up(config: dict[str, Any], stack: str = "dev") -> ProgramRun:
    run = run_program(config, stack, monitor_class=previous_state(None))
    assert run.error is None, run.errors
    return run


def second_up(
    before: ProgramRun, config: dict[str, Any], stack: str = "dev", forget: tuple[str, ...] = ()
) -> ProgramRun:
    """The second run; ``run.error`` is the refusal, if any."""
    return run_program(config, stack, monitor_class=previous_state(before, forget))


def warnings_of(run: ProgramRun) -> list[str]:
    return [r.getMessage() for r in run.handler.records if r.levelname == "WARNING"]


def errors_about(run: ProgramRun, key: str) -> list[str]:
    return [e for e in run.errors if e.startswith(f"pgha:{key}:")]


def vm_predictions(before: ProgramRun, after: ProgramRun, *, as_written: bool = False) -> dict[str, str]:
    """What the provider would do to each VM, per the table (the replay's question).

    The inputs of ``after`` already carry the old values of ignored inputs;
    ``as_written`` takes the program's own inputs instead (no ignore_changes),
    with the provider's default reboot_after_update: what the same diff did
    before this guard existed.
    """
    result = {}
    for vm in after.of_type(VM):
        new_inputs = unwrap(after.monitor.goals[(VM, vm.name)] if as_written else vm.inputs)
        old = paths(unwrap(before.named(VM, vm.name).inputs))
        new = paths(new_inputs)
        changed = {p for p in old.keys() | new.keys() if old.get(p) != new.get(p)}
        reboot = True if as_written else bool(new_inputs.get("rebootAfterUpdate", True))
        result[vm.name] = predict(VM, changed, reboot_after_update=reboot).action
    return result


def with_vm(**changes: Any) -> dict[str, Any]:
    config = stack_file_config()
    config["pgha:vm"] = {**config["pgha:vm"], **changes}
    return config


def with_network(**changes: Any) -> dict[str, Any]:
    config = stack_file_config()
    config["pgha:network"] = {**config["pgha:network"], **changes}
    return config


def template_config(template: int = 9000) -> dict[str, Any]:
    return with_vm(templateVmId=template, templateNode="pve1")


# The module's clock: a day whose CA renewal epoch outlasts the node certificates' next one.
TODAY = dt.date(2026, 12, 17)


@pytest.fixture(scope="module", autouse=True)
def fixed_clock():
    """Every run of this module sees the same day unless a test moves it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(components.tls, "utc_today", lambda: TODAY)
        yield patch


@pytest.fixture(scope="module")
def dev(fixed_clock) -> ProgramRun:
    return first_up(stack_file_config())


@pytest.fixture(scope="module")
def network_allowed(dev: ProgramRun) -> ProgramRun:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ALLOW_NETWORK_CHANGE_ENV, "1")
        return second_up(dev, with_network(bridge="vmbr2", vlan=30, mtu=1400))


@pytest.fixture(scope="module")
def template(fixed_clock) -> ProgramRun:
    return first_up(template_config())


# --- a. the table ------------------------------------------------------------------------------


def test_every_input_the_program_sets_has_a_row(dev, template, network_allowed):
    """A replay must never meet an input it cannot predict: each VM, snippet and image input has a row
    (the dev stack, a template stack, and VLAN and MTU set)."""
    for run in (dev, template, network_allowed):
        for typ in (VM, SNIPPET, IMAGE):
            for registration in run.of_type(typ):
                for path in paths(unwrap(registration.inputs)):
                    assert row(typ, path) is not None, f"{typ} {path}: no row in provider_behaviour"
    set_paths = {p for r in template.of_type(VM) for p in paths(unwrap(r.inputs))}
    assert {"clone.vmId", "cpu.cores", "rebootAfterUpdate"} <= set_paths
    set_paths = {p for r in network_allowed.of_type(VM) for p in paths(unwrap(r.inputs))}
    assert {"networkDevices[0].vlanId", "networkDevices[0].mtu"} <= set_paths


def test_the_table_agrees_with_the_vm_options():
    """Rows pgha keeps away from running VMs are exactly the VM's ignore_changes (the table is the truth)."""
    kept = {
        "clone" if r.path.startswith("clone.") else r.path
        for r in PROVIDER_BEHAVIOUR
        if r.resource == VM and r.handling in (Handling.CREATE_ONLY, Handling.REFUSED)
    }
    assert kept == {generic_path(p) for p in vm_ignore_changes()}
    assert {generic_path(p) for p in vm_ignore_changes(allow_network_change=True)} == kept - {
        generic_path(p) for p in NETWORK_INPUTS
    }
    # Every row cites a file of the provider; reboot_after_update governs only restarts and stops.
    for behaviour in PROVIDER_BEHAVIOUR:
        assert re.match(r"(proxmoxtf|fwprovider)/\S+\.go: ", behaviour.source), behaviour
        if behaviour.reboot_after_update:
            assert behaviour.effect in (Effect.REBOOT, Effect.STOPPED), behaviour


def test_predict_reads_the_table():
    """cores: a reboot with the provider's default, pending with reboot_after_update false; clone: replace."""
    assert predict(VM, ["cpu.cores"]).action == "reboot"
    assert predict(VM, ["cpu.cores"], reboot_after_update=False).action == "pending"
    assert predict(VM, ["clone.vmId"]).action == "replace"
    assert predict(VM, ["clone.vmId"], ["clone"]).action == "none"
    assert predict(VM, ["disks[0].datastoreId", "cpu.cores"]).action == "stop"
    assert predict(VM, ["networkDevices[0].mtu"]).action == "update"
    assert predict(VM, ["nodeName"]).action == "migrate"
    assert predict(VM, ["somethingNew"]).unknown == ("somethingNew",)


# --- b. no VM restarts by itself; hardware changes refused or rolled --------------------------


def test_no_vm_may_be_restarted_by_the_provider(dev):
    """reboot_after_update false on every VM (vm.go: vmFinalizePowerState, vmPowerOffForPendingChanges)."""
    vms = dev.of_type(VM)
    assert len(vms) == 4
    for vm in vms:
        assert unwrap(vm.inputs)["rebootAfterUpdate"] is False, vm.name
        assert set(HARDWARE_INPUTS + TEMPLATE_INPUTS + NETWORK_INPUTS) <= set(vm.ignore_changes)


def test_a_resize_is_refused_at_preview_and_restarts_nothing(dev):
    """New vm.cores on a running cluster: one line naming the key; no VM would restart. The same
    diff as the program writes it, without ignore_changes and with the provider's default
    reboot_after_update, restarts every VM at once: the detector can fail."""
    after = second_up(dev, with_vm(cores=4))
    assert isinstance(after.error, pulumi.RunError)
    (line,) = errors_about(after, "vm.cores")
    assert "2 -> 4" in line and "one at a time" in line
    assert set(vm_predictions(dev, after).values()) == {"none"}
    assert set(vm_predictions(dev, after, as_written=True).values()) == {"reboot"}


def test_vms_are_rebuilt_one_at_a_time_with_warnings_only(dev):
    """Once one VM is rebuilt (destroyed with --target, created anew), the up goes through and the
    others are warned about; a new disk size in the same up is an online resize (vmUpdateDiskSize)."""
    size = int(unwrap(dev.named(VM, "psql-01").inputs)["disks"][0]["size"])
    after = second_up(dev, with_vm(cores=4, diskGb=size + 10), forget=("psql-03",))
    assert after.error is None, after.errors
    (warning,) = [w for w in warnings_of(after) if w.startswith("pgha:vm.cores:")]
    assert "backup-01, psql-01, psql-02 still run with 2" in warning
    assert unwrap(after.named(VM, "psql-03").inputs)["cpu"]["cores"] == 4
    assert unwrap(after.named(VM, "psql-01").inputs)["cpu"]["cores"] == 2
    predictions = vm_predictions(dev, after)
    assert {predictions[n] for n in ("backup-01", "psql-01", "psql-02")} == {"update"}


def test_memory_and_datastore_changes_are_refused_too(dev):
    """memory (vmUpdate's memory block) and disk moves (vmPlanDiskLocationAndSizeChanges) alike."""
    after = second_up(dev, with_vm(memoryMb=4096, datastore="ceph-vm"))
    assert isinstance(after.error, pulumi.RunError)
    assert errors_about(after, "vm.memoryMb") and errors_about(after, "vm.datastore")
    assert set(vm_predictions(dev, after).values()) == {"none"}
    as_written = vm_predictions(dev, after, as_written=True)
    assert set(as_written.values()) == {"stop"}


# --- clone block: no replacement of every VM ----------------------------------------------


def test_a_new_template_replaces_no_vm(template):
    """Every clone field is ForceNew (VM() schema): ignored, so no VM is replaced; a warning names
    the key. As written, the same diff replaces every VM (the detector can fail)."""
    after = second_up(template, template_config(9001))
    assert after.error is None, after.errors
    assert set(vm_predictions(template, after).values()) == {"none"}
    (warning,) = [w for w in warnings_of(after) if w.startswith("pgha:vm.templateVmId:")]
    assert "9000" in warning and "9001" in warning
    assert set(vm_predictions(template, after, as_written=True).values()) == {"replace"}


# --- e. the private network ----------------------------------------------------------------


def test_network_changes_are_refused_unless_the_operator_allows_them(dev, network_allowed):
    """NICs are hot-plugged on every VM in the same `up` (vmUpdate): refused by default, one line
    per key; with the operator's explicit allowance the change goes through (an update, no restart)."""
    after = second_up(dev, with_network(bridge="vmbr2", vlan=30, mtu=1400))
    assert isinstance(after.error, pulumi.RunError)
    (mtu,) = errors_about(after, "network.mtu")
    assert "none -> 1400" in mtu and ALLOW_NETWORK_CHANGE_ENV in mtu
    (bridge,) = errors_about(after, "network.bridge")
    assert "vmbr1 -> vmbr2" in bridge
    assert errors_about(after, "network.vlan")
    assert set(vm_predictions(dev, after).values()) == {"none"}
    assert set(vm_predictions(dev, after, as_written=True).values()) == {"update"}

    assert network_allowed.error is None, network_allowed.errors
    assert set(vm_predictions(dev, network_allowed).values()) == {"update"}


def test_hardware_problems_rules():
    """Refused while no VM has the new value; then a warning; the template only ever warns."""
    old = Hardware(2, 2048, "local-lvm", "local-lvm", "vmbr1", None, None, None, None)
    new = Hardware(4, 2048, "local-lvm", "local-lvm", "vmbr1", None, None, 9000, "pve1")
    errors, warnings = hardware_problems({"a": new, "b": new}, {"a": old, "b": old})
    assert len(errors) == 1 and errors[0].startswith("pgha:vm.cores: 2 -> 4")
    assert [w for w in warnings if w.startswith("pgha:vm.templateVmId: a, b still run with none")]
    errors, warnings = hardware_problems({"a": new, "b": new}, {"a": old, "b": new})
    assert errors == [] and [w for w in warnings if w.startswith("pgha:vm.cores: a still run with 2")]
    assert hardware_problems({"a": old}, {"a": old}) == ([], [])


# --- c. certificates renewed by a plain `up` ------------------------------------------------


def _next_epoch_day(day: dt.date, validity: int, before_end: int) -> dt.date:
    epoch = renewal_epoch("dev", day, validity, before_end)
    while renewal_epoch("dev", day, validity, before_end) == epoch:
        day += dt.timedelta(days=1)
    return day


def test_the_renewal_epoch_renews_every_certificate_before_its_end():
    """Issued on any day, a certificate is re-issued by the first up of the next epoch, at least
    renew_before days before its end; the epoch is one number all day long."""
    for validity, before_end in ((365, 30), (90, 30), (30, 10), (3650, ca_renew_before_days(3650))):
        for issued_offset in range(0, validity * 2, 5):
            issued = TODAY + dt.timedelta(days=issued_offset)
            renewed = _next_epoch_day(issued, validity, before_end)
            assert (issued + dt.timedelta(days=validity) - renewed).days >= before_end, (validity, issued)
    days = [TODAY + dt.timedelta(days=n) for n in range(400)]

    def flips(stack: str) -> list[dt.date]:
        return [
            d
            for d in days[1:]
            if renewal_epoch(stack, d, 365, 30) != renewal_epoch(stack, d - ONE_DAY, 365, 30)
        ]

    assert flips("dev") != flips("prod")  # two stacks do not renew on the same day


ONE_DAY = dt.timedelta(days=1)


def _triggers(run: ProgramRun) -> dict[str, Any]:
    return {
        r.name: r.replacement_trigger
        for r in (*run.of_type(LOCALLY_SIGNED_CERT), *run.of_type(SELF_SIGNED_CERT))
    }


def test_a_plain_up_reissues_the_certificates_when_their_epoch_ends(dev, template, monkeypatch):
    """Faked clock: two runs on the same day agree; the first day of the next epoch re-issues every
    node certificate (replacement_trigger) while the CA (a years-long epoch) and its key stay."""
    assert _triggers(dev) == {k: v for k, v in _triggers(template).items()}
    day = _next_epoch_day(TODAY, 365, 30)
    ca_validity = 3650
    assert renewal_epoch("dev", day, ca_validity, ca_renew_before_days(ca_validity)) == renewal_epoch(
        "dev", TODAY, ca_validity, ca_renew_before_days(ca_validity)
    ), "pick another TODAY"
    monkeypatch.setattr(components.tls, "utc_today", lambda: day)
    later = second_up(dev, stack_file_config())
    old, new = _triggers(dev), _triggers(later)
    node_certs = [r.name for r in later.of_type(LOCALLY_SIGNED_CERT)]
    # One per VM and an etcd one per database VM: the same rule renews both.
    assert len(node_certs) == 4 + 3 and all(old[n] != new[n] for n in node_certs)
    assert old["pgha-ca"] == new["pgha-ca"]
    (ca_key,) = [r for r in later.monitor.registrations.values() if r.name == "pgha-ca-key"]
    assert ca_key.replacement_trigger is None


# --- d. nothing that holds backups is destroyed by surprise ----------------------------------


def test_the_repository_vm_and_the_cipher_passphrase_are_protected(dev):
    """protect: the engine refuses to delete or replace them (pulumi destroy, a removed pgha:backup);
    retain_on_delete on the VM: once unprotected, deleting it from the stack leaves its disk."""
    repository = dev.named(VM, REPOSITORY_VM)
    assert repository.protect and repository.retain_on_delete
    for vm in dev.of_type(VM):
        if vm.name != REPOSITORY_VM:
            assert not vm.protect and not vm.retain_on_delete, vm.name
    assert dev.named(PASSWORD, CIPHER_PASSWORD).protect
    others = [r for r in dev.of_type(PASSWORD) if r.name != CIPHER_PASSWORD]
    assert others and not any(r.protect for r in others)


def test_without_backups_nothing_is_protected(fixed_clock):
    config = stack_file_config()
    del config["pgha:backup"]
    plain = first_up(config)
    assert not plain.named(PASSWORD, CIPHER_PASSWORD).protect
    assert "backupCipherPassphrase" not in plain.exports


def test_the_cipher_passphrase_is_exported_and_imported(dev):
    """The old stack's secret output, set as a secret config key, is the passphrase the new stack renders."""
    passphrase = dev.exports["backupCipherPassphrase"]
    assert dev.secret_exports["backupCipherPassphrase"]
    assert passphrase == dev.mocks.passwords[CIPHER_PASSWORD]

    imported = "ImportedPassphraseFromTheOldStack0"
    config = stack_file_config()
    config["pgha:backupCipherPassphrase"] = imported
    new = run_program(config, secret_keys=["pgha:backupCipherPassphrase"])
    assert new.error is None, new.errors
    assert new.exports["backupCipherPassphrase"] == imported
    rendered = [r.name for r in new.monitor.registrations.values() if imported in str(unwrap(r.inputs))]
    assert rendered, "the imported passphrase reaches no step"
    generated = new.mocks.passwords[CIPHER_PASSWORD]
    assert not [r.name for r in new.monitor.registrations.values() if generated in str(unwrap(r.inputs))]


def test_a_cipher_passphrase_in_clear_text_is_refused(fixed_clock):
    config = stack_file_config()
    config["pgha:backupCipherPassphrase"] = "InClearText"
    run = run_program(config)
    assert run.error is not None
    assert [e for e in run.errors if e.startswith("pgha:backupCipherPassphrase: is stored in clear text")]


def test_the_documented_table_is_the_data():
    """docs/proxmox-changes.md shows PROVIDER_BEHAVIOUR row for row (same effect, handling, source)."""
    text = (REPO_DIR / "docs" / "proxmox-changes.md").read_text()
    section = text.split("## What the provider does", 1)[1].split("\n## ", 1)[0]
    documented = [line for line in section.splitlines() if line.startswith("| ") and "`" in line][1:]
    assert len(documented) == len(PROVIDER_BEHAVIOUR)
    for line, behaviour in zip(documented, PROVIDER_BEHAVIOUR, strict=True):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[1] == f"`{behaviour.path}`", line
        assert cells[2].split(" ")[0] == behaviour.effect.value, line
        assert cells[4] == behaviour.handling.value, line
        assert behaviour.source.split(": ", 1)[1] in cells[6], line
