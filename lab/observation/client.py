"""PostgreSQL clients inside the lab network, for tests and benchmarks."""

from __future__ import annotations

from typing import Any

import psycopg

from ..machines import LabAccess, inside

# libpq's TCP settings of a careful application: a dead peer is noticed in seconds,
# whether the client's data is unacknowledged (tcp_user_timeout) or it waits for an
# answer (keepalives). A query the old VIP holder acknowledged just before the VIP
# left it is never answered (that VM can no longer send from the VIP); the probe
# reaches the VIP's new holder, whose reset ends the wait (docs/pooler.md, "Limits").
TCP_OPTIONS: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 2,
    "keepalives_interval": 1,
    "keepalives_count": 2,
    "tcp_user_timeout": 5000,
}


def connect(
    lab: LabAccess, port: int, host: str | None = None, timeout: int = 3, **kwargs: Any
) -> psycopg.Connection:
    """A psycopg connection to ``host`` (default: the VIP) made from inside the lab namespace.

    TLS with the server's certificate checked against the lab's CA and the
    address dialled (``verify-full``), as a client of the VIP should; keyword
    arguments override any of it (the tests try what must fail). The login is
    the stack's first application database and its owner: the superuser has no
    network login. TCP as a careful application sets it (``TCP_OPTIONS``).
    """
    params: dict[str, Any] = {
        "host": host or str(lab.spec.vip),
        "port": port,
        **lab.client_login(),
        "connect_timeout": timeout,
        "sslmode": "verify-full",
        "sslrootcert": str(lab.ca_path),
        **TCP_OPTIONS,
    }
    params.update(kwargs)
    with inside(lab.network.path):
        return psycopg.connect(autocommit=True, **params)
