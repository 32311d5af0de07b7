"""The Pulumi program under mocks: what it would ask Proxmox and the VMs to do.

Each run executes a fresh ``__main__.py`` with the config from Pulumi.dev.yaml
(or a variant of it) and inspects the recorded registrations.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_proxmoxve as proxmoxve
import pytest
import yaml

from components.cluster import PghaCluster, PghaClusterArgs
from pgha import (
    ClusterSecrets,
    ClusterSpec,
    ClusterTls,
    leave_step,
    load_spec,
    node_steps,
    phases,
    pki,
)
from pgha.plan import groups
from pgha.spec import Node
from tests.pulumi.harness import (
    CERT_REQUEST,
    COMMAND,
    DEPLOY_PRIVATE_KEY,
    DEPLOY_PUBLIC_KEY,
    IMAGE,
    LOCALLY_SIGNED_CERT,
    PASSWORD,
    PRIVATE_KEY,
    SDN_APPLIER,
    SDN_SUBNET,
    SDN_VNET,
    SDN_ZONE_VLAN,
    SELF_SIGNED_CERT,
    SNIPPET,
    TLS_TYPES,
    VM,
    ProgramRun,
    clear_strings,
    is_secret,
    mock_cert_pem,
    mock_key_pem,
    run_program,
    stack_file_config,
    unwrap,
    use_mocks,
)

# The dev stack declares no databases: the default application role "app".
PLACEHOLDERS = ClusterSecrets.placeholders(["app"])
# The client options every exported connection string ends with (pgha.databases).
TCP = (
    "&connect_timeout=10&keepalives=1&keepalives_idle=10&keepalives_interval=5&keepalives_count=3"
    "&tcp_user_timeout=30000"
)


def tls_placeholders(spec: ClusterSpec) -> ClusterTls:
    return ClusterTls.placeholders(spec)


def mock_tls(spec: ClusterSpec) -> ClusterTls:
    """What ClusterCertificates hands the steps, given the mocks' certificates and keys."""
    return ClusterTls(
        ca_certificate=mock_cert_pem("pgha-ca"),
        nodes={
            n.name: pki.NodeTls(mock_cert_pem(f"{n.name}-tls-cert"), mock_key_pem(f"{n.name}-tls-key"))
            for n in spec.nodes
        },
        etcd={
            n.name: pki.NodeTls(
                mock_cert_pem(f"{n.name}-etcd-tls-cert"), mock_key_pem(f"{n.name}-etcd-tls-key")
            )
            for n in spec.nodes
            if n.uses_etcd
        },
    )


def pgha_namespace(config: dict[str, Any]) -> dict[str, Any]:
    return {k.removeprefix("pgha:"): v for k, v in config.items() if k.startswith("pgha:")}


@pytest.fixture(scope="module")
def dev_spec() -> ClusterSpec:
    return load_spec(pgha_namespace(stack_file_config()), "dev")


@pytest.fixture(scope="module")
def dev_run() -> ProgramRun:
    run = run_program(stack_file_config())
    assert run.error is None, run.errors
    return run


def command_name(node: str, step: str) -> str:
    """A step's Command: by node and step name (components/legacy_names.py keeps the old ones)."""
    return f"{node}-{step}"


# --- VMs and their seeds -------------------------------------------------------------


def test_three_vms_on_the_configured_hosts_with_their_macs(dev_run: ProgramRun, dev_spec: ClusterSpec):
    vms = {r.name: unwrap(r.inputs) for r in dev_run.of_type(VM)}
    assert {name: vm["nodeName"] for name, vm in vms.items()} == {
        "psql-01": "pve1",
        "psql-02": "pve2",
        "psql-03": "pve1",
        "backup-01": "pve2",
    }
    for node in dev_spec.nodes:
        vm = vms[node.name]
        (nic,) = vm["networkDevices"]
        assert nic["macAddress"] == node.mac
        assert nic["bridge"] == "vmbr1"
        assert "vlanId" not in nic
        assert vm["name"] == node.name
        assert vm["tags"] == ["dev", "pgha"]  # sorted, as the provider reads them back
        assert vm["started"] and vm["onBoot"] and vm["stopOnDestroy"]
        assert vm["agent"] == {"enabled": True}
        (disk,) = vm["disks"]
        assert disk["interface"] == "virtio0"
        assert disk["importFrom"] == f"local:import/{dev_spec.vm.image_file_name('dev')}"
        assert disk["size"] == 20
        assert "clone" not in vm
        # A new image or seed must never replace a running database VM
        # (tests/pulumi/test_proxmox_changes.py pins the whole list).
        assert "disks[0].importFrom" in dev_run.named(VM, node.name).ignore_changes


def test_each_vm_boots_from_its_own_snippets(dev_run: ProgramRun, dev_spec: ClusterSpec):
    for node in dev_spec.nodes:
        init = unwrap(dev_run.named(VM, node.name).inputs)["initialization"]
        for document, key in (
            ("user-data", "userDataFileId"),
            ("meta-data", "metaDataFileId"),
            ("network-config", "networkDataFileId"),
        ):
            snippet = unwrap(dev_run.named(SNIPPET, f"{node.name}-{node.host}-{document}").inputs)
            file_name = f"pgha-dev-{node.name}-{document}.yaml"
            assert snippet["contentType"] == "snippets"
            assert snippet["nodeName"] == node.host
            assert snippet["datastoreId"] == "local"
            assert snippet["sourceRaw"]["fileName"] == file_name
            assert init[key] == f"local:snippets/{file_name}"


