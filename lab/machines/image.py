"""Cached Debian 13 root filesystems that lab machines boot from.

A Proxmox VM in production starts from a Debian cloud image and installs the
HA stack with cloud-init. The lab cannot afford a download and an install per
machine per test, so it builds one root per package list once, caches it, and
boots every machine on an overlay of it (see lab/machines/machine.py).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from .mounts import mounts_under

# Bump whenever the build steps change in a way that changes the result, so
# that old cached images are not reused.
BUILDER_VERSION = 1

SUITE = "trixie"
# Another Debian release for machines that stand for what a user runs already (the
# moving-in scenario's old PostgreSQL server): its own base image and cache key.
OLD_SUITE = "bookworm"
FALLBACK_MIRROR = "http://deb.debian.org/debian"

CACHE_ROOT = Path("/var/cache/pgha-lab")
IMAGES_DIR = CACHE_ROOT / "images"
DEBOOTSTRAP_CACHE = CACHE_ROOT / "debs"
APT_ARCHIVES = CACHE_ROOT / "apt-archives"

# debootstrap cannot resolve every dependency (virtual packages such as
# python3-cffi-backend-api-max), so it only lays down a bootable minimum and
# apt installs the rest inside the chroot.
DEBOOTSTRAP_INCLUDE: tuple[str, ...] = ("systemd-sysv", "dbus")

# What every lab machine needs whatever it runs: init, cloud-init with the
# ifupdown renderer (as NoCloud network-config v2 is rendered), SSH for the
# tests, and the small tools that the tests and cloud-init call.
BASE_PACKAGES: tuple[str, ...] = (
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "cloud-init",
    "ifupdown",
    "iproute2",
    "sudo",
    "ca-certificates",
    "procps",
    "iputils-ping",
    "curl",
    "jq",
    "less",
    "python3",
    "netbase",
    # A Debian 13 VM has it (iputils-ping recommends it): its ping_group_range
    # lets non-root users ping without file capabilities.
    "linux-sysctl-defaults",
)
# Packages of BASE_PACKAGES that a suite does not have (Debian 12 has no linux-sysctl-defaults).
MISSING_FROM_SUITE: dict[str, frozenset[str]] = {OLD_SUITE: frozenset({"linux-sysctl-defaults"})}


def base_packages(suite: str = SUITE) -> tuple[str, ...]:
    """BASE_PACKAGES as ``suite`` has them."""
    missing = MISSING_FROM_SUITE.get(suite, frozenset())
    return tuple(p for p in BASE_PACKAGES if p not in missing)


_CHROOT_ENV = {
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "LC_ALL": "C.UTF-8",
    "LANG": "C.UTF-8",
    "DEBIAN_FRONTEND": "noninteractive",
    "DEBCONF_NONINTERACTIVE_SEEN": "true",
    "HOME": "/root",
}

_APT_OPTS = (
    "-o",
    "APT::Sandbox::User=root",  # the bind-mounted cache is root's
    "-o",
    "Acquire::Retries=3",
    "-o",
    "Dpkg::Options::=--force-confdef",
    "-o",
    "Dpkg::Options::=--force-confold",
)


class ImageBuildError(RuntimeError):
    """A build step failed; the message carries the tail of the build log."""


def host_mirror() -> str:
    """The Debian mirror the host's apt uses, so builds hit the same mirror or proxy."""
    for uri in _apt_source_uris():
        parts = urlsplit(uri)
        if parts.scheme not in ("http", "https"):
            continue
        if parts.path.rstrip("/").endswith("/debian"):
            return uri.rstrip("/")
    return FALLBACK_MIRROR


