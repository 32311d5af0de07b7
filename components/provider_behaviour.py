"""What the Proxmox provider does when an input pgha sets changes: one row per input, as data.

Read in the source of bpg/terraform-provider-proxmox (the provider
``pulumi-proxmoxve`` 8.6 bridges; commit ``d6bd1ffe`` of its main branch),
each row naming the file and the schema field or function it rests on.
docs/proxmox-changes.md ("What the provider does") shows the same table to
people; :func:`predict` is what a replay of two stack configs uses to say, per
resource, whether an ``up`` would leave it alone, update it, reboot it or
replace it. The unit tests check that every input the program sets has a row.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

VM = "proxmoxve:index/vmLegacy:VmLegacy"
SNIPPET = "proxmoxve:index/fileLegacy:FileLegacy"
IMAGE = "proxmoxve:download/file:File"

VM_GO = "proxmoxtf/resource/vm/vm.go"
DISK_SCHEMA = "proxmoxtf/resource/vm/disk/schema.go"
NETWORK_SCHEMA = "proxmoxtf/resource/vm/network/schema.go"
FILE_GO = "proxmoxtf/resource/file.go"
DOWNLOAD_GO = "fwprovider/nodes/resource_download_file.go"


class Effect(Enum):
    """What the provider does to the running machine when the input changes (worst first)."""

    REPLACE = "replace"  # ForceNew / RequiresReplace: delete, then create
    STOPPED = "stopped"  # only on a stopped VM: the provider powers it off (or fails, see the row)
    REBOOT = "reboot"  # written as pending config; the VM must restart for it to apply
    MIGRATE = "migrate"  # live migration to another host
    LIVE = "live"  # applied to the running VM, no restart
    NONE = "none"  # state only: read by the provider itself, nothing reaches the VM


SEVERITY = tuple(Effect)


class Handling(Enum):
    """What pgha does about it."""

    APPLIED = "applied"  # the provider applies the change as the row says
    CREATE_ONLY = "create-only"  # ignore_changes: used when a VM is created, never on a running one
    REFUSED = "refused"  # ignore_changes and a preview error naming the key (components/vm.py)
    FIXED = "fixed"  # a constant of the program or derived from names: no config key changes it


@dataclass(frozen=True)
class InputBehaviour:
    resource: str  # the Pulumi type token
    path: str  # the Pulumi property path; [*] stands for any list index
    effect: Effect
    # Whether the provider's reboot_after_update decides the restart (true: with
    # it false, which pgha sets, the change stays pending and the provider warns;
    # for STOPPED rows, the update fails instead of powering the VM off).
    reboot_after_update: bool
    source: str  # file and schema field or function in the provider's source
    handling: Handling
    config_key: str | None = None  # the pgha: key that moves it, if any
    note: str = ""


def _vm(
    path: str,
    effect: Effect,
    source: str,
    handling: Handling,
    key: str | None = None,
    note: str = "",
    *,
    rau: bool = False,
) -> InputBehaviour:
    return InputBehaviour(VM, path, effect, rau, source, handling, key, note)


PROVIDER_BEHAVIOUR: tuple[InputBehaviour, ...] = (
    # --- VmLegacy -------------------------------------------------------------------------
    _vm(
        "agent.enabled",
        Effect.REBOOT,
        f"{VM_GO}: vmUpdate, HasChange(mkAgent) sets rebootRequired",
        Handling.FIXED,
        rau=True,
    ),
    _vm(
        "clone.datastoreId",
        Effect.REPLACE,
        f"{VM_GO}: VM() schema, mkCloneDatastoreID ForceNew",
        Handling.CREATE_ONLY,
        "vm.datastore",
    ),
    _vm("clone.full", Effect.REPLACE, f"{VM_GO}: VM() schema, mkCloneFull ForceNew", Handling.CREATE_ONLY),
    _vm(
        "clone.nodeName",
        Effect.REPLACE,
        f"{VM_GO}: VM() schema, mkCloneNodeName ForceNew",
        Handling.CREATE_ONLY,
        "vm.templateNode",
    ),
    _vm(
        "clone.retries",
        Effect.REPLACE,
        f"{VM_GO}: VM() schema, mkCloneRetries ForceNew",
        Handling.CREATE_ONLY,
    ),
    _vm(
        "clone.vmId",
        Effect.REPLACE,
        f"{VM_GO}: VM() schema, mkCloneVMID ForceNew",
        Handling.CREATE_ONLY,
        "vm.templateVmId",
    ),
    _vm(
        "cpu.cores",
        Effect.REBOOT,
        f'{VM_GO}: vmUpdate, cpu block ("Changing cores or sockets always requires a reboot")',
        Handling.REFUSED,
        "vm.cores",
        rau=True,
    ),
    _vm(
        "cpu.type",
        Effect.REBOOT,
        f"{VM_GO}: vmUpdate, cpu block (only a vcpus change is hotpluggable)",
        Handling.FIXED,
        rau=True,
    ),
    _vm(
        "disks[*].datastoreId",
        Effect.STOPPED,
        f"{VM_GO}: vmPlanDiskLocationAndSizeChanges (shutdownForDisksRequired), then vmUpdate fails with "
        "'cannot move disks between datastores' when reboot_after_update is false",
        Handling.REFUSED,
        "vm.datastore",
        rau=True,
    ),
    _vm(
        "disks[*].importFrom",
        Effect.NONE,
        f"{DISK_SCHEMA}: mkDiskImportFrom (ForceNew false, 'Only used during initial creation')",
        Handling.CREATE_ONLY,
        "vm.imageUrl",
    ),
    _vm(
        "disks[*].interface",
        Effect.STOPPED,
        f"{VM_GO}: vmUpdate deletes a disk whose interface left the plan ('cannot delete boot disk')",
        Handling.FIXED,
    ),
    _vm(
        "disks[*].size",
        Effect.LIVE,
        f"{VM_GO}: vmUpdateDiskSize (online resize, disk is in the default hotplug dvHotplug; "
        "'Cannot shrink')",
        Handling.APPLIED,
        "vm.diskGb",
        "grow only; the guest's filesystem grows at its next boot (growpart)",
    ),
    _vm(
        "initialization.datastoreId",
        Effect.STOPPED,
        f"{VM_GO}: vmUpdate moves the cloud-init drive (vmPowerOffForPendingChanges; "
        "'cannot move the Cloud-Init drive' when reboot_after_update is false)",
        Handling.REFUSED,
        "vm.datastore",
        rau=True,
    ),
    _vm(
        "initialization.metaDataFileId",
        Effect.REPLACE,
        f"{VM_GO}: VM() schema, mkInitializationMetaDataFileID ForceNew",
        Handling.CREATE_ONLY,
    ),
    _vm(
        "initialization.networkDataFileId",
        Effect.REPLACE,
        f"{VM_GO}: VM() schema, mkInitializationNetworkDataFileID ForceNew",
        Handling.CREATE_ONLY,
    ),
    _vm(
        "initialization.userDataFileId",
        Effect.REPLACE,
        f"{VM_GO}: VM() schema, mkInitializationUserDataFileID ForceNew",
        Handling.CREATE_ONLY,
    ),
    _vm(
        "memory.dedicated",
        Effect.REBOOT,
        f"{VM_GO}: vmUpdate, memory block (hotpluggable only when raised with 'memory' in hotplug, "
        "which pgha does not set: dvHotplug is network,disk,usb)",
        Handling.REFUSED,
        "vm.memoryMb",
        rau=True,
    ),
    _vm(
        "migrate",
        Effect.NONE,
        f"{VM_GO}: VM() CustomizeDiff, ForceNewIf(mkNodeName) reads mkMigrate",
        Handling.FIXED,
    ),
    _vm(
        "name",
        Effect.LIVE,
        f"{VM_GO}: vmUpdate sends updateBody.Name, no restart",
        Handling.FIXED,
        note="the VM's name is its resource name: a new name is a new VM",
    ),
    _vm(
        "networkDevices[*].bridge",
        Effect.LIVE,
        f"{VM_GO}: vmUpdate ('Network devices can be hotplugged, no reboot required'); "
        f"{NETWORK_SCHEMA}: mkNetworkDeviceBridge",
        Handling.REFUSED,
        "network.bridge",
        "every VM's private NIC moves at once",
    ),
    _vm(
        "networkDevices[*].macAddress",
        Effect.LIVE,
        f"{VM_GO}: vmUpdate, network devices (hotplug)",
        Handling.FIXED,
        note="derived from the stack and VM names",
    ),
    _vm(
        "networkDevices[*].model",
        Effect.LIVE,
        f"{VM_GO}: vmUpdate, network devices (hotplug)",
        Handling.FIXED,
    ),
    _vm(
        "networkDevices[*].mtu",
        Effect.LIVE,
        f"{VM_GO}: vmUpdate, network devices (hotplug); {NETWORK_SCHEMA}: mkNetworkDeviceMTU",
        Handling.REFUSED,
        "network.mtu",
        "every VM's private NIC changes at once",
    ),
    _vm(
        "networkDevices[*].vlanId",
        Effect.LIVE,
        f"{VM_GO}: vmUpdate, network devices (hotplug); {NETWORK_SCHEMA}: mkNetworkDeviceVLANID",
        Handling.REFUSED,
        "network.vlan",
        "every VM's private NIC changes at once",
    ),
    _vm(
        "nodeName",
        Effect.MIGRATE,
        f"{VM_GO}: VM() CustomizeDiff ForceNewIf(mkNodeName) unless migrate; vmUpdate calls migrateVM",
        Handling.APPLIED,
        "vms[].host",
        "a replacement without migrate: true (pgha sets it)",
    ),
    _vm("onBoot", Effect.LIVE, f"{VM_GO}: vmUpdate, updateBody.StartOnBoot, no restart", Handling.FIXED),
    _vm(
        "operatingSystem.type",
        Effect.REBOOT,
        f"{VM_GO}: vmUpdate, HasChange(mkOperatingSystem)",
        Handling.FIXED,
        rau=True,
    ),
    _vm(
        "rebootAfterUpdate",
        Effect.NONE,
        f"{VM_GO}: VM() schema mkRebootAfterUpdate; read by vmPowerOffForPendingChanges and "
        "vmFinalizePowerState",
        Handling.FIXED,
    ),
    _vm(
        "serialDevices[*].device",
        Effect.REBOOT,
        f"{VM_GO}: vmUpdate, HasChange(mkSerialDevice)",
        Handling.FIXED,
        rau=True,
    ),
    _vm("started", Effect.LIVE, f"{VM_GO}: vmFinalizePowerState starts or stops the VM", Handling.FIXED),
    _vm(
        "stopOnDestroy",
        Effect.NONE,
        f"{VM_GO}: VM() schema mkStopOnDestroy, read by vmDelete",
        Handling.FIXED,
    ),
    _vm(
        "tags[*]",
        Effect.LIVE,
        f"{VM_GO}: vmUpdate, updateBody.Tags",
        Handling.FIXED,
        note="derived from the stack name",
    ),
    _vm(
        "vmId",
        Effect.REPLACE,
        f"{VM_GO}: VM() CustomizeDiff, ForceNewIf(mkVMID)",
        Handling.APPLIED,
        "vms[].vmId",
        "replaces that VM only (delete before replace)",
    ),
    # --- FileLegacy (the cloud-init snippets) -----------------------------------------------
    *(
        InputBehaviour(
            SNIPPET,
            path,
            Effect.REPLACE,
            False,
            f"{FILE_GO}: File() schema, {field} ForceNew",
            Handling.APPLIED,
            key,
            "retainOnDelete: the new file overwrites the same path; VMs ignore the id",
        )
        for path, field, key in (
            ("contentType", "mkResourceVirtualEnvironmentFileContentType", None),
            ("datastoreId", "mkResourceVirtualEnvironmentFileDatastoreID", "vm.snippetsDatastore"),
            ("nodeName", "mkResourceVirtualEnvironmentFileNodeName", "vms[].host"),
            ("sourceRaw.data", "mkResourceVirtualEnvironmentFileSourceRawData", "ssh.authorizedKeys"),
            ("sourceRaw.fileName", "mkResourceVirtualEnvironmentFileSourceRawFileName", None),
        )
    ),
    InputBehaviour(
        SNIPPET,
        "overwrite",
        Effect.NONE,
        False,
        f"{FILE_GO}: mkResourceVirtualEnvironmentFileOverwrite, read by fileCreate",
        Handling.FIXED,
    ),
    # --- download.File (the cloud image) ----------------------------------------------------
    *(
        InputBehaviour(
            IMAGE,
            path,
            Effect.REPLACE,
            False,
            f"{DOWNLOAD_GO}: Schema, {field} RequiresReplace",
            Handling.APPLIED,
            key,
            "a new file next to the old one; VMs ignore importFrom",
        )
        for path, field, key in (
            ("checksum", "checksum", "vm.imageChecksum"),
            ("checksumAlgorithm", "checksum_algorithm", "vm.imageChecksumAlgorithm"),
            ("contentType", "content_type", None),
            ("datastoreId", "datastore_id", "vm.imageDatastore"),
            ("fileName", "file_name", "vm.imageChecksum"),
            ("nodeName", "node_name", "vms[].host"),
            ("url", "url", "vm.imageUrl"),
        )
    ),
    InputBehaviour(
        IMAGE,
        "overwrite",
        Effect.NONE,
        False,
        f"{DOWNLOAD_GO}: Schema, overwrite (size checks only)",
        Handling.FIXED,
    ),
    InputBehaviour(
        IMAGE,
        "overwriteUnmanaged",
        Effect.NONE,
        False,
        f"{DOWNLOAD_GO}: Schema, overwrite_unmanaged (read by Create)",
        Handling.FIXED,
    ),
)


def generic_path(path: str) -> str:
    """``disks[0].size`` -> ``disks[*].size``: the table's form of a concrete property path."""
    out, depth = [], 0
    for char in path:
        if char == "[":
            depth += 1
            out.append("[*")
        elif char == "]":
            depth -= 1
            out.append("]")
        elif depth == 0:
            out.append(char)
    return "".join(out)


