"""The measurement harness: a client workload across a change, judged by what clients saw.

``scenario`` starts from a healthy lab, runs a ``Writer`` (VIP:5432) and a
``Reader`` (VIP:5433) in steady state, lets the caller inject a fault or an
operation, waits for the lab to be healthy again and stops the clients;
``Run.result()`` then gives one dict:

    fault, old_primary, new_primary, unavailability_s, windows, acked, lost,
    lost_by_node, split_brain, split_brain_acks, rejoin_s, reads, ...

``lost`` counts acknowledged rows absent from at least one node once all are
streaming again; ``rejoin_s`` is how long the old primary took to serve again
(stream as a replica, or lead again when no failover happened), counted from
the moment the fault was undone (or, with nothing to undo, from the fault).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from ..cluster import Lab
from ..observation import (
    Reader,
    Writer,
    ensure_ledger,
    etcd_health,
    leader,
    patroni_logs,
    timeline,
    vip_holders,
)
from ..wait import WaitTimeout, wait_until

STEADY_ACKS = 50  # acknowledged writes before the fault: the writer is in steady state
RESUME_TIMEOUT = 120.0  # s until writes through the VIP resume after a fault
READY_TIMEOUT = 180.0  # s until the lab is healthy again after a fault
# Set by the failover bench: each run then also records where its seconds went.
RECORD_TIMELINE: ContextVar[bool] = ContextVar("RECORD_TIMELINE", default=False)
JOURNAL_BEFORE_FAULT_S = 25.0  # the old primary's last renewals, at most ttl before the fault


class Run:
    """One scenario's client workload and measurements."""

    def __init__(self, lab: Lab, fault: str) -> None:
        self.lab = lab
        self.fault = fault
        self.writer = Writer(lab)
        self.reader = Reader(lab)
        self.old_primary: str | None = None
        self.fault_at = 0.0
        self.fault_wall: float | None = None
        self.rejoin_s: float | None = None
        self.extra: dict[str, Any] = {}
        self.leader_watch: timeline.LeaderKeyWatch | None = None
        self.vip_holder: str | None = None  # before the fault, for the timeline

    def inject(self, action: Callable[[], None]) -> float:
        """Run the fault at a known client time."""
        self.fault_at = time.monotonic()
        self.fault_wall = time.time()
        action()
        return self.fault_at

    def result(self) -> dict[str, Any]:
        """Judge the run once the lab is healthy again and the clients have stopped."""
        writer = self.writer
        acks, failures = writer.snapshot()
        lost_by_node = {node.name: writer.missing_on(str(node.ip)) for node in self.lab.spec.postgres_nodes}
        lost = sorted(set().union(*lost_by_node.values())) if lost_by_node else []
        evidence = writer.split_brain()
        windows = writer.windows(since=self.fault_at)
        new_primary = leader(self.lab)
        result: dict[str, Any] = {
            "fault": self.fault,
            "old_primary": self.old_primary,
            "new_primary": new_primary,
            "unavailability_s": round(writer.unavailability(since=self.fault_at), 2),
            # Commits that only waited count too: the longest time without an acknowledgement.
            "max_gap_s": round(writer.max_gap(since=self.fault_at), 2),
            "windows": [
                {
                    "start_s": round(w.start - self.fault_at, 2),
                    "seconds": None if w.seconds is None else round(w.seconds, 2),
                    "failed_attempts": w.failures,
                }
                for w in windows
            ],
            "acked": len(acks),
            "failed_attempts": len(failures),
            "fault_at_utc": time.strftime("%H:%M:%S", time.gmtime(self.fault_wall or 0)),
            "fault_at_epoch": self.fault_wall,
            "errors": sorted({f.error for f in failures if f.started >= self.fault_at - 1})[:5],
            "lost": len(lost),
            "lost_by_node": {k: len(v) for k, v in lost_by_node.items()},
            "lost_sample": lost[:10],
            "split_brain": bool(evidence),
            "split_brain_acks": len(evidence),
            "servers_in_order": writer.servers(),
            "rejoin_s": None if self.rejoin_s is None else round(self.rejoin_s, 1),
            "reads": self.reader.summary(),
            **self.extra,
        }
        if lost or evidence:
            since = None if self.fault_wall is None else self.fault_wall - 5
            result["patroni_logs"] = patroni_logs(self.lab, since=since)
        if self.leader_watch is not None:
            result["timeline"], result["race_request"], result["race_evidence"] = self._timeline(new_primary)
        return result

    def _timeline(
        self, new_primary: str | None
    ) -> tuple[dict[str, float | None] | None, str | None, list[str]]:
        """Where this run's seconds went (lab/observation/timeline.py), how the race's question to
        the former leader ended, and the race's own lines; (None, None, []) if nothing was recorded."""
        assert self.leader_watch is not None
        self.leader_watch.stop()
        if self.fault_wall is None or self.old_primary is None:
            return None, None, []
        acks = [a.at for a in self.writer.snapshot()[0]]
        evidence = timeline.Evidence(
            fault_wall=self.fault_wall,
            old_primary=self.old_primary,
            new_primary=new_primary,
            ttl=self.lab.spec.patroni.ttl,
            vip_holder=self.vip_holder,
            key_events=list(self.leader_watch.events),
            journal=timeline.journals(
                self.lab,
                [n.name for n in self.lab.spec.postgres_nodes],
                self.fault_wall - JOURNAL_BEFORE_FAULT_S,
                time.time(),
            ),
            first_write_wall=timeline.first_write_after(acks, self.fault_at, self.fault_wall),
        )
        return timeline.reduce(evidence), timeline.race_request(evidence), timeline.race_evidence(evidence)

    def watch_leader_key(self) -> None:
        """Watch the leader key from a member other than the primary, on another host if there is one."""
        spec = self.lab.spec
        old = spec.node(self.old_primary) if self.old_primary else None
        others = [n for n in spec.postgres_nodes if old is None or n.name != old.name]
        others.sort(key=lambda n: old is not None and n.host == old.host)
        holders = vip_holders(self.lab)
        self.vip_holder = holders[0] if len(holders) == 1 else None
        if others:
            self.leader_watch = timeline.LeaderKeyWatch(self.lab, others[0].name)
            self.leader_watch.start()


