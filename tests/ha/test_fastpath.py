"""pgha:fastPath on a live lab: VIP:5432 reaches the primary past HAProxy, follows it, and fails closed.

Which path a connection took is told by PostgreSQL itself: through HAProxy its
client is the VIP holder's own address (HAProxy dials the local PostgreSQL),
through the kernel's DNAT it is the lab client's address.
"""

from __future__ import annotations

import pytest

from lab import faults
from lab.cluster import Lab
from lab.observation import connect, leader, vip_holders
from lab.wait import wait_until
from pgha import fastpath
from tests.helpers import check_result

pytestmark = pytest.mark.lab


@pytest.fixture
def fast_lab(witness_lab: Lab) -> Lab:
    """The witness stack's lab (qdevice by default), which turns pgha:fastPath on."""
    if witness_lab.spec.fast_path is None:
        pytest.skip(f"stack {witness_lab.stack} does not set pgha:fastPath")
    witness_lab.wait_ready()
    # One hop: the VIP is on the primary, where the rule is.
    wait_until(lambda: vip_holders(witness_lab) == [leader(witness_lab)], 30, error="the VIP on the primary")
    return witness_lab


def forwarding(lab: Lab, node: str) -> bool:
    """Whether ``node`` has the fast path's DNAT rule loaded."""
    result = lab.exec(
        node, ["nft", "list", "table", "ip", fastpath.TABLE], capture_output=True, text=True, check=False
    )
    return result.returncode == 0 and "dnat to" in result.stdout


def forwarding_nodes(lab: Lab) -> list[str]:
    return [n.name for n in lab.spec.postgres_nodes if forwarding(lab, n.name)]


def client_seen_by_postgres(lab: Lab) -> str:
    with connect(lab, lab.spec.haproxy.primary_port) as conn:
        row = conn.execute("select host(inet_client_addr())").fetchone()
    assert row is not None
    return str(row[0])


def test_vip_clients_reach_the_primary_past_haproxy(fast_lab: Lab) -> None:
    primary = leader(fast_lab)
    assert wait_until(lambda: forwarding_nodes(fast_lab) == [primary], 10), forwarding_nodes(fast_lab)
    assert client_seen_by_postgres(fast_lab) == str(fast_lab.bridge_ip())


def test_the_rule_follows_a_switchover_and_no_write_is_lost(fast_lab: Lab) -> None:
    result = faults.planned_switchover(fast_lab)
    check_result(fast_lab, result, failover=True)
    new = result["new_primary"]
    assert wait_until(lambda: forwarding_nodes(fast_lab) == [new], 10), forwarding_nodes(fast_lab)
    wait_until(lambda: vip_holders(fast_lab) == [new], 30, error="the VIP to follow the primary")
    assert client_seen_by_postgres(fast_lab) == str(fast_lab.bridge_ip())


def test_a_stopped_agent_leaves_the_vip_to_haproxy(fast_lab: Lab) -> None:
    primary = leader(fast_lab)
    assert primary is not None
    primary_ip = str(fast_lab.spec.node(primary).ip)
    fast_lab.exec(primary, ["systemctl", "stop", fastpath.UNIT_NAME], check=True)
    try:
        assert not forwarding(fast_lab, primary)
        assert client_seen_by_postgres(fast_lab) == primary_ip  # HAProxy's connection
    finally:
        fast_lab.exec(primary, ["systemctl", "start", fastpath.UNIT_NAME], check=True)
    assert wait_until(lambda: forwarding(fast_lab, primary), 10)
    assert client_seen_by_postgres(fast_lab) == str(fast_lab.bridge_ip())