def row(resource: str, path: str) -> InputBehaviour | None:
    """The row for one input: exact path, or the nearest enclosing one (``clone`` covers ``clone.vmId``)."""
    wanted = generic_path(path)
    for candidate in PROVIDER_BEHAVIOUR:
        if candidate.resource == resource and candidate.path == wanted:
            return candidate
    return None


def covers(ignored: str, path: str) -> bool:
    """Whether an ignore_changes entry (``clone``, ``disks[0].importFrom``) covers a property path."""
    return path == ignored or path.startswith(ignored + ".") or path.startswith(ignored + "[")


@dataclass(frozen=True)
class Prediction:
    """What an ``up`` does to one resource: the worst effect among its changed inputs."""

    # "none", "update", "pending" (a restart-requiring change left pending: no
    # reboot), "reboot", "migrate", "stop" (fails instead when reboot_after_update
    # is false), "replace"
    action: str
    changed: tuple[str, ...]  # changed property paths that reach the provider
    ignored: tuple[str, ...]  # changed paths ignore_changes keeps away from it
    unknown: tuple[str, ...]  # changed paths without a row: the replay must say so, not guess


_ACTIONS = {
    Effect.REPLACE: "replace",
    Effect.STOPPED: "stop",
    Effect.REBOOT: "reboot",
    Effect.MIGRATE: "migrate",
    Effect.LIVE: "update",
    Effect.NONE: "update",
}


