"""A toy exporter: the whole of a new service, as dev/architecture.md's "Add a service" shows it.

One folder: a step that installs its package and its settings, and a metrics
source that HAProxy's monitoring port serves and Prometheus scrapes. Plus one
line in pgha.plan.ORDER (tests/core/test_add_a_service.py adds it).
"""

from __future__ import annotations

from pathlib import Path

from pgha.files import RenderedFile, Step, render_script
from pgha.service import MetricsSource, Service, Target

HERE = Path(__file__).resolve().parent
STEP = "toy-exporter"
PACKAGE = "prometheus-toy-exporter"
ADDRESS = "127.0.0.1:9999"
SETTINGS_PATH = "/etc/default/prometheus-toy-exporter"


def steps(target: Target) -> list[Step]:
    if target.spec.monitoring is None or not target.node.runs_postgres:
        return []
    script = render_script(HERE, "toy-exporter.sh.j2", STEP, package=PACKAGE)
    settings = RenderedFile(SETTINGS_PATH, f'ARGS="--web.listen-address={ADDRESS}"\n')
    return [Step(target.node.name, STEP, script, (settings,))]


SERVICE = Service(
    "toy-exporter",
    step_names=(STEP,),
    steps=steps,
    packages=lambda spec: (PACKAGE,) if spec.monitoring else (),
    metrics=(
        MetricsSource(
            "toy",
            loss_alert="PghaMemberDown",
            serves=lambda spec, node: node.runs_postgres,
            address=lambda spec, node: ADDRESS,
        ),
    ),
)