def test_network_config_snippets_carry_the_configured_ips(dev_run: ProgramRun, dev_spec: ClusterSpec):
    expected = {
        "psql-01": "10.0.0.4/24",
        "psql-02": "10.0.0.3/24",
        "psql-03": "10.0.0.2/24",
        "backup-01": "10.0.0.7/24",
    }
    for node in dev_spec.nodes:
        snippet = dev_run.named(SNIPPET, f"{node.name}-{node.host}-network-config")
        data = unwrap(snippet.inputs)["sourceRaw"]["data"]
        nic = yaml.safe_load(data)["ethernets"]["private"]
        assert nic["addresses"] == [expected[node.name]]
        assert nic["match"]["macaddress"] == node.mac


def test_user_data_trusts_the_deploy_key_and_the_operators(dev_run: ProgramRun, dev_spec: ClusterSpec):
    data = unwrap(dev_run.named(SNIPPET, "psql-02-pve2-user-data").inputs)["sourceRaw"]["data"]
    (user,) = yaml.safe_load(data)["users"]
    assert user["ssh_authorized_keys"] == [DEPLOY_PUBLIC_KEY.strip(), *dev_spec.ssh.authorized_keys]


def test_one_cloud_image_download_per_proxmox_host(dev_run: ProgramRun):
    images = {unwrap(r.inputs)["nodeName"]: unwrap(r.inputs) for r in dev_run.of_type(IMAGE)}
    assert set(images) == {"pve1", "pve2"}
    for image in images.values():
        assert image["contentType"] == "import"
        assert image["fileName"].startswith("pgha-dev-debian-13-")
        assert image["url"].startswith("https://cloud.debian.org/images/cloud/trixie/2")


# --- Remote steps --------------------------------------------------------------------


def test_a_command_for_every_node_and_step_running_the_core_script(
    dev_run: ProgramRun, dev_spec: ClusterSpec
):
    expected = {
        command_name(node.name, step.name): step
        for node in dev_spec.nodes
        for step in node_steps(dev_spec, node, PLACEHOLDERS, tls_placeholders(dev_spec))
    }
    commands = {r.name: r for r in dev_run.of_type(COMMAND) if not r.name.endswith("-leave")}
    assert set(commands) == set(expected)
    for name, step in expected.items():
        assert commands[name].inputs["create"] == step.command
        assert commands[name].inputs["logging"] == ("none" if step.has_secrets else "stdoutAndStderr")


def test_dependencies_follow_the_phase_order(dev_run: ProgramRun, dev_spec: ClusterSpec):
    vm_urns = {r.urn for r in dev_run.of_type(VM)}
    assert len(vm_urns) == 4  # three database VMs and the backup repository
    urn = {r.name: r.urn for r in dev_run.of_type(COMMAND)}
    ordered = [
        {urn[command_name(s.node, s.name)] for s in steps}
        for _, steps in phases(dev_spec, PLACEHOLDERS, tls_placeholders(dev_spec))
    ]
    # Every group of the plan's order; the upgrade's only exists once maintenance.upgrade is set.
    assert len(ordered) == len(groups()) - 1
    previous = vm_urns
    for index, current in enumerate(ordered):
        later = set().union(*ordered[index:])
        for command in current:
            deps = dev_run.monitor.registrations[command].dependencies
            assert previous <= deps, command
            # Same-phase steps run in parallel; nothing waits for a later phase.
            assert not deps & later, command
        previous = current


def test_each_vm_leaves_the_cluster_before_it_is_deleted(dev_run: ProgramRun, dev_spec: ClusterSpec):
    """Scale-in: deleting a VM's leave command runs the core's leave step on it, and
    depending on the VM makes Pulumi delete the command (run it) before the VM."""
    vms = {r.name: r.urn for r in dev_run.of_type(VM)}
    for node in dev_spec.nodes:
        leave = dev_run.named(COMMAND, f"{node.name}-leave")
        assert leave.inputs["delete"] == leave_step(dev_spec, node).command
        assert "create" not in leave.inputs and "stdin" not in leave.inputs
        assert unwrap(leave.inputs["connection"])["host"] == str(node.ip)
        deps = dev_run.monitor.registrations[leave.urn].dependencies
        assert deps & set(vms.values()) == {vms[node.name]}
        assert not any("Command" in d for d in deps)  # no step waits for it, it waits for none


def test_a_replaced_vm_gets_all_its_steps_again(dev_run: ProgramRun, dev_spec: ClusterSpec):
    """``pulumi up --replace`` of a VM (a dead one rebuilt) replaces, i.e. re-runs, its steps."""
    vms = {r.name: r.urn for r in dev_run.of_type(VM)}
    for node in dev_spec.nodes:
        for step in node_steps(dev_spec, node, PLACEHOLDERS, tls_placeholders(dev_spec)):
            command = dev_run.named(COMMAND, command_name(node.name, step.name))
            # The verify step checks the whole cluster: it follows any replaced VM.
            wanted = sorted(vms.values()) if step.name == "verify" else [vms[node.name]]
            assert sorted(command.replace_with) == wanted
    for leave in (r for r in dev_run.of_type(COMMAND) if r.name.endswith("-leave")):
        assert leave.replace_with == []  # a dead VM cannot run its leave step
    # Same MAC, IP and name: the replacement boots only once the old VM is gone.
    assert all(vm.delete_before_replace for vm in dev_run.of_type(VM))


