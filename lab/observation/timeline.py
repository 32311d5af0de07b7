"""Where a primary failover's seconds go: one timeline per run, from the machines' own records.

Two sources, both read-only:

- a watch on Patroni's leader key (etcd's v2 API), run inside a member that is
  not the primary from before the fault: every renewal, the key's expiry and the
  new leader's lock, with etcd's own expiration times;
- the journals of the database VMs afterwards: Patroni's leader race,
  PostgreSQL's promotion, keepalived's and the fast path's moves, HAProxy's
  health checks.

The writer's ledger gives the first acknowledged write. Every time is in
seconds since the fault; a phase that did not happen (the VIP did not move) or
left no record is None. The machines share the lab host's clock, so their
journals and etcd's expiration times line up with the client's.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pgha import etcd, pki

if TYPE_CHECKING:
    from ..machines import LabAccess

# In the order they happen; docs/ha-durability.md shows their medians.
PHASES = (
    "fault",
    "last_renewal",
    "key_expired",
    "race_answered",
    "race_timed_out",
    "new_leader_lock",
    "promote_begin",
    "promote_end",
    "vip_switch",
    "haproxy_up",
    "first_write",
)
_WRITES = {"get", "compareAndSwap", "update", "set", "create"}
_REMOVALS = {"expire", "delete", "compareAndDelete"}
_PROMOTED = r"database system is ready to accept connections|archive recovery complete"
_VIP_MOVED = r"Entering MASTER STATE|fast path on|loaded .*fastpath-on"
UNITS = ("patroni", "haproxy", "keepalived", "pgha-fastpath", "pgha-leader-race")
# The new leader's own words on the race, and its leader race agent's: why the race took what it took.
_RACE = r"Got response from |Request failed to |silent for .* refused|answers again"

# Runs inside the watching member with its etcd identity: one JSON line per
# event on the leader key, stamped with the member's clock (the lab host's).
_WATCH_PROGRAM = """
import json, ssl, sys, time, urllib.request
url, ca, pem = sys.argv[1:4]
context = ssl.create_default_context(cafile=ca)
context.load_cert_chain(pem)
index = None
try:  # the key as it is now: its last renewal, before the first change is awaited
    with urllib.request.urlopen(url, context=context, timeout=10) as answer:
        event = json.load(answer)
    print(json.dumps({"t": time.time(), "action": "get", "node": event.get("node")}), flush=True)
    index = event["node"]["modifiedIndex"] + 1
except Exception as exc:
    print(json.dumps({"t": time.time(), "error": str(exc)[:200]}), flush=True)
while True:
    query = url + "?wait=true" + (f"&waitIndex={index}" if index else "")
    try:
        with urllib.request.urlopen(query, context=context, timeout=120) as answer:
            event = json.load(answer)
    except Exception as exc:
        print(json.dumps({"t": time.time(), "error": str(exc)[:200]}), flush=True)
        time.sleep(0.05)
        continue
    print(json.dumps({"t": time.time(), "action": event.get("action"), "node": event.get("node"),
                      "prev": event.get("prevNode")}), flush=True)
    index = event["node"]["modifiedIndex"] + 1
"""


def _epoch(rfc3339: str | None) -> float | None:
    """etcd's expiration (RFC 3339 with nanoseconds) as an epoch."""
    if not rfc3339:
        return None
    trimmed = re.sub(r"(\.\d{6})\d*", r"\1", rfc3339).replace("Z", "+00:00")
    return datetime.fromisoformat(trimmed).timestamp()


