"""MediaWiki on the cluster: Debian's own ``mediawiki`` package on an application server.

The application server is a machine of its own on the private network, no node
of the stack (as the restore drill's), booted from an image with Debian's
mediawiki, php-pgsql and php-cli. MediaWiki reaches PostgreSQL through the VIP,
libpq verifying the cluster's certificate (``PGSSLMODE``/``PGSSLROOTCERT``,
set by ``putenv`` in LocalSettings.php): the recipe of docs/mediawiki.md.
"""

from __future__ import annotations

import asyncio
import subprocess
from ipaddress import IPv4Address

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
# libpq's settings, for the installer (environment) and LocalSettings.php (putenv, any PHP SAPI).
TLS_ENV = {"PGSSLMODE": "verify-full", "PGSSLROOTCERT": CA_PATH}
LOCAL_SETTINGS_TLS = (
    "\n# pgha: libpq verifies the cluster's certificate (docs/mediawiki.md)\n"
    f"putenv( 'PGSSLMODE={TLS_ENV['PGSSLMODE']}' );\n"
    f"putenv( 'PGSSLROOTCERT={CA_PATH}' );\n"
)


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
    """``argv`` on the application server as www-data, with ``env`` added (never checked)."""
    assignments = [f"{k}={v}" for k, v in (env or {}).items()]
    command = ["runuser", "-u", "www-data", "--", "env", *assignments, *argv]
    return lab.exec(node, command, input=stdin, capture_output=True, text=True, timeout=timeout)


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
    """MediaWiki's CLI installer through the VIP, TLS verified; then LocalSettings.php gets
    the same libpq settings by putenv, so every later PHP process verifies too."""
    password = lab.secrets().role_password(role)
    write_file(lab, node, CA_PATH, lab.ca_path.read_text(), mode="0644")
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
    result = run(lab, node, argv, env=TLS_ENV, timeout=600)
    if result.returncode == 0:
        settings = lab.exec(
            node,
            ["cat", f"{CONF_DIR}/LocalSettings.php"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
        write_file(lab, node, f"{CONF_DIR}/LocalSettings.php", settings + LOCAL_SETTINGS_TLS)
    return result


def edit(lab: Lab, node: Node, title: str, text: str) -> subprocess.CompletedProcess:
    """Save ``text`` as ``title`` (a new revision), as the wiki's admin."""
    return run(lab, node, [*RUN, "edit", f"--user={ADMIN}", "--summary=pgha lab", title], stdin=text)


def read(lab: Lab, node: Node, title: str) -> subprocess.CompletedProcess:
    """The current text of ``title`` (getText); fails for a page never saved."""
    return run(lab, node, [*RUN, "getText", title])
