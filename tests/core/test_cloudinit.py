"""cloud-init documents: valid YAML, per-VM identity, the NIC matched by MAC."""

from __future__ import annotations

import yaml

from pgha import cloudinit


def test_user_data(spec):
    node = spec.nodes[0]
    host_key = cloudinit.HostKey("PRIVATE host key\n", "ssh-ed25519 AAAAhost root@psql-01\n")
    text = cloudinit.user_data(spec, node, "ssh-ed25519 AAAAdeploy deploy@pulumi", host_key)
    assert text.startswith("#cloud-config\n")
    document = yaml.safe_load(text)
    assert document["hostname"] == "psql-01"
    assert document["locale"] == "C.UTF-8"
    assert document["ssh_pwauth"] is False
    (user,) = document["users"]
    assert user["name"] == "pgha"
    assert user["ssh_authorized_keys"][0] == "ssh-ed25519 AAAAdeploy deploy@pulumi"
    assert user["ssh_authorized_keys"][1:] == list(spec.ssh.authorized_keys)
    # The image's host keys are deleted, none generated: the VM offers the one Pulumi made.
    assert document["ssh_deletekeys"] is True and document["ssh_genkeytypes"] == []
    assert document["ssh_keys"] == {
        "ed25519_private": "PRIVATE host key\n",
        "ed25519_public": "ssh-ed25519 AAAAhost root@psql-01",
    }
    (installer,) = document["write_files"]
    assert installer["path"] == "/usr/local/sbin/pgha-install-files"
    assert installer["permissions"] == "0755"
    assert installer["content"].startswith("#!/usr/bin/python3")


def test_network_config(spec):
    for node in spec.nodes:
        document = yaml.safe_load(cloudinit.network_config(spec, node))
        assert document["version"] == 2
        nic = document["ethernets"]["private"]
        assert nic["match"] == {"macaddress": node.mac}
        assert nic["set-name"] == "ens18"
        assert nic["addresses"] == [f"{node.ip}/24"]
        assert nic["routes"] == [{"to": "0.0.0.0/0", "via": "10.0.0.1"}]


def test_macs_are_distinct_and_local(spec):
    macs = [n.mac for n in spec.nodes]
    assert len(set(macs)) == len(macs)
    assert all(m.startswith("bc:24:11:") for m in macs)


def test_meta_data(spec):
    document = yaml.safe_load(cloudinit.meta_data(spec, spec.nodes[1]))
    assert document == {"instance-id": "pgha-dev-psql-02", "local-hostname": "psql-02"}
