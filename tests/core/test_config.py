"""Each validation rule: a failing config whose message names the key and the value."""

from __future__ import annotations

from typing import Any

import pytest

from pgha import ConfigError, load_spec


def problems(config: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_spec(config, "dev")
    return caught.value.problems


def assert_problem(config: dict[str, Any], *fragments: str) -> None:
    found = problems(config)
    assert any(all(f in p for f in fragments) for p in found), found


def test_dev_stack_is_valid(dev_config):
    spec = load_spec(dev_config, "dev")
    assert [n.name for n in spec.postgres_nodes] == ["psql-01", "psql-02", "psql-03"]
    assert spec.repository_node is not None and spec.repository_node.name == "backup-01"
    assert str(spec.vip) == "10.0.0.10"
    assert spec.keepalived.virtual_router_id == 10


def test_fewer_than_three_vms(dev_config):
    dev_config["vms"] = dev_config["vms"][:2]
    assert_problem(dev_config, "pgha:vms", "at least 3 VMs", "got 2")


def test_duplicate_names_and_ips(dev_config):
    dev_config["vms"][1]["name"] = "psql-01"
    dev_config["vms"][2]["ip"] = "10.0.0.4"
    assert_problem(dev_config, "pgha:vms[1].name", "psql-01", "more than one VM")
    assert_problem(dev_config, "pgha:vms[2].ip", "10.0.0.4", "more than one VM")


def test_ip_outside_cidr(dev_config):
    dev_config["vms"][0]["ip"] = "10.0.1.4"
    assert_problem(dev_config, "pgha:vms[0].ip", "10.0.1.4", "outside", "10.0.0.0/24")


def test_vip_outside_cidr(dev_config):
    dev_config["vip"] = "192.168.1.10"
    assert_problem(dev_config, "pgha:vip", "192.168.1.10", "outside")


def test_vip_equals_vm_ip(dev_config):
    dev_config["vip"] = "10.0.0.3"
    assert_problem(dev_config, "pgha:vip", "10.0.0.3", "psql-02")


@pytest.mark.parametrize("address", ["10.0.0.0", "10.0.0.255"])
def test_vip_network_or_broadcast(dev_config, address):
    dev_config["vip"] = address
    assert_problem(dev_config, "pgha:vip", address, "network or broadcast")


def test_vm_ip_broadcast(dev_config):
    dev_config["vms"][0]["ip"] = "10.0.0.255"
    assert_problem(dev_config, "pgha:vms[0].ip", "broadcast")


def test_all_vms_on_one_host(dev_config):
    for vm in dev_config["vms"]:
        vm["host"] = "pve1"
    assert_problem(dev_config, "pgha:vms", "all VMs", "'pve1'")


def test_port_collision(dev_config):
    dev_config["haproxy"] = {"replicaPort": 5442}
    assert_problem(dev_config, "pgha:haproxy.replicaPort", "5442", "pgha:postgres.port")


def test_port_collision_with_ssh(dev_config):
    dev_config["patroni"] = {"restApiPort": 22}
    assert_problem(dev_config, "pgha:ssh.port", "22", "pgha:patroni.restApiPort")


def test_port_out_of_range(dev_config):
    dev_config["postgres"] = {"port": 70000}
    assert_problem(dev_config, "pgha:postgres.port", "70000", "1-65535")


@pytest.mark.parametrize("address", ["10.0.0.300", "not-an-ip", "::1"])
def test_malformed_vip(dev_config, address):
    dev_config["vip"] = address
    assert_problem(dev_config, "pgha:vip", repr(address), "not an IPv4 address")


@pytest.mark.parametrize("cidr", ["10.0.0.0/33", "10.0.0.1/24", "banana"])
def test_malformed_cidr(dev_config, cidr):
    dev_config["network"]["cidr"] = cidr
    assert_problem(dev_config, "pgha:network.cidr", repr(cidr), "not a valid IPv4 network")


def test_missing_ssh_key(dev_config):
    dev_config["ssh"] = {"user": "pgha"}
    assert_problem(dev_config, "pgha:ssh.authorizedKeys", "is required")


def test_bad_ssh_key(dev_config):
    dev_config["ssh"]["authorizedKeys"] = ["not a key"]
    assert_problem(dev_config, "pgha:ssh.authorizedKeys[0]", "'not a key'", "not an SSH public key")


def test_unsupported_postgres_version(dev_config):
    dev_config["postgres"] = {"version": 15}
    assert_problem(dev_config, "pgha:postgres.version", "PostgreSQL 15", "debian-13", "17")


def test_patroni_timing_rule(dev_config):
    dev_config["patroni"] = {"ttl": 20, "loopWait": 10, "retryTimeout": 10}
    assert_problem(dev_config, "pgha:patroni.ttl", "30 s", "exceeds ttl 20 s")


def test_ttl_floor(dev_config):
    dev_config["patroni"] = {"ttl": 10, "loopWait": 2, "retryTimeout": 2}
    assert_problem(dev_config, "pgha:patroni.ttl", "below 20 s")


def test_unknown_keys_and_bad_types(dev_config):
    dev_config["haproxy"] = {"checkFall": "three", "chekRise": 2}
    dev_config["colour"] = "blue"
    found = problems(dev_config)
    assert any("pgha:haproxy.checkFall" in p and "'three'" in p for p in found), found
    assert any("pgha:haproxy.chekRise" in p and "unknown key" in p for p in found), found
    assert any("pgha:colour" in p and "unknown key" in p for p in found), found


def test_network_needs_bridge_or_sdn(dev_config):
    del dev_config["network"]["bridge"]
    assert_problem(dev_config, "pgha:network", "bridge", "sdn")


def test_witness_must_be_on_third_host(dev_config):
    dev_config["witness"] = {"name": "witness", "host": "pve1", "ip": "10.0.0.5"}
    assert_problem(dev_config, "pgha:witness.host", "'pve1'", "third host")


def test_all_problems_are_collected(dev_config):
    dev_config["vip"] = "10.0.0.4"
    dev_config["vms"][1]["ip"] = "192.168.0.1"
    dev_config["postgres"] = {"version": 16, "port": 5432}
    del dev_config["ssh"]
    found = problems(dev_config)
    assert len(found) >= 5, found
    for key in ("pgha:vip", "pgha:vms[1].ip", "pgha:postgres.version", "pgha:ssh.authorizedKeys"):
        assert any(p.startswith(key) for p in found), (key, found)
    assert any("pgha:haproxy.primaryPort" in p and "5432" in p for p in found), found


def test_error_message_lists_every_problem(dev_config):
    dev_config["vip"] = "bad"
    dev_config["vms"] = []
    with pytest.raises(ConfigError) as caught:
        load_spec(dev_config, "dev")
    text = str(caught.value)
    assert "pgha:vip" in text and "pgha:vms" in text


def test_tls_defaults_and_rotation(dev_config):
    assert load_spec(dev_config, "dev").tls.rotation == 0
    dev_config["tls"] = {"rotation": 3, "certValidityDays": 90}
    tls = load_spec(dev_config, "dev").tls
    assert (tls.rotation, tls.cert_validity_days, tls.ca_validity_days) == (3, 90, 3650)
    assert tls.renew_before_days == 30


def test_certificates_must_not_outlive_the_ca(dev_config):
    dev_config["tls"] = {"certValidityDays": 4000, "caValidityDays": 3650}
    assert_problem(dev_config, "pgha:tls.caValidityDays", "3650", "must exceed")


def test_tls_rotation_must_be_a_counter(dev_config):
    dev_config["tls"] = {"rotation": "yesterday", "rotate": 1}
    assert_problem(dev_config, "pgha:tls.rotation", "'yesterday'")
    assert_problem(dev_config, "pgha:tls.rotate", "unknown key")
