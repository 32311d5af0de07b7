"""The offline renderer as a user runs it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from pgha import plan
from pgha.files import REPO_DIR


def render(*args: str, cwd: Path = REPO_DIR) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pgha.render", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_DIR)},
    )


def test_dev_tree(tmp_path):
    result = render("--stack", "dev", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    root = tmp_path / "psql-01"
    for path in (
        "etc/default/etcd",
        "etc/patroni/config.yml",
        "etc/haproxy/haproxy.cfg",
        "etc/keepalived/keepalived.conf",
        "etc/sysctl.d/90-pgha.conf",
        "cloud-init/user-data",
        "cloud-init/network-config",
        "cloud-init/meta-data",
    ):
        assert (root / path).is_file(), path
    # Each step as NN-name.sh, NN its group's place in the plan's order: ls shows the order.
    steps = sorted(p.name for p in (root / "steps").glob("*.sh"))
    names = [
        "system",
        "etcd",
        "etcd-health",
        "patroni",
        "haproxy",
        "keepalived",
        "fastpath",
        "host-maintenance",
        "leader-race",
        "patroni-config",
        "backup",
        "databases",
        "pooler",
        "import",
        "monitoring",
        "verify",
    ]
    assert steps == [*sorted(f"{plan.group_number(n):02d}-{n}.sh" for n in names), "leave.sh"]
    # One VM applies the cluster-wide config, and checks the result.
    assert not [
        p
        for p in (tmp_path / "psql-02/steps").glob("*.sh")
        if p.name.endswith(("-patroni-config.sh", "-verify.sh"))
    ]
    assert "PULUMI-SECRET(superuser_password)" in (root / "etc/patroni/config.yml").read_text()
    assert (root / "etc/pgha/tls/ca.crt").read_text() == "PULUMI-GENERATED(ca-certificate)\n"
    pem = root / "etc/pgha/tls/postgres.pem"
    assert pem.read_text() == "PULUMI-GENERATED(certificate psql-01)\nPULUMI-SECRET(private-key psql-01)\n"
    assert pem.stat().st_mode & 0o777 == 0o600
    listing = (root / f"steps/{plan.group_number('patroni'):02d}-patroni.files").read_text()
    assert "0600 postgres:postgres /etc/pgha/tls/postgres.pem" in listing
    assert 'ETCD_NAME="psql-02"' in (tmp_path / "psql-02/etc/default/etcd").read_text()


def test_invalid_stack_exits_2_with_messages(tmp_path):
    shutil.copytree(REPO_DIR / "pgha", tmp_path / "pgha")
    shutil.copytree(REPO_DIR / "cloud-init", tmp_path / "cloud-init")
    text = (REPO_DIR / "Pulumi.dev.yaml").read_text().replace("pgha:vip: 10.0.0.10", "pgha:vip: 10.9.0.10")
    (tmp_path / "Pulumi.bad.yaml").write_text(text)
    result = subprocess.run(
        [sys.executable, "-m", "pgha.render", "--stack", "bad", "--out", str(tmp_path / "out")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    assert result.returncode == 2
    assert "pgha:vip: 10.9.0.10 is outside pgha:network.cidr 10.0.0.0/24" in result.stderr
    assert not (tmp_path / "out").exists()


def test_core_imports_no_pulumi():
    for path in (REPO_DIR / "components" / "core").rglob("*.py"):
        text = path.read_text()
        assert "import pulumi" not in text and "from pulumi" not in text, path
