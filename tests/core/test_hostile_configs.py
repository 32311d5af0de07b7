"""Hostile stack configs a security review found: each is refused before anything exists,
in one line that names its key, by ``load_spec`` (so by the renderer and ``pulumi preview`` alike)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pgha.config import ConfigError, load_spec
from pgha.files import REPO_DIR
from pgha.spec import TRUSTED_EXTENSIONS
from pgha.stackfile import load_stack, read_stack

STACKS = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in REPO_DIR.glob("Pulumi.*.yaml"))


def problems(config: dict[str, Any], encrypted: tuple[str, ...] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_spec(config, "dev", encrypted)
    return caught.value.problems


def assert_refused(
    config: dict[str, Any], key: str, *fragments: str, encrypted: tuple[str, ...] | None = None
):
    found = [p for p in problems(config, encrypted) if p.startswith(f"pgha:{key}: ")]
    assert found, (key, problems(config, encrypted))
    assert all("\n" not in p for p in found)
    assert any(all(f in p for f in fragments) for p in found), (fragments, found)


def s3(config: dict[str, Any]) -> dict[str, Any]:
    config["backup"] = {
        "repository": "s3",
        "s3Bucket": "pgha-backups",
        "s3Endpoint": "s3.example.net",
        "s3Region": "eu-west-1",
    }
    config["backupS3Key"] = "AKIAEXAMPLE"
    config["backupS3KeySecret"] = "secret-example"
    return config


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_file_still_loads(stack):
    assert load_stack(stack).stack == stack


@pytest.mark.parametrize(
    "path",
    ["/usr/local/sbin", "/etc", "/var/lib/postgresql/../../usr", "/", "/srv", "/var/lib/postgresql/17/main",
     "/var/lib/etcd", "/root/backups", "/var/lib/pgbackrest/../../../usr/bin", "/mnt/./x"],
)  # fmt: skip
def test_backup_path_refuses_system_directories_and_dot_segments(dev_config, path):
    dev_config["backup"]["path"] = path
    assert_refused(dev_config, "backup.path", repr(path.rstrip("/") or "/") if ".." not in path else "'..'")


@pytest.mark.parametrize(
    "path", ["/var/lib/pgbackrest", "/var/lib/pgbackrest/dev", "/srv/pgbackrest", "/mnt/nfs/pg/"]
)
def test_backup_path_under_an_allowed_root_loads(dev_config, path):
    dev_config["backup"]["path"] = path
    assert load_spec(dev_config, "dev").backup.path == path


@pytest.mark.parametrize(
    "key", ["backupS3Key", "backupS3KeySecret", "rolePasswords", "backupCipherPassphrase"]
)
def test_secrets_in_clear_text_are_refused(dev_config, key):
    config = s3(dev_config)
    config["rolePasswords"] = {"app": "Given-app-password-0123456789"}
    config["backupCipherPassphrase"] = "another-stack-passphrase"
    assert_refused(config, key, "is stored in clear text", "--secret", encrypted=())
    everything = ("backupS3Key", "backupS3KeySecret", "rolePasswords", "backupCipherPassphrase")
    assert load_spec(config, "dev", everything).backup.repository == "s3"


def write_stack(tmp_path: Path, change) -> Path:
    """A copy of the repository's pgha with Pulumi.bad.yaml: dev's config as ``change`` leaves it."""
    shutil.copytree(REPO_DIR / "pgha", tmp_path / "pgha")
    shutil.copytree(REPO_DIR / "cloud-init", tmp_path / "cloud-init")
    document = yaml.safe_load((REPO_DIR / "Pulumi.dev.yaml").read_text())
    change(document["config"])
    (tmp_path / "Pulumi.bad.yaml").write_text(yaml.safe_dump(document))
    return tmp_path


def render_bad(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pgha.render", "--stack", "bad", "--out", str(root / "out")],
        cwd=root,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root)},
    )


def test_renderer_exits_2_on_a_clear_text_role_password(tmp_path):
    def clear(config):
        config["pgha:rolePasswords"] = {"app": "Given-app-password-0123456789"}

    result = render_bad(write_stack(tmp_path, clear))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "error: pgha:rolePasswords: is stored in clear text" in result.stderr
    assert "Given-app-password" not in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("passwords", "read_as"),
    [
        ({"app": {"secure": "v1:AAAA"}}, {"app": "PULUMI-SECRET(rolePasswords.app)"}),  # set with --path
        ({"secure": "v1:AAAA"}, {}),  # the whole object encrypted: unreadable offline
    ],
)
def test_renderer_reads_encrypted_values_as_stand_ins(tmp_path, passwords, read_as):
    def encrypted(config):
        config["pgha:rolePasswords"] = passwords
        config["pgha:backupCipherPassphrase"] = {"secure": "v1:BBBB"}
        config["pgha:ssh"]["jumpHost"] = {"host": "bastion.example.net", "user": "ops"}
        config["pgha:ssh"]["jumpHost"]["privateKey"] = {"secure": "v1:CCCC"}

    root = write_stack(tmp_path, encrypted)
    config, keys = read_stack("bad", root)
    assert keys == {"rolePasswords", "backupCipherPassphrase", "ssh"}
    assert config["rolePasswords"] == read_as
    result = render_bad(root)
    assert result.returncode == 0, result.stderr


def test_renderer_exits_2_on_a_system_backup_path(tmp_path):
    def hostile(config):
        config["pgha:backup"]["path"] = "/usr/local/sbin"

    result = render_bad(write_stack(tmp_path, hostile))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "error: pgha:backup.path: '/usr/local/sbin' is not /var/lib/pgbackrest" in result.stderr


@pytest.mark.parametrize(
    "extension", ["plpython3u", "plperlu", "adminpack", "file_fdw", "dblink", "postgres_fdw"]
)
def test_untrusted_extensions_are_refused(dev_config, extension):
    dev_config["databases"] = [{"name": "wiki", "owner": "wiki", "extensions": ["pg_trgm", extension]}]
    assert_refused(dev_config, "databases[0].extensions[1]", f"{extension!r} is not a trusted", "uuid-ossp")


def test_trusted_extensions_load(dev_config):
    dev_config["databases"] = [
        {"name": "wiki", "owner": "wiki", "extensions": ["pg_trgm", "uuid-ossp", "citext"]}
    ]
    assert load_spec(dev_config, "dev").databases[0].extensions == ("pg_trgm", "uuid-ossp", "citext")


def test_docs_name_the_trusted_extensions():
    text = (REPO_DIR / "docs" / "applications.md").read_text()
    assert all(f"`{name}`" in text for name in TRUSTED_EXTENSIONS)


@pytest.mark.parametrize(
    "user", ["_apt", "nobody", "systemd-network", "messagebus", "sshd", "postgres", "etcd", "haproxy",
             "prometheus", "pgbouncer", "polkitd", "dhcpcd", "uuidd", "daemon", "www-data", "backup", "tss"],
)  # fmt: skip
def test_system_accounts_are_refused_as_the_deploy_user(dev_config, user):
    dev_config["ssh"]["user"] = user
    # `_apt` fails the user-name pattern first; every other name, the system-account rule.
    assert_refused(dev_config, "ssh.user", repr(user), "" if user == "_apt" else "system or service account")


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("certValidityDays", 1, "1 days is outside 30-825"),
        ("certValidityDays", 100000, "100000 days is outside 30-825"),
        ("caValidityDays", 100, "100 days is outside 365-7300"),
        ("caValidityDays", 1000000, "1000000 days is outside 365-7300"),
    ],
)
def test_absurd_certificate_lifetimes_are_refused(dev_config, key, value, fragment):
    dev_config["tls"] = {key: value}
    assert_refused(dev_config, f"tls.{key}", fragment)


def test_certificate_bounds_keep_a_renewal_window_and_the_ca_rule(dev_config):
    dev_config["tls"] = {"certValidityDays": 30, "caValidityDays": 365}
    tls = load_spec(dev_config, "dev").tls
    assert tls.renew_before_days == 10 < tls.cert_validity_days
    dev_config["tls"] = {"certValidityDays": 825, "caValidityDays": 730}
    assert_refused(dev_config, "tls.caValidityDays", "must exceed")


@pytest.mark.parametrize(
    "role", ["postgres", "replicator", "rewind_user", "prometheus", "pgha_verify", "pgha_pooler"]
)
def test_roles_pgha_creates_cannot_be_declared(dev_config, role):
    dev_config["roles"] = [{"name": role}]
    assert_refused(dev_config, "roles[0].name", repr(role))


@pytest.mark.parametrize("name", ["localhost", "ip6-localhost", "ip6-allnodes"])
def test_vm_names_etc_hosts_gives_away_are_refused(dev_config, name):
    dev_config["vms"][1]["name"] = name
    assert_refused(dev_config, "vms[1].name", repr(name), "/etc/hosts")
    dev_config["vms"][1]["name"] = "psql-02"
    dev_config["backup"]["repositoryVm"]["name"] = name
    assert_refused(dev_config, "backup.repositoryVm.name", repr(name))


def test_vm_names_of_pgha_machines_cannot_repeat(dev_config):
    dev_config["vms"][2]["name"] = dev_config["backup"]["repositoryVm"]["name"]
    assert_refused(dev_config, "vms[2].name", "is used by more than one VM")


@pytest.mark.parametrize("stanza", ["prod evil", "prod\\n", "prod;rm", "prod-", "prod/../x"])
def test_restore_stanza_must_match_as_a_whole(dev_config, stanza):
    dev_config["restore"] = {"fromStanza": stanza}
    assert_refused(dev_config, "restore.fromStanza", "is not a stanza name")


@pytest.mark.parametrize("dns", [None, []])
def test_a_gateway_without_dns_is_refused(dev_config, dns):
    """A routed VM without a resolver cannot reach Debian's mirror: refused before anything exists."""
    if dns is None:
        del dev_config["network"]["dns"]
    else:
        dev_config["network"]["dns"] = dns
    assert_refused(dev_config, "network.dns", "is required with pgha:network.gateway 10.0.0.1")


