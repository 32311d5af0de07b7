"""backup.offsite: a second pgBackRest repository (repo2) in a bucket away from the machine room."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from typing import Any

import pytest

from pgha import backup, load_spec
from tests.core.test_backup import _tls, conf

CA = "-----BEGIN CERTIFICATE-----\nMIIBdzCCAR2gAwIBAgIUQ29mZmVl\nQ29mZmVl==\n-----END CERTIFICATE-----\n"


def with_offsite(config: dict[str, Any], **extra: Any) -> dict[str, Any]:
    config["backup"]["offsite"] = {
        "endpoint": "s3.offsite.example.net:8443",
        "bucket": "pgha-offsite",
        "region": "eu-central-1",
        "caCertificate": CA,
        **extra,
    }
    config["backupOffsiteKey"] = "OFFSITE-KEY-ID"
    config["backupOffsiteKeySecret"] = "offsite-secret-value"
    return config


@pytest.fixture
def offsite_secrets(secrets):
    return replace(
        secrets, backup_offsite_key="OFFSITE-KEY-ID", backup_offsite_key_secret="offsite-secret-value"
    )


def test_repo2_is_beside_repo1_on_the_repository_vm_and_every_database_vm(dev_config, offsite_secrets):
    spec = load_spec(with_offsite(dev_config), "dev")
    for node in (spec.repository_node, *spec.postgres_nodes):
        options = conf(spec, node, offsite_secrets)["global"]
        assert options["repo2-type"] == ["s3"]
        assert options["repo2-s3-bucket"] == ["pgha-offsite"]
        assert options["repo2-s3-endpoint"] == ["s3.offsite.example.net:8443"]
        assert options["repo2-s3-uri-style"] == ["path"]
        assert options["repo2-storage-verify-tls"] == ["y"]
        assert options["repo2-storage-ca-file"] == [backup.OFFSITE_CA_PATH]
        assert options["repo2-cipher-type"] == ["aes-256-cbc"]
        assert options["repo2-cipher-pass"] == ["cipher-Secret-6"]
        assert options["repo2-retention-full"] == ["2"]
        assert options["repo2-s3-key-secret"] == ["offsite-secret-value"]
    # repo1 stays where it was: the repository VM's own directory, reached over TLS.
    assert conf(spec, spec.repository_node, offsite_secrets)["global"]["repo1-path"] == [
        "/var/lib/pgbackrest"
    ]
    assert conf(spec, spec.postgres_nodes[0], offsite_secrets)["global"]["repo1-host"] == ["10.0.0.7"]


def test_database_vms_archive_asynchronously_with_a_queue_limit(dev_config, offsite_secrets):
    spec = load_spec(with_offsite(dev_config), "dev")
    for node in spec.postgres_nodes:
        options = conf(spec, node, offsite_secrets)["global"]
        assert options["archive-async"] == ["y"]
        assert options["spool-path"] == [backup.SPOOL_DIR]
        assert options["archive-push-queue-max"] == ["4GiB"]
        (install,) = [s for s in backup.steps(spec, node, offsite_secrets, _tls(spec)) if s.name == "backup"]
        assert backup.SPOOL_DIR in install.script
    # The repository VM never archives: no spool there.
    assert "archive-async" not in conf(spec, spec.repository_node, offsite_secrets)["global"]


def test_the_keys_and_the_ca_land_only_in_files_never_in_scripts(dev_config, offsite_secrets):
    spec = load_spec(with_offsite(dev_config), "dev")
    for node in (spec.repository_node, *spec.postgres_nodes):
        rendered = {f.path: f for f in backup.files(spec, node, offsite_secrets, _tls(spec))}
        config = rendered[backup.CONFIG_PATH]
        assert config.secret and config.mode == 0o640 and config.group == "postgres"
        assert rendered[backup.OFFSITE_CA_PATH].content == CA
        for step in backup.steps(spec, node, offsite_secrets, _tls(spec)):
            assert "offsite-secret-value" not in step.script and "OFFSITE-KEY-ID" not in step.script


def test_without_a_ca_the_system_cas_verify_and_tls_stays_on(dev_config, offsite_secrets):
    config = with_offsite(dev_config)
    del config["backup"]["offsite"]["caCertificate"]
    spec = load_spec(config, "dev")
    options = conf(spec, spec.postgres_nodes[0], offsite_secrets)["global"]
    assert options["repo2-storage-verify-tls"] == ["y"] and "repo2-storage-ca-file" not in options
    paths = {f.path for f in backup.files(spec, spec.postgres_nodes[0], offsite_secrets, _tls(spec))}
    assert backup.OFFSITE_CA_PATH not in paths


def test_each_backup_goes_to_both_repositories(dev_config):
    spec = load_spec(with_offsite(dev_config), "dev")
    (script,) = [f for f in backup.tool_files(spec, spec.repository_node) if f.path == backup.BACKUP_PATH]
    subprocess.run(["bash", "-n"], input=script.content, text=True, check=True)
    assert '--repo=1 --type="$kind" backup || failed=1' in script.content
    assert '--repo=2 --type="$kind" backup || failed=1' in script.content


def test_without_offsite_there_is_no_repo2(spec, secrets):
    for node in (spec.repository_node, *spec.postgres_nodes):
        options = conf(spec, node, secrets)["global"]
        assert not [key for key in options if key.startswith("repo2-") or key.startswith("archive-")]


def test_a_restore_bootstrap_can_read_repo2(dev_config, offsite_secrets):
    config = with_offsite(dev_config)
    config["restore"] = {}
    spec = load_spec(config, "dev")
    node = spec.postgres_nodes[0]
    files = {f.path: f for f in backup.bootstrap_files(spec, node, offsite_secrets, _tls(spec))}
    assert files[backup.OFFSITE_CA_PATH].content == CA
    assert "repo2-storage-ca-file=" + backup.OFFSITE_CA_PATH in files[backup.CONFIG_PATH].content
