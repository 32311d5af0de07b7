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


def running_lab(stack: str) -> Iterator[Lab]:
    """A stack's lab, up for the caller and torn down even when tests fail."""
    reason = lab_unavailable()
    if reason:
        pytest.skip(reason)
    cluster = Lab(stack)
    cluster.down()  # leftovers of a crashed run
    try:
        cluster.up()
        yield cluster
    finally:
        cluster.down()


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    # Another stack (same layout, own namespace) lets two checkouts test side by side.
    yield from running_lab(os.environ.get("PGHA_LAB_STACK", "dev"))
