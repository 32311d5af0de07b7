"""Where PostgreSQL under Patroni lives on a database VM: what the services built around it share.

pgBackRest (and the restore drill) reach PostgreSQL by its socket, read
Patroni's config file and REST API, install the same server packages and
keep Debian from creating a cluster of its own: from here, so that
``pgha.backup`` needs nothing of ``pgha.patroni``. Patroni's own renderer
(``pgha.patroni``) uses these same names and reads backup's archive
parameters and restore bootstrap from ``pgha.backup``: the flow is one way,
patroni -> backup -> this module.
"""

from __future__ import annotations

from .files import RenderedFile
from .spec import ClusterSpec, Node

# Debian's patroni.service reads this file.
CONFIG_PATH = "/etc/patroni/config.yml"
CREATECLUSTER_PATH = "/etc/postgresql-common/createcluster.d/pgha.conf"
SOCKET_DIR = "/var/run/postgresql"


def server_packages(spec: ClusterSpec) -> tuple[str, ...]:
    return (f"postgresql-{spec.postgres.version}",)


def rest_api_url(spec: ClusterSpec, node: Node) -> str:
    return f"https://{node.ip}:{spec.patroni.rest_api_port}"


def createcluster_file() -> RenderedFile:
    """Stops Debian's server package from creating and starting a 'main' cluster of its own."""
    return RenderedFile(
        CREATECLUSTER_PATH,
        "# Managed by pgha: Patroni or pgha-restore creates clusters, Debian must not.\n"
        "create_main_cluster = false\n",
    )
