"""PgBouncer (pgha:pooler): config, rendered files and modes, HAProxy 6432, pg_hba, hostile input."""

from __future__ import annotations

import configparser

import pytest

from pgha import (
    ConfigError,
    LocalCa,
    RenderedFile,
    databases,
    image_packages,
    load_spec,
    node_files,
    node_steps,
    patroni,
    plan,
    pooler,
)
from pgha.haproxy import CONFIG_PATH as HAPROXY_CONFIG
from pgha.secrets import ClusterSecrets
from tests.core.test_patroni import hba_method
from tests.core.test_witness import EXTERNAL


def problems(config) -> list[str]:
    with pytest.raises(ConfigError) as error:
        load_spec(config, "dev")
    return error.value.problems


def pooler_files(spec, node, secrets, tls) -> dict[str, RenderedFile]:
    (step,) = [s for s in node_steps(spec, node, secrets, tls) if s.name == "pooler"]
    return {f.path: f for f in step.files}


def ini(spec, node, secrets, tls) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, comment_prefixes=(";",))
    parser.read_string(pooler_files(spec, node, secrets, tls)[pooler.CONFIG_PATH].content)
    return parser


# ---- config -------------------------------------------------------------------------------


def test_dev_stack_has_the_pooler_with_defaults(spec):
    assert spec.pooler is not None
    assert "pgbouncer" in image_packages(spec)
    assert (spec.pooler.port, spec.pooler.listen_port) == (6432, 6442)
    assert (spec.pooler.default_pool_size, spec.pooler.max_client_conn) == (20, 1000)


def test_without_pooler_nothing_is_rendered_and_its_role_is_absent(dev_config, secrets, tls):
    del dev_config["pooler"]
    spec = load_spec(dev_config, "dev")
    assert spec.pooler is None
    for node in spec.nodes:
        assert not [s for s in node_steps(spec, node, secrets, tls) if s.name == "pooler"]
        paths = {f.path for f in node_files(spec, node, secrets, tls)}
        assert pooler.CONFIG_PATH not in paths and pooler.USERLIST_PATH not in paths
    haproxy = next(f for f in node_files(spec, spec.nodes[0], secrets, tls) if f.path == HAPROXY_CONFIG)
    assert "listen pooler" not in haproxy.content
    assert "pgbouncer" not in image_packages(spec)
    plan = databases.plan(spec, secrets)
    assert {r["name"]: r["state"] for r in plan["roles"]}["pgha_pooler"] == "absent"
    assert {d["name"]: d["state"] for d in plan["databases"]}["pgha_pooler"] == "absent"
    assert not [line for line in patroni.pg_hba(spec) if line.startswith("hostssl pgha_pooler")]


@pytest.mark.parametrize(
    ("raw", "key", "message"),
    [
        (True, "pooler", "expected an object"),
        ("on", "pooler", "expected an object"),
        ({"port": "6432; rm -rf /"}, "pooler.port", "expected an integer"),
        ({"port": 70000}, "pooler.port", "outside 1-65535"),
        ({"listenPort": 5442}, "pooler.listenPort", "collides"),
        ({"port": 5432}, "pooler.port", "collides"),
        ({"port": 6442}, "pooler.listenPort", "collides"),
        ({"defaultPoolSize": 0}, "pooler.defaultPoolSize", "outside 1-"),
        ({"defaultPoolSize": [20]}, "pooler.defaultPoolSize", "expected an integer"),
        ({"maxClientConn": -5}, "pooler.maxClientConn", "must not be negative"),
        ({"maxClientConn": True}, "pooler.maxClientConn", "expected an integer"),
        ({"poolMode": "session"}, "pooler.poolMode", "unknown key"),
        ({"serverIdleTimeoutS": 0}, "pooler.serverIdleTimeoutS", "outside 1-3600"),
        ({"port": "6432\nlisten_addr = *"}, "pooler.port", "control character"),
    ],
)
def test_bad_pooler_settings(dev_config, raw, key, message):
    dev_config["pooler"] = raw
    found = problems(dev_config)
    assert any(p.startswith(f"pgha:{key}") and message in p for p in found), found


def test_render_exits_2_on_a_hostile_pooler(render_edited_dev_stack, capsys):
    assert render_edited_dev_stack("  pgha:pooler: {}", "  pgha:pooler:\n    listenPort: '$(reboot)'") == 2
    err = capsys.readouterr().err
    assert "pgha:pooler.listenPort" in err and "Traceback" not in err


