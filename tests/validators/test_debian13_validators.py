"""Debian 13's own validators on the dev stack's rendered files, in the VMs' versions.

The core's unit tests parse our templates back, but only HAProxy, keepalived
and Patroni can say whether they accept them, and the host's Debian 12
versions are older than the VMs'. So each node's files are installed, by the
VMs' own installer, into a throwaway overlay of the lab's cached trixie image,
and each validator runs there, inside network namespaces shaped like the
node's LAN: ``ens18`` carries the node's address, its veth peer (in a second
namespace) the other nodes' addresses, and TCP listeners stand in for etcd on
every node and for the peers' Patroni and PostgreSQL. Nothing touches the
cached image (it is the lab machines' shared base), the host's mounts (all
mounts live in a private mount namespace per command) or the host's network.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
import yaml

from pgha import (
    ClusterSecrets,
    ClusterSpec,
    ClusterTls,
    LocalCa,
    Node,
    RenderedFile,
    etcd,
    haproxy,
    image_packages,
    load_spec,
    load_stack,
    node_files,
)
from pgha.files import INSTALLER_SOURCE
from pgha.keepalived import SCRIPT_USER
from pgha.stackfile import read_config

pytestmark = pytest.mark.validators

STACK = "dev"
SPEC = load_stack(STACK)
NODE_NAMES = [n.name for n in SPEC.postgres_nodes]

HAPROXY_CFG = "/etc/haproxy/haproxy.cfg"
KEEPALIVED_CONF = "/etc/keepalived/keepalived.conf"
PATRONI_YML = "/etc/patroni/config.yml"

# What the VMs run (DESIGN-NOTES); Debian 12's are 2.6, 2.2 and 3.0.2.
EXPECTED_VERSIONS = {"haproxy": "3.0.", "keepalived": "2.3.", "patroni": "4.0."}

NEEDED_TOOLS = ("debootstrap", "systemd-nspawn", "unshare", "nsenter", "ip", "chroot", "mount")
NETNS_DIR = Path("/run/netns")
NETNS_PREFIX = "pgha-validate-"
TMP_PARENT = Path("/var/tmp")  # outside pytest's tmp_path pruning, on the same fs as upper/work
TIMEOUT_S = 60
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": "/root"}

# Runs as: sh -c SCRIPT sh LOWER DIR ARGV... under `unshare --mount
# --propagation private`, so the overlay, proc and /dev mounts exist only for
# this one command and vanish with it, even if we crash.
IN_OVERLAY_SH = """set -e
lower=$1; dir=$2; shift 2
mount -t overlay pgha-validate -o "lowerdir=$lower,upperdir=$dir/upper,workdir=$dir/work" "$dir/merged"
mount -t proc proc "$dir/merged/proc"
mount --bind /dev "$dir/merged/dev"
exec chroot "$dir/merged" "$@"
"""

# A TCP service stand-in: accepts and closes on every HOST:PORT given, says
# "ready" once all are bound, and exits when its stdin (our pipe) closes, so
# it cannot outlive the test run even if pytest is killed.
LISTENER_PY = """
import selectors, socket, sys
sel = selectors.DefaultSelector()
for arg in sys.argv[1:]:
    host, port = arg.rsplit(":", 1)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, int(port)))
    s.listen(64)
    sel.register(s, selectors.EVENT_READ)
sel.register(sys.stdin, selectors.EVENT_READ)
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        if key.fileobj is sys.stdin:
            if not sys.stdin.readline():
                sys.exit(0)
        else:
            conn, _ = key.fileobj.accept()
            conn.close()
"""


def _unavailable() -> str | None:
    """Why these tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "the Debian 13 validators run in the lab image: needs root (mounts, network namespaces)"
    missing = [t for t in NEEDED_TOOLS if not shutil.which(t)]
    return f"missing {', '.join(missing)} (run ./setup.sh)" if missing else None


