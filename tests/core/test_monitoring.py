"""Monitoring: config, the metrics port, exporters, scrape configs, alert rules, dashboard, collector."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from pgha import ConfigError, load_spec, monitoring, node_files, node_steps
from pgha.haproxy import CONFIG_PATH as HAPROXY_CONFIG
from pgha.monitoring import collector

PROMTOOL = shutil.which("promtool")


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Debian's promtool (setup.sh installs the host's prometheus package)."""
    assert PROMTOOL, "promtool missing: run ./setup.sh (Debian's prometheus package)"
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, cwd=cwd, timeout=120)


# ---- config -------------------------------------------------------------------------------


def problems(config) -> list[str]:
    with pytest.raises(ConfigError) as error:
        load_spec(config, "dev")
    return error.value.problems


def test_dev_stack_monitoring(spec):
    assert spec.monitoring is not None
    assert [str(n) for n in spec.monitoring.allow_from] == ["10.0.0.1/32"]
    assert spec.monitoring.port == 9443


@pytest.mark.parametrize(
    ("allow", "message"),
    [
        ("10.0.0.1/32", "monitoring.allowFrom: is required: a non-empty list of CIDRs"),
        ([], "monitoring.allowFrom: is required: a non-empty list of CIDRs"),
        ([123], "monitoring.allowFrom[0]: expected a CIDR string"),
        (
            ["10.0.0.1/24"],
            "monitoring.allowFrom[0]: '10.0.0.1/24' is not an IPv4 network (10.0.0.1/24 has host bits set)",
        ),
        (["10.0.0.0/24\n"], "monitoring.allowFrom[0]: '10.0.0.0/24\\n' is not an IPv4 network"),
        (["10.0.0.0/24 }; bind *:80"], "monitoring.allowFrom[0]:"),
        (["::1/128"], "monitoring.allowFrom[0]: '::1/128' is not an IPv4 network"),
    ],
)
def test_bad_allow_from(dev_config, allow, message):
    dev_config["monitoring"] = {"allowFrom": allow}
    assert any(message in p for p in problems(dev_config)), problems(dev_config)


def test_monitoring_port_collision(dev_config):
    dev_config["monitoring"] = {"allowFrom": ["10.0.0.1/32"], "port": 7000}
    found = problems(dev_config)
    assert any("monitoring.port: port 7000 collides with pgha:haproxy.statsPort" in p for p in found), found


def test_monitoring_unknown_key(dev_config):
    dev_config["monitoring"] = {"allowFrom": ["10.0.0.1/32"], "scrapeEvery": 5}
    assert any("monitoring.scrapeEvery: unknown key" in p for p in problems(dev_config))


def test_render_refuses_bad_monitoring(render_edited_dev_stack, capsys):
    assert render_edited_dev_stack("      - 10.0.0.1/32", "      - 10.0.0.1/33") == 2
    assert "pgha:monitoring.allowFrom[0]: '10.0.0.1/33'" in capsys.readouterr().err


def test_without_monitoring_nothing_is_rendered(dev_config, secrets, tls):
    del dev_config["monitoring"]
    spec = load_spec(dev_config, "dev")
    for node in spec.nodes:
        paths = {f.path for f in node_files(spec, node, secrets, tls)}
        assert monitoring.SETTINGS_PATH not in paths
    haproxy = next(f for f in node_files(spec, spec.nodes[0], secrets, tls) if f.path == HAPROXY_CONFIG)
    assert "frontend monitoring" not in haproxy.content and "prometheus-exporter" not in haproxy.content


# ---- the metrics port ---------------------------------------------------------------------


def haproxy_config(spec, node, secrets, tls) -> str:
    return next(f.content for f in node_files(spec, node, secrets, tls) if f.path == HAPROXY_CONFIG)


def section(text: str, header: str) -> str:
    match = re.search(rf"^{re.escape(header)}\n((?:[ \t]+.*\n|\n)*?)(?=^\S|\Z)", text, re.MULTILINE)
    assert match, header
    return match.group(1)


