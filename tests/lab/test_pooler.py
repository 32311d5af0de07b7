"""PgBouncer on the live dev lab (pgha:pooler, docs/pooler.md): VIP:6432 to the primary's pooler.

An application role logs in through VIP:6432 with TLS verified (client side)
and PgBouncer reaches PostgreSQL over TLS (server side); transaction pooling
hands two clients the same server connection; the cluster's own roles and
plaintext are refused (the verify probe's, outside its own database); after
a switchover no client of the pooler is left on the old primary, and new
clients land on the new one. One switchover, about 40 s on the shared machine.
"""

from __future__ import annotations

import subprocess
import time

import psycopg
import pytest

from lab.cluster import Lab, switchover
from lab.faults import READY_TIMEOUT
from lab.observation import connect, observe
from lab.scenarios.apps import local_sql, login
from lab.wait import scaled, wait_until

pytestmark = pytest.mark.lab

# HAProxy marks the old primary down after fall x fastinter (3 x 250 ms) once
# /primary answers 503, and cuts its sessions; the demotion's restart closes
# PgBouncer's server connections. Generous for the shared machine.
DRAIN_TIMEOUT = 30.0
APP_BACKENDS = (
    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND usename = 'app'"
)


def pooled(lab: Lab, **kwargs: object) -> psycopg.Connection:
    """The lab's application login (app) through VIP:6432, TLS verify-full against the lab's CA."""
    assert lab.spec.pooler is not None, "the dev stack enables pgha:pooler"
    return connect(lab, lab.spec.pooler.port, timeout=5, **kwargs)


def test_an_application_connects_through_the_pooler_with_tls_both_ways(lab: Lab) -> None:
    lab.wait_ready(timeout=READY_TIMEOUT)
    primary = observe.leader(lab)
    assert primary is not None
    with pooled(lab) as conn:
        assert conn.pgconn.ssl_in_use  # client <-> PgBouncer (verify-full: the cert names the VIP)
        server, recovery, server_tls, user = conn.execute(
            "SELECT inet_server_addr(), pg_is_in_recovery(),"
            " (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), current_user"
        ).fetchone()
    # PgBouncer <-> PostgreSQL: TLS, on the primary's own address (its local PostgreSQL).
    assert (str(server), recovery, server_tls, user) == (str(lab.spec.node(primary).ip), False, True, "app")


def test_plaintext_and_cluster_roles_are_refused(lab: Lab) -> None:
    with pytest.raises(psycopg.OperationalError, match="SSL required"):
        pooled(lab, sslmode="disable").close()
    secrets = lab.secrets()
    for user, password, dbname in (
        ("postgres", secrets.superuser_password, "postgres"),
        # The verify probe's login: its own database only (pg_hba), as through 5432.
        ("pgha_verify", secrets.verify_password, "postgres"),
        ("replicator", secrets.replication_password, "postgres"),
    ):
        with pytest.raises(psycopg.OperationalError):
            pooled(lab, user=user, password=password, dbname=dbname).close()
    with pytest.raises(psycopg.OperationalError):
        pooled(lab, password="not-the-password-at-all").close()


def test_transaction_pooling_shares_server_connections(lab: Lab) -> None:
    """Two idle clients, one server connection: in session mode they would hold two."""
    with pooled(lab) as first, pooled(lab) as second:
        pids = {c.execute("SELECT pg_backend_pid()").fetchone()[0] for c in (first, second, first, second)}
        assert len(pids) == 1
        # Forty clients, each idle after a query: the primary sees at most the pool.
        clients = [pooled(lab) for _ in range(40)]
        try:
            for client in clients:
                client.execute("SELECT 1")
            primary = observe.leader(lab)
            assert primary is not None
            backends = int(local_sql(lab, primary, APP_BACKENDS))
            assert backends <= lab.spec.pooler.default_pool_size, backends
        finally:
            for client in clients:
                client.close()


