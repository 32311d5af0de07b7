"""The whole HA PostgreSQL cluster as one component: what ``__main__`` builds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from pgha import monitoring
from pgha.databases import connection_string
from pgha.secrets import ClusterSecrets
from pgha.spec import ClusterSpec, DatabaseSpec
from pgha.topology import failure_domains

from .network import PrivateNetwork, PrivateNetworkArgs
from .secrets import ClusterPasswords, ClusterPasswordsArgs
from .steps import RemoteSteps, RemoteStepsArgs
from .tls import ClusterCertificates, ClusterCertificatesArgs
from .vm import CloudImage, CloudImageArgs, PghaVm, PghaVmArgs, guard_hardware, network_change_allowed


@dataclass(frozen=True)
class PghaClusterArgs:
    spec: ClusterSpec


def database_outputs(spec: ClusterSpec, database: DatabaseSpec, secrets: ClusterSecrets) -> dict[str, str]:
    """One database's connection strings, as its owner: read-write on 5432, the replicas on 5433,
    and with ``pgha:pooler`` the primary through PgBouncer on 6432."""
    password = secrets.role_password(database.owner)
    return {
        "primary": connection_string(spec, database, password, spec.haproxy.primary_port),
        "replica": connection_string(spec, database, password, spec.haproxy.replica_port),
        **({"pooler": connection_string(spec, database, password, spec.pooler.port)} if spec.pooler else {}),
    }


class PghaCluster(pulumi.ComponentResource):
    """Passwords, certificates, network, VMs and the remote steps, wired from one validated spec.

    Pass a Proxmox provider through ``opts`` (``providers=[...]``); every child
    inherits it as ``parent=self``.
    """

    vip: pulumi.Output[str]
    ca_certificate: pulumi.Output[str]
    primary_port: pulumi.Output[int]
    replica_port: pulumi.Output[int]
    primary_connection_string: pulumi.Output[str | None]
    replica_connection_string: pulumi.Output[str | None]
    databases: pulumi.Output[dict[str, dict[str, str]]]
    nodes: pulumi.Output[list[dict[str, str]]]
    failure_domains: pulumi.Output[dict[str, str]]
    prometheus: pulumi.Output[dict[str, Any]] | None

    def __init__(self, name: str, args: PghaClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("pgha:index:Cluster", name, None, opts)
        spec = args.spec
        child = pulumi.ResourceOptions(parent=self)

        self.passwords = ClusterPasswords(
            name,
            ClusterPasswordsArgs(
                roles=spec.login_roles,
                protect_backup_secret=spec.backup is not None,
                rotation=spec.secret_rotation,
            ),
            opts=child,
        )
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
        # A new template, new hardware or a new private network never reaches every
        # running VM at once: refused at preview, or warned about (components/vm.py).
        self.vm_hardware = guard_hardware(self.vms, allow_network_change=network_change_allowed())
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
        # Never the superuser (it has no network login): each present database's
        # owner, and the first database's as the stack's primary/replica strings.
        # A database owned by a role that cannot log in has no owner's string: its
        # applications log in as member roles (see docs/applications.md).
        logins = {r.name for r in spec.login_roles}
        present = [d for d in spec.databases if d.state == "present" and d.owner in logins]
        self.databases = pulumi.Output.secret(
            secrets.apply(lambda s: {d.name: database_outputs(spec, d, s) for d in present})
        )
        first = spec.client_database if spec.client_database in present else None
        self.primary_connection_string = pulumi.Output.secret(
            secrets.apply(lambda s: database_outputs(spec, first, s)["primary"] if first else None)
        )
        self.replica_connection_string = pulumi.Output.secret(
            secrets.apply(lambda s: database_outputs(spec, first, s)["replica"] if first else None)
        )
        node_list: list[dict[str, Any]] = [
            {"name": n.name, "host": n.host, "ip": str(n.ip), "role": n.role} for n in spec.nodes
        ]
        self.nodes = pulumi.Output.from_input(node_list)
        self.failure_domains = pulumi.Output.from_input(failure_domains(spec))
        # Scrape configs, file_sd targets and the CA for an existing Prometheus: no secret in it.
        self.prometheus = (
            self.ca_certificate.apply(lambda ca: monitoring.prometheus_output(spec, ca))
            if spec.monitoring
            else None
        )

        self.register_outputs(
            {
                "vip": self.vip,
                "caCertificate": self.ca_certificate,
                "primaryPort": self.primary_port,
                "replicaPort": self.replica_port,
                "primaryConnectionString": self.primary_connection_string,
                "replicaConnectionString": self.replica_connection_string,
                "databases": self.databases,
                "nodes": self.nodes,
                "failureDomains": self.failure_domains,
                # Awaited with the component: a refused change fails the preview.
                "vmHardware": self.vm_hardware,
                **({"prometheus": self.prometheus} if self.prometheus is not None else {}),
            }
        )