def test_metrics_port_on_every_vm(spec, secrets, tls):
    for node in spec.nodes:
        text = haproxy_config(spec, node, secrets, tls)
        front = section(text, "frontend monitoring")
        assert f"bind {node.ip}:9443 ssl crt /etc/pgha/tls/haproxy.pem" in front
        # Checked before the TLS handshake, on the connection's source address.
        assert "tcp-request connection reject unless { src 10.0.0.1/32 }" in front
        assert "http-request deny unless METH_GET" in front
        paths = set(re.findall(r"use_backend \S+ if \{ path (\S+) \}", front))
        expected = {f"/metrics/{n}" for n in monitoring.sources(spec, node)} - {"/metrics/haproxy"}
        assert paths == expected, node.name
        if node.runs_postgres:
            assert "http-request use-service prometheus-exporter if { path /metrics/haproxy }" in front
        else:
            assert "prometheus-exporter" not in text and "listen primary" not in text


def test_stats_frontend_has_no_metrics_and_hides_the_version(spec, secrets, tls):
    """HAProxy's /metrics leaves the unauthenticated stats port."""
    stats = section(haproxy_config(spec, spec.nodes[0], secrets, tls), "frontend stats")
    assert "prometheus-exporter" not in stats and "/metrics" not in stats
    assert "stats hide-version" in stats


def test_backends_verify_tls_and_read_etcd_on_loopback_without_a_certificate(spec, secrets, tls):
    node = spec.nodes[0]
    text = haproxy_config(spec, node, secrets, tls)
    patroni = section(text, "backend metrics_patroni")
    assert "server metrics_patroni 10.0.0.4:8008 ssl verify required ca-file /etc/pgha/tls/ca.crt" in patroni
    assert "verifyhost psql-01" in patroni
    # etcd's metrics listener: HAProxy holds no etcd identity (etcd would refuse its certificate).
    etcd = section(text, "backend metrics_etcd")
    assert "server metrics_etcd 127.0.0.1:2381" in etcd and "crt " not in etcd and "2379" not in etcd
    for name in ("node", "postgres"):
        assert f"server metrics_{name} 127.0.0.1:" in section(text, f"backend metrics_{name}")


def test_exporters_listen_on_loopback_only(spec, secrets, tls):
    files = {f.path: f for f in node_files(spec, spec.nodes[0], secrets, tls)}
    node_unit = files["/etc/systemd/system/prometheus-node-exporter.service.d/pgha.conf"].content
    assert "--web.listen-address=127.0.0.1:9100" in node_unit
    assert "--collector.textfile.directory=/var/lib/pgha/metrics" in node_unit
    pg_unit = files["/etc/systemd/system/prometheus-postgres-exporter.service.d/pgha.conf"].content
    assert "--web.listen-address=127.0.0.1:9187" in pg_unit
    # Debian's /etc/default file (an empty DATA_SOURCE_NAME) would win over Environment=.
    assert "\nEnvironmentFile=\n" in pg_unit and "\nEnvironmentFile=\n" in node_unit
    # Peer authentication over the socket: no password anywhere.
    dsn = re.search(r'DATA_SOURCE_NAME=([^"]*)"', pg_unit).group(1)
    assert dsn == "host=/var/run/postgresql port=5442 user=prometheus dbname=postgres sslmode=disable"


def test_no_secret_in_a_readable_monitoring_file(spec, secrets, tls):
    """Secrets only in files that are 0600/0640 and owned by their service."""
    needles = [v for v in vars(secrets).values() if isinstance(v, str) and v]
    needles += list(secrets.role_passwords.values())
    for node in spec.nodes:
        for step in [
            s for s in __import__("pgha").node_steps(spec, node, secrets, tls) if s.name == "monitoring"
        ]:
            for rendered in step.files:
                if rendered.secret:
                    assert rendered.mode in (0o600, 0o640), rendered.path
                    assert rendered.owner == "root", rendered.path
                else:
                    assert not [n for n in needles if n in rendered.content], rendered.path
                    assert "PRIVATE KEY" not in rendered.content, rendered.path