def test_dns_without_a_gateway_and_neither_load(dev_config):
    del dev_config["network"]["gateway"]
    assert load_spec(dev_config, "dev").network.dns
    del dev_config["network"]["dns"]
    assert load_spec(dev_config, "dev").network.gateway is None


def test_renderer_exits_2_on_a_gateway_without_dns(tmp_path):
    def no_dns(config):
        del config["pgha:network"]["dns"]

    result = render_bad(write_stack(tmp_path, no_dns))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "pgha:network.dns" in line]
    assert lines == [
        "error: pgha:network.dns: is required with pgha:network.gateway 10.0.0.1 (the VMs resolve the mirror)"
    ]


@pytest.mark.parametrize(
    ("name", "value"),
    [("allow_alter_system", "on"), ("allow_alter_system", True), ("archive_library", "basic_archive")],
)
def test_stack_config_cannot_reopen_alter_system_or_load_an_archive_library(dev_config, name, value):
    dev_config["postgres"] = {"parameters": {name: value}}
    assert_refused(dev_config, f"postgres.parameters.{name}", "managed by pgha", "cannot be overridden")


def test_etcd_v3_is_refused_beside_a_repository_vm(dev_config):
    """etcd checks no client name under v3: the repository VM's certificate would write the DCS."""
    dev_config["patroni"] = {"etcdApi": "v3"}
    assert_refused(dev_config, "patroni.etcdApi", "v3 cannot go with backup.repository host")
    assert load_spec(s3(dev_config), "dev").patroni.etcd_api == "v3"


