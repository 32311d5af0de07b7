"""The lab: one local Debian 13 machine per VM of a stack, driven like Proxmox.

Only machines, network and the SSH executor are the lab's own; the seed
(cloud-init) and every step come from ``pgha``, exactly as the
Pulumi components send them. ``Lab`` adds the verbs (up, apply, replace,
down, the rolling update) to ``LabAccess``, what a running lab is reached by.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import time
from dataclasses import dataclass
from typing import Any

from pgha import ClusterSpec, leave_step, phases, rolling
from pgha.spec import MaintenanceSpec

from ..machines import LabAccess, SshRunner, StepError, StepResult, Target, ensure_image
from ..machines import offsite as offsite_identity
from ..observation import observe
from . import offsite


@dataclass
class Timings:
    image: float = 0.0
    boot: float = 0.0
    ssh: float = 0.0
    steps: float = 0.0
    ready: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 1) for k, v in self.__dict__.items()}


class Lab(LabAccess):
    """A stack's lab with its verbs (``LabAccess``: its state, identity and machines)."""

    # ---- verbs ---------------------------------------------------------------

    def up(self) -> tuple[Timings, list[StepResult]]:
        """Bring the stack up, or re-run every step on a running lab (must change nothing).

        Takes the stack's lock for this process (LabBusy if another live one has it).
        """
        self.lock.acquire()
        timings = Timings()
        self.save_identity()
        secrets = self.secrets()
        tls = self.tls()
        started = time.monotonic()
        image = ensure_image(self.image_packages(), log=self.report)
        timings.image = time.monotonic() - started

        started = time.monotonic()
        if self.beside is None:
            self.network.create(str(self.spec.network.cidr), str(self.bridge_ip()))
        elif not self.network.exists():
            raise RuntimeError(f"stack {self.beside}'s lab is not up: {self.stack} sits on its bridge")
        runner = self.runner()
        self._remove_absent(runner)
        for node in self.spec.nodes:
            machine = self.machine(node, seeded=True)
            if machine.is_running():
                continue
            self.report(f"booting {node.name} (Proxmox host {node.host}, {node.ip})")
            if (machine.dir / "state.json").exists() and machine.root.exists():
                machine.start()
            else:
                machine.boot(image)
        # The off-site bucket exists before the first step archives into it.
        offsite.serve(self, image)
        timings.boot = time.monotonic() - started

        started = time.monotonic()
        asyncio.run(self._wait_all_ssh(runner))
        self._save_leave_steps()
        timings.ssh = time.monotonic() - started

        self.report("running the program's steps:")
        started = time.monotonic()
        results = asyncio.run(
            runner.run_phases(phases(self.spec, secrets, tls), self.targets(), report=self.report)
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
        if offsite.served(self.spec):
            wanted.add(offsite_identity.SERVER_NAME)  # no VM of the stack, but the lab's own
        absent = sorted(p.name for p in machines_dir.iterdir() if p.is_dir()) if machines_dir.exists() else []
        absent = [name for name in absent if name not in wanted]
        if not absent:
            return
        leaving = {}
        for name in absent:
            path = self.leave_dir / f"{name}.json"
            machine = self.stale_machine(name)
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
            self.stale_machine(name).remove()
            (self.leave_dir / f"{name}.json").unlink(missing_ok=True)

    async def _run_leave(self, runner: SshRunner, leaving: dict[str, dict[str, Any]]) -> list[tuple]:
        calls = []
        for name, record in leaving.items():
            # A record saved before host keys were pinned: the key the lab keeps for that machine.
            host_key = record.get("host_key") or self.host_key(self.stale_machine(name).spec).public_openssh
            target = Target(record["host"], record["port"], record["user"], host_key)
            calls.append(runner.run(target, record["command"]))
        return list(await asyncio.gather(*calls))

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
        return asyncio.run(self.runner().run_phases(plan, self.targets(), report=self.report))

    def wait_ready(self, timeout: float = 120.0) -> dict[str, Any]:
        """Until one leader, every other PostgreSQL node streaming, and one VIP holder (observe)."""
        return observe.wait_ready(self, timeout)

    async def _wait_all_ssh(self, runner: SshRunner) -> None:
        await asyncio.gather(*(runner.wait_for_ssh(self.target(n)) for n in self.spec.nodes))

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
            machine = self.machine(node) if node is not None else self.stale_machine(name)
            machine.remove()
        if self.beside is None:
            self.network.destroy()
        if self.state_dir.exists():
            shutil.rmtree(self.state_dir)
        if not keep_lock:
            self.lock.release()

    def status(self) -> dict[str, Any]:
        """Roles, lag, VIP holder and etcd health (lab.observation.observe.status)."""
        return observe.status(self)