def test_stdin_bundles_use_the_real_secrets_and_stay_secret(dev_run: ProgramRun, dev_spec: ClusterSpec):
    real = dev_run.mocks.secrets()
    real_tls = mock_tls(dev_spec)
    generated = [*real.values(), *real_tls.private_keys()]
    secret_steps = 0
    for node in dev_spec.nodes:
        for step in node_steps(dev_spec, node, real, real_tls):
            inputs = dev_run.named(COMMAND, command_name(node.name, step.name)).inputs
            assert is_secret(inputs["connection"])
            assert is_secret(inputs["stdin"])
            assert unwrap(inputs["stdin"]) == step.stdin
            # The trigger is in clear (a hash reveals nothing) so previews show what re-runs.
            assert inputs["triggers"] == [step.digest]
            secret_steps += step.has_secrets
            if step.has_secrets:
                assert any(v.replace("\n", "\\n") in step.stdin for v in generated)
    # etcd (its key), Patroni, HAProxy, pgBackRest and the databases (role passwords) on each
    # of the three VMs; the repository's backup step, and its monitoring step (the key of the
    # HAProxy that serves its metrics port); the verify step on the first VM (pgha_verify's password);
    # the pooler step on each PostgreSQL VM (pgha_pooler's password and PgBouncer's key), and
    # their monitoring step (PgBouncer's exporter's connection string, pgha_pooler's password);
    # the system step on each PostgreSQL VM (root's marker keys; the repository VM has none).
    assert secret_steps == 27


def test_the_connection_uses_the_deploy_key_on_the_private_ip(dev_run: ProgramRun, dev_spec: ClusterSpec):
    for node in dev_spec.nodes:
        connection = unwrap(dev_run.named(COMMAND, command_name(node.name, "system")).inputs["connection"])
        assert connection["host"] == str(node.ip)
        assert connection["user"] == "pgha"
        assert connection["port"] == 22
        assert connection["privateKey"] == DEPLOY_PRIVATE_KEY
        assert "proxy" not in connection


def test_no_generated_secret_appears_in_clear_in_any_input(dev_run: ProgramRun):
    passwords = list(dev_run.mocks.passwords.values())
    # Five cluster passwords, the verify probe's, the pooler's auth_query login, the backup
    # repository's passphrase, the two marker keys and the default application role's.
    assert len(passwords) == 11
    assert len(dev_run.of_type(PASSWORD)) == 11
    assert any(name.endswith("pooler-password") for name in dev_run.mocks.passwords)
    assert any(name.endswith("verify-password") for name in dev_run.mocks.passwords)
    tls_keys = [key.splitlines()[1] for key in dev_run.mocks.tls_keys.values()]
    assert len(tls_keys) == 8  # the CA's, one per VM and an etcd one per database VM
    secrets = [*passwords, DEPLOY_PRIVATE_KEY.splitlines()[1], *tls_keys]
    registrations = list(dev_run.monitor.registrations.values())
    assert len(registrations) > 50
    for registration in registrations:
        for text in clear_strings(registration.inputs):
            for secret in secrets:
                assert secret not in text, f"{registration.name} shows a secret in clear"
    for command in dev_run.of_type(COMMAND):
        script = command.inputs.get("create", "") + command.inputs.get("delete", "")
        assert script and not any(pw in script for pw in passwords)


# --- Certificates ----------------------------------------------------------------------


def _signing_request(run: ProgramRun, node: Node, kind: str) -> dict:
    """``<vm>-<kind>-request``'s inputs, checked: signed with its own P-256 key, named after the VM."""
    key = unwrap(run.named(PRIVATE_KEY, f"{node.name}-{kind}-key").inputs)
    assert (key["algorithm"], key["ecdsaCurve"]) == ("ECDSA", "P256")
    request = unwrap(run.named(CERT_REQUEST, f"{node.name}-{kind}-request").inputs)
    assert request["privateKeyPem"] == mock_key_pem(f"{node.name}-{kind}-key")
    assert request["subject"]["commonName"] == node.name
    return request


def test_a_private_ca_signs_one_certificate_per_vm(dev_run: ProgramRun, dev_spec: ClusterSpec):
    ca = unwrap(dev_run.named(SELF_SIGNED_CERT, "pgha-ca").inputs)
    assert ca["isCaCertificate"] is True
    assert ca["allowedUses"] == ["cert_signing", "crl_signing", "digital_signature"]
    assert ca["subject"]["commonName"] == "pgha dev pgha CA"
    assert ca["validityPeriodHours"] == 3650 * 24
    assert ca["privateKeyPem"] == mock_key_pem("pgha-ca-key")
    for node in dev_spec.nodes:
        request = _signing_request(dev_run, node, "tls")
        # No etcd client name: PostgreSQL, HAProxy and pgBackRest hold this one.
        assert request["dnsNames"] == [node.name]
        assert request["ipAddresses"] == [str(node.ip), *(["10.0.0.10"] if node.runs_postgres else [])]
        cert = unwrap(dev_run.named(LOCALLY_SIGNED_CERT, f"{node.name}-tls-cert").inputs)
        assert cert["certRequestPem"] == f"CSR {node.name}-tls-request"
        assert cert["caCertPem"] == mock_cert_pem("pgha-ca")
        assert cert["caPrivateKeyPem"] == mock_key_pem("pgha-ca-key")
        assert cert["allowedUses"] == ["digital_signature", "server_auth", "client_auth"]
        assert cert["validityPeriodHours"] == 365 * 24
        assert cert["earlyRenewalHours"] == 30 * 24