def _apt_source_uris() -> Iterator[str]:
    """Every enabled binary-package URI of the host's apt configuration, in order."""
    src_dir = Path("/etc/apt/sources.list.d")
    for path in sorted(src_dir.glob("*.sources")) if src_dir.is_dir() else []:
        for para in re.split(r"\n\s*\n", path.read_text(errors="replace")):
            fields: dict[str, str] = {}
            for line in para.splitlines():
                if line.startswith("#") or ":" not in line or line[:1].isspace():
                    continue
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
            if fields.get("enabled", "yes").lower() == "no":
                continue
            if "deb" not in fields.get("types", "").split():
                continue
            yield from fields.get("uris", "").split()
    lists = [Path("/etc/apt/sources.list")]
    if src_dir.is_dir():
        lists += sorted(src_dir.glob("*.list"))
    for path in lists:
        if not path.is_file():
            continue
        for line in path.read_text(errors="replace").splitlines():
            words = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()
            if len(words) >= 2 and words[0] == "deb":
                yield words[1]


def security_mirror(mirror: str) -> str:
    """debian-security on the main mirror's host: the only other host the lab may reach."""
    parts = urlsplit(mirror)
    parent = parts.path.rstrip("/").rsplit("/", 1)[0]
    return f"{parts.scheme}://{parts.netloc}{parent}/debian-security"


def recipe(packages: Sequence[str], mirror: str | None = None, suite: str = SUITE) -> dict[str, object]:
    """Everything that determines an image's content, hashed into its cache key."""
    return {
        "builder_version": BUILDER_VERSION,
        "suite": suite,
        "mirror": mirror or host_mirror(),
        "include": list(DEBOOTSTRAP_INCLUDE),
        "packages": sorted(set(base_packages(suite)) | set(packages)),
    }


