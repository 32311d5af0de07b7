"""pgBackRest rendering and its config rules: who archives, who backs up, who may connect."""

from __future__ import annotations

import configparser
import subprocess
from dataclasses import replace
from typing import Any

import pytest
import yaml

from pgha import ConfigError, backup, load_spec, patroni


def ini(text: str) -> dict[str, dict[str, list[str]]]:
    """pgbackrest.conf as section → key → values (tls-server-auth repeats)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
        elif "=" in line and not line.startswith("#") and current is not None:
            key, _, value = line.partition("=")
            current.setdefault(key, []).append(value)
    return sections


def conf(spec, node, secrets) -> dict[str, dict[str, list[str]]]:
    (rendered,) = [f for f in backup.files(spec, node, secrets, _tls(spec)) if f.path == backup.CONFIG_PATH]
    return ini(rendered.content)


def _tls(spec):
    from pgha import ClusterTls

    return ClusterTls.placeholders(spec)


def problems(config: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_spec(config, "dev")
    return caught.value.problems


def test_repository_vm_backs_up_every_database_from_a_standby_over_tls(spec, secrets):
    repository = spec.repository_node
    sections = conf(spec, repository, secrets)
    options = sections["global"]
    assert options["repo1-path"] == ["/var/lib/pgbackrest"]
    assert options["backup-standby"] == ["y"]
    assert options["tls-server-address"] == ["10.0.0.7"]
    assert options["tls-server-auth"] == [
        "psql-01=pgha",
        "psql-02=pgha",
        "psql-03=pgha",
        f"{backup.RESTORE_CLIENT}=pgha",
    ]
    stanza = sections["pgha"]
    for index, node in enumerate(spec.postgres_nodes, start=1):
        assert stanza[f"pg{index}-host"] == [str(node.ip)]
        assert stanza[f"pg{index}-host-type"] == ["tls"]
        assert stanza[f"pg{index}-host-cert-file"] == [backup.PEM_PATH]
        assert stanza[f"pg{index}-path"] == ["/var/lib/postgresql/17/pgha"]


def test_database_vms_push_wal_to_the_repository_and_trust_only_it(spec, secrets):
    for node in spec.postgres_nodes:
        options = conf(spec, node, secrets)["global"]
        assert options["repo1-host"] == ["10.0.0.7"]
        assert options["repo1-host-cert-file"] == [backup.PEM_PATH]
        assert options["tls-server-address"] == [str(node.ip)]
        assert options["tls-server-auth"] == ["backup-01=pgha"]
        assert "repo1-path" not in options


def test_patroni_archives_through_pgbackrest_and_promotions_never_wait_for_it(spec, secrets):
    document = yaml.safe_load(patroni.files(spec, spec.postgres_nodes[0], secrets, _tls(spec))[3].content)
    parameters = document["bootstrap"]["dcs"]["postgresql"]["parameters"]
    assert parameters["archive_mode"] == "on"
    assert parameters["archive_timeout"] == 60
    # The command itself is pinned in the local config, which the DCS cannot override.
    assert "archive_command" not in parameters
    local = document["postgresql"]["parameters"]
    assert local["archive_command"] == "pgbackrest --stanza=pgha archive-push %p"
    # A dead repository must not stall a promotion (see pgha/backup).
    assert "recovery_conf" not in document["postgresql"]


def test_without_backup_nothing_is_archived_or_installed(dev_config, secrets):
    del dev_config["backup"]
    spec = load_spec(dev_config, "dev")
    assert backup.postgres_parameters(spec) == {}
    assert all(backup.steps(spec, n, secrets, _tls(spec)) == [] for n in spec.nodes)


def test_a_path_repository_gives_every_database_vm_the_gated_timers(dev_config, secrets):
    dev_config["backup"] = {"repository": "path", "path": "/mnt/pgbackrest"}
    spec = load_spec(dev_config, "dev")
    assert spec.repository_node is None
    for node in spec.postgres_nodes:
        assert backup.runs_backups(spec, node)
        sections = conf(spec, node, secrets)
        assert sections["global"]["repo1-path"] == ["/mnt/pgbackrest"]
        # Itself as pg1, its two peers through their TLS servers.
        assert sections["pgha"]["pg1-path"] == ["/var/lib/postgresql/17/pgha"]
        peers = {sections["pgha"][f"pg{i}-host"][0] for i in (2, 3)}
        assert peers == {str(n.ip) for n in spec.postgres_nodes if n != node}
        tools = {f.path: f.content for f in backup.files(spec, node, secrets, _tls(spec))}
        assert f"https://{node.ip}:8008/primary" in tools[backup.BACKUP_PATH]
        assert backup.SERVICE_UNIT in " ".join(tools)
        names = [s.name for s in backup.steps(spec, node, secrets, _tls(spec))]
        assert names == ["backup", "backup-stanza"]


def test_s3_keys_land_only_in_a_secret_config_file(dev_config, secrets):
    dev_config["backup"] = {
        "repository": "s3",
        "s3Bucket": "pgha-backups",
        "s3Endpoint": "s3.example.org",
        "s3Region": "eu-west-3",
    }
    dev_config["backupS3Key"] = "AKIA-secret-key"
    dev_config["backupS3KeySecret"] = "s3-secret-value"
    spec = load_spec(dev_config, "dev")
    supplied = replace(secrets, backup_s3_key="AKIA-secret-key", backup_s3_key_secret="s3-secret-value")
    for node in spec.postgres_nodes:
        rendered = {f.path: f for f in backup.files(spec, node, supplied, _tls(spec))}
        config = rendered[backup.CONFIG_PATH]
        assert config.secret and config.mode == 0o640 and config.group == "postgres"
        assert "repo1-s3-key-secret=s3-secret-value" in config.content
        for step in backup.steps(spec, node, supplied, _tls(spec)):
            assert "s3-secret-value" not in step.script


def test_bad_backup_config_names_each_key(dev_config):
    dev_config["backup"] = {"repository": "tape"}
    assert any("pgha:backup.repository" in p and "'tape'" in p for p in problems(dev_config))
    dev_config["backup"] = {"repository": "host"}
    assert any(p.startswith("pgha:backup.repositoryVm: is required") for p in problems(dev_config))
    dev_config["backup"] = {
        "repository": "s3",
        "path": "relative/dir",
        "retentionFull": 0,
        "fullSchedule": "$(x)",
    }
    found = problems(dev_config)
    for key in ("backup.s3Bucket", "backupS3Key", "backupS3KeySecret", "backup.path", "backup.retentionFull"):
        assert any(p.startswith(f"pgha:{key}:") for p in found), (key, found)
    assert any(p.startswith("pgha:backup.fullSchedule:") for p in found), found
    dev_config["backup"] = {"repository": "path", "tlsPort": 5432}
    assert any(p.startswith("pgha:backup.tlsPort:") and "collides" in p for p in problems(dev_config))


def test_repository_vm_address_is_checked_like_any_vm(dev_config):
    dev_config["backup"]["repositoryVm"]["ip"] = "10.0.0.4"
    assert any(p.startswith("pgha:backup.repositoryVm.ip:") for p in problems(dev_config))


def test_tool_scripts_are_valid_bash_and_python(spec):
    for rendered in backup.tool_files(spec, spec.postgres_nodes[0]):
        if rendered.content.startswith("#!/bin/bash"):
            subprocess.run(["bash", "-n"], input=rendered.content, text=True, check=True)
        else:
            compile(rendered.content, rendered.path, "exec")


def test_the_backup_config_is_plain_ini(spec, secrets):
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read_string(
        backup.render_config(spec, backup.config_sections(spec, spec.postgres_nodes[0], secrets), "x")
    )
    assert parser.sections() == ["global", "pgha"]
