"""lab/observation/workload.py: when writes count as resumed after a fault, and where they go."""

from __future__ import annotations

from types import SimpleNamespace

from lab.observation.workload import Ack, Failure, Writer


def writer(acks: list[Ack], failures: list[Failure]) -> Writer:
    w = Writer(SimpleNamespace(spec=None), clients=2)  # type: ignore[arg-type]
    w.acks, w.failures = acks, failures
    return w


def test_a_commit_in_flight_at_the_fault_is_not_writes_resumed():
    fault = 100.0
    # Client B's commit began before the fault and is acknowledged just after client A's first failure.
    in_flight = Ack(1, "10.0.0.2", at=100.05, started=99.99)
    first_failure = Failure(2, 100.0, 100.02, "server closed the connection unexpectedly")
    w = writer([in_flight], [first_failure])
    assert w.wait_resumed(fault, timeout=0.3, scale=False) is None
    # Writes are back once an attempt begun after the failure is acknowledged.
    w.acks.append(Ack(3, "10.0.0.3", at=121.0, started=120.6))
    assert w.wait_resumed(fault, timeout=0.3, scale=False) == 121.0


def test_the_ledger_stays_in_the_database_of_the_first_connection():
    """A change that makes another database the stack's first (lab.spec replaced mid-run) must not
    move the writer: it would write to one database and be checked in another."""
    lab = SimpleNamespace(spec=None, client_login=lambda: {"dbname": "app"})
    w = Writer(lab, clients=1)  # type: ignore[arg-type]
    assert w.dbname() == "app"
    lab.client_login = lambda: {"dbname": "replay_db"}
    assert w.dbname() == "app"
    # A new writer (the next run) takes the stack's first database as it is then.
    assert Writer(lab, clients=1).dbname() == "replay_db"  # type: ignore[arg-type]
