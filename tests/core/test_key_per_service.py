"""A key per service: etcd's client name only in the key files of etcd and of etcd's clients.

A rendered stack (a witness, a rolling update under way: every etcd client
there is) is read as the VMs would: the files PostgreSQL, HAProxy, pgBackRest
and PgBouncer read hold no certificate naming ``pki.ETCD_CLIENT_NAME``, and
every etcd client's configuration points at a file holding the VM's etcd pair.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml
from cryptography import x509

from pgha import LocalCa, backup, etcd, haproxy, host_maintenance, load_spec, membership, patroni, pki, pooler
from pgha import rolling as pgha_rolling
from pgha.patroni import hostaware
from pgha.plan import node_files

# The only files that may hold an etcd certificate: etcd's own copy and Patroni's.
ETCD_IDENTITY_FILES = {etcd.PEM_PATH, patroni.ETCD_PEM_PATH}


@pytest.fixture
def stack(dev_config, secrets):
    """The dev stack with a witness (etcd alone) and a rolling update: (spec, tls, node -> path -> file)."""
    dev_config["witness"] = {"name": "witness", "host": "pve3", "ip": "10.0.0.6"}
    dev_config["maintenance"] = {"upgrade": 1}
    spec = load_spec(dev_config, "dev")
    tls = LocalCa.create(spec).issue_cluster(spec)
    files = {n.name: {f.path: f for f in node_files(spec, n, secrets, tls)} for n in spec.nodes}
    return spec, tls, files


def names_etcd_client(content: str) -> bool:
    """Whether any certificate in ``content`` names etcd's client identity."""
    if "-----BEGIN CERTIFICATE-----" not in content:
        return False
    for cert in x509.load_pem_x509_certificates(content.encode()):
        try:
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            continue
        if pki.ETCD_CLIENT_NAME in sans.get_values_for_type(x509.DNSName):
            return True
    return False


def test_only_etcd_and_its_clients_hold_a_certificate_naming_etcds_client(stack):
    spec, _, files = stack
    for node in spec.nodes:
        for path, rendered in files[node.name].items():
            if names_etcd_client(rendered.content):
                assert path in ETCD_IDENTITY_FILES, (node.name, path)
    for node in spec.postgres_nodes:
        mine = files[node.name]
        config = yaml.safe_load(mine[patroni.CONFIG_PATH].content)
        read_by_others = {
            config["postgresql"]["parameters"]["ssl_cert_file"],
            config["postgresql"]["parameters"]["ssl_key_file"],
            *(v for k, v in patroni.verified_tls().items() if k in ("sslcert", "sslkey")),
            haproxy.PEM_PATH,
            backup.PEM_PATH,
            pooler.PEM_PATH,
        }
        assert read_by_others.isdisjoint(ETCD_IDENTITY_FILES)
        for path in read_by_others:
            assert "PRIVATE KEY" in mine[path].content and not names_etcd_client(mine[path].content), path


def etcd_client_pems(spec, node, mine) -> dict[str, str]:
    """Every etcd client on the VM (and etcd itself) -> the key file its configuration names."""
    found = {}
    if etcd.ENV_PATH in mine:
        env = dict(re.findall(r'^(ETCD_\w+)="(.*)"$', mine[etcd.ENV_PATH].content, re.MULTILINE))
        for key in ("CERT_FILE", "KEY_FILE", "PEER_CERT_FILE", "PEER_KEY_FILE"):
            found[f"etcd {key}"] = env[f"ETCD_{key}"]
    if patroni.CONFIG_PATH in mine:
        config = yaml.safe_load(mine[patroni.CONFIG_PATH].content)
        section = config["etcd3" if "etcd3" in config else "etcd"]
        found["patroni cert"], found["patroni key"] = section["cert"], section["key"]
    if hostaware.SETTINGS_PATH in mine and json.loads(mine[hostaware.SETTINGS_PATH].content)["etcd"]:
        found["hostaware"] = json.loads(mine[hostaware.SETTINGS_PATH].content)["etcd"]["cert"]
    if host_maintenance.SETTINGS_PATH in mine:
        found["host maintenance"] = json.loads(mine[host_maintenance.SETTINGS_PATH].content)["client_pem"]
    found["rolling update"] = json.loads(mine[pgha_rolling.UPGRADE_PLAN_PATH].content)["client_pem"]
    helper = mine[membership.HELPER_PATH].content
    found["membership"] = re.search(r"--cert=([^'\s)]+)", helper).group(1)
    return found


def test_every_etcd_client_shows_the_vms_etcd_certificate(stack):
    spec, tls, files = stack
    seen = set()
    for node in spec.nodes:
        if not node.uses_etcd:
            continue
        mine = files[node.name]
        for client, path in etcd_client_pems(spec, node, mine).items():
            assert mine[path].content == tls.etcd_pair(node).pem_bundle, (node.name, client, path)
            assert mine[path].secret and mine[path].mode == 0o600, (node.name, path)
            seen.add(client)
    assert {"etcd CERT_FILE", "patroni cert", "host maintenance", "rolling update", "membership"} <= seen
