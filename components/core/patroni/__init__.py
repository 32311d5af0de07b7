"""Patroni and the PostgreSQL it manages, from Debian's packages.

Patroni's YAML is built as data and dumped with PyYAML. Debian's
``patroni.service`` reads ``/etc/patroni/config.yml`` and restarts on
failure (unlike ``patroni@.service``, which does not), so that is the unit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .. import etcd
from ..files import RenderedFile, Step, render_script, render_template
from ..secrets import REPLICATION_USER, RESTAPI_USER, REWIND_USER, SUPERUSER, ClusterSecrets
from ..spec import ClusterSpec, Node

HERE = Path(__file__).resolve().parent
PHASE = 4
PACKAGES = ("postgresql-common", "patroni", "python3-etcd")
CONFIG_PATH = "/etc/patroni/config.yml"
CREATECLUSTER_PATH = "/etc/postgresql-common/createcluster.d/pgha.conf"
WATCHDOG_RULE_PATH = "/etc/udev/rules.d/60-pgha-watchdog.rules"
SOFTDOG_PATH = "/etc/modules-load.d/pgha-softdog.conf"

# Parameters every node starts with; stack config ``postgres.parameters`` wins.
DEFAULT_PARAMETERS: dict[str, Any] = {
    "password_encryption": "scram-sha-256",
    "wal_level": "replica",
    "hot_standby": "on",
    "wal_log_hints": "on",
    "max_wal_senders": 10,
    "max_replication_slots": 10,
    "wal_keep_size": "256MB",
    "max_connections": 200,
    "shared_buffers": "256MB",
    "hot_standby_feedback": "on",
}


def server_packages(spec: ClusterSpec) -> tuple[str, ...]:
    return (f"postgresql-{spec.postgres.version}",)


def rest_api_url(spec: ClusterSpec, node: Node) -> str:
    return f"http://{node.ip}:{spec.patroni.rest_api_port}"


def pg_hba(spec: ClusterSpec) -> list[str]:
    """Local peer for the postgres OS user, scram-sha-256 from the private network only.

    Patroni itself connects over loopback (IPv4 or IPv6, depending on how
    ``localhost`` resolves), hence the loopback lines for both.
    """
    cidr = spec.network.cidr
    lines = ["local all all peer"]
    for source in ("127.0.0.1/32", "::1/128", str(cidr)):
        lines.append(f"host replication {REPLICATION_USER} {source} scram-sha-256")
    for source in ("127.0.0.1/32", "::1/128", str(cidr)):
        lines.append(f"host all all {source} scram-sha-256")
    return lines


def config(spec: ClusterSpec, node: Node, secrets: ClusterSecrets) -> dict[str, Any]:
    pg, patroni = spec.postgres, spec.patroni
    parameters = {**DEFAULT_PARAMETERS, **pg.parameters}
    return {
        "scope": pg.scope,
        "namespace": "/service/",
        "name": node.name,
        "restapi": {
            "listen": f"{node.ip}:{patroni.rest_api_port}",
            "connect_address": f"{node.ip}:{patroni.rest_api_port}",
            "authentication": {"username": RESTAPI_USER, "password": secrets.restapi_password},
        },
        "etcd3": {"hosts": etcd.client_endpoints(spec)},
        "bootstrap": {
            "dcs": {
                "ttl": patroni.ttl,
                "loop_wait": patroni.loop_wait,
                "retry_timeout": patroni.retry_timeout,
                "maximum_lag_on_failover": patroni.maximum_lag_on_failover,
                "failsafe_mode": patroni.failsafe_mode,
                "synchronous_mode": patroni.synchronous_mode,
                "synchronous_mode_strict": False,
                "synchronous_node_count": spec.sync_standbys,
                "postgresql": {
                    "use_pg_rewind": True,
                    "use_slots": True,
                    "parameters": parameters,
                },
            },
            "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}, "data-checksums"],
        },
        "postgresql": {
            "listen": f"127.0.0.1,{node.ip}:{pg.port}",
            "connect_address": f"{node.ip}:{pg.port}",
            "data_dir": pg.data_dir,
            "bin_dir": pg.bin_dir,
            "pgpass": "/var/lib/postgresql/.pgpass.patroni",
            "authentication": {
                "superuser": {"username": SUPERUSER, "password": secrets.superuser_password},
                "replication": {
                    "username": REPLICATION_USER,
                    "password": secrets.replication_password,
                },
                "rewind": {"username": REWIND_USER, "password": secrets.rewind_password},
            },
            "parameters": {"unix_socket_directories": "/var/run/postgresql"},
            "pg_hba": pg_hba(spec),
        },
        # No /dev/watchdog (a container, a VM without softdog) is not fatal in
        # "automatic"; where it exists Patroni uses it to fence a hung primary.
        "watchdog": {"mode": patroni.watchdog, "device": "/dev/watchdog", "safety_margin": 5},
        "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False, "nosync": False},
    }


def files(spec: ClusterSpec, node: Node, secrets: ClusterSecrets) -> list[RenderedFile]:
    document = yaml.safe_dump(config(spec, node, secrets), sort_keys=False, default_flow_style=False)
    return [
        RenderedFile(
            CREATECLUSTER_PATH,
            "# Managed by pgha: Patroni creates the cluster, Debian must not.\ncreate_main_cluster = false\n",
        ),
        RenderedFile(SOFTDOG_PATH, "# Managed by pgha: a watchdog for Patroni.\nsoftdog\n"),
        RenderedFile(WATCHDOG_RULE_PATH, render_template(HERE, "watchdog.rules.j2")),
        RenderedFile(
            CONFIG_PATH,
            "# Managed by pgha.\n" + document,
            mode=0o600,
            owner="postgres",
            group="postgres",
            secret=True,
        ),
    ]


def steps(spec: ClusterSpec, node: Node, secrets: ClusterSecrets) -> list[Step]:
    if not node.runs_postgres:
        return []
    script = render_script(
        HERE,
        "patroni.sh.j2",
        "patroni",
        spec=spec,
        packages=PACKAGES,
        server_packages=server_packages(spec),
        health_url=rest_api_url(spec, node) + "/health",
    )
    return [Step(node.name, PHASE, "patroni", script, tuple(files(spec, node, secrets)))]
