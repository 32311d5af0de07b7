"""The step plan: order, no secrets on command lines, scripts that bash accepts."""

from __future__ import annotations

import json
import subprocess

from pgha import ClusterTls, cluster_steps, node_steps, phases
from pgha.plan import groups

# The steps that run on every database VM and nowhere else.
EVERY_DATABASE_VM = {
    *("etcd-health", "patroni", "haproxy"),
    *("keepalived", "fastpath", "host-maintenance", "leader-race"),
}


def test_phase_order(spec, secrets, tls):
    for node in spec.nodes:
        names = [s.name for s in node_steps(spec, node, secrets, tls)]
        # Cluster-wide changes are applied once, from the first PostgreSQL VM.
        config = ["patroni-config"] if node == spec.nodes[0] else []
        postgres = ["system", "etcd", "etcd-health", "patroni", "haproxy", "keepalived"]
        # pgha:fastPath is off here: its step only makes sure no agent or rule is left.
        postgres += ["fastpath", "host-maintenance", "leader-race", *config, "backup"]
        # Applications go through the primary, wherever it is: a step on every PostgreSQL VM.
        # pgha:import is off here: its step only makes sure no source password is left.
        postgres += ["databases", "pooler", "import", "monitoring"]
        # ...and checked, last, from the same VM.
        postgres += ["verify"] if node == spec.nodes[0] else []
        # The repository VM takes the backups: it alone creates the stanza.
        # ...and a pooler step that only disables a PgBouncer an image brought along.
        repository = ["system", "etcd", "backup", "backup-stanza", "pooler", "monitoring"]
        expected = {"postgres": postgres, "repository": repository}
        assert names == expected[node.role], node.name
    # No upgrade group until maintenance.upgrade asks for one.
    assert [{s.name for s in steps} for _, steps in phases(spec, secrets, tls)] == [
        set(group) for group in groups() if group != ("upgrade",)
    ]
    for _, steps in phases(spec, secrets, tls):
        nodes = {s.node for s in steps}
        names = {s.name for s in steps}
        if "backup-stanza" in names:
            # The stanza on the repository VM; the pooler step (pgha:pooler) beside it on every VM.
            assert {s.node for s in steps if s.name == "backup-stanza"} == {"backup-01"}
            assert {s.node for s in steps if s.name == "pooler"} == {n.name for n in spec.nodes}
        elif names <= {"patroni-config", "verify"}:
            assert nodes == {"psql-01"}
        elif names <= EVERY_DATABASE_VM:
            assert nodes == {n.name for n in spec.postgres_nodes}
        else:
            assert nodes == {n.name for n in spec.nodes}


def test_an_upgrade_generation_adds_the_upgrade_phase_last(dev_config, secrets, tls):
    from pgha import load_spec

    dev_config["maintenance"] = {"upgrade": 1}
    upgrading = load_spec(dev_config, "dev")
    # The upgrade is the last change; only the verify step comes after it.
    (_, last), (_, steps) = phases(upgrading, secrets, tls)[-1], phases(upgrading, secrets, tls)[-2]
    assert {s.name for s in last} == {"verify"}
    assert {s.name for s in steps} == {"upgrade"}
    assert sorted(s.node for s in steps) == sorted(n.name for n in upgrading.nodes)


def test_no_secret_outside_the_files_meant_for_it(spec, secrets, tls):
    generated = [*secrets.values(), *tls.private_keys()]
    secret_paths = set()
    for steps in cluster_steps(spec, secrets, tls).values():
        for step in steps:
            for value in generated:
                assert value not in step.command and value not in step.script
            for rendered in step.files:
                holds_secret = any(v in rendered.content for v in generated)
                assert holds_secret == rendered.secret, rendered.path
                if holds_secret:
                    assert rendered.mode in (0o600, 0o640), rendered.path
                    secret_paths.add(rendered.path)
    assert secret_paths == {
        "/etc/pgha/pgha-databases.json",
        "/etc/pgha/pgha-cluster-passwords.json",
        "/etc/patroni/config.yml",
        "/etc/haproxy/haproxy.cfg",
        "/etc/pgha/tls/etcd.pem",
        "/etc/pgha/tls/postgres.pem",
        "/etc/pgha/tls/patroni-etcd.pem",
        "/etc/pgha/tls/haproxy.pem",
        "/etc/pgha/tls/pgbackrest.pem",
        # The repository VM's: the repository passphrase.
        "/etc/pgbackrest.conf",
        # The verify probe's settings: pgha_verify's password.
        "/etc/pgha/verify.json",
        # PgBouncer's auth_file (pgha_pooler's password) and its key pair (pgha:pooler).
        "/etc/pgbouncer/userlist.txt",
        "/etc/pgha/tls/pgbouncer.pem",
        # PgBouncer's exporter's connection string (pgha_pooler's password; pgha:monitoring).
        "/etc/pgha/pgbouncer-exporter.env",
        # Root's keys that sign the etcd markers its agents act on (pgha.vmlib.etcd_markers).
        "/etc/pgha/host-maintenance-marker.key",
        "/etc/pgha/rolling-marker.key",
    }