def test_each_node_that_uses_etcd_gets_an_etcd_certificate_of_its_own(
    dev_run: ProgramRun, dev_spec: ClusterSpec
):
    """A key per service: a second key, request and certificate (same rules) naming etcd's client."""
    etcd_keys = {r.name for r in dev_run.of_type(PRIVATE_KEY) if "-etcd-tls-" in r.name}
    assert etcd_keys == {f"{n.name}-etcd-tls-key" for n in dev_spec.nodes if n.uses_etcd}
    for node in dev_spec.postgres_nodes:
        request = _signing_request(dev_run, node, "etcd-tls")
        assert request["dnsNames"] == [node.name, pki.ETCD_CLIENT_NAME]
        assert request["ipAddresses"] == [str(node.ip)]
        cert = unwrap(dev_run.named(LOCALLY_SIGNED_CERT, f"{node.name}-etcd-tls-cert").inputs)
        node_cert = unwrap(dev_run.named(LOCALLY_SIGNED_CERT, f"{node.name}-tls-cert").inputs)
        assert cert["certRequestPem"] == f"CSR {node.name}-etcd-tls-request"
        assert {k: v for k, v in cert.items() if k != "certRequestPem"} == {
            k: v for k, v in node_cert.items() if k != "certRequestPem"
        }
        registrations = [
            r
            for r in dev_run.monitor.registrations.values()
            if r.name in (f"{node.name}-etcd-tls-cert", f"{node.name}-tls-cert")
        ]
        assert len({r.replacement_trigger for r in registrations}) == 1  # the same renewal epoch


def test_every_secret_bearing_input_arrives_as_a_secret(dev_run: ProgramRun):
    secret_inputs = {
        SELF_SIGNED_CERT: ["privateKeyPem"],
        CERT_REQUEST: ["privateKeyPem"],
        LOCALLY_SIGNED_CERT: ["caPrivateKeyPem"],
        COMMAND: ["stdin", "connection"],
    }
    checked = 0
    for typ, keys in secret_inputs.items():
        for registration in dev_run.of_type(typ):
            for key in keys:
                if key == "stdin" and registration.name.endswith("-leave"):
                    assert key not in registration.inputs  # a leave step installs nothing
                    continue
                assert is_secret(registration.inputs[key]), (registration.name, key)
                checked += 1
    # The CA; a key request and a cert per VM (four) and per etcd certificate (three); stdin
    # and connection of the step commands (3 x 8 + 4 + 1, a host-maintenance agent on each
    # database VM, a monitoring step on every VM and the verify step; 4 more: the pooler step on
    # every VM; 3 more: the fast path step, here removing agent and rule, on each database VM;
    # 3 more: the leader race's agent on each database VM; 3 more: the import step, here
    # removing any source password, on each database VM); the connection of each VM's leave
    # command (four).
    assert checked == 1 + 4 + 4 + 3 + 3 + 2 * 50 + 4


def test_rotation_replaces_every_node_key_and_only_those():
    def triggers(run: ProgramRun) -> dict[str, object]:
        tls = [r for r in run.monitor.registrations.values() if r.typ in TLS_TYPES]
        return {r.name: r.replacement_trigger for r in tls}

    before = run_program(stack_file_config())
    config = stack_file_config()
    config["pgha:tls"] = {"rotation": 2}
    after = run_program(config)
    assert after.error is None, after.errors
    changed = {name for name, value in triggers(after).items() if triggers(before)[name] != value}
    assert changed == {
        *("psql-01-tls-key", "psql-02-tls-key", "psql-03-tls-key", "backup-01-tls-key"),
        *("psql-01-etcd-tls-key", "psql-02-etcd-tls-key", "psql-03-etcd-tls-key"),
    }
    assert {triggers(after)[n] for n in changed} == {2}
    # The CA's key has no trigger: a rotation keeps the CA every node trusts.
    assert triggers(after)["pgha-ca-key"] is None


# --- Exports -------------------------------------------------------------------------


