"""lab/observation/observe.py: when the lab counts as ready for the next fault."""

from __future__ import annotations

import dataclasses
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


def test_lab_status_says_which_host_loss_is_survived(spec: ClusterSpec, monkeypatch, capsys) -> None:
    """`python -m lab status` prints the stack output failureDomains, one line per host."""
    import lab.__main__ as cli
    from pgha.topology import failure_domains

    view = {
        "vip": "10.0.0.10",
        "vipHolder": "psql-01",
        "nodes": [],
        "etcd": {"psql-01": True, "psql-02": True, "psql-03": True},
    }
    fake = SimpleNamespace(spec=dataclasses.replace(spec, backup=None), status=lambda: dict(view))
    monkeypatch.setattr(cli, "Lab", lambda stack, beside=None: fake)
    assert cli.main(["status"]) == 0
    printed = capsys.readouterr().out.splitlines()
    domains = failure_domains(spec)
    assert set(domains) == {"pve1", "pve2"}
    for host, consequence in domains.items():
        assert f"if {host} is lost: {consequence}" in printed
    assert any("NOT survived" in line and "pve1" in line for line in printed)
