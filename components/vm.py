"""The VMs: a cloud image on each Proxmox host, and one VM per node booted with its NoCloud seed."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_proxmoxve as proxmoxve
import pulumi_tls

from pgha import cloudinit
from pgha.spec import ClusterSpec, Node

# Portable across CPU generations, so a VM can live-migrate between the two hosts.
CPU_TYPE = "x86-64-v2-AES"
BOOT_DISK = "virtio0"
CLONE_RETRIES = 3
# Content type "import" (a .qcow2 imported as a VM disk) exists from Proxmox VE 8.4 on.
MIN_PVE_FOR_IMPORT = (8, 4)  # Proxmox times out now and then when several clones run at once.
SEED_DOCUMENTS = ("user-data", "meta-data", "network-config")
# VmLegacy inputs read only when the VM is created (Pulumi property paths).
CREATE_ONLY_INPUTS = (
    "disks[0].importFrom",
    "initialization.userDataFileId",
    "initialization.metaDataFileId",
    "initialization.networkDataFileId",
)
# The clone block: every field is ForceNew (components/provider_behaviour.py), so a
# new template would replace every VM at once. It only matters at creation, like
# the image: VMs move to a new template one at a time (docs/proxmox-changes.md).
TEMPLATE_INPUTS = ("clone",)
# Hardware the provider applies only with a restart (cores, memory) or on a
# stopped VM (disk and cloud-init drive moves): never on a running VM through
# `pulumi up`, every VM at once. Kept at their created values; a changed key is
# refused at preview (hardware_problems) until VMs are rebuilt one at a time.
HARDWARE_INPUTS = (
    "cpu.cores",
    "memory.dedicated",
    "disks[0].datastoreId",
    "initialization.datastoreId",
)
# The private NIC: the provider hot-plugs a change on every VM in the same `up`
# (vmUpdate: "Network devices can be hotplugged"), i.e. the private network drops
# everywhere at once. Refused at preview unless the operator asks for it.
NETWORK_INPUTS = (
    "networkDevices[0].bridge",
    "networkDevices[0].vlanId",
    "networkDevices[0].mtu",
)
# Set (to 1) for one `pulumi up` in a maintenance window: the network change then
# reaches every VM at once, as the operator decided (docs/proxmox-changes.md).
ALLOW_NETWORK_CHANGE_ENV = "PGHA_ALLOW_NETWORK_CHANGE"


def require_import_support(version: str) -> str:
    """The version, or a clear error in ``pulumi preview`` before anything is downloaded."""
    numbers = tuple(int(part) for part in re.findall(r"\d+", version)[:2])
    if numbers < MIN_PVE_FOR_IMPORT:
        wanted = ".".join(map(str, MIN_PVE_FOR_IMPORT))
        raise ValueError(
            f"Proxmox VE {version} cannot import a cloud image (content type 'import' needs {wanted} or "
            "later): upgrade the hosts, or clone from a template (pgha:vm.templateVmId)"
        )
    return version


def network_change_allowed() -> bool:
    """Whether this run may move every VM's private NIC at once (an explicit operator decision)."""
    return os.environ.get(ALLOW_NETWORK_CHANGE_ENV, "") == "1"


def vm_ignore_changes(allow_network_change: bool = False) -> list[str]:
    """Every VmLegacy input a running VM keeps from its creation (see the tuples above)."""
    network = () if allow_network_change else NETWORK_INPUTS
    return [*CREATE_ONLY_INPUTS, *TEMPLATE_INPUTS, *HARDWARE_INPUTS, *network]


@dataclass(frozen=True)
class Hardware:
    """The guarded VmLegacy inputs of one VM: as the stack config wants them, or as its state holds them."""

    cores: int | None
    memory_mb: int | None
    disk_datastore: str | None
    cloud_init_datastore: str | None
    bridge: str | None
    vlan_id: int | None
    mtu: int | None
    template_vm_id: int | None
    template_node: str | None