def test_exports(dev_run: ProgramRun):
    secrets = dev_run.mocks.secrets()
    app = secrets.role_password("app")
    exports = dev_run.exports
    assert exports["vip"] == "10.0.0.10"
    assert exports["primaryPort"] == 5432
    assert exports["replicaPort"] == 5433
    # Never the superuser: the default application database's owner.
    assert exports["primaryConnectionString"] == (
        f"postgresql://app:{app}@10.0.0.10:5432/app?sslmode=verify-full{TCP}"
    )
    assert exports["replicaConnectionString"] == (
        f"postgresql://app:{app}@10.0.0.10:5433/app?sslmode=verify-full{TCP}"
    )
    assert exports["databases"] == {
        "app": {
            "primary": f"postgresql://app:{app}@10.0.0.10:5432/app?sslmode=verify-full{TCP}",
            "replica": f"postgresql://app:{app}@10.0.0.10:5433/app?sslmode=verify-full{TCP}",
            # pgha:pooler: the primary through PgBouncer, inside the same secret output.
            "pooler": f"postgresql://app:{app}@10.0.0.10:6432/app?sslmode=verify-full{TCP}",
        }
    }
    assert dev_run.secret_exports["databases"]
    assert not any(secrets.superuser_password in str(v) for v in exports.values())
    # What clients verify the VIP's certificate against: public, so not a secret.
    assert exports["caCertificate"] == mock_cert_pem("pgha-ca")
    assert not dev_run.secret_exports["caCertificate"]
    assert dev_run.secret_exports["primaryConnectionString"]
    assert dev_run.secret_exports["replicaConnectionString"]
    assert not dev_run.secret_exports["vip"]
    assert exports["deployPublicKey"] == DEPLOY_PUBLIC_KEY and not dev_run.secret_exports["deployPublicKey"]
    assert exports["nodes"] == [
        {"name": "psql-01", "host": "pve1", "ip": "10.0.0.4", "role": "postgres"},
        {"name": "psql-02", "host": "pve2", "ip": "10.0.0.3", "role": "postgres"},
        {"name": "psql-03", "host": "pve1", "ip": "10.0.0.2", "role": "postgres"},
        {"name": "backup-01", "host": "pve2", "ip": "10.0.0.7", "role": "repository"},
    ]
    domains = exports["failureDomains"]
    assert domains["pve1"].startswith("NOT survived")
    assert "psql-01" in domains["pve1"] and "psql-03" in domains["pve1"]
    assert domains["pve2"].startswith("survived")


def test_applications_get_a_password_each_generated_or_given():
    """One RandomPassword per login role, rotated by its keeper; a given one wins, stays secret."""
    config = stack_file_config()
    config["pgha:databases"] = [
        {"name": "wiki", "owner": "wiki", "extensions": ["pg_trgm"]},
        {"name": "js", "owner": "js_owner"},
    ]
    config["pgha:roles"] = [
        {"name": "js_owner", "login": False},
        {"name": "js_app", "memberOf": ["js_owner"], "rotation": 3},
        {"name": "wiki"},
    ]
    given = "Given-wiki-password-0123456789"
    config["pgha:rolePasswords"] = {"wiki": given}
    run = run_program(config, secret_keys=["pgha:rolePasswords"])
    assert run.error is None, run.errors
    passwords = {r.name: unwrap(r.inputs) for r in run.of_type(PASSWORD) if r.name.startswith("pgha-role-")}
    # No password for a role that cannot log in.
    assert set(passwords) == {"pgha-role-js-app", "pgha-role-wiki"}
    assert passwords["pgha-role-js-app"]["keepers"] == {"rotation": "3"}
    assert passwords["pgha-role-js-app"]["special"] is False
    exports = run.exports
    assert exports["databases"]["wiki"]["primary"] == (
        f"postgresql://wiki:{given}@10.0.0.10:5432/wiki?sslmode=verify-full{TCP}"
    )
    assert exports["primaryConnectionString"] == exports["databases"]["wiki"]["primary"]
    # js is owned by a role that cannot log in: no owner's string (its apps use js_app).
    assert set(exports["databases"]) == {"wiki"}
    # The given password reaches the VMs only inside the secret stdin bundle.
    step = run.named(COMMAND, command_name("psql-02", "databases"))
    assert is_secret(step.inputs["stdin"]) and given in unwrap(step.inputs["stdin"])
    assert step.inputs["logging"] == "none"
    for registration in run.monitor.registrations.values():
        assert not any(given in text for text in clear_strings(registration.inputs)), registration.name


# --- Invalid configs: every problem, and nothing created -----------------------------


def test_invalid_config_fails_with_every_problem_before_any_resource():
    config = stack_file_config()
    config["pgha:vip"] = "192.168.1.10"
    config["pgha:vms"] = config["pgha:vms"][:2]
    run = run_program(config)
    assert isinstance(run.error, pulumi.RunError)
    assert "2 problem(s)" in str(run.error)
    assert len(run.errors) == 2
    assert any("pgha:vip: 192.168.1.10 is outside pgha:network.cidr 10.0.0.0/24" in e for e in run.errors)
    assert any("pgha:vms: needs at least 3 VMs" in e for e in run.errors)
    assert run.monitor.registrations == {}
    assert run.exports == {}


def test_a_gateway_without_dns_fails_the_preview():
    """The preview refuses what the offline render refuses, in the same one line."""
    config = stack_file_config()
    network = dict(config["pgha:network"])
    del network["dns"]
    config["pgha:network"] = network
    run = run_program(config)
    assert isinstance(run.error, pulumi.RunError)
    assert run.errors == [
        "pgha:network.dns: is required with pgha:network.gateway 10.0.0.1 (the VMs resolve the mirror)"
    ]
    assert run.monitor.registrations == {}


def test_unknown_keys_are_found_in_the_config_the_cli_passes(monkeypatch: pytest.MonkeyPatch):
    """The CLI hands the whole config over as JSON in PULUMI_CONFIG: typos there are caught too."""
    config = stack_file_config()
    config["pgha:vipp"] = "10.0.0.11"
    encoded = {k: json.dumps(v) if isinstance(v, (dict, list)) else str(v) for k, v in config.items()}
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps(encoded))
    run = run_program(config, via_env=True)
    assert isinstance(run.error, pulumi.RunError)
    assert len(run.errors) == 1
    assert run.errors[0].startswith("pgha:vipp: unknown key")
    assert run.monitor.registrations == {}


