"""Generic Linux plumbing for the lab's machines: /proc, cgroups, link names, mounts.

Nothing here knows about a machine: it answers "who is this PID", "which
cgroup is it in", "where is that hierarchy mounted", so lab/machines/machine.py can
find, signal and clean up what it started without trusting stale PIDs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from .mounts import mounts_under


def ifname(prefix: str, name: str) -> str:
    """A link name of at most 15 bytes (IFNAMSIZ-1) that stays unique per machine name."""
    if len(prefix + name) <= 15 and all(c.isalnum() or c in "-_." for c in name):
        return prefix + name
    return prefix + hashlib.sha1(name.encode()).hexdigest()[: 15 - len(prefix)]


def send_signal(pid: int, sig: int) -> None:
    """Send a signal, ignoring a process that is already gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def cmdline(pid: int) -> bytes:
    """A process's command line with NULs as spaces; empty if gone or a zombie."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return b""


def proc_status(pid: int) -> dict[str, str]:
    """Fields of /proc/<pid>/status; empty if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


def ppid(pid: int) -> int | None:
    """Parent PID, or None if the process is gone."""
    value = proc_status(pid).get("PPid")
    return int(value) if value else None


def is_ns_init(pid: int) -> bool:
    """Whether pid is alive (not a zombie) and PID 1 of a nested PID namespace."""
    st = proc_status(pid)
    nspid = st.get("NSpid", "").split()
    return len(nspid) >= 2 and nspid[-1] == "1" and not st.get("State", "").startswith("Z")


def children(pid: int) -> Iterator[int]:
    """PIDs whose parent is pid (scanning /proc; works without CONFIG_PROC_CHILDREN)."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1] == str(pid):
            yield int(entry.name)


def proc_cgroup(pid: int) -> dict[str, str]:
    """A process's cgroup path per hierarchy key ("freezer", "name=systemd", "" for v2)."""
    out: dict[str, str] = {}
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        for key in controllers.split(",") if controllers else [""]:
            out[key] = path
    return out


def cgroup_hierarchies() -> dict[str, Path]:
    """Mounted cgroup hierarchies that we are in, keyed as in /proc/self/cgroup.

    Keys are "name=systemd", "freezer", "cpu,cpuacct" (if co-mounted) or ""
    for the unified (v2) hierarchy; each hierarchy appears once.
    """
    mounts: list[tuple[str, set[str], Path]] = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            left, _, right = line.partition(" - ")
            fields = right.split()
            if len(fields) >= 3 and fields[0] in ("cgroup", "cgroup2"):
                mounts.append((fields[0], set(fields[2].split(",")), Path(left.split()[4])))
    found: dict[str, Path] = {}
    for key in proc_cgroup_keys(os.getpid()):
        for fstype, opts, point in mounts:
            if key == "" and fstype == "cgroup2":
                found[key] = point
                break
            if key and fstype == "cgroup" and set(key.split(",")) <= opts:
                found[key] = point
                break
    return found


def proc_cgroup_keys(pid: int) -> list[str]:
    """Hierarchy keys of /proc/<pid>/cgroup, unsplit ("cpu,cpuacct" stays one)."""
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return []
    return [line.split(":", 2)[1] for line in text.splitlines() if line.count(":") >= 2]


def hierarchy_mount(controller: str) -> Path | None:
    """Mount point of the v1 hierarchy that holds one controller, e.g. freezer."""
    for key, point in cgroup_hierarchies().items():
        if controller in key.split(","):
            return point
    return None


def rmdir_cgroup_tree(top: Path, keep_top: bool = False) -> None:
    """Remove a cgroup and its empty descendants, deepest first; busy ones stay."""
    if not top.is_dir():
        return
    for dirpath, _dirnames, _files in os.walk(top, topdown=False):
        if keep_top and Path(dirpath) == top:
            continue
        with contextlib.suppress(OSError):
            os.rmdir(dirpath)


def umount_all_under(path: Path) -> None:
    """Unmount the overlay (and anything else) below a machine dir before deleting it."""
    for point in mounts_under(path):
        if subprocess.run(["umount", point], check=False, capture_output=True).returncode:
            subprocess.run(["umount", "-l", point], check=False)