class LeaderKeyWatch:
    """Every change of the leader key, seen from ``via`` (a member that should outlive the fault)."""

    def __init__(self, lab: LabAccess, via: str) -> None:
        self.lab = lab
        self.via = via
        self.events: list[dict[str, Any]] = []
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        spec = self.lab.spec
        url = f"{etcd.client_url(spec, spec.node(self.via))}/v2/keys/service/{spec.postgres.scope}/leader"
        program = ["python3", "-c", _WATCH_PROGRAM, url, pki.CA_PATH, etcd.PEM_PATH]
        argv = self.lab.exec_args(self.via, program)
        self._process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self._reader = threading.Thread(target=self._read, name="pgha-leader-watch", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            try:
                self.events.append(json.loads(line))
            except ValueError:
                continue

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
        if self._reader is not None:
            self._reader.join(timeout=5)


@dataclass
class JournalLine:
    at: float  # epoch
    node: str
    unit: str
    message: str


@dataclass
class Evidence:
    """What one run left behind, before it is reduced to a timeline."""

    fault_wall: float
    old_primary: str
    new_primary: str | None
    ttl: int
    vip_holder: str | None = None  # before the fault
    key_events: list[dict[str, Any]] = field(default_factory=list)
    journal: list[JournalLine] = field(default_factory=list)
    first_write_wall: float | None = None


def journals(lab: LabAccess, nodes: Iterable[str], since: float, until: float) -> list[JournalLine]:
    """The units' journal lines on each reachable node between two epochs (JSON, microseconds)."""
    units = [arg for unit in UNITS for arg in ("-u", unit)]
    lines: list[JournalLine] = []
    for node in nodes:
        try:
            result = lab.exec(
                node,
                [
                    "journalctl",
                    *units,
                    "--no-pager",
                    "-o",
                    "json",
                    f"--since=@{since:.6f}",
                    f"--until=@{until:.6f}",
                ],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (RuntimeError, subprocess.SubprocessError):
            continue
        for raw in result.stdout.splitlines():
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            message = entry.get("MESSAGE")
            if not isinstance(message, str):
                continue
            unit = str(entry.get("_SYSTEMD_UNIT") or entry.get("SYSLOG_IDENTIFIER") or "")
            lines.append(JournalLine(int(entry["__REALTIME_TIMESTAMP"]) / 1e6, node, unit, message))
    return sorted(lines, key=lambda line: line.at)


def _matching(
    lines: Iterable[JournalLine], after: float, pattern: str, node: str | None = None
) -> Iterator[JournalLine]:
    """The lines from ``after`` on (of ``node``, if given) whose message matches ``pattern``."""
    regex = re.compile(pattern)
    for line in lines:
        if line.at >= after and (node is None or line.node == node) and regex.search(line.message):
            yield line


def _first(lines: Iterable[JournalLine], after: float, pattern: str, node: str | None = None) -> float | None:
    return next((line.at for line in _matching(lines, after, pattern, node)), None)


def reduce(evidence: Evidence) -> dict[str, float | None]:
    """The timeline of one run: each phase in seconds since the fault (None: not seen)."""
    fault = evidence.fault_wall
    old, new = evidence.old_primary, evidence.new_primary
    at: dict[str, float | None] = dict.fromkeys(PHASES)
    at["fault"] = fault

    renewals = [
        e
        for e in evidence.key_events
        if e.get("action") in _WRITES and (e.get("node") or {}).get("value") == old
    ]
    before = [e for e in renewals if e["t"] <= fault + 1.0]
    if before:
        expiration = _epoch(before[-1]["node"].get("expiration"))
        at["last_renewal"] = None if expiration is None else expiration - evidence.ttl
    gone = next(
        (e for e in evidence.key_events if e.get("action") in _REMOVALS and e["t"] > fault),
        None,
    )
    if gone is not None:
        at["key_expired"] = gone["t"]
        taken = next(
            (
                e
                for e in evidence.key_events
                if e["t"] >= gone["t"]
                and e.get("action") in {"create", "set"}
                and (e.get("node") or {}).get("value")
            ),
            None,
        )
        if taken is not None:
            expiration = _epoch(taken["node"].get("expiration"))
            locked = taken["t"] if expiration is None else min(taken["t"], expiration - evidence.ttl)
            at["new_leader_lock"] = locked

    lines = evidence.journal
    since = at["key_expired"] or fault
    if new is not None:
        at["race_answered"] = _first(lines, since, r"Got response from ", new)
        at["race_timed_out"] = _first(lines, since, rf"Request failed to {re.escape(old)}\b", new)
        if at["new_leader_lock"] is None:
            at["new_leader_lock"] = _first(lines, since, r"by acquiring session lock", new)
        at["promote_begin"] = _first(lines, since, r"received promote request", new)
        at["promote_end"] = _first(lines, since, _PROMOTED, new)
    at["vip_switch"] = _first(lines, fault, _VIP_MOVED)
    if new is not None:
        # The HAProxy clients reach: the VIP holder's, the new one if the VIP moved.
        moved = [line.node for line in lines if line.at >= fault and re.search(_VIP_MOVED, line.message)]
        holder = moved[-1] if moved else evidence.vip_holder
        at["haproxy_up"] = _first(lines, since, rf"Server primary/{re.escape(new)} is UP", holder)
    at["first_write"] = evidence.first_write_wall
    return {phase: None if value is None else round(value - fault, 3) for phase, value in at.items()}


def race_evidence(evidence: Evidence, limit: int = 12) -> list[str]:
    """The new leader's race lines and its agent's, from a second before the fault: text, not seconds.

    A slow race shows here whether the former leader's REST API timed out (the
    agent had not refused it) or answered, and when the agent refused it.
    """
    if evidence.new_primary is None:
        return []
    lines = sorted(evidence.journal, key=lambda line: line.at)
    return [
        f"{line.at - evidence.fault_wall:+.3f} {line.unit}: {line.message[:600]}"
        for line in _matching(lines, evidence.fault_wall - 1.0, _RACE, evidence.new_primary)
    ][-limit:]


def race_request(evidence: Evidence) -> str | None:
    """How the new leader's race question to the former leader ended: refused, timed out, or None.

    "refused" is the leader race agent's work (or a live kernel refusing); "timed
    out" is Patroni's own 2 s, what the agent exists to remove. None: the former
    leader was not asked (its member key was gone) or the line was not found.
    """
    if evidence.new_primary is None:
        return None
    asked = rf"Request failed to {re.escape(evidence.old_primary)}\b"
    lines = sorted(evidence.journal, key=lambda line: line.at)
    line = next(_matching(lines, evidence.fault_wall, asked, evidence.new_primary), None)
    if line is None:
        return None
    if re.search(r"(?i)refused|reset by peer|ConnectionResetError", line.message):
        return "refused"
    if re.search(r"(?i)timed? ?out", line.message):
        return "timed out"
    return "other"


def leader_race_s(timeline: dict[str, float | None]) -> float | None:
    """From the key's expiry to the new leader's lock: Patroni noticing, asking its peers, locking."""
    expired, locked = timeline.get("key_expired"), timeline.get("new_leader_lock")
    return None if expired is None or locked is None else round(locked - expired, 3)


def table(timelines: list[dict[str, float | None]]) -> str:
    """The timelines as a fixed-width table, one row per run, one column per phase."""
    header = " ".join(f"{p[:13]:>13}" for p in PHASES)
    rows = [header]
    for timeline in timelines:
        cells = ("-" if timeline.get(p) is None else format(timeline[p], ".2f") for p in PHASES)
        rows.append(" ".join(f"{cell:>13}" for cell in cells))
    return "\n".join(rows)


def first_write_after(acks_at: Iterable[float], fault_at: float, fault_wall: float) -> float | None:
    """The epoch of the acknowledgement that ended the longest stretch without one after the fault.

    The same measure as the writer's ``max_gap``: commits that only waited count too.
    """
    times = sorted(acks_at)
    previous = max((t for t in times if t <= fault_at), default=fault_at)
    longest, ending = -1.0, None
    for at in (t for t in times if t > fault_at):
        if at - previous > longest:
            longest, ending = at - previous, at
        previous = at
    return None if ending is None else fault_wall + (ending - fault_at)


def medians(timelines: list[dict[str, float | None]]) -> dict[str, float | None]:
    """Each phase's median over the runs that recorded it."""
    result: dict[str, float | None] = {}
    for phase in PHASES:
        seen = sorted(t[phase] for t in timelines if t.get(phase) is not None)  # type: ignore[misc]
        result[phase] = None if not seen else round(statistics.median(seen), 3)
    return result
