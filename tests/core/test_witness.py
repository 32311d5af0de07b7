"""The witness on an existing machine (``witness.external``): validation, steps, firewall."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pgha import ConfigError, LocalCa, image_packages, load_spec, node_steps, witness
from pgha.topology import failure_domains

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBXJ1dDYu9dyoDSkTgm9WDhcgqvDWH0Pe2hA9ma3q7ia root@qnetd"
EXTERNAL = {"name": "qnetd", "ip": "10.0.0.5", "external": True, "hostKey": HOST_KEY}


def _spec(dev_config, **witness_config):
    dev_config["witness"] = {**EXTERNAL, **witness_config}
    return load_spec(dev_config, "dev")


def test_an_external_witness_is_its_own_failure_domain(dev_config):
    spec = _spec(dev_config)
    node = spec.node("qnetd")
    assert node.external and node.role == "witness" and node.host == "qnetd"
    assert node.host_key == HOST_KEY
    assert spec.proxmox_hosts == ("pve1", "pve2")
    domains = failure_domains(spec)
    assert all(text.startswith("survived") for text in domains.values()), domains
    assert set(domains) == {"pve1", "pve2", "qnetd"}


def test_an_external_witness_may_sit_outside_the_private_network(dev_config):
    assert _spec(dev_config, ip="192.168.50.9").node("qnetd").ip.exploded == "192.168.50.9"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"host": "pve1"}, "pgha:witness.host: 'pve1' already carries a VM"),
        ({"external": "maybe"}, "pgha:witness.external: expected true or false, got 'maybe'"),
        ({"vmId": 120}, "pgha:witness.vmId: unknown key"),
        ({"ip": "127.0.0.1"}, "pgha:witness.ip: 127.0.0.1 cannot be a machine's address"),
        ({"name": "Q;rm -rf /"}, "pgha:witness.name: 'Q;rm -rf /' is not a valid hostname"),
        ({"hostKey": None}, "pgha:witness.hostKey: is required with external: true"),
        ({"hostKey": "ssh-ed25519 AAAA\nrm -rf /"}, "pgha:witness.hostKey: "),
    ],
)
def test_bad_external_witness(dev_config, change, message):
    with pytest.raises(ConfigError) as error:
        _spec(dev_config, **change)
    assert any(p.startswith(message) for p in error.value.problems), error.value.problems


def test_a_vm_witness_still_must_be_inside_the_network(dev_config):
    dev_config["witness"] = {"name": "witness", "host": "pve3", "ip": "192.168.50.9"}
    with pytest.raises(ConfigError, match=r"outside pgha:network\.cidr"):
        load_spec(dev_config, "dev")


def test_only_etcd_and_a_firewall_go_there(dev_config, secrets):
    spec = _spec(dev_config)
    node = spec.node("qnetd")
    tls = LocalCa.create(spec).issue_cluster(spec)
    steps = node_steps(spec, node, secrets, tls)
    assert [s.name for s in steps] == ["system", "etcd", "etcd-health"]
    system = steps[0]
    assert "cloud-init status" not in system.script
    assert "pgha-install-files.new" in system.script and "nftables" in system.script
    paths = {f.path for f in system.files}
    assert witness.RULES_PATH in paths and "/etc/sysctl.d/90-pgha.conf" not in paths
    rules = next(f.content for f in system.files if f.path == witness.RULES_PATH)
    assert "elements = { 10.0.0.2, 10.0.0.3, 10.0.0.4, 10.0.0.5, 10.0.0.7 }" in rules
    assert "tcp dport { 2379, 2380 } drop" in rules
    # A VM's system step is unchanged: it waits for our cloud-init, no firewall.
    vm_system = node_steps(spec, spec.node("psql-01"), secrets, tls)[0]
    assert "cloud-init status --wait" in vm_system.script and "nft" not in vm_system.script


def test_the_lab_image_gets_nftables_only_for_an_external_witness(dev_config, spec):
    # Here nftables would otherwise come with the leader race's agent only.
    spec = replace(spec, patroni=replace(spec.patroni, leader_race_fail_fast=False))
    assert "nftables" not in image_packages(spec)
    assert "nftables" in image_packages(_spec(dev_config))
