"""(7) With an etcd witness outside the two VM hosts, losing either VM host is survived.

The default stack, ``qdevice``, has the witness on an existing machine
(``witness.external``): no VM of ours, prepared by its owner, etcd and a
firewall installed by the steps. PGHA_WITNESS_STACK=witness runs the same
tests with the witness as a VM on a third Proxmox host.
"""

from __future__ import annotations

import socket

import pytest

from lab import faults
from lab.cluster import Lab
from lab.machines import inside
from pgha import etcd
from tests.ha.limits import limit
from tests.helpers import check_result

pytestmark = pytest.mark.lab


def _witness(lab: Lab):
    return next(n for n in lab.spec.nodes if n.role == "witness")


def _reachable_from_lab_bridge(lab: Lab, ip: str, port: int) -> bool:
    """A TCP connection from the lab's bridge address: a machine that is no cluster member."""
    with inside(lab.network.path), socket.socket() as sock:
        sock.settimeout(2)
        try:
            sock.connect((ip, port))
            return True
        except OSError:
            return False


def test_only_members_reach_the_witness_etcd(witness_lab: Lab) -> None:
    witness = _witness(witness_lab)
    if not witness.external:
        pytest.skip("a VM witness is isolated by its VM network, not by pgha's firewall")
    for port in (witness_lab.spec.etcd.client_port, witness_lab.spec.etcd.peer_port):
        assert not _reachable_from_lab_bridge(witness_lab, str(witness.ip), port), port
    # A member reaches it (with its certificate), and the witness votes.
    via = "psql-01"
    own = etcd.etcdctl_flags(witness_lab.spec, witness_lab.spec.node(via))
    flags = [f for f in own if not f.startswith("--endpoints=")]
    url = etcd.client_url(witness_lab.spec, witness)
    result = witness_lab.exec(
        via, ["etcdctl", *flags, f"--endpoints={url}", "endpoint", "health"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    # SSH, the owner's business, is left alone.
    assert _reachable_from_lab_bridge(witness_lab, str(witness.ip), witness_lab.spec.ssh.port)


@pytest.mark.parametrize("host", ["pve1", "pve2"])
def test_either_host_loss_is_survived(witness_lab: Lab, host: str) -> None:
    """The primary is put on the crashing host first, so each loss forces a failover."""
    result = faults.host_crash(witness_lab, host)
    check_result(witness_lab, result, failover=True)
    assert result["unavailability_s"] <= limit("host_crash_with_witness"), result  # tests/ha/limits.py