def test_a_switchover_leaves_no_pooler_client_on_the_old_primary(lab: Lab) -> None:
    lab.wait_ready(timeout=READY_TIMEOUT)
    old = observe.leader(lab)
    assert old is not None
    # Clients set TCP keepalives (lab.observation.client.TCP_OPTIONS), as an application must: a
    # query the old VM acknowledged just before the VIP left it is never answered. A
    # run hung here without them: the client socket had everything acknowledged and
    # nothing received for 12 min, and no VM held its other end (docs/pooler.md).
    held = [pooled(lab) for _ in range(5)]
    for conn in held:
        conn.execute("BEGIN; SELECT 1; COMMIT")
    assert int(local_sql(lab, old, APP_BACKENDS)) >= 1
    new = switchover(lab)
    assert new != old
    started = time.monotonic()
    budget = scaled(DRAIN_TIMEOUT)  # one budget for the three waits below, from the switchover on

    def left() -> float:
        return max(0.0, started + budget - time.monotonic())

    # Every held client is cut (HAProxy's shutdown-sessions once /primary fails on
    # the old VM). Until then it may still reach the old pooler, now on a replica:
    # the same window as VIP:5432's, where a write fails as read-only.
    for conn in held:

        def cut_off(conn: psycopg.Connection = conn) -> bool:
            try:
                in_recovery = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
            except psycopg.Error:
                return True
            assert in_recovery, "a held pooler client reached a primary through the old VM's pooler"
            return False

        wait_until(
            cut_off, left(), interval=0.25, scale=False, error="a pooler client is still on the old primary"
        )
        conn.close()
    cut = time.monotonic() - started
    # What PgBouncer still holds on the old VM serves nobody: idle, closed after
    # server_idle_timeout; none is in a query or a transaction. (Its PostgreSQL
    # may still be restarting as a replica: asked again until it answers.)
    busy: list[str | None] = [None]

    def none_busy() -> bool:
        try:
            busy[0] = local_sql(lab, old, APP_BACKENDS + " AND state <> 'idle'")
        except subprocess.CalledProcessError:
            busy[0] = None
        return busy[0] == "0"

    wait_until(
        none_busy,
        left(),
        scale=False,
        error=lambda _: f"{busy[0]} busy app backends on the old primary {old}",
    )

    # A new client reaches the new primary through the same VIP:6432.
    def on_new_primary() -> bool:
        try:
            with pooled(lab) as conn:
                server, recovery = conn.execute("SELECT inet_server_addr(), pg_is_in_recovery()").fetchone()
        except psycopg.Error:
            return False
        return (str(server), recovery) == (str(lab.spec.node(new).ip), False)

    wait_until(on_new_primary, left(), scale=False, error="no pooler client reached the new primary")
    took = time.monotonic() - started
    print(f"\nheld pooler clients cut {cut:.1f} s, new ones on {new} {took:.1f} s after the switchover")
    # No switch back: a switchover to a named standby that host-aware sync tags
    # nosync is refused (412), the known issue of lab.cluster.operator.switchover(to=...).
    lab.wait_ready(timeout=READY_TIMEOUT)


def test_the_pooler_role_has_only_its_lookup(lab: Lab) -> None:
    """pgha_pooler: a plain login that may call pgbouncer.get_auth(), which returns no cluster role
    but the verify probe's (held to its own database by pg_hba)."""
    primary = observe.leader(lab)
    assert primary is not None
    attributes = local_sql(
        lab,
        primary,
        "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication FROM pg_roles"
        " WHERE rolname = 'pgha_pooler'",
    )
    assert attributes == "f|f|f|f"
    rows = local_sql(
        lab,
        primary,
        "SELECT count(*) FROM pgbouncer.get_auth('postgres')"
        " UNION ALL SELECT count(*) FROM pgbouncer.get_auth('pgha_pooler')"
        " UNION ALL SELECT count(*) FROM pgbouncer.get_auth('pgha_verify')"
        " UNION ALL SELECT count(*) FROM pgbouncer.get_auth('app')",
        dbname="pgha_pooler",
    )
    # pgha_verify is the one pgha role it returns: the verify phase checks 6432 with it.
    assert rows.split() == ["0", "0", "1", "1"]
    privilege = "SELECT has_function_privilege('app', 'pgbouncer.get_auth(text)', 'EXECUTE')"
    never = local_sql(lab, primary, privilege, dbname="pgha_pooler")
    assert never == "f"
    assert login(lab, "app", "app", port=lab.spec.pooler.port).close() is None
