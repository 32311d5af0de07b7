"""The cluster's private CA and node certificates, issued by ``pulumi_tls``.

Everything lives in the stack's state, private keys as secrets; the CA's key
never leaves it. What each certificate names comes from the core
(:func:`pgha.pki.node_identity`), the same answer the lab's
locally issued certificates get.

Rotation: bumping ``pgha:tls.rotation`` replaces every node's private key
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
    """A CA (key and self-signed certificate), and a key, request and certificate per node."""

    tls: pulumi.Output[ClusterTls]
    ca_certificate: pulumi.Output[str]

    def __init__(
        self, name: str, args: ClusterCertificatesArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("pgha:index:ClusterCertificates", name, None, opts)
        spec = args.spec
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
        for node in spec.nodes:
            identity = pki.node_identity(spec, node)
            key = pulumi_tls.PrivateKey(
                f"{node.name}-tls-key",
                algorithm=pki.KEY_ALGORITHM,
                ecdsa_curve=pki.ECDSA_CURVE,
                # A new tls.rotation makes a new key, hence a new request and certificate.
                opts=pulumi.ResourceOptions(parent=self, replacement_trigger=spec.tls.rotation),
            )
            request = pulumi_tls.CertRequest(
                f"{node.name}-tls-request",
                private_key_pem=pulumi.Output.secret(key.private_key_pem),
                subject=pulumi_tls.CertRequestSubjectArgs(
                    common_name=identity.common_name, organization=pki.ORGANIZATION
                ),
                dns_names=list(identity.dns_names),
                ip_addresses=list(identity.ip_addresses),
                opts=child,
            )
            self.keys[node.name] = key
            self.certificates[node.name] = pulumi_tls.LocallySignedCert(
                f"{node.name}-tls-cert",
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

        names = [n.name for n in spec.nodes]
        parts = pulumi.Output.all(
            self.ca.cert_pem,
            *(self.certificates[n].cert_pem for n in names),
            *(self.keys[n].private_key_pem_pkcs8 for n in names),
        )
        self.tls = pulumi.Output.secret(parts.apply(lambda values: _cluster_tls(names, values)))
        self.register_outputs({"caCertificate": self.ca_certificate})


def _cluster_tls(names: list[str], values: list[str]) -> ClusterTls:
    """The resolved PEMs, in the order :class:`ClusterCertificates` gathered them."""
    ca, rest = values[0], values[1:]
    certificates, keys = rest[: len(names)], rest[len(names) :]
    return ClusterTls(
        ca_certificate=ca,
        nodes={n: NodeTls(c, k) for n, c, k in zip(names, certificates, keys, strict=True)},
    )
