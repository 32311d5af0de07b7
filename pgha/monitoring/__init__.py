"""Prometheus metrics, alert rules and a dashboard for the cluster (docs/monitoring.md).

Every VM runs Debian's ``prometheus-node-exporter``; PostgreSQL VMs also run
``prometheus-postgres-exporter``, and with ``pgha:pooler``
``prometheus-pgbouncer-exporter``, which logs in to PgBouncer's console as
``pgha_pooler`` (a ``stats_users`` entry: SHOW only) with a password it reads
from a root 0600 environment file. All listen on loopback only. HAProxy serves
one HTTPS port per VM (``monitoring.port``, the node's certificate) that
closes connections from outside ``monitoring.allowFrom`` before the TLS
handshake and maps one path per source: ``/metrics/node``,
``/metrics/postgres``, ``/metrics/pgbouncer``, ``/metrics/patroni`` (Patroni's REST API, verified),
``/metrics/haproxy`` (HAProxy's own exporter), ``/metrics/etcd`` (etcd's loopback
metrics listener: HAProxy holds no etcd identity). VMs without PostgreSQL (the backup
repository, the witness) get an HAProxy that serves only this port.

What no exporter reports (certificate expiry, VIP holder, configured sync
standbys, WAL archiving, backup age) comes from ``collector.py`` through
node_exporter's textfile directory. The scrape configs that an existing
Prometheus consumes (file_sd targets, TLS settings) are built here and
exported by the stack; ``rules.yml`` and ``dashboard.json`` ship beside them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from .. import backup, haproxy, metrics, patroni, pki, pooler, vmprograms
from ..files import RenderedFile, Step, render_script, render_template
from ..secrets import ClusterSecrets
from ..service import MetricsSource, Service
from ..spec import ClusterSpec, MonitoringSpec, Node
from . import collector

HERE = Path(__file__).resolve().parent
NODE_EXPORTER = "prometheus-node-exporter"
POSTGRES_EXPORTER = "prometheus-postgres-exporter"
PGBOUNCER_EXPORTER = "prometheus-pgbouncer-exporter"
NODE_EXPORTER_ADDRESS = "127.0.0.1:9100"
POSTGRES_EXPORTER_ADDRESS = "127.0.0.1:9187"
PGBOUNCER_EXPORTER_ADDRESS = pooler.EXPORTER_ADDRESS
# The exporter's connection string (a password): read by systemd as root.
PGBOUNCER_EXPORTER_ENV = "/etc/pgha/pgbouncer-exporter.env"
# The role postgres_exporter logs in as, over the Unix socket (peer: no password).
EXPORTER_ROLE = "prometheus"
UNIT_DIR = "/etc/systemd/system"
TEXTFILE_DIR = "/var/lib/pgha/metrics"
COLLECTOR_PATH = collector.INSTALL_PATH
SETTINGS_PATH = collector.SETTINGS_PATH
RULES_PATH = HERE / "rules.yml"
# HAProxy's own exporter (pgha.haproxy's metrics source).
HAPROXY_PATH = haproxy.METRICS.path
DASHBOARD_PATH = HERE / "dashboard.json"


# What the rules and the dashboard read from the exporters (and Prometheus's
# own ``up``); the lab test checks that each one has series in a real scrape.
EXPORTER_METRICS = (
    "up",
    "patroni_primary",
    "patroni_replica",
    "patroni_sync_standby",
    "patroni_cluster_unlocked",
    "patroni_postgres_running",
    "patroni_postgres_streaming",
    "patroni_postgres_timeline",
    "patroni_xlog_location",
    "patroni_xlog_received_location",
    "patroni_xlog_replayed_timestamp",
    "haproxy_backend_active_servers",
    "haproxy_frontend_current_sessions",
    "pg_stat_database_numbackends",
    "pg_stat_database_xact_commit",
    "etcd_server_has_leader",
    "etcd_server_leader_changes_seen_total",
    "etcd_mvcc_db_total_size_in_bytes",
)
# What PgBouncer's exporter must report when it reaches PgBouncer (pgha:pooler);
# the lab test checks these like EXPORTER_METRICS; the PghaPooler* rules and the
# dashboard's pooler panel read them.
PGBOUNCER_METRICS = (
    "pgbouncer_up",
    "pgbouncer_used_clients",
    "pgbouncer_config_max_client_connections",
    "pgbouncer_pools_client_active_connections",
    "pgbouncer_pools_client_waiting_connections",
    "pgbouncer_pools_server_active_connections",
    "pgbouncer_pools_server_idle_connections",
    "pgbouncer_pools_client_maxwait_seconds",
    "pgbouncer_stats_queries_pooled_total",
)


def sources(spec: ClusterSpec, node: Node) -> list[str]:
    """The names of the sources a VM serves (pgha.metrics, from the service records)."""
    return [source.name for source in metrics.sources(spec, node)]


def _settings(spec: ClusterSpec) -> MonitoringSpec:
    assert spec.monitoring is not None
    return spec.monitoring


def collector_settings(spec: ClusterSpec, node: Node) -> dict[str, Any]:
    """What collector.py looks at on this VM (its JSON data file)."""
    return {
        "out": f"{TEXTFILE_DIR}/pgha.prom",
        "tlsDir": pki.TLS_DIR,
        "vip": str(spec.vip) if node.runs_postgres else None,
        "syncStandbysConfigured": spec.sync_standbys if node.runs_postgres else None,
        "postgresPort": spec.postgres.port if node.runs_postgres else None,
        "socketDir": patroni.SOCKET_DIR,
        "backupStatus": backup.STATUS_PATH if backup.runs_backups(spec, node) else None,
        "backupMaxAgeSeconds": spec.backup.max_age_hours * 3600 if spec.backup else None,
    }


def pgbouncer_dsn(spec: ClusterSpec, node: Node, secrets: ClusterSecrets) -> str:
    """The exporter's way into this VM's PgBouncer console: TLS verify-full, as a stats user."""
    assert spec.pooler is not None
    password = quote(secrets.pooler_password, safe="")
    return (
        f"postgres://{pooler.STATS_USER}:{password}@{pooler.listen_address(node, spec)}/pgbouncer"
        f"?sslmode=verify-full&sslrootcert={pki.CA_PATH}&connect_timeout=5"
    )


def files(spec: ClusterSpec, node: Node, tls: pki.ClusterTls, secrets: ClusterSecrets) -> list[RenderedFile]:
    m = _settings(spec)
    context = {
        "node_exporter_address": NODE_EXPORTER_ADDRESS,
        "postgres_exporter_address": POSTGRES_EXPORTER_ADDRESS,
        "pgbouncer_exporter_address": PGBOUNCER_EXPORTER_ADDRESS,
        "env_path": PGBOUNCER_EXPORTER_ENV,
        "textfile_dir": TEXTFILE_DIR,
        "collector_path": COLLECTOR_PATH,
        "settings_path": SETTINGS_PATH,
        "interval_s": m.collector_interval_s,
        "socket_dir": patroni.SOCKET_DIR,
        "port": spec.postgres.port,
        "role": EXPORTER_ROLE,
    }
    result = [
        RenderedFile(
            f"{UNIT_DIR}/{NODE_EXPORTER}.service.d/pgha.conf",
            render_template(HERE, "node-exporter.conf.j2", **context),
        ),
        *vmprograms.program_files(collector, collector_settings(spec, node)),
        RenderedFile(
            f"{UNIT_DIR}/pgha-metrics.service", render_template(HERE, "pgha-metrics.service.j2", **context)
        ),
        RenderedFile(
            f"{UNIT_DIR}/pgha-metrics.timer", render_template(HERE, "pgha-metrics.timer.j2", **context)
        ),
    ]
    if node.runs_postgres:
        result.append(
            RenderedFile(
                f"{UNIT_DIR}/{POSTGRES_EXPORTER}.service.d/pgha.conf",
                render_template(HERE, "postgres-exporter.conf.j2", **context),
            )
        )
        if "pgbouncer" in sources(spec, node):
            env = render_template(
                HERE,
                "pgbouncer-exporter.env.j2",
                role=pooler.STATS_USER,
                dsn=pgbouncer_dsn(spec, node, secrets),
            )
            result += [
                RenderedFile(
                    f"{UNIT_DIR}/{PGBOUNCER_EXPORTER}.service.d/pgha.conf",
                    render_template(HERE, "pgbouncer-exporter.conf.j2", **context),
                ),
                RenderedFile(PGBOUNCER_EXPORTER_ENV, env, mode=0o600, owner="root", secret=True),
            ]
    else:
        # No HAProxy step here: the monitoring port is this HAProxy's only job.
        config = render_template(
            HERE, "haproxy-monitoring.cfg.j2", node=node, frontend=haproxy.frontend(spec, node)
        )
        result += [
            RenderedFile(haproxy.CONFIG_PATH, config, mode=0o640, group="haproxy"),
            pki.key_file(haproxy.PEM_PATH, tls.node(node), owner="root"),
        ]
    return result


def steps(spec: ClusterSpec, node: Node, tls: pki.ClusterTls, secrets: ClusterSecrets) -> list[Step]:
    if spec.monitoring is None or node.external:
        return []
    pgbouncer = "pgbouncer" in sources(spec, node)
    # The exporters of every source this VM serves (its services declare them).
    packages = [package for source in metrics.sources(spec, node) for package in source.packages]
    # Each exporter this VM runs, and the files it reads at start: a change restarts it.
    units = [NODE_EXPORTER, *((POSTGRES_EXPORTER,) if node.runs_postgres else ())]
    units += [PGBOUNCER_EXPORTER] if pgbouncer else []
    exporters = {unit: [f"{UNIT_DIR}/{unit}.service.d/pgha.conf"] for unit in units}
    if pgbouncer:
        exporters[PGBOUNCER_EXPORTER].append(PGBOUNCER_EXPORTER_ENV)
    script = render_script(
        HERE,
        "monitoring.sh.j2",
        "monitoring",
        packages=packages,
        haproxy_packages=haproxy.PACKAGES,
        node=node,
        textfile_dir=TEXTFILE_DIR,
        node_exporter=NODE_EXPORTER,
        postgres_exporter=POSTGRES_EXPORTER,
        pgbouncer_exporter=PGBOUNCER_EXPORTER,
        pgbouncer=pgbouncer,
        exporters=exporters,
        node_exporter_url=f"http://{NODE_EXPORTER_ADDRESS}/metrics",
        postgres_exporter_url=f"http://{POSTGRES_EXPORTER_ADDRESS}/metrics",
        pgbouncer_exporter_url=f"http://{PGBOUNCER_EXPORTER_ADDRESS}/metrics",
        unit_dir=UNIT_DIR,
        haproxy_config=haproxy.CONFIG_PATH,
        primary_url=patroni.rest_api_url(spec, node) + "/primary",
        ca_path=pki.CA_PATH,
        socket_dir=patroni.SOCKET_DIR,
        port=spec.postgres.port,
        role_exists_sql=f"SELECT 1 FROM pg_roles WHERE rolname = '{EXPORTER_ROLE}'",
        role_create_sql=f"CREATE ROLE {EXPORTER_ROLE} LOGIN IN ROLE pg_monitor",
    )
    return [Step(node.name, "monitoring", script, tuple(files(spec, node, tls, secrets)))]


# ---- what an existing Prometheus consumes -----------------------------------------------


def prometheus_dir(spec: ClusterSpec) -> str:
    return f"{_settings(spec).prometheus_dir}/{spec.stack}"


def targets(spec: ClusterSpec) -> dict[str, list[dict[str, Any]]]:
    """file_sd target lists, one per job: ``<prometheusDir>/<stack>/<job>.json``."""
    m = _settings(spec)
    lists: dict[str, list[dict[str, Any]]] = {source.job: [] for source in metrics.served(spec)}
    for node in spec.nodes:
        for source in metrics.sources(spec, node):
            labels = {
                "pgha_stack": spec.stack,
                "pgha_source": source.name,
                "node": node.name,
                "proxmox_host": node.host,
                "role": node.role,
            }
            lists[source.job].append({"targets": [f"{node.ip}:{m.port}"], "labels": labels})
    return lists


def scrape_configs(spec: ClusterSpec, directory: str | None = None) -> list[dict[str, Any]]:
    """Prometheus ``scrape_configs`` entries: HTTPS, the cluster's CA, one job per source.

    The CA goes in a file (``ca_file``): Debian 12's Prometheus 2.42 has no inline ``ca``.
    """
    base = directory or prometheus_dir(spec)
    return [
        {
            "job_name": f"{source.job}-{spec.stack}",
            "scheme": "https",
            "metrics_path": source.path,
            "tls_config": {"ca_file": f"{base}/ca.crt"},
            "file_sd_configs": [{"files": [f"{base}/{source.job}.json"]}],
        }
        for source in metrics.served(spec)
    ]


def prometheus_output(spec: ClusterSpec, ca_certificate: str) -> dict[str, Any]:
    """The stack output: what to write under prometheusDir, and what to add to prometheus.yml."""
    base = prometheus_dir(spec)
    return {
        "directory": base,
        "files": {
            f"{base}/ca.crt": ca_certificate,
            **{f"{base}/{job}.json": entries for job, entries in targets(spec).items()},
        },
        "scrapeConfigs": scrape_configs(spec),
        "ruleFiles": ["pgha/monitoring/rules.yml (in the pgha repository)"],
    }


SERVICE = Service(
    "monitoring",
    step_names=("monitoring",),
    steps=lambda t: steps(t.spec, t.node, t.tls, t.secrets),
    # A VM without PostgreSQL gets an HAProxy for the monitoring port alone.
    packages=lambda spec: haproxy.PACKAGES if spec.monitoring else (),
    metrics=(
        MetricsSource(
            "node",
            loss_alert="PghaMemberDown",
            serves=lambda spec, node: True,
            address=lambda spec, node: NODE_EXPORTER_ADDRESS,
            packages=(NODE_EXPORTER,),
        ),
        MetricsSource(
            "postgres",
            loss_alert="PghaMemberDown",
            serves=lambda spec, node: node.runs_postgres,
            address=lambda spec, node: POSTGRES_EXPORTER_ADDRESS,
            packages=(POSTGRES_EXPORTER,),
        ),
    ),
)
