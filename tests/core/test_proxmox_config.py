"""The Proxmox-facing keys: a pinned image, the VXLAN MTU, the jump host's key, MACs per stack."""

from __future__ import annotations

from typing import Any

import pytest

from pgha import ConfigError, load_spec
from pgha.spec import DEBIAN_13_CLOUD_IMAGE, DEBIAN_13_CLOUD_IMAGE_SHA512
from pgha.stackfile import load_stack, read_config

DATED = (
    "https://cloud.debian.org/images/cloud/trixie/20991231-0000/"
    "debian-13-genericcloud-amd64-20991231-0000.qcow2"
)
JUMP_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
)


def problems(config: dict[str, Any], stack: str = "dev") -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_spec(config, stack)
    return caught.value.problems


def test_the_default_image_is_a_dated_build_with_its_sha512(spec):
    assert spec.vm.image_url == DEBIAN_13_CLOUD_IMAGE
    assert "/latest/" not in DEBIAN_13_CLOUD_IMAGE and "/20250814-2204/" in DEBIAN_13_CLOUD_IMAGE
    assert (spec.vm.image_checksum, spec.vm.image_checksum_algorithm) == (
        DEBIAN_13_CLOUD_IMAGE_SHA512,
        "sha512",
    )
    assert len(DEBIAN_13_CLOUD_IMAGE_SHA512) == 128
    # The dev stack spells the pin out; it must be the same build, not a second truth.
    pinned = read_config("dev")["vm"]
    assert pinned == {"imageUrl": DEBIAN_13_CLOUD_IMAGE, "imageChecksum": DEBIAN_13_CLOUD_IMAGE_SHA512}


@pytest.mark.parametrize("given", ["imageUrl", "imageChecksum"])
def test_image_url_and_checksum_go_together(dev_config, given):
    dev_config["vm"] = {"imageUrl": DATED} if given == "imageUrl" else {"imageChecksum": "ab" * 64}
    missing = {"imageUrl": "imageChecksum", "imageChecksum": "imageUrl"}[given]
    found = problems(dev_config)
    assert any(p.startswith(f"pgha:vm.{missing}: is required together") for p in found), found
    dev_config["vm"] = {"imageUrl": DATED, "imageChecksum": "ab" * 64}
    assert load_spec(dev_config, "dev").vm.image_url == DATED


@pytest.mark.parametrize(
    ("vm", "fragment"),
    [
        (
            {
                "imageUrl": "https://cloud.debian.org/images/cloud/trixie/latest/x.qcow2",
                "imageChecksum": "ab" * 64,
            },
            "pgha:vm.imageUrl: 'https://cloud.debian.org/images/cloud/trixie/latest/x.qcow2' changes under",
        ),
        (
            {"imageUrl": "file:///etc/passwd", "imageChecksum": "ab" * 64},
            "pgha:vm.imageUrl: 'file:///etc/passwd'",
        ),
        ({"imageUrl": DATED + "; reboot", "imageChecksum": "ab" * 64}, "is not an http(s) URL"),
        ({"imageUrl": DATED, "imageChecksum": "ab" * 32}, "pgha:vm.imageChecksum: '" + "ab" * 32),
        (
            {"imageUrl": DATED, "imageChecksum": "AB" * 64},
            "is not a sha512 checksum (128 lowercase hex digits)",
        ),
        (
            {"imageUrl": DATED, "imageChecksum": "ab" * 64, "imageChecksumAlgorithm": "md5"},
            "pgha:vm.imageChecksumAlgorithm: 'md5' is not one of 'sha256', 'sha512'",
        ),
    ],
)
def test_a_bad_image_is_refused_with_its_key(dev_config, vm, fragment):
    dev_config["vm"] = vm
    found = problems(dev_config)
    assert any(fragment in p for p in found), found


def test_vxlan_defaults_the_mtu_to_1450_and_a_bridge_keeps_its_own():
    assert load_stack("vxlan").network.mtu == 1450
    assert load_stack("dev").network.mtu is None


@pytest.mark.parametrize(
    ("stack", "mtu", "ok"),
    [
        ("vxlan", 8950, True),
        ("vxlan", 1500, True),
        ("vxlan", 8951, False),
        ("dev", 9000, True),
        ("dev", 576, False),
    ],
)
def test_network_mtu_is_checked(stack, mtu, ok):
    config = read_config(stack)
    config["network"] = {**config["network"], "mtu": mtu}
    if ok:
        assert load_spec(config, stack).network.mtu == mtu
    else:
        assert any(p.startswith(f"pgha:network.mtu: {mtu} is outside") for p in problems(config, stack))


def test_a_jump_host_key_is_validated_without_being_echoed(dev_config):
    dev_config["ssh"] = {
        **dev_config["ssh"],
        "jumpHost": {"host": "bastion", "user": "ops", "privateKey": JUMP_KEY},
    }
    jump = load_spec(dev_config, "dev").ssh.jump_host
    assert jump is not None and jump.private_key == JUMP_KEY
    assert JUMP_KEY not in repr(jump)  # a spec printed in a traceback keeps it hidden
    dev_config["ssh"]["jumpHost"]["privateKey"] = "hunter2-not-a-key"
    found = problems(dev_config)
    assert any(p.startswith("pgha:ssh.jumpHost.privateKey: is not a PEM/OpenSSH private key") for p in found)
    assert not any("hunter2" in p for p in found)


def test_two_stacks_with_the_same_vm_names_get_different_macs(dev_config):
    dev = load_spec(dev_config, "dev")
    prod = load_spec(dev_config, "prod")
    assert [n.name for n in dev.nodes] == [n.name for n in prod.nodes]
    assert {n.mac for n in dev.nodes}.isdisjoint({n.mac for n in prod.nodes})
    assert load_spec(dev_config, "dev").nodes[0].mac == dev.nodes[0].mac  # stable
    assert all(n.mac.startswith("bc:24:11:") for n in dev.nodes)
