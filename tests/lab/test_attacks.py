"""The second security review's attacks, performed against the running lab: each must fail.

Each was run once against the tree before the fix (lab prefix sc-old, see
docs/security.md "Verified"): the repository's certificate wrote
``archive_command`` into Patroni's config and the primary ran it; a symlink
planted by postgres made ``pgha-restore`` hand ``/mnt`` to postgres; a machine
with a swapped host key received a step's stdin. Here they are refused.
Run with the session's ``lab`` (dev stack); about 2 minutes on top of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import asyncssh
import pytest

from lab.faults import attacks
from lab.wait import wait_until
from pgha import backup, etcd, haproxy, patroni, pki
from pgha.secrets import RESTAPI_USER

pytestmark = pytest.mark.lab


def leader(lab) -> str:
    members = lab.wait_ready()["nodes"]
    return next(m["name"] for m in members if m["role"] == "leader")


def replica(lab) -> str:
    members = lab.wait_ready()["nodes"]
    return next(m["name"] for m in members if m["role"] != "leader" and m["state"] == "streaming")


# ---- 1. etcd admits only the nodes that use it; the DCS cannot make the primary run a command ----


def test_the_repository_certificate_is_refused_by_etcd(lab):
    repository = lab.spec.repository_node
    assert repository is not None
    status, body = attacks.etcd_request(lab, repository.name, backup.PEM_PATH)
    assert status is None, (status, body)  # the TLS handshake itself fails
    status, body = attacks.dcs_write_archive_command(lab, repository.name, backup.PEM_PATH, "touch /tmp/x")
    assert status is None, (status, body)
    # Positive control: a member's own certificate is admitted, so the refusal above is the name check.
    member = etcd.members(lab.spec)[0]
    status, body = attacks.etcd_request(lab, member.name, etcd.PEM_PATH)
    assert status == 200, (status, body)


def test_the_keys_of_postgresql_haproxy_and_pgbackrest_are_refused_by_etcd(lab):
    """A key per service: a database VM's node certificate no longer names etcd's client."""
    node = lab.spec.postgres_nodes[0]
    held = [patroni.PEM_PATH, haproxy.PEM_PATH, *([backup.PEM_PATH] if lab.spec.backup else [])]
    for pem in held:
        status, body = attacks.etcd_request(lab, node.name, pem)
        assert status is None, (pem, status, body)  # the TLS handshake itself fails
    # Positive control: the same VM's etcd certificate (Patroni's copy) is admitted.
    status, body = attacks.etcd_request(lab, node.name, patroni.ETCD_PEM_PATH)
    assert status == 200, (status, body)


def test_any_other_certificate_of_the_ca_is_refused_by_etcd(lab, tmp_path):
    """A certificate the cluster's CA signed (as for pgha-restore), without the etcd client name."""
    stranger = lab.ca().issue(pki.CertIdentity(backup.RESTORE_CLIENT, (backup.RESTORE_CLIENT,)), 1)
    pem = tmp_path / "stranger.pem"
    pem.write_text(stranger.pem_bundle)
    url = attacks.config_key_url(lab)
    curl = ["curl", "-sS", "--max-time", "5", "--cacert", str(lab.ca_path), "--cert", str(pem), url]
    result = lab.run(curl, capture_output=True, text=True)
    assert result.returncode != 0, result.stdout
    allowed = lab.run([*curl[:-3], "--cert", str(lab.operator_pem_path), url], capture_output=True, text=True)
    assert allowed.returncode == 0 and '"key":"/service/' in allowed.stdout, allowed.stderr


