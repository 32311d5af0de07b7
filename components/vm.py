"""The VMs: a cloud image on each Proxmox host, and one VM per node booted with its NoCloud seed."""

from __future__ import annotations

import re
from dataclasses import dataclass

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
            opts=pulumi.ResourceOptions(
                parent=self,
                # Inputs that only matter when the VM is created: a new image or a
                # new seed must never replace a running database VM (cloud-init
                # runs once per instance anyway; the snippets keep their names).
                ignore_changes=list(CREATE_ONLY_INPUTS),
                # A replacement (``pulumi up --replace``, a dead VM rebuilt) has the
                # same MAC, IP and name: the old VM must be gone before it boots.
                delete_before_replace=True,
                # On another host, its snippets must already be there.
                depends_on=list(self.snippets.values()),
            ),
        )
        self.ip = str(node.ip)
        self.register_outputs({"vmId": self.vm.vm_id, "host": node.host, "ip": self.ip})
