"""The verify phase on real machines: green on a serving cluster, red with the reason when it is not.

Uses the session's lab (``lab`` fixture; run it with PGHA_LAB_PREFIX set, e.g.
``PGHA_LAB_PREFIX=px- pytest tests/lab/test_verify.py``). Its ``up`` has
already run the verify phase once, as the last plan phase. Takes 1-1.5 min
on a running lab, most of it the red run waiting out the probe's deadline
(``pgha.verify.timeout_s``, 60 s for the dev stack).
"""

from __future__ import annotations

import asyncio

import pytest

from lab.cluster import Lab
from lab.machines import StepResult
from lab.observation import observe
from lab.wait import wait_until
from pgha import node_steps, verify

pytestmark = pytest.mark.lab


def run_verify(lab: Lab) -> StepResult:
    """The verify step exactly as ``up`` (and Pulumi) runs it: its command, its bundle."""
    node = verify.verify_node(lab.spec)
    (step,) = [s for s in node_steps(lab.spec, node, lab.secrets(), lab.tls()) if s.name == "verify"]
    return asyncio.run(lab.runner().run_step(lab.target(node), step))


def test_verify_is_green_when_serving_and_red_with_the_reason_without_a_vip(lab: Lab):
    healthy = run_verify(lab)
    assert healthy.ok, healthy.stderr
    assert "ok (attempt" in healthy.stderr and "one VIP holder" in healthy.stderr

    postgres = [n.name for n in lab.spec.postgres_nodes]
    for name in postgres:
        lab.exec(name, ["systemctl", "stop", "keepalived"], check=True)
    try:
        assert observe.vip_holders(lab) == []
        broken = run_verify(lab)
    finally:
        for name in postgres:
            lab.exec(name, ["systemctl", "start", "keepalived"], check=False)
    assert not broken.ok
    assert "does not serve clients" in broken.stderr
    assert f"no VM holds the VIP {lab.spec.vip}" in broken.stderr

    wait_until(lambda: len(observe.vip_holders(lab)) == 1, 60.0, error="no single VIP holder after 60 s")
    recovered = run_verify(lab)
    assert recovered.ok, recovered.stderr
