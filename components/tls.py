"""The cluster's private CA and node certificates, issued by ``pulumi_tls``.

Everything lives in the stack's state, private keys as secrets; the CA's key
never leaves it. What each certificate names comes from the core
(:func:`pgha.pki.node_identity`, :func:`pgha.pki.etcd_identity`), the same answer the lab's
locally issued certificates get.

Rotation: bumping ``pgha:tls.rotation`` replaces every private key but the CA's
(``replacement_trigger``), and with it its request and certificate; the
steps then roll the new files out.

Renewal: nothing expires as long as ``pulumi up`` runs now and then. Each
certificate's ``replacement_trigger`` is a renewal epoch computed from
today's date (:func:`renewal_epoch`): it changes every ``validity -
renew_before`` days, so a certificate lives at most that long and is
re-issued at least ``renew_before`` days before its end by a plain ``up``
(``early_renewal_hours`` alone acts only when a plan reads the time, i.e.
on a refresh). The CA certificate is re-issued the same way with the same
key and subject (the key never leaves the state), a third of its life early.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

import pulumi
import pulumi_tls

from pgha import pki
from pgha.pki import ClusterTls, NodeTls
from pgha.spec import ClusterSpec

HOURS_PER_DAY = 24


def utc_today() -> dt.date:
    """Today in UTC: the program's only clock (tests replace it)."""
    return dt.datetime.now(dt.UTC).date()


def renewal_epoch(stack: str, today: dt.date, validity_days: int, renew_before_days: int) -> int:
    """The number of the renewal period ``today`` falls in; a new number re-issues the certificate.

    Periods are ``validity_days - renew_before_days`` long, so a certificate
    issued on any day of one is replaced on the first ``up`` of the next, at
    most that many days after its issue: at least ``renew_before_days``
    before its end. The same all day (and all period) long, so two ups never
    disagree; shifted by a per-stack offset, so two stacks do not renew on
    the same day.
    """
    period = max(1, validity_days - renew_before_days)
    offset = int(hashlib.sha256(stack.encode()).hexdigest(), 16) % period
    return (today.toordinal() + offset) // period


