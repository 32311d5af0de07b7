"""A client workload to judge faults by: what an application saw, not what Patroni says.

The ``Writer`` behaves like an application with retries: several clients
(threads, one connection each) commit multi-row transactions through
VIP:5432 concurrently, open a new connection after every failure and record
each commit the server acknowledged. Concurrency and several rows per commit
keep WAL in flight at any moment, so an asynchronous standby really lags
behind the acknowledgements (a serial one-row writer left nothing to lose).
After a fault those acknowledgements are the contract: every one must be on
every node, and none may come from a server that had already been replaced
(split brain). The ``Reader`` does the same for VIP:5433, recording who
answered and whether it was in recovery.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import psycopg

from ..machines import LabAccess
from ..wait import wait_until
from .client import TCP_OPTIONS, connect

LEDGER_DDL = """
create table if not exists ha_ledger (
    id bigserial primary key,
    client_seq bigint unique not null,
    server inet,
    written_at timestamptz default clock_timestamp()
)
"""
INSERT = "insert into ha_ledger (client_seq, server) values (%s, inet_server_addr()) returning server"
# What the direct split-brain probe (lab/observation/probe.py) writes on each node itself.
PROBE_DDL = "create table if not exists ha_probe (id bigserial primary key, node text, at timestamptz)"
CLIENTS = 4  # concurrent writer connections
ROWS_PER_COMMIT = 3  # INSERT statements per transaction

# libpq settings of a careful application: TCP's (lab/observation/client.py), and fail fast.
CLIENT_OPTIONS: dict[str, Any] = {**TCP_OPTIONS, "options": "-c statement_timeout=3000"}
CONNECT_TIMEOUT = 2
# statement_timeout does not cover a commit waiting for its synchronous standby
# (PostgreSQL disables it before committing), and a frozen server's kernel still
# answers keepalives: a watchdog cuts the socket of a statement stuck this long.
# It shuts the socket down rather than sending a cancel, because a cancelled
# synchronous-replication wait is reported to the client as a success.
STUCK_AFTER = 6.0
RETRY_PAUSE = 0.1


@dataclass(frozen=True)
class Ack:
    """A commit the server acknowledged: the client may rely on it forever."""

    seq: int  # the transaction's first row
    server: str
    at: float  # client monotonic time of the acknowledgement
    rows: int = 1  # client_seq values seq .. seq + rows - 1, committed together
    started: float = 0.0  # client monotonic time the attempt began

    @property
    def seqs(self) -> range:
        return range(self.seq, self.seq + self.rows)


@dataclass(frozen=True)
class Failure:
    """One attempt (connect or insert) that ended without an acknowledgement."""

    seq: int
    started: float
    ended: float
    error: str


@dataclass(frozen=True)
class Window:
    """Writes unavailable: from the first failed attempt to the next acknowledgement."""

    start: float
    end: float | None  # None: still failing when the writer stopped
    failures: int

    @property
    def seconds(self) -> float | None:
        return None if self.end is None else self.end - self.start


@dataclass(frozen=True)
class Read:
    """One answer on the read-only port."""

    at: float
    server: str | None  # None: no answer
    in_recovery: bool | None
    error: str | None = None


def ensure_ledger(lab: LabAccess) -> None:
    """Create the ledger table through the VIP (the primary), retrying briefly."""
    errors: list[psycopg.Error] = []

    def created() -> bool:
        try:
            with connect(lab, lab.spec.haproxy.primary_port, timeout=CONNECT_TIMEOUT) as conn:
                conn.execute(LEDGER_DDL)
                conn.execute(PROBE_DDL)
        except psycopg.Error as exc:
            errors[:] = [exc]
            return False
        return True

    if not wait_until(created, 30.0):
        raise errors[0]


class _Looper(threading.Thread):
    """A daemon thread with a stop event and a bounded run time."""

    def __init__(self, name: str, max_seconds: float) -> None:
        super().__init__(name=name, daemon=True)
        self.stop_event = threading.Event()
        self.deadline = time.monotonic() + max_seconds
        self.lock = threading.Lock()
        self.crash: BaseException | None = None

    def running(self) -> bool:
        return not self.stop_event.is_set() and time.monotonic() < self.deadline

    def stop(self, timeout: float = 15.0) -> None:
        """Stop and join; a thread that does not end in time is reported, never leaked silently."""
        self.stop_event.set()
        self.join(timeout)
        if self.is_alive():
            raise RuntimeError(f"{self.name} did not stop within {timeout:.0f} s")


class _Client:
    """One writer connection and the statement it is waiting on."""

    def __init__(self) -> None:
        self.conn: psycopg.Connection | None = None
        self.inflight_since: float | None = None


class Writer(_Looper):
    """Inserts continuously through VIP:5432 from ``clients`` connections and keeps the client's ledger."""

    def __init__(
        self,
        lab: LabAccess,
        interval: float = 0.01,
        max_seconds: float = 900.0,
        clients: int = CLIENTS,
        rows: int = ROWS_PER_COMMIT,
    ) -> None:
        super().__init__("pgha-writer", max_seconds)
        self.lab = lab
        self.interval = interval
        self.rows = rows
        self.clients = [_Client() for _ in range(clients)]
        # Unique across runs without asking the server: microseconds since the epoch.
        self.first_seq = time.time_ns() // 1000
        self.next_seq = self.first_seq
        self.acks: list[Ack] = []
        self.failures: list[Failure] = []
        # The database of its first connection, kept: a change that makes another database the
        # stack's first (lab.spec replaced mid-run) must not move the ledger under the writer.
        self._dbname: str | None = None
        self._watchdog = threading.Thread(target=self._watch, name="pgha-writer-watchdog", daemon=True)

    # ---- the loop ---------------------------------------------------------------

    def run(self) -> None:
        self._watchdog.start()
        others = [
            threading.Thread(target=self._loop, args=(c,), name=f"pgha-writer-{i}", daemon=True)
            for i, c in enumerate(self.clients[1:], 1)
        ]
        for thread in others:
            thread.start()
        try:
            self._loop(self.clients[0])
        except BaseException as exc:  # recorded so the caller sees it
            self.crash = exc
        finally:
            self.stop_event.set()
            for thread in others:
                thread.join(STUCK_AFTER + 5)
            self._watchdog.join(5)

    def _loop(self, client: _Client) -> None:
        try:
            while self.running():
                self._write_once(client)
                self.stop_event.wait(self.interval)
        except BaseException as exc:
            self.crash = self.crash or exc
            self.stop_event.set()
        finally:
            self._drop(client)

    def _take_seqs(self) -> int:
        with self.lock:
            seq = self.next_seq
            self.next_seq += self.rows
        return seq

    def _write_once(self, client: _Client) -> None:
        seq = self._take_seqs()
        started = time.monotonic()
        try:
            if client.conn is None:
                client.inflight_since = started
                client.conn = connect(
                    self.lab,
                    self.lab.spec.haproxy.primary_port,
                    timeout=CONNECT_TIMEOUT,
                    application_name="pgha-writer",
                    dbname=self.dbname(),
                    **CLIENT_OPTIONS,
                )
            conn = client.conn
            client.inflight_since = time.monotonic()
            row = None
            with conn.transaction():  # one commit for all the rows: acknowledged together
                for offset in range(self.rows):
                    row = conn.execute(INSERT, (seq + offset,)).fetchone()
            client.inflight_since = None
            ack = Ack(seq, str(row[0]) if row else "?", time.monotonic(), self.rows, started)
            with self.lock:
                self.acks.append(ack)
        except (psycopg.Error, OSError) as exc:
            client.inflight_since = None
            with self.lock:
                self.failures.append(Failure(seq, started, time.monotonic(), _one_line(exc)))
            self._drop(client)
            self.stop_event.wait(RETRY_PAUSE)

    @staticmethod
    def _drop(client: _Client) -> None:
        conn, client.conn = client.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _watch(self) -> None:
        """Cut the socket of a statement stuck longer than STUCK_AFTER (see there)."""
        while not self.stop_event.is_set():
            for client in self.clients:
                since, conn = client.inflight_since, client.conn
                if since is not None and conn is not None and time.monotonic() - since > STUCK_AFTER:
                    _shutdown(conn)
                    client.inflight_since = None
            time.sleep(0.2)

    # ---- what the client saw ------------------------------------------------------

    def snapshot(self) -> tuple[list[Ack], list[Failure]]:
        with self.lock:
            return list(self.acks), list(self.failures)

    def last_ack(self) -> Ack | None:
        with self.lock:
            return self.acks[-1] if self.acks else None

    def wait_acks(self, count: int, timeout: float = 30.0) -> bool:
        """Until ``count`` more acknowledgements arrived: the writer is in steady state."""
        with self.lock:
            target = len(self.acks) + count

        def reached() -> bool:
            with self.lock:
                return len(self.acks) >= target

        wait_until(lambda: reached() or not self.is_alive(), timeout, interval=0.05)
        return reached()

    def wait_resumed(self, since: float, timeout: float, scale: bool = True) -> float | None:
        """Time of the first ack of an attempt begun after a failure that ended at or after ``since``.

        Begun after the failure: a commit already in flight when the fault struck
        (on another of the writer's connections) may still be acknowledged once
        the first failure is seen; it says nothing about writes being back. None on
        timeout. ``scale=False`` when the timeout is the fault's own duration
        (lab.wait.wait_until).
        """

        def resumed() -> float | None:
            acks, failures = self.snapshot()
            first_fail = next((f for f in failures if f.ended >= since), None)
            if first_fail is None:
                return None
            return next((a.at for a in acks if a.started > first_fail.ended), None)

        wait_until(lambda: resumed() is not None or not self.is_alive(), timeout, interval=0.1, scale=scale)
        return resumed()

    def windows(self, since: float | None = None) -> list[Window]:
        """Unavailability windows: first failed attempt to the first acknowledgement after it.

        With ``since``, only windows still open then: the attempt that hangs
        when a fault strikes began before it, and its window counts in full.
        """
        acks, failures = self.snapshot()
        events = sorted([(a.at, True) for a in acks] + [(f.started, False) for f in failures])
        windows: list[Window] = []
        start: float | None = None
        count = 0
        for at, ok in events:
            if ok and start is not None:
                windows.append(Window(start, at, count))
                start, count = None, 0
            elif not ok:
                start = at if start is None else start
                count += 1
        if start is not None:
            windows.append(Window(start, None, count))
        if since is not None:
            windows = [w for w in windows if w.end is None or w.end >= since]
        return windows

    def max_gap(self, since: float) -> float:
        """The longest time without any acknowledgement, over the gaps that end after ``since``.

        What a fault costs even when no attempt fails: commits that merely
        wait (a synchronous standby gone silent) show here and nowhere else.
        The gap still open when the writer stopped counts up to its last attempt.
        """
        acks, failures = self.snapshot()
        times = sorted(a.at for a in acks)
        gaps = [b - a for a, b in itertools.pairwise(times) if b >= since]
        last_ack = times[-1] if times else since
        last_try = max((f.ended for f in failures), default=last_ack)
        if last_try > last_ack:
            gaps.append(last_try - max(last_ack, since))
        return max(gaps, default=0.0)

    def unavailability(self, since: float | None = None) -> float:
        """Seconds without writes, summed over the windows of ``windows(since)``."""
        total = 0.0
        for window in self.windows(since):
            end = window.end if window.end is not None else time.monotonic()
            total += end - window.start
        return total

    def split_brain(self) -> list[dict[str, Any]]:
        """Acks from a server after another server had taken over from it.

        Once the acknowledging server changed from A to B, a later ack from A
        means two primaries accepted writes: each such ack is returned.
        """
        acks, _ = self.snapshot()
        acks.sort(key=lambda a: a.at)
        replaced: dict[str, float] = {}  # server -> when another server first acked after it
        evidence = []
        current: str | None = None
        for ack in acks:
            if current is not None and ack.server != current:
                replaced.setdefault(current, ack.at)
            if ack.server in replaced:
                evidence.append({"seq": ack.seq, "server": ack.server, "at": ack.at})
            current = ack.server
        return evidence

    def servers(self) -> list[str]:
        """The acknowledging servers in the order they took over."""
        order: list[str] = []
        for ack in self.snapshot()[0]:
            if not order or order[-1] != ack.server:
                order.append(ack.server)
        return order

    def dbname(self) -> str:
        """The database the ledger is written to: the stack's client database when first asked."""
        if self._dbname is None:
            self._dbname = self.lab.client_login()["dbname"]
        return self._dbname

    def missing_on(self, host: str, timeout: float = 30.0) -> list[int]:
        """Acknowledged client_seq values absent from the PostgreSQL at ``host``:5442.

        Replicas replay asynchronously, so absent rows are re-checked until
        ``timeout``; whatever is still absent then is lost on that node.
        """
        acked = {seq for a in self.snapshot()[0] for seq in a.seqs}
        if not acked:
            return []
        low, high = min(acked), max(acked)
        missing: set[int] = acked
        last_error: Exception | None = None

        def all_there() -> bool:
            nonlocal missing, last_error
            try:
                with connect(
                    self.lab,
                    self.lab.spec.postgres.port,
                    host=host,
                    timeout=CONNECT_TIMEOUT,
                    dbname=self.dbname(),
                ) as conn:
                    rows = conn.execute(
                        "select client_seq from ha_ledger where client_seq between %s and %s", (low, high)
                    ).fetchall()
                missing = acked - {r[0] for r in rows}
                last_error = None
            except psycopg.Error as exc:
                last_error = exc
            return not missing and last_error is None

        wait_until(all_there, timeout, interval=1.0)
        if last_error is not None:
            raise RuntimeError(
                f"cannot read ha_ledger on {host}: {last_error}; {self._diagnose(host)}"
            ) from last_error
        return sorted(missing)

    def _diagnose(self, host: str) -> str:
        """What a node whose ledger cannot be read says of itself: pg_isready inside it, its addresses."""
        node = next((n for n in self.lab.spec.postgres_nodes if str(n.ip) == host), None)
        if node is None:
            return "no such node"
        port = str(self.lab.spec.postgres.port)
        checks = {
            "pg_isready on its own address": ["pg_isready", "-h", host, "-p", port, "-t", "3"],
            "addresses": ["ip", "-brief", "address"],
        }
        said = []
        for what, argv in checks.items():
            try:
                result = self.lab.exec(node.name, argv, capture_output=True, text=True, timeout=10)
                said.append(f"{what}: {(result.stdout + result.stderr).strip()!r} (exit {result.returncode})")
            except Exception as error:  # a diagnosis never hides the failure it explains
                said.append(f"{what}: {error!r}")
        return "; ".join(said)


