"""The Python programs that run on the VMs are plain modules (pgha/vmprograms.py's convention).

What reaches a VM is the module's own file, never rendered text; the settings
come from a JSON file; ruff covers every one of them; and they are imported
and run here like any module.
"""

from __future__ import annotations

import ast
import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from pgha import ClusterSecrets, ClusterTls, node_files, vmprograms
from pgha.backup import backup_status
from pgha.cloudinit import DEPLOY_KEY_PLACEHOLDER, HostKey, seed
from pgha.databases import pgha_databases
from pgha.fastpath import agent as fastpath_agent
from pgha.files import CORE_DIR, INSTALLER_PATH, INSTALLER_SOURCE, REPO_DIR
from pgha.haproxy import save_state
from pgha.host_maintenance import pgha_host_maintenance
from pgha.monitoring import collector
from pgha.patroni import hostaware
from pgha.rolling import pgha_rolling
from pgha.stackfile import load_stack
from pgha.verify import probe

STACKS = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in REPO_DIR.glob("Pulumi.*.yaml"))
MODULES = (
    *(
        save_state,
        backup_status,
        pgha_rolling,
        hostaware,
        pgha_databases,
        collector,
        probe,
        pgha_host_maintenance,
    ),
    fastpath_agent,
)
RUFF = Path(sys.executable).parent / "ruff"


def program_sources() -> dict[Path, str]:
    """Every file of the package that is a program for a VM: it starts with the shebang."""
    return {
        path: path.read_text()
        for path in sorted(CORE_DIR.rglob("*.py"))
        if path.read_text().startswith(vmprograms.SHEBANG)
    }


def test_the_programs_are_the_known_modules():
    assert set(program_sources()) == {Path(m.__file__) for m in MODULES} | {INSTALLER_SOURCE}


def test_no_python_is_rendered_from_a_template():
    found = [p for p in REPO_DIR.rglob("*.py.j2") if "venv" not in p.parts]
    assert found == []


@pytest.mark.parametrize("stack", STACKS)
def test_every_python_program_on_a_vm_is_a_module_file_byte_for_byte(stack):
    spec = load_stack(stack)
    sources = set(program_sources().values())
    secrets, tls = ClusterSecrets.placeholders(), ClusterTls.placeholders(spec)
    shipped = 0
    for node in spec.nodes:
        files = {f.path: f for f in node_files(spec, node, secrets, tls)}
        for rendered in files.values():
            if "python" in rendered.content.partition("\n")[0]:
                assert rendered.content in sources, f"{node.name}:{rendered.path} is not a module's text"
                assert rendered.mode == 0o755
                shipped += 1
        for module in MODULES:
            if module.INSTALL_PATH in files:  # installed: its settings come with it, as JSON
                assert isinstance(json.loads(files[module.SETTINGS_PATH].content), dict)
        user_data = seed(spec, node, DEPLOY_KEY_PLACEHOLDER, HostKey.placeholder(node))["user-data"]
        (installer,) = [f for f in yaml.safe_load(user_data)["write_files"] if f["path"] == INSTALLER_PATH]
        assert installer["content"] == INSTALLER_SOURCE.read_text()
    assert shipped >= len(spec.postgres_nodes)  # at least HAProxy's saver on each


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_a_program_follows_the_convention(module):
    source = vmprograms.source(module)
    assert source.startswith(vmprograms.SHEBANG)
    assert source.rstrip().endswith('if __name__ == "__main__":\n    sys.exit(main())')
    assert vmprograms.settings_path(Path(module.INSTALL_PATH).name) == module.SETTINGS_PATH
    assert module.INSTALL_PATH.startswith(("/usr/local/lib/pgha/", "/usr/local/sbin/"))
    # Alone on the VM: nothing from this package.
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0] for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom)
    }
    assert not imported & {"pgha", "components", "lab", "tests"}, imported
    assert not [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom) and n.level]


def ruff_checked(paths: list[Path], *extra: str) -> set[Path]:
    """The files ``ruff check`` looks at among ``paths``, with the project's settings."""
    result = subprocess.run(
        [str(RUFF), "check", "--show-files", *extra], cwd=REPO_DIR, capture_output=True, text=True, check=True
    )
    listed = {Path(line.strip()) for line in result.stdout.splitlines() if line.strip()}
    return {p for p in paths if p in listed}


