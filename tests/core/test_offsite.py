"""backup.offsite: a second pgBackRest repository (repo2) in a bucket away from the machine room."""

from __future__ import annotations

import copy
import json
import subprocess
from dataclasses import replace
from typing import Any
from unittest import mock

import pytest

from pgha import ConfigError, backup, load_spec
from pgha.backup import backup_status
from pgha.monitoring import collector
from tests.core.test_backup import _tls, conf
from tests.core.test_config_hardening import render_bad

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


def test_archive_push_gives_up_on_a_dead_repository_in_seconds(dev_config, offsite_secrets):
    """Each asynchronous run connects to every repository before it pushes, three tries of io-timeout
    (60 s by default) to a dead host: a dead repository VM kept WAL from the bucket for minutes."""
    spec = load_spec(with_offsite(dev_config), "dev")
    for node in spec.postgres_nodes:
        push = conf(spec, node, offsite_secrets)["global:archive-push"]
        assert push["io-timeout"] == ["5"]
        # A peer dead mid-session: bounded too (31 min by default), and pgBackRest's rule
        # protocol-timeout > db-timeout holds with db-timeout following it down.
        assert push["protocol-timeout"] == ["60"]
        assert int(push["io-timeout"][0]) < int(push["protocol-timeout"][0])


def test_backups_keep_pgbackrests_own_timeouts(dev_config, offsite_secrets):
    """A backup's remote may sit silent for minutes (a standby's checkpoint): only archive-push is short."""
    spec = load_spec(with_offsite(dev_config), "dev")
    timeouts = {"io-timeout", "protocol-timeout", "db-timeout"}
    for node in spec.postgres_nodes:
        sections = conf(spec, node, offsite_secrets)
        # pgBackRest's command section: read by archive-push (and its async process) alone.
        assert set(sections["global:archive-push"]) == {"io-timeout", "protocol-timeout"}
        assert not timeouts & set(sections["global"]) and not timeouts & set(sections["pgha"])
    # The repository VM takes the backups and never archives: nothing shortened there.
    assert list(conf(spec, spec.repository_node, offsite_secrets)) == ["global", "pgha"]


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


def test_a_rebuild_from_the_offsite_copy_reads_repo2_alone(dev_config, offsite_secrets):
    """restore.repository offsite: the local repository is lost (or fresh and empty), so --repo=2."""
    config = with_offsite(dev_config)
    config["restore"] = {"repository": "offsite"}
    spec = load_spec(config, "dev")
    files = {
        f.path: f for f in backup.bootstrap_files(spec, spec.postgres_nodes[0], offsite_secrets, _tls(spec))
    }
    assert "repository+=(--repo=2)" in files[backup.BOOTSTRAP_PATH].content
    config["restore"] = {}
    spec = load_spec(config, "dev")
    files = {
        f.path: f for f in backup.bootstrap_files(spec, spec.postgres_nodes[0], offsite_secrets, _tls(spec))
    }
    assert "--repo" not in files[backup.BOOTSTRAP_PATH].content


def test_a_rebuild_from_an_offsite_copy_that_is_not_configured_is_refused(dev_config, tmp_path):
    dev_config["restore"] = {"repository": "offsite"}
    with pytest.raises(ConfigError) as error:
        load_spec(dev_config, "dev")
    assert error.value.problems == [
        "pgha:restore.repository: offsite needs backup.offsite: the bucket to restore from"
    ]
    result = render_bad(tmp_path, dev_config)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "pgha:restore.repository: offsite needs backup.offsite" in result.stderr


def test_every_repository_gets_a_first_full_backup(dev_config, offsite_secrets):
    """After a rebuild repo2 holds backups and the fresh repo1 none: the stanza step counts repositories."""
    spec = load_spec(with_offsite(dev_config), "dev")
    step = next(
        s
        for s in backup.steps(spec, spec.repository_node, offsite_secrets, _tls(spec))
        if s.name == "backup-stanza"
    )
    assert "repositories=2" in step.script and "unique | length >= $n" in step.script


# ---- pgha-backup-status: each repository judged on its own ------------------------------------