def test_step_installs_drop_ins_before_the_packages(spec, secrets, tls):
    """A package's postinst starts its exporter: the loopback-only drop-in must already be there."""
    for node in spec.nodes:
        (step,) = [s for s in node_steps(spec, node, secrets, tls) if s.name == "monitoring"]
        body = step.script.split("# --- end of library ---", 1)[1]
        assert body.index("install_files") < body.index("install_missing prometheus-node-exporter")


# ---- what an existing Prometheus consumes ---------------------------------------------------


def test_targets_follow_the_services(spec):
    targets = monitoring.targets(spec)
    names = {job: sorted(t["labels"]["node"] for t in entries) for job, entries in targets.items()}
    assert names["pgha-node"] == ["backup-01", "psql-01", "psql-02", "psql-03"]
    for job in ("pgha-postgres", "pgha-pgbouncer", "pgha-patroni", "pgha-haproxy", "pgha-etcd"):
        assert names[job] == ["psql-01", "psql-02", "psql-03"], job
    entry = targets["pgha-etcd"][0]
    assert entry["labels"]["pgha_source"] == "etcd" and entry["labels"]["pgha_stack"] == "dev"


def write_prometheus(spec, root: Path, ca: str) -> Path:
    """Lay the stack output out as an operator would, under ``root`` instead of /."""
    output = monitoring.prometheus_output(spec, ca)
    for path, content in output["files"].items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content if isinstance(content, str) else json.dumps(content))
    configs = monitoring.scrape_configs(spec, directory=str(root / output["directory"].lstrip("/")))
    main = root / "prometheus.yml"
    rules = root / "rules.yml"
    shutil.copy(monitoring.RULES_PATH, rules)
    main.write_text(yaml.safe_dump({"rule_files": [str(rules)], "scrape_configs": configs}))
    return main


def test_scrape_config_passes_promtool(spec, tls, tmp_path):
    main = write_prometheus(spec, tmp_path, tls.ca_certificate)
    result = promtool("check", "config", str(main))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_config_can_fail(spec, tls, tmp_path):
    """Negative control: a target file missing its address is refused."""
    main = write_prometheus(spec, tmp_path, tls.ca_certificate)
    broken = next(tmp_path.rglob("pgha-node.json"))
    broken.write_text(json.dumps([{"targets": ["10.0.0.4:9443/x"], "labels": {}}]))
    result = promtool("check", "config", str(main))
    assert result.returncode != 0


# ---- alert rules --------------------------------------------------------------------------


WANTED_ALERTS = {
    "PghaNoLeader",
    "PghaFailover",
    "PghaFewerSyncStandbys",
    "PghaReplicationLag",
    "PghaWalArchivingFailing",
    "PghaBackupTooOld",
    "PghaEtcdNoQuorum",
    "PghaMemberDown",
    "PghaCertificateExpiring",
    "PghaVipNotHeld",
}


def rules() -> list[dict]:
    document = yaml.safe_load(monitoring.RULES_PATH.read_text())
    return [r for g in document["groups"] for r in g["rules"]]


