"""pgha:databases and pgha:roles: validation, the plan file, and the tool's decisions."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from pgha import ConfigError, databases, load_spec, node_steps
from pgha.databases import pgha_databases
from pgha.plan import runs_before
from pgha.secrets import ClusterSecrets


def problems(config) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_spec(config, "dev")
    return caught.value.problems


def assert_problem(config, *fragments: str) -> None:
    found = problems(config)
    assert any(all(f in p for f in fragments) for p in found), found


# ---- config -------------------------------------------------------------------------


def test_default_is_one_application_database_and_its_owner(spec):
    assert [(d.name, d.owner, d.state) for d in spec.databases] == [("app", "app", "present")]
    assert [r.name for r in spec.login_roles] == ["app"]


def test_declared_databases_and_roles(dev_config):
    dev_config["databases"] = [
        {"name": "wiki", "owner": "wiki", "extensions": ["pg_trgm", "uuid-ossp"]},
        {"name": "js", "owner": "js_owner", "state": "absent"},
    ]
    dev_config["roles"] = [
        {"name": "js_owner", "login": False, "state": "absent"},
        {"name": "reader", "memberOf": ["wiki", "pg_monitor"], "connectionLimit": 5, "rotation": 2},
    ]
    spec = load_spec(dev_config, "dev")
    assert [d.name for d in spec.databases] == ["wiki", "js"]
    # An owner nobody declared becomes a login role; the app default is gone.
    assert {r.name for r in spec.login_roles} == {"reader", "wiki"}
    reader = next(r for r in spec.roles if r.name == "reader")
    assert (reader.member_of, reader.connection_limit, reader.rotation) == (("wiki", "pg_monitor"), 5, 2)


@pytest.mark.parametrize(
    "name",
    ["postgres", "replicator", "rewind_user", "pg_monitor", "template1", "pgha_pool", "public", "all"],
)
def test_reserved_role_names(dev_config, name):
    dev_config["roles"] = [{"name": name}]
    assert_problem(dev_config, "pgha:roles[0].name", repr(name))


@pytest.mark.parametrize("name", ["postgres", "template0", "template1", "replication", "pg_x"])
def test_reserved_database_names(dev_config, name):
    dev_config["databases"] = [{"name": name, "owner": "app"}]
    assert_problem(dev_config, "pgha:databases[0].name", repr(name))


@pytest.mark.parametrize(
    "hostile", ["wiki\n", "wiki; drop", 'wi"ki', "Wiki", "a" * 64, "", 7, ["x"], "wiki'--", "1wiki"]
)
def test_hostile_names_are_refused(dev_config, hostile):
    dev_config["databases"] = [{"name": hostile, "owner": hostile}]
    assert_problem(dev_config, "pgha:databases[0].name")
    assert_problem(dev_config, "pgha:databases[0].owner")


def test_extensions_memberships_and_state_are_checked(dev_config):
    dev_config["databases"] = [
        {"name": "wiki", "owner": "wiki", "extensions": ["pg_trgm; drop", 3], "state": "gone", "size": 1}
    ]
    dev_config["roles"] = [
        {"name": "a", "memberOf": ["b", "pg_execute_server_program", "a"], "connectionLimit": -2},
        {"name": "b", "memberOf": ["c"], "login": "maybe"},
        {"name": "c", "memberOf": ["b"]},
    ]
    found = problems(dev_config)
    for fragments in (
        ("pgha:databases[0].extensions[0]",),
        ("pgha:databases[0].extensions[1]",),
        ("pgha:databases[0].state", "'gone'"),
        ("pgha:databases[0].size", "unknown key"),
        ("pgha:roles[0].memberOf[1]", "pg_execute_server_program"),
        ("pgha:roles[0].memberOf", "member of itself"),
        ("pgha:roles[0].connectionLimit", "-2"),
        ("pgha:roles[1].login", "maybe"),
        ("pgha:roles", "circular"),
    ):
        assert any(all(f in p for f in fragments) for p in found), (fragments, found)


def test_owner_declared_absent_and_duplicates(dev_config):
    dev_config["databases"] = [{"name": "wiki", "owner": "wiki"}, {"name": "wiki", "owner": "wiki"}]
    dev_config["roles"] = [{"name": "wiki", "state": "absent"}, {"name": "x", "memberOf": ["nobody"]}]
    assert_problem(dev_config, "pgha:databases[0].owner", "declared absent")
    assert_problem(dev_config, "pgha:databases", "'wiki' is declared more than once")
    assert_problem(dev_config, "pgha:roles[1].memberOf", "'nobody'")


def test_an_application_removed_whole(dev_config):
    """Database and roles absent together: memberships of an absent role are not checked."""
    dev_config["databases"] = [{"name": "js", "owner": "js_owner", "state": "absent"}]
    dev_config["roles"] = [
        {"name": "js_owner", "login": False, "state": "absent"},
        {"name": "js_app", "memberOf": ["js_owner"], "state": "absent"},
    ]
    spec = load_spec(dev_config, "dev")
    assert {r.state for r in spec.roles} == {"absent"} and spec.login_roles == ()


def test_given_passwords_are_checked_without_echoing_them(dev_config):
    dev_config["rolePasswords"] = {"app": "short\nsecret", "stranger": "x" * 20}
    found = problems(dev_config)
    assert any("pgha:rolePasswords.app" in p and "value hidden" in p for p in found), found
    assert not any("short" in p for p in found)
    assert any("pgha:rolePasswords.stranger" in p for p in found), found


def test_clients_allow_from(dev_config):
    dev_config["clients"] = {"allowFrom": ["192.0.2.0/24", "10.0.0.1/32"]}
    assert [str(n) for n in load_spec(dev_config, "dev").clients.allow_from] == [
        "192.0.2.0/24",
        "10.0.0.1/32",
    ]
    dev_config["clients"] = {"allowFrom": ["10.0.0.1/8", "10.0.0.0/24\nx", 5], "other": 1}
    for key in ("allowFrom[0]", "allowFrom[1]", "allowFrom[2]", "clients.other"):
        assert_problem(dev_config, key)


# ---- the step and its plan file -------------------------------------------------------


def test_a_step_on_every_postgres_vm_after_patroni_config(spec, secrets, tls):
    for node in spec.nodes:
        steps = [s for s in node_steps(spec, node, secrets, tls) if s.name == "databases"]
        assert len(steps) == (1 if node.runs_postgres else 0), node.name
        if steps:
            (step,) = steps
            assert runs_before("patroni-config", step.name) and step.has_secrets
            assert "app-Secret-6-abcdefgh" not in step.script + step.command
            plan_file = next(f for f in step.files if f.path == databases.PLAN_PATH)
            assert (plan_file.owner, plan_file.group, plan_file.mode) == ("postgres", "postgres", 0o600)
            plan = json.loads(plan_file.content)
            # pgha's own entries first: the verify probe's login, not a superuser, owning its database.
            assert plan["roles"] == [
                {
                    "name": "pgha_verify",
                    "login": True,
                    "connection_limit": 3,
                    "member_of": [],
                    "state": "present",
                    "password": "verify-Secret-7",
                },
                # PgBouncer's auth_query login (the dev stack has pgha:pooler).
                {
                    "name": "pgha_pooler",
                    "login": True,
                    "connection_limit": 10,
                    "member_of": [],
                    "state": "present",
                    "password": "pooler-Secret-8",
                },
                {
                    "name": "app",
                    "login": True,
                    "connection_limit": -1,
                    "member_of": [],
                    "state": "present",
                    "password": "app-Secret-6-abcdefgh",
                },
            ]
            assert [(d["name"], d["owner"], d["state"]) for d in plan["databases"]] == [
                ("pgha_verify", "pgha_verify", "present"),
                ("pgha_pooler", "postgres", "present"),
                ("app", "app", "present"),
            ]
            assert (
                "runuser -u postgres -- /usr/local/lib/pgha/pgha-databases /etc/pgha/pgha-databases.json"
                in step.script
            )


def test_the_verify_role_and_database_are_kept_even_with_nothing_declared(dev_config, secrets, tls):
    dev_config["databases"] = []
    dev_config["roles"] = []
    bare = load_spec(dev_config, "dev")
    assert not bare.databases and not bare.roles
    for node in bare.nodes:
        steps = [s for s in node_steps(bare, node, secrets, tls) if s.name == "databases"]
        assert len(steps) == (1 if node.runs_postgres else 0), node.name
    plan = databases.plan(bare, secrets)
    assert [r["name"] for r in plan["roles"]] == ["pgha_verify", "pgha_pooler"]
    assert [d["name"] for d in plan["databases"]] == ["pgha_verify", "pgha_pooler"]
    # The tool creates them like declared ones: a login role (never a superuser), then its database.
    todo = pgha_databases.actions({"roles": {}, "databases": {}}, plan)
    assert [a.describe for a in todo] == [
        "create_role pgha_verify",
        "set_password pgha_verify",
        "create_role pgha_pooler",
        "set_password pgha_pooler",
        "create_database pgha_verify pgha_verify",
        "revoke_public pgha_verify",
        "create_database pgha_pooler postgres",
        "revoke_public pgha_pooler",
    ]
    # A superuser pgha_verify (tampered with) is brought back to a plain login.
    verifier = pgha_databases.scram_verifier("verify-Secret-7")
    tampered = {"login": True, "connection_limit": 3, "password": verifier, "member_of": []}
    tampered |= {a: a == "superuser" for a in pgha_databases.DENIED_ATTRIBUTES}
    pooler = {"login": True, "connection_limit": 10, "member_of": []}
    pooler |= {"password": pgha_databases.scram_verifier("pooler-Secret-8")} | dict.fromkeys(
        pgha_databases.DENIED_ATTRIBUTES, False
    )
    state = {
        "roles": {"pgha_verify": tampered, "pgha_pooler": pooler},
        "databases": {
            "pgha_verify": {"owner": "pgha_verify", "public_access": False, "extensions": []},
            "pgha_pooler": {"owner": "postgres", "public_access": False, "extensions": []},
        },
    }
    assert [a.describe for a in pgha_databases.actions(state, plan)] == ["alter_role pgha_verify"]


def test_a_nologin_role_gets_no_password_and_a_missing_one_is_an_error(dev_config, secrets):
    dev_config["databases"] = [{"name": "js", "owner": "js_owner"}]
    dev_config["roles"] = [{"name": "js_owner", "login": False}, {"name": "js_app", "memberOf": ["js_owner"]}]
    spec = load_spec(dev_config, "dev")
    plan = databases.plan(spec, ClusterSecrets.placeholders(["js_app"]))
    assert "password" not in next(r for r in plan["roles"] if r["name"] == "js_owner")
    # Real secrets without the role's password: a wiring bug, never an empty or stand-in password.
    with pytest.raises(KeyError, match="js_app"):
        databases.plan(spec, secrets)


# ---- the tool: SCRAM and the decisions ---------------------------------------------------


def test_scram_verifier_matches_rfc7677_test_vector():
    """RFC 7677's example: user 'user', password 'pencil', its salt and 4096 iterations."""
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    verifier = pgha_databases.scram_verifier("pencil", salt)
    salted = hashlib.pbkdf2_hmac("sha256", b"pencil", salt, 4096)
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    # The RFC's server signature for its exchange, recomputed from our ServerKey.
    auth = (
        "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    )
    signature = base64.b64encode(hmac.new(server_key, auth.encode(), "sha256").digest()).decode()
    assert signature == "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    assert verifier.startswith("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$")
    stored_key, verifier_server_key = (base64.b64decode(k) for k in verifier.split("$")[2].split(":"))
    assert verifier_server_key == server_key
    # The RFC's client proof, checked the way a server does with our StoredKey.
    proof = base64.b64decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    client_signature = hmac.new(stored_key, auth.encode(), "sha256").digest()
    client_key = bytes(a ^ b for a, b in zip(proof, client_signature, strict=True))
    assert hashlib.sha256(client_key).digest() == stored_key


def test_scram_matches_only_the_same_password():
    verifier = pgha_databases.scram_verifier("correct-horse-battery")
    assert pgha_databases.scram_matches(verifier, "correct-horse-battery")
    assert not pgha_databases.scram_matches(verifier, "correct-horse-battery!")
    assert not pgha_databases.scram_matches(None, "x")
    assert not pgha_databases.scram_matches("md5abcdef", "x")
    assert not pgha_databases.scram_matches("SCRAM-SHA-256$garbage", "x")


def _plan() -> dict:
    return {
        "roles": [
            {
                "name": "wiki",
                "login": True,
                "connection_limit": -1,
                "member_of": [],
                "state": "present",
                "password": "wiki-password-0123456789",
            },
            {"name": "js_owner", "login": False, "connection_limit": -1, "member_of": [], "state": "present"},
            {
                "name": "js_app",
                "login": True,
                "connection_limit": 5,
                "member_of": ["js_owner", "pg_monitor"],
                "state": "present",
                "password": "js-password-0123456789",
            },
            {"name": "old", "login": True, "connection_limit": -1, "member_of": [], "state": "absent"},
        ],
        "databases": [
            {"name": "wiki", "owner": "wiki", "extensions": ["pg_trgm"], "state": "present"},
            {"name": "js", "owner": "js_owner", "extensions": [], "state": "present"},
            {"name": "gone", "owner": "old", "extensions": [], "state": "absent"},
        ],
    }


def _converged(plan: dict) -> dict:
    """The catalog state once ``plan`` is applied."""
    roles = {
        r["name"]: {
            "login": r["login"],
            "connection_limit": r["connection_limit"],
            "password": pgha_databases.scram_verifier(r["password"]) if r.get("password") else None,
            **dict.fromkeys(pgha_databases.DENIED_ATTRIBUTES, False),
            "member_of": list(r["member_of"]),
        }
        for r in plan["roles"]
        if r["state"] == "present"
    }
    dbs = {
        d["name"]: {"owner": d["owner"], "public_access": False, "extensions": ["plpgsql", *d["extensions"]]}
        for d in plan["databases"]
        if d["state"] == "present"
    }
    return {"roles": roles, "databases": dbs}


def test_from_nothing_everything_is_created_in_a_safe_order():
    plan = _plan()
    empty = {"roles": {}, "databases": {}}
    verbs = [(a.verb, a.args[0]) for a in pgha_databases.actions(empty, plan)]
    assert verbs == [
        ("create_role", "wiki"),
        ("set_password", "wiki"),
        ("create_role", "js_owner"),
        ("create_role", "js_app"),
        ("set_password", "js_app"),
        ("grant", "js_owner"),
        ("grant", "pg_monitor"),
        ("create_database", "wiki"),
        ("revoke_public", "wiki"),
        ("create_extension", "wiki"),
        ("create_database", "js"),
        ("revoke_public", "js"),
    ]


def test_converged_state_needs_nothing():
    plan = _plan()
    assert pgha_databases.actions(_converged(plan), plan) == []


def test_only_what_differs_is_changed_and_undeclared_objects_are_left_alone():
    plan = _plan()
    state = _converged(plan)
    state["roles"]["wiki"]["password"] = pgha_databases.scram_verifier("the-old-password-xyz")
    state["roles"]["js_app"]["member_of"] = ["js_owner", "pg_monitor", "pg_read_all_data", "someone_else"]
    state["roles"]["js_owner"]["superuser"] = True
    state["databases"]["js"]["public_access"] = True
    state["databases"]["js"]["owner"] = "postgres"
    # Objects nobody declared: never in the snapshot's keys the plan does not name, never acted on.
    state["roles"]["stranger"] = {**state["roles"]["wiki"]}
    state["databases"]["other"] = {"owner": "stranger", "public_access": True, "extensions": []}
    described = [a.describe for a in pgha_databases.actions(state, plan)]
    assert described == [
        "set_password wiki",
        "alter_role js_owner",
        "revoke pg_read_all_data js_app",
        "alter_owner js js_owner",
        "revoke_public js",
    ]
    # No password in what gets printed.
    assert not any("password-" in d for d in described)


def test_absent_objects_are_dropped_databases_first_and_only_when_they_exist():
    plan = _plan()
    state = _converged(plan)
    assert pgha_databases.actions(state, plan) == []
    state["roles"]["old"] = {**state["roles"]["wiki"]}
    state["databases"]["gone"] = {"owner": "old", "public_access": False, "extensions": []}
    assert [a.describe for a in pgha_databases.actions(state, plan)] == [
        "drop_database gone",
        "drop_role old",
    ]


def test_the_tool_is_a_plain_module_with_only_the_vm_library():
    source = (databases.HERE / "pgha_databases.py").read_text()
    imports = [line for line in source.splitlines() if "import pgha" in line or "from pgha" in line]
    assert imports == ["from pgha.vmlib.scram import scram_matches, scram_verifier  # noqa: E402"]
    assert "from ." not in source
    program, plan_file, library = databases.files(load_spec_dev(), ClusterSecrets.placeholders(["app"]))
    assert program.path == databases.TOOL_PATH and program.content == source and program.mode == 0o755
    assert plan_file.path == "/etc/pgha/pgha-databases.json" and plan_file.secret
    assert library.path == "/usr/local/lib/pgha/pgha/vmlib/scram.py"


def load_spec_dev():
    from pgha.stackfile import load_stack

    return load_stack("dev")


# ---- exported connection strings ----------------------------------------------------


def test_connection_strings_detect_a_dead_peer_in_well_under_a_minute(spec):
    """After the VIP moves, a client must not hang on the old holder's silent end (libpq parses it)."""
    from psycopg.conninfo import conninfo_to_dict

    owner = spec.databases[0]
    url = databases.connection_string(spec, owner, "p@ss/w:rd", 5432)
    parsed = conninfo_to_dict(url)  # libpq's own parser: an unknown or malformed option raises
    assert parsed["host"] == str(spec.vip) and parsed["port"] == "5432"
    assert parsed["password"] == "p@ss/w:rd" and parsed["sslmode"] == "verify-full"
    assert parsed["keepalives"] == "1"
    idle, interval, count = (int(parsed[f"keepalives_{k}"]) for k in ("idle", "interval", "count"))
    dead_after = idle + interval * count
    assert 10 <= dead_after <= 30, dead_after
    # Unacknowledged data is given up a little after the keepalives would have.
    assert dead_after * 1000 <= int(parsed["tcp_user_timeout"]) <= 45_000
    # The setup is bounded too: a connection HAProxy holds half-made in a switchover fails.
    assert 5 <= int(parsed["connect_timeout"]) <= 30
    for port in (spec.haproxy.replica_port, 6432):
        other = conninfo_to_dict(databases.connection_string(spec, owner, "x", port))
        assert other["port"] == str(port)
        assert {k: v for k, v in other.items() if k not in ("port", "password")} == {
            k: v for k, v in parsed.items() if k not in ("port", "password")
        }
