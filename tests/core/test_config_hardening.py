"""Hostile stack values: each case of the second security review is refused, by key, with exit 2.

Every case here rendered (or crashed with a traceback) before the hardening of
the shared primitives in pgha/config.py; the renderer test at the end runs
each one through ``python -m pgha.render`` as a user would.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pgha import ConfigError, load_spec
from pgha.files import REPO_DIR


def problems(config: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_spec(config, "dev")
    return caught.value.problems


def assert_problem(config: dict[str, Any], *fragments: str) -> None:
    found = problems(config)
    assert any(all(f in p for f in fragments) for p in found), found


def s3(config: dict[str, Any], **overrides: str) -> dict[str, Any]:
    config["backup"] = {
        "repository": "s3",
        "s3Bucket": "pgha-backups",
        "s3Endpoint": "s3.example.org",
        "s3Region": "eu-west-1",
        **overrides,
    }
    config["backupS3Key"] = "AKIAEXAMPLE"
    config["backupS3KeySecret"] = "secret-example"
    return config


def ten_vms(config: dict[str, Any]) -> dict[str, Any]:
    config["vms"] = [
        {"name": f"psql-{i:02d}", "host": "pve1" if i % 2 else "pve2", "ip": f"10.0.0.{20 + i}"}
        for i in range(1, 11)
    ]
    return config


def eight_vms(config: dict[str, Any]) -> dict[str, Any]:
    config["vms"] = config["vms"] + [
        {"name": f"psql-{i:02d}", "host": "pve1" if i % 2 else "pve2", "ip": f"10.0.0.{20 + i}"}
        for i in range(4, 9)
    ]
    return config


def vxlan(peers: Any) -> dict[str, Any]:
    return {
        "cidr": "10.0.0.0/24",
        "sdn": {"zone": "z", "vnet": "v", "type": "vxlan", "tag": 5, "peers": peers},
    }


def edit(path: str, value: Any):
    """A mutation setting ``a.b[0].c`` style ``path`` in the config."""

    def apply(config: dict[str, Any]) -> dict[str, Any]:
        target: Any = config
        parts = path.replace("]", "").replace("[", ".").split(".")
        for part in parts[:-1]:
            target = target[int(part)] if part.isdigit() else target.setdefault(part, {})
        last = parts[-1]
        if last.isdigit():
            target[int(last)] = value
        else:
            target[last] = value
        return config

    return apply


# (case id, mutation, key named in the message, fragment of the message)
CASES = [
    ("backup.path with a command", edit("backup.path", "/var/lib/x;reboot"), "backup.path", "absolute path"),
    ("backup.path with a space", edit("backup.path", "/var/lib/x y"), "backup.path", "absolute path"),
    ("backup.path relative", edit("backup.path", "var/lib/x"), "backup.path", "absolute path"),
    ("VM name with a trailing newline", edit("vms.0.name", "psql-01\n"), "vms[0].name", "U+000A"),
    (
        "VM name, trailing newline, fullmatch",
        edit("vms.0.name", "psql-01\n"),
        "vms[0].name",
        "valid hostname",
    ),
    ("Proxmox host with a newline", edit("vms.1.host", "pve2\nx"), "vms[1].host", "U+000A"),
    ("scope with a newline", edit("postgres.scope", "pgha\n"), "postgres.scope", "U+000A"),
    (
        "S3 bucket with a newline",
        lambda c: s3(c, s3Bucket="b\nrepo1-s3-key=x"),
        "backup.s3Bucket",
        "S3 bucket",
    ),
    ("S3 endpoint with a space", lambda c: s3(c, s3Endpoint="s3.example.org x"), "backup.s3Endpoint", "S3"),
    ("S3 region with a slash", lambda c: s3(c, s3Region="eu/west"), "backup.s3Region", "S3 region"),
    (
        "S3 secret with a newline",
        lambda c: s3(c) | {"backupS3KeySecret": "x\ny"},
        "backupS3KeySecret",
        "U+000A",
    ),
    ("ssh.user root", edit("ssh.user", "root"), "ssh.user", "system or service account"),
    ("ssh.user postgres", edit("ssh.user", "postgres"), "ssh.user", "system or service account"),
    ("ssh.user etcd", edit("ssh.user", "etcd"), "ssh.user", "system or service account"),
    ("ssh.user systemd-network", edit("ssh.user", "systemd-network"), "ssh.user", "system or service"),
    ("ssh.user a list", edit("ssh.user", ["pgha"]), "ssh.user", "non-empty string"),
    ("authorizedKeys [123]", edit("ssh.authorizedKeys", [123]), "ssh.authorizedKeys[0]", "SSH public key"),
    (
        "authorized key with a newline in its comment",
        edit("ssh.authorizedKeys.0", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC x\nssh-rsa AAAA evil"),
        "ssh.authorizedKeys[0]",
        "U+000A",
    ),
    (
        "sdn.peers a string",
        edit("network", vxlan("10.9.9.1")),
        "network.sdn.peers",
        "expected a list",
    ),
    (
        "sdn.peers not addresses",
        edit("network", vxlan(["pve1;x"])),
        "network.sdn.peers[0]",
        "not an IPv4 address",
    ),
    ("ten VMs", ten_vms, "vms", "more than the 9"),
    ("eight etcd members on two hosts", eight_vms, "vms", "more than 7"),
    (
        "a postgres parameter name with a newline",
        edit("postgres.parameters", {"work_mem\n": "4MB"}),
        "postgres.parameters.work_mem\\u000a",
        "U+000A",
    ),
    (
        "a postgres parameter value with a newline",
        edit("postgres.parameters", {"work_mem": "4MB\nssl=off"}),
        "postgres.parameters.work_mem",
        "U+000A",
    ),
    ("a tab in a schedule", edit("backup.fullSchedule", "Sun\t01:00"), "backup.fullSchedule", "U+0009"),
    ("a unicode line separator", edit("vms.0.name", "psql\u2028x"), "vms[0].name", "U+2028"),
    ("network.bridge with a newline", edit("network.bridge", "vmbr1\nx"), "network.bridge", "U+000A"),
]


@pytest.mark.parametrize(("mutate", "key", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_value_is_refused_by_key(dev_config, mutate, key, fragment):
    assert_problem(mutate(dev_config), f"pgha:{key}:", fragment)


def test_a_secret_is_never_echoed(dev_config):
    found = problems(s3(dev_config) | {"backupS3KeySecret": "hunter2\n"})
    assert any("backupS3KeySecret" in p and "not shown" in p for p in found), found
    assert not any("hunter2" in p for p in found), found


def test_the_negative_controls_pass(dev_config):
    """The detectors above are not blanket refusals: the same keys with good values load."""
    good = s3(copy.deepcopy(dev_config))
    good["backup"]["path"] = "/srv/pg-backups/pgha"
    good["ssh"]["user"] = "deploy"
    spec = load_spec(good, "dev")
    assert spec.backup.s3_bucket == "pgha-backups" and spec.ssh.user == "deploy"
    seven = copy.deepcopy(dev_config)
    seven["vms"] += [
        {"name": f"psql-{i:02d}", "host": "pve1" if i % 2 else "pve2", "ip": f"10.0.0.{20 + i}"}
        for i in (4, 5, 6, 7)
    ]
    assert len(load_spec(seven, "dev").postgres_nodes) == 7


def render_bad(tmp_path: Path, config: dict[str, Any]) -> subprocess.CompletedProcess:
    shutil.copytree(REPO_DIR / "pgha", tmp_path / "pgha")
    shutil.copytree(REPO_DIR / "cloud-init", tmp_path / "cloud-init")
    document = yaml.safe_load((REPO_DIR / "Pulumi.dev.yaml").read_text())
    document["config"].update({f"pgha:{k}": v for k, v in config.items()})
    (tmp_path / "Pulumi.bad.yaml").write_text(yaml.safe_dump(document))
    return subprocess.run(
        [sys.executable, "-m", "pgha.render", "--stack", "bad", "--out", str(tmp_path / "out")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )


def test_the_renderer_exits_2_without_a_traceback_on_each_case(tmp_path, dev_config):
    """One render per case would cost ~1 s each: every case's config in one tree, one problem each."""
    for index, (name, mutate, key, _fragment) in enumerate(CASES):
        root = tmp_path / str(index)
        root.mkdir()
        result = render_bad(root, mutate(copy.deepcopy(dev_config)))
        assert result.returncode == 2, (name, result.returncode, result.stderr[-2000:])
        assert "Traceback" not in result.stderr, (name, result.stderr[-2000:])
        assert f"pgha:{key}:" in result.stderr, (name, result.stderr)
        assert not (root / "out").exists(), name


def test_no_stack_file_skips_the_proxmox_api_tls_verification():
    """The API token must go only to a verified Proxmox: ``insecure`` is an explicit opt-in."""
    files = sorted(REPO_DIR.glob("Pulumi.*.yaml"))
    assert len(files) >= 5
    for path in files:
        config = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
        assert str(config.get("proxmoxve:insecure", "false")).lower() == "false", path.name
