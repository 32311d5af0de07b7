"""``lab bench pooler``: many clients through PgBouncer (VIP:6432) against direct (VIP:5432).

Each run is one pgbench (``-S`` select only, or ``-N`` simple update) with the
same client count, through the pooler and then direct. Alongside, a sampler
counts the primary's client backends in ``pg_stat_activity`` once a second:
with the pooler they stay near ``pooler.defaultPoolSize``; direct, every
client is a backend, and past ``max_connections`` pgbench cannot connect at
all. A run that fails is reported with its error, never dropped
(docs/pooler.md).
"""

from __future__ import annotations

import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..cluster import Lab
from ..observation import leader
from .apps import local_sql
from .bench import LATENCY_RE, TPS_RE

MODES = {"-S": "select only", "-N": "simple update (no branch/teller updates)"}
# Every client backend, and those of the lab's client role (pgbench's login).
BACKENDS_SQL = (
    "SELECT count(*), count(*) FILTER (WHERE usename = 'app')"
    " FROM pg_stat_activity WHERE backend_type = 'client backend'"
)


class BackendSampler:
    """Counts the primary's client backends every ``interval`` seconds while a run lasts."""

    def __init__(self, lab: Lab, node: str, interval: float = 1.0) -> None:
        self.lab, self.node, self.interval = lab, node, interval
        self.samples: list[tuple[int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                total, app = local_sql(self.lab, self.node, BACKENDS_SQL).split("|")
                self.samples.append((int(total), int(app)))
            except (subprocess.SubprocessError, ValueError):
                pass
            self._stop.wait(self.interval)

    def __enter__(self) -> BackendSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def summary(self) -> dict[str, Any]:
        if not self.samples:
            return {"samples": 0}
        totals, apps = [t for t, _ in self.samples], [a for _, a in self.samples]
        return {
            "samples": len(self.samples),
            "client_backends_max": max(totals),
            "client_backends_median": statistics.median(totals),
            "app_backends_max": max(apps),
        }


def one_run(
    lab: Lab, primary: str, target: list[str], mode: str, clients: int, seconds: int
) -> dict[str, Any]:
    """One pgbench run against ``target`` with the primary's backends sampled; failure kept, not raised."""
    argv = ["pgbench", mode, "-n", "-T", str(seconds), "-c", str(clients), "-j", "2", *target]
    with BackendSampler(lab, primary) as sampler:
        started = time.monotonic()
        result = lab.run(argv, capture_output=True, text=True, timeout=seconds + 600)
        elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    tps, latency = TPS_RE.search(output), LATENCY_RE.search(output)
    errors = sorted({line.strip() for line in output.splitlines() if "error" in line.lower()})
    return {
        "ok": result.returncode == 0,
        "exit": result.returncode,
        "tps": float(tps.group(1)) if tps else None,
        "latency_ms": float(latency.group(1)) if latency else None,
        "elapsed_s": round(elapsed, 1),
        **sampler.summary(),
        **({"errors": errors[:5]} if result.returncode != 0 or errors else {}),
    }


def pooler(
    lab: Lab,
    clients: int = 200,
    seconds: int = 30,
    rounds: int = 1,
    scale: int = 10,
    modes: Sequence[str] = tuple(MODES),
    emit: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Per mode and round: pooler (VIP:6432) then direct (VIP:5432), ``clients`` each, TLS verified."""
    if lab.spec.pooler is None:
        raise RuntimeError(f"stack {lab.stack} has no pgha:pooler")
    lab.wait_ready()
    primary = leader(lab)
    if primary is None:
        raise RuntimeError("no running leader")
    vip = str(lab.spec.vip)
    targets = {
        "pooler": ["-h", vip, "-p", str(lab.spec.pooler.port)],
        "direct": ["-h", vip, "-p", str(lab.spec.haproxy.primary_port)],
    }
    init = lab.run(
        ["pgbench", "-i", "-q", "-s", str(scale), *targets["direct"]],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if init.returncode != 0:
        raise RuntimeError(f"pgbench -i failed: {init.stderr.strip()[-800:]}")
    max_connections = int(local_sql(lab, primary, "SHOW max_connections"))
    results = []
    for _ in range(rounds):
        for mode in modes:
            for path, target in targets.items():
                summary = {
                    "bench": "pooler",
                    "path": path,
                    "mode": f"pgbench {mode} ({MODES[mode]}), TLS verify-full",
                    "clients": clients,
                    "seconds": seconds,
                    "scale": scale,
                    "primary": primary,
                    "max_connections": max_connections,
                    "default_pool_size": lab.spec.pooler.default_pool_size,
                    **one_run(lab, primary, target, mode, clients, seconds),
                }
                if emit is not None:
                    emit(summary)
                results.append(summary)
    return results