def test_pgha_pooler_cannot_be_declared(dev_config):
    dev_config["roles"] = [{"name": "pgha_pooler"}]
    assert any("roles[0].name" in p and "reserved" in p for p in problems(dev_config))


# ---- rendered files ---------------------------------------------------------------------


def test_pgbouncer_talks_to_its_own_postgres_only_in_transaction_mode(spec, secrets, tls):
    for node in spec.postgres_nodes:
        config = ini(spec, node, secrets, tls)
        assert dict(config["databases"]) == {"*": f"host={node.ip} port={spec.postgres.port}"}
        main = config["pgbouncer"]
        assert (main["listen_addr"], main["listen_port"]) == (str(node.ip), "6442")
        assert main["pool_mode"] == "transaction"
        assert main["server_idle_timeout"] == "60"
        assert main["unix_socket_dir"] == ""
        # The console: read-only, for PgBouncer's exporter (the dev stack has pgha:monitoring).
        assert "admin_users" not in main and main["stats_users"] == "pgha_pooler"


def test_no_console_user_without_monitoring(dev_config, secrets, tls):
    del dev_config["monitoring"]
    spec = load_spec(dev_config, "dev")
    main = ini(spec, spec.nodes[0], secrets, tls)["pgbouncer"]
    assert "admin_users" not in main and "stats_users" not in main


def test_tls_on_both_sides(spec, secrets, tls):
    main = ini(spec, spec.nodes[0], secrets, tls)["pgbouncer"]
    assert main["client_tls_sslmode"] == "require"
    assert main["client_tls_cert_file"] == main["client_tls_key_file"] == pooler.PEM_PATH
    assert main["server_tls_sslmode"] == "verify-full"
    assert main["server_tls_ca_file"] == "/etc/pgha/tls/ca.crt"
    key = pooler_files(spec, spec.nodes[0], secrets, tls)[pooler.PEM_PATH]
    assert key.content == tls.node(spec.nodes[0]).pem_bundle


def test_auth_query_not_a_userlist_of_application_secrets(spec, secrets, tls):
    main = ini(spec, spec.nodes[0], secrets, tls)["pgbouncer"]
    assert main["auth_type"] == "scram-sha-256"
    assert (main["auth_user"], main["auth_dbname"]) == ("pgha_pooler", "pgha_pooler")
    assert main["auth_query"] == "SELECT usename, passwd FROM pgbouncer.get_auth($1)"
    userlist = pooler_files(spec, spec.nodes[0], secrets, tls)[pooler.USERLIST_PATH].content
    assert userlist == '"pgha_pooler" "pooler-Secret-8"\n'
    for value in (*secrets.role_passwords.values(), secrets.superuser_password):
        assert value not in userlist


def test_no_secret_in_a_readable_pooler_file(spec, secrets, tls):
    """A pooler file holding a secret is 0600/0640 and owned by PgBouncer's user."""
    generated = [*secrets.values(), *tls.private_keys()]
    for node in spec.postgres_nodes:
        for path, rendered in pooler_files(spec, node, secrets, tls).items():
            assert path.startswith(("/etc/pgbouncer/", "/etc/pgha/", "/etc/systemd/system/pgbouncer")), path
            holds = any(v in rendered.content for v in generated)
            assert holds == rendered.secret, path
            if holds:
                assert rendered.mode in (0o600, 0o640), path
                assert rendered.owner == "postgres", path  # Debian's pgbouncer.service: User=postgres
            else:
                assert rendered.mode == 0o644, path
        (step,) = [s for s in node_steps(spec, node, secrets, tls) if s.name == "pooler"]
        assert not any(v in step.script for v in generated)


def test_the_lookup_function_never_returns_cluster_roles():
    sql = pooler.auth_sql()
    assert "SECURITY DEFINER" in sql and "SET search_path = pg_catalog, pg_temp" in sql
    assert "a.rolname NOT IN ('postgres', 'replicator', 'rewind_user', 'pgha_pooler')" in sql
    # Every pgha role but the verify probe's, which pg_hba admits to its own database
    # only (as through 5432): the verify phase logs in through 6432 as a client would.
    assert "AND (a.rolname NOT LIKE 'pgha%' OR a.rolname = 'pgha_verify')" in sql
    assert sql.count("pgha_verify") == 1
    assert "NOT a.rolsuper" in sql and "NOT a.rolreplication" in sql
    assert "REVOKE ALL ON FUNCTION pgbouncer.get_auth(text) FROM PUBLIC" in sql
    assert "GRANT EXECUTE ON FUNCTION pgbouncer.get_auth(text) TO pgha_pooler" in sql
    # The step re-creates it only when its text changes.
    assert pooler.auth_digest() == pooler.auth_digest() and pooler.auth_digest().startswith("pgha ")


