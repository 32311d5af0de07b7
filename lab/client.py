"""PostgreSQL clients inside the lab network, for tests and benchmarks."""

from __future__ import annotations

from typing import Any

import psycopg

from components.core.secrets import SUPERUSER

from .cluster import Lab
from .inside import inside


def connect(
    lab: Lab, port: int, host: str | None = None, timeout: int = 3, **kwargs: Any
) -> psycopg.Connection:
    """A psycopg connection to ``host`` (default: the VIP) made from inside the lab namespace."""
    with inside(lab.network.path):
        return psycopg.connect(
            host=host or str(lab.spec.vip),
            port=port,
            user=SUPERUSER,
            password=lab.secrets().superuser_password,
            dbname="postgres",
            connect_timeout=timeout,
            autocommit=True,
            **kwargs,
        )
