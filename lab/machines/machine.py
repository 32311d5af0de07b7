"""Lab machines: systemd-nspawn containers standing in for Proxmox VMs.

Each machine boots the cached image (lab/machines/image.py) through its own overlayfs,
so the image stays clean and the machine's disk (the upper dir) survives a
power-off. Its NIC is a veth on the lab bridge (lab/machines/netns.py) carrying the MAC
the Proxmox VM would have; cloud-init NoCloud names and addresses it exactly as
in production. nspawn itself runs in the host's network namespace (see
_make_nic); the machine gets a private one holding only that NIC.
Power-off, freeze and link faults act on the kernel objects (PID 1, cgroup
freezer, bridge port) so tests see what a VM's peers would see.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ..wait import wait_until
from . import plumbing
from .mounts import mounts_under
from .netns import LabNetwork

SEED_DIR = "var/lib/cloud/seed/nocloud"
SEED_FILES = ("user-data", "meta-data", "network-config", "vendor-data")
CGROUP_PREFIX = "pgha-lab"
STOP_TIMEOUT = 20.0
KILL_TIMEOUT = 10.0
BOOT_TIMEOUT = 15.0


@dataclass
class MachineSpec:
    """What the lab needs to stand in for one Proxmox VM."""

    name: str
    host: str  # the Proxmox node this VM would run on
    ip: str
    prefixlen: int
    mac: str
    interface: str  # the NIC's name inside, e.g. "ens18" as on a Proxmox VM
    seed: dict[str, str] = field(default_factory=dict)  # NoCloud files by name


class MachineError(RuntimeError):
    """A machine did not reach the state asked for."""


class Machine:
    """One nspawn machine with its overlay root, NIC and cgroups.

    Everything needed to find and tear it down again (PIDs, cgroups, NIC) is
    kept in state_dir/<name>/state.json, so another process (the CLI, a later
    test run after a crash) can manage a machine this one booted.
    """

    def __init__(self, spec: MachineSpec, state_dir: Path, network: LabNetwork) -> None:
        self.spec = spec
        self.network = network
        self.dir = Path(state_dir).resolve() / spec.name
        self.root = self.dir / "root"
        self.upper = self.dir / "upper"
        self.work = self.dir / "work"
        self.console_log = self.dir / "console.log"
        self.state_file = self.dir / "state.json"
        self._proc: subprocess.Popen[bytes] | None = None

    # ---- names -------------------------------------------------------------

    @property
    def host_ifname(self) -> str:
        """Bridge-side end of the machine's veth (the "tap" on the bridge)."""
        return plumbing.ifname("pv-", self.spec.name)

    @property
    def guest_tmp_ifname(self) -> str:
        """Machine-side end before cloud-init renames it to spec.interface.

        It briefly lives in the host namespace, so it is unique per lab too.
        """
        return plumbing.ifname("pc-", f"{self.network.name}/{self.spec.name}")

    # ---- lifecycle ---------------------------------------------------------

    def boot(self, base_root: Path) -> None:
        """First power-on: overlay on base_root, NoCloud seed, NIC, nspawn."""
        if self.is_running():
            raise MachineError(f"{self.spec.name} is already running")
        for d in (self.upper, self.work, self.root):
            d.mkdir(parents=True, exist_ok=True)
        state = self._load_state()
        state["base_root"] = str(Path(base_root).resolve())
        state.setdefault("uuid", str(uuid.uuid4()))
        self._save_state(state)
        self._mount_overlay(Path(state["base_root"]))
        self._write_seed()
        self._launch(state)

    def start(self) -> None:
        """Power on again on the same disk; the seed (instance-id) is left as it was."""
        if self.is_running():
            return
        state = self._load_state()
        if "base_root" not in state:
            raise MachineError(f"{self.spec.name} was never booted")
        self._mount_overlay(Path(state["base_root"]))
        self._launch(state)

    def kill(self) -> None:
        """Hard power-off: SIGKILL the machine's PID 1, as pulling a VM's plug."""
        state = self._load_state()
        self.thaw()  # a frozen task cannot die before it is thawed
        init_pid = self._init_pid(state)
        nspawn_pid = self._nspawn_pid(state)
        if init_pid:
            plumbing.send_signal(init_pid, signal.SIGKILL)
        elif nspawn_pid:
            plumbing.send_signal(nspawn_pid, signal.SIGKILL)
        if nspawn_pid and not self._wait_nspawn_exit(nspawn_pid, KILL_TIMEOUT):
            plumbing.send_signal(nspawn_pid, signal.SIGKILL)
            self._wait_nspawn_exit(nspawn_pid, KILL_TIMEOUT)
        if init_pid:
            wait_until(lambda: self._init_pid(state) is None, KILL_TIMEOUT, interval=0.05)
        self._wait_nic_gone()
        self._mark_stopped(state)

    def stop(self) -> None:
        """Graceful shutdown (as Proxmox's shutdown), falling back to kill()."""
        state = self._load_state()
        nspawn_pid = self._nspawn_pid(state)
        if nspawn_pid is None:
            if self._init_pid(state) is not None:
                self.kill()
            return
        self.thaw()
        plumbing.send_signal(nspawn_pid, signal.SIGTERM)  # nspawn asks systemd to power off
        if not self._wait_nspawn_exit(nspawn_pid, STOP_TIMEOUT):
            self.kill()
            return
        self._wait_nic_gone()
        self._mark_stopped(state)

    def remove(self, graceful: bool = False) -> None:
        """Tear down completely: processes, overlay, cgroups, NIC, state dir.

        Idempotent and safe after a crash: it signals only PIDs recorded in
        state.json that still are our nspawn or our machine's PID 1. A hard
        kill is the default because the disk is deleted anyway.
        """
        state = self._load_state()
        if self._nspawn_pid(state) or self._init_pid(state):
            if graceful:
                self.stop()
            else:
                self.kill()
        self._drop_nic()
        plumbing.umount_all_under(self.dir)
        for cg in state.get("cgroups", []) or []:  # type: ignore[union-attr]
            plumbing.rmdir_cgroup_tree(Path(cg))
            for parent in (Path(cg).parent, Path(cg).parent.parent):  # <lab>/, pgha-lab/
                with contextlib.suppress(OSError):
                    parent.rmdir()  # only succeeds once the last machine is gone
        if self.dir.exists():
            if mounts_under(self.dir):
                raise MachineError(f"{self.dir}: mounts remain, not deleting")
            shutil.rmtree(self.dir)

    def is_running(self) -> bool:
        """Whether nspawn or the machine's PID 1 is alive."""
        if not self.state_file.exists():
            return False
        state = self._load_state()
        return self._nspawn_pid(state) is not None or self._init_pid(state) is not None

    # ---- faults ------------------------------------------------------------

    def freeze(self) -> None:
        """Stop every process of the machine at once (a VM paused or stalled)."""
        self._set_freezer("FROZEN")

    def thaw(self) -> None:
        """Undo freeze(); harmless if not frozen."""
        self._set_freezer("THAWED")

    def is_frozen(self) -> bool:
        """Whether the machine's freezer cgroup is frozen (or freezing)."""
        f = self._freezer_dir()
        if f is None or not (f / "freezer.state").exists():
            return False
        return (f / "freezer.state").read_text().strip() != "THAWED"

    def partition(self) -> None:
        """Cut the machine off the bridge (its port down, as a dead switch port)."""
        self.network.set_link(self.host_ifname, False)

    def heal(self) -> None:
        """Reconnect after partition()."""
        self.network.set_link(self.host_ifname, True)

    # ---- state -------------------------------------------------------------

    def pids(self) -> tuple[int | None, int | None]:
        """(nspawn PID, machine PID 1) if alive, for callers that need them."""
        state = self._load_state()
        return self._nspawn_pid(state), self._init_pid(state)

    def _load_state(self) -> dict[str, object]:
        """state.json as a dict, or empty if absent/corrupt (a crashed run)."""
        try:
            data = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _save_state(self, state: dict[str, object]) -> None:
        """Write state.json atomically: another process may read it at any time."""
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.state_file)

    def _mark_stopped(self, state: dict[str, object]) -> None:
        """Forget the PIDs of a machine that is down, so they are never signalled again."""
        if self.state_file.exists():
            self._save_state({**self._load_state(), "nspawn_pid": None, "init_pid": None})
        if self._proc is not None:
            self._proc.poll()
            self._proc = None

    # ---- boot internals ----------------------------------------------------

    def _mount_overlay(self, base_root: Path) -> None:
        """Mount the copy-on-write root unless it is mounted already."""
        if os.path.ismount(self.root):
            return
        for p in (base_root, self.upper, self.work, self.root):
            if "," in str(p) or ":" in str(p):
                raise MachineError(f"path unusable in overlay options: {p}")
        if not (base_root / "usr").is_dir():
            raise MachineError(f"no image at {base_root}")
        opts = f"lowerdir={base_root},upperdir={self.upper},workdir={self.work}"
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(self.root)], check=True)

    def _write_seed(self) -> None:
        """Put the NoCloud files where cloud-init's seed-dir lookup finds them."""
        unknown = set(self.spec.seed) - set(SEED_FILES)
        if unknown:
            raise MachineError(f"unknown NoCloud seed files: {sorted(unknown)}")
        seed = self.root / SEED_DIR
        seed.mkdir(parents=True, exist_ok=True)
        os.chmod(seed, 0o700)
        for name, text in self.spec.seed.items():
            path = seed / name
            path.write_text(text)
            os.chmod(path, 0o600)  # user-data may carry secrets

    def _make_nic(self) -> None:
        """A veth pair: one end on the lab bridge, the other with the VM's MAC for nspawn.

        The machine end is created in the host namespace, where nspawn runs:
        nspawn looks the interface up in /sys/class/net, and the host's /sys
        only shows host-namespace links (entering the lab namespace with
        nsenter fails with "Failed to get device ...: No data available").
        It carries no address and nspawn moves it into the machine at once.
        """
        self._drop_nic()
        subprocess.run(
            [
                "ip",
                "link",
                "add",
                self.guest_tmp_ifname,
                "address",
                self.spec.mac,
                "type",
                "veth",
                "peer",
                "name",
                self.host_ifname,
                "netns",
                self.network.name,
            ],
            check=True,
        )
        self.network.attach(self.host_ifname)

    def _wait_nic_gone(self) -> None:
        """Wait for the kernel to drop the veth with the machine's namespace, then make sure."""
        wait_until(
            lambda: not self.network.exists() or not self.network.link_exists(self.host_ifname),
            5.0,
            interval=0.05,
        )
        self._drop_nic()

    def _drop_nic(self) -> None:
        """Remove a leftover veth (deleting either end deletes the pair)."""
        self.network.delete_link(self.host_ifname)
        tmp = self.guest_tmp_ifname
        if subprocess.run(["ip", "link", "show", "dev", tmp], capture_output=True).returncode == 0:
            subprocess.run(["ip", "link", "delete", tmp], check=False, capture_output=True)

    def _launch(self, state: dict[str, object]) -> None:
        """Start nspawn detached, in the machine's own cgroups, and record its PIDs."""
        if not self.network.exists():
            raise MachineError(f"network namespace {self.network.name} does not exist")
        self._make_nic()
        cgroups = self._prepare_cgroups()
        nspawn = [
            "systemd-nspawn",
            f"--directory={self.root}",
            f"--machine={self.spec.name}",
            f"--uuid={state['uuid']}",  # stable machine-id across power cycles
            "--boot",
            "--register=no",
            "--keep-unit",
            "--private-users=no",
            f"--network-interface={self.guest_tmp_ifname}",
            "--resolv-conf=off",
            "--timezone=off",
            "--link-journal=no",
            "--console=read-only",
        ]
        # One PID all along: the shell joins the machine's cgroups (so nspawn
        # and the machine start inside them, while this Python process stays
        # where it is), then execs unshare, which execs nspawn.
        #
        # nspawn >= 251 refuses --network-interface= for a link that udev has
        # not initialized, and it assumes udev runs whenever /sys is writable.
        # This host has no udev, so nspawn runs in its own mount namespace
        # with /sys read-only (a per-mount flag: the host's /sys and the
        # cgroup mounts below it are untouched; the machine gets a fresh /sys).
        script = 'p=$$; while [ "$1" != -- ]; do echo "$p" > "$1" || exit 97; shift; done; shift; exec "$@"'
        inner = 'mount -o remount,bind,ro /sys || exit 98; exec "$@"'
        procs = [str(Path(cg) / "cgroup.procs") for cg in cgroups]
        argv = [
            "sh",
            "-c",
            script,
            "lab-launch",
            *procs,
            "--",
            "unshare",
            "--mount",
            "--propagation",
            "slave",
            "sh",
            "-c",
            inner,
            "lab-nspawn",
            *nspawn,
        ]
        with open(self.console_log, "ab") as log:
            log.write(f"\n=== lab: launching {self.spec.name} at {time.ctime()}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        nspawn_pid = self._proc.pid
        state.update(
            nspawn_pid=nspawn_pid,
            init_pid=None,
            cgroups=[str(c) for c in cgroups],
            host_ifname=self.host_ifname,
            booted_at=time.time(),
        )
        self._save_state(state)
        try:
            init_pid = self._wait_for_init(nspawn_pid)
        except MachineError:
            self.kill()
            raise
        state["init_pid"] = init_pid
        self._save_state(state)

    def _wait_for_init(self, nspawn_pid: int) -> int:
        """Find the machine's PID 1: the child of nspawn that is PID 1 of its namespace."""

        def init_pid() -> int | None:
            if self._proc is not None and self._proc.poll() is not None:
                raise MachineError(
                    f"{self.spec.name}: nspawn exited with {self._proc.returncode}:\n{self._console_tail()}"
                )
            return next((p for p in plumbing.children(nspawn_pid) if plumbing.is_ns_init(p)), None)

        pid = wait_until(init_pid, BOOT_TIMEOUT, interval=0.02)
        if pid is None:
            raise MachineError(f"{self.spec.name}: no PID 1 after {BOOT_TIMEOUT}s:\n{self._console_tail()}")
        return pid

    def _console_tail(self, lines: int = 30) -> str:
        """Last lines of the console, for error messages."""
        try:
            return "\n".join(self.console_log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # ---- process identity --------------------------------------------------

    def _nspawn_pid(self, state: dict[str, object]) -> int | None:
        """The recorded nspawn PID if that process is alive and still our nspawn."""
        pid = state.get("nspawn_pid")
        if not isinstance(pid, int):
            return None
        if self._proc is not None and self._proc.pid == pid and self._proc.poll() is not None:
            return None  # exited (and now reaped)
        cmd = plumbing.cmdline(pid)
        if (
            b"systemd-nspawn" in cmd
            and f"--machine={self.spec.name}".encode() in cmd
            and f"--directory={self.root}".encode() in cmd
        ):
            return pid
        return None

    def _init_pid(self, state: dict[str, object]) -> int | None:
        """The recorded PID 1 if alive and still in this machine's freezer cgroup.

        The cgroup check matters: after nspawn dies the machine's systemd can
        live on, reparented, and a reused PID must never be signalled.
        """
        pid = state.get("init_pid")
        if not isinstance(pid, int) or not plumbing.is_ns_init(pid):
            return None
        freezer = self._freezer_dir(state)
        if freezer is None:
            return pid if plumbing.ppid(pid) == state.get("nspawn_pid") else None
        rel = "/" + str(freezer.relative_to(plumbing.hierarchy_mount("freezer") or Path("/"))).strip("/")
        path = plumbing.proc_cgroup(pid).get("freezer")
        if path is not None and (path == rel or path.startswith(rel + "/")):
            return pid
        return None

    def _wait_nspawn_exit(self, pid: int, timeout: float) -> bool:
        """Wait for nspawn to exit, reaping it when we are its parent."""
        if self._proc is not None and self._proc.pid == pid:
            try:
                self._proc.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        return wait_until(lambda: not plumbing.cmdline(pid), timeout, interval=0.05)

    # ---- cgroups -----------------------------------------------------------

    def _prepare_cgroups(self) -> list[Path]:
        """Create the machine's cgroup in each hierarchy, below our own cgroup.

        Nesting below our own cgroup keeps whatever limits the caller runs
        under; a cgroup per machine gives it its own freezer and accounting.
        """
        made = []
        mine = plumbing.proc_cgroup(os.getpid())
        for key, mount in plumbing.cgroup_hierarchies().items():
            base = mount / mine.get(key.split(",")[0], "/").lstrip("/")
            target = base / CGROUP_PREFIX / self.network.name / self.spec.name
            try:
                plumbing.rmdir_cgroup_tree(target, keep_top=True)  # leftovers of nspawn's subgroups
                for d in (base / CGROUP_PREFIX, base / CGROUP_PREFIX / self.network.name, target):
                    d.mkdir(exist_ok=True)
                    if key == "cpuset":
                        for f in ("cpuset.cpus", "cpuset.mems"):
                            if not (d / f).read_text().strip():
                                (d / f).write_text((d.parent / f).read_text())
            except OSError as exc:
                if "freezer" in key.split(","):
                    raise MachineError(f"cannot create freezer cgroup {target}: {exc}") from exc
                continue  # accounting only: a hierarchy we cannot use is skipped
            made.append(target)
        return made

    def _freezer_dir(self, state: dict[str, object] | None = None) -> Path | None:
        """The machine's cgroup in the v1 freezer hierarchy, from state.json."""
        state = state if state is not None else self._load_state()
        mount = plumbing.hierarchy_mount("freezer")
        for cg in state.get("cgroups", []) or []:  # type: ignore[union-attr]
            if mount is not None and Path(cg).is_relative_to(mount):
                return Path(cg)
        return None

    def _set_freezer(self, want: str) -> None:
        """Write freezer.state and wait until the kernel reports it reached."""
        f = self._freezer_dir()
        if f is None or not (f / "freezer.state").exists():
            if want == "THAWED":
                return
            raise MachineError(f"{self.spec.name} has no freezer cgroup (not booted?)")
        (f / "freezer.state").write_text(want)
        if not wait_until(lambda: (f / "freezer.state").read_text().strip() == want, 10.0, interval=0.05):
            raise MachineError(f"{self.spec.name}: freezer stuck before {want}")