def test_step_installs_the_package_before_its_files_and_runs_after_databases(spec, secrets, tls):
    for node in spec.postgres_nodes:
        (step,) = [s for s in node_steps(spec, node, secrets, tls) if s.name == "pooler"]
        (db_step,) = [s for s in node_steps(spec, node, secrets, tls) if s.name == "databases"]
        assert plan.runs_before(db_step.name, step.name)
        body = step.script.split("# --- end of library ---")[1]
        assert body.index("install_missing pgbouncer") < body.index("install_files")
        assert "openssl s_client" in body and f"-verify_ip {node.ip}" in body
    for node in spec.nodes:
        if not node.runs_postgres:
            # The repository VM: no pooler; one from the image is disabled, nothing installed.
            (step,) = [s for s in node_steps(spec, node, secrets, tls) if s.name == "pooler"]
            assert not step.files and "systemctl disable -q --now pgbouncer" in step.script
            assert "install_missing" not in step.script.split("# --- end of library ---")[1]


# ---- HAProxy and pg_hba ---------------------------------------------------------------------


def section(text: str, header: str) -> str:
    start = text.index(header)
    end = text.find("\n\n", start)
    return text[start : end if end != -1 else None]


def test_haproxy_sends_6432_to_the_primary_pooler_as_5432_does(spec, secrets, tls):
    node = spec.nodes[0]
    config = next(f for f in node_files(spec, node, secrets, tls) if f.path == HAPROXY_CONFIG).content
    primary, pooled = section(config, "listen primary"), section(config, "listen pooler")
    assert f"bind {node.ip}:6432" in pooled and f"bind {spec.vip}:6432" in pooled
    # Patroni's /primary as 5432, then PgBouncer's own port (tests/core/test_haproxy.py).
    assert pooled.index('send "OPTIONS /primary HTTP/1.0') < pooled.index("tcp-check connect port 6442")
    default_server = next(line for line in primary.splitlines() if "default-server" in line)
    assert default_server in pooled and "on-marked-down shutdown-sessions" in default_server
    for server in spec.postgres_nodes:
        direct = next(line for line in primary.splitlines() if f"server {server.name} " in line)
        assert direct.replace(f":{spec.postgres.port} ", ":6442 ") in pooled


def test_haproxy_applies_the_client_allow_list_to_6432(dev_config, secrets, tls):
    dev_config["clients"] = {"allowFrom": ["192.0.2.0/24"]}
    spec = load_spec(dev_config, "dev")
    config = next(
        f for f in node_files(spec, spec.nodes[0], secrets, tls) if f.path == HAPROXY_CONFIG
    ).content
    assert "tcp-request connection reject unless { src 192.0.2.0/24" in section(config, "listen pooler")


def test_pg_hba_lets_the_pooler_role_in_only_from_members_to_its_database(spec):
    hba = patroni.pg_hba(spec)
    for node in spec.postgres_nodes:
        assert hba_method(hba, "hostssl", "pgha_pooler", "pgha_pooler", str(node.ip)) == "scram-sha-256"
        assert hba_method(hba, "hostssl", "app", "pgha_pooler", str(node.ip)) == "reject"
    assert hba_method(hba, "hostssl", "pgha_pooler", "pgha_pooler", "10.0.0.200") == "reject"
    # The one pgha role the lookup returns (the verify probe's): from a member, where
    # PgBouncer connects from, its own database only, as through 5432.
    for node in spec.postgres_nodes:
        assert hba_method(hba, "hostssl", "pgha_verify", "pgha_verify", str(node.ip)) == "scram-sha-256"
        for database in ("postgres", "app", "pgha_pooler"):
            assert hba_method(hba, "hostssl", database, "pgha_verify", str(node.ip)) == "reject"
    assert hba_method(hba, "hostnossl", "pgha_pooler", "pgha_pooler", "10.0.0.4") == "reject"


def test_secrets_include_the_pooler_password():
    assert "pooler_password" in ClusterSecrets.names()


def test_an_external_witness_is_left_alone(dev_config, secrets, tls):
    """An existing machine is the operator's: no pooler step, not even the one that disables."""
    dev_config["witness"] = EXTERNAL
    spec = load_spec(dev_config, "dev")
    witness_tls = LocalCa.create(spec).issue_cluster(spec)
    assert not [s for s in node_steps(spec, spec.node("qnetd"), secrets, witness_tls) if s.name == "pooler"]