def ca_renew_before_days(ca_validity_days: int) -> int:
    """The CA is re-issued a third of its life early: clients holding the old one have years to update."""
    return max(1, ca_validity_days // 3)


@dataclass(frozen=True)
class ClusterCertificatesArgs:
    spec: ClusterSpec


class ClusterCertificates(pulumi.ComponentResource):
    """A CA (key and self-signed certificate), a key, request and certificate per node, and
    another such trio (the etcd identity) per node that uses etcd."""

    tls: pulumi.Output[ClusterTls]
    ca_certificate: pulumi.Output[str]

    def __init__(
        self, name: str, args: ClusterCertificatesArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("pgha:index:ClusterCertificates", name, None, opts)
        spec = self._spec = args.spec
        child = pulumi.ResourceOptions(parent=self)
        today = utc_today()
        tls = spec.tls
        self.ca_epoch = renewal_epoch(
            spec.stack, today, tls.ca_validity_days, ca_renew_before_days(tls.ca_validity_days)
        )
        self.cert_epoch = renewal_epoch(spec.stack, today, tls.cert_validity_days, tls.renew_before_days)

        self.ca_key = pulumi_tls.PrivateKey(
            f"{name}-ca-key", algorithm=pki.KEY_ALGORITHM, ecdsa_curve=pki.ECDSA_CURVE, opts=child
        )
        ca_private_key = pulumi.Output.secret(self.ca_key.private_key_pem)
        self.ca = pulumi_tls.SelfSignedCert(
            f"{name}-ca",
            private_key_pem=ca_private_key,
            subject=pulumi_tls.SelfSignedCertSubjectArgs(
                common_name=pki.ca_common_name(spec), organization=pki.ORGANIZATION
            ),
            is_ca_certificate=True,
            max_path_length=0,
            set_subject_key_id=True,
            allowed_uses=list(pki.CA_USES),
            validity_period_hours=spec.tls.ca_validity_days * HOURS_PER_DAY,
            # Same key, same subject, a new validity: node certificates issued by
            # either copy verify against both.
            opts=pulumi.ResourceOptions(parent=self, replacement_trigger=f"renewal-{self.ca_epoch}"),
        )
        self.ca_certificate = self.ca.cert_pem

        self.keys: dict[str, pulumi_tls.PrivateKey] = {}
        self.certificates: dict[str, pulumi_tls.LocallySignedCert] = {}
        self.etcd_keys: dict[str, pulumi_tls.PrivateKey] = {}
        self.etcd_certificates: dict[str, pulumi_tls.LocallySignedCert] = {}
        for node in spec.nodes:
            self.keys[node.name], self.certificates[node.name] = self._pair(
                f"{node.name}-tls", pki.node_identity(spec, node), ca_private_key
            )
            etcd_identity = pki.etcd_identity(node)
            if etcd_identity is not None:
                # A key per service: only etcd and etcd's clients hold this one.
                self.etcd_keys[node.name], self.etcd_certificates[node.name] = self._pair(
                    f"{node.name}-etcd-tls", etcd_identity, ca_private_key
                )

        names = [n.name for n in spec.nodes]
        etcd_names = list(self.etcd_certificates)
        parts = pulumi.Output.all(
            self.ca.cert_pem,
            *(self.certificates[n].cert_pem for n in names),
            *(self.keys[n].private_key_pem_pkcs8 for n in names),
            *(self.etcd_certificates[n].cert_pem for n in etcd_names),
            *(self.etcd_keys[n].private_key_pem_pkcs8 for n in etcd_names),
        )
        self.tls = pulumi.Output.secret(parts.apply(lambda values: _cluster_tls(names, etcd_names, values)))
        self.register_outputs({"caCertificate": self.ca_certificate})

    def _pair(
        self, prefix: str, identity: pki.CertIdentity, ca_private_key: pulumi.Output[str]
    ) -> tuple[pulumi_tls.PrivateKey, pulumi_tls.LocallySignedCert]:
        """A key, its request and its certificate, all under the same rotation and renewal rules."""
        spec = self._spec
        key = pulumi_tls.PrivateKey(
            f"{prefix}-key",
            algorithm=pki.KEY_ALGORITHM,
            ecdsa_curve=pki.ECDSA_CURVE,
            # A new tls.rotation makes a new key, hence a new request and certificate.
            opts=pulumi.ResourceOptions(parent=self, replacement_trigger=spec.tls.rotation),
        )
        request = pulumi_tls.CertRequest(
            f"{prefix}-request",
            private_key_pem=pulumi.Output.secret(key.private_key_pem),
            subject=pulumi_tls.CertRequestSubjectArgs(
                common_name=identity.common_name, organization=pki.ORGANIZATION
            ),
            dns_names=list(identity.dns_names),
            ip_addresses=list(identity.ip_addresses),
            opts=pulumi.ResourceOptions(parent=self),
        )
        certificate = pulumi_tls.LocallySignedCert(
            f"{prefix}-cert",
            cert_request_pem=request.cert_request_pem,
            ca_private_key_pem=ca_private_key,
            ca_cert_pem=self.ca.cert_pem,
            allowed_uses=list(pki.NODE_USES),
            set_subject_key_id=True,
            validity_period_hours=spec.tls.cert_validity_days * HOURS_PER_DAY,
            early_renewal_hours=spec.tls.renew_before_days * HOURS_PER_DAY,
            # Re-issued by a plain `pulumi up` once the renewal period changes.
            opts=pulumi.ResourceOptions(parent=self, replacement_trigger=f"renewal-{self.cert_epoch}"),
        )
        return key, certificate


def _cluster_tls(names: list[str], etcd_names: list[str], values: list[str]) -> ClusterTls:
    """The resolved PEMs, in the order :class:`ClusterCertificates` gathered them."""
    ca, rest = values[0], values[1:]
    count, etcd_count = len(names), len(etcd_names)
    certificates, keys, rest = rest[:count], rest[count : 2 * count], rest[2 * count :]
    etcd_certificates, etcd_keys = rest[:etcd_count], rest[etcd_count:]
    return ClusterTls(
        ca_certificate=ca,
        nodes={n: NodeTls(c, k) for n, c, k in zip(names, certificates, keys, strict=True)},
        etcd={n: NodeTls(c, k) for n, c, k in zip(etcd_names, etcd_certificates, etcd_keys, strict=True)},
    )