# --- Variants: SDN network, template clones ------------------------------------------


def test_sdn_network_is_created_applied_and_used_by_every_vm():
    config = stack_file_config()
    config["pgha:network"] = {
        **{k: v for k, v in config["pgha:network"].items() if k != "bridge"},
        "sdn": {"zone": "pgha", "vnet": "pghanet", "type": "vlan", "tag": 42, "bridge": "vmbr0"},
    }
    run = run_program(config)
    assert run.error is None, run.errors
    (zone,) = run.of_type(SDN_ZONE_VLAN)
    (vnet,) = run.of_type(SDN_VNET)
    (subnet,) = run.of_type(SDN_SUBNET)
    applier = run.named(SDN_APPLIER, "pgha-sdn-applier")
    assert unwrap(zone.inputs) == {"resourceId": "pgha", "bridge": "vmbr0", "nodes": ["pve1", "pve2"]}
    assert unwrap(vnet.inputs) == {"resourceId": "pghanet", "zone": "pgha", "tag": 42}
    assert unwrap(subnet.inputs) == {"vnet": "pghanet", "cidr": "10.0.0.0/24", "gateway": "10.0.0.1"}
    assert {zone.urn, vnet.urn, subnet.urn} <= applier.dependencies
    for vm in run.of_type(VM):
        (nic,) = unwrap(vm.inputs)["networkDevices"]
        assert nic["bridge"] == "pghanet"
        assert "vlanId" not in nic
        assert applier.urn in vm.dependencies


def test_plain_bridge_with_vlan_tags_the_nic_and_creates_no_sdn():
    config = stack_file_config()
    config["pgha:network"] = {**config["pgha:network"], "vlan": 42}
    run = run_program(config)
    assert run.error is None, run.errors
    assert not any(r.typ.startswith("proxmoxve:sdn/") for r in run.monitor.registrations.values())
    for vm in run.of_type(VM):
        (nic,) = unwrap(vm.inputs)["networkDevices"]
        assert (nic["bridge"], nic["vlanId"]) == ("vmbr1", 42)


def test_template_clones_download_no_image():
    config = stack_file_config()
    config["pgha:vm"] = {"templateVmId": 9000, "templateNode": "pve1"}
    config["pgha:vms"] = [{**vm, "vmId": 201 + i} for i, vm in enumerate(config["pgha:vms"])]
    run = run_program(config)
    assert run.error is None, run.errors
    assert run.of_type(IMAGE) == []
    database_vms = [r for r in run.of_type(VM) if r.name.startswith("psql-")]
    for index, vm in enumerate(sorted(database_vms, key=lambda r: r.name)):
        inputs = unwrap(vm.inputs)
        assert inputs["vmId"] == 201 + index
        assert inputs["clone"] == {
            "vmId": 9000,
            "nodeName": "pve1",
            "datastoreId": "local-lvm",
            "full": True,
            "retries": 3,
        }
        (disk,) = inputs["disks"]
        assert "importFrom" not in disk
        assert disk["size"] == 20


def test_jump_host_is_the_proxy_of_every_connection():
    config = stack_file_config()
    config["pgha:ssh"] = {**config["pgha:ssh"], "jumpHost": {"host": "bastion.example.org", "user": "ops"}}
    run = run_program(config)
    assert run.error is None, run.errors
    for command in run.of_type(COMMAND):
        proxy = unwrap(command.inputs["connection"])["proxy"]
        assert (proxy["host"], proxy["user"], proxy["port"]) == ("bastion.example.org", "ops", 22)
        assert "privateKey" not in proxy  # the operator's agent logs in there, not the deploy key


def test_a_witness_gets_a_vm_and_etcd_but_no_postgres():
    config = stack_file_config()
    config["pgha:witness"] = {"name": "witness", "host": "pve3", "ip": "10.0.0.5"}
    run = run_program(config)
    assert run.error is None, run.errors
    assert unwrap(run.named(VM, "witness").inputs)["nodeName"] == "pve3"
    assert {unwrap(r.inputs)["nodeName"] for r in run.of_type(IMAGE)} == {"pve1", "pve2", "pve3"}
    witness_steps = sorted(r.name for r in run.of_type(COMMAND) if r.name.startswith("witness-"))
    assert witness_steps == sorted(
        [
            "witness-system",
            "witness-etcd",
            "witness-etcd-health",
            # pgha:pooler (the dev stack's): only disables a PgBouncer an image brought along.
            "witness-pooler",
            "witness-monitoring",
            "witness-leave",
        ]
    )
    assert all(text.startswith("survived") for text in run.exports["failureDomains"].values())


