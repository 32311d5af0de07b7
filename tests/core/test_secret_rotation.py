"""Rotating the internal secrets (``pgha:secretRotation``), kind by kind, without a VM.

- the config: one generation per secret, one line naming the key for a bad one, the backup
  cipher refused with the way out;
- Patroni's roles: pgha-cluster-passwords sets a verifier on the primary, and a replica waits
  until replication brings it (so no Patroni reloads a password the primary refuses);
- the REST API: a client that gets a 401 reads the password again and retries;
- the marker keys: a ring, the new key signing, the previous one still verifying;
- the lab: a generation renews its secret like Pulumi's keeper.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

import pytest

from lab.machines.access import LabAccess
from pgha import ClusterSecrets, load_spec, node_steps
from pgha.config import ConfigError
from pgha.host_maintenance import pgha_host_maintenance
from pgha.patroni import cluster_passwords
from pgha.vmlib import etcd_markers, patroni_api
from pgha.vmlib.scram import scram_verifier
from tests.core.test_etcd_markers import PREFIX, FakeEtcd, Refused, request

# ---- config ------------------------------------------------------------------------------------


def problems(config: dict[str, Any]) -> list[str]:
    try:
        load_spec(config, "dev")
    except ConfigError as error:
        return error.problems
    return []


def test_every_generated_secret_has_a_generation(dev_config):
    from pgha.secrets import ROTATION
    from pgha.spec import SecretRotationSpec

    assert set(ROTATION) == set(ClusterSecrets.names())
    assert set(ROTATION.values()) == {f.name for f in dataclasses.fields(SecretRotationSpec)}
    dev_config["secretRotation"] = {"replication": 2, "restApi": 1, "rollingMarker": 4}
    rotation = load_spec(dev_config, "dev").secret_rotation
    assert (rotation.replication, rotation.rest_api, rotation.rolling_marker, rotation.superuser) == (
        2,
        1,
        4,
        0,
    )


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ({"replicaton": 1}, "pgha:secretRotation.replicaton: unknown key"),
        ({"superuser": "soon"}, "pgha:secretRotation.superuser: expected an integer"),
        ({"rewind": -1}, "pgha:secretRotation.rewind: "),
        ("all", "pgha:secretRotation: expected an object"),
    ],
)
def test_a_bad_generation_is_one_line_naming_the_key(dev_config, value, fragment):
    dev_config["secretRotation"] = value
    found = problems(dev_config)
    assert len(found) == 1 and found[0].startswith(fragment) and "\n" not in found[0], found


def test_the_backup_cipher_cannot_be_rotated_in_place(dev_config):
    dev_config["secretRotation"] = {"backupCipher": 1}
    (line,) = problems(dev_config)
    assert line.startswith(
        "pgha:secretRotation.backupCipher: 1: the backup cipher passphrase cannot be rotated"
    )
    assert "new repository" in line
    dev_config["secretRotation"] = {"backupCipher": 0}
    assert problems(dev_config) == []


# ---- Patroni's roles: the primary first ---------------------------------------------------------

OLD, NEW = "old-Replication-pw", "new-Replication-pw"


class FakePostgres:
    """The local PostgreSQL as pgha-cluster-passwords sees it: primary or replica, pg_authid."""

    def __init__(self, primary: bool, stored: dict[str, str | None]) -> None:
        self.primary = primary
        self.stored = dict(stored)
        self.statements: list[tuple[str, str]] = []

    def snapshot(self, settings: dict[str, Any]) -> tuple[bool, dict[str, str | None]]:
        return self.primary, dict(self.stored)

    def set_passwords(self, settings: dict[str, Any], roles: list[str]) -> None:
        assert self.primary, "a replica never writes"
        for role in roles:
            verifier = scram_verifier(settings["roles"][role])
            self.statements.append((role, verifier))
            self.stored[role] = verifier


def settings(**roles: str) -> dict[str, Any]:
    return {"socket_dir": "/run/postgresql", "port": 5442, "timeout": 0.2, "roles": roles}


@pytest.fixture
def fake(monkeypatch):
    def install(primary: bool, stored: dict[str, str | None]) -> FakePostgres:
        server = FakePostgres(primary, stored)
        monkeypatch.setattr(cluster_passwords, "snapshot", server.snapshot)
        monkeypatch.setattr(cluster_passwords, "set_passwords", server.set_passwords)
        monkeypatch.setattr(cluster_passwords.time, "sleep", lambda s: None)
        monkeypatch.setattr(cluster_passwords, "database_errors", lambda: (ConnectionError,))
        return server

    return install


def test_the_primary_gets_the_verifier_of_a_rotated_password_and_nothing_else(fake, capsys):
    server = fake(True, {"replicator": scram_verifier(OLD), "postgres": scram_verifier("su-pw")})
    assert cluster_passwords.run(settings(replicator=NEW, postgres="su-pw")) == 0
    ((role, verifier),) = server.statements
    assert role == "replicator" and verifier.startswith("SCRAM-SHA-256$4096:") and NEW not in verifier
    out = capsys.readouterr().out
    assert "set_password replicator" in out and "in line (primary)" in out
    assert NEW not in out and OLD not in out


def test_a_replica_waits_for_the_primary_and_never_writes(fake, capsys):
    server = fake(False, {"replicator": scram_verifier(OLD)})
    assert cluster_passwords.run(settings(replicator=NEW)) == 1  # timed out: the primary never set it
    assert server.statements == []
    assert "replica waiting for: replicator" in capsys.readouterr().err
    # Replication brought the primary's verifier: in line, nothing written here either.
    server.stored["replicator"] = scram_verifier(NEW)
    assert cluster_passwords.run(settings(replicator=NEW)) == 0
    assert server.statements == []


def test_an_unchanged_password_changes_nothing_and_a_missing_role_is_not_made(fake, capsys):
    server = fake(True, {"replicator": scram_verifier(NEW)})
    assert cluster_passwords.run(settings(replicator=NEW, rewind_user="rw-pw")) == 0
    assert server.statements == []
    assert "no role rewind_user" in capsys.readouterr().out


def test_the_patroni_step_sets_passwords_before_it_reloads_patroni(spec, secrets, tls):
    node = spec.postgres_nodes[0]
    (step,) = [s for s in node_steps(spec, node, secrets, tls) if s.name == "patroni"]
    tool = step.script.index(cluster_passwords.INSTALL_PATH)
    assert step.script.index("install_files\n") < tool < step.script.index("ensure_running patroni")
    files = {f.path: f for f in step.files}
    plan = files[cluster_passwords.SETTINGS_PATH]
    assert (plan.mode, plan.owner, plan.secret) == (0o600, "postgres", True)
    assert json.loads(plan.content)["roles"] == {
        "postgres": secrets.superuser_password,
        "replicator": secrets.replication_password,
        "rewind_user": secrets.rewind_password,
    }
    for value in secrets.values():
        assert value not in step.script and value not in step.command


# ---- the REST API: a 401 reads the password again ----------------------------------------------


def test_a_rest_client_reads_a_rotated_password_again_after_a_401(tmp_path, monkeypatch):
    config = tmp_path / "config.yml"

    def install(password: str) -> None:
        config.write_text(f"restapi: {{authentication: {{username: patroni, password: {password}}}}}\n")

    install("old")
    api = patroni_api.PatroniApi(None, str(config))
    accepted = "Basic " + base64.b64encode(b"patroni:new").decode()  # the server reloaded already
    sent: list[str] = []

    def server(*call: Any) -> tuple[int, str]:
        sent.append(api.auth())
        if len(sent) == 1:
            install("new")  # this VM's patroni step installs the new config meanwhile
        return (200, "ok") if sent[-1] == accepted else (401, "no")

    monkeypatch.setattr(api, "_call_once", server)
    monkeypatch.setattr(patroni_api.time, "sleep", lambda s: None)
    assert api.call("https://10.0.0.4:8008/switchover", "POST", {}, auth=True) == (200, "ok")
    assert sent[0] != accepted and sent[1:] == [accepted]


def test_a_rest_client_gives_up_after_its_retries(tmp_path, monkeypatch):
    config = tmp_path / "config.yml"
    config.write_text("restapi: {authentication: {username: patroni, password: wrong}}\n")
    api = patroni_api.PatroniApi(None, str(config))
    calls = []
    monkeypatch.setattr(api, "_call_once", lambda *a: calls.append(a) or (401, "no"))
    monkeypatch.setattr(patroni_api.time, "sleep", lambda s: None)
    assert api.call("https://10.0.0.4:8008/restart", "POST", {}, auth=True) == (401, "no")
    assert len(calls) == patroni_api.AUTH_RETRIES + 1
    # An unauthenticated call (a health check) is never retried: a 401 there is an answer.
    calls.clear()
    assert api.call("https://10.0.0.4:8008/primary") == (401, "no") and len(calls) == 1


# ---- marker keys: a ring --------------------------------------------------------------------------


def store_with(tmp_path, etcd: FakeEtcd, logged: list[str], *ring: bytes) -> etcd_markers.Markers:
    key_file = tmp_path / "marker.key"
    key_file.write_bytes(b"\n".join(ring) + b"\n")
    store = etcd_markers.Markers([], etcd.prefix, None, logged.append, Refused, key_path=str(key_file))  # type: ignore[arg-type]
    store.call = etcd.call  # type: ignore[method-assign]
    return store


def test_a_marker_signed_before_the_rotation_is_still_acted_on(tmp_path):
    etcd, logged = FakeEtcd(), []
    before = store_with(tmp_path, etcd, logged, b"key-1")
    before.write("/host/pve1", request())  # mid-operation, with the old key
    after = store_with(tmp_path, etcd, logged, b"key-2", b"key-1")
    assert after.read("host", pgha_host_maintenance.valid_request) == {"pve1": request()}
    after.write("/host/pve2", request(ident="1765000001"))
    stored = json.loads(etcd.keys[f"{PREFIX}/host/pve2"])
    assert stored["hmac"] == etcd_markers.signature(b"key-2", f"{PREFIX}/host/pve2", stored["value"])
    assert logged == []
    # A second rotation drops key-1: its markers are refused (logged once, never deleted).
    third = store_with(tmp_path, etcd, logged, b"key-3", b"key-2")
    assert third.read("host", pgha_host_maintenance.valid_request) == {"pve2": request(ident="1765000001")}
    assert f"{PREFIX}/host/pve1" in etcd.keys and any("wrong signature" in line for line in logged)


def test_a_running_agent_signs_with_the_new_key_once_its_file_changed(tmp_path):
    etcd, logged = FakeEtcd(), []
    agent = store_with(tmp_path, etcd, logged, b"key-1")
    assert agent.secret() == b"key-1"
    (tmp_path / "marker.key").write_bytes(b"key-2\nkey-1\n")
    assert agent.secret() == b"key-2" and agent.keys() == (b"key-2", b"key-1")


def test_the_key_file_is_the_ring_new_key_first(spec, tls):
    base = ClusterSecrets.generate(r.name for r in spec.login_roles)
    rotated = dataclasses.replace(base, rolling_marker_key="new-key", rolling_marker_key_previous="old-key")
    node = spec.postgres_nodes[0]
    (system,) = [s for s in node_steps(spec, node, rotated, tls) if s.name == "system"]
    files = {f.path: f for f in system.files}
    from pgha.rolling import pgha_rolling

    assert files[pgha_rolling.MARKER_KEY_PATH].content == "new-key\nold-key\n"
    assert files[pgha_host_maintenance.MARKER_KEY_PATH].content == base.maintenance_marker_key + "\n"
    assert "old-key" in rotated.values()


# ---- the lab: a generation renews its secret, like the keeper -------------------------------------


def test_the_lab_renews_a_secret_when_its_generation_changes(tmp_path, monkeypatch, dev_config):
    monkeypatch.setattr("lab.machines.access.STATE_ROOT", tmp_path)
    access = LabAccess("dev", report=lambda line: None)
    access.state_dir.mkdir(parents=True)
    access._save_secrets()
    first = access.secrets()
    access._save_secrets()
    assert access.secrets() == first  # nothing changed, nothing renewed
    dev_config["secretRotation"] = {"replication": 1, "maintenanceMarker": 1}
    access.spec = load_spec(dev_config, "dev")
    access._save_secrets()
    second = access.secrets()
    changed = {f for f in ClusterSecrets.names() if getattr(first, f) != getattr(second, f)}
    assert changed == {"replication_password", "maintenance_marker_key"}
    assert second.maintenance_marker_key_previous == first.maintenance_marker_key
    assert second.marker_keys("maintenance_marker_key") == (
        second.maintenance_marker_key,
        first.maintenance_marker_key,
    )
