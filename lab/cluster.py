"""The lab: one local Debian 13 machine per VM of a stack, driven like Proxmox.

Only machines, network and the SSH executor are the lab's own; the seed
(cloud-init) and every step come from ``pgha``, exactly as the
Pulumi components send them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
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
    leave_step,
    load_stack,
    phases,
    pki,
    rolling,
)
from pgha.secrets import new_password
from pgha.spec import MaintenanceSpec

from . import external, observe
from .image import ensure_image
from .inside import inside
from .lock import StackLock
from .machine import Machine, MachineSpec
from .netns import LabNetwork
from .ssh import SshRunner, StepError, StepResult, Target

STATE_ROOT = Path("/var/lib/pgha-lab")


@dataclass
class Timings:
    image: float = 0.0
    boot: float = 0.0
    ssh: float = 0.0
    steps: float = 0.0
    ready: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 1) for k, v in self.__dict__.items()}


class Lab:
    """A stack's lab: state under /var/lib/pgha-lab/<name>, namespace pgha-<name>.

    <name> is the stack, prefixed by $PGHA_LAB_PREFIX when set, so two checkouts
    can each run the same stack's lab side by side without touching the other's.
    """

    def __init__(self, stack: str = "dev", report: Callable[[str], None] = print) -> None:
        self.stack = stack
        self.spec: ClusterSpec = load_stack(stack)
        self.report = report
        self.name = os.environ.get("PGHA_LAB_PREFIX", "") + stack
        self.state_dir = STATE_ROOT / self.name
        self.network = LabNetwork(f"pgha-{self.name}")
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

    # ---- identity ------------------------------------------------------------

    def secrets(self) -> ClusterSecrets:
        """The lab's generated secrets, kept root-only across runs (Pulumi keeps them in state).

        A new kind of secret (an older lab's state lacks it) is generated once,
        the others kept. Like Pulumi's RandomPassword with the role's rotation
        as keeper: every login role of the current spec has a password, and a
        new rotation generation of a role gives it a new one.
        """
        kept = json.loads(self.secrets_path.read_text()) if self.secrets_path.exists() else {}
        saved = dict(kept)
        if not set(ClusterSecrets.names()) <= set(saved):
            saved = {**ClusterSecrets.generate().__dict__, **saved}
        passwords = dict(saved.get("role_passwords") or {})
        rotations = dict(saved.pop("role_rotations", None) or {})
        for role in self.spec.login_roles:
            if role.name not in passwords or rotations.get(role.name, 0) != role.rotation:
                passwords[role.name] = new_password()
                rotations[role.name] = role.rotation
        saved["role_passwords"] = passwords
        stored = {**saved, "role_rotations": rotations}
        if stored != kept:
            self._write_private(self.secrets_path, json.dumps(stored))
        return ClusterSecrets(**saved)

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
        """The lab's CA and node certificates, kept root-only across runs (Pulumi keeps them in state).

        As with Pulumi: a new ``tls.rotation`` re-issues every node's key and
        certificate, a node without one or whose certificate nears its end
        gets a new one, and the CA stays.
        """
        state = json.loads(self.tls_path.read_text()) if self.tls_path.exists() else None
        ca = LocalCa(**state["ca"]) if state else LocalCa.create(self.spec)
        return self._issue(state, ca)

    def ca(self) -> LocalCa:
        """The lab's CA with its key (Pulumi keeps it in state): what the restore drill issues from."""
        self.tls()
        return LocalCa(**json.loads(self.tls_path.read_text())["ca"])

    def image_packages(self) -> tuple[str, ...]:
        return image_packages(self.spec)

    def _issue(self, state: dict[str, Any] | None, ca: LocalCa) -> ClusterTls:
        rotation = self.spec.tls.rotation
        nodes = {}
        if state and state["rotation"] == rotation:
            nodes = {name: pki.NodeTls(**pair) for name, pair in state["nodes"].items()}
        renew = self.spec.tls.renew_before_days
        stale = [
            n
            for n in self.spec.nodes
            if n.name not in nodes or pki.expires_within(nodes[n.name].certificate, renew)
        ]
        for node in stale:
            nodes[node.name] = ca.issue(pki.node_identity(self.spec, node), self.spec.tls.cert_validity_days)
        tls = ClusterTls(ca.certificate, nodes)
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
            }
            self._write_private(self.tls_path, json.dumps(document))
            self._write_private(self.operator_pem_path, operator.pem_bundle)
            self.ca_path.write_text(ca.certificate)
        return tls

    def deploy_public_key(self) -> str:
        """The key the steps run with (Pulumi's is a tls.PrivateKey)."""
        if not self.key_path.exists():
            key = asyncssh.generate_private_key("ssh-ed25519", comment=f"pgha-lab-{self.stack}")
            self._write_private(self.key_path, key.export_private_key().decode())
            self.key_path.with_suffix(".pub").write_text(key.export_public_key().decode())
        return self.key_path.with_suffix(".pub").read_text().strip()

    def host_key(self, node: Node | MachineSpec) -> cloudinit.HostKey:
        """The machine's SSH host key: made here, handed to it by cloud-init, pinned by every step."""
        keys = json.loads(self.host_keys_path.read_text()) if self.host_keys_path.exists() else {}
        if node.name not in keys:
            key = asyncssh.generate_private_key("ssh-ed25519", comment=f"root@{node.name}")
            keys[node.name] = {
                "private_openssh": key.export_private_key().decode(),
                "public_openssh": key.export_public_key().decode().strip(),
            }
            self._write_private(self.host_keys_path, json.dumps(keys))
        return cloudinit.HostKey(**keys[node.name])

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

    def machine(self, node: Node) -> Machine:
        spec = MachineSpec(
            name=node.name,
            host=node.host,
            ip=str(node.ip),
            prefixlen=self.spec.network.cidr.prefixlen,
            mac=node.mac,
            interface=self.spec.network.interface,
            seed=(external.seed if node.external else cloudinit.seed)(
                self.spec, node, self.deploy_public_key(), self.host_key(node)
            ),
        )
        return Machine(spec, self.state_dir / "machines", self.network)

    def machines(self) -> dict[str, Machine]:
        return {node.name: self.machine(node) for node in self.spec.nodes}

    def target(self, node: Node) -> Target:
        return Target(
            str(node.ip), self.spec.ssh.port, self.spec.ssh.user, self.host_key(node).public_openssh
        )

    def runner(self) -> SshRunner:
        return SshRunner(self.network.path, self.key_path)

    # ---- verbs ---------------------------------------------------------------

    def up(self) -> tuple[Timings, list[StepResult]]:
        """Bring the stack up, or re-run every step on a running lab (must change nothing).

        Takes the stack's lock for this process (LabBusy if another live one has it).
        """
        self.lock.acquire()
        timings = Timings()
        secrets = self.secrets()
        tls = self.tls()
        self.deploy_public_key()
        started = time.monotonic()
        image = ensure_image(self.image_packages(), log=self.report)
        timings.image = time.monotonic() - started

        started = time.monotonic()
        self.network.create(str(self.spec.network.cidr), str(self.bridge_ip()))
        runner = self.runner()
        self._remove_absent(runner)
        for node in self.spec.nodes:
            machine = self.machine(node)
            if machine.is_running():
                continue
            self.report(f"booting {node.name} (Proxmox host {node.host}, {node.ip})")
            if (machine.dir / "state.json").exists() and machine.root.exists():
                machine.start()
            else:
                machine.boot(image)
        timings.boot = time.monotonic() - started

        started = time.monotonic()
        asyncio.run(self._wait_all_ssh(runner))
        self._save_leave_steps()
        timings.ssh = time.monotonic() - started

        self.report("running the program's steps:")
        started = time.monotonic()
        results = asyncio.run(
            runner.run_phases(phases(self.spec, secrets, tls), self._targets(), report=self.report)
        )
        timings.steps = time.monotonic() - started
        started = time.monotonic()
        self.wait_ready()
        timings.ready = time.monotonic() - started
        return timings, results

    def apply(self, spec: ClusterSpec) -> tuple[Timings, list[StepResult]]:
        """Make the lab match ``spec``, a new config of this stack, as ``pulumi up`` after an edit.

        VMs absent from ``spec`` leave the cluster (their saved leave step) and
        are removed; new ones boot; every step runs again on the others.
        """
        if spec.stack != self.stack:
            raise ValueError(f"spec of stack {spec.stack!r} applied to the lab of {self.stack!r}")
        self.spec = spec
        return self.up()

    def replace(self, node_name: str) -> tuple[Timings, list[StepResult]]:
        """A dead VM rebuilt under the same name: its disk is destroyed, a fresh one boots.

        As ``pulumi up --replace`` on the VM: no leave step runs (the VM is
        presumed dead); the fresh machine's etcd step removes the stale member
        and joins anew, and Patroni clones it.
        """
        self.lock.acquire()
        node = self.spec.node(node_name)
        self.report(f"replacing {node.name}: destroying its machine and disk")
        self.machine(node).remove()
        return self.up()

    def _save_leave_steps(self) -> None:
        """Each VM's leave command as of this config: what runs if a later config drops it."""
        self.leave_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for node in self.spec.nodes:
            step = leave_step(self.spec, node)
            record = {"command": step.command, **self.target(node).__dict__}
            (self.leave_dir / f"{node.name}.json").write_text(json.dumps(record))

    def _remove_absent(self, runner: SshRunner) -> None:
        """Machines of this stack that ``self.spec`` no longer has: leave, then go.

        Their leave steps run concurrently, as Pulumi deletes them; the
        membership lock on etcd makes them take turns.
        """
        machines_dir = self.state_dir / "machines"
        wanted = {n.name for n in self.spec.nodes}
        absent = sorted(p.name for p in machines_dir.iterdir() if p.is_dir()) if machines_dir.exists() else []
        absent = [name for name in absent if name not in wanted]
        if not absent:
            return
        leaving = {}
        for name in absent:
            path = self.leave_dir / f"{name}.json"
            machine = self._stale_machine(name)
            if path.exists() and machine.is_running():
                leaving[name] = json.loads(path.read_text())
        if leaving:
            self.report(f"leaving the cluster: {', '.join(leaving)}")
            outcomes = asyncio.run(self._run_leave(runner, leaving))
            for name, (status, _out, err) in zip(leaving, outcomes, strict=True):
                for line in err.splitlines():
                    if line.startswith("[pgha"):
                        self.report(f"  {name}: {line}")
                if status != 0:
                    raise StepError(f"leave failed on {name} (exit {status}):\n{err[-3000:]}")
        for name in absent:
            self.report(f"removing {name}")
            self._stale_machine(name).remove()
            (self.leave_dir / f"{name}.json").unlink(missing_ok=True)

    async def _run_leave(self, runner: SshRunner, leaving: dict[str, dict[str, Any]]) -> list[tuple]:
        calls = []
        for name, record in leaving.items():
            # A record saved before host keys were pinned: the key the lab keeps for that machine.
            host_key = record.get("host_key") or self.host_key(self._stale_machine(name).spec).public_openssh
            target = Target(record["host"], record["port"], record["user"], host_key)
            calls.append(runner.run(target, record["command"]))
        return list(await asyncio.gather(*calls))

    def _stale_machine(self, name: str) -> Machine:
        """A machine known only by its directory (its VM is gone from the config)."""
        stale = MachineSpec(name, "", "0.0.0.0", 32, "00:00:00:00:00:00", "eth0")
        return Machine(stale, self.state_dir / "machines", self.network)

    def rolling_update(self, generation: int | None = None) -> list[StepResult]:
        """The rolling package update: the upgrade phase's steps as a new
        ``maintenance.upgrade`` generation renders them (default: now, in seconds).

        The lab's machines reach no mirror, so apt works from the package lists
        of the image (already current): the apt part is a no-op, the restarts
        and the switchover happen as on Proxmox.
        """
        self.lock.acquire()
        chosen = MaintenanceSpec(upgrade=generation or int(time.time()), apt_update=False)
        spec = dataclasses.replace(self.spec, maintenance=chosen)
        plan = [
            (p, s) for p, s in phases(spec, self.secrets(), self.tls()) if s[0].name == rolling.UPGRADE_STEP
        ]
        return asyncio.run(self.runner().run_phases(plan, self._targets(), report=self.report))

    def wait_ready(self, timeout: float = 120.0) -> dict[str, Any]:
        """Until one leader, every other PostgreSQL node streaming, and one VIP holder (lab.observe)."""
        return observe.wait_ready(self, timeout)

    async def _wait_all_ssh(self, runner: SshRunner) -> None:
        await asyncio.gather(*(runner.wait_for_ssh(self.target(n)) for n in self.spec.nodes))

    def _targets(self) -> dict[str, Target]:
        return {n.name: self.target(n) for n in self.spec.nodes}

    def down(self, keep_lock: bool = False) -> None:
        """Stop every machine, remove overlays and namespace; safe twice and after a crash.

        Refuses (LabBusy) while another live process holds the stack's lock:
        running the tests must never destroy a lab someone else is using.
        ``keep_lock`` keeps this process's lock (clearing leftovers before an up).
        """
        self.lock.check()
        machines_dir = self.state_dir / "machines"
        names = {n.name for n in self.spec.nodes}
        if machines_dir.exists():
            names |= {p.name for p in machines_dir.iterdir() if p.is_dir()}
        for name in sorted(names):
            node = next((n for n in self.spec.nodes if n.name == name), None)
            # A machine of an older config of this stack is known by its directory only.
            machine = self.machine(node) if node is not None else self._stale_machine(name)
            machine.remove()
        self.network.destroy()
        if self.state_dir.exists():
            shutil.rmtree(self.state_dir)
        if not keep_lock:
            self.lock.release()

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

    def client_env(self, port: int | None = None) -> dict[str, str]:
        """libpq environment: the VIP, TLS verified against the lab's CA, the password in the environment."""
        self.tls()
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

    # ---- clients -------------------------------------------------------------

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

    def status(self) -> dict[str, Any]:
        """Roles, lag, VIP holder and etcd health (lab.observe.status)."""
        return observe.status(self)
