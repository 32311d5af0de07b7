"""One hop (docs/one-hop.md): the VIP follows the primary, so its HAProxy forwards locally.

PostgreSQL sees the address of whoever connects to it: when the HAProxy in
front of it runs on the primary's own VM, that is the primary's own IP. A
second VM's HAProxy would show up as that VM's IP. This holds before and
after a switchover (about 40 s on the shared machine, with the switchover).
"""

from __future__ import annotations

import time

import pytest

from lab.cluster import Lab, switchover
from lab.faults import READY_TIMEOUT
from lab.observation import connect, observe
from lab.wait import wait_until

pytestmark = pytest.mark.lab

VIP_FOLLOW_TIMEOUT = 30.0  # measured 3-5 s after the new leader shows (docs/one-hop.md)


def vip_on_leader(lab: Lab, timeout: float = VIP_FOLLOW_TIMEOUT) -> str:
    seen: list[tuple[str | None, list[str]]] = []

    def follows() -> str | None:
        seen[:] = [(observe.leader(lab), observe.vip_holders(lab))]
        primary, holders = seen[0]
        return primary if primary is not None and holders == [primary] else None

    return wait_until(follows, timeout, error=lambda _: f"VIP on {seen[0][1]}, leader {seen[0][0]}")


def addresses_seen_by_postgres(lab: Lab) -> tuple[str, str]:
    with connect(lab, lab.spec.haproxy.primary_port, timeout=5) as conn:
        server, client = conn.execute("select inet_server_addr(), inet_client_addr()").fetchone()
    return str(server), str(client)


def test_the_vip_holder_is_the_primary_and_forwards_locally(lab: Lab) -> None:
    lab.wait_ready(timeout=READY_TIMEOUT)
    primary = vip_on_leader(lab)
    ip = str(lab.spec.node(primary).ip)
    assert addresses_seen_by_postgres(lab) == (ip, ip)


def test_the_vip_follows_a_switchover(lab: Lab) -> None:
    lab.wait_ready(timeout=READY_TIMEOUT)
    old = vip_on_leader(lab)
    new = switchover(lab)
    assert new != old
    started = time.monotonic()
    assert vip_on_leader(lab) == new
    print(f"\nVIP on the new primary {new} {time.monotonic() - started:.1f} s after Patroni reported it")
    ip = str(lab.spec.node(new).ip)
    assert addresses_seen_by_postgres(lab) == (ip, ip)
    lab.wait_ready(timeout=READY_TIMEOUT)