def test_each_node_gets_only_its_own_key(spec, secrets, tls):
    for node in spec.nodes:
        bundle = "".join(s.stdin for s in node_steps(spec, node, secrets, tls))
        for other in spec.nodes:
            key = tls.node(other).private_key.replace("\n", "\\n")  # as JSON writes it
            assert (key in bundle) == (other == node), (node.name, other.name)
            if other.name in tls.etcd:
                key = tls.etcd_pair(other).private_key.replace("\n", "\\n")
                assert (key in bundle) == (other == node), (node.name, other.name)


def test_each_key_copy_belongs_to_the_service_that_reads_it(spec, secrets, tls):
    owners = {
        f.path: (f.owner, f.group, f.mode)
        for s in node_steps(spec, spec.nodes[0], secrets, tls)
        for f in s.files
        if f.path.startswith("/etc/pgha/tls/")
    }
    assert owners == {
        "/etc/pgha/tls/ca.crt": ("root", "root", 0o644),
        "/etc/pgha/tls/etcd.pem": ("etcd", "etcd", 0o600),
        "/etc/pgha/tls/postgres.pem": ("postgres", "postgres", 0o600),
        "/etc/pgha/tls/patroni-etcd.pem": ("postgres", "postgres", 0o600),
        "/etc/pgha/tls/haproxy.pem": ("root", "root", 0o600),
        "/etc/pgha/tls/pgbouncer.pem": ("postgres", "postgres", 0o600),
        "/etc/pgha/tls/pgbackrest.pem": ("postgres", "postgres", 0o600),
    }


def test_stdin_is_the_bundle_of_files(spec, secrets, tls):
    step = node_steps(spec, spec.nodes[0], secrets, tls)[3]
    bundle = json.loads(step.stdin)
    assert [f["path"] for f in bundle["files"]] == [f.path for f in step.files]
    assert node_steps(spec, spec.nodes[0], secrets, tls)[2].stdin == ""


def test_digest_follows_content(spec, secrets, tls, dev_config):
    from pgha import load_spec

    before = {s.name: s.digest for s in node_steps(spec, spec.nodes[0], secrets, tls)}
    dev_config["haproxy"] = {"checkRise": 3}
    changed = load_spec(dev_config, "dev")
    after = {s.name: s.digest for s in node_steps(changed, changed.nodes[0], secrets, tls)}
    # The verify step (on this VM) follows every change anywhere.
    assert {t for t in before if before[t] != after[t]} == {"haproxy", "verify"}


def test_scripts_parse_and_reload_only_on_change(spec, secrets, tls):
    for steps in cluster_steps(spec, secrets, tls).values():
        for step in steps:
            subprocess.run(["bash", "-n"], input=step.script, text=True, check=True)
            assert step.script.startswith("#!/bin/bash\n")
            assert "set -euo pipefail" in step.script
            if step.files:
                assert "install_files" in step.script.split("# --- end of library ---")[1]
            assert step.command.startswith("sudo -n /bin/bash -c ")


def test_steps_reload_only_when_files_changed(spec, secrets, tls):
    """Idempotency, read off the scripts: every restart/reload sits under a guard
    on what changed or on the service being down."""
    library = node_steps(spec, spec.nodes[0], secrets, tls)[0].script.split("# --- end of library ---")[0]
    for steps in cluster_steps(spec, secrets, tls).values():
        for step in steps:
            for script in (step.script.split("# --- end of library ---")[1], library):
                guard = ""
                for line in script.splitlines():
                    stripped = line.strip()
                    if stripped.startswith(("if ", "elif ")):
                        guard = stripped
                    if "systemctl restart" in stripped or "systemctl reload" in stripped:
                        guarded = any(g in guard for g in ("CHANGED", "changed ", "is-active"))
                        assert guarded, (step.name, line)


def test_a_new_certificate_reruns_only_the_steps_holding_it(spec, secrets, tls):
    """What a rotation re-runs: each service holding a copy of the node's pair (Patroni, HAProxy,
    pgBackRest, PgBouncer), or of its etcd pair (etcd, Patroni)."""
    node, other = spec.nodes[0], spec.nodes[1]
    # Any other key pair will do: here, another node's.
    reissued = ClusterTls(tls.ca_certificate, {**tls.nodes, node.name: tls.nodes[other.name]}, tls.etcd)
    etcd_reissued = ClusterTls(tls.ca_certificate, tls.nodes, {**tls.etcd, node.name: tls.etcd[other.name]})
    before = {s.name: s.digest for s in node_steps(spec, node, secrets, tls)}
    after = {s.name: s.digest for s in node_steps(spec, node, secrets, reissued)}
    assert {t for t in before if before[t] != after[t]} == {
        "patroni",
        "haproxy",
        "backup",
        "pooler",
        "verify",
    }
    after = {s.name: s.digest for s in node_steps(spec, node, secrets, etcd_reissued)}
    assert {t for t in before if before[t] != after[t]} == {"etcd", "patroni", "verify"}
