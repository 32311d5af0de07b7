#!/usr/bin/python3
"""pgha-cluster-passwords: Patroni's roles get a rotated password on the primary before any Patroni uses it.

Patroni sets the passwords of the superuser, ``replicator`` and ``rewind_user``
once, when it bootstraps the cluster. A rotated one (``pgha:secretRotation``)
must be in PostgreSQL before any VM's Patroni loads it, or a replica that
reconnects meanwhile is refused. The patroni step runs this on every database
VM right before it reloads Patroni: on the primary it sets each role whose
stored verifier does not match its password, as a SCRAM-SHA-256 verifier
(never the password: nothing in the server's log or ``pg_stat_activity``); on
a replica it waits until replication brings the same verifiers (or until it is
the primary itself, and then sets them). So every VM reloads only once the
primary accepts the new password. Open sessions are not touched: a password
is checked when a connection is made, so a walreceiver keeps streaming and
its next connection uses the new password.

Runs as the postgres OS user over the local socket (peer). The passwords come
from the settings file (postgres 0600), never from a command line; the output
names roles only. Standard library, python3-psycopg2 (Patroni's dependency)
and pgha's VM library (the verifier).
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import closing
from typing import Any

INSTALL_PATH = "/usr/local/lib/pgha/pgha-cluster-passwords"
SETTINGS_PATH = "/etc/pgha/pgha-cluster-passwords.json"
# How often a replica looks for the primary's verifiers: every VM then reloads within this of the others.
POLL_S = 0.5
# The shared library: on the VM under LIBRARY_ROOT (pgha/vmprograms.py), in the repository the package.
LIBRARY_ROOT = "/usr/local/lib/pgha"
sys.path.append(LIBRARY_ROOT)
from pgha.vmlib.scram import scram_matches, scram_verifier  # noqa: E402


def log(message: str) -> None:
    print(f"pgha-cluster-passwords: {message}", flush=True)


def pending(stored: dict[str, str | None], passwords: dict[str, str]) -> list[str]:
    """The roles whose stored verifier was not made from their password (a missing one is not ours)."""
    return sorted(r for r, p in passwords.items() if r in stored and not scram_matches(stored[r], p))


def snapshot(settings: dict[str, Any]) -> tuple[bool, dict[str, str | None]]:
    """(primary?, role -> stored verifier) from the local PostgreSQL, over the socket."""
    import psycopg2

    conn = psycopg2.connect(
        host=settings["socket_dir"],
        port=settings["port"],
        dbname="postgres",
        application_name="pgha-cluster-passwords",
        connect_timeout=5,
    )
    with closing(conn), conn.cursor() as cur:
        cur.execute("SELECT pg_is_in_recovery()")
        in_recovery = cur.fetchone()[0]
        cur.execute(
            "SELECT rolname, rolpassword FROM pg_authid WHERE rolname = ANY(%s)", (list(settings["roles"]),)
        )
        stored = {row[0]: row[1] for row in cur.fetchall()}
    return not in_recovery, stored


def set_passwords(settings: dict[str, Any], roles: list[str]) -> None:
    """ALTER ROLE … PASSWORD with a fresh verifier, one role at a time (each its own commit)."""
    import psycopg2
    from psycopg2 import sql

    conn = psycopg2.connect(
        host=settings["socket_dir"],
        port=settings["port"],
        dbname="postgres",
        application_name="pgha-cluster-passwords",
    )
    with closing(conn):
        conn.autocommit = True
        with conn.cursor() as cur:
            for role in roles:
                verifier = scram_verifier(settings["roles"][role])
                cur.execute(
                    sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(verifier))
                )


def database_errors() -> tuple[type[Exception], ...]:
    """What a refused or interrupted query raises: retried, not fatal."""
    import psycopg2

    return (psycopg2.Error,)


def run(settings: dict[str, Any]) -> int:
    """Set on the primary, or wait as a replica until replication shows it; 0 once in line."""
    errors = database_errors()
    deadline = time.monotonic() + settings.get("timeout", 300)
    waiting = ""
    while True:
        try:
            primary, stored = snapshot(settings)
            missing = sorted(set(settings["roles"]) - set(stored))
            todo = pending(stored, settings["roles"])
            if not todo:
                where = "primary" if primary else "replica"
                log(f"in line ({where})" + (f"; no role {', '.join(missing)}" if missing else ""))
                return 0
            if primary:
                set_passwords(settings, todo)
                log("set_password " + ", ".join(todo))
                continue
            waiting = "replica waiting for: " + ", ".join(todo)
        except errors as error:
            # PostgreSQL starting, a switchover under way (read-only): try again.
            lines = str(error).strip().splitlines()
            waiting = f"{type(error).__name__}: {lines[0] if lines else ''}"
        if time.monotonic() > deadline:
            print(f"pgha-cluster-passwords: timed out; {waiting}", file=sys.stderr)
            return 1
        time.sleep(POLL_S)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = args[0] if args else SETTINGS_PATH
    with open(path, encoding="utf-8") as handle:
        settings = json.load(handle)
    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
