"""The pure core of pgha: config → typed spec → every file and remote step.

No Pulumi imports here (a test checks it): the Pulumi components, the offline
renderer and the lab all call these same functions.
"""

from . import rolling
from .config import ConfigError, load_spec
from .files import RenderedFile, Step
from .pki import ClusterTls, LocalCa
from .plan import cluster_steps, image_packages, leave_step, node_files, node_steps, phases
from .secrets import ClusterSecrets
from .spec import ClusterSpec, Node
from .stackfile import load_stack

__all__ = [
    "ClusterSecrets",
    "ClusterSpec",
    "ClusterTls",
    "ConfigError",
    "LocalCa",
    "Node",
    "RenderedFile",
    "Step",
    "cluster_steps",
    "image_packages",
    "leave_step",
    "load_spec",
    "load_stack",
    "node_files",
    "node_steps",
    "phases",
    "rolling",
]