OFFSITE_CA = "-----BEGIN CERTIFICATE-----\nMIIBdzCCAR2gAwIBAgIU\n-----END CERTIFICATE-----\n"


def offsite(config: dict[str, Any], **values: Any) -> dict[str, Any]:
    config["backup"]["offsite"] = {
        "endpoint": "s3.offsite.example.net",
        "bucket": "pgha-offsite",
        "region": "eu-central-1",
        **values,
    }
    config["backupOffsiteKey"] = "OFFSITE-KEY-ID"
    config["backupOffsiteKeySecret"] = "offsite-secret-value"
    return config


@pytest.mark.parametrize(
    ("values", "key", "fragment"),
    [
        ({"verifyTls": False}, "backup.offsite.verifyTls", "unknown key"),
        ({"storageVerifyTls": "n"}, "backup.offsite.storageVerifyTls", "unknown key"),
        ({"endpoint": "http://s3.example.net"}, "backup.offsite.endpoint", "is not host"),
        ({"endpoint": "s3.example.net\nrepo2-storage-verify-tls=n"}, "backup.offsite.endpoint", "U+000A"),
        ({"bucket": "Bad_Bucket"}, "backup.offsite.bucket", "is not an S3 bucket"),
        ({"path": "/pgha/../other"}, "backup.offsite.path", "unknown key"),
        ({"uriStyle": "virtual"}, "backup.offsite.uriStyle", "unknown key"),
        ({"caCertificate": "not a certificate"}, "backup.offsite.caCertificate", "is not PEM certificates"),
        ({"caCertificate": OFFSITE_CA + "repo2-storage-verify-tls=n"}, "backup.offsite.caCertificate", "PEM"),
        ({"retentionFull": 9}, "backup.offsite.retentionFull", "unknown key"),
        ({"archiveQueueMaxGib": 0}, "backup.offsite.archiveQueueMaxGib", "unknown key"),
    ],
)  # fmt: skip
def test_offsite_escape_hatches_and_bad_values_are_refused(dev_config, values, key, fragment):
    assert_refused(offsite(dev_config, **values), key, fragment)


