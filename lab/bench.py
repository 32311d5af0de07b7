"""Benchmarks on a live lab: what failover costs a client, and what HAProxy costs a query.

``failover`` repeats fault scenarios (lab/faults.py) and summarises, per fault,
how long writes through VIP:5432 were refused, how many acknowledged writes
were lost and how long the old primary took to stream again. ``proxy`` runs
the same read-only pgbench through VIP:5432 and straight to the primary, so the
ratio is the price of the extra hop.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable, Iterable
from typing import Any

from .cluster import Lab
from .faults import SCENARIOS
from .observe import leader

FAILOVER_FAULTS = ("1", "2", "5a", "5b", "8")
TPS_RE = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.MULTILINE)


def _spread(values: Iterable[float | None]) -> dict[str, float] | None:
    """min/median/max of the measured values (None when nothing was measured)."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    return {
        "min": round(min(present), 2),
        "median": round(statistics.median(present), 2),
        "max": round(max(present), 2),
    }


def summarise(fault: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    """One fault's runs as one JSON object; raw per-run numbers kept for the record."""
    return {
        "fault": fault,
        "scenario": results[0]["fault"] if results else None,
        "runs": len(results),
        "unavailability_s": _spread(r["unavailability_s"] for r in results),
        "acked": sum(r["acked"] for r in results),
        "lost": sum(r["lost"] for r in results),
        "split_brain": any(r["split_brain"] for r in results),
        # Fault 2 usually keeps its primary (then: until it leads again); 5b: the dead VIP holder.
        "old_primary_streaming_again_s": _spread(r["rejoin_s"] for r in results),
        "per_run": [
            {
                "unavailability_s": r["unavailability_s"],
                "lost": r["lost"],
                "rejoin_s": r["rejoin_s"],
                "old_primary": r["old_primary"],
                "new_primary": r["new_primary"],
                **{k: r[k] for k in ("vip_moved_s", "rejoin_of") if k in r},
            }
            for r in results
        ],
    }


def failover(
    lab: Lab,
    runs: int,
    faults: Iterable[str] = FAILOVER_FAULTS,
    emit: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Each fault ``runs`` times in a row; ``emit`` gets each fault's summary as soon as it is done."""
    summaries = []
    for fault in faults:
        results = []
        for _ in range(runs):
            result = SCENARIOS[fault](lab)
            result.pop("patroni_logs", None)
            results.append(result)
        summary = summarise(fault, results)
        if emit is not None:
            emit(summary)
        summaries.append(summary)
    return summaries


def _pgbench(lab: Lab, args: list[str]) -> str:
    result = lab.run(["pgbench", *args], capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"pgbench {' '.join(args)} failed: {result.stderr.strip()[-800:]}")
    return result.stdout + result.stderr


def _tps(output: str) -> float:
    match = TPS_RE.search(output)
    if match is None:
        raise RuntimeError(f"no tps in pgbench output: {output[-500:]}")
    return float(match.group(1))


def proxy(lab: Lab, seconds: int = 20, clients: int = 8, scale: int = 10) -> dict[str, Any]:
    """Read-only pgbench through VIP:5432 (HAProxy) and directly to the primary's PostgreSQL."""
    lab.wait_ready()
    primary = leader(lab)
    if primary is None:
        raise RuntimeError("no running leader")
    primary_ip = str(lab.spec.node(primary).ip)
    direct = ["-h", primary_ip, "-p", str(lab.spec.postgres.port)]
    via_vip = ["-h", str(lab.spec.vip), "-p", str(lab.spec.haproxy.primary_port)]
    _pgbench(lab, ["-i", "-q", "-s", str(scale), *direct])
    common = ["-S", "-n", "-T", str(seconds), "-c", str(clients), "-j", str(min(clients, 2))]
    vip_tps = _tps(_pgbench(lab, [*common, *via_vip]))
    direct_tps = _tps(_pgbench(lab, [*common, *direct]))
    return {
        "bench": "proxy",
        "mode": "pgbench -S (select only)",
        "seconds": seconds,
        "clients": clients,
        "scale": scale,
        "primary": primary,
        "vip_5432_tps": round(vip_tps, 1),
        "direct_5442_tps": round(direct_tps, 1),
        "vip_to_direct_ratio": round(vip_tps / direct_tps, 3) if direct_tps else None,
    }
