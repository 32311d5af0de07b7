"""haproxy.cfg parsed into sections, then checked as HAProxy would read it."""

from __future__ import annotations

import json

from pgha import haproxy, vmprograms
from pgha.haproxy import save_state


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


def config_file(spec, node, secrets):
    from pgha import ClusterTls

    files = haproxy.files(spec, node, secrets, ClusterTls.placeholders(spec))
    return next(f for f in files if f.path == haproxy.CONFIG_PATH)


def config(spec, node, secrets) -> dict[str, list[str]]:
    return sections(config_file(spec, node, secrets).content)


def test_primary_listener(spec, secrets):
    primary = config(spec, spec.nodes[0], secrets)["listen primary"]
    assert "bind 10.0.0.4:5432" in primary and "bind 10.0.0.10:5432" in primary
    assert "option httpchk OPTIONS /primary" in primary
    assert "http-check expect status 200" in primary
    defaults = next(line for line in primary if line.startswith("default-server"))
    assert "on-marked-down shutdown-sessions" in defaults
    # A newly promoted primary is found within rise x downinter (docs/ha.md, "Failover timing").
    assert "downinter 500ms" in defaults and "rise 2" in defaults
    servers = [line.split()[1:3] for line in primary if line.startswith("server ")]
    assert servers == [
        ["psql-01", "10.0.0.4:5442"],
        ["psql-02", "10.0.0.3:5442"],
        ["psql-03", "10.0.0.2:5442"],
    ]
    assert all("check port 8008" in line for line in primary if line.startswith("server "))


def test_health_checks_are_https_verified_against_the_ca_and_the_name(spec, secrets):
    for section in ("listen primary", "listen replicas"):
        for line in config(spec, spec.nodes[0], secrets)[section]:
            if line.startswith("server "):
                name = line.split()[1]
                check = "check port 8008 check-ssl verify required ca-file /etc/pgha/tls/ca.crt"
                assert line.endswith(f"{check} verifyhost {name}"), line
                # Client traffic itself is TCP passthrough: PostgreSQL's own TLS, end to end.
                assert " ssl " not in f" {line} "


def test_replica_listener(spec, secrets):
    replicas = config(spec, spec.nodes[1], secrets)["listen replicas"]
    assert "bind 10.0.0.3:5433" in replicas and "bind 10.0.0.10:5433" in replicas
    assert "balance roundrobin" in replicas
    assert f"option httpchk OPTIONS /replica?lag={spec.haproxy.max_replica_lag_bytes}" in replicas


def test_pooler_needs_patroni_primary_and_a_live_pgbouncer(spec, secrets):
    """6432's servers pass only if Patroni says primary AND PgBouncer accepts a connection.

    5432/5433 keep Patroni's HTTP check alone: PgBouncer's state must never move them.
    """
    parsed = config(spec, spec.nodes[0], secrets)
    pooled = parsed["listen pooler"]
    checks = [
        line for line in pooled if line.startswith(("option tcp-check", "tcp-check ", "option httpchk"))
    ]
    assert checks == [
        "option tcp-check",
        'tcp-check connect port 8008 ssl comment "Patroni REST API"',
        'tcp-check send "OPTIONS /primary HTTP/1.0\\r\\n\\r\\n"',
        "tcp-check expect comment \"Patroni /primary\" rstring '^HTTP/1\\.[01] 200 '",
        'tcp-check connect port 6442 comment "PgBouncer"',
    ]
    assert not any(line.startswith("http-check") for line in pooled)
    # The HTTPS step is verified by the server line's settings (HAProxy applies them to a
    # "tcp-check connect ... ssl"); clients are sent to PgBouncer's own port.
    for line in (line for line in pooled if line.startswith("server ")):
        name = line.split()[1]
        assert line.split()[2].endswith(":6442")
        assert line.endswith(f"check-ssl verify required ca-file /etc/pgha/tls/ca.crt verifyhost {name}"), (
            line
        )
    for name in ("listen primary", "listen replicas"):
        section = parsed[name]
        assert not any("tcp-check" in line or "6442" in line for line in section), name
        assert sum(line.startswith("option httpchk") for line in section) == 1, name
        assert "http-check expect status 200" in section, name