def test_an_external_witness_gets_no_vm_but_its_steps_over_ssh():
    """An existing machine: no VM, snippet or image for it; the same steps reach it over SSH."""
    config = stack_file_config("qdevice")
    run = run_program(config, stack="qdevice")
    assert run.error is None, run.errors
    assert sorted(r.name for r in run.of_type(VM)) == ["psql-01", "psql-02", "psql-03"]
    assert not [r for r in run.of_type(SNIPPET) if "qnetd" in r.name]
    # Images go to the Proxmox hosts only; "qnetd" (the witness's own failure domain) is none.
    assert {unwrap(r.inputs)["nodeName"] for r in run.of_type(IMAGE)} == {"pve1", "pve2"}
    steps = {r.name: r for r in run.of_type(COMMAND) if r.name.startswith("qnetd-")}
    assert sorted(steps) == sorted(["qnetd-system", "qnetd-etcd", "qnetd-etcd-health", "qnetd-leave"])
    for registration in steps.values():
        connection = unwrap(registration.inputs["connection"])
        assert (connection["host"], connection["user"]) == ("10.0.0.5", "pgha")
        # Its own host key from the stack config, pinned like a VM's generated one.
        assert connection["hostKey"] == config["pgha:witness"]["hostKey"]
        # No VM to wait for or be replaced with: only the phase before.
        assert not any("qnetd" in d and VM in d for d in registration.dependencies)
    system = unwrap(steps["qnetd-system"].inputs["create"])
    assert "cloud-init status --wait" not in system  # the owner prepared it, not our cloud-init
    assert "pgha-install-files" in system and "pgha-firewall.service" in system
    etcd_deps = run.monitor.registrations[steps["qnetd-etcd"].urn].dependencies
    assert steps["qnetd-system"].urn in etcd_deps  # the firewall is up before etcd starts
    assert all(text.startswith("survived") for text in run.exports["failureDomains"].values())
    assert set(run.exports["failureDomains"]) == {"pve1", "pve2", "qnetd"}


def test_an_upgrade_generation_runs_a_rolling_update_step_on_every_vm_last():
    config = stack_file_config()
    config["pgha:maintenance"] = {"upgrade": 1}
    run = run_program(config)
    assert run.error is None, run.errors
    urn = {r.name: r.urn for r in run.of_type(COMMAND)}
    upgrades = sorted(name for name in urn if name.endswith("-upgrade"))
    assert upgrades == [
        "backup-01-upgrade",
        "psql-01-upgrade",
        "psql-02-upgrade",
        "psql-03-upgrade",
    ]
    for name in upgrades:
        # After the last phase (monitoring, on every VM), all at once: they take turns themselves.
        deps = run.monitor.registrations[urn[name]].dependencies
        assert {urn[f"{n}-monitoring"] for n in ("backup-01", "psql-01", "psql-02", "psql-03")} <= deps
        assert not deps & {urn[u] for u in upgrades}
    config["pgha:maintenance"] = {"upgrade": 2}
    bumped = run_program(config)
    for name in upgrades:
        # A new generation is a new trigger: pulumi up runs the step again.
        assert bumped.named(COMMAND, name).inputs["triggers"] != run.named(COMMAND, name).inputs["triggers"]


@pulumi.runtime.test
def test_an_explicit_provider_reaches_every_proxmox_resource():
    """PghaCluster takes a provider through its options, as any component does."""
    _, monitor, _ = use_mocks()
    spec = load_spec(pgha_namespace(stack_file_config()), "dev")
    provider = proxmoxve.Provider("pve", endpoint="https://pve.example.org:8006/")
    cluster = PghaCluster("pgha", PghaClusterArgs(spec), opts=pulumi.ResourceOptions(providers=[provider]))

    def check(urn: str) -> None:
        proxmox = [r for r in monitor.registrations.values() if r.typ.startswith("proxmoxve:") and r.custom]
        proxmox = [r for r in proxmox if r.typ != "pulumi:providers:proxmoxve"]
        assert len(proxmox) == 4 + 4 * 2 * 3 + 2  # VMs, snippets (every VM's on every host), images
        for registration in proxmox:
            assert registration.provider.startswith(urn + "::"), registration.name
        commands = [r for r in monitor.registrations.values() if r.typ == COMMAND]
        assert commands and not any(r.provider.startswith(urn) for r in commands)

    # Wait for the last step, so every registration is in.
    last = cluster.steps.commands[("psql-03", "keepalived")]
    return pulumi.Output.all(provider.urn, last.urn).apply(lambda v: check(v[0]))


def test_prometheus_export(dev_run: ProgramRun):
    """The scrape configs, targets and CA an existing Prometheus consumes: complete, and no secret."""
    prometheus = dev_run.exports["prometheus"]
    assert not dev_run.secret_exports["prometheus"]
    base = "/etc/prometheus/pgha/dev"
    assert prometheus["directory"] == base
    assert prometheus["files"][f"{base}/ca.crt"] == mock_cert_pem("pgha-ca")
    node_targets = prometheus["files"][f"{base}/pgha-node.json"]
    assert sorted(t["targets"][0] for t in node_targets) == [
        "10.0.0.2:9443",
        "10.0.0.3:9443",
        "10.0.0.4:9443",
        "10.0.0.7:9443",
    ]
    jobs = {c["job_name"]: c for c in prometheus["scrapeConfigs"]}
    # The dev stack has pgha:pooler: PgBouncer's exporter has its job too.
    sources = ("node", "postgres", "pgbouncer", "patroni", "haproxy", "etcd")
    assert set(jobs) == {f"pgha-{s}-dev" for s in sources}
    for config in jobs.values():
        assert config["scheme"] == "https" and config["tls_config"] == {"ca_file": f"{base}/ca.crt"}
        (files,) = config["file_sd_configs"]
        assert files["files"][0] in prometheus["files"]
    secrets = dev_run.mocks.secrets()
    text = json.dumps(prometheus)
    for value in vars(secrets).values():
        assert not value or str(value) not in text


