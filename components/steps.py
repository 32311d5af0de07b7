"""The core's remote steps, run over SSH by ``pulumi_command``, phase after phase."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
from pulumi_command import remote

from pgha.files import Step
from pgha.pki import ClusterTls
from pgha.plan import leave_step, node_steps, phases
from pgha.secrets import ClusterSecrets
from pgha.spec import ClusterSpec, Node

# A fresh VM answers SSH only once cloud-init has run: keep dialing for ~5 minutes.
DIAL_ERROR_LIMIT = 30
PER_DIAL_TIMEOUT_S = 10


@dataclass(frozen=True)
class RemoteStepsArgs:
    spec: ClusterSpec
    secrets: pulumi.Output[ClusterSecrets]
    tls: pulumi.Output[ClusterTls]
    deploy_private_key: pulumi.Input[str]
    # Each node's VM, by node name: its steps re-run when it is replaced. An
    # external machine (pgha:witness with external: true) has none.
    vms: Mapping[str, pulumi.Resource]


def connection(spec: ClusterSpec, node: Node, private_key: pulumi.Input[str]) -> remote.ConnectionArgs:
    """SSH to the node's private IP as the deploy user, through the jump host if any.

    The jump host authenticates the operator (their SSH agent), not the deploy
    key, which only the VMs trust.
    """
    jump = spec.ssh.jump_host
    proxy = remote.ProxyConnectionArgs(host=jump.host, port=jump.port, user=jump.user) if jump else None
    return remote.ConnectionArgs(
        host=str(node.ip),
        port=spec.ssh.port,
        user=spec.ssh.user,
        private_key=private_key,
        dial_error_limit=DIAL_ERROR_LIMIT,
        per_dial_timeout=PER_DIAL_TIMEOUT_S,
        proxy=proxy,
    )


def _real_steps(
    spec: ClusterSpec, node: Node, secrets: ClusterSecrets, tls: ClusterTls, layout: list[Step]
) -> dict[str, Step]:
    """The node's steps with the real secrets and certificates, checked against the secret-free layout."""
    steps = node_steps(spec, node, secrets, tls)
    if [(s.phase, s.name, s.command) for s in steps] != [(s.phase, s.name, s.command) for s in layout]:
        # The commands are visible in `ps` and in the plan: they must not change with a secret.
        raise ValueError(f"the steps of {node.name} depend on secret values")
    return {s.name: s for s in steps}


def _vm_of(args: RemoteStepsArgs, node: Node) -> list[pulumi.Resource]:
    """The node's VM as a one-element list; empty for an external machine (no VM of ours)."""
    vm = args.vms.get(node.name)
    return [vm] if vm is not None else []


class RemoteSteps(pulumi.ComponentResource):
    """One ``remote.Command`` per node and step, ordered by the core's phases.

    Names, order and scripts come from the core with placeholder secrets and
    certificates; only the stdin bundle (and so the trigger digest) is
    computed from the real ones, inside ``apply``, so it stays a secret.
    """

    commands: dict[tuple[str, str], remote.Command]
    leave: dict[str, remote.Command]

    def __init__(self, name: str, args: RemoteStepsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("pgha:index:RemoteSteps", name, None, opts)
        spec = args.spec
        placeholders = ClusterSecrets.placeholders()
        tls_placeholders = ClusterTls.placeholders(spec)
        layout = {node.name: node_steps(spec, node, placeholders, tls_placeholders) for node in spec.nodes}
        material = pulumi.Output.all(args.secrets, args.tls)
        real = {
            node.name: material.apply(lambda m, n=node: _real_steps(spec, n, m[0], m[1], layout[n.name]))
            for node in spec.nodes
        }

        self.commands = {}
        previous: list[pulumi.Resource] = list(args.vms.values())
        for _phase, steps in phases(spec, placeholders, tls_placeholders):
            current: list[pulumi.Resource] = []
            for step in steps:
                node = spec.node(step.node)
                real_step = real[node.name].apply(lambda r, s=step.name: r[s])
                command = remote.Command(
                    f"{node.name}-{step.title}",
                    connection=connection(spec, node, args.deploy_private_key),
                    create=step.command,
                    stdin=real_step.apply(lambda s: s.stdin),
                    # A hash of random passwords reveals none of them; in clear,
                    # the preview shows which steps will run again.
                    triggers=[pulumi.Output.unsecret(real_step.apply(lambda s: s.digest))],
                    logging=remote.Logging.NONE if step.has_secrets else remote.Logging.STDOUT_AND_STDERR,
                    # Debian's sshd accepts no PULUMI_COMMAND_* variables: skip the warnings.
                    add_previous_output_in_env=False,
                    # A replaced VM (pulumi up --replace, a dead VM rebuilt) is a
                    # fresh disk: its steps must run on it again, unchanged or not.
                    opts=pulumi.ResourceOptions(
                        parent=self, depends_on=previous, replace_with=_vm_of(args, node) or None
                    ),
                )
                self.commands[(node.name, step.name)] = command
                current.append(command)
            previous = current

        # Scale-in: a VM dropped from pgha:vms leaves the cluster (VIP, primary,
        # Patroni, etcd membership) before Pulumi deletes it. Deleting this command
        # runs that; depending on the VM makes Pulumi delete it first.
        self.leave = {}
        for node in spec.nodes:
            leave = leave_step(spec, node)
            self.leave[node.name] = remote.Command(
                f"{node.name}-{leave.name}",
                connection=connection(spec, node, args.deploy_private_key),
                delete=leave.command,
                logging=remote.Logging.STDOUT_AND_STDERR,
                add_previous_output_in_env=False,
                opts=pulumi.ResourceOptions(parent=self, depends_on=_vm_of(args, node)),
            )

        self.register_outputs({"commands": [c.urn for c in self.commands.values()]})
