"""The VMs' private network: an existing Proxmox bridge, or an SDN zone and vnet we create."""

from __future__ import annotations

import hashlib
import json
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

        # Applies the deletions last on destroy: the zone depends on it, so
        # Pulumi deletes it after the zone, vnet and subnet are gone.
        self.cleanup = proxmoxve.sdn.Applier(
            f"{name}-sdn-cleanup",
            on_create=False,
            on_destroy=True,
            opts=pulumi.ResourceOptions(parent=self),
        )
        after_cleanup = pulumi.ResourceOptions(parent=self, depends_on=[self.cleanup])
        child = pulumi.ResourceOptions(parent=self)
        zone: proxmoxve.sdn.zone.Vlan | proxmoxve.sdn.zone.Vxlan
        if sdn.type == "vlan":
            zone = proxmoxve.sdn.zone.Vlan(
                f"{name}-zone",
                resource_id=sdn.zone,
                bridge=str(sdn.bridge),
                nodes=list(spec.proxmox_hosts),
                mtu=network.mtu,
                opts=after_cleanup,
            )
        else:
            zone = proxmoxve.sdn.zone.Vxlan(
                f"{name}-zone",
                resource_id=sdn.zone,
                peers=list(sdn.peers),
                nodes=list(spec.proxmox_hosts),
                # 1450 unless pgha:network.mtu says otherwise: VXLAN costs 50 bytes.
                mtu=network.mtu,
                opts=after_cleanup,
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
        # SDN objects are only pending config until applied cluster-wide, and the
        # provider's Applier applies only when it is created: a new definition
        # (zone, vnet, tag, subnet, peers, MTU, the hosts) replaces it, i.e.
        # applies again, before any VM that needs the result.
        self.applier = proxmoxve.sdn.Applier(
            f"{name}-sdn-applier",
            on_create=True,
            on_destroy=False,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[zone, self.vnet, self.subnet],
                replacement_trigger=sdn_definition_digest(spec),
            ),
        )
        # The URN, not the id: known in a preview even when the applier is
        # replaced, so the VMs show no bridge change, yet they still wait for it.
        self.bridge = pulumi.Output.all(self.vnet.resource_id, self.applier.urn).apply(lambda v: str(v[0]))
        self.vlan_id = None
        self.register_outputs({"bridge": self.bridge, "vlanId": None})


def sdn_definition_digest(spec: ClusterSpec) -> str:
    """Everything the SDN apply acts on: when it changes, the applier must run again."""
    network = spec.network
    sdn = network.sdn
    assert sdn is not None
    definition = {
        "zone": sdn.zone,
        "vnet": sdn.vnet,
        "type": sdn.type,
        "tag": sdn.tag,
        "bridge": sdn.bridge,
        "peers": list(sdn.peers),
        "nodes": list(spec.hosts),
        "mtu": network.mtu,
        "cidr": str(network.cidr),
        "gateway": str(network.gateway) if network.gateway else None,
    }
    return hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()
