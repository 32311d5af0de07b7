"""The base of every VM: cloud-init finished, kernel settings, common tools, the CA to trust.

The CA certificate comes first, before any service, so that every later
step's services can verify each other from their first start.
"""

from __future__ import annotations

from pathlib import Path

from .. import pki
from ..files import RenderedFile, Step, render_script, render_template
from ..spec import ClusterSpec, Node

HERE = Path(__file__).resolve().parent
PHASE = 1
PACKAGES = ("curl", "ca-certificates", "jq")
SYSCTL_PATH = "/etc/sysctl.d/90-pgha.conf"


def files(spec: ClusterSpec, node: Node, tls: pki.ClusterTls) -> list[RenderedFile]:
    return [
        RenderedFile(SYSCTL_PATH, render_template(HERE, "sysctl.conf.j2")),
        pki.ca_file(tls),
    ]


def steps(spec: ClusterSpec, node: Node, tls: pki.ClusterTls) -> list[Step]:
    script = render_script(HERE, "system.sh.j2", "system", packages=PACKAGES, sysctl_path=SYSCTL_PATH)
    return [Step(node.name, PHASE, "system", script, tuple(files(spec, node, tls)))]