def test_every_wanted_alert_exists_and_is_unit_tested():
    alerts = {r["alert"] for r in rules() if "alert" in r}
    assert alerts >= WANTED_ALERTS
    tests = yaml.safe_load((monitoring.HERE / "rules_test.yml").read_text())
    tested = {
        case["alertname"]
        for test in tests["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert alerts <= tested, alerts - tested


def test_promtool_check_rules():
    result = promtool("check", "rules", str(monitoring.RULES_PATH))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_rules():
    result = promtool("test", "rules", "rules_test.yml", cwd=monitoring.HERE)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("original", "broken"),
    [
        ("expr: pgha:primaries:count == 0 or", "expr: pgha:primaries:count == 5 or"),
        ("changes(patroni_postgres_timeline[10m])) > 0", "changes(patroni_postgres_timeline[10m])) > 1"),
        ("- time() < 21 * 86400", "- time() < 20 * 86400"),
        ("(pgbouncer_pools_client_maxwait_seconds) > 5", "(pgbouncer_pools_client_maxwait_seconds) > 50"),
        # A stopped PgBouncer: its target's up is 0 and pgbouncer_up is absent, never 0.
        ('(up{pgha_source="pgbouncer"} == 0 or pgbouncer_up == 0)', "(pgbouncer_up == 0)"),
        # ... and the pooler's loss is not PghaMemberDown's too.
        ('up{pgha_source=~".+",pgha_source!="pgbouncer"} == 0 or', 'up{pgha_source=~".+"} == 0 or'),
        # A whole VM lost is PghaMemberDown's: PghaPoolerDown must not page for it as well.
        ('(up{pgha_source=~".+"}) == 0)', '(up{pgha_source=~".+"}) == 5)'),
    ],
)
def test_promtool_test_rules_can_fail(tmp_path, original, broken):
    """Negative control: a rule with a wrong threshold fails its unit test."""
    text = monitoring.RULES_PATH.read_text()
    assert original in text
    (tmp_path / "rules.yml").write_text(text.replace(original, broken))
    shutil.copy(monitoring.HERE / "rules_test.yml", tmp_path / "rules_test.yml")
    result = promtool("test", "rules", "rules_test.yml", cwd=tmp_path)
    assert result.returncode != 0, result.stdout


# ---- dashboard ----------------------------------------------------------------------------

_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (labels, strings, ranges and functions removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = _GROUPING.sub("", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        follows = text[match.end() :].lstrip()[:1]
        if follows != "(" and match.group() not in _KEYWORDS:
            names.add(match.group())
    return names


def known_metrics() -> set[str]:
    recorded = {r["record"] for r in rules() if "record" in r}
    exported = set(monitoring.EXPORTER_METRICS) | set(monitoring.PGBOUNCER_METRICS)
    return exported | recorded | set(collector.HELP)


def test_metric_names_parser():
    assert metric_names('sum by (node) (rate(pg_x{a="b"}[1m])) - on (i) group_right () y == 1') == {
        "pg_x",
        "y",
    }


def test_dashboard_panels_read_known_metrics():
    dashboard = json.loads(monitoring.DASHBOARD_PATH.read_text())
    known = known_metrics()
    titles = [p["title"] for p in dashboard["panels"]]
    for wanted in ("Roles", "Write availability", "lag", "Connections", "WAL", "Backups", "etcd"):
        assert any(wanted.lower() in t.lower() for t in titles), wanted
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            assert names, target["expr"]
            assert names <= known, (panel["title"], names - known)


def test_dashboard_check_can_fail():
    """Negative control: a misspelt metric is caught."""
    assert metric_names("patroni_primry") - known_metrics() == {"patroni_primry"}


def test_rules_read_known_metrics():
    known = known_metrics()
    for rule in rules():
        names = metric_names(rule["expr"]) - {"time"}
        assert names <= known, (rule.get("alert") or rule.get("record"), names - known)


# ---- the collector ------------------------------------------------------------------------


def test_collector_reads_certificate_expiry(tls, tmp_path):
    from cryptography import x509

    (tmp_path / "ca.crt").write_text(tls.ca_certificate)
    (tmp_path / "notes.txt").write_text("ignored")
    (sample,) = collector.certificates(str(tmp_path))
    expected = x509.load_pem_x509_certificate(tls.ca_certificate.encode()).not_valid_after_utc
    assert sample == (
        "pgha_tls_cert_not_after_timestamp_seconds",
        {"path": str(tmp_path / "ca.crt")},
        expected.timestamp(),
    )


def test_collector_output_is_valid_exposition(tmp_path):
    samples = [
        ("pgha_vip_held", {"vip": "10.0.0.10"}, 1),
        ("pgha_tls_cert_not_after_timestamp_seconds", {"path": '/a"b\\c'}, 1.8e9),
        ("pgha_collector_last_run_timestamp_seconds", {}, 1796085301.25),
    ]
    text = collector.render(samples)
    result = subprocess.run(
        [PROMTOOL or "promtool", "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr + text
    assert 'pgha_tls_cert_not_after_timestamp_seconds{path="/a\\"b\\\\c"} 1800000000' in text
    target = tmp_path / "pgha.prom"
    collector.write_atomically(str(target), text)
    assert target.read_text() == text and oct(target.stat().st_mode & 0o777) == "0o644"


def test_collector_settings(spec):
    settings = {n.name: monitoring.collector_settings(spec, n) for n in spec.nodes}
    assert settings["psql-01"]["vip"] == "10.0.0.10"
    # Host-aware synchronous replication: one standby, on the other Proxmox host.
    assert settings["psql-01"]["syncStandbysConfigured"] == 1
    assert settings["psql-01"]["backupStatus"] is None
    assert settings["backup-01"]["backupStatus"] == "/usr/local/sbin/pgha-backup-status"
    assert settings["backup-01"]["vip"] is None and settings["backup-01"]["postgresPort"] is None


def test_no_postgres_exporter_where_there_is_no_postgres(spec, secrets, tls):
    """An image with every package (the lab's) must not leave it running on Debian's defaults."""
    backup_vm = spec.node("backup-01")
    (step,) = [s for s in node_steps(spec, backup_vm, secrets, tls) if s.name == "monitoring"]
    assert "systemctl disable -q --now prometheus-postgres-exporter" in step.script
    assert "prometheus-postgres-exporter.service.d" not in {f.path.split("/")[-2] for f in step.files}


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("prometheusDir", "relative/dir", "monitoring.prometheusDir: 'relative/dir' must be absolute"),
        ("prometheusDir", "/etc/x\n", "monitoring.prometheusDir:"),
        ("collectorIntervalS", 1, "monitoring.collectorIntervalS: 1 is outside 5-300 seconds"),
        ("port", "x", "monitoring.port: expected an integer"),
    ],
)
def test_bad_monitoring_settings(dev_config, key, value, message):
    dev_config["monitoring"] = {"allowFrom": ["10.0.0.1/32"], key: value}
    assert any(message in p for p in problems(dev_config)), problems(dev_config)


# ---- PgBouncer's exporter (pgha:pooler) -------------------------------------------------------


def monitoring_step(spec, node, secrets, tls):
    (step,) = [s for s in node_steps(spec, node, secrets, tls) if s.name == "monitoring"]
    return step


PGBOUNCER_DROPIN = "/etc/systemd/system/prometheus-pgbouncer-exporter.service.d/pgha.conf"


def test_pgbouncer_exporter_files_modes_and_owners(spec, secrets, tls):
    for node in spec.postgres_nodes:
        step = monitoring_step(spec, node, secrets, tls)
        files = {f.path: f for f in step.files}
        dropin, env = files[PGBOUNCER_DROPIN], files[monitoring.PGBOUNCER_EXPORTER_ENV]
        # The drop-in: no secret, loopback only, Debian's /etc/default file dropped for ours.
        assert (dropin.mode, dropin.owner, dropin.secret) == (0o644, "root", False)
        lines = dropin.content.splitlines()
        assert lines[lines.index("[Service]") + 1 :] == [
            "EnvironmentFile=",
            "EnvironmentFile=/etc/pgha/pgbouncer-exporter.env",
            "ExecStart=",
            "ExecStart=/usr/bin/prometheus-pgbouncer-exporter"
            " --web.listen-address=127.0.0.1:9127 --log.level=warn",
            "# It exits when PgBouncer does not answer its first login (Debian's unit does not restart it).",
            "Restart=on-failure",
            "RestartSec=5s",
        ]
        # The connection string: pgha_pooler (a stats user) over TLS verify-full to this VM's
        # PgBouncer; it holds the password, so root 0600 (systemd reads it) and secret.
        assert (env.path, env.mode, env.owner, env.group, env.secret) == (
            "/etc/pgha/pgbouncer-exporter.env",
            0o600,
            "root",
            "root",
            True,
        )
        assert (
            f"PGBOUNCER_EXPORTER_CONNECTION_STRING='postgres://pgha_pooler:pooler-Secret-8@{node.ip}:6442"
            "/pgbouncer?sslmode=verify-full&sslrootcert=/etc/pgha/tls/ca.crt&connect_timeout=5'\n"
        ) in env.content
        # Installed after its drop-in (the postinst starts it), restarted when either changes,
        # and the step waits until it has logged in to PgBouncer.
        body = step.script.split("# --- end of library ---", 1)[1]
        packages = "prometheus-node-exporter prometheus-postgres-exporter prometheus-pgbouncer-exporter"
        assert f"install_missing {packages}" in body
        assert body.index("install_files") < body.index("prometheus-pgbouncer-exporter")
        assert f"if changed {PGBOUNCER_DROPIN} /etc/pgha/pgbouncer-exporter.env ||" in body
        assert "grep -qx 'pgbouncer_up 1'" in body
        assert "pooler-Secret-8" not in step.script and step.has_secrets


def test_pgbouncer_metrics_behind_the_monitoring_port(spec, secrets, tls):
    for node in spec.nodes:
        front = section(haproxy_config(spec, node, secrets, tls), "frontend monitoring")
        served = "use_backend metrics_pgbouncer if { path /metrics/pgbouncer }" in front
        assert served == node.runs_postgres, node.name
    text = haproxy_config(spec, spec.nodes[0], secrets, tls)
    assert "server metrics_pgbouncer 127.0.0.1:9127" in section(text, "backend metrics_pgbouncer")


def test_pgbouncer_scrape_job_and_targets(spec, tls, tmp_path):
    output = monitoring.prometheus_output(spec, tls.ca_certificate)
    targets = output["files"]["/etc/prometheus/pgha/dev/pgha-pgbouncer.json"]
    assert [t["targets"] for t in targets] == [["10.0.0.4:9443"], ["10.0.0.3:9443"], ["10.0.0.2:9443"]]
    assert {t["labels"]["pgha_source"] for t in targets} == {"pgbouncer"}
    (job,) = [c for c in output["scrapeConfigs"] if c["job_name"] == "pgha-pgbouncer-dev"]
    assert job["metrics_path"] == "/metrics/pgbouncer" and job["scheme"] == "https"
    assert job["file_sd_configs"] == [{"files": ["/etc/prometheus/pgha/dev/pgha-pgbouncer.json"]}]


def test_without_the_pooler_no_pgbouncer_exporter(dev_config, secrets, tls):
    from pgha import image_packages

    del dev_config["pooler"]
    spec = load_spec(dev_config, "dev")
    assert "prometheus-pgbouncer-exporter" not in image_packages(spec)
    assert all("pgbouncer" not in monitoring.sources(spec, node) for node in spec.nodes)
    assert not any("pgbouncer" in c["job_name"] for c in monitoring.scrape_configs(spec))
    assert not any("pgbouncer" in path for path in monitoring.prometheus_output(spec, "CA")["files"])
    for node in spec.postgres_nodes:
        step = monitoring_step(spec, node, secrets, tls)
        assert not [f for f in step.files if "pgbouncer" in f.path]
        # One left by an earlier pooler (or an image) is stopped, not left on Debian's defaults.
        assert "systemctl disable -q --now prometheus-pgbouncer-exporter" in step.script
        assert "/metrics/pgbouncer" not in haproxy_config(spec, node, secrets, tls)


def test_pgbouncer_exporter_in_the_image_with_monitoring_and_pooler(spec, secrets, tls):
    from pgha import image_packages

    assert "prometheus-pgbouncer-exporter" in image_packages(spec)
    # Where there is no PgBouncer, one from the image is disabled.
    step = monitoring_step(spec, spec.node("backup-01"), secrets, tls)
    assert "systemctl disable -q --now prometheus-pgbouncer-exporter" in step.script
    assert not [f for f in step.files if "pgbouncer" in f.path]
