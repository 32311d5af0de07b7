"""MediaWiki on the cluster: Debian's own ``mediawiki`` package on an application server.

The application server is a machine of its own on the private network, no node
of the stack (as the restore drill's), booted from an image with Debian's
mediawiki, php-pgsql and php-cli. MediaWiki reaches PostgreSQL through the VIP,
libpq verifying the cluster's certificate and bounding its connection setup,
from a service file that ``putenv`` in LocalSettings.php names: the recipe of
docs/mediawiki.md.
"""

from __future__ import annotations

import asyncio
import subprocess
from ipaddress import IPv4Address

from pgha.databases import CLIENT_OPTIONS
from pgha.spec import Node

from ..cluster import Lab
from ..machines import ensure_image
from .backups import drill_node

# What the application server's image adds to the base image: MediaWiki 1.43 and
# PHP's PostgreSQL driver; php-cli (only recommended) runs the maintenance scripts.
PACKAGES = ("mediawiki", "php-pgsql", "php-cli")
APP_SERVER = "wiki-01"
CONF_DIR = "/etc/mediawiki"
CA_PATH = f"{CONF_DIR}/pgha-ca.crt"
RUN = ["php", "/usr/share/mediawiki/maintenance/run.php"]
ADMIN = "Admin"
SERVICE_FILE = f"{CONF_DIR}/pg_service.conf"
SERVICE_NAME = "pgha"
# libpq's settings, read from the service file: TLS verified against the cluster's CA, and
# the exported connection strings' options (connect_timeout, keepalives), which MediaWiki's
# own connection string cannot carry.
SERVICE_CONF = f"[{SERVICE_NAME}]\nsslmode=verify-full\nsslrootcert={CA_PATH}\n" + "".join(
    f"{name}={value}\n" for name, value in CLIENT_OPTIONS
)
# For the installer (environment) and LocalSettings.php (putenv, any PHP SAPI).
LIBPQ_ENV = {"PGSERVICEFILE": SERVICE_FILE, "PGSERVICE": SERVICE_NAME}
LOCAL_SETTINGS_LIBPQ = "\n# pgha: libpq's settings for the cluster (docs/mediawiki.md)\n" + "".join(
    f"putenv( '{name}={value}' );\n" for name, value in LIBPQ_ENV.items()
)
# Seconds beyond a command's own limit before the lab gives up on the machine.
EXEC_GRACE = 30


def app_server(lab: Lab) -> Node:
    """A free address of the private network, not the restore drill's."""
    taken = {n.ip for n in lab.spec.nodes} | {lab.spec.vip, lab.bridge_ip(), drill_node(lab).ip}
    free: list[IPv4Address] = [a for a in lab.spec.network.cidr.hosts() if a not in taken]
    return Node(name=APP_SERVER, host="app", ip=free[len(free) // 2], role="restore")


def boot(lab: Lab) -> Node:
    """Boot the application server afresh, its image built (and cached) on first use."""
    node = app_server(lab)
    lab.save_host_key(node)
    machine = lab.machine(node, seeded=True)
    machine.remove()  # leftovers of an earlier run: it must start fresh
    machine.boot(ensure_image(PACKAGES, log=lab.report))
    asyncio.run(lab.runner().wait_for_ssh(lab.target(node)))
    return node


def remove(lab: Lab) -> None:
    lab.machine(app_server(lab)).remove()


def run(
    lab: Lab,
    node: Node,
    argv: list[str],
    stdin: str = "",
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess:
    """``argv`` on the application server as www-data, with ``env`` added (never checked).

    ``timeout`` ends the command inside the machine (a process left behind would hold
    its connection and its transaction, and mislead what comes next).
    """
    assignments = [f"{k}={v}" for k, v in (env or {}).items()]
    limit = ["timeout", "--kill-after=5", f"{timeout:g}"]
    command = [*limit, "runuser", "-u", "www-data", "--", "env", *assignments, *argv]
    return lab.exec(node, command, input=stdin, capture_output=True, text=True, timeout=timeout + EXEC_GRACE)


def write_file(lab: Lab, node: Node, path: str, content: str, mode: str = "0640") -> None:
    """A root-owned file readable by www-data (PHP runs as it)."""
    lab.exec(
        node,
        ["install", "-o", "root", "-g", "www-data", "-m", mode, "/dev/stdin", path],
        input=content,
        text=True,
        check=True,
        timeout=30,
    )


def install(lab: Lab, node: Node, dbname: str, role: str) -> subprocess.CompletedProcess:
    """MediaWiki's CLI installer through the VIP, TLS verified; then LocalSettings.php names
    the same libpq service by putenv, so every later PHP process uses it too."""
    password = lab.secrets().role_password(role)
    write_file(lab, node, CA_PATH, lab.ca_path.read_text(), mode="0644")
    write_file(lab, node, SERVICE_FILE, SERVICE_CONF, mode="0644")
    write_file(lab, node, "/run/pgha-wiki-dbpass", password, mode="0640")
    write_file(lab, node, "/run/pgha-wiki-adminpass", "lab-" + password, mode="0640")
    lab.exec(node, ["rm", "-f", f"{CONF_DIR}/LocalSettings.php"], check=True, timeout=30)
    lab.exec(node, ["chgrp", "www-data", CONF_DIR], check=True, timeout=30)
    lab.exec(node, ["chmod", "g+w", CONF_DIR], check=True, timeout=30)
    argv = [
        *RUN,
        "install",
        "--dbtype=postgres",
        f"--dbserver={lab.spec.vip}",
        f"--dbport={lab.spec.haproxy.primary_port}",
        f"--dbname={dbname}",
        f"--dbuser={role}",
        "--dbpassfile=/run/pgha-wiki-dbpass",
        f"--confpath={CONF_DIR}",
        "--server=http://wiki.example.org",
        "--scriptpath=/mediawiki",
        "--passfile=/run/pgha-wiki-adminpass",
        "pgha lab wiki",
        ADMIN,
    ]
    result = run(lab, node, argv, env=LIBPQ_ENV, timeout=600)
    if result.returncode == 0:
        settings = lab.exec(
            node,
            ["cat", f"{CONF_DIR}/LocalSettings.php"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
        write_file(lab, node, f"{CONF_DIR}/LocalSettings.php", settings + LOCAL_SETTINGS_LIBPQ)
    return result


def edit(lab: Lab, node: Node, title: str, text: str) -> subprocess.CompletedProcess:
    """Save ``text`` as ``title`` (a new revision), as the wiki's admin."""
    return run(lab, node, [*RUN, "edit", f"--user={ADMIN}", "--summary=pgha lab", title], stdin=text)


def read(lab: Lab, node: Node, title: str) -> subprocess.CompletedProcess:
    """The current text of ``title`` (getText); fails for a page never saved."""
    return run(lab, node, [*RUN, "getText", title])