def _field(value: Any, name: str) -> Any:
    """One field of a provider output object (or of the plain dict the mocks return)."""
    if value is None:
        return None
    if isinstance(value, dict):
        camel = re.sub(r"_(\w)", lambda m: m.group(1).upper(), name)
        if camel in value:
            return value[camel]
        if name in value:
            return value[name]
    return getattr(value, name, None)


def _number(value: Any) -> int | None:
    """Numbers as ints; the provider reads an unset vlan_id or mtu back as 0 (its schema default)."""
    return int(value) if value else None


def _text(value: Any) -> str | None:
    """Strings; the provider reads an unset clone node back as "" (its schema default)."""
    return str(value) if value else None


def hardware_from_state(values: list[Any]) -> Hardware:
    """The VM's guarded inputs as Pulumi's state has them (ignore_changes keeps them at their old value)."""
    cpu, memory, disks, initialization, network_devices, clone = values
    disk = disks[0] if disks else None
    nic = network_devices[0] if network_devices else None
    return Hardware(
        cores=_number(_field(cpu, "cores")),
        memory_mb=_number(_field(memory, "dedicated")),
        disk_datastore=_text(_field(disk, "datastore_id")),
        cloud_init_datastore=_text(_field(initialization, "datastore_id")),
        bridge=_text(_field(nic, "bridge")),
        vlan_id=_number(_field(nic, "vlan_id")),
        mtu=_number(_field(nic, "mtu")),
        template_vm_id=_number(_field(clone, "vm_id")),
        template_node=_text(_field(clone, "node_name")),
    )


HARDWARE_DOC = "docs/proxmox-changes.md, 'Changing VM hardware, template or network'"
# (config key, Hardware fields, kind): "rolling" keys are refused while no VM has
# the new value, then warned about per VM as VMs are rebuilt one at a time;
# "create-only" keys only warn; "network" keys are refused unless allowed.
GUARDED_KEYS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("vm.cores", ("cores",), "rolling"),
    ("vm.memoryMb", ("memory_mb",), "rolling"),
    ("vm.datastore", ("disk_datastore", "cloud_init_datastore"), "rolling"),
    ("vm.templateVmId", ("template_vm_id", "template_node"), "create-only"),
    ("network.bridge", ("bridge",), "network"),
    ("network.vlan", ("vlan_id",), "network"),
    ("network.mtu", ("mtu",), "network"),
)


def _show(values: tuple[Any, ...]) -> str:
    shown = [str(v) for v in values if v is not None]
    return "/".join(shown) if shown else "none"


def hardware_problems(
    wanted: dict[str, Hardware], current: dict[str, Hardware], *, allow_network_change: bool = False
) -> tuple[list[str], list[str]]:
    """(errors, warnings) for guarded inputs whose stack value differs from the VMs' state.

    ``current`` is the VMs' state: the engine keeps ignored inputs at their old
    values, so the provider's outputs there are the values the VMs run with
    (a VM being created has the wanted ones). One line per key.
    """
    errors: list[str] = []
    warnings: list[str] = []
    names = sorted(current)
    for key, attributes, kind in GUARDED_KEYS:

        def pick(hardware: Hardware, attributes: tuple[str, ...] = attributes) -> tuple[Any, ...]:
            return tuple(getattr(hardware, a) for a in attributes)

        differing = [n for n in names if pick(current[n]) != pick(wanted[n])]
        if not differing:
            continue
        old = ", ".join(sorted({_show(pick(current[n])) for n in differing}))
        new = _show(pick(wanted[differing[0]]))
        if kind == "network":
            if not allow_network_change:
                errors.append(
                    f"pgha:{key}: {old} -> {new} would re-plug every VM's private NIC at once (etcd, "
                    f"replication and VRRP drop together); refused. Keep {old}, or in a maintenance window "
                    f"run {ALLOW_NETWORK_CHANGE_ENV}=1 pulumi up ({HARDWARE_DOC})"
                )
        elif kind == "rolling" and len(differing) == len(names):
            errors.append(
                f"pgha:{key}: {old} -> {new} needs every VM restarted or stopped at once; refused. Rebuild "
                f"the VMs one at a time instead, replicas first: pulumi destroy --target <VM URN> "
                f"--target-dependents, then pulumi up ({HARDWARE_DOC})"
            )
        else:
            warnings.append(
                f"pgha:{key}: {', '.join(differing)} still run with {old} (the stack says {new}); only VMs "
                f"created from now on get it: rebuild the others one at a time ({HARDWARE_DOC})"
            )
    return errors, warnings