def test_offsite_needs_its_keys_and_encryption(dev_config):
    config = offsite(dev_config)
    del config["backupOffsiteKey"]
    assert_refused(config, "backupOffsiteKey", "is required with backup.offsite", "--secret")
    config = offsite(dev_config)
    config["backup"]["cipher"] = "none"
    assert_refused(config, "backup.offsite", "never unencrypted")
    config = offsite(dev_config)
    del config["backup"]["offsite"]["bucket"]
    assert_refused(config, "backup.offsite.bucket", "is required")


@pytest.mark.parametrize("key", ["backupOffsiteKey", "backupOffsiteKeySecret"])
def test_offsite_keys_in_clear_text_are_refused(dev_config, key):
    config = offsite(dev_config, caCertificate=OFFSITE_CA)
    assert_refused(config, key, "is stored in clear text", "--secret", encrypted=())
    spec = load_spec(config, "dev", ("backupOffsiteKey", "backupOffsiteKeySecret"))
    assert spec.backup.offsite.ca_certificate == OFFSITE_CA


def test_renderer_exits_2_on_an_offsite_key_in_clear_text(tmp_path):
    def clear(config):
        config["pgha:backup"]["offsite"] = {"endpoint": "s3.example.net", "bucket": "b-1", "region": "r"}
        config["pgha:backupOffsiteKey"] = {"secure": "v1:AAAA"}
        config["pgha:backupOffsiteKeySecret"] = "offsite-secret-value"

    result = render_bad(write_stack(tmp_path, clear))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "error: pgha:backupOffsiteKeySecret: is stored in clear text" in result.stderr
    assert "offsite-secret-value" not in result.stderr
