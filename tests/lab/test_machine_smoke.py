"""Smoke test of the lab's machine layer: image, namespace, two nspawn machines.

It proves the pieces the HA tests stand on before they spend minutes on a
cluster: cloud-init NoCloud names and addresses the NIC as on Proxmox, SSH
works from the lab namespace, machines reach each other, a hard power-off
keeps the disk, and freeze/partition really cut a machine off and heal.
Every packet stays inside the namespace the test creates.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh
import pytest

from lab.machines import LabNetwork, Machine, MachineSpec, ensure_image
from lab.wait import wait_until

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
    pytest.mark.skipif(
        not all(shutil.which(t) for t in ("systemd-nspawn", "debootstrap", "nsenter", "ssh")),
        reason="systemd-container, debootstrap and openssh-client are needed",
    ),
]

# The base set only: this test checks the machine layer, not the HA stack.
SMOKE_PACKAGES: tuple[str, ...] = ()
SUBNET = "10.254.0.0/24"
BRIDGE_IP = "10.254.0.1"
USER = "lab"


@dataclass
class Lab:
    """What the tests need: the namespace, two machines, the key and timings."""

    net: LabNetwork
    machines: list[Machine]
    key_file: Path
    booted_at: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def _seed(name: str, ip: str, mac: str, pubkey: str) -> dict[str, str]:
    """Minimal NoCloud files shaped like the ones the project renders for Proxmox."""
    user_data = (
        "#cloud-config\n"
        "locale: C.UTF-8\n"
        "manage_etc_hosts: true\n"
        "ssh_pwauth: false\n"
        "users:\n"
        f"  - name: {USER}\n"
        "    shell: /bin/bash\n"
        "    sudo: 'ALL=(ALL) NOPASSWD:ALL'\n"
        f"    ssh_authorized_keys: ['{pubkey}']\n"
    )
    network_config = (
        "version: 2\n"
        "ethernets:\n"
        "  priv0:\n"
        f'    match: {{macaddress: "{mac}"}}\n'
        "    set-name: ens18\n"
        f"    addresses: [{ip}/24]\n"
    )
    meta_data = f"instance-id: iid-{name}\nlocal-hostname: {name}\n"
    return {"meta-data": meta_data, "user-data": user_data, "network-config": network_config}


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    """Boot two machines in a fresh namespace; tear all down whatever happens."""
    t0 = time.monotonic()
    image = ensure_image(SMOKE_PACKAGES)
    image_s = time.monotonic() - t0
    # Not pytest's tmp_path: pytest prunes old ones, and deleting a dir with a
    # live overlay below it would write through to the machine.
    state_dir = Path(tempfile.mkdtemp(prefix="pgha-smoke-", dir="/var/tmp"))
    net = LabNetwork(f"pgsmoke-{os.getpid()}")
    key = asyncssh.generate_private_key("ssh-ed25519")
    key_file = state_dir / "id_ed25519"
    key_file.write_bytes(key.export_private_key())
    key_file.chmod(0o600)
    pubkey = key.export_public_key().decode().strip()
    machines = []
    for i in (1, 2):
        name, ip, mac = f"smoke{i}", f"10.254.0.{10 + i}", f"bc:24:11:5a:00:{i:02x}"
        spec = MachineSpec(
            name=name,
            host=f"pve{i}",
            ip=ip,
            prefixlen=24,
            mac=mac,
            interface="ens18",
            seed=_seed(name, ip, mac, pubkey),
        )
        machines.append(Machine(spec, state_dir, net))
    result = Lab(net, machines, key_file, timings={"ensure_image": image_s})
    try:
        net.create(SUBNET, BRIDGE_IP)
        for m in machines:
            result.booted_at[m.spec.name] = time.monotonic()
            m.boot(image)
        yield result
    finally:
        errors = []
        for m in machines:
            try:
                m.remove()
            except Exception as exc:  # keep tearing down the rest
                errors.append(f"{m.spec.name}: {exc}")
        net.destroy()
        if not errors:
            shutil.rmtree(state_dir, ignore_errors=True)
        print(f"\nlab smoke timings: {result.timings}")
        assert not errors, errors


def ssh(
    lab: Lab, m: Machine, command: str, timeout: float = 20.0, connect_timeout: int = 2
) -> subprocess.CompletedProcess[str] | None:
    """Run command on m over SSH from inside the lab namespace; None on a hang."""
    argv = [
        "ssh",
        "-i",
        str(lab.key_file),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "LogLevel=ERROR",
        "-o",
        f"ConnectTimeout={connect_timeout}",
        f"{USER}@{m.spec.ip}",
        command,
    ]
    try:
        return lab.net.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def wait_ssh(lab: Lab, m: Machine, timeout: float = 60.0) -> float:
    """Poll until SSH answers; returns the seconds it took."""
    t0 = time.monotonic()
    tries: list[subprocess.CompletedProcess | None] = []

    def answers() -> bool:
        tries[:] = [ssh(lab, m, "true", timeout=5, connect_timeout=1)]
        return tries[0] is not None and tries[0].returncode == 0

    if wait_until(answers, timeout, interval=0.3):
        return time.monotonic() - t0
    last = tries[0] if tries else None
    detail = last.stderr if last is not None else "hung"
    pytest.fail(f"{m.spec.name}: no SSH after {timeout}s ({detail})\n{m.console_log.read_text()[-3000:]}")


def test_boot_cloud_init_and_ssh(lab: Lab) -> None:
    """cloud-init applies hostname, user, key and the MAC-matched ens18 address."""
    for m in lab.machines:
        wait_ssh(lab, m)
        lab.timings[f"{m.spec.name}_boot_to_ssh"] = time.monotonic() - lab.booted_at[m.spec.name]
        res = ssh(lab, m, "cloud-init status --wait >/dev/null; cloud-init status --format=json", 120)
        assert res is not None and res.returncode == 0, res
        lab.timings[f"{m.spec.name}_cloud_init_done"] = time.monotonic() - lab.booted_at[m.spec.name]
        assert '"status": "done"' in res.stdout, res.stdout
        res = ssh(
            lab,
            m,
            "hostname; ip -o -4 addr show dev ens18; cat /sys/class/net/ens18/address; "
            "systemctl is-system-running --wait",
        )
        assert res is not None, "hung"
        assert res.stdout.splitlines()[0] == m.spec.name
        assert f"{m.spec.ip}/24" in res.stdout
        assert m.spec.mac in res.stdout
        assert "running" in res.stdout, res.stdout  # no failed unit


def test_machines_reach_each_other(lab: Lab) -> None:
    """Machine-to-machine traffic over the bridge (as a non-root user, as on a VM)."""
    a, b = lab.machines
    res = ssh(lab, a, f"ping -c 2 -W 2 {b.spec.ip}")
    assert res is not None and res.returncode == 0, res


def test_kill_and_start_keep_the_disk(lab: Lab) -> None:
    """A hard power-off loses no written file and the instance stays the same."""
    m = lab.machines[0]
    res = ssh(
        lab,
        m,
        "echo kept | sudo tee /var/lib/smoke-marker >/dev/null && sync && "
        "cat /var/lib/cloud/data/instance-id",
    )
    assert res is not None and res.returncode == 0, res
    instance_id = res.stdout.strip()
    t0 = time.monotonic()
    m.kill()
    lab.timings["kill"] = time.monotonic() - t0
    assert not m.is_running()
    assert not lab.net.link_exists(m.host_ifname)
    t0 = time.monotonic()
    m.start()
    wait_ssh(lab, m)
    lab.timings["restart_to_ssh"] = time.monotonic() - t0
    res = ssh(
        lab,
        m,
        "cat /var/lib/smoke-marker; cat /var/lib/cloud/data/instance-id; "
        f"ip -o -4 addr show dev ens18 | grep -c {m.spec.ip}/24",
    )
    assert res is not None and res.returncode == 0, res
    assert res.stdout.split() == ["kept", instance_id, "1"]


def test_freeze_and_thaw(lab: Lab) -> None:
    """A frozen machine answers nothing; thawed, it answers at once."""
    m = lab.machines[1]
    m.freeze()
    try:
        assert m.is_frozen()
        res = ssh(lab, m, "true", timeout=6, connect_timeout=2)
        assert res is None or res.returncode != 0, "frozen machine answered"
    finally:
        m.thaw()
    assert not m.is_frozen()
    res = ssh(lab, m, "true", timeout=10)
    assert res is not None and res.returncode == 0, res


def test_partition_and_heal(lab: Lab) -> None:
    """A partitioned machine is unreachable from the namespace and its peer; heal restores both."""
    a, b = lab.machines
    b.partition()
    try:
        res = ssh(lab, b, "true", timeout=6, connect_timeout=2)
        assert res is None or res.returncode != 0, "partitioned machine answered"
        res = ssh(lab, a, f"ping -c 1 -W 1 {b.spec.ip}")
        assert res is not None and res.returncode != 0, "peer still reached the partitioned machine"
    finally:
        b.heal()
    res = ssh(lab, a, f"ping -c 3 -W 2 {b.spec.ip}")
    assert res is not None and res.returncode == 0, res
    res = ssh(lab, b, "true", timeout=10)
    assert res is not None and res.returncode == 0, res
