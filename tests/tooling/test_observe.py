"""lab/observation/observe.py: when the lab counts as ready for the next fault."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from lab.observation import observe
from pgha import ClusterSpec


def _status(leader: str, sync: str, vip: str | None = "psql-01") -> dict[str, Any]:
    nodes = []
    for name, host in (("psql-01", "pve1"), ("psql-02", "pve2"), ("psql-03", "pve1")):
        role = "leader" if name == leader else "sync_standby" if name == sync else "replica"
        state = "running" if name == leader else "streaming"
        nodes.append({"name": name, "host": host, "role": role, "state": state, "tags": {}})
    return {"nodes": nodes, "vipHolder": vip}


def test_a_sync_standby_on_the_primarys_own_host_is_not_ready(spec: ClusterSpec) -> None:
    """CI once crashed pve1 while /sync still named psql-03 (pve1) after a switchover to
    psql-01: psql-02 could not be promoted and writes stopped for 131 s."""
    lab = SimpleNamespace(spec=spec)
    assert observe.is_healthy(lab, _status("psql-01", sync="psql-02"))  # type: ignore[arg-type]
    assert not observe.is_healthy(lab, _status("psql-01", sync="psql-03"))  # type: ignore[arg-type]
    assert observe.is_healthy(lab, _status("psql-02", sync="psql-03"))  # type: ignore[arg-type]
    assert not observe.is_healthy(lab, _status("psql-02", sync="psql-03", vip=None))  # type: ignore[arg-type]
