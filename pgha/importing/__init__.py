"""Moving in (``pgha:import``): an existing PostgreSQL's databases copied into the cluster.

The step installs, on every PostgreSQL VM, the operator's tool ``pgha-import``
(``pgha_import.py``, shipped as it is), its settings, the source's CA and a
libpq passfile with the source role's password (postgres 0600). It starts
nothing: the operator runs ``check``, ``start``, ``status`` and ``cutover``
on the primary (docs/moving-in.md), because the cutover's moment is the
applications' to choose. Every VM gets the files, so the subscription, which
physical replication carries to the replicas, finds its passfile and CA on
whichever VM Patroni promotes. Without ``pgha:import`` the step removes them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from .. import vmprograms
from ..files import RenderedFile, Step, render_script
from ..postgres_server import SOCKET_DIR
from ..secrets import ClusterSecrets
from ..service import Service
from ..spec import ClusterSpec, ImportSpec, Node
from . import pgha_import

HERE = Path(__file__).resolve().parent
STEP = "import"
CA_PATH = "/etc/pgha/import-ca.pem"
PASSFILE_PATH = "/etc/pgha/import.pgpass"
# Where start keeps each database's schema fingerprint and table list for the cutover.
STATE_DIR = "/var/lib/postgresql/pgha-import"


def pgpass_field(text: str) -> str:
    """A .pgpass field: backslash and colon escaped."""
    return text.replace("\\", "\\\\").replace(":", "\\:")


def passfile(importing: ImportSpec, password: str) -> str:
    """One line for the source, any database: libpq reads it, nothing prints it."""
    host, port, user = (pgpass_field(str(v)) for v in (importing.host, importing.port, importing.user))
    return f"{host}:{port}:*:{user}:{pgpass_field(password)}\n"


def settings(spec: ClusterSpec) -> dict[str, Any]:
    """What the tool reads: the source (no secret), the databases and their owners, the local server."""
    importing = spec.importing
    assert importing is not None
    declared = {d.name: d for d in spec.databases}
    return {
        "source": {
            "host": importing.host,
            "port": importing.port,
            "user": importing.user,
            "sslrootcert": CA_PATH,
            "passfile": PASSFILE_PATH,
        },
        "databases": [
            {"name": name, "owner": declared[name].owner, "extensions": list(declared[name].extensions)}
            for name in importing.databases
        ],
        "method": importing.method,
        "cutover_timeout": importing.cutover_timeout_s,
        "socket_dir": SOCKET_DIR,
        "port": spec.postgres.port,
        "bin_dir": f"/usr/lib/postgresql/{spec.postgres.version}/bin",
        "state_dir": STATE_DIR,
    }


def files(spec: ClusterSpec, secrets: ClusterSecrets) -> list[RenderedFile]:
    """The tool, its settings (postgres 0600: the tool runs as postgres), the CA and the passfile."""
    importing = spec.importing
    assert importing is not None
    program, settings_file, *library = vmprograms.program_files(
        pgha_import, settings(spec), settings_mode=0o600
    )
    postgres = {"owner": "postgres", "group": "postgres"}
    return [
        program,
        dataclasses.replace(settings_file, **postgres),
        *library,
        RenderedFile(CA_PATH, importing.ca_certificate, mode=0o644),
        RenderedFile(
            PASSFILE_PATH, passfile(importing, secrets.import_password), mode=0o600, secret=True, **postgres
        ),
    ]


def steps(spec: ClusterSpec, node: Node, secrets: ClusterSecrets) -> list[Step]:
    if not node.runs_postgres:
        return []
    if spec.importing is None:
        paths = [pgha_import.INSTALL_PATH, pgha_import.SETTINGS_PATH, CA_PATH, PASSFILE_PATH]
        return [Step(node.name, STEP, render_script(HERE, "import-absent.sh.j2", STEP, paths=paths))]
    script = render_script(HERE, "import.sh.j2", STEP)
    return [Step(node.name, STEP, script, tuple(files(spec, secrets)))]


SERVICE = Service("import", step_names=(STEP,), steps=lambda t: steps(t.spec, t.node, t.secrets))
