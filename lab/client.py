"""PostgreSQL clients inside the lab network, for tests and benchmarks."""

from __future__ import annotations

from typing import Any

import psycopg

from .cluster import Lab
from .inside import inside


def connect(
    lab: Lab, port: int, host: str | None = None, timeout: int = 3, **kwargs: Any
) -> psycopg.Connection:
    """A psycopg connection to ``host`` (default: the VIP) made from inside the lab namespace.

    TLS with the server's certificate checked against the lab's CA and the
    address dialled (``verify-full``), as a client of the VIP should; keyword
    arguments override any of it (the tests try what must fail). The login is
    the stack's first application database and its owner: the superuser has no
    network login.
    """
    lab.tls()
    params: dict[str, Any] = {
        "host": host or str(lab.spec.vip),
        "port": port,
        **lab.client_login(),
        "connect_timeout": timeout,
        "sslmode": "verify-full",
        "sslrootcert": str(lab.ca_path),
    }
    params.update(kwargs)
    with inside(lab.network.path):
        return psycopg.connect(autocommit=True, **params)
