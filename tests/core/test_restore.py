"""pgha:restore: a fresh cluster bootstraps from the pgBackRest repository instead of initdb."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from pgha import ConfigError, backup, load_spec, node_steps


def _spec(dev_config, **restore):
    dev_config["restore"] = restore
    return load_spec(dev_config, "dev")


def _patroni_step(spec, secrets, tls, name="psql-01"):
    return next(s for s in node_steps(spec, spec.node(name), secrets, tls) if s.name == "patroni")


def test_without_restore_patroni_runs_initdb(spec, secrets, tls):
    step = _patroni_step(spec, secrets, tls)
    config = yaml.safe_load(next(f.content for f in step.files if f.path == "/etc/patroni/config.yml"))
    assert "method" not in config["bootstrap"] and "initdb" in config["bootstrap"]
    assert backup.BOOTSTRAP_PATH not in {f.path for f in step.files}


def test_restore_bootstraps_with_pgbackrest(dev_config, secrets, tls):
    spec = _spec(dev_config, time="2026-11-30 14:05:00+00")
    step = _patroni_step(spec, secrets, tls)
    files = {f.path: f for f in step.files}
    config = yaml.safe_load(files["/etc/patroni/config.yml"].content)
    assert config["bootstrap"]["method"] == "pgbackrest"
    assert config["bootstrap"]["pgbackrest"] == {
        "command": backup.BOOTSTRAP_PATH,
        "keep_existing_recovery_conf": True,
        "no_params": True,
    }
    assert config["bootstrap"]["post_bootstrap"] == backup.POST_BOOTSTRAP_PATH
    script = files[backup.BOOTSTRAP_PATH].content
    assert "--stanza=pgha" in script
    assert "--type=time --target='2026-11-30 14:05:00+00' --target-action=promote" in script
    # pgBackRest's config and certificate are there before Patroni bootstraps, as the backup step has them.
    backup_step = next(s for s in node_steps(spec, spec.node("psql-01"), secrets, tls) if s.name == "backup")
    for path in (backup.CONFIG_PATH, backup.PEM_PATH):
        assert files[path] == next(f for f in backup_step.files if f.path == path)
    assert "pgbackrest" in step.script
    post = files[backup.POST_BOOTSTRAP_PATH].content
    assert "ALTER SYSTEM RESET restore_command" in post


@pytest.mark.parametrize(
    ("restore", "expected"),
    [
        ({}, "--type=default"),
        ({"label": "20261130-010002F"}, "--set=20261130-010002F --type=immediate --target-action=promote"),
        ({"fromStanza": "prod"}, "--stanza=prod"),
    ],
)
def test_restore_targets(dev_config, secrets, tls, restore, expected):
    script = next(
        f.content
        for f in _patroni_step(_spec(dev_config, **restore), secrets, tls).files
        if f.path == backup.BOOTSTRAP_PATH
    )
    assert expected in script
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0


@pytest.mark.parametrize(
    ("restore", "message"),
    [
        ({"time": "yesterday; rm -rf /"}, "pgha:restore.time: 'yesterday; rm -rf /' is not a timestamp"),
        ({"label": "latest"}, "pgha:restore.label: 'latest' is not a pgBackRest backup label"),
        ({"time": "2026-11-30 14:05", "label": "20261130-010002F"}, "pgha:restore.label: give time or label"),
        ({"fromStanza": "Prod$"}, "pgha:restore.fromStanza: 'Prod$' is not a stanza name"),
        ({"target": "x"}, "pgha:restore.target: unknown key"),
    ],
)
def test_bad_restore(dev_config, restore, message):
    with pytest.raises(ConfigError) as error:
        _spec(dev_config, **restore)
    assert any(p.startswith(message) for p in error.value.problems), error.value.problems


def test_restore_needs_a_repository(dev_config):
    del dev_config["backup"]
    with pytest.raises(ConfigError) as error:
        _spec(dev_config)
    assert "pgha:restore: needs pgha:backup" in error.value.problems[0]