def test_a_dcs_write_of_archive_command_does_not_change_what_the_primary_runs(lab):
    """Even with a member's certificate (or the REST API password), the DCS cannot set a command."""
    primary = leader(lab)
    member = etcd.members(lab.spec)[0]
    pinned = attacks.postgres_setting(lab, primary, "archive_command")
    assert pinned == patroni.pinned_parameters(lab.spec)["archive_command"]
    status, original = attacks.etcd_request(lab, member.name, etcd.PEM_PATH)
    assert status == 200, original
    original_value = json.loads(original)["node"]["value"]
    evil = f"touch /tmp/pgha-pwned; {pinned}"
    try:
        status, body = attacks.dcs_write_archive_command(lab, member.name, etcd.PEM_PATH, evil)
        assert status == 200, body
        # Patroni read it: its /config now shows the evil value (the write did land)...
        url = patroni.rest_api_url(lab.spec, lab.spec.node(primary)) + "/config"
        wait_until(
            lambda: lab.http_json(url)["postgresql"]["parameters"].get("archive_command") == evil,
            30.0,
            interval=1.0,
            error="Patroni never saw the DCS change",
        )
        # ...and had several loops (loop_wait) to apply it: what PostgreSQL runs is unchanged.
        time.sleep(3 * lab.spec.patroni.loop_wait)
        for node in lab.spec.postgres_nodes:
            assert attacks.postgres_setting(lab, node.name, "archive_command") == pinned, node.name
    finally:
        attacks.etcd_request(lab, member.name, etcd.PEM_PATH, "PUT", original_value)


# ---- 2. root steps never chown through a symlink postgres planted -------------------------------


