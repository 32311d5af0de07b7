"""pgha:import: the config it takes, the files it installs, and the tool's pure parts."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pgha import ConfigError, importing, load_spec
from pgha.importing import pgha_import
from tests.core.test_config_hardening import render_bad

CA = "-----BEGIN CERTIFICATE-----\nMIIBdzCCAR2gAwIBAgIUQ29mZmVl\nQ29mZmVl==\n-----END CERTIFICATE-----\n"


def with_import(config: dict[str, Any], **extra: Any) -> dict[str, Any]:
    config["import"] = {"host": "old-db.example.org", "databases": ["app"], "caCertificate": CA, **extra}
    config["importPassword"] = "source:pass\\word"
    return config


def problems(config: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_spec(config, "dev")
    return caught.value.problems


def test_the_defaults(dev_config):
    spec = load_spec(with_import(dev_config), "dev")
    assert spec.importing is not None
    assert (spec.importing.port, spec.importing.user, spec.importing.method) == (
        5432,
        "pgha_import",
        "logical",
    )
    assert spec.importing.databases == ("app",)
    assert load_spec(dev_config | {"import": None}, "dev").importing is None


@pytest.mark.parametrize(
    ("change", "key", "words"),
    [
        ({"databases": ["nope"]}, "pgha:import.databases[0]", "not a present entry of pgha:databases"),
        ({"databases": []}, "pgha:import.databases", "non-empty list"),
        ({"databases": ["app", "app"]}, "pgha:import.databases", "twice"),
        ({"caCertificate": "not a pem"}, "pgha:import.caCertificate", "is not PEM"),
        ({"method": "rsync"}, "pgha:import.method", "is not one of"),
        ({"host": "a b"}, "pgha:import.host", "is not a host name"),
        ({"user": "Robert'); DROP"}, "pgha:import.user", "lowercase SQL name"),
        ({"cutoverTimeoutS": 1}, "pgha:import.cutoverTimeoutS", "outside 5-3600"),
        ({"bogus": 1}, "pgha:import.bogus", "unknown key"),
    ],
)
def test_bad_values_name_their_key(dev_config, change, key, words):
    found = problems(with_import(dev_config, **change))
    assert any(p.startswith(key) and words in p for p in found), found


def test_the_password_and_the_ca_are_required(dev_config):
    config = with_import(dev_config)
    del config["importPassword"], config["import"]["caCertificate"]
    found = problems(config)
    assert any(p.startswith("pgha:importPassword") for p in found), found
    assert any(p.startswith("pgha:import.caCertificate") for p in found), found


def test_render_refuses_with_one_line_and_exit_2(tmp_path):
    result = render_bad(tmp_path, {"import": {"host": "old", "databases": ["nope"], "caCertificate": CA}})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "pgha:import.databases[0]" in result.stderr
    assert "pgha:importPassword" in result.stderr


def test_every_postgres_vm_gets_the_tool_the_ca_and_a_passfile(dev_config, secrets):
    spec = load_spec(with_import(dev_config), "dev")
    secrets = replace(secrets, import_password="source:pass\\word")
    for node in spec.postgres_nodes:
        (step,) = importing.steps(spec, node, secrets)
        files = {f.path: f for f in step.files}
        assert files[pgha_import.INSTALL_PATH].content == Path(pgha_import.__file__).read_text()
        passfile = files[importing.PASSFILE_PATH]
        assert (passfile.mode, passfile.owner, passfile.secret) == (0o600, "postgres", True)
        assert passfile.content == "old-db.example.org:5432:*:pgha_import:source\\:pass\\\\word\n"
        assert files[importing.CA_PATH].content == CA
        settings = json.loads(files[pgha_import.SETTINGS_PATH].content)
        assert files[pgha_import.SETTINGS_PATH].mode == 0o600
        assert "source:pass" not in files[pgha_import.SETTINGS_PATH].content
        assert settings["databases"] == [{"name": "app", "owner": "app", "extensions": []}]
        assert "source:pass" not in step.script


def test_without_import_the_step_removes_the_secrets(spec, secrets):
    (step,) = importing.steps(spec, spec.postgres_nodes[0], secrets)
    assert step.files == ()
    assert importing.PASSFILE_PATH in step.script and pgha_import.SETTINGS_PATH in step.script
    assert importing.steps(spec, spec.repository_node, secrets) == []


def settings(**extra: Any) -> pgha_import.Settings:
    raw = {
        "source": {
            "host": "old",
            "port": 5432,
            "user": "pgha_import",
            "sslrootcert": "/etc/pgha/import-ca.pem",
            "passfile": "/etc/pgha/import.pgpass",
        },
        "databases": [{"name": "app", "owner": "app", "extensions": []}],
        "bin_dir": "/usr/lib/postgresql/17/bin",
        **extra,
    }
    return pgha_import.Settings(raw)


def test_the_subscription_names_the_passfile_never_a_password():
    conninfo = settings().conninfo("app")
    assert "sslmode='verify-full'" in conninfo
    assert "passfile='/etc/pgha/import.pgpass'" in conninfo
    assert "password" not in conninfo
    assert pgha_import.quote_conninfo("it's") == "'it\\'s'"


def test_pg_dump_gets_the_source_by_environment():
    env = settings().source_env("app")
    assert env["PGSSLMODE"] == "verify-full" and env["PGPASSFILE"] == "/etc/pgha/import.pgpass"
    assert env["PGDATABASE"] == "app"


def test_tables_logical_replication_cannot_carry_are_refused():
    tables = [
        ("public", "ok", "p", "d", True, "app", True),
        ("public", "full", "p", "f", False, "app", True),
        ("public", "nokey", "p", "d", False, "app", True),
        ("public", "nothing", "p", "n", True, "app", True),
        ("public", "scratch", "u", "d", True, "app", True),
        ("public", "theirs", "p", "d", True, "postgres", True),
        ("public", "foreign", "p", "d", True, "other", False),
    ]
    found = pgha_import.table_findings("app", tables)
    assert [f.what for f in found] == [
        "table public.nokey has no primary key nor replica identity",
        "table public.nothing has no primary key nor replica identity",
        "unlogged table public.scratch",
        "table public.foreign is owned by other, whom the import role is not a member of",
    ]
    assert all(f.refused for f in found)


def test_a_source_of_a_newer_major_is_refused():
    """Blue-green goes up or sideways: 17 into 17 or 15 into 17 pass, 18 into 17 is refused."""
    assert pgha_import.downgrade_findings("app", 170004, 170006) == []
    assert pgha_import.downgrade_findings("app", 150013, 170006) == []
    (found,) = pgha_import.downgrade_findings("app", 180001, 170006)
    assert found.refused and "PostgreSQL 18, newer than this server's 17" in found.what


def test_the_schema_restore_leaves_extensions_to_pgha_databases():
    toc = (
        "; Archive created at ...\n"
        "3; 3079 16385 EXTENSION - pg_trgm \n"
        "4; 0 0 COMMENT - EXTENSION pg_trgm \n"
        "215; 1259 16390 TABLE public ledger app\n"
    )
    kept = pgha_import.restore_list(toc)
    assert "EXTENSION" not in kept and "TABLE public ledger" in kept


def test_identifiers_are_quoted():
    assert pgha_import.qualified("public", 'we"ird') == '"public"."we""ird"'


def test_an_unknown_database_exits_2(tmp_path, capsys):
    path = tmp_path / "s.json"
    path.write_text(json.dumps(settings(method="logical").raw))
    assert pgha_import.main(["status", "--database", "nope", "--settings", str(path)]) == 2
    assert "nope" in capsys.readouterr().err
