"""One live lab for the whole session: up once, torn down even when tests fail."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from lab.cluster import Lab

LAB_TOOLS = ("systemd-nspawn", "debootstrap", "nsenter", "unshare")


def lab_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "the lab needs root"
    missing = [t for t in LAB_TOOLS if not shutil.which(t)]
    return f"missing {', '.join(missing)} (run ./setup.sh)" if missing else None


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    reason = lab_unavailable()
    if reason:
        pytest.skip(reason)
    # Another stack (same layout, own namespace) lets two checkouts test side by side.
    cluster = Lab(os.environ.get("PGHA_LAB_STACK", "dev"))
    cluster.down()  # leftovers of a crashed run
    try:
        cluster.up()
        yield cluster
    finally:
        cluster.down()