def test_stats_and_prometheus_on_private_ip(spec, secrets):
    stats = config(spec, spec.nodes[2], secrets)["frontend stats"]
    assert "bind 10.0.0.2:7000 ssl crt /etc/pgha/tls/haproxy.pem" in stats
    # HAProxy's Prometheus metrics moved to the monitoring port (tests/core/test_monitoring.py).
    assert "prometheus-exporter" not in stats and "stats hide-version" in stats
    assert "monitor-uri /health" in stats
    assert "stats auth stats:stats-Secret-5" in stats


def test_tcp_mode(spec, secrets):
    assert "mode tcp" in config(spec, spec.nodes[0], secrets)["defaults"]


def test_files_are_not_world_readable(spec, secrets, tls):
    config_file, pem, *_ = haproxy.files(spec, spec.nodes[0], secrets, tls)
    assert config_file.mode == 0o640 and config_file.group == "haproxy" and config_file.secret
    assert (pem.path, pem.owner, pem.mode, pem.secret) == ("/etc/pgha/tls/haproxy.pem", "root", 0o600, True)


def test_keepalived_and_the_step_check_haproxy_over_verified_https(spec, secrets, tls):
    (step,) = haproxy.steps(spec, spec.nodes[0], secrets, tls)
    assert "curl -fsS -o /dev/null --cacert /etc/pgha/tls/ca.crt https://10.0.0.4:7000/health" in step.script


def test_reloads_keep_the_servers_check_states(spec, secrets, tls):
    """Otherwise every server starts UP after a reload: a write could reach a replica."""
    parsed = config(spec, spec.nodes[0], secrets)
    assert "server-state-file /var/lib/haproxy/server-state" in parsed["global"]
    assert "load-server-state-from-file global" in parsed["defaults"]
    files = {f.path: f for f in haproxy.files(spec, spec.nodes[0], secrets, tls)}
    dropin = files["/etc/systemd/system/haproxy.service.d/pgha.conf"].content
    reload = [line for line in dropin.splitlines() if line.startswith("ExecReload=")]
    # Check the config, save the states, then signal the master: in that order.
    assert reload == [
        "ExecReload=",
        "ExecReload=/usr/sbin/haproxy -Ws -f $CONFIG -c $EXTRAOPTS",
        "ExecReload=/usr/local/lib/pgha/haproxy-save-state",
        "ExecReload=/bin/kill -USR2 $MAINPID",
    ]
    assert "ExecStartPre=/bin/rm -f /var/lib/haproxy/server-state" in dropin
    saver = files["/usr/local/lib/pgha/haproxy-save-state"]
    assert saver.mode == 0o755 and saver.content == vmprograms.source(save_state)
    assert json.loads(files[save_state.SETTINGS_PATH].content) == {
        "admin_socket": "/run/haproxy/admin.sock",
        "state_file": "/var/lib/haproxy/server-state",
    }
    (step,) = haproxy.steps(spec, spec.nodes[0], secrets, tls)
    assert "if changed /etc/systemd/system/haproxy.service.d/pgha.conf; then" in step.script


def test_clients_allow_from_rejects_everyone_else_on_both_listeners(dev_config, secrets):
    from pgha import load_spec

    spec = load_spec(dev_config, "dev")
    for name in ("listen primary", "listen replicas"):
        assert not any("tcp-request" in line for line in config(spec, spec.nodes[0], secrets)[name])
    dev_config["clients"] = {"allowFrom": ["192.0.2.0/24", "10.0.0.1/32"]}
    spec = load_spec(dev_config, "dev")
    parsed = config(spec, spec.nodes[0], secrets)
    for name in ("listen primary", "listen replicas"):
        rules = [line for line in parsed[name] if line.startswith("tcp-request")]
        # ...plus the verify probe's VM and the VIP (its source when it holds the VIP), or a
        # restricted stack would fail its own verify phase.
        assert rules == [
            "tcp-request connection reject unless { src 192.0.2.0/24 10.0.0.1/32 10.0.0.4/32 10.0.0.10/32 }"
        ], name
    # Stats and metrics are not client ports: no client rule there.
    assert not any(line.startswith("tcp-request") for line in parsed["frontend stats"])
