"""Benchmarks on a live lab: what failover costs a client, and what HAProxy costs a query.

``failover`` repeats fault scenarios (lab/faults/primary.py) and summarises, per fault,
how long writes through VIP:5432 were refused, how many acknowledged writes
were lost and how long the old primary took to stream again. ``proxy`` runs
the same read-only pgbench through VIP:5432 and straight to the primary,
alternating the two (A B A B) and repeating, so the median ratio and the added
latency per round trip are the price of HAProxy (docs/one-hop.md).
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..cluster import Lab, switchover
from ..faults import SCENARIOS as PRIMARY_FAULTS
from ..faults import STANDBY_SCENARIOS as STANDBY_FAULTS
from ..faults import host_crash
from ..faults.harness import recording_timeline
from ..observation import leader, timeline, vip_holders
from ..wait import wait_until
from .control import SCENARIOS as CONTROLS

SCENARIOS = {**PRIMARY_FAULTS, **STANDBY_FAULTS, **CONTROLS}

PER_RUN_EXTRAS = (
    *("vip_moved_s", "rejoin_of", "victim", "direct_probe", "split_brain", "fault_at_utc", "errors"),
    "etcd_leader_at_fault",
    "timeline",
    "race_request",
    "race_evidence",
)
FAILOVER_FAULTS = ("1", "2", "5a", "5b", "8")
# A fault that fails this many runs has likely broken the lab: the next fault is tried.
FAILED_RUNS_BEFORE_GIVING_UP = 2
TPS_RE = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.MULTILINE)
LATENCY_RE = re.compile(r"^latency average = ([0-9.]+) ms", re.MULTILINE)


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


def summarise(fault: str, results: list[dict[str, Any]], failed: list[str] | None = None) -> dict[str, Any]:
    """One fault's runs as one JSON object; raw per-run numbers kept for the record.

    ``failed`` holds the errors of runs that ended in an exception: they count
    as runs and are reported, never dropped.
    """
    failed = failed or []
    return {
        "fault": fault,
        "scenario": results[0]["fault"] if results else None,
        "runs": len(results) + len(failed),
        "failed_runs": failed,
        "unavailability_s": _spread(r["unavailability_s"] for r in results),
        "max_gap_s": _spread(r["max_gap_s"] for r in results),
        "acked": sum(r["acked"] for r in results),
        "lost": sum(r["lost"] for r in results),
        "split_brain": any(r["split_brain"] for r in results),
        # Fault 2 usually keeps its primary (then: until it leads again); 5b: the dead VIP holder.
        "old_primary_streaming_again_s": _spread(r["rejoin_s"] for r in results),
        # Where the seconds went (lab/observation/timeline.py): each phase's median, since the fault.
        "timeline_median": timeline.medians([r["timeline"] for r in results if r.get("timeline")]),
        "per_run": [
            {
                "unavailability_s": r["unavailability_s"],
                "max_gap_s": r["max_gap_s"],
                "lost": r["lost"],
                "rejoin_s": r["rejoin_s"],
                "old_primary": r["old_primary"],
                "new_primary": r["new_primary"],
                **{k: r[k] for k in PER_RUN_EXTRAS if k in r},
            }
            for r in results
        ],
    }


def scenario_for(key: str) -> Callable[[Lab], dict[str, Any]]:
    """A scenario key, or ``6@HOST``: the crash of that Proxmox host (fault 6 picks the one-VM host)."""
    base, _, host = key.partition("@")
    if not host:
        return SCENARIOS[key]
    if base != "6":
        raise KeyError(f"{key}: only fault 6 takes a host (6@HOST)")
    return lambda lab: host_crash(lab, host)


def failover(
    lab: Lab,
    runs: int,
    faults: Iterable[str] = FAILOVER_FAULTS,
    emit: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Each fault ``runs`` times in a row; ``emit`` gets each fault's summary as soon as it is done.

    Every key is resolved first: a typo stops the bench before the first run.
    """
    scenarios = {fault: scenario_for(fault) for fault in faults}
    summaries = []
    with recording_timeline():
        for fault, run_scenario in scenarios.items():
            summary = _runs(lab, fault, run_scenario, runs)
            if emit is not None:
                emit(summary)
            summaries.append(summary)
    return summaries


def _runs(lab: Lab, fault: str, run_scenario: Callable[[Lab], dict[str, Any]], runs: int) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    failed: list[str] = []
    for _ in range(runs):
        try:
            result = run_scenario(lab)
        except Exception as exc:  # a failed run is a result too: report it, go on
            failed.append(f"{type(exc).__name__}: {exc}")
            if len(failed) >= FAILED_RUNS_BEFORE_GIVING_UP:
                break
            continue
        result.pop("patroni_logs", None)
        results.append(result)
    return summarise(fault, results, failed)