class Reader(_Looper):
    """Reads through VIP:5433 on a new connection each time (HAProxy round-robin)."""

    def __init__(self, lab: LabAccess, interval: float = 0.2, max_seconds: float = 900.0) -> None:
        super().__init__("pgha-reader", max_seconds)
        self.lab = lab
        self.interval = interval
        self.reads: list[Read] = []

    def run(self) -> None:
        try:
            while self.running():
                self.reads.append(self._read_once())
                self.stop_event.wait(self.interval)
        except BaseException as exc:
            self.crash = exc
        finally:
            self.stop_event.set()

    def _read_once(self) -> Read:
        try:
            with connect(
                self.lab,
                self.lab.spec.haproxy.replica_port,
                timeout=CONNECT_TIMEOUT,
                application_name="pgha-reader",
                **CLIENT_OPTIONS,
            ) as conn:
                server, recovery = conn.execute("select inet_server_addr(), pg_is_in_recovery()").fetchone()
            return Read(time.monotonic(), str(server), bool(recovery))
        except (psycopg.Error, OSError) as exc:
            return Read(time.monotonic(), None, None, _one_line(exc))

    def summary(self) -> dict[str, Any]:
        """Who served reads, and whether a primary ever answered on the read-only port."""
        reads = list(self.reads)
        answered = [r for r in reads if r.server is not None]
        return {
            "reads": len(reads),
            "failed": len(reads) - len(answered),
            "servers": sorted({r.server for r in answered if r.server}),
            "served_by_primary": sum(1 for r in answered if r.in_recovery is False),
        }


def _shutdown(conn: psycopg.Connection) -> None:
    """Shut the connection's socket down from another thread: the blocked call fails at once."""
    with contextlib.suppress(Exception):
        fd = os.dup(conn.pgconn.socket)
        sock = socket.socket(fileno=fd)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:200]
