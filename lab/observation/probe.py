"""Split brain probed on every node's PostgreSQL itself, not through the VIP.

The writer only sees the server HAProxy sends it to, so a stale primary that
HAProxy no longer routes to could take writes unseen. The probe goes around
HAProxy: once a second it runs psql inside each machine (``lab exec``, which
works through partitions and freezes) on PostgreSQL's Unix socket, asks
whether the server is in recovery and tries one insert. The verdict: once any
other node has been seen promoted, no insert *started* on the old primary may
be acknowledged. An attempt is killed after a few seconds (``timeout`` sends
SIGTERM, so psql never sends a cancel, which PostgreSQL would answer with a
success for a commit that waited on its synchronous standby).
"""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any

from pgha.patroni import SOCKET_DIR

from ..machines import LabAccess

ATTEMPT_S = 3  # psql is killed after this: no answer, no acknowledgement
INTERVAL_S = 1.0


@dataclass(frozen=True)
class Probe:
    node: str
    started: float  # client monotonic time
    ended: float
    in_recovery: bool | None  # None: no answer
    acked: bool  # the insert was committed and acknowledged


# Two statements: what the server is, then one insert (refused on a replica).
# psql quotes the node's name itself (:'node', from -v).
SCRIPT = """select pg_is_in_recovery();
insert into ha_probe (node, at) values (:'node', now()) returning 'acked';
"""


class DirectProbe:
    """One thread per database node, probing until stop()."""

    def __init__(self, lab: LabAccess, old_primary: str, interval: float = INTERVAL_S) -> None:
        self.lab = lab
        self.old_primary = old_primary
        self.interval = interval
        # The writer's database, where it created ha_probe (lab/observation/workload.py): in
        # any other the insert fails on every node and the probe could never go red.
        self.database = lab.client_login()["dbname"]
        self.probes: list[Probe] = []
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.threads = [
            threading.Thread(target=self._loop, args=(n.name,), name=f"pgha-probe-{n.name}", daemon=True)
            for n in lab.spec.postgres_nodes
        ]

    def start(self) -> DirectProbe:
        for thread in self.threads:
            thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(ATTEMPT_S + 10)
        return self.verdict()

    def _loop(self, node: str) -> None:
        while not self.stop_event.is_set():
            probe = self.once(node)
            with self.lock:
                self.probes.append(probe)
            self.stop_event.wait(self.interval)

    def once(self, node: str) -> Probe:
        argv = [
            "timeout", "-k", "1", str(ATTEMPT_S),
            "runuser", "-u", "postgres", "--",
            "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
            "-h", SOCKET_DIR, "-p", str(self.lab.spec.postgres.port), "-d", self.database,
            "-v", f"node={node}", "-f", "-",
        ]  # fmt: skip
        started = time.monotonic()
        try:
            result = self.lab.exec(
                node, argv, input=SCRIPT, capture_output=True, text=True, timeout=ATTEMPT_S + 5
            )
            lines = result.stdout.split()
        except (RuntimeError, subprocess.SubprocessError):  # machine down, or exec hung
            lines, result = [], None
        ended = time.monotonic()
        recovery = {"t": True, "f": False}.get(lines[0]) if lines else None
        acked = result is not None and result.returncode == 0 and "acked" in lines
        return Probe(node, started, ended, recovery, acked)

    def verdict(self) -> dict[str, Any]:
        """Acknowledged inserts on the old primary that began after another node was seen promoted."""
        with self.lock:
            probes = list(self.probes)
        return judge(probes, self.old_primary, [n.name for n in self.lab.spec.postgres_nodes])


def judge(probes: list[Probe], old_primary: str, nodes: list[str]) -> dict[str, Any]:
    """The verdict on a list of probes (pure, so a negative control can feed it a split brain)."""
    probes = sorted(probes, key=lambda p: p.started)
    promoted = [p.ended for p in probes if p.node != old_primary and p.in_recovery is False]
    promoted_at = min(promoted, default=None)
    late = [
        p
        for p in probes
        if p.node == old_primary and p.acked and promoted_at is not None and p.started > promoted_at
    ]
    return {
        "probes": len(probes),
        "answered": sum(1 for p in probes if p.in_recovery is not None),
        "acked_by_node": {n: sum(1 for p in probes if p.node == n and p.acked) for n in nodes},
        "other_node_promoted": promoted_at is not None,
        "old_primary_acks_after_promotion": len(late),
    }
