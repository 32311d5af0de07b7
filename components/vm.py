"""The VMs: a cloud image on each Proxmox host, and one VM per node booted with its NoCloud seed."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_proxmoxve as proxmoxve
import pulumi_tls

from pgha import cloudinit
from pgha.spec import ClusterSpec, Node

# Portable across CPU generations, so a VM can live-migrate between the two hosts.
CPU_TYPE = "x86-64-v2-AES"
BOOT_DISK = "virtio0"
CLONE_RETRIES = 3  # Proxmox times out now and then when several clones run at once.
SEED_DOCUMENTS = ("user-data", "meta-data", "network-config")


@dataclass(frozen=True)
class CloudImageArgs:
    spec: ClusterSpec


class CloudImage(pulumi.ComponentResource):
    """The Debian cloud image, downloaded by each Proxmox host that runs a VM.

    Creates nothing when the VMs are cloned from a template instead.
    """

    files: dict[str, proxmoxve.download.File]

    def __init__(self, name: str, args: CloudImageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("pgha:index:CloudImage", name, None, opts)
        vm = args.spec.vm
        self.files = {}
        if vm.template_vm_id is None:
            file_name = vm.image_url.rstrip("/").rsplit("/", 1)[-1]
            for host in args.spec.proxmox_hosts:
                self.files[host] = proxmoxve.download.File(
                    f"{name}-image-{host}",
                    node_name=host,
                    datastore_id=vm.image_datastore,
                    content_type="import",
                    url=vm.image_url,
                    file_name=file_name,
                    checksum=vm.image_checksum,
                    checksum_algorithm=vm.image_checksum_algorithm if vm.image_checksum else None,
                    # Debian's "latest" image changes under the same URL; a new
                    # upstream build must not ripple into the running VMs.
                    overwrite=False,
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
        self.snippets: dict[str, proxmoxve.FileLegacy] = {
            document: proxmoxve.FileLegacy(
                f"{name}-{document}",
                node_name=node.host,
                datastore_id=spec.vm.snippets_datastore,
                content_type="snippets",
                source_raw=proxmoxve.FileLegacySourceRawArgs(
                    data=seed.apply(lambda s, d=document: s[d]),
                    file_name=f"pgha-{spec.stack}-{node.name}-{document}.yaml",
                ),
                opts=child,
            )
            for document in SEED_DOCUMENTS
        }

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
                )
            ],
            initialization=proxmoxve.VmLegacyInitializationArgs(
                datastore_id=vm.datastore,
                user_data_file_id=self.snippets["user-data"].id,
                meta_data_file_id=self.snippets["meta-data"].id,
                network_data_file_id=self.snippets["network-config"].id,
            ),
            serial_devices=[proxmoxve.VmLegacySerialDeviceArgs(device="socket")],
            operating_system=proxmoxve.VmLegacyOperatingSystemArgs(type="l26"),
            on_boot=True,
            started=True,
            stop_on_destroy=True,
            tags=["pgha", spec.stack],
            # The image only matters when the disk is created: a new one must
            # never replace a running database VM.
            # A replacement (``pulumi up --replace``, a dead VM rebuilt) has the
            # same MAC, IP and name: the old VM must be gone before it boots.
            opts=pulumi.ResourceOptions(
                parent=self, ignore_changes=["disks[0].importFrom"], delete_before_replace=True
            ),
        )
        self.ip = str(node.ip)
        self.register_outputs({"vmId": self.vm.vm_id, "host": node.host, "ip": self.ip})
