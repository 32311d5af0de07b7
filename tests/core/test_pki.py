"""The CA and node certificates the lab issues: what they name, what they may do, that they chain."""

from __future__ import annotations

import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from pgha import ClusterTls, LocalCa, load_spec, pki


def cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def test_identity_names_node_ip_and_the_vip_where_postgres_answers(dev_config):
    dev_config["witness"] = {"name": "witness", "host": "pve3", "ip": "10.0.0.6"}
    spec = load_spec(dev_config, "dev")
    assert pki.node_identity(spec, spec.node("psql-02")) == pki.CertIdentity(
        "psql-02", ("psql-02",), ("10.0.0.3", "10.0.0.10")
    )
    # The witness runs only etcd: it never answers on the VIP.
    assert pki.node_identity(spec, spec.node("witness")).ip_addresses == ("10.0.0.6",)
    assert pki.etcd_identity(spec.node("witness")) == pki.CertIdentity(
        "witness", ("witness", pki.ETCD_CLIENT_NAME), ("10.0.0.6",)
    )


def test_only_the_etcd_identities_carry_its_client_name(spec):
    """etcd admits a certificate only if it names ETCD_CLIENT_NAME: never a node certificate."""
    repository = spec.node("backup-01")
    assert pki.etcd_identity(repository) is None
    for node in spec.nodes:
        assert pki.node_identity(spec, node).dns_names == (node.name,)
    for node in spec.postgres_nodes:
        assert pki.etcd_identity(node) == pki.CertIdentity(
            node.name, (node.name, pki.ETCD_CLIENT_NAME), (str(node.ip),)
        )


def test_node_certificates_chain_to_the_ca_and_name_the_node(spec, tls):
    ca = cert(tls.ca_certificate)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for node in spec.nodes:
        leaf = cert(tls.node(node).certificate)
        leaf.verify_directly_issued_by(ca)
        assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sans.get_values_for_type(x509.DNSName) == [node.name]
        vip = [ipaddress.ip_address("10.0.0.10")] if node.runs_postgres else []
        assert sans.get_values_for_type(x509.IPAddress) == [node.ip, *vip]
        uses = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert set(uses) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
        validity = leaf.not_valid_after_utc - leaf.not_valid_before_utc
        assert validity.days == spec.tls.cert_validity_days  # plus the hour of clock slack


def test_etcd_certificates_name_etcds_client_and_the_node_ip_only(spec, tls):
    ca = cert(tls.ca_certificate)
    assert set(tls.etcd) == {n.name for n in spec.nodes if n.uses_etcd}
    for node in spec.postgres_nodes:
        leaf = cert(tls.etcd_pair(node).certificate)
        leaf.verify_directly_issued_by(ca)
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sans.get_values_for_type(x509.DNSName) == [node.name, pki.ETCD_CLIENT_NAME]
        assert sans.get_values_for_type(x509.IPAddress) == [node.ip]
        validity = leaf.not_valid_after_utc - leaf.not_valid_before_utc
        assert validity.days == spec.tls.cert_validity_days


def test_each_key_matches_its_certificate_and_is_distinct(spec, tls):
    seen = set()
    for pair in (*tls.nodes.values(), *tls.etcd.values()):
        key = serialization.load_pem_private_key(pair.private_key.encode(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
        assert key.public_key() == cert(pair.certificate).public_key()
        seen.add(pair.private_key)
    assert len(seen) == len(tls.nodes) + len(tls.etcd) == len(spec.nodes) + len(spec.postgres_nodes)
    assert set(tls.private_keys()) == seen


def test_pem_bundle_is_certificate_then_key():
    pair = pki.NodeTls("-----CERT-----\n", "-----KEY-----")
    assert pair.pem_bundle == "-----CERT-----\n-----KEY-----\n"


def test_reissuing_keeps_the_ca(spec, tls):
    ca = LocalCa.create(spec)
    first, second = ca.issue_cluster(spec), ca.issue_cluster(spec)
    assert first.ca_certificate == second.ca_certificate == ca.certificate
    for node in spec.nodes:
        assert pki.serial_number(first.node(node).certificate) != pki.serial_number(
            second.node(node).certificate
        )
        assert first.node(node).private_key != second.node(node).private_key


def test_expiry_window(spec):
    ca = LocalCa.create(spec)
    pair = ca.issue(pki.CertIdentity("short-lived"), validity_days=10)
    assert pki.expires_within(pair.certificate, 30)
    assert not pki.expires_within(pair.certificate, 5)


def test_placeholders_are_marked(spec):
    placeholders = ClusterTls.placeholders(spec)
    assert placeholders.ca_certificate.startswith("PULUMI-GENERATED(")
    for node in spec.nodes:
        assert placeholders.node(node).private_key == f"PULUMI-SECRET(private-key {node.name})\n"
    for node in spec.postgres_nodes:
        assert placeholders.etcd_pair(node).private_key == f"PULUMI-SECRET(etcd private-key {node.name})\n"
    with pytest.raises(KeyError):
        placeholders.nodes["nobody"]
