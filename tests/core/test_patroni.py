"""Patroni's YAML: parsed back and checked field by field."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

import pytest
import yaml

from pgha import ConfigError, load_spec, patroni


def parsed(spec, node, secrets) -> dict:
    return yaml.safe_load(config_file(spec, node, secrets).content)


def config_file(spec, node, secrets):
    # The config holds no certificate, only paths: any key pair will do here.
    from pgha import ClusterTls

    placeholders = ClusterTls.placeholders(spec)
    return next(f for f in patroni.files(spec, node, secrets, placeholders) if f.path == patroni.CONFIG_PATH)


def test_node_identity_and_addresses(spec, secrets):
    for node in spec.postgres_nodes:
        config = parsed(spec, node, secrets)
        assert config["name"] == node.name
        assert config["scope"] == "pgha"
        assert config["restapi"]["listen"] == f"{node.ip}:8008"
        assert config["postgresql"]["connect_address"] == f"{node.ip}:5442"
        # No loopback listener: Patroni's own connections use the Unix socket.
        assert config["postgresql"]["listen"] == f"{node.ip}:5442"
        assert config["postgresql"]["use_unix_socket"] is True
        # Its own etcd member first, used as listed (no discovery of a random one).
        if node.runs_postgres:
            assert config["etcd"]["hosts"][0] == f"{node.ip}:2379"
        assert sorted(config["etcd"]["hosts"]) == ["10.0.0.2:2379", "10.0.0.3:2379", "10.0.0.4:2379"]
        assert config["etcd"]["use_proxies"] is True


def test_dcs_settings(spec, secrets):
    dcs = parsed(spec, spec.nodes[0], secrets)["bootstrap"]["dcs"]
    assert (dcs["ttl"], dcs["loop_wait"], dcs["retry_timeout"]) == (20, 1, 7)
    assert dcs["failsafe_mode"] is True
    assert dcs["synchronous_mode"] is True and dcs["synchronous_mode_strict"] is False
    assert dcs["postgresql"]["use_pg_rewind"] is True
    assert dcs["postgresql"]["use_slots"] is True
    assert dcs["postgresql"]["parameters"]["password_encryption"] == "scram-sha-256"


def test_users_and_passwords(spec, secrets):
    auth = parsed(spec, spec.nodes[0], secrets)["postgresql"]["authentication"]
    pem = "/etc/pgha/tls/postgres.pem"
    verified = {
        "sslmode": "verify-full",
        "sslrootcert": "/etc/pgha/tls/ca.crt",
        "sslcert": pem,
        "sslkey": pem,
    }
    assert auth["superuser"] == {"username": "postgres", "password": "su-Secret-1"}
    assert auth["replication"] == {"username": "replicator", "password": "repl-Secret-2", **verified}
    assert auth["rewind"] == {"username": "rewind_user", "password": "rewind-Secret-3", **verified}


def hba_method(hba: list[str], kind: str, database: str, user: str, address: str | None) -> str | None:
    """PostgreSQL's first-match rule over our pg_hba lines (the subset of syntax pgha writes).

    ``kind`` is local, hostssl or hostnossl; returns the method or None (no line: refused).
    """
    for line in hba:
        fields = line.split()
        if fields[0] == "local":
            if kind != "local":
                continue
            databases, users, method = fields[1], fields[2], fields[3]
        else:
            if kind == "local" or (fields[0] == "hostssl" and kind != "hostssl"):
                continue
            databases, users, network, method = fields[1], fields[2], fields[3], " ".join(fields[4:])
            if ip_address(address) not in ip_network(network):
                continue
        is_replication = database == "replication"
        db_ok = (databases == "all" and not is_replication) or database in databases.split(",")
        if db_ok and (users == "all" or user in users.split(",")):
            return method
    return None


def test_pg_hba_superuser_only_on_the_socket(spec, secrets):
    hba = parsed(spec, spec.nodes[0], secrets)["postgresql"]["pg_hba"]
    assert hba_method(hba, "local", "postgres", "postgres", None) == "peer"
    for address in ("10.0.0.4", "10.0.0.1", "192.0.2.7"):
        for database in ("postgres", "app", "replication"):
            assert hba_method(hba, "hostssl", database, "postgres", address) in ("reject", None)
    # An application role: TLS and SCRAM from the private network, nothing in clear.
    assert hba_method(hba, "hostssl", "app", "app", "10.0.0.1") == "scram-sha-256"
    assert hba_method(hba, "hostnossl", "app", "app", "10.0.0.1") is None
    assert hba_method(hba, "hostssl", "app", "app", "192.0.2.7") is None
    # ...and never a replication connection.
    assert hba_method(hba, "hostssl", "replication", "app", "10.0.0.4") == "reject"


def test_pg_hba_replication_and_rewind_only_from_members(spec, secrets):
    hba = parsed(spec, spec.nodes[0], secrets)["postgresql"]["pg_hba"]
    # From a member's address, and only with a cluster certificate: through the VIP a client
    # arrives from a member's address too (HAProxy's), but must then bring its own certificate.
    with_cert = "scram-sha-256 clientcert=verify-ca"
    for member in ("10.0.0.4", "10.0.0.3", "10.0.0.2"):
        assert hba_method(hba, "hostssl", "replication", "replicator", member) == with_cert
        assert hba_method(hba, "hostssl", "postgres", "rewind_user", member) == with_cert
    # The repository VM, the lab's client, any other address of the network: refused.
    for stranger in ("10.0.0.7", "10.0.0.1", "10.0.0.10"):
        assert hba_method(hba, "hostssl", "replication", "replicator", stranger) == "reject"
        assert hba_method(hba, "hostssl", "postgres", "rewind_user", stranger) == "reject"
        assert hba_method(hba, "hostssl", "app", "replicator", stranger) == "reject"


def test_pg_hba_verify_role_only_to_its_database_from_members(spec, secrets):
    hba = parsed(spec, spec.nodes[0], secrets)["postgresql"]["pg_hba"]
    for member in ("10.0.0.4", "10.0.0.3", "10.0.0.2"):
        assert hba_method(hba, "hostssl", "pgha_verify", "pgha_verify", member) == "scram-sha-256"
        assert hba_method(hba, "hostnossl", "pgha_verify", "pgha_verify", member) == "reject"
        # Any other database, even from a member: refused before a password.
        for database in ("postgres", "app", "replication"):
            assert hba_method(hba, "hostssl", database, "pgha_verify", member) == "reject"
        # The superuser still has no network login, not even to the verify database.
        assert hba_method(hba, "hostssl", "pgha_verify", "postgres", member) == "reject"
    for stranger in ("10.0.0.7", "10.0.0.1", "10.0.0.10"):
        assert hba_method(hba, "hostssl", "pgha_verify", "pgha_verify", stranger) == "reject"


def test_pg_hba_follows_a_scale_out(dev_config, secrets):
    dev_config["vms"].append({"name": "psql-04", "host": "pve2", "ip": "10.0.0.5"})
    spec5 = load_spec(dev_config, "dev")
    for node in spec5.postgres_nodes:
        hba = parsed(spec5, node, secrets)["postgresql"]["pg_hba"]
        assert hba_method(hba, "hostssl", "replication", "replicator", "10.0.0.5").startswith("scram-sha-256")


def test_postgresql_serves_tls_with_the_nodes_certificate(spec, secrets):
    parameters = parsed(spec, spec.nodes[0], secrets)["postgresql"]["parameters"]
    assert parameters["ssl"] == "on"
    assert parameters["ssl_cert_file"] == parameters["ssl_key_file"] == "/etc/pgha/tls/postgres.pem"
    assert parameters["ssl_min_protocol_version"] == "TLSv1.2"


def test_rest_api_is_https_with_a_password(spec, secrets):
    restapi = parsed(spec, spec.nodes[0], secrets)["restapi"]
    assert restapi["certfile"] == restapi["keyfile"] == "/etc/pgha/tls/postgres.pem"
    assert restapi["cafile"] == "/etc/pgha/tls/ca.crt"
    assert restapi["authentication"] == {"username": "patroni", "password": "api-Secret-4"}


def test_etcd_over_tls_with_a_client_certificate(spec, secrets):
    etcd3 = parsed(spec, spec.nodes[0], secrets)["etcd"]
    assert etcd3["protocol"] == "https"
    assert etcd3["cacert"] == "/etc/pgha/tls/ca.crt"
    # The node's etcd pair in a file of its own, not PostgreSQL's (a key per service).
    assert etcd3["cert"] == etcd3["key"] == "/etc/pgha/tls/patroni-etcd.pem"


def test_key_file_belongs_to_postgres(spec, secrets, tls):
    node = spec.nodes[2]
    pem = next(f for f in patroni.files(spec, node, secrets, tls) if f.path == patroni.PEM_PATH)
    assert (pem.owner, pem.group, pem.mode, pem.secret) == ("postgres", "postgres", 0o600, True)
    assert pem.content == tls.node(node).pem_bundle
    etcd_pem = next(f for f in patroni.files(spec, node, secrets, tls) if f.path == patroni.ETCD_PEM_PATH)
    assert (etcd_pem.owner, etcd_pem.group, etcd_pem.mode, etcd_pem.secret) == (
        "postgres",
        "postgres",
        0o600,
        True,
    )
    assert etcd_pem.content == tls.etcd_pair(node).pem_bundle


def test_watchdog_automatic(spec, secrets):
    assert parsed(spec, spec.nodes[0], secrets)["watchdog"]["mode"] == "automatic"


def test_config_file_is_private(spec, secrets):
    rendered = config_file(spec, spec.nodes[0], secrets)
    assert (rendered.mode, rendered.owner, rendered.secret) == (0o600, "postgres", True)


def test_parameters_from_config_override_defaults(dev_config, secrets):
    from pgha import load_spec

    dev_config["postgres"] = {"parameters": {"max_connections": 500, "work_mem": "8MB"}}
    spec = load_spec(dev_config, "dev")
    parameters = parsed(spec, spec.nodes[0], secrets)["bootstrap"]["dcs"]["postgresql"]["parameters"]
    assert parameters["max_connections"] == 500 and parameters["work_mem"] == "8MB"


def test_step_drops_debian_cluster_and_waits(spec, secrets, tls):
    (step,) = patroni.steps(spec, spec.nodes[0], secrets, tls)
    assert "drop_default_cluster 17" in step.script
    assert "create_main_cluster = false" in step.stdin
    assert "--cacert /etc/pgha/tls/ca.crt https://10.0.0.4:8008/health" in step.script


def test_one_synchronous_standby_on_another_host_by_default(spec, secrets):
    dcs = parsed(spec, spec.nodes[0], secrets)["bootstrap"]["dcs"]
    assert spec.host_aware_sync
    assert dcs["synchronous_node_count"] == 1


def test_every_replica_is_synchronous_without_host_awareness(dev_config, secrets):
    from pgha import load_spec

    dev_config["patroni"] = {"hostAwareSync": False}
    spec = load_spec(dev_config, "dev")
    assert not spec.host_aware_sync
    assert parsed(spec, spec.nodes[0], secrets)["bootstrap"]["dcs"]["synchronous_node_count"] == 2


def test_synchronous_node_count_is_bounded(dev_config):
    import pytest

    from pgha import ConfigError, load_spec

    dev_config["patroni"] = {"synchronousNodeCount": 3}
    with pytest.raises(ConfigError) as caught:
        load_spec(dev_config, "dev")
    assert any("pgha:patroni.synchronousNodeCount: 3" in p for p in caught.value.problems)


def test_security_parameters_cannot_be_overridden(dev_config):
    import pytest

    from pgha import ConfigError, load_spec

    dev_config["postgres"] = {"parameters": {"ssl": "off", "password_encryption": "md5", "work_mem": "8MB"}}
    with pytest.raises(ConfigError) as caught:
        load_spec(dev_config, "dev")
    assert sorted(p.split(":")[1] for p in caught.value.problems) == [
        "postgres.parameters.password_encryption",
        "postgres.parameters.ssl",
    ]
    assert all("managed by pgha" in p for p in caught.value.problems)


def test_dcs_is_etcd_v2_not_etcd3(spec, secrets):
    config = parsed(spec, spec.nodes[0], secrets)
    assert "etcd" in config and "etcd3" not in config


def test_etcd_api_v3_selects_etcd3_with_the_same_hosts_and_tls(dev_config, secrets):
    del dev_config["backup"]  # v3 is refused beside a repository VM
    v2 = load_spec(dev_config, "dev")
    dev_config["patroni"] = {**dev_config.get("patroni", {}), "etcdApi": "v3"}
    v3 = load_spec(dev_config, "dev")
    node = v3.nodes[0]
    config = parsed(v3, node, secrets)
    assert "etcd3" in config and "etcd" not in config
    assert config["etcd3"] == parsed(v2, v2.nodes[0], secrets)["etcd"]


def test_etcd_api_accepts_only_v2_or_v3(dev_config):
    dev_config["patroni"] = {**dev_config.get("patroni", {}), "etcdApi": "v4"}
    with pytest.raises(ConfigError) as caught:
        load_spec(dev_config, "dev")
    assert any("patroni.etcdApi" in p for p in caught.value.problems), caught.value.problems
