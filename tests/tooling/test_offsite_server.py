"""The lab's off-site S3 server before it boots: when the lab serves a bucket, what the stack is told."""

from __future__ import annotations

import copy
import dataclasses
import json

from cryptography import x509

from lab.machines import offsite
from pgha import load_spec
from pgha.stackfile import load_stack, read_stack


def test_the_offsite_stack_is_served_by_the_lab_and_dev_is_not():
    spec = load_stack("offsite")
    assert offsite.endpoint(spec) == (spec.network.cidr[250], 8443)
    node = offsite.server_node(spec)
    assert node.ip not in {n.ip for n in spec.nodes} and node.name not in {n.name for n in spec.nodes}
    assert offsite.endpoint(load_stack("dev")) is None


def test_an_endpoint_outside_the_lab_network_is_not_served():
    config, encrypted = read_stack("offsite")
    for endpoint in ("s3.example.net:443", "192.0.2.10:8443", "10.0.0.250"):
        changed = copy.deepcopy(config)
        changed["backup"]["offsite"]["endpoint"] = endpoint
        served = offsite.endpoint(load_spec(changed, "offsite", encrypted))
        assert served == (
            (load_stack("offsite").network.cidr[250], 443) if endpoint == "10.0.0.250" else None
        )


def test_the_stack_is_told_the_servers_own_ca(tmp_path):
    """Not the cluster's CA: the bucket is someone else's. Its certificate names the endpoint's address."""
    spec = load_stack("offsite")
    assert offsite.with_server_ca(spec, tmp_path) == spec  # nothing kept yet: unchanged
    offsite.save_identity(tmp_path, spec)
    kept = offsite.identity(tmp_path)
    assert kept is not None and (tmp_path / offsite.IDENTITY_FILE).stat().st_mode & 0o777 == 0o600
    told = offsite.with_server_ca(spec, tmp_path)
    assert told.backup.offsite.ca_certificate == kept.ca.certificate
    assert dataclasses.replace(told.backup.offsite, ca_certificate=None) == spec.backup.offsite
    server = x509.load_pem_x509_certificate(kept.server.certificate.encode())
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert str(spec.network.cidr[250]) in [str(a) for a in names.get_values_for_type(x509.IPAddress)]
    ca = x509.load_pem_x509_certificate(kept.ca.certificate.encode())
    assert "off-site S3 CA" in ca.subject.rfc4514_string()
    offsite.save_identity(tmp_path, spec)  # kept, not made again
    assert offsite.identity(tmp_path) == kept
    assert kept.admin_key not in json.dumps(offsite.stack_keys())