def _output(res: subprocess.CompletedProcess[str]) -> str:
    """stdout and stderr together: the validators are not consistent about which they use."""
    return (res.stdout + res.stderr).strip()


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or below path in our mount namespace (there should be none)."""
    prefix = str(path.resolve())
    with open("/proc/self/mountinfo") as fh:
        points = [line.split()[4] for line in fh]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean_stale() -> None:
    """Drop namespaces and dirs of earlier runs whose process is gone (e.g. pytest killed)."""
    pattern = re.compile(rf"^{re.escape(NETNS_PREFIX)}(\d+)-")
    candidates = [*(NETNS_DIR.iterdir() if NETNS_DIR.is_dir() else []), *TMP_PARENT.glob(f"{NETNS_PREFIX}*")]
    for path in candidates:
        match = pattern.match(path.name)
        if not match:
            continue
        pid = int(match.group(1))
        if pid != os.getpid() and _pid_alive(pid):  # our own pid's are a reused pid's leftovers
            continue
        if path.parent == NETNS_DIR:
            subprocess.run(["ip", "netns", "delete", path.name], check=False, capture_output=True)
        elif path.is_dir() and not _mounts_under(path):
            shutil.rmtree(path, ignore_errors=True)


class Listeners:
    """Stand-in TCP services in one network namespace, stopped by closing their stdin."""

    def __init__(self, netns: str, addresses: list[str]) -> None:
        self.proc = subprocess.Popen(
            ["nsenter", f"--net={NETNS_DIR / netns}", sys.executable, "-c", LISTENER_PY, *addresses],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            self.stop()
            raise RuntimeError(f"listeners on {addresses} in {netns} failed: {self.proc.stderr.read()}")

    def stop(self) -> None:
        """Close the pipe (the listener exits by itself); kill only if it does not."""
        if self.proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


class NodeSandbox:
    """One node as a VM would be at validation time: its files installed, its LAN around it.

    Disk: an overlay of the cached image whose writes go to a private upper
    dir. Network: namespace ``<prefix><pid>-<n>`` holds ``ens18`` with the
    node's address and a listener on its own etcd client port (etcd runs
    before Patroni); the veth's other end sits in ``...-lan`` with every
    other node's address and listeners on their etcd, Patroni REST API and
    PostgreSQL ports, so a config that listens on a peer's address fails as
    it would on the real network.
    """

    def __init__(
        self, lower: Path, spec: ClusterSpec, node: Node, index: int, secrets: ClusterSecrets, tls: ClusterTls
    ) -> None:
        self.lower = lower
        self.spec = spec
        self.node = node
        # Real certificates and keys: HAProxy loads them, Patroni checks they exist.
        self.secrets, self.tls = secrets, tls
        self.files = node_files(spec, node, secrets, tls)
        self.netns = f"{NETNS_PREFIX}{os.getpid()}-{index}"
        self.lan_netns = f"{self.netns}-lan"
        self.dir = Path(tempfile.mkdtemp(prefix=f"{NETNS_PREFIX}{os.getpid()}-{node.name}-", dir=TMP_PARENT))
        self.listeners: list[Listeners] = []

    # ---- setup / teardown ----------------------------------------------------

    def setup(self) -> None:
        """Build the LAN, then install the node's files as its steps would."""
        for sub in ("upper", "work", "merged"):
            (self.dir / sub).mkdir(mode=0o755)
        self._make_network()
        # keepalived's step creates its script user before installing files.
        self.check(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SCRIPT_USER])
        self.install(self.files)

    def close(self) -> None:
        """Stop listeners, delete both namespaces, delete the overlay dirs; never raises midway."""
        for listener in self.listeners:
            with contextlib.suppress(Exception):
                listener.stop()
        for ns in (self.netns, self.lan_netns):
            if (NETNS_DIR / ns).exists():
                subprocess.run(["ip", "netns", "delete", ns], check=False, capture_output=True)
        if self.dir.exists():
            if _mounts_under(self.dir):
                raise RuntimeError(f"refusing to delete {self.dir}: mounts remain below it")
            shutil.rmtree(self.dir)

    def _make_network(self) -> None:
        net = self.spec.network
        peers = [n for n in self.spec.nodes if n != self.node]
        for ns in (self.netns, self.lan_netns):
            subprocess.run(["ip", "netns", "add", ns], check=True)
            self._ip(ns, "link", "set", "lo", "up")
        self._ip(
            self.netns,
            "link",
            "add",
            net.interface,
            "type",
            "veth",
            "peer",
            "name",
            "lan0",
            "netns",
            self.lan_netns,
        )
        self._ip(self.netns, "addr", "add", str(net.interface_address(self.node.ip)), "dev", net.interface)
        for peer in peers:
            self._ip(self.lan_netns, "addr", "add", str(net.interface_address(peer.ip)), "dev", "lan0")
        self._ip(self.lan_netns, "link", "set", "lan0", "up")
        self._ip(self.netns, "link", "set", net.interface, "up")

        etcd_port = self.spec.etcd.client_port
        members = etcd.members(self.spec)  # where etcd runs, not what Patroni's config claims
        own = [f"{self.node.ip}:{etcd_port}"] if self.node in members else []
        lan = [f"{n.ip}:{etcd_port}" for n in members if n != self.node]
        for peer in (n for n in self.spec.postgres_nodes if n != self.node):
            lan += [f"{peer.ip}:{self.spec.patroni.rest_api_port}", f"{peer.ip}:{self.spec.postgres.port}"]
        for ns, addresses in ((self.netns, own), (self.lan_netns, lan)):
            if addresses:
                self.listeners.append(Listeners(ns, addresses))

    @staticmethod
    def _ip(ns: str, *args: str) -> None:
        subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True)

    # ---- running things in the node ------------------------------------------

    def run(
        self, argv: list[str], *, user: str | None = None, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """argv chrooted into the node's overlay, in its network namespace, as root or user."""
        if user is not None:
            home = {"postgres": "/var/lib/postgresql"}.get(user, "/")
            argv = [
                "setpriv",
                f"--reuid={user}",
                f"--regid={user}",
                "--init-groups",
                "env",
                f"HOME={home}",
                *argv,
            ]
        wrapped = [
            "nsenter",
            f"--net={NETNS_DIR / self.netns}",
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            IN_OVERLAY_SH,
            "sh",
            str(self.lower),
            str(self.dir),
            *argv,
        ]
        return subprocess.run(
            wrapped, input=stdin, capture_output=True, text=True, env=ENV, timeout=TIMEOUT_S, check=False
        )

    def check(self, argv: list[str], *, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """run() as root that must succeed: for setup steps, not for the validators under test."""
        res = self.run(argv, stdin=stdin)
        if res.returncode != 0:
            raise RuntimeError(f"{argv} in {self.node.name} exited {res.returncode}: {_output(res)}")
        return res

    def install(self, files: Iterable[RenderedFile]) -> None:
        """Install files with the VMs' own installer (owners resolved in the image, dirs 0755)."""
        bundle = json.dumps({"files": [f.to_bundle() for f in files]})
        installer = INSTALLER_SOURCE.read_text()
        self.check(["python3", "-c", installer], stdin=bundle)

    def rendered(self, path: str) -> RenderedFile:
        """The node's rendered file at path (for negative variants of it)."""
        return next(f for f in self.files if f.path == path)

    # ---- the validators, as the VM runs them ---------------------------------

    def haproxy(self, path: str = HAPROXY_CFG) -> subprocess.CompletedProcess[str]:
        return self.run(["haproxy", "-c", "-f", path])

    def keepalived(self, path: str = KEEPALIVED_CONF) -> subprocess.CompletedProcess[str]:
        return self.run(["keepalived", "-t", "-f", path])

    def patroni(self, path: str = PATRONI_YML) -> subprocess.CompletedProcess[str]:
        # patroni.service runs as postgres: it must be able to read its 0600 file.
        return self.run(["patroni", "--validate-config", path], user="postgres")


@pytest.fixture(scope="module")
def sandboxes() -> Iterator[dict[str, NodeSandbox]]:
    """Every postgres node of the dev stack, set up once for the module and always torn down."""
    reason = _unavailable()
    if reason:
        pytest.skip(reason)
    from lab.machines import ensure_image

    lower = ensure_image(image_packages(SPEC))
    _clean_stale()
    secrets = ClusterSecrets.generate(r.name for r in SPEC.login_roles)
    tls = LocalCa.create(SPEC).issue_cluster(SPEC)
    with contextlib.ExitStack() as stack:
        boxes: dict[str, NodeSandbox] = {}
        for index, node in enumerate(SPEC.postgres_nodes):
            box = NodeSandbox(lower, SPEC, node, index, secrets, tls)
            stack.callback(box.close)
            box.setup()
            boxes[node.name] = box
        yield boxes


def _negative(box: NodeSandbox, original: str, path: str, content: str) -> str:
    """Install a variant of a rendered file next to it (same mode/owner); returns its path."""
    box.install([dataclasses.replace(box.rendered(original), path=path, content=content)])
    return path


# ---- the rendered files pass ---------------------------------------------------


def test_validators_are_debian13_versions(sandboxes: dict[str, NodeSandbox]) -> None:
    """The point of running in the image: the VMs' versions, not the host's older ones."""
    box = sandboxes[NODE_NAMES[0]]
    seen = {
        "haproxy": _output(box.check(["haproxy", "-v"])),
        "keepalived": _output(box.check(["keepalived", "--version"])),
        "patroni": _output(box.check(["patroni", "--version"])),
    }
    for name, prefix in EXPECTED_VERSIONS.items():
        first = seen[name].splitlines()[0]
        assert re.search(rf"\b(v|version |{name} ){re.escape(prefix)}", first, re.I), f"{name}: {first}"


@pytest.mark.parametrize("node_name", NODE_NAMES)
def test_haproxy_accepts_rendered_config(sandboxes: dict[str, NodeSandbox], node_name: str) -> None:
    res = sandboxes[node_name].haproxy()
    assert res.returncode == 0, f"haproxy -c rejected {node_name}'s {HAPROXY_CFG}:\n{_output(res)}"
    assert "[WARNING]" not in _output(res), _output(res)


def test_haproxy_accepts_a_client_allow_list(sandboxes: dict[str, NodeSandbox]) -> None:
    """pgha:clients.allowFrom's tcp-request rule, as HAProxy 3.0 reads it."""
    box = sandboxes[NODE_NAMES[0]]
    config = read_config(STACK)
    config["clients"] = {"allowFrom": ["192.0.2.0/24", "10.0.0.1/32"]}
    allowed = load_spec(config, STACK)
    node = allowed.node(NODE_NAMES[0])
    rendered = next(f for f in haproxy.files(allowed, node, box.secrets, box.tls) if f.path == HAPROXY_CFG)
    assert "tcp-request connection reject unless" in rendered.content
    res = box.haproxy(_negative(box, HAPROXY_CFG, "/etc/haproxy/allow.cfg", rendered.content))
    assert res.returncode == 0 and "[WARNING]" not in _output(res), _output(res)


@pytest.mark.parametrize("node_name", NODE_NAMES)
def test_keepalived_accepts_rendered_config(sandboxes: dict[str, NodeSandbox], node_name: str) -> None:
    res = sandboxes[node_name].keepalived()
    assert res.returncode == 0, f"keepalived -t rejected {node_name}'s {KEEPALIVED_CONF}:\n{_output(res)}"
    assert "WARNING" not in _output(res), _output(res)


@pytest.mark.parametrize("node_name", NODE_NAMES)
def test_patroni_accepts_rendered_config(sandboxes: dict[str, NodeSandbox], node_name: str) -> None:
    res = sandboxes[node_name].patroni()
    assert res.returncode == 0, f"patroni rejected {node_name}'s {PATRONI_YML}:\n{_output(res)}"


# ---- ...and the validators really validate ---------------------------------------


def test_haproxy_rejects_unknown_keyword(sandboxes: dict[str, NodeSandbox]) -> None:
    box = sandboxes[NODE_NAMES[0]]
    text = box.rendered(HAPROXY_CFG).content
    bad = text.replace("\ndefaults\n", "\ndefaults\n    pgha-bogus-keyword on\n", 1)
    assert bad != text
    res = box.haproxy(_negative(box, HAPROXY_CFG, "/etc/haproxy/negative.cfg", bad))
    assert res.returncode != 0
    assert "unknown keyword 'pgha-bogus-keyword'" in _output(res), _output(res)


def test_keepalived_rejects_missing_interface(sandboxes: dict[str, NodeSandbox]) -> None:
    box = sandboxes[NODE_NAMES[0]]
    text = box.rendered(KEEPALIVED_CONF).content
    iface = SPEC.network.interface
    bad = re.sub(rf"\b{re.escape(iface)}\b", "ens99", text)
    assert bad != text
    res = box.keepalived(_negative(box, KEEPALIVED_CONF, "/etc/keepalived/negative.conf", bad))
    assert res.returncode != 0
    assert "interface ens99" in _output(res), _output(res)


def _patroni_variant(box: NodeSandbox, path: str, change: dict[str, object]) -> str:
    """The rendered Patroni config with dotted keys overridden, installed at path."""
    doc = yaml.safe_load(box.rendered(PATRONI_YML).content)
    for dotted, value in change.items():
        *parents, leaf = dotted.split(".")
        target = doc
        for key in parents:
            target = target[key]
        assert leaf in target, dotted
        target[leaf] = value
    return _negative(box, PATRONI_YML, path, yaml.safe_dump(doc, sort_keys=False))


def test_patroni_rejects_bad_ttl(sandboxes: dict[str, NodeSandbox]) -> None:
    box = sandboxes[NODE_NAMES[0]]
    res = box.patroni(_patroni_variant(box, "/etc/patroni/negative-ttl.yml", {"bootstrap.dcs.ttl": "banana"}))
    assert res.returncode != 0
    assert "bootstrap.dcs.ttl banana didn't pass validation" in _output(res), _output(res)


def test_patroni_rejects_listening_on_a_peers_address(sandboxes: dict[str, NodeSandbox]) -> None:
    """Proves the sandbox models the LAN: a peer's REST API answers there, as on the real network."""
    box = sandboxes[NODE_NAMES[0]]
    peer = next(n for n in SPEC.postgres_nodes if n != box.node)
    port = SPEC.patroni.rest_api_port
    path = _patroni_variant(box, "/etc/patroni/negative-listen.yml", {"restapi.listen": f"{peer.ip}:{port}"})
    res = box.patroni(path)
    assert res.returncode != 0
    assert f"Port {port} is already in use" in _output(res), _output(res)
