"""dev/architecture.md's "Add a service", checked: one folder plus one line in the order.

The toy exporter (tests/services/toy_exporter/) exists only here. Found where
records are looked for and named in ORDER (the two monkeypatches below, what a
real service does by living in pgha/ and adding its line), it appears in the
plan, in the image packages, in HAProxy's monitoring port and the scrape
configs, and as a Pulumi Command named by node and step, with no alias.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from pgha import ClusterSecrets, ClusterTls, image_packages, load_spec, monitoring, node_steps, plan, service
from tests.services import toy_exporter


def with_toy(order: tuple[str | tuple[str, ...], ...]) -> tuple[str | tuple[str, ...], ...]:
    """ORDER with the toy's one line, right after monitoring."""
    at = order.index("monitoring") + 1
    return (*order[:at], toy_exporter.STEP, *order[at:])


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "SEARCH_PACKAGES", (*service.SEARCH_PACKAGES, "tests.services"))
    monkeypatch.setattr(plan, "ORDER", with_toy(plan.ORDER))


def _steps(dev_config) -> dict[str, list[str]]:
    spec = load_spec(dev_config, "dev")
    secrets = ClusterSecrets.placeholders(r.name for r in spec.login_roles)
    tls = ClusterTls.placeholders(spec)
    return {n.name: [s.name for s in node_steps(spec, n, secrets, tls)] for n in spec.nodes}


def test_without_its_line_the_toy_is_nowhere(dev_config):
    spec = load_spec(dev_config, "dev")
    assert all(toy_exporter.STEP not in names for names in _steps(dev_config).values())
    assert toy_exporter.PACKAGE not in image_packages(spec)
    assert "toy" not in json.dumps(monitoring.scrape_configs(spec))


def test_the_toy_joins_the_plan_the_image_and_the_scrape_config(toy, dev_config):
    spec = load_spec(dev_config, "dev")
    for node in spec.nodes:
        names = _steps(dev_config)[node.name]
        if node.runs_postgres:
            # Where its line puts it: after monitoring, before verify (on the VM that runs it).
            assert names.index("monitoring") + 1 == names.index(toy_exporter.STEP)
        else:
            assert toy_exporter.STEP not in names
    assert toy_exporter.PACKAGE in image_packages(spec)
    (job,) = [c for c in monitoring.scrape_configs(spec) if c["metrics_path"] == "/metrics/toy"]
    assert job["job_name"] == "pgha-toy-dev"
    targets = monitoring.targets(spec)["pgha-toy"]
    assert [t["labels"]["node"] for t in targets] == [n.name for n in spec.postgres_nodes]
    secrets = ClusterSecrets.placeholders(r.name for r in spec.login_roles)
    haproxy_cfg = next(
        f.content
        for f in plan.node_files(spec, spec.nodes[0], secrets, ClusterTls.placeholders(spec))
        if f.path == "/etc/haproxy/haproxy.cfg"
    )
    assert f"server metrics_toy {toy_exporter.ADDRESS}" in haproxy_cfg
    assert "use_backend metrics_toy if { path /metrics/toy }" in haproxy_cfg


def test_the_toy_gets_a_command_named_by_node_and_step(toy):
    from tests.pulumi.harness import COMMAND, run_program, stack_file_config

    asyncio.set_event_loop(asyncio.new_event_loop())
    run = run_program(stack_file_config())
    assert run.error is None, run.errors
    commands = {c.name: c for c in run.of_type(COMMAND)}
    toys = sorted(name for name in commands if name.endswith(f"-{toy_exporter.STEP}"))
    assert toys == [f"{n}-{toy_exporter.STEP}" for n in ("psql-01", "psql-02", "psql-03")]
    urn = {name: c.urn for name, c in commands.items()}
    for name in toys:
        assert commands[name].aliases == []  # a new step never had a number
        # After every VM's monitoring step; the verify step waits for it.
        monitoring_steps = {urn[f"{n}-monitoring"] for n in ("psql-01", "psql-02", "psql-03", "backup-01")}
        assert monitoring_steps <= commands[name].dependencies
        assert urn[name] in commands["psql-01-verify"].dependencies
