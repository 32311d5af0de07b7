"""The cluster's private CA and node certificates, as the PEM strings the renderers read.

Pulumi issues the real ones with ``pulumi_tls`` (``components/tls.py``); the
lab and the validators test issue equivalent ones with :class:`LocalCa`
(``cryptography``); the offline render shows placeholders. All three ask
:func:`node_identity` and :func:`etcd_identity` what a node's certificates
name, so they agree. The CA's private key stays where it was made (Pulumi's
state, the lab's root-only state dir): a VM gets the CA certificate, its own
certificates and their keys, nothing else.

A key per service: a node that uses etcd has two key pairs. Its node
certificate (PostgreSQL, the REST API, HAProxy, pgBackRest, PgBouncer) does
not name etcd's client identity; its etcd certificate does, and only etcd and
etcd's clients (Patroni's DCS client, pgha's agents) hold it. A leaked
PostgreSQL or HAProxy key then does not open Patroni's keys in etcd.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .files import RenderedFile
from .spec import ClusterSpec, Node

TLS_DIR = "/etc/pgha/tls"
CA_PATH = f"{TLS_DIR}/ca.crt"
ORGANIZATION = "pgha"
# ECDSA P-256: what etcd (Go), OpenSSL (PostgreSQL, HAProxy) and Python (Patroni) all take.
KEY_ALGORITHM = "ECDSA"
ECDSA_CURVE = "P256"
# pulumi_tls's names of the key usages; LocalCa writes the same X.509 extensions.
CA_USES = ("cert_signing", "crl_signing", "digital_signature")
# Every certificate serves (etcd; Patroni, PostgreSQL, HAProxy stats) and is a
# client too (etcd peers and Patroni to etcd; replication, pgBackRest).
NODE_USES = ("digital_signature", "server_auth", "client_auth")
# The DNS name etcd requires in a client's and a peer's certificate
# (ETCD_CLIENT_CERT_ALLOWED_HOSTNAME, ETCD_PEER_CERT_ALLOWED_HOSTNAME): only the
# etcd certificates of the nodes that use etcd carry it, so their node
# certificates, the repository's, a restore machine's or any other certificate
# of the CA are refused. One shared
# name, since etcd 3.5 checks a single value (3.6 takes a list). ``.internal``
# is reserved for private use: no public certificate can carry it.
ETCD_CLIENT_NAME = "etcd-client.pgha.internal"


@dataclass(frozen=True)
class CertIdentity:
    """What a certificate names: its subject and the names clients may check it against."""

    common_name: str
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()


def ca_common_name(spec: ClusterSpec) -> str:
    return f"pgha {spec.stack} {spec.postgres.scope} CA"


def node_identity(spec: ClusterSpec, node: Node) -> CertIdentity:
    """The node's name and private IP; the VIP too where PostgreSQL answers behind it.

    HAProxy passes PostgreSQL's TLS through untouched, so a client of the VIP
    sees the certificate of whichever node is primary: each such node's
    certificate must name the VIP for ``sslmode=verify-full`` to pass.
    """
    addresses = [str(node.ip)]
    if node.runs_postgres:
        addresses.append(str(spec.vip))
    return CertIdentity(node.name, (node.name,), tuple(addresses))


def etcd_identity(node: Node) -> CertIdentity | None:
    """The node's etcd certificate, if it uses etcd: its name, its IP, and ETCD_CLIENT_NAME.

    etcd serves with it (clients dial the member's IP) and shows it to its
    peers; Patroni and pgha's agents show it to etcd. No VIP: PostgreSQL never
    presents it.
    """
    if not node.uses_etcd:
        return None
    return CertIdentity(node.name, (node.name, ETCD_CLIENT_NAME), (str(node.ip),))


@dataclass(frozen=True)
class NodeTls:
    """One node's certificate and private key (the key is a secret)."""

    certificate: str
    private_key: str

    @property
    def pem_bundle(self) -> str:
        """Certificate then key in one file, so one atomic rename replaces both.

        etcd reads its certificate and key again on every TLS handshake: two
        files renamed one after the other could be caught mismatched.
        """
        return self.certificate.rstrip("\n") + "\n" + self.private_key.rstrip("\n") + "\n"


@dataclass(frozen=True)
class ClusterTls:
    """The CA certificate, every node's key pair and the etcd key pair of each node that uses etcd."""

    ca_certificate: str
    nodes: Mapping[str, NodeTls]
    etcd: Mapping[str, NodeTls] = field(default_factory=dict)

    def node(self, node: Node) -> NodeTls:
        return self.nodes[node.name]

    def etcd_pair(self, node: Node) -> NodeTls:
        """The node's etcd identity: for etcd and etcd's clients only, never for PostgreSQL's files."""
        return self.etcd[node.name]

    def private_keys(self) -> tuple[str, ...]:
        return tuple(n.private_key for n in (*self.nodes.values(), *self.etcd.values()))

    @classmethod
    def placeholders(cls, spec: ClusterSpec) -> ClusterTls:
        """Clearly marked stand-ins for the offline render and the secret-free step layout."""
        return cls(
            ca_certificate="PULUMI-GENERATED(ca-certificate)\n",
            nodes={
                n.name: NodeTls(
                    certificate=f"PULUMI-GENERATED(certificate {n.name})\n",
                    private_key=f"PULUMI-SECRET(private-key {n.name})\n",
                )
                for n in spec.nodes
            },
            etcd={
                n.name: NodeTls(
                    certificate=f"PULUMI-GENERATED(etcd certificate {n.name})\n",
                    private_key=f"PULUMI-SECRET(etcd private-key {n.name})\n",
                )
                for n in spec.nodes
                if n.uses_etcd
            },
        )


def ca_file(tls: ClusterTls) -> RenderedFile:
    """The CA certificate every service and client verifies against: public."""
    return RenderedFile(CA_PATH, tls.ca_certificate)


def key_file(path: str, node_tls: NodeTls, owner: str, group: str | None = None) -> RenderedFile:
    """A service's own copy of the node's certificate and key, readable by that service only."""
    return RenderedFile(path, node_tls.pem_bundle, mode=0o600, owner=owner, group=group or owner, secret=True)


# ---- local issuing: the lab, the validators test ---------------------------------


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _pem_cert(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@dataclass(frozen=True)
class LocalCa:
    """A CA made on this machine with ``cryptography``, standing in for Pulumi's."""

    certificate: str
    private_key: str

    @classmethod
    def create(cls, spec: ClusterSpec, common_name: str | None = None) -> LocalCa:
        """The cluster's CA, or with ``common_name`` another (the lab's off-site S3 server has its own)."""
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common_name or ca_common_name(spec)),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            ]
        )
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=spec.tls.ca_validity_days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(_pem_cert(cert), _pem_key(key))

    def issue(self, identity: CertIdentity, validity_days: int) -> NodeTls:
        """A fresh key and a certificate for it, for serving and as a client."""
        ca_key = serialization.load_pem_private_key(self.private_key.encode(), password=None)
        ca_cert = x509.load_pem_x509_certificate(self.certificate.encode())
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in identity.dns_names]
        names += [x509.IPAddress(ipaddress.ip_address(a)) for a in identity.ip_addresses]
        now = _now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.COMMON_NAME, identity.common_name),
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                    ]
                )
            )
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=validity_days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return NodeTls(_pem_cert(builder.sign(ca_key, hashes.SHA256())), _pem_key(key))

    def issue_cluster(self, spec: ClusterSpec) -> ClusterTls:
        """A new key and certificate for every node of the spec, and an etcd pair where it uses etcd."""
        days = spec.tls.cert_validity_days
        return ClusterTls(
            ca_certificate=self.certificate,
            nodes={n.name: self.issue(node_identity(spec, n), days) for n in spec.nodes},
            etcd={n.name: self.issue(identity, days) for n in spec.nodes if (identity := etcd_identity(n))},
        )


def expires_within(certificate: str, days: int) -> bool:
    """Whether a certificate ends within ``days``: then the next deployment re-issues it."""
    cert = x509.load_pem_x509_certificate(certificate.encode())
    return cert.not_valid_after_utc - _now() < datetime.timedelta(days=days)


def serial_number(certificate: str) -> int:
    return x509.load_pem_x509_certificate(certificate.encode()).serial_number