def test_pgha_restore_refuses_a_symlinked_data_dir(lab):
    repository = lab.spec.repository_node
    assert repository is not None
    target = "/mnt"  # an empty root-owned directory
    assert attacks.owner(lab, repository.name, target) == "root:root"
    planted = attacks.as_postgres(lab, repository.name, "ln", "-sfn", target, backup.RESTORE_DIR)
    assert planted.returncode == 0, planted.stderr
    try:
        result = lab.exec(repository.name, [backup.RESTORE_PATH], capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and "symlink" in result.stderr, result.stdout + result.stderr
        assert attacks.owner(lab, repository.name, target) == "root:root"
    finally:
        lab.exec(repository.name, ["rm", "-f", backup.RESTORE_DIR])


def test_the_patroni_step_refuses_a_symlinked_version_dir(lab):
    """postgres swaps /var/lib/postgresql/<version> for a symlink to a root directory; the step
    run again must fail without touching it (before: install -d -o postgres chowned it)."""
    node = replica(lab)
    version_dir = f"/var/lib/postgresql/{lab.spec.postgres.version}"
    target = "/mnt"
    step = patroni.steps(lab.spec, lab.spec.node(node), lab.secrets(), lab.tls())[0]
    runner = lab.runner()
    lab.exec(node, ["systemctl", "stop", "patroni"], check=True)
    moved = attacks.as_postgres(lab, node, "mv", version_dir, f"{version_dir}.real")
    assert moved.returncode == 0, moved.stderr
    try:
        planted = attacks.as_postgres(lab, node, "ln", "-s", target, version_dir)
        assert planted.returncode == 0, planted.stderr
        result = asyncio.run(runner.run_step(lab.target(lab.spec.node(node)), step))
        assert not result.ok and "symlink" in result.stderr, result.stderr[-2000:]
        assert attacks.owner(lab, node, target) == "root:root"
    finally:
        lab.exec(node, ["rm", "-f", version_dir])
        attacks.as_postgres(lab, node, "mv", f"{version_dir}.real", version_dir)
        again = asyncio.run(runner.run_step(lab.target(lab.spec.node(node)), step))
        assert again.ok, again.stderr[-2000:]
        lab.wait_ready(timeout=180)


# ---- 3. a machine with another host key gets no step and no secret ------------------------------


def test_a_machine_whose_host_key_was_swapped_gets_no_step(lab):
    repository = lab.spec.repository_node
    assert repository is not None
    name = repository.name
    step = backup.steps(lab.spec, repository, lab.secrets(), lab.tls())[0]
    assert step.has_secrets  # the repository passphrase travels in its stdin
    runner = lab.runner()
    target = lab.target(repository)
    since = lab.exec(name, ["date", "+%Y-%m-%d %H:%M:%S"], capture_output=True, text=True).stdout.strip()
    swap = "mkdir -p /root/hostkeys && mv /etc/ssh/ssh_host_* /root/hostkeys/ && "
    swap += "ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key && systemctl restart ssh"
    lab.exec(name, ["bash", "-c", swap], check=True)
    try:
        with pytest.raises(asyncssh.HostKeyNotVerifiable):
            asyncio.run(runner.run_step(target, step))
        # The impostor saw no login at all: the client stopped before authenticating.
        log = lab.exec(
            name, ["journalctl", "-q", "-u", "ssh", "--since", since], capture_output=True, text=True
        ).stdout
        assert "Accepted publickey" not in log, log
    finally:
        restore = "rm -f /etc/ssh/ssh_host_* && mv /root/hostkeys/* /etc/ssh/ && systemctl restart ssh"
        lab.exec(name, ["bash", "-c", restore], check=True)
    # Positive control: with its own key back, the same step runs.
    with contextlib.suppress(asyncssh.Error):
        asyncio.run(runner.wait_for_ssh(target, timeout=30))
    assert asyncio.run(runner.run_step(target, step)).ok


# ---- 6. the repository holds nothing in clear ----------------------------------------------------


def test_every_file_in_the_repository_is_encrypted(lab):
    repository = lab.spec.repository_node
    assert repository is not None
    # pgBackRest encrypts OpenSSL-style: "Salted__" then the salt (zstd alone starts 28 b5 2f fd).
    check = (
        "import os, sys\n"
        "found = clear = 0\n"
        "for root, _, files in os.walk(sys.argv[1]):\n"
        "    for name in files:\n"
        "        found += 1\n"
        "        with open(os.path.join(root, name), 'rb') as f:\n"
        "            if f.read(8) != b'Salted__':\n"
        "                clear += 1\n"
        "                print('clear:', os.path.join(root, name))\n"
        "print('files', found, 'clear', clear)\n"
    )

    def scan(path: str) -> tuple[int, int, str]:
        result = lab.exec(repository.name, ["python3", "-c", check, path], capture_output=True, text=True)
        last = result.stdout.strip().splitlines()[-1]
        return int(last.split()[1]), int(last.split()[3]), result.stdout[-2000:]

    found, clear, report = scan(lab.spec.backup.path)
    assert found > 10 and clear == 0, report
    # Negative control: the same scan flags pgBackRest's own plaintext files (its logs).
    found, clear, report = scan("/var/log/pgbackrest")
    assert found > 0 and clear == found, report


# ---- 9. the REST API's unsafe endpoints: members (and the operators' list) only ------------------


def test_patroni_refuses_unsafe_calls_from_outside_the_members(lab):
    """DELETE /restart (cancel a scheduled restart) is an unsafe endpoint that changes nothing."""
    primary = leader(lab)
    url = patroni.rest_api_url(lab.spec, lab.spec.node(primary)) + "/restart"
    status = ["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "DELETE", "-K", "-", url]
    right = f'user = "{RESTAPI_USER}:{lab.secrets().restapi_password}"\n'
    # From the lab network (not a member, not in pgha:patroni.restApiAllowFrom): 403, even with the password.
    outside = lab.run(
        ["curl", "--cacert", str(lab.ca_path), *status], input=right, capture_output=True, text=True
    )
    assert outside.stdout == "403", outside.stdout + outside.stderr
    # From a member: past the allow-list, the password decides (401 wrong, 404 "no restart scheduled").
    member = ["curl", "--cacert", pki.CA_PATH, *status]
    wrong = lab.exec(
        replica(lab), member, input=f'user = "{RESTAPI_USER}:x"\n', capture_output=True, text=True
    )
    assert wrong.stdout == "401", wrong.stdout + wrong.stderr
    ok = lab.exec(replica(lab), member, input=right, capture_output=True, text=True)
    assert ok.stdout == "404", ok.stdout + ok.stderr
