"""haproxy.cfg parsed into sections, then checked as HAProxy would read it."""

from __future__ import annotations

from components.core import haproxy


def sections(text: str) -> dict[str, list[str]]:
    parsed: dict[str, list[str]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        if not line.startswith(" "):
            current = line.strip()
            parsed[current] = []
        else:
            parsed[current].append(line.strip())
    return parsed


def config(spec, node, secrets) -> dict[str, list[str]]:
    (rendered,) = haproxy.files(spec, node, secrets)
    return sections(rendered.content)


def test_primary_listener(spec, secrets):
    primary = config(spec, spec.nodes[0], secrets)["listen primary"]
    assert "bind 10.0.0.4:5432" in primary and "bind 10.0.0.10:5432" in primary
    assert "option httpchk OPTIONS /primary" in primary
    assert "http-check expect status 200" in primary
    defaults = next(line for line in primary if line.startswith("default-server"))
    assert "on-marked-down shutdown-sessions" in defaults
    servers = [line.split()[1:3] for line in primary if line.startswith("server ")]
    assert servers == [
        ["psql-01", "10.0.0.4:5442"],
        ["psql-02", "10.0.0.3:5442"],
        ["psql-03", "10.0.0.2:5442"],
    ]
    assert all("check port 8008" in line for line in primary if line.startswith("server "))


def test_replica_listener(spec, secrets):
    replicas = config(spec, spec.nodes[1], secrets)["listen replicas"]
    assert "bind 10.0.0.3:5433" in replicas and "bind 10.0.0.10:5433" in replicas
    assert "balance roundrobin" in replicas
    assert f"option httpchk OPTIONS /replica?lag={spec.haproxy.max_replica_lag_bytes}" in replicas


def test_stats_and_prometheus_on_private_ip(spec, secrets):
    stats = config(spec, spec.nodes[2], secrets)["frontend stats"]
    assert "bind 10.0.0.2:7000" in stats
    assert "http-request use-service prometheus-exporter if { path /metrics }" in stats
    assert "monitor-uri /health" in stats
    assert "stats auth stats:stats-Secret-5" in stats


def test_tcp_mode(spec, secrets):
    assert "mode tcp" in config(spec, spec.nodes[0], secrets)["defaults"]


def test_file_is_not_world_readable(spec, secrets):
    (rendered,) = haproxy.files(spec, spec.nodes[0], secrets)
    assert rendered.mode & 0o007 == 0 and rendered.group == "haproxy" and rendered.secret