def test_ruff_covers_every_program():
    programs = list(program_sources())
    assert ruff_checked(programs) == set(programs)
    result = subprocess.run(
        [str(RUFF), "format", "--check", "--force-exclude", *map(str, programs)],
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and f"{len(programs)} files already formatted" in result.stdout, result


def test_the_ruff_check_sees_an_excluded_program():
    """The negative control: excluding a program's file drops it from ruff's list."""
    programs = list(program_sources())
    excluded = Path(save_state.__file__)
    assert ruff_checked(programs, "--extend-exclude", str(excluded.relative_to(REPO_DIR))) == set(
        programs
    ) - {excluded}


def test_save_state_writes_what_haproxy_answers(tmp_path):
    """A stand-in admin socket: the saver asks for the states and writes them in one rename."""
    admin = tmp_path / "admin.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(admin))
    server.listen(1)
    asked: list[bytes] = []

    def answer() -> None:
        connection, _ = server.accept()
        with connection:
            asked.append(connection.recv(1024))
            connection.sendall(b"1\n# be_id be_name srv_id\n3 primary 1 psql-01 10.0.0.4 2\n")

    thread = threading.Thread(target=answer)
    thread.start()
    settings = tmp_path / "settings.json"
    state_file = tmp_path / "server-state"
    settings.write_text(json.dumps({"admin_socket": str(admin), "state_file": str(state_file)}))
    assert save_state.main([str(settings)]) == 0
    thread.join(5)
    server.close()
    assert asked == [b"show servers state\n"]
    assert state_file.read_bytes().endswith(b"psql-01 10.0.0.4 2\n")
    assert not (tmp_path / "server-state.tmp").exists()


def test_save_state_lets_the_reload_go_on_without_haproxy(tmp_path, capsys):
    settings = tmp_path / "settings.json"
    settings.write_text(
        json.dumps({"admin_socket": str(tmp_path / "none"), "state_file": str(tmp_path / "s")})
    )
    assert save_state.main([str(settings)]) == 0
    assert "not saved" in capsys.readouterr().err and not (tmp_path / "s").exists()


def _info(backups: list[dict], code: int = 0) -> subprocess.CompletedProcess[str]:
    stanza = {"status": {"code": code, "message": "ok" if code == 0 else "error"}, "backup": backups}
    stanza["archive"] = [{"max": "000000010000000000000007"}]
    return subprocess.CompletedProcess([], 0, json.dumps([stanza]), "")


def test_backup_status_reports_health_and_age():
    now = 1_000_000.0
    full = {"label": "F", "type": "full", "timestamp": {"stop": now - 3600}}
    diff = {"label": "D", "type": "diff", "timestamp": {"stop": now - 1800}}
    report = backup_status.report("pgha", 26, _info([full, diff]), now)
    assert report["ok"] and report["problems"] == []
    assert report["lastBackup"]["label"] == "D" and report["lastBackup"]["ageHours"] == 0.5
    assert report["lastFull"] == "F" and report["archiveMax"] == "000000010000000000000007"
    old = backup_status.report("pgha", 0.25, _info([full, diff]), now)
    assert not old["ok"] and old["problems"] == ["newest backup is 0.5 h old (limit 0.25 h)"]
    assert backup_status.report("pgha", 26, _info([]), now)["problems"] == ["no backup yet"]
    assert backup_status.report("pgha", 26, _info([full], code=1), now)["problems"] == ["stanza: error"]
    failed = subprocess.CompletedProcess([], 1, "", "stanza missing")
    assert backup_status.report("pgha", 26, failed, now)["problems"] == [
        "pgbackrest info failed: stanza missing"
    ]


def test_rolling_reads_patroni_config_from_its_settings(tmp_path):
    patroni_config = tmp_path / "config.yml"
    patroni_config.write_text("restapi:\n  authentication:\n    username: patroni\n    password: s3cret\n")
    tool = pgha_rolling.RollingOperation({"step": "patroni-config", "ca": None}, str(patroni_config))
    assert tool.auth() == "Basic cGF0cm9uaTpzM2NyZXQ="  # patroni:s3cret
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"patroni_config": str(patroni_config)}))
    assert pgha_rolling.main(["nonsense"], str(settings)) == 2  # usage, before reading anything