NOW = 1_000_000.0


def _backup(label: str, repo: int, hours_ago: float, kind: str = "full") -> dict[str, Any]:
    stop = NOW - hours_ago * 3600
    database = {"id": 1, "repo-key": repo}
    return {"label": label, "type": kind, "timestamp": {"stop": stop}, "database": database}


def _two_repos(backups: list[dict[str, Any]], repo2_code: int = 0) -> subprocess.CompletedProcess[str]:
    """``pgbackrest info --output=json`` of a stanza with repo1 and repo2 (pgBackRest 2.33+ layout)."""
    repo2_message = "ok" if repo2_code == 0 else "[HostConnectError] unable to connect to 's3:443'"
    stanza = {
        "name": "pgha",
        "status": {"code": 0 if repo2_code == 0 else 4, "message": "ok" if repo2_code == 0 else "mixed"},
        "repo": [
            {"key": 1, "cipher": "aes-256-cbc", "status": {"code": 0, "message": "ok"}},
            {"key": 2, "cipher": "aes-256-cbc", "status": {"code": repo2_code, "message": repo2_message}},
        ],
        "backup": backups,
        "archive": [
            {"database": {"id": 1, "repo-key": 1}, "id": "17-1", "max": "000000010000000000000009"},
            {"database": {"id": 1, "repo-key": 2}, "id": "17-1", "max": "000000010000000000000009"},
        ],
    }
    return subprocess.CompletedProcess([], 0, json.dumps([stanza]), "")


def test_a_stale_offsite_repository_is_a_problem_beside_a_fresh_local_one():
    """Old code judged the newest backup overall: repo1's fresh one hid a repo2 a week behind."""
    info = _two_repos([_backup("F2", 2, 170), _backup("F1", 1, 2), _backup("D1", 1, 1, "diff")])
    found = backup_status.report("pgha", 26, info, NOW, repos=[1, 2])
    assert not found["ok"]
    assert found["problems"] == ["repo2: newest backup is 170.0 h old (limit 26 h)"]
    # The stalest repository's newest backup is what the metrics and the age alert read.
    assert found["lastBackup"]["label"] == "F2"
    assert found["repos"]["repo1"]["ok"] and found["repos"]["repo1"]["lastBackup"]["label"] == "D1"
    assert collector_samples(found)["pgha_backup_last_completion_timestamp_seconds"] == NOW - 170 * 3600
    assert collector_samples(found)["pgha_backup_ok"] == 0


def test_an_unreachable_or_empty_offsite_repository_is_a_problem():
    fresh = [_backup("F1", 1, 1), _backup("F2", 2, 1)]
    down = backup_status.report("pgha", 26, _two_repos(fresh, repo2_code=99), NOW, repos=[1, 2])
    assert down["problems"] == ["repo2: status: [HostConnectError] unable to connect to 's3:443'"]
    empty = backup_status.report("pgha", 26, _two_repos([_backup("F1", 1, 1)]), NOW, repos=[1, 2])
    assert empty["problems"] == ["repo2: no backup yet"] and empty["lastBackup"] is None
    both = backup_status.report("pgha", 26, _two_repos(fresh), NOW, repos=[1, 2])
    assert both["ok"] and both["backups"] == 2 and both["archiveMax"] == "000000010000000000000009"


def test_the_status_tool_is_told_every_repository(dev_config, offsite_secrets):
    for config, repos in ((with_offsite(copy.deepcopy(dev_config)), [1, 2]), (dev_config, [1])):
        spec = load_spec(config, "dev")
        files = {f.path: f for f in backup.tool_files(spec, spec.repository_node)}
        settings = json.loads(files[backup_status.SETTINGS_PATH].content)
        assert settings["repos"] == repos, settings


def collector_samples(found: dict[str, Any]) -> dict[str, float]:
    """What pgha-metrics exports for this report (the status tool stubbed)."""
    answer = subprocess.CompletedProcess([], 1, json.dumps(found), "")
    with mock.patch.object(collector, "_run", return_value=answer):
        return {name: value for name, _labels, value in collector.backups("/x", 26 * 3600)}
