"""Planned maintenance of the host that carries etcd's majority, without a witness.

start (primary on that host first, so it must be switched over) → the host
crashes, standing in for its reboot, and stays down past Patroni's ttl →
it boots → finish. The client's ledger judges the whole cycle.
"""

from __future__ import annotations

import json

import pytest

from lab.cluster import Lab
from lab.faults import READY_TIMEOUT
from lab.observation import leader, members
from lab.scenarios import hostmaint
from pgha import etcd
from tests.ha.limits import limit
from tests.helpers import check_result

pytestmark = pytest.mark.lab


def test_refused_when_a_replica_is_down(lab: Lab) -> None:
    """Unsafe: nothing changes, and the reason names the member."""
    lab.wait_ready(timeout=READY_TIMEOUT)
    replica = next(n for n in lab.spec.postgres_nodes if n.name != leader(lab))
    machine = lab.machine(replica)
    machine.kill()
    try:
        result = hostmaint.run_tool(lab, "pve1", "start", check=False)
    finally:
        machine.start()
    print(json.dumps({"refused": result.returncode, "stderr": result.stderr.strip()[-400:]}))
    assert result.returncode == 1, result.stderr
    assert "REFUSED" in result.stderr and replica.name in result.stderr, result.stderr
    lab.wait_ready(timeout=READY_TIMEOUT)
    status = json.loads(hostmaint.run_tool(lab, "pve1", "status").stdout)
    assert status["maintenance"] == {}, status  # nothing was changed


def test_majority_host_reboot_cycle(lab: Lab) -> None:
    host = "pve1"
    result = hostmaint.maintenance_cycle(lab, host)
    print(json.dumps({k: v for k, v in result.items() if k != "patroni_logs"}))
    check_result(lab, result, failover=False)
    message = json.dumps({k: v for k, v in result.items() if k != "patroni_logs"})
    assert result["unavailability_s"] <= limit(result["fault"]), message
    assert result["acks_while_down"] > 0, message  # writes went on while the host was down
    # During maintenance only the other host's member voted; afterwards all three again.
    assert result["voters_during"] == ["psql-02"], message
    assert result["voters_after"] == sorted(m.name for m in etcd.members(lab.spec)), message
    assert "nothing to do" in result["finish_again"], message  # finish is safe twice
    view = members(lab)
    assert not any((m.get("tags") or {}).get("nofailover") for m in view.values()), view