@contextmanager
def recording_timeline() -> Iterator[None]:
    """Scenarios run inside also record ``result["timeline"]`` (lab/observation/timeline.py)."""
    token = RECORD_TIMELINE.set(True)
    try:
        yield
    finally:
        RECORD_TIMELINE.reset(token)


def wait_etcd_healthy(lab: Lab, timeout: float = READY_TIMEOUT) -> dict[str, bool]:
    """Every etcd member answers /health true: it has a leader, and the cluster its quorum.

    Patroni may look healthy again while a member that was cut off still has
    no leader (its peers' streams come back seconds after the link). A fault
    injected then is a double fault: with that member and the victim out, etcd
    has no quorum and the primary demotes itself (a sync-partition run measured
    13 s without writes that way, right after the previous run's heal).
    """
    last: dict[str, bool] = {}

    def healthy() -> dict[str, bool] | None:
        last.clear()
        last.update(etcd_health(lab))
        return dict(last) if last and all(last.values()) else None

    return wait_until(healthy, timeout, interval=0.5, error=lambda _: f"etcd members not healthy: {last}")


def seconds_until_etcd_healthy(lab: Lab, since: float, timeout: float = READY_TIMEOUT) -> float | None:
    """Seconds from ``since`` (monotonic) until every etcd member answers /health true; None on timeout.

    Measured after a fault is undone: a TCP connection whose data went unanswered
    during the fault waits for its next, exponentially delayed, retransmission, so a
    member can stay cut off long after the network is back (net.ipv4.tcp_retries2).
    """
    try:
        wait_etcd_healthy(lab, timeout)
    except WaitTimeout:
        return None
    return round(time.monotonic() - since, 1)


@contextmanager
def scenario(lab: Lab, fault: str) -> Iterator[Run]:
    """A healthy lab (etcd's every member too), clients in steady state; clients stopped afterwards."""
    lab.wait_ready(timeout=READY_TIMEOUT)
    wait_etcd_healthy(lab)
    ensure_ledger(lab)
    run = Run(lab, fault)
    run.old_primary = leader(lab)
    if RECORD_TIMELINE.get():
        run.watch_leader_key()
    run.writer.start()
    run.reader.start()
    try:
        if not run.writer.wait_acks(STEADY_ACKS):
            raise RuntimeError(f"writer not acknowledged before the fault: {run.writer.snapshot()[1][-3:]}")
        yield run
        lab.wait_ready(timeout=READY_TIMEOUT)
        run.writer.wait_acks(STEADY_ACKS)  # acknowledged writes after recovery, too
    finally:
        for looper in (run.writer, run.reader):
            looper.stop()
        if run.leader_watch is not None:
            run.leader_watch.stop()
    if run.writer.crash is not None:
        raise RuntimeError(f"writer crashed: {run.writer.crash!r}")