def predict(
    resource: str,
    changed_paths: Iterable[str],
    ignore_changes: Iterable[str] = (),
    *,
    reboot_after_update: bool = True,
) -> Prediction:
    """The provider's reaction to these changed inputs, as the table says.

    ``reboot_after_update`` is the VM's input (the provider's default is true).
    With it false a REBOOT row is applied as pending config with a warning
    (``rebootAfterUpdateDisabledWarning``): "pending"; a STOPPED row makes the
    update fail (``rebootAfterUpdateDisabledError``): still "stop", which the
    replay reports as the failure it is.
    """
    ignores = tuple(ignore_changes)
    changed: list[str] = []
    ignored: list[str] = []
    unknown: list[str] = []
    worst: Effect | None = None
    for path in sorted(set(changed_paths)):
        if any(covers(i, path) for i in ignores):
            ignored.append(path)
            continue
        found = row(resource, path)
        if found is None:
            unknown.append(path)
            continue
        changed.append(path)
        if worst is None or SEVERITY.index(found.effect) < SEVERITY.index(worst):
            worst = found.effect
    if worst is None:
        action = "none"
    elif worst is Effect.REBOOT and not reboot_after_update:
        action = "pending"
    else:
        action = _ACTIONS[worst]
    return Prediction(action, tuple(changed), tuple(ignored), tuple(unknown))
