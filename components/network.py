"""The VMs' private network: an existing Proxmox bridge, or an SDN zone and vnet we create."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_proxmoxve as proxmoxve

from pgha.spec import ClusterSpec


@dataclass(frozen=True)
class PrivateNetworkArgs:
    spec: ClusterSpec


class PrivateNetwork(pulumi.ComponentResource):
    """Where the VMs' NIC plugs in: ``bridge`` (and ``vlan_id`` on a plain bridge).

    With SDN the vnet is the bridge on every host and it does the tagging, so
    ``vlan_id`` is None; ``bridge`` then resolves only once the SDN config is
    applied, which makes every VM wait for it.
    """

    bridge: pulumi.Output[str]
    vlan_id: int | None

    def __init__(
        self, name: str, args: PrivateNetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("pgha:index:PrivateNetwork", name, None, opts)
        spec = args.spec
        network = spec.network
        sdn = network.sdn
        if sdn is None:
            self.bridge = pulumi.Output.from_input(str(network.bridge))
            self.vlan_id = network.vlan
            self.register_outputs({"bridge": self.bridge, "vlanId": self.vlan_id})
            return

        child = pulumi.ResourceOptions(parent=self)
        zone: proxmoxve.sdn.zone.Vlan | proxmoxve.sdn.zone.Vxlan
        if sdn.type == "vlan":
            zone = proxmoxve.sdn.zone.Vlan(
                f"{name}-zone",
                resource_id=sdn.zone,
                bridge=str(sdn.bridge),
                nodes=list(spec.proxmox_hosts),
                opts=child,
            )
        else:
            zone = proxmoxve.sdn.zone.Vxlan(
                f"{name}-zone",
                resource_id=sdn.zone,
                peers=list(sdn.peers),
                nodes=list(spec.proxmox_hosts),
                opts=child,
            )
        self.zone = zone
        self.vnet = proxmoxve.sdn.Vnet(
            f"{name}-vnet",
            resource_id=sdn.vnet,
            zone=zone.resource_id,
            tag=sdn.tag,
            opts=child,
        )
        self.subnet = proxmoxve.sdn.Subnet(
            f"{name}-subnet",
            vnet=self.vnet.resource_id,
            cidr=str(network.cidr),
            gateway=str(network.gateway) if network.gateway else None,
            opts=child,
        )
        # SDN objects are only pending config until applied cluster-wide.
        self.applier = proxmoxve.sdn.Applier(
            f"{name}-sdn-applier",
            opts=pulumi.ResourceOptions(parent=self, depends_on=[zone, self.vnet, self.subnet]),
        )
        self.bridge = pulumi.Output.all(self.vnet.resource_id, self.applier.id).apply(lambda v: str(v[0]))
        self.vlan_id = None
        self.register_outputs({"bridge": self.bridge, "vlanId": None})
