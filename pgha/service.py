"""What each service declares once: its steps, its packages, its metrics sources.

Every service package (``pgha/<service>/__init__.py``) ends with one
``SERVICE = Service(...)``; :func:`discover` finds them by walking the ``pgha``
package's subpackages, so adding a service is one folder plus its step names in
:data:`pgha.plan.ORDER` (dev/architecture.md, "Add a service"). Nothing here
imports a service: the records point at their own functions.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .files import Step
from .pki import ClusterTls
from .secrets import ClusterSecrets
from .spec import ClusterSpec, Node

# Where records are looked for: the subpackages of these packages.
SEARCH_PACKAGES: tuple[str, ...] = (__package__ or "pgha",)


@dataclass(frozen=True)
class Target:
    """Everything a service's steps are built from, for one VM."""

    spec: ClusterSpec
    node: Node
    secrets: ClusterSecrets
    tls: ClusterTls
    # The digests of every step of the cluster but the whole-cluster ones (verify's fingerprint).
    cluster_digests: Callable[[], list[str]]


@dataclass(frozen=True)
class MetricsSource:
    """One metrics path of a VM's monitoring port (HAProxy's), one Prometheus job.

    ``address`` is where HAProxy finds the exporter on the VM; None means HAProxy's
    own prometheus-exporter. ``tls``: the upstream speaks HTTPS, verified against
    the cluster's CA; ``client_cert``: it wants the VM's certificate too.
    ``loss_alert`` names the rule in ``pgha/monitoring/rules.yml`` that fires when
    this source is lost (a test checks that it exists).
    """

    name: str
    loss_alert: str
    serves: Callable[[ClusterSpec, Node], bool]
    address: Callable[[ClusterSpec, Node], str] | None = None
    tls: bool = False
    client_cert: bool = False
    # Installed (by the service's own step) wherever the source is served; also in images.
    packages: tuple[str, ...] = ()

    @property
    def job(self) -> str:
        return f"pgha-{self.name}"

    @property
    def path(self) -> str:
        return f"/metrics/{self.name}"


def _no_steps(target: Target) -> list[Step]:
    return []


def _no_packages(spec: ClusterSpec) -> tuple[str, ...]:
    return ()


@dataclass(frozen=True)
class Service:
    """A service as the plan sees it; ``step_names`` are the names its steps may have.

    ``whole_cluster``: its steps are built after every other step of the cluster
    (from :attr:`Target.cluster_digests`) and check the cluster as a whole (verify).
    """

    name: str
    step_names: tuple[str, ...] = ()
    steps: Callable[[Target], Iterable[Step]] = _no_steps
    packages: Callable[[ClusterSpec], Iterable[str]] = _no_packages
    metrics: tuple[MetricsSource, ...] = field(default=())
    whole_cluster: bool = False


_found: dict[tuple[str, ...], tuple[Service, ...]] = {}


def discover(packages: tuple[str, ...] | None = None) -> tuple[Service, ...]:
    """Every ``SERVICE`` record of the subpackages of ``packages``, by package name."""
    search = SEARCH_PACKAGES if packages is None else packages
    if search not in _found:
        records = []
        for name in search:
            package = importlib.import_module(name)
            for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
                if info.ispkg:
                    record = getattr(importlib.import_module(f"{name}.{info.name}"), "SERVICE", None)
                    if isinstance(record, Service):
                        records.append(record)
        _found[search] = tuple(records)
    return _found[search]