# --- SSH host keys and what the state keeps in clear -----------------------------------


def test_every_step_pins_the_host_key_its_vm_was_given(dev_run: ProgramRun, dev_spec: ClusterSpec):
    """pulumi-command accepts any host key unless ``hostKey`` is set (it then uses ssh.FixedHostKey
    and negotiates that key's algorithm only): every command sets its own VM's key, which
    cloud-init installs from the same Pulumi-generated PrivateKey."""
    commands = dev_run.of_type(COMMAND)
    assert len(commands) > 3 * len(dev_spec.nodes)
    for node in dev_spec.nodes:
        key = unwrap(dev_run.named(PRIVATE_KEY, f"{node.name}-ssh-host-key").inputs)
        assert key["algorithm"] == "ED25519"
        private = dev_run.mocks.host_keys[f"{node.name}-ssh-host-key"]
        snippet = dev_run.named(SNIPPET, f"{node.name}-{node.host}-user-data").inputs["sourceRaw"]
        # The user-data carries the private half: the snippet's content is a secret input.
        assert is_secret(snippet) or is_secret(snippet["data"])
        document = yaml.safe_load(unwrap(snippet)["data"])
        assert document["ssh_deletekeys"] is True and document["ssh_genkeytypes"] == []
        assert document["ssh_keys"]["ed25519_private"] == private
        public = document["ssh_keys"]["ed25519_public"]
        assert public.startswith("ssh-ed25519 ")
        mine = [c for c in commands if c.name.startswith(f"{node.name}-")]
        assert mine
        for command in mine:
            assert unwrap(command.inputs["connection"])["hostKey"] == public, command.name
        others = [n for n in dev_spec.nodes if n != node]
        for other in others:
            other_snippet = dev_run.named(SNIPPET, f"{other.name}-{other.host}-user-data")
            other_public = yaml.safe_load(unwrap(other_snippet.inputs["sourceRaw"])["data"])["ssh_keys"][
                "ed25519_public"
            ]
            assert other_public != public


def test_commands_carrying_secrets_keep_their_output_secret(dev_run: ProgramRun, dev_spec: ClusterSpec):
    """stdout and stderr of a command fed secrets are ``additionalSecretOutputs``; the others stay
    readable in the state (they are the steps' change logs)."""
    checked = 0
    for node in dev_spec.nodes:
        for step in node_steps(dev_spec, node, PLACEHOLDERS, tls_placeholders(dev_spec)):
            command = dev_run.named(COMMAND, command_name(node.name, step.name))
            # (pulumi_command's SDK adds "connection" itself.)
            outputs = set(command.additional_secret_outputs) - {"connection"}
            assert outputs == ({"stdout", "stderr"} if step.has_secrets else set()), command.name
            checked += step.has_secrets
    # The databases step (role passwords) on each PostgreSQL VM, and the repository VM's
    # monitoring step (its HAProxy key), the verify step (pgha_verify's password), and the
    # pooler step on each PostgreSQL VM (pgha_pooler's password, PgBouncer's key), and their
    # monitoring step (PgBouncer's exporter's connection string), and the system step on each
    # PostgreSQL VM (root's marker keys).
    assert checked == 27


def test_no_host_private_key_appears_in_clear(dev_run: ProgramRun):
    keys = [k.splitlines()[1] for k in dev_run.mocks.host_keys.values()]
    assert len(keys) == 4
    for registration in dev_run.monitor.registrations.values():
        for text in clear_strings(registration.inputs):
            assert not any(k in text for k in keys), registration.name


def test_without_the_pooler_no_pooler_string_and_no_pooler_step():
    config = stack_file_config()
    del config["pgha:pooler"]
    run = run_program(config)
    assert run.error is None, run.errors
    assert set(run.exports["databases"]["app"]) == {"primary", "replica"}
    assert not [c for c in run.of_type(COMMAND) if c.name.endswith("-pooler")]
    # The auth_query login's password is generated anyway, like every cluster secret.
    assert any(name.endswith("pooler-password") for name in run.mocks.passwords)


def test_role_passwords_and_s3_keys_in_clear_text_are_refused():
    """pulumi preview refuses them like the offline renderer: load_spec hears what the stack encrypts."""
    config = stack_file_config()
    config["pgha:databases"] = [{"name": "wiki", "owner": "wiki"}]
    config["pgha:rolePasswords"] = {"wiki": "Given-wiki-password-0123456789"}
    config["pgha:backup"] = {
        "repository": "s3",
        "s3Bucket": "pgha-backups",
        "s3Endpoint": "s3.example.net",
        "s3Region": "eu-west-1",
    }
    config["pgha:backupS3Key"] = "AKIAEXAMPLE"
    config["pgha:backupS3KeySecret"] = "s3-secret-example"
    run = run_program(config, secret_keys=["pgha:backupS3Key"])
    assert run.error is not None
    clear = sorted(e.split(":")[1] for e in run.errors if "is stored in clear text" in e)
    assert clear == ["backupS3KeySecret", "rolePasswords"], run.errors
    assert not any("Given-wiki-password" in e or "s3-secret-example" in e for e in run.errors)
