"""What a stack change would do on a real Proxmox, pinned on the options Pulumi receives.

Each behaviour of the bpg provider that makes an ordinary change dangerous
(docs/proxmox-changes.md cites the provider's source for each) is countered
by a resource option or an input; these tests assert the option itself:
retain-on-delete, ignore-changes paths, ``migrate``, replacement triggers,
file names, MTU, delete-before-replace. Runs compare two configs the way a
``pulumi preview`` after ``pulumi config set`` would.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from components.vm import CREATE_ONLY_INPUTS
from pgha import load_spec
from pgha.spec import DEBIAN_13_CLOUD_IMAGE, DEBIAN_13_CLOUD_IMAGE_SHA512
from tests.pulumi.harness import (
    COMMAND,
    IMAGE,
    SDN_APPLIER,
    SDN_SUBNET,
    SDN_VNET,
    SDN_ZONE_VXLAN,
    SNIPPET,
    VM,
    PghaMocks,
    ProgramRun,
    Registration,
    is_secret,
    run_program,
    stack_file_config,
    unwrap,
)

OTHER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOtherOperatorKeyOtherOperatorKeyOtherOp0 new@example.org"
JUMP_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAAMockJumpKey\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)


def paths(value: Any, prefix: str = "") -> dict[str, Any]:
    """Every leaf of an input as Pulumi property paths (``disks[0].importFrom``)."""
    if isinstance(value, dict):
        found: dict[str, Any] = {}
        for key, item in value.items():
            found.update(paths(item, f"{prefix}.{key}" if prefix else key))
        return found
    if isinstance(value, list):
        found = {}
        for index, item in enumerate(value):
            found.update(paths(item, f"{prefix}[{index}]"))
        return found
    return {prefix: value}


def changed_paths(before: Registration, after: Registration) -> set[str]:
    old, new = paths(unwrap(before.inputs)), paths(unwrap(after.inputs))
    return {p for p in old.keys() | new.keys() if old.get(p) != new.get(p)}


def with_config(**changes: Any) -> dict[str, Any]:
    config = stack_file_config()
    config.update(copy.deepcopy(changes))
    return config


def ok(run: ProgramRun) -> ProgramRun:
    assert run.error is None, run.errors
    return run


@pytest.fixture(scope="module")
def dev_run() -> ProgramRun:
    return ok(run_program(stack_file_config()))


@pytest.fixture(scope="module")
def vxlan_run() -> ProgramRun:
    return ok(run_program(stack_file_config("vxlan"), stack="vxlan"))


# --- 1. cloud-init snippets ------------------------------------------------------------


def test_snippets_are_retained_on_delete_and_overwritten_in_place(dev_run: ProgramRun):
    """A replaced snippet (any seed change) must not delete the path the VM boots from."""
    snippets = dev_run.of_type(SNIPPET)
    assert len(snippets) == 4 * 2 * 3  # every VM's three documents, on both hosts
    for snippet in snippets:
        assert snippet.retain_on_delete, snippet.name
        assert unwrap(snippet.inputs)["overwrite"] is True, snippet.name


def test_vms_ignore_every_input_that_only_matters_at_creation(dev_run: ProgramRun):
    """Inputs taken from a snippet or the image are ignored: a new seed or image never replaces a VM."""
    derived = {
        unwrap(r.inputs)["datastoreId"] + ":snippets/" + unwrap(r.inputs)["sourceRaw"]["fileName"]
        for r in dev_run.of_type(SNIPPET)
    } | {
        f"{unwrap(r.inputs)['datastoreId']}:import/{unwrap(r.inputs)['fileName']}"
        for r in dev_run.of_type(IMAGE)
    }
    for vm in dev_run.of_type(VM):
        assert vm.ignore_changes[: len(CREATE_ONLY_INPUTS)] == list(CREATE_ONLY_INPUTS)
        from_files = {p for p, v in paths(unwrap(vm.inputs)).items() if v in derived}
        assert from_files == set(CREATE_ONLY_INPUTS), vm.name
        assert vm.delete_before_replace  # same name, MAC and IP: the old one goes first


def test_a_new_operator_key_changes_only_snippets_and_ignored_vm_inputs(dev_run: ProgramRun):
    config = stack_file_config()
    config["pgha:ssh"] = {
        **config["pgha:ssh"],
        "authorizedKeys": [*config["pgha:ssh"]["authorizedKeys"], OTHER_KEY],
    }
    changed = ok(run_program(config))
    for vm in dev_run.of_type(VM):
        assert changed_paths(vm, changed.named(VM, vm.name)) <= set(CREATE_ONLY_INPUTS), vm.name
    # The user-data snippets change (the provider replaces them: source_raw is ForceNew), on every host.
    replaced = {s.name for s in dev_run.of_type(SNIPPET) if changed_paths(s, changed.named(SNIPPET, s.name))}
    assert replaced == {s.name for s in dev_run.of_type(SNIPPET) if s.name.endswith("-user-data")}
    # The key lives in cloud-init only: no remote step runs again, so neither does verify.
    for command in dev_run.of_type(COMMAND):
        if "triggers" in command.inputs:
            assert changed.named(COMMAND, command.name).inputs["triggers"] == command.inputs["triggers"]


# --- 2. migration ----------------------------------------------------------------------


def test_every_vm_live_migrates_instead_of_being_replaced(dev_run: ProgramRun):
    for vm in dev_run.of_type(VM):
        assert unwrap(vm.inputs)["migrate"] is True, vm.name


def test_a_vm_moved_to_the_other_host_changes_its_node_and_nothing_else(dev_run: ProgramRun):
    config = stack_file_config()
    config["pgha:vms"] = [
        {**vm, "host": "pve2"} if vm["name"] == "psql-03" else vm for vm in config["pgha:vms"]
    ]
    moved = ok(run_program(config))
    assert changed_paths(dev_run.named(VM, "psql-03"), moved.named(VM, "psql-03")) == {"nodeName"}
    # Its snippets were already on both hosts: no snippet is created, replaced or deleted.
    assert {s.name for s in moved.of_type(SNIPPET)} == {s.name for s in dev_run.of_type(SNIPPET)}
    for snippet in dev_run.of_type(SNIPPET):
        assert not changed_paths(snippet, moved.named(SNIPPET, snippet.name)), snippet.name
    # Same file name on every host: the VM's cicustom is valid wherever it runs.
    names = {
        unwrap(s.inputs)["sourceRaw"]["fileName"]
        for s in moved.of_type(SNIPPET)
        if s.name.startswith("psql-03-")
    }
    assert len(names) == 3
    # A VM depends on its snippets on every host, so they exist before it can move there.
    vm = moved.named(VM, "psql-03")
    assert {s.urn for s in moved.of_type(SNIPPET) if s.name.startswith("psql-03-")} <= vm.dependencies


def test_a_shared_snippets_datastore_gets_one_copy_per_vm():
    config = with_config(**{"pgha:vm": {"snippetsDatastore": "cephfs", "snippetsShared": True}})
    run = ok(run_program(config))
    snippets = run.of_type(SNIPPET)
    assert len(snippets) == 4 * 3
    for vm in run.of_type(VM):
        own = [s for s in snippets if s.name.startswith(f"{vm.name}-")]
        assert len(own) == 3
        for snippet in own:
            inputs = unwrap(snippet.inputs)
            assert inputs["datastoreId"] == "cephfs"
            # The VM's own host uploads it; every host reads the same shared file.
            assert inputs["nodeName"] == unwrap(vm.inputs)["nodeName"]
            assert snippet.retain_on_delete, snippet.name


# --- 3. the cloud image ----------------------------------------------------------------


def test_the_image_is_pinned_checked_and_named_per_stack_and_build(dev_run: ProgramRun):
    images = dev_run.of_type(IMAGE)
    assert len(images) == 2
    for image in images:
        inputs = unwrap(image.inputs)
        assert inputs["url"] == DEBIAN_13_CLOUD_IMAGE and "/latest/" not in inputs["url"]
        assert (inputs["checksum"], inputs["checksumAlgorithm"]) == (DEBIAN_13_CLOUD_IMAGE_SHA512, "sha512")
        assert inputs["fileName"] == f"pgha-dev-debian-13-{DEBIAN_13_CLOUD_IMAGE_SHA512[:16]}.qcow2"
        # Ours by name: a leftover is replaced; no size check ever replaces it behind our back.
        assert inputs["overwriteUnmanaged"] is True
        assert inputs["overwrite"] is False
        assert not image.retain_on_delete  # destroying the stack deletes its own copy, only that


def test_another_stack_and_a_new_build_never_share_a_file_name(dev_run: ProgramRun):
    names = {unwrap(r.inputs)["fileName"] for r in dev_run.of_type(IMAGE)}
    other = ok(run_program(stack_file_config(), stack="prod"))
    assert names.isdisjoint({unwrap(r.inputs)["fileName"] for r in other.of_type(IMAGE)})
    newer = with_config(
        **{
            "pgha:vm": {
                "imageUrl": "https://cloud.debian.org/images/cloud/trixie/20991231-0000/debian-13-genericcloud-amd64-20991231-0000.qcow2",
                "imageChecksum": "ab" * 64,
            }
        }
    )
    rebuilt = ok(run_program(newer))
    assert names.isdisjoint({unwrap(r.inputs)["fileName"] for r in rebuilt.of_type(IMAGE)})
    for vm in dev_run.of_type(VM):  # a new image reaches the VMs only through an ignored input
        assert changed_paths(vm, rebuilt.named(VM, vm.name)) == {"disks[0].importFrom"}


# --- 4/5. SDN ------------------------------------------------------------------------


def applier_trigger(run: ProgramRun) -> Any:
    return run.named(SDN_APPLIER, "pgha-sdn-applier").replacement_trigger


def test_the_vxlan_stack_applies_its_sdn_before_the_vms_and_cleans_up_last(vxlan_run: ProgramRun):
    zone = vxlan_run.named(SDN_ZONE_VXLAN, "pgha-zone")
    vnet, subnet = vxlan_run.named(SDN_VNET, "pgha-vnet"), vxlan_run.named(SDN_SUBNET, "pgha-subnet")
    applier = vxlan_run.named(SDN_APPLIER, "pgha-sdn-applier")
    cleanup = vxlan_run.named(SDN_APPLIER, "pgha-sdn-cleanup")
    assert unwrap(zone.inputs) == {
        "resourceId": "pghavx",
        "peers": ["192.0.2.11", "192.0.2.12"],
        "nodes": ["pve1", "pve2"],
        "mtu": 1450,
    }
    assert {zone.urn, vnet.urn, subnet.urn} <= applier.dependencies
    assert unwrap(applier.inputs) == {"onCreate": True, "onDestroy": False}
    assert applier.replacement_trigger  # replaced (applied again) when the definition changes
    # The cleanup applier: the zone depends on it, so a destroy deletes it last and applies then.
    assert unwrap(cleanup.inputs) == {"onCreate": False, "onDestroy": True}
    assert cleanup.urn in zone.dependencies
    assert cleanup.replacement_trigger is None
    for vm in vxlan_run.of_type(VM):
        (nic,) = unwrap(vm.inputs)["networkDevices"]
        assert (nic["bridge"], nic["mtu"]) == ("pghavn", 1450)
        assert applier.urn in vm.dependencies
    for snippet in (s for s in vxlan_run.of_type(SNIPPET) if s.name.endswith("-network-config")):
        nic = yaml.safe_load(unwrap(snippet.inputs)["sourceRaw"]["data"])["ethernets"]["private"]
        assert nic["mtu"] == 1450


@pytest.mark.parametrize(
    ("change", "reapplies"),
    [
        ({"pgha:network": {"sdn": {"tag": 20001}}}, True),
        ({"pgha:network": {"mtu": 8950}}, True),
        ({"pgha:witness": {"name": "witness", "host": "pve3", "ip": "10.0.20.5"}}, True),
        ({"pgha:haproxy": {"maxconn": 900}}, False),
    ],
    ids=["tag", "mtu", "witness-host", "unrelated"],
)
def test_the_sdn_is_applied_again_exactly_when_its_definition_or_hosts_change(
    vxlan_run: ProgramRun, change: dict[str, Any], reapplies: bool
):
    config = stack_file_config("vxlan")
    for key, value in change.items():
        if key == "pgha:network":
            network = copy.deepcopy(config[key])
            network.update({k: v for k, v in value.items() if k != "sdn"})
            network["sdn"].update(value.get("sdn", {}))
            config[key] = network
        else:
            config[key] = value
    run = ok(run_program(config, stack="vxlan"))
    assert (applier_trigger(run) != applier_trigger(vxlan_run)) is reapplies
    # Zone, vnet and subnet are updated in place, never deleted first.
    assert {r.name for r in run.of_type(SDN_ZONE_VXLAN)} == {"pgha-zone"}


def test_vxlan_mtu_above_what_the_tunnel_carries_is_refused():
    config = stack_file_config("vxlan")
    spec_config = {k.removeprefix("pgha:"): v for k, v in config.items() if k.startswith("pgha:")}
    spec_config["network"] = {**spec_config["network"], "mtu": 9000}
    with pytest.raises(ValueError, match=r"pgha:network.mtu: 9000 is outside 1280-8950"):
        load_spec(spec_config, "vxlan")


# --- 8. the jump host ------------------------------------------------------------------


def test_a_jump_host_key_from_secret_config_reaches_every_proxy_as_a_secret():
    config = stack_file_config()
    jump = {"host": "bastion.example.org", "user": "ops", "privateKey": JUMP_KEY}
    config["pgha:ssh"] = {**config["pgha:ssh"], "jumpHost": jump}
    run = ok(run_program(config, secret_keys=["pgha:ssh"]))
    commands = run.of_type(COMMAND)
    assert commands
    for command in commands:
        proxy = command.inputs["connection"]
        assert is_secret(proxy)
        assert unwrap(proxy)["proxy"]["privateKey"] == JUMP_KEY
        assert JUMP_KEY not in str([s for s in command.inputs.values() if not is_secret(s)])
    # In clear text in the stack file: refused before anything exists, without echoing it.
    plain = run_program(config)
    assert plain.error is not None and plain.monitor.registrations == {}
    assert plain.errors == [
        "pgha:ssh.jumpHost.privateKey: is stored in clear text; set it with "
        "pulumi config set --secret --path 'pgha:ssh.jumpHost.privateKey' < KEYFILE"
    ]


# --- 10. verify --------------------------------------------------------------------------


def test_verify_runs_last_on_one_vm_and_follows_every_other_change(dev_run: ProgramRun):
    (verify,) = [c for c in dev_run.of_type(COMMAND) if c.name.endswith("-verify")]
    assert verify.name == "psql-01-verify"
    steps = [c for c in dev_run.of_type(COMMAND) if c is not verify and not c.name.endswith("-leave")]
    assert steps and all(not c.name.endswith("-verify") for c in steps)
    # It waits for the phase before it (monitoring) and so for all before that.
    assert dev_run.named(COMMAND, "backup-01-monitoring").urn in verify.dependencies
    changed = ok(run_program(with_config(**{"pgha:haproxy": {"checkRise": 3}})))
    assert changed.named(COMMAND, verify.name).inputs["triggers"] != verify.inputs["triggers"]
    # Nothing changed, nothing re-runs: the same config gives the same trigger.
    again = ok(run_program(stack_file_config()))
    assert again.named(COMMAND, verify.name).inputs["triggers"] == verify.inputs["triggers"]


# --- 6. the Proxmox VE version -----------------------------------------------------------


def test_a_proxmox_older_than_8_4_fails_the_preview_with_the_reason(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(PghaMocks, "pve_version", "8.3.5")
    with pytest.raises(Exception, match=r"Proxmox VE 8\.3\.5 cannot import a cloud image .* 8\.4 or later"):
        run = run_program(stack_file_config())
        raise AssertionError(run.errors)
    monkeypatch.setattr(PghaMocks, "pve_version", "9.0.3")
    assert run_program(stack_file_config()).error is None