def guard_hardware(vms: dict[str, PghaVm], *, allow_network_change: bool = False) -> pulumi.Output[dict]:
    """The VMs' guarded inputs as their state has them; fails the preview on a refused change.

    Raises inside the apply, so whatever awaits the result (the cluster's
    registered outputs) fails the preview with the refusal's one line.
    """
    names = sorted(vms)

    def check(values: list[Hardware]) -> dict[str, dict[str, Any]]:
        wanted = dict(zip(names, values[: len(names)], strict=True))
        current = dict(zip(names, values[len(names) :], strict=True))
        errors, warnings = hardware_problems(wanted, current, allow_network_change=allow_network_change)
        for warning in warnings:
            pulumi.log.warn(warning)
        for error in errors:
            pulumi.log.error(error)
        if errors:
            raise pulumi.RunError(f"{len(errors)} stack change(s) refused, listed above")
        return {n: dict(vars(current[n])) for n in names}

    return pulumi.Output.all(*(vms[n].wanted for n in names), *(vms[n].current for n in names)).apply(check)


def snippet_file_name(spec: ClusterSpec, node: Node, document: str) -> str:
    """The same name on every host, so the VM's ``cicustom`` is valid wherever it runs."""
    return f"pgha-{spec.stack}-{node.name}-{document}.yaml"


@dataclass(frozen=True)
class CloudImageArgs:
    spec: ClusterSpec


