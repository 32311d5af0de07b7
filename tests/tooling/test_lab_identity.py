"""LabAccess: reading the lab's identity never writes; save_identity is the one place it is made."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import lab.machines.access
from lab.machines import IdentityMissing, LabAccess


@pytest.fixture
def access(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LabAccess:
    monkeypatch.setattr(lab.machines.access, "STATE_ROOT", tmp_path / "state")
    monkeypatch.setenv("PGHA_LAB_PREFIX", f"identitytest{os.getpid()}-")
    return LabAccess("dev")


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _read_everything(access: LabAccess) -> None:
    access.secrets()
    access.client_login()
    access.tls()
    access.ca()
    access.deploy_public_key()
    for node in access.spec.nodes:
        access.host_key(node)
        access.machine(node, seeded=True)
    access.client_env()


def test_a_getter_on_a_lab_without_identity_raises_and_writes_nothing(access: LabAccess) -> None:
    for read in (access.secrets, access.tls, access.ca, access.deploy_public_key, access.client_env):
        with pytest.raises(IdentityMissing):
            read()
    with pytest.raises(IdentityMissing):
        access.host_key(access.spec.nodes[0])
    access.machine(access.spec.nodes[0])  # no seed asked for: no key needed
    assert not access.state_dir.exists()


def test_getters_only_read_what_save_identity_kept(access: LabAccess) -> None:
    access.save_identity()
    kept = _files(access.state_dir)
    assert {"secrets.json", "tls.json", "ca.crt", "operator.pem", "id_ed25519", "ssh_host_keys.json"} <= set(
        kept
    )
    _read_everything(access)
    assert _files(access.state_dir) == kept
    access.save_identity()  # nothing due: nothing rewritten
    assert _files(access.state_dir) == kept
    assert access.tls().ca_certificate == kept["ca.crt"].decode()