def timeline_table(summary: dict[str, Any]) -> str:
    """One fault's runs as a table: one row per run, one column per phase, then the medians."""
    rows = [r["timeline"] for r in summary["per_run"] if r.get("timeline")]
    if not rows:
        return f"fault {summary['fault']}: no timeline recorded"
    body = timeline.table([*rows, summary["timeline_median"]]).splitlines()
    body[-1] = body[-1] + "   (median)"
    return f"fault {summary['fault']} ({summary['scenario']}), seconds since the fault:\n" + "\n".join(body)


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


def _latency_ms(output: str) -> float:
    match = LATENCY_RE.search(output)
    if match is None:
        raise RuntimeError(f"no latency in pgbench output: {output[-500:]}")
    return float(match.group(1))


def _primary_settled(lab: Lab, timeout: float = 60.0) -> tuple[str, list[str]]:
    """The leader and the VIP holders once the VIP has followed it (or ``timeout`` passed)."""
    seen: list[tuple[str | None, list[str]]] = []

    def settled() -> bool:
        seen[:] = [(leader(lab), vip_holders(lab))]
        primary, holders = seen[0]
        return primary is not None and holders == [primary]

    wait_until(settled, timeout)
    primary, holders = seen[0]
    if primary is None:
        raise RuntimeError("no running leader")
    return primary, holders


def proxy_pairs(
    lab: Lab, clients: int, rounds: int, seconds: int, direct: list[str], via_vip: list[str]
) -> dict[str, Any]:
    """``rounds`` pairs run A B A B (VIP, then direct): drift in the shared machine's load
    hits both sides of a pair alike, so the per-pair ratios are comparable."""
    common = ["-S", "-n", "-T", str(seconds), "-c", str(clients), "-j", str(min(clients, 2))]
    pairs: list[dict[str, Any]] = []
    skipped = 0
    for _ in range(rounds):
        try:
            vip_out = _pgbench(lab, [*common, *via_vip])
            direct_out = _pgbench(lab, [*common, *direct])
            vip_tps, direct_tps = _tps(vip_out), _tps(direct_out)
            added_us = (_latency_ms(vip_out) - _latency_ms(direct_out)) * 1000
        except RuntimeError:
            # On a loaded machine a short run can end before any transaction: drop the pair.
            skipped += 1
            continue
        pairs.append(
            {
                "vip_tps": round(vip_tps, 1),
                "direct_tps": round(direct_tps, 1),
                "ratio": round(vip_tps / direct_tps, 3) if direct_tps else None,
                # pgbench -S: one query, one round trip per transaction.
                "added_us_per_round_trip": round(added_us, 1),
            }
        )
    ratios = [p["ratio"] for p in pairs if p["ratio"] is not None]
    return {
        "clients": clients,
        "median_ratio": round(statistics.median(ratios), 3) if ratios else None,
        "median_added_us_per_round_trip": (
            round(statistics.median(p["added_us_per_round_trip"] for p in pairs), 1) if pairs else None
        ),
        "pairs_skipped": skipped,
        "pairs": pairs,
    }


def proxy(
    lab: Lab,
    seconds: int = 10,
    clients: Sequence[int] = (1, 8),
    rounds: int = 3,
    scale: int = 10,
    primaries: Sequence[str] = (),
    emit: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Read-only pgbench through VIP:5432 (HAProxy) against straight to the primary's PostgreSQL.

    For each primary in ``primaries`` (a switchover first; default: the current
    one) and each client count, ``rounds`` interleaved pairs; the median ratio
    and the median added latency per round trip summarise them.
    """
    lab.wait_ready()
    results = []
    for wanted in primaries or [None]:
        if wanted is not None and leader(lab) != wanted:
            switchover(lab, to=wanted)
            lab.wait_ready()
        primary, holders = _primary_settled(lab)
        direct = ["-h", str(lab.spec.node(primary).ip), "-p", str(lab.spec.postgres.port)]
        via_vip = ["-h", str(lab.spec.vip), "-p", str(lab.spec.haproxy.primary_port)]
        _pgbench(lab, ["-i", "-q", "-s", str(scale), *direct])
        for count in clients:
            summary = {
                "bench": "proxy",
                "mode": "pgbench -S (select only), TLS",
                "seconds": seconds,
                "scale": scale,
                "primary": primary,
                "vip_holders": holders,
                **proxy_pairs(lab, count, rounds, seconds, direct, via_vip),
            }
            if emit is not None:
                emit(summary)
            results.append(summary)
    return results
