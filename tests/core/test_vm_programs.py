"""The Python programs that run on the VMs are plain modules (pgha/vmprograms.py's convention).

What reaches a VM is the module's own file, never rendered text; the settings
come from a JSON file; ruff covers every one of them; and they are imported
and run here like any module.
"""

from __future__ import annotations

import ast
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from pgha import ClusterSecrets, ClusterTls, node_files, node_steps, vmprograms
from pgha.backup import backup_status
from pgha.cloudinit import DEPLOY_KEY_PLACEHOLDER, HostKey, seed
from pgha.databases import pgha_databases
from pgha.fastpath import agent as fastpath_agent
from pgha.files import CORE_DIR, INSTALLER_PATH, INSTALLER_SOURCE, REPO_DIR
from pgha.haproxy import save_state
from pgha.host_maintenance import pgha_host_maintenance
from pgha.importing import pgha_import
from pgha.leader_race import agent as leader_race_agent
from pgha.monitoring import collector
from pgha.patroni import cluster_passwords, hostaware
from pgha.rolling import pgha_rolling
from pgha.stackfile import load_stack
from pgha.verify import probe
from pgha.vmlib import cluster_health, etcd_markers, patroni_api, scram

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
        pgha_import,
    ),
    fastpath_agent,
    leader_race_agent,
    cluster_passwords,
)
RUFF = Path(sys.executable).parent / "ruff"
LIBRARY = (cluster_health, etcd_markers, patroni_api, scram)
# What a program may import on a VM besides the shipped library: the standard library, PyYAML
# (Patroni's), psycopg2 (Patroni's; pgha-databases).
ALLOWED_ON_A_VM = set(sys.stdlib_module_names) | {"__future__", "yaml", "psycopg2"}


def imported_modules(source: str) -> set[str]:
    """The top-level names a source imports, at any level (inside functions too)."""
    tree = ast.parse(source)
    return {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names} | {
        n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
    }


def library_imports(source: str) -> set[str]:
    """{"pgha"} if the source imports from the shipped library (and only from it), else empty."""
    tree = ast.parse(source)
    modules = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names} | {
        n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
    }
    ours = {m for m in modules if m.split(".")[0] == "pgha"}
    return {"pgha"} if ours and all(m.startswith(vmprograms.LIBRARY_PACKAGE) for m in ours) else set()


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
    # Alone on the VM: the standard library, what Debian installs with its service, and the
    # shipped library; nothing else of this package.
    assert imported_modules(source) <= ALLOWED_ON_A_VM | library_imports(source), imported_modules(source)
    assert not [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom) and n.level]
    if library_imports(source):
        assert module.LIBRARY_ROOT == vmprograms.LIBRARY_ROOT


@pytest.mark.parametrize("library", LIBRARY, ids=lambda m: m.__name__)
def test_a_library_module_imports_only_the_standard_library(library):
    source = vmprograms.source(library)
    assert not source.startswith("#!")  # imported, never run
    assert imported_modules(source) <= ALLOWED_ON_A_VM, imported_modules(source)
    assert not [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom) and n.level]


def test_the_library_is_every_module_of_its_package_and_the_detector_sees_one():
    """Every library module is listed here and shipped by the program that imports it."""
    package = Path(LIBRARY[0].__file__).parent
    assert {Path(m.__file__) for m in LIBRARY} == set(package.glob("*.py")) - {package / "__init__.py"}
    assert vmprograms.library_modules(pgha_rolling) == [cluster_health, etcd_markers, patroni_api]
    assert vmprograms.library_modules(pgha_host_maintenance) == [cluster_health, etcd_markers, patroni_api]
    assert vmprograms.library_modules(save_state) == []
    # The detector itself: a program importing pgha beyond the library is caught.
    bad = "import json\nfrom pgha.vmlib import cluster_health\nfrom pgha import patroni\n"
    assert imported_modules(bad) - ALLOWED_ON_A_VM - library_imports(bad) == {"pgha"}


@pytest.mark.parametrize("stack", STACKS)
def test_the_library_is_shipped_with_each_program_that_imports_it(stack):
    """The step that installs a program installs its library, byte for byte: a changed library
    changes that step's digest, so the step runs again."""
    spec = load_stack(stack)
    secrets, tls = ClusterSecrets.placeholders(), ClusterTls.placeholders(spec)
    shipped = 0
    for node in spec.nodes:
        for step in node_steps(spec, node, secrets, tls):
            files = {f.path: f for f in step.files}
            for module in MODULES:
                if module.INSTALL_PATH not in files:
                    continue
                for library in vmprograms.library_modules(module):
                    installed = files[f"{vmprograms.LIBRARY_ROOT}/pgha/vmlib/{Path(library.__file__).name}"]
                    assert installed.content == vmprograms.source(library) and installed.mode == 0o644
                    shipped += 1
    assert shipped >= 2 * len(spec.postgres_nodes)  # pgha-host-maintenance's two modules on each


def test_a_program_runs_from_its_installed_layout(tmp_path):
    """As on a VM: pgha-rolling in LIBRARY_ROOT with the library below it, no repository on the path."""
    root = tmp_path / "lib"
    program = root / Path(pgha_rolling.INSTALL_PATH).name
    for module in (pgha_rolling, *vmprograms.library_modules(pgha_rolling)):
        path = (
            program
            if module is pgha_rolling
            else root / vmprograms.library_path(module).removeprefix(vmprograms.LIBRARY_ROOT + "/")
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(vmprograms.source(module))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, str(program), "nonsense"], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert result.returncode == 2 and "pgha-rolling apply-config PLAN" in result.stderr, result.stderr
    # Without the library next to it, it cannot start: the library is what it imports.
    for path in (root / "pgha").rglob("*.py"):
        path.unlink()
    result = subprocess.run(
        [sys.executable, str(program), "nonsense"], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert result.returncode == 1 and "cluster_health" in result.stderr, result.stderr


def test_a_command_in_sbin_finds_the_library_under_its_root(tmp_path):
    """pgha-host-maintenance lives in /usr/local/sbin: it reaches the library through LIBRARY_ROOT
    on its path (here the stand-in root, given as PYTHONPATH; on the VM its own sys.path.append)."""
    root, sbin = tmp_path / "lib", tmp_path / "sbin"
    for library in vmprograms.library_modules(pgha_host_maintenance):
        path = root / vmprograms.library_path(library).removeprefix(vmprograms.LIBRARY_ROOT + "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(vmprograms.source(library))
    program = sbin / Path(pgha_host_maintenance.INSTALL_PATH).name
    sbin.mkdir()
    program.write_text(vmprograms.source(pgha_host_maintenance))
    env = {**os.environ, "PYTHONPATH": str(root)}
    result = subprocess.run(
        [sys.executable, str(program)], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert result.returncode == 2 and "HOST start" in result.stderr, result.stderr


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