class CloudImage(pulumi.ComponentResource):
    """The pinned Debian cloud image, downloaded by each Proxmox host of the stack.

    Creates nothing when the VMs are cloned from a template instead. The file
    is named after the stack and the image's checksum
    (:meth:`pgha.spec.VmSpec.image_file_name`): no other stack's or manual
    download collides with it, destroying this stack deletes only this stack's
    copy, and a new ``vm.imageChecksum`` downloads a new file next to the old
    one (the VMs ignore it: the image only matters when a disk is created).
    """

    files: dict[str, proxmoxve.download.File]

    def __init__(self, name: str, args: CloudImageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("pgha:index:CloudImage", name, None, opts)
        spec = args.spec
        vm = spec.vm
        self.files = {}
        if vm.template_vm_id is None:
            # Asked of the API in every preview: an old cluster fails here, not halfway.
            version = proxmoxve.get_version_output(opts=pulumi.InvokeOutputOptions(parent=self))
            self.version = version.version.apply(require_import_support)
            for host in spec.proxmox_hosts:
                self.files[host] = proxmoxve.download.File(
                    f"{name}-image-{host}",
                    node_name=host,
                    datastore_id=vm.image_datastore,
                    content_type="import",
                    url=self.version.apply(lambda _: vm.image_url),
                    file_name=vm.image_file_name(spec.stack),
                    checksum=vm.image_checksum,
                    checksum_algorithm=vm.image_checksum_algorithm,
                    # No size checks against the URL: a pinned build never changes.
                    overwrite=False,
                    # The name is this stack's own: a leftover (a failed run, a
                    # state lost) is ours to replace, not a reason to stop.
                    overwrite_unmanaged=True,
                    opts=pulumi.ResourceOptions(parent=self),
                )
        self.register_outputs({"imageIds": {host: f.id for host, f in self.files.items()}})

    def image_id(self, host: str) -> pulumi.Output[str] | None:
        """The ``<datastore>:import/<file>`` id on that host, or None when cloning."""
        file = self.files.get(host)
        return file.id if file is not None else None


@dataclass(frozen=True)
class PghaVmArgs:
    spec: ClusterSpec
    node: Node
    deploy_public_key: pulumi.Input[str]
    bridge: pulumi.Input[str]
    vlan_id: int | None = None
    image_id: pulumi.Input[str] | None = None


class PghaVm(pulumi.ComponentResource):
    """One node's VM on its Proxmox host, with the seed the core renders for it.

    The NIC gets the node's fixed MAC, which the network-config matches, so the
    static IP from the stack config lands on the right interface.
    """

    vm: proxmoxve.VmLegacy
    ip: str
    host_public_key: pulumi.Output[str]
    # The guarded inputs as the stack config wants them, and as the VM's state holds them.
    wanted: pulumi.Output[Hardware]
    current: pulumi.Output[Hardware]

    def __init__(self, name: str, args: PghaVmArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("pgha:index:Vm", name, None, opts)
        spec, node = args.spec, args.node
        child = pulumi.ResourceOptions(parent=self)

        # The VM's SSH host key: cloud-init installs it, every remote step pins
        # its public half (connection.hostKey), so a machine answering on the
        # VM's address without it gets no step and no secret.
        self.host_key = pulumi_tls.PrivateKey(f"{name}-ssh-host-key", algorithm="ED25519", opts=child)
        self.host_public_key = self.host_key.public_key_openssh
        host_key = pulumi.Output.all(
            pulumi.Output.secret(self.host_key.private_key_openssh), self.host_key.public_key_openssh
        ).apply(lambda pair: cloudinit.HostKey(pair[0], pair[1]))
        # The user-data carries the host key's private half: the snippet's data is a secret.
        seed = pulumi.Output.secret(
            pulumi.Output.all(args.deploy_public_key, host_key).apply(
                lambda values: cloudinit.seed(spec, node, values[0], values[1])
            )
        )
        # On a host's own storage, every host gets a copy: a VM migrated there
        # (by hand or by a new pgha:vms[].host) must find its files, since
        # Proxmox rebuilds the cloud-init drive from them when the VM starts.
        hosts = (node.host,) if spec.vm.snippets_shared else spec.proxmox_hosts
        self.snippets: dict[tuple[str, str], proxmoxve.FileLegacy] = {
            (host, document): proxmoxve.FileLegacy(
                f"{name}-{host}-{document}",
                node_name=host,
                datastore_id=spec.vm.snippets_datastore,
                content_type="snippets",
                source_raw=proxmoxve.FileLegacySourceRawArgs(
                    data=seed.apply(lambda s, d=document: s[d]),
                    file_name=snippet_file_name(spec, node, document),
                ),
                # A new seed replaces the file in place (same name, overwritten);
                # the replaced resource's delete would then remove the very
                # path the VM boots from, so deleting never touches the file.
                overwrite=True,
                opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
            )
            for host in hosts
            for document in SEED_DOCUMENTS
        }
        own = {document: self.snippets[(node.host, document)] for document in SEED_DOCUMENTS}

        vm = spec.vm
        cloned = vm.template_vm_id is not None
        holds_backups = node.role == "repository"
        disk = proxmoxve.VmLegacyDiskArgs(
            interface=BOOT_DISK,
            datastore_id=vm.datastore,
            size=vm.disk_gb,
            import_from=None if cloned else args.image_id,
        )
        # A clone's boot disk must be virtio0 in the template too: it is resized to disk_gb.
        clone = (
            proxmoxve.VmLegacyCloneArgs(
                vm_id=vm.template_vm_id,
                node_name=vm.template_node,
                datastore_id=vm.datastore,
                full=True,
                retries=CLONE_RETRIES,
            )
            if cloned
            else None
        )
        self.vm = proxmoxve.VmLegacy(
            name,
            node_name=node.host,
            name=node.name,
            vm_id=node.vm_id,
            clone=clone,
            cpu=proxmoxve.VmLegacyCpuArgs(cores=vm.cores, type=CPU_TYPE),
            memory=proxmoxve.VmLegacyMemoryArgs(dedicated=vm.memory_mb),
            agent=proxmoxve.VmLegacyAgentArgs(enabled=True),
            disks=[disk],
            network_devices=[
                proxmoxve.VmLegacyNetworkDeviceArgs(
                    bridge=args.bridge,
                    vlan_id=args.vlan_id,
                    model="virtio",
                    mac_address=node.mac,
                    # 1450 on a VXLAN zone (pgha:network.mtu); None keeps the bridge's.
                    mtu=spec.network.mtu,
                )
            ],
            initialization=proxmoxve.VmLegacyInitializationArgs(
                datastore_id=vm.datastore,
                user_data_file_id=own["user-data"].id,
                meta_data_file_id=own["meta-data"].id,
                network_data_file_id=own["network-config"].id,
            ),
            serial_devices=[proxmoxve.VmLegacySerialDeviceArgs(device="socket")],
            operating_system=proxmoxve.VmLegacyOperatingSystemArgs(type="l26"),
            on_boot=True,
            started=True,
            stop_on_destroy=True,
            # The provider reads tags back sorted: sorted here, a refresh shows no diff.
            tags=sorted({"pgha", spec.stack}),
            # A changed host (pgha:vms[].host, or a refresh after a migration by
            # hand) live-migrates the VM instead of replacing it.
            migrate=True,
            # Never let the provider restart a VM by itself: with true (its
            # default) every VM of an `up` restarts at once. False leaves a
            # restart-requiring change pending with a warning, and makes a
            # change that needs a stopped VM fail instead (vm.go:
            # vmPowerOffForPendingChanges, vmFinalizePowerState).
            reboot_after_update=False,
            opts=pulumi.ResourceOptions(
                parent=self,
                # The backup repository's disk holds every backup: `pulumi destroy`,
                # a replacement or a removed pgha:backup must not delete it. Protected
                # (the engine refuses to delete or replace it), and retained should
                # it be unprotected: removing it for real is a manual act
                # (docs/backups.md, "Removing a backup repository for real").
                protect=holds_backups,
                retain_on_delete=holds_backups,
                # Inputs that only matter when the VM is created: a new image or a
                # new seed must never replace a running database VM (cloud-init
                # runs once per instance anyway; the snippets keep their names).
                # Nor may a new template, new hardware or a new private network
                # reach every running VM at once (the tuples above).
                ignore_changes=vm_ignore_changes(network_change_allowed()),
                # A replacement (``pulumi up --replace``, a dead VM rebuilt) has the
                # same MAC, IP and name: the old VM must be gone before it boots.
                delete_before_replace=True,
                # On another host, its snippets must already be there.
                depends_on=list(self.snippets.values()),
            ),
        )
        self.ip = str(node.ip)
        self.wanted = pulumi.Output.from_input(args.bridge).apply(
            lambda bridge: Hardware(
                cores=vm.cores,
                memory_mb=vm.memory_mb,
                disk_datastore=vm.datastore,
                cloud_init_datastore=vm.datastore,
                bridge=str(bridge),
                vlan_id=args.vlan_id,
                mtu=spec.network.mtu,
                template_vm_id=vm.template_vm_id,
                template_node=vm.template_node if cloned else None,
            )
        )
        self.current = pulumi.Output.all(
            self.vm.cpu,
            self.vm.memory,
            self.vm.disks,
            self.vm.initialization,
            self.vm.network_devices,
            self.vm.clone,
        ).apply(hardware_from_state)
        self.register_outputs({"vmId": self.vm.vm_id, "host": node.host, "ip": self.ip})
