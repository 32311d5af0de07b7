"""The step plan: order, no secrets on command lines, scripts that bash accepts."""

from __future__ import annotations

import json
import subprocess

from components.core import cluster_steps, node_steps, phases
from components.core.plan import PHASE_NAMES


def test_phase_order(spec, secrets):
    for node in spec.nodes:
        names = [s.name for s in node_steps(spec, node, secrets)]
        assert names == ["system", "etcd", "etcd-health", "patroni", "haproxy", "keepalived"]
    assert [p for p, _ in phases(spec, secrets)] == sorted(PHASE_NAMES)
    for _, steps in phases(spec, secrets):
        assert {s.node for s in steps} == {n.name for n in spec.nodes}


def test_no_secret_outside_the_files_meant_for_it(spec, secrets):
    for steps in cluster_steps(spec, secrets).values():
        for step in steps:
            for value in secrets.values():
                assert value not in step.command and value not in step.script
            for rendered in step.files:
                holds_secret = any(v in rendered.content for v in secrets.values())
                assert holds_secret == rendered.secret, rendered.path
                if holds_secret:
                    assert rendered.mode & 0o007 == 0, rendered.path


def test_stdin_is_the_bundle_of_files(spec, secrets):
    step = node_steps(spec, spec.nodes[0], secrets)[3]
    bundle = json.loads(step.stdin)
    assert [f["path"] for f in bundle["files"]] == [f.path for f in step.files]
    assert node_steps(spec, spec.nodes[0], secrets)[2].stdin == ""


def test_digest_follows_content(spec, secrets, dev_config):
    from components.core import load_spec

    before = {s.title: s.digest for s in node_steps(spec, spec.nodes[0], secrets)}
    dev_config["haproxy"] = {"checkRise": 3}
    changed = load_spec(dev_config, "dev")
    after = {s.title: s.digest for s in node_steps(changed, changed.nodes[0], secrets)}
    assert {t for t in before if before[t] != after[t]} == {"05-haproxy"}


def test_scripts_parse_and_reload_only_on_change(spec, secrets):
    for steps in cluster_steps(spec, secrets).values():
        for step in steps:
            subprocess.run(["bash", "-n"], input=step.script, text=True, check=True)
            assert step.script.startswith("#!/bin/bash\n")
            assert "set -euo pipefail" in step.script
            if step.files:
                assert "install_files" in step.script.split("# --- end of library ---")[1]
            assert step.command.startswith("sudo -n /bin/bash -c ")


def test_steps_reload_only_when_files_changed(spec, secrets):
    """Idempotency, read off the scripts: every restart/reload sits under a guard
    on what changed or on the service being down."""
    library = node_steps(spec, spec.nodes[0], secrets)[0].script.split("# --- end of library ---")[0]
    for steps in cluster_steps(spec, secrets).values():
        for step in steps:
            for script in (step.script.split("# --- end of library ---")[1], library):
                guard = ""
                for line in script.splitlines():
                    stripped = line.strip()
                    if stripped.startswith(("if ", "elif ")):
                        guard = stripped
                    if "systemctl restart" in stripped or "systemctl reload" in stripped:
                        assert "CHANGED" in guard or "is-active" in guard, (step.title, line)