def recipe_hash(rec: dict[str, object]) -> str:
    """Short stable hash of a recipe, used as the cache directory's name."""
    blob = json.dumps(rec, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def ensure_image(packages: Sequence[str], log: Callable[[str], None] = print, suite: str = SUITE) -> Path:
    """Return the root of the cached image for this package list, building it if missing.

    An image with more than the base set starts from a copy of the base image
    (BASE_PACKAGES only, itself cached: the smoke test's), so debootstrap runs
    once per machine rather than once per package set: a run that needs four
    images saved about 35 s on each of three.
    """
    rec = recipe(packages, suite=suite)
    digest = recipe_hash(rec)
    final = IMAGES_DIR / digest
    if _complete(final):
        return final / "root"
    base = ensure_image((), log, suite) if set(packages) - set(base_packages(suite)) else None
    IMAGES_DIR.mkdir(parents=True, exist_ok=True)
    with _build_lock(log):
        if _complete(final):  # another process built it while we waited
            return final / "root"
        _clean_stale_builds(log)
        tmp = IMAGES_DIR / f".build-{digest}-{os.getpid()}"
        try:
            try:
                build(rec, tmp, log, base)
            except BaseException:
                failed_log = tmp / "build.log"
                if failed_log.exists():
                    shutil.copy(failed_log, IMAGES_DIR / f"{digest}.failed.log")
                raise
            if final.exists():  # a half image from an older builder: replace it
                _safe_rmtree(final)
            os.rename(tmp, final)
        finally:
            if tmp.exists():
                _safe_rmtree(tmp)
    log(f"image {digest}: ready at {final / 'root'}")
    return final / "root"


def _complete(path: Path) -> bool:
    """An image counts only once the final rename happened with its recipe inside."""
    return (path / "recipe.json").is_file() and (path / "root" / "usr").is_dir()


@contextmanager
def _build_lock(log: Callable[[str], None]) -> Iterator[None]:
    """Serialize builds across processes: they share the .deb caches and stale-dir cleanup."""
    with open(IMAGES_DIR / ".lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log("image: waiting for another build to finish")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _clean_stale_builds(log: Callable[[str], None]) -> None:
    """Remove temp dirs of crashed builds; safe because we hold the build lock."""
    for stale in IMAGES_DIR.glob(".build-*"):
        log(f"image: removing stale build dir {stale}")
        _safe_rmtree(stale)


def _safe_rmtree(path: Path) -> None:
    """rmtree that first unmounts anything below path: never delete through a bind of /dev."""
    for point in mounts_under(path):
        subprocess.run(["umount", "-l", point], check=False)
    if mounts_under(path):
        raise RuntimeError(f"refusing to delete {path}: mounts remain below it")
    shutil.rmtree(path)


def build(rec: dict[str, object], tmp: Path, log: Callable[[str], None], base: Path | None = None) -> None:
    """debootstrap a minbase root (or copy ``base``, a finished image's root), then
    apt-install the recipe's packages in a chroot."""
    root = tmp / "root"
    tmp.mkdir(parents=True)
    build_log = tmp / "build.log"
    mirror = str(rec["mirror"])
    suite = str(rec["suite"])
    packages = [str(p) for p in rec["packages"]]  # type: ignore[attr-defined]
    DEBOOTSTRAP_CACHE.mkdir(parents=True, exist_ok=True)
    (APT_ARCHIVES / "partial").mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    log(f"image: building {suite} from {mirror} with {len(packages)} packages (log {build_log})")

    t0 = time.monotonic()
    if base is not None:
        # The base image is a finished template (no identity, no apt lists): the
        # steps below redo what a build needs, and _finalize what a template needs.
        _run_logged(["cp", "-a", "--", str(base), str(root)], build_log)
        # What debootstrap leaves for the installs and _finalize took away: the
        # host's resolver (apt must reach the mirror) and a machine ID.
        (root / "etc/resolv.conf").unlink(missing_ok=True)
        shutil.copyfile("/etc/resolv.conf", root / "etc/resolv.conf")
        (root / "etc/machine-id").write_text(secrets.token_hex(16) + "\n")
        log(f"image: base image copied {time.monotonic() - t0:.1f}s")
    else:
        _debootstrap(root, mirror, build_log, suite)
        log(f"image: debootstrap {time.monotonic() - t0:.1f}s")

    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\n# lab image build: start no service\nexit 101\n")
    policy.chmod(0o755)

    t0 = time.monotonic()
    suites = _write_sources(root, mirror, build_log, suite, with_extras=True)
    try:
        _chroot_apt(root, ["apt-get", *_APT_OPTS, "update"], build_log)
    except ImageBuildError:
        log("image: security/updates suites unreachable; using the main suite only")
        suites = _write_sources(root, mirror, build_log, suite, with_extras=False)
        _chroot_apt(root, ["apt-get", *_APT_OPTS, "update"], build_log)
    log(f"image: apt-get update ({', '.join(suites)}) {time.monotonic() - t0:.1f}s")

    t0 = time.monotonic()
    _chroot_apt(
        root,
        ["apt-get", *_APT_OPTS, "install", "-y", "--no-install-recommends", *packages],
        build_log,
    )
    log(f"image: apt-get install {time.monotonic() - t0:.1f}s")

    _finalize(root)
    (tmp / "recipe.json").write_text(json.dumps(rec, indent=2, sort_keys=True) + "\n")
    log(f"image: built in {time.monotonic() - started:.1f}s")


def _debootstrap(root: Path, mirror: str, build_log: Path, suite: str = SUITE) -> None:
    _run_logged(
        [
            # A private mount namespace: whatever debootstrap mounts in the
            # target vanishes with it, even if it crashes.
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "debootstrap",
            "--variant=minbase",
            f"--cache-dir={DEBOOTSTRAP_CACHE}",
            f"--include={','.join(DEBOOTSTRAP_INCLUDE)}",
            suite,
            str(root),
            mirror,
        ],
        build_log,
    )


def _write_sources(
    root: Path, mirror: str, build_log: Path, suite: str = SUITE, *, with_extras: bool
) -> list[str]:
    """Point the image's apt at the host's mirror only (plus security/updates when reachable)."""
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    paras = [(mirror, [suite])]
    if with_extras:
        paras = [(mirror, [suite, f"{suite}-updates"]), (security_mirror(mirror), [f"{suite}-security"])]
    text = "\n".join(
        f"Types: deb\nURIs: {uri}\nSuites: {' '.join(suites)}\nComponents: main\nSigned-By: {keyring}\n"
        for uri, suites in paras
    )
    (root / "etc/apt/sources.list.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/apt/sources.list.d/debian.sources").write_text(text)
    legacy = root / "etc/apt/sources.list"
    if legacy.exists():
        legacy.unlink()
    with open(build_log, "a") as fh:
        fh.write(f"--- apt sources:\n{text}")
    return [s for _, suites in paras for s in suites]


def _chroot_apt(root: Path, argv: list[str], build_log: Path) -> None:
    """Run argv in the chroot with proc, /dev and the shared .deb cache mounted.

    The mounts live in a private mount namespace, so they disappear when the
    command exits, whatever happens to it or to us.
    """
    script = (
        'set -e; r="$1"; a="$2"; shift 2; '
        'mount -t proc proc "$r/proc"; '
        'mount -t sysfs sysfs "$r/sys"; '
        'mount --bind /dev "$r/dev"; '
        'mount --bind /dev/pts "$r/dev/pts"; '
        'mount --bind "$a" "$r/var/cache/apt/archives"; '
        'rc=0; chroot "$r" "$@" || rc=$?; '
        'umount "$r/var/cache/apt/archives" "$r/dev/pts" "$r/dev" "$r/sys" "$r/proc"; '
        "exit $rc"
    )
    _run_logged(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
            str(root),
            str(APT_ARCHIVES),
            *argv,
        ],
        build_log,
    )


def _finalize(root: Path) -> None:
    """Make the root a template: no identity of its own, services allowed to start."""
    (root / "usr/sbin/policy-rc.d").unlink()
    # Empty machine-id: systemd gives each machine its own on first boot.
    (root / "etc/machine-id").write_text("")
    dbus_id = root / "var/lib/dbus/machine-id"
    if dbus_id.exists() and not dbus_id.is_symlink():
        dbus_id.unlink()
    # Host keys are per machine: cloud-init's ssh module generates them on
    # the first boot of each instance (ssh_deletekeys/ssh_genkeytypes).
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    # debootstrap copied the build host's identity and resolver.
    (root / "etc/hostname").write_text("localhost\n")
    (root / "etc/resolv.conf").unlink(missing_ok=True)
    (root / "etc/resolv.conf").write_text("# lab machine: no DNS; cloud-init may write this\n")
    cfg = root / "etc/cloud/cloud.cfg.d/90-lab-datasource.cfg"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(
        "# lab: seed from /var/lib/cloud/seed/nocloud, never probe a network datasource\n"
        "datasource_list: [NoCloud, None]\n"
    )
    # apt-get clean, minus the shared cache (already unmounted): drop the
    # package lists and binary caches that only bloat every overlay.
    for pattern in ("var/cache/apt/*.bin", "var/lib/apt/lists/*_*"):
        for path in root.glob(pattern):
            path.unlink()
    for leftover in (root / "var/cache/apt/archives").glob("*.deb"):
        leftover.unlink()
    shutil.rmtree(root / "debootstrap", ignore_errors=True)


def _run_logged(argv: list[str], build_log: Path) -> None:
    """Run a build step with its output in the build log; fail with the log's tail."""
    with open(build_log, "a") as fh:
        fh.write(f"--- $ {' '.join(argv)}\n")
        fh.flush()
        env = {**_CHROOT_ENV, "TMPDIR": "/tmp"}
        rc = subprocess.run(
            argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, check=False
        ).returncode
    if rc != 0:
        tail = "\n".join(build_log.read_text(errors="replace").splitlines()[-40:])
        raise ImageBuildError(f"{argv[0:6]}... exited {rc}; log tail:\n{tail}")
