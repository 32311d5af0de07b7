"""Applications on the live dev lab: their own databases and roles, no superuser over the network.

No superuser login over the network, and applications' own databases and roles,
attacked and exercised on the running cluster, in three config changes (each a
`pulumi up`: every step re-runs):

A. two applications: ``wiki`` (owns its database, pg_trgm) and ``js``
   (database owned by a NOLOGIN role, used by ``js_app``, a member), plus
   ``clients.allowFrom`` naming the lab's client;
B. ``wiki``'s password rotated (a new rotation generation) and an allow-list
   that leaves the lab's client out;
C. ``js`` declared absent (database and roles), the allow-list gone.

The dev lab keeps ``wiki`` afterwards (declared, harmless to later tests).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

from lab.cluster import Lab
from lab.observation import connect
from lab.scenarios.apps import local_sql, login, primary_sql, spec_with
from pgha.spec import ClusterSpec

pytestmark = pytest.mark.lab

DATABASES = [
    {"name": "app", "owner": "app"},
    {"name": "wiki", "owner": "wiki", "extensions": ["pg_trgm"]},
    {"name": "js", "owner": "js_owner"},
]
ROLES = [
    {"name": "wiki", "connectionLimit": 20},
    {"name": "js_owner", "login": False},
    {"name": "js_app", "memberOf": ["js_owner"]},
]


def apply(lab: Lab, spec: ClusterSpec) -> dict[str, list[str]]:
    """Apply ``spec``; each VM's databases step output. No password may appear in any step's output."""
    started = time.monotonic()
    _, results = lab.apply(spec)
    print(f"apply: {time.monotonic() - started:.1f} s")
    secrets = lab.secrets().values()
    for result in results:
        for secret in secrets:
            assert secret not in result.stdout + result.stderr, f"{result.step.name} on {result.step.node}"
    return {
        r.step.node: [line for line in (r.stdout + r.stderr).splitlines() if "pgha-databases:" in line]
        for r in results
        if r.step.name == "databases"
    }


@pytest.fixture(scope="module")
def apps_lab(lab: Lab) -> Iterator[Lab]:
    original = lab.spec
    try:
        yield lab
    finally:
        # A failure mid-way may leave a restrictive allow-list: give later tests the stack back.
        if lab.spec.clients.allow_from:
            lab.apply(spec_with(lab, databases=DATABASES[:2], roles=ROLES[:1]))
        assert original.stack == lab.spec.stack


def test_superuser_and_cluster_roles_have_no_network_login(lab):
    """The attack: the right superuser password, from the private network, is refused everywhere."""
    secrets = lab.secrets()
    targets = [(str(lab.spec.vip), p) for p in (lab.spec.haproxy.primary_port, lab.spec.haproxy.replica_port)]
    targets += [(str(n.ip), lab.spec.postgres.port) for n in lab.spec.postgres_nodes]
    attempts = [
        ("postgres", secrets.superuser_password, "postgres", {}),
        ("postgres", secrets.superuser_password, "app", {}),
        ("replicator", secrets.replication_password, "postgres", {}),
        ("replicator", secrets.replication_password, "replication", {"replication": "true"}),
        ("rewind_user", secrets.rewind_password, "postgres", {}),
    ]
    for host, port in targets:
        for user, password, dbname, extra in attempts:
            # Through the VIP the replication users arrive from a member's address (HAProxy's),
            # which their pg_hba lines name: there they are refused for want of a cluster certificate.
            refusal = r"pg_hba\.conf rejects|requires a valid client certificate"
            with pytest.raises(psycopg.OperationalError, match=refusal):
                connect(lab, port, host=host, user=user, password=password, dbname=dbname, **extra)
    # The socket still serves the superuser, and Patroni's replicas still stream.
    node = lab.spec.postgres_nodes[0].name
    assert local_sql(lab, node, "select current_user") == "postgres"
    streaming = primary_sql(lab, "select count(*) from pg_stat_replication where state = 'streaming'")
    assert int(streaming) == len(lab.spec.postgres_nodes) - 1


def test_two_applications_rotation_and_removal(apps_lab):
    lab = apps_lab
    client = f"{lab.bridge_ip()}/32"
    # --- A: two applications, the lab's client allowed ------------------------------------
    outputs = apply(lab, spec_with(lab, databases=DATABASES, roles=ROLES, clients={"allowFrom": [client]}))
    # The primary applied (or, on a re-run, found nothing to do); the replicas saw it replicated.
    finals = [lines[-1].split(": ", 1)[1] for lines in outputs.values()]
    replicas = [f for f in finals if f == "in line (replica)"]
    assert len(replicas) == len(lab.spec.postgres_nodes) - 1, outputs
    (primary,) = (f for f in finals if f not in replicas)
    assert primary.endswith("applied") or primary == "in line (primary)", outputs
    with login(lab, "wiki", "wiki") as wiki:
        assert wiki.execute("select current_user, current_database()").fetchone() == ("wiki", "wiki")
        wiki.execute("create table if not exists pages (title text)")
        wiki.execute("insert into pages values ('Main Page')")
        assert wiki.execute("select similarity('wiki', 'wika') > 0").fetchone()[0] is True  # pg_trgm
    with login(lab, "js_app", "js") as js:
        js.execute("set role js_owner")
        js.execute("create table if not exists notes (body text)")
    # Read-only on the replicas, same credentials.
    with login(lab, "wiki", "wiki", port=lab.spec.haproxy.replica_port) as replica:
        assert replica.execute("select pg_is_in_recovery()").fetchone()[0] is True
    # One application cannot even connect to the other's database (CONNECT revoked from PUBLIC).
    for role, dbname in (("wiki", "js"), ("js_app", "wiki"), ("app", "wiki"), ("wiki", "app")):
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            login(lab, role, dbname)
    # The group role has no password and cannot log in (PostgreSQL does not say which).
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect(lab, lab.spec.haproxy.primary_port, user="js_owner", password="x" * 20, dbname="js")
    attributes = primary_sql(
        lab,
        "select string_agg(concat_ws(':', rolname, rolcanlogin, rolsuper, rolcreaterole, rolcreatedb,"
        " rolconnlimit, rolpassword is null), ',' order by rolname)"
        " from pg_authid where rolname in ('wiki', 'js_app', 'js_owner')",
    )
    # name:login:superuser:createrole:createdb:connection limit:no password
    assert attributes == "js_app:t:f:f:f:-1:f,js_owner:f:f:f:f:-1:t,wiki:t:f:f:f:20:f"

    # --- B: rotate wiki's password; an allow-list without the lab's client ------------------
    # Opened on the primary's PostgreSQL itself: what is tested is PostgreSQL's password check,
    # not the VIP (on this loaded machine keepalived's check may time out and move it).
    session = login(
        lab, "wiki", "wiki", port=lab.spec.postgres.port, host=str(lab.spec.node(_leader(lab)).ip)
    )
    old_password = lab.secrets().role_password("wiki")
    rotated = [{**ROLES[0], "rotation": 1}, *ROLES[1:]]
    outputs = apply(
        lab, spec_with(lab, databases=DATABASES, roles=rotated, clients={"allowFrom": ["192.0.2.0/24"]})
    )
    changes = [line for lines in outputs.values() for line in lines if "in line" not in line]
    assert any("set_password wiki" in line for line in changes), outputs
    # Nothing else changed: the step is idempotent for everything not edited.
    assert not [c for c in changes if "set_password wiki" not in c and "applied" not in c], outputs
    new_password = lab.secrets().role_password("wiki")
    assert new_password != old_password
    # HAProxy drops the lab's client before PostgreSQL sees it, on both ports.
    for port in (lab.spec.haproxy.primary_port, lab.spec.haproxy.replica_port):
        with pytest.raises(
            psycopg.OperationalError, match=r"Connection reset by peer|server closed the connection"
        ):
            login(lab, "wiki", "wiki", port=port)
    # Straight to the primary's PostgreSQL (not through HAProxy): the new password in, the old one out.
    primary_ip = str(lab.spec.node(_leader(lab)).ip)
    with login(lab, "wiki", "wiki", port=lab.spec.postgres.port, host=primary_ip) as fresh:
        assert fresh.execute("select count(*) from pages").fetchone()[0] >= 1
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        login(lab, "wiki", "wiki", port=lab.spec.postgres.port, host=primary_ip, password=old_password)
    # The session opened before the rotation keeps working (the overlap).
    with session:
        assert session.execute("select count(*) from pages").fetchone()[0] >= 1

    # --- C: js absent; the allow-list gone -------------------------------------------------
    absent = [{**DATABASES[2], "state": "absent"}]
    roles = [rotated[0], {**ROLES[1], "state": "absent"}, {**ROLES[2], "state": "absent"}]
    outputs = apply(lab, spec_with(lab, databases=[*DATABASES[:2], *absent], roles=roles, clients=None))
    changes = [line for lines in outputs.values() for line in lines]
    for expected in ("drop_database js", "drop_role js_app", "drop_role js_owner"):
        assert any(expected in line for line in changes), outputs
    gone = primary_sql(
        lab,
        "select (select count(*) from pg_database where datname = 'js'),"
        " (select count(*) from pg_roles where rolname in ('js_app', 'js_owner'))",
    )
    assert gone == "0|0"
    for node in lab.spec.postgres_nodes:  # the replicas too
        assert local_sql(lab, node.name, "select count(*) from pg_database where datname = 'js'") == "0"
    # wiki untouched, reachable through the VIP again.
    with login(lab, "wiki", "wiki") as wiki:
        assert wiki.execute("select count(*) from pages").fetchone()[0] >= 1


def _leader(lab: Lab) -> str:
    from lab.observation import observe

    leader = observe.leader(lab)
    assert leader is not None
    return leader
