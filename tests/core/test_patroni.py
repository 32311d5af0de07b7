"""Patroni's YAML: parsed back and checked field by field."""

from __future__ import annotations

import yaml

from components.core import patroni


def parsed(spec, node, secrets) -> dict:
    config_file = next(f for f in patroni.files(spec, node, secrets) if f.path == patroni.CONFIG_PATH)
    return yaml.safe_load(config_file.content)


def test_node_identity_and_addresses(spec, secrets):
    for node in spec.nodes:
        config = parsed(spec, node, secrets)
        assert config["name"] == node.name
        assert config["scope"] == "pgha"
        assert config["restapi"]["listen"] == f"{node.ip}:8008"
        assert config["postgresql"]["connect_address"] == f"{node.ip}:5442"
        assert config["postgresql"]["listen"] == f"127.0.0.1,{node.ip}:5442"
        assert config["etcd3"]["hosts"] == ["10.0.0.4:2379", "10.0.0.3:2379", "10.0.0.2:2379"]


def test_dcs_settings(spec, secrets):
    dcs = parsed(spec, spec.nodes[0], secrets)["bootstrap"]["dcs"]
    assert (dcs["ttl"], dcs["loop_wait"], dcs["retry_timeout"]) == (30, 10, 10)
    assert dcs["failsafe_mode"] is True
    assert dcs["synchronous_mode"] is True and dcs["synchronous_mode_strict"] is False
    assert dcs["postgresql"]["use_pg_rewind"] is True
    assert dcs["postgresql"]["use_slots"] is True
    assert dcs["postgresql"]["parameters"]["password_encryption"] == "scram-sha-256"


def test_users_and_passwords(spec, secrets):
    auth = parsed(spec, spec.nodes[0], secrets)["postgresql"]["authentication"]
    assert auth["superuser"] == {"username": "postgres", "password": "su-Secret-1"}
    assert auth["replication"] == {"username": "replicator", "password": "repl-Secret-2"}
    assert auth["rewind"] == {"username": "rewind_user", "password": "rewind-Secret-3"}


def test_pg_hba_is_private_and_scram(spec, secrets):
    hba = parsed(spec, spec.nodes[0], secrets)["postgresql"]["pg_hba"]
    assert hba[0] == "local all all peer"
    for line in hba[1:]:
        fields = line.split()
        assert fields[0] == "host" and fields[-1] == "scram-sha-256"
        assert fields[3] in ("127.0.0.1/32", "::1/128", "10.0.0.0/24")
    assert "host replication replicator 10.0.0.0/24 scram-sha-256" in hba
    assert not any("0.0.0.0/0" in line for line in hba)


def test_watchdog_automatic(spec, secrets):
    assert parsed(spec, spec.nodes[0], secrets)["watchdog"]["mode"] == "automatic"


def test_config_file_is_private(spec, secrets):
    config_file = next(
        f for f in patroni.files(spec, spec.nodes[0], secrets) if f.path == patroni.CONFIG_PATH
    )
    assert (config_file.mode, config_file.owner, config_file.secret) == (0o600, "postgres", True)


def test_parameters_from_config_override_defaults(dev_config, secrets):
    from components.core import load_spec

    dev_config["postgres"] = {"parameters": {"max_connections": 500, "work_mem": "8MB"}}
    spec = load_spec(dev_config, "dev")
    parameters = parsed(spec, spec.nodes[0], secrets)["bootstrap"]["dcs"]["postgresql"]["parameters"]
    assert parameters["max_connections"] == 500 and parameters["work_mem"] == "8MB"


def test_step_drops_debian_cluster_and_waits(spec, secrets):
    (step,) = patroni.steps(spec, spec.nodes[0], secrets)
    assert "pg_dropcluster --stop 17 main" in step.script
    assert "create_main_cluster = false" in step.stdin
    assert "http://10.0.0.4:8008/health" in step.script


def test_every_replica_is_synchronous_by_default(spec, secrets):
    dcs = parsed(spec, spec.nodes[0], secrets)["bootstrap"]["dcs"]
    assert dcs["synchronous_node_count"] == 2


def test_synchronous_node_count_is_bounded(dev_config):
    import pytest

    from components.core import ConfigError, load_spec

    dev_config["patroni"] = {"synchronousNodeCount": 3}
    with pytest.raises(ConfigError) as caught:
        load_spec(dev_config, "dev")
    assert any("pgha:patroni.synchronousNodeCount: 3" in p for p in caught.value.problems)
