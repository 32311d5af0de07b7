"""The whole HA PostgreSQL cluster as one component: what ``__main__`` builds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pulumi

from pgha.secrets import SUPERUSER, ClusterSecrets
from pgha.spec import ClusterSpec
from pgha.topology import failure_domains

from .network import PrivateNetwork, PrivateNetworkArgs
from .secrets import ClusterPasswords
from .steps import RemoteSteps, RemoteStepsArgs
from .tls import ClusterCertificates, ClusterCertificatesArgs
from .vm import CloudImage, CloudImageArgs, PghaVm, PghaVmArgs


@dataclass(frozen=True)
class PghaClusterArgs:
    spec: ClusterSpec


def _connection_string(secrets: ClusterSecrets, vip: str, port: int) -> str:
    """TLS, and the server's certificate checked against the CA (``caCertificate``) and the VIP.

    libpq looks for the CA in ``~/.postgresql/root.crt`` unless ``sslrootcert`` says otherwise.
    """
    password = quote(secrets.superuser_password, safe="")
    return f"postgresql://{SUPERUSER}:{password}@{vip}:{port}/postgres?sslmode=verify-full"


class PghaCluster(pulumi.ComponentResource):
    """Passwords, certificates, network, VMs and the remote steps, wired from one validated spec.

    Pass a Proxmox provider through ``opts`` (``providers=[...]``); every child
    inherits it as ``parent=self``.
    """

    vip: pulumi.Output[str]
    ca_certificate: pulumi.Output[str]
    primary_port: pulumi.Output[int]
    replica_port: pulumi.Output[int]
    primary_connection_string: pulumi.Output[str]
    replica_connection_string: pulumi.Output[str]
    nodes: pulumi.Output[list[dict[str, str]]]
    failure_domains: pulumi.Output[dict[str, str]]

    def __init__(self, name: str, args: PghaClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("pgha:index:Cluster", name, None, opts)
        spec = args.spec
        child = pulumi.ResourceOptions(parent=self)

        self.passwords = ClusterPasswords(name, opts=child)
        self.certificates = ClusterCertificates(name, ClusterCertificatesArgs(spec), opts=child)
        self.network = PrivateNetwork(name, PrivateNetworkArgs(spec), opts=child)
        self.image = CloudImage(name, CloudImageArgs(spec), opts=child)
        self.vms = {
            node.name: PghaVm(
                node.name,
                PghaVmArgs(
                    spec=spec,
                    node=node,
                    deploy_public_key=self.passwords.deploy_public_key,
                    bridge=self.network.bridge,
                    vlan_id=self.network.vlan_id,
                    image_id=self.image.image_id(node.host),
                ),
                opts=child,
            )
            for node in spec.nodes
            # An external witness is an existing machine: no VM, only the steps.
            if not node.external
        }
        self.steps = RemoteSteps(
            name,
            RemoteStepsArgs(
                spec=spec,
                secrets=self.passwords.secrets,
                tls=self.certificates.tls,
                deploy_private_key=self.passwords.deploy_private_key,
                vms={name: vm.vm for name, vm in self.vms.items()},
                host_keys={
                    **{name: vm.host_public_key for name, vm in self.vms.items()},
                    # An external machine's own key, from its stack config.
                    **{n.name: n.host_key for n in spec.nodes if n.external and n.host_key},
                },
            ),
            opts=child,
        )

        vip = str(spec.vip)
        secrets = self.passwords.secrets
        self.vip = pulumi.Output.from_input(vip)
        self.ca_certificate = self.certificates.ca_certificate
        self.primary_port = pulumi.Output.from_input(spec.haproxy.primary_port)
        self.replica_port = pulumi.Output.from_input(spec.haproxy.replica_port)
        self.primary_connection_string = pulumi.Output.secret(
            secrets.apply(lambda s: _connection_string(s, vip, spec.haproxy.primary_port))
        )
        self.replica_connection_string = pulumi.Output.secret(
            secrets.apply(lambda s: _connection_string(s, vip, spec.haproxy.replica_port))
        )
        node_list: list[dict[str, Any]] = [
            {"name": n.name, "host": n.host, "ip": str(n.ip), "role": n.role} for n in spec.nodes
        ]
        self.nodes = pulumi.Output.from_input(node_list)
        self.failure_domains = pulumi.Output.from_input(failure_domains(spec))

        self.register_outputs(
            {
                "vip": self.vip,
                "caCertificate": self.ca_certificate,
                "primaryPort": self.primary_port,
                "replicaPort": self.replica_port,
                "primaryConnectionString": self.primary_connection_string,
                "replicaConnectionString": self.replica_connection_string,
                "nodes": self.nodes,
                "failureDomains": self.failure_domains,
            }
        )
