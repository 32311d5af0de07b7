"""How fast the VIP follows the primary (one hop, docs/one-hop.md).

Runs a fault scenario of lab/faults/primary.py in a thread while this one samples,
every ``interval`` seconds, who leads (Patroni's /cluster) and who holds the
VIP. From the samples: when the leader changed, when the VIP was on the new
leader, and the lag between the two. The scenario itself still measures what
a client sees (writes refused through VIP:5432), which is the figure the
failover table keeps.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from pgha import keepalived

from ..cluster import Lab
from ..faults import SCENARIOS
from ..observation import leader, vip_holders


def _sample(lab: Lab) -> tuple[str | None, list[str]]:
    try:
        return leader(lab), vip_holders(lab)
    except (OSError, RuntimeError, ValueError):
        return None, []


def follow(lab: Lab, fault: str, interval: float = 0.25) -> dict[str, Any]:
    """One run of scenario ``fault`` with the leader and the VIP holder sampled alongside."""
    lab.wait_ready()
    start = time.monotonic()
    samples: list[tuple[float, str | None, list[str]]] = []
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = SCENARIOS[fault](lab)
        except Exception as error:  # reported below, with the samples
            outcome["error"] = repr(error)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    while worker.is_alive():
        now = time.monotonic() - start
        samples.append((now, *_sample(lab)))
        time.sleep(interval)
    if "error" in outcome:
        raise RuntimeError(f"scenario {fault} failed: {outcome['error']}")
    result = outcome["result"]
    result.pop("patroni_logs", None)
    old, new = result["old_primary"], result["new_primary"]
    changed = next((t for t, lead, _ in samples if lead is not None and lead != old), None)
    on_new = next(
        (t for t, lead, holders in samples if changed is not None and t >= changed and holders == [new]),
        None,
    )
    return {
        "fault": fault,
        "scenario": result["fault"],
        "old_primary": old,
        "new_primary": new,
        "unavailability_s": result["unavailability_s"],
        "lost": result["lost"],
        "split_brain": result["split_brain"],
        # Seconds from the first sample showing the new leader to the first
        # showing the VIP on it (0: already there when the leader was seen).
        "vip_after_leader_s": None if on_new is None or changed is None else round(on_new - changed, 2),
        "sample_interval_s": interval,
    }


def set_primary_weight(lab: Lab, weight: int) -> None:
    """Rewrite keepalived.conf on every PostgreSQL machine for ``weight`` and reload keepalived.

    For A/B measurements only: the files come from the core renderer with the
    stack's spec changed in this one field; ``lab up`` puts the stack's own back.
    """
    spec = replace(lab.spec, keepalived=replace(lab.spec.keepalived, primary_weight=weight))
    for node in spec.postgres_nodes:
        config = next(f for f in keepalived.files(spec, node) if f.path == keepalived.CONFIG_PATH)
        lab.exec(
            node.name, ["tee", config.path], input=config.content, text=True, capture_output=True, check=True
        )
        lab.exec(node.name, ["systemctl", "reload", "keepalived"], check=True)


def ab_switchover(lab: Lab, runs: int, weights: tuple[int, int] = (0, 50)) -> list[dict[str, Any]]:
    """Planned switchovers alternating the two weights (A B A B ...): the client-side cost of one hop."""
    results = []
    try:
        for _ in range(runs):
            for weight in weights:
                set_primary_weight(lab, weight)
                time.sleep(3)  # keepalived re-reads its scripts' states
                result = follow(lab, "8")
                result["primary_weight"] = weight
                results.append(result)
    finally:
        set_primary_weight(lab, lab.spec.keepalived.primary_weight)
    return results


def without_one_hop(lab: Lab, measure: Callable[[Lab], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """``measure`` with keepalived.primaryWeight 0 on the machines and in ``lab.spec``.

    With one hop (the default) the VIP holder is the primary, so the loss of a
    VIP holder that is *not* the primary (the goal of a VIP-only move in seconds) exists only
    with the weight at 0; fault 5b then moves the primary off the holder first.
    The stack's own weight is put back whatever happens.
    """
    own = lab.spec
    set_primary_weight(lab, 0)
    lab.spec = replace(own, keepalived=replace(own.keepalived, primary_weight=0))
    try:
        return measure(lab)
    finally:
        lab.spec = own
        set_primary_weight(lab, own.keepalived.primary_weight)
