"""A stack's lab as it stands: its identity, its machines and the ways into them.

No verbs here (``lab.cluster.Lab`` adds them): what observation, fault
injection and the clients need to reach a running lab, so those layers never
depend on how the lab is brought up. Reading the identity never writes:
``save_identity`` is the one place the keys, secrets and certificates are made
and kept, as Pulumi creates its key and secret resources before any VM.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import urllib.request
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import asyncssh

from pgha import (
    ClusterSecrets,
    ClusterSpec,
    ClusterTls,
    LocalCa,
    Node,
    cloudinit,
    image_packages,
    load_stack,
    pki,
)
from pgha.secrets import PREVIOUS, ROTATION, new_password

from . import external, offsite
from .inside import inside
from .lock import StackLock
from .machine import Machine, MachineSpec
from .netns import LabNetwork
from .ssh import SshRunner, Target

STATE_ROOT = Path("/var/lib/pgha-lab")


class IdentityMissing(RuntimeError):
    """The lab keeps no keys, secrets or certificates yet (``save_identity`` makes them)."""


class LabAccess:
    """A stack's lab: state under /var/lib/pgha-lab/<name>, namespace pgha-<name>.

    <name> is the stack, prefixed by $PGHA_LAB_PREFIX when set, so two checkouts
    can each run the same stack's lab side by side without touching the other's.
    """

    def __init__(
        self, stack: str = "dev", report: Callable[[str], None] = print, beside: str | None = None
    ) -> None:
        self.stack = stack
        self.report = report
        self.name = os.environ.get("PGHA_LAB_PREFIX", "") + stack
        self.state_dir = STATE_ROOT / self.name
        # With the lab's own off-site S3 server, the stack verifies it against that server's CA.
        self.spec: ClusterSpec = offsite.with_server_ca(load_stack(stack), self.state_dir)
        # A stack ``beside`` another (blue-green) sits on that stack's bridge, as two stacks on one
        # vmbr: its namespace, which only its own lab creates and destroys, and its image.
        self.beside = beside
        prefix = os.environ.get("PGHA_LAB_PREFIX", "")
        self.network = LabNetwork(f"pgha-{prefix}{beside or stack}")
        self.key_path = self.state_dir / "id_ed25519"
        self.secrets_path = self.state_dir / "secrets.json"
        self.tls_path = self.state_dir / "tls.json"
        # Public: what clients (psql, curl, the tests) verify the servers against.
        self.ca_path = self.state_dir / "ca.crt"
        # The lab operator's client certificate and key, for etcd.
        self.operator_pem_path = self.state_dir / "operator.pem"
        # Each machine's leave command, kept as Pulumi keeps a Command's ``delete``.
        self.leave_dir = self.state_dir / "leave"
        # Each machine's SSH host key pair (Pulumi: a tls.PrivateKey per VM), root-only.
        self.host_keys_path = self.state_dir / "ssh_host_keys.json"
        # Taken by every verb that changes the lab; ``down`` refuses while another live process has it.
        self.lock = StackLock(self.name)

    # ---- identity: made and kept by save_identity, only read by the getters ----------------

    def save_identity(self) -> None:
        """Make what is missing or due and keep it root-only (Pulumi keeps it in state).

        The deploy key, every node's SSH host key, the secrets and the
        certificates of ``self.spec``. Secrets: a new kind (an older lab's
        state lacks it) is generated once, the others kept; like Pulumi's
        RandomPassword with the role's rotation as keeper, every login role has
        a password and a new rotation generation gives it a new one, and so
        does a new ``secretRotation`` generation to an internal secret.
        Certificates: a new ``tls.rotation`` re-issues every node's key and
        certificate, a node without one or whose certificate nears its end gets
        a new one, and the CA stays.
        """
        self._save_deploy_key()
        for node in self.spec.nodes:
            self.save_host_key(node)
        self._save_secrets()
        self._save_tls()
        offsite.save_identity(self.state_dir, self.spec)
        self.spec = offsite.with_server_ca(self.spec, self.state_dir)

    def _save_secrets(self) -> None:
        kept = self._read_json(self.secrets_path) or {}
        saved = dict(kept)
        if not set(ClusterSecrets.names()) <= set(saved):
            saved = {**ClusterSecrets.generate().__dict__, **saved}
        # pgha:secretRotation, as Pulumi's keepers: a generation that differs from the kept
        # one is a new value; a marker key's old value stays in the ring as its predecessor.
        generations = dict(saved.pop("secret_rotations", None) or {})
        for name, key in ROTATION.items():
            wanted = getattr(self.spec.secret_rotation, key)
            if generations.get(key, 0) != wanted:
                if name in PREVIOUS:
                    saved[PREVIOUS[name]] = saved[name]
                saved[name] = new_password()
                generations[key] = wanted
        passwords = dict(saved.get("role_passwords") or {})
        rotations = dict(saved.pop("role_rotations", None) or {})
        for role in self.spec.login_roles:
            if role.name not in passwords or rotations.get(role.name, 0) != role.rotation:
                passwords[role.name] = new_password()
                rotations[role.name] = role.rotation
        saved["role_passwords"] = passwords
        if offsite.endpoint(self.spec) is not None and not saved.get("backup_offsite_key"):
            # The bucket is the lab's own: it makes the stack's key pair, as an operator gets one.
            saved.update(offsite.stack_keys())
        if self.spec.importing is not None and not saved.get("import_password"):
            # pgha:importPassword is the operator's (the source role's): the lab makes one, and the
            # scenario that prepares the source gives the role that password (lab/scenarios/bluegreen.py).
            saved["import_password"] = new_password()
        stored = {**saved, "role_rotations": rotations, "secret_rotations": generations}
        if stored != kept:
            self._write_private(self.secrets_path, json.dumps(stored))

    def _save_tls(self) -> None:
        state = self._read_json(self.tls_path)
        ca = LocalCa(**state["ca"]) if state else LocalCa.create(self.spec)
        rotation = self.spec.tls.rotation
        nodes: dict[str, pki.NodeTls] = {}
        etcd_pairs: dict[str, pki.NodeTls] = {}
        # A state from before the etcd identities existed: its node certificates name etcd's client.
        if state and state["rotation"] == rotation and "etcd" in state:
            nodes = {name: pki.NodeTls(**pair) for name, pair in state["nodes"].items()}
            etcd_pairs = {name: pki.NodeTls(**pair) for name, pair in state["etcd"].items()}
        renew, days = self.spec.tls.renew_before_days, self.spec.tls.cert_validity_days

        def fresh(kept: dict[str, pki.NodeTls], node: Node) -> bool:
            return node.name in kept and not pki.expires_within(kept[node.name].certificate, renew)

        stale = [n for n in self.spec.nodes if not fresh(nodes, n)]
        for node in stale:
            nodes[node.name] = ca.issue(pki.node_identity(self.spec, node), days)
        for node in self.spec.nodes:
            identity = pki.etcd_identity(node)
            if identity is not None and not fresh(etcd_pairs, node):
                etcd_pairs[node.name] = ca.issue(identity, days)
                stale.append(node)
        if stale or not self.operator_pem_path.exists() or not self.ca_path.exists():
            # The operator reads etcd (status, tests): its certificate names the etcd client
            # name, and the address it connects from, which etcd's peer port checks a
            # certificate's names against once it has any.
            identity = pki.CertIdentity(
                f"pgha-lab-{self.stack}-operator", (pki.ETCD_CLIENT_NAME,), (str(self.bridge_ip()),)
            )
            operator = ca.issue(identity, 30)
            document = {
                "rotation": rotation,
                "ca": {"certificate": ca.certificate, "private_key": ca.private_key},
                "nodes": {name: pair.__dict__ for name, pair in nodes.items()},
                "etcd": {name: pair.__dict__ for name, pair in etcd_pairs.items()},
            }
            self._write_private(self.tls_path, json.dumps(document))
            self._write_private(self.operator_pem_path, operator.pem_bundle)
            self.ca_path.write_text(ca.certificate)

    def _save_deploy_key(self) -> None:
        if not self.key_path.exists():
            key = asyncssh.generate_private_key("ssh-ed25519", comment=f"pgha-lab-{self.stack}")
            self._write_private(self.key_path, key.export_private_key().decode())
            self.key_path.with_suffix(".pub").write_text(key.export_public_key().decode())

    def save_host_key(self, node: Node | MachineSpec) -> None:
        """Make and keep a machine's SSH host key, unless it has one (a machine outside the
        stack's nodes, as the restore drill's, gets its own this way)."""
        keys = self._read_json(self.host_keys_path) or {}
        if node.name not in keys:
            key = asyncssh.generate_private_key("ssh-ed25519", comment=f"root@{node.name}")
            keys[node.name] = {
                "private_openssh": key.export_private_key().decode(),
                "public_openssh": key.export_public_key().decode().strip(),
            }
            self._write_private(self.host_keys_path, json.dumps(keys))

    def secrets(self) -> ClusterSecrets:
        """The lab's kept secrets (``save_identity`` makes them)."""
        stored = self._kept(self.secrets_path, "secrets")
        stored.pop("role_rotations", None)
        stored.pop("secret_rotations", None)
        return ClusterSecrets(**stored)

    def client_login(self) -> dict[str, str]:
        """Who the lab's clients are: the first database's owner, never the superuser."""
        database = self.spec.client_database
        if database is None:
            raise RuntimeError(f"stack {self.stack} declares no database for clients")
        return {
            "user": database.owner,
            "password": self.secrets().role_password(database.owner),
            "dbname": database.name,
        }

    def tls(self) -> ClusterTls:
        """The lab's CA certificate and node certificates as kept (``save_identity`` issues them)."""
        state = self._kept(self.tls_path, "certificates")
        nodes = {name: pki.NodeTls(**pair) for name, pair in state["nodes"].items()}
        etcd_pairs = {name: pki.NodeTls(**pair) for name, pair in state.get("etcd", {}).items()}
        return ClusterTls(state["ca"]["certificate"], nodes, etcd_pairs)

    def ca(self) -> LocalCa:
        """The lab's CA with its key (Pulumi keeps it in state): what the restore drill issues from."""
        return LocalCa(**self._kept(self.tls_path, "certificates")["ca"])

    def image_packages(self) -> tuple[str, ...]:
        """The stack's packages; beside another stack, that one's too: one image for both."""
        own = image_packages(self.spec)
        if self.beside is None:
            return own
        return tuple(dict.fromkeys((*image_packages(load_stack(self.beside)), *own)))

    def deploy_public_key(self) -> str:
        """The key the steps run with (Pulumi's is a tls.PrivateKey)."""
        public = self.key_path.with_suffix(".pub")
        if not public.exists():
            raise IdentityMissing(f"lab {self.name} keeps no deploy key yet: `python -m lab up` makes it")
        return public.read_text().strip()

    def host_key(self, node: Node | MachineSpec) -> cloudinit.HostKey:
        """The machine's SSH host key: made by ``save_host_key``, handed to it by cloud-init,
        pinned by every step."""
        keys = self._kept(self.host_keys_path, "SSH host keys")
        if node.name not in keys:
            raise IdentityMissing(f"lab {self.name} keeps no SSH host key for {node.name}")
        return cloudinit.HostKey(**keys[node.name])

    def _kept(self, path: Path, what: str) -> dict[str, Any]:
        state = self._read_json(path)
        if state is None:
            raise IdentityMissing(f"lab {self.name} keeps no {what} yet: `python -m lab up` makes them")
        return state

    @staticmethod
    def _read_json(path: Path) -> dict[str, Any] | None:
        return json.loads(path.read_text()) if path.exists() else None

    def _write_private(self, path: Path, content: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(content)

    # ---- machines ------------------------------------------------------------

    def bridge_ip(self) -> IPv4Address:
        """The namespace's own address on the bridge: the gateway, or a free address."""
        network = self.spec.network
        if network.gateway is not None:
            return network.gateway
        taken = {n.ip for n in self.spec.nodes} | {self.spec.vip}
        return next(a for a in reversed(list(network.cidr.hosts())) if a not in taken)

    def machine(self, node: Node, seeded: bool = False) -> Machine:
        """The node's machine; ``seeded`` with its cloud-init seed (from the kept keys), which only
        a first boot needs: stopping, inspecting or removing a machine reads no keys."""
        seed = {}
        if seeded:
            make_seed = external.seed if node.external else cloudinit.seed
            seed = make_seed(self.spec, node, self.deploy_public_key(), self.host_key(node))
        spec = MachineSpec(
            name=node.name,
            host=node.host,
            ip=str(node.ip),
            prefixlen=self.spec.network.cidr.prefixlen,
            mac=node.mac,
            interface=self.spec.network.interface,
            seed=seed,
        )
        return Machine(spec, self.state_dir / "machines", self.network)

    def machines(self) -> dict[str, Machine]:
        return {node.name: self.machine(node) for node in self.spec.nodes}

    def stale_machine(self, name: str) -> Machine:
        """A machine known only by its directory (its VM is gone from the config)."""
        stale = MachineSpec(name, "", "0.0.0.0", 32, "00:00:00:00:00:00", "eth0")
        return Machine(stale, self.state_dir / "machines", self.network)

    def target(self, node: Node) -> Target:
        return Target(
            str(node.ip), self.spec.ssh.port, self.spec.ssh.user, self.host_key(node).public_openssh
        )

    def targets(self) -> dict[str, Target]:
        return {n.name: self.target(n) for n in self.spec.nodes}

    def runner(self) -> SshRunner:
        return SshRunner(self.network.path, self.key_path)

    def exec(self, node: str | Node, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
        """Run a command inside a machine (all its namespaces), even when cut off the network."""
        return subprocess.run(self.exec_args(node, argv), **kwargs)

    def exec_args(self, node: str | Node, argv: list[str]) -> list[str]:
        """The command line that runs ``argv`` in a machine (a stack node, or the restore drill's)."""
        node = self.spec.node(node) if isinstance(node, str) else node
        _, init_pid = self.machine(node).pids()
        if init_pid is None:
            raise RuntimeError(f"{node.name} is not running")
        command = ["nsenter", f"--target={init_pid}", "--mount", "--uts", "--ipc", "--net", "--pid"]
        return [*command, "--", *argv]

    # ---- clients -------------------------------------------------------------

    def client_env(self, port: int | None = None) -> dict[str, str]:
        """libpq environment: the VIP, TLS verified against the lab's CA, the password in the environment."""
        login = self.client_login()
        return {
            **os.environ,
            "PGHOST": str(self.spec.vip),
            "PGPORT": str(port or self.spec.haproxy.primary_port),
            "PGUSER": login["user"],
            "PGDATABASE": login["dbname"],
            "PGPASSWORD": login["password"],
            "PGCONNECT_TIMEOUT": "5",
            "PGSSLMODE": "verify-full",
            "PGSSLROOTCERT": str(self.ca_path),
        }

    def run(self, argv: list[str], port: int | None = None, **kwargs: Any) -> subprocess.CompletedProcess:
        """Run a client command inside the lab namespace, with libpq pointed at the VIP."""
        return self.network.run(argv, env=self.client_env(port), **kwargs)

    def tls_context(self, client_cert: bool = False) -> ssl.SSLContext:
        """Verifies the servers against the lab's CA; optionally shows the operator's certificate."""
        context = ssl.create_default_context(cafile=str(self.ca_path))
        if client_cert:
            context.load_cert_chain(str(self.operator_pem_path))
        return context

    def http_json(self, url: str, timeout: float = 2.0, client_cert: bool = False) -> Any:
        context = self.tls_context(client_cert)
        with (
            inside(self.network.path),
            urllib.request.urlopen(url, timeout=timeout, context=context) as response,
        ):
            return json.loads(response.read())
