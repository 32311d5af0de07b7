"""etcd's environment file: one member per node, the seed's variables, our data dir, TLS only."""

from __future__ import annotations

import subprocess

from pgha import etcd, load_spec, membership, plan


def env(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {k: v.strip('"') for k, v in pairs}


def env_file(spec, node, tls):
    return next(f for f in etcd.files(spec, node, tls) if f.path == etcd.ENV_PATH)


def test_member_file_per_node(spec, tls):
    for node in etcd.members(spec):
        rendered = env_file(spec, node, tls)
        assert rendered.path == "/etc/default/etcd"
        values = env(rendered.content)
        assert values["ETCD_NAME"] == node.name
        assert values["ETCD_LISTEN_PEER_URLS"] == f"https://{node.ip}:2380"
        assert values["ETCD_ADVERTISE_CLIENT_URLS"] == f"https://{node.ip}:2379"
        # Founding or joining is decided on the VM (pgha.membership).
        assert "ETCD_INITIAL_CLUSTER" not in values and "ETCD_INITIAL_CLUSTER_STATE" not in values
        assert etcd.initial_cluster(spec) == (
            "psql-01=https://10.0.0.4:2380,psql-02=https://10.0.0.3:2380,psql-03=https://10.0.0.2:2380"
        )
        assert values["ETCD_DATA_DIR"] == etcd.DATA_DIR != "/var/lib/etcd/default"
        assert not rendered.secret


def test_tls_only_with_client_certificates_and_only_metrics_on_loopback(spec, tls):
    values = env(env_file(spec, spec.nodes[0], tls).content)
    # One listener per kind, on the private IP, TLS: no http://, no 127.0.0.1.
    assert values["ETCD_LISTEN_CLIENT_URLS"] == "https://10.0.0.4:2379"
    assert values["ETCD_LISTEN_PEER_URLS"] == "https://10.0.0.4:2380"
    assert values["ETCD_CLIENT_CERT_AUTH"] == values["ETCD_PEER_CLIENT_CERT_AUTH"] == "true"
    assert values["ETCD_TRUSTED_CA_FILE"] == values["ETCD_PEER_TRUSTED_CA_FILE"] == "/etc/pgha/tls/ca.crt"
    for key in ("ETCD_CERT_FILE", "ETCD_KEY_FILE", "ETCD_PEER_CERT_FILE", "ETCD_PEER_KEY_FILE"):
        assert values[key] == etcd.PEM_PATH
    # The one plain listener: metrics and health (no keys) on loopback, for the monitoring port.
    assert values["ETCD_LISTEN_METRICS_URLS"] == f"http://{etcd.METRICS_ADDRESS}"
    assert etcd.METRICS_ADDRESS.startswith("127.0.0.1:")
    assert not any("http://" in v for k, v in values.items() if k != "ETCD_LISTEN_METRICS_URLS")


def test_key_file_is_etcds_own(spec, tls):
    node = spec.nodes[1]
    pem = next(f for f in etcd.files(spec, node, tls) if f.path == etcd.PEM_PATH)
    assert (pem.owner, pem.group, pem.mode, pem.secret) == ("etcd", "etcd", 0o600, True)
    # The node's etcd pair, not the certificate PostgreSQL and HAProxy hold (a key per service).
    assert pem.content == tls.etcd_pair(node).pem_bundle != tls.node(node).pem_bundle


def test_token_is_the_same_everywhere(spec, tls):
    tokens = {env(env_file(spec, n, tls).content)["ETCD_INITIAL_CLUSTER_TOKEN"] for n in etcd.members(spec)}
    assert len(tokens) == 1


def test_witness_gives_one_member_per_host(dev_config, tls):
    dev_config["witness"] = {"name": "witness", "host": "pve3", "ip": "10.0.0.6"}
    spec = load_spec(dev_config, "dev")
    members = [m.name for m in etcd.members(spec)]
    assert members == ["psql-01", "psql-02", "witness"]
    assert etcd.client_endpoints(spec) == ["10.0.0.4:2379", "10.0.0.3:2379", "10.0.0.6:2379"]
    node = spec.node("psql-03")
    (absent,) = etcd.steps(spec, node, tls, membership.helper(spec, node))
    assert "systemctl disable -q --now etcd" in absent.script
    assert [f.path for f in absent.files] == [membership.HELPER_PATH]


def test_steps_start_without_blocking_and_wait_for_health(spec, tls):
    node = spec.node("psql-02")
    install, health = etcd.steps(spec, node, tls, membership.helper(spec, node))
    assert plan.runs_before(install.name, health.name)
    assert "systemctl restart --no-block etcd" in install.script
    # A rotated certificate alone restarts nothing: etcd reads it on each handshake.
    guard = 'elif [ "$(runtime_settings)" != "$before" ] || ! systemctl is-active -q etcd; then'
    assert guard in install.script
    assert "endpoint health --cluster" in health.script
    assert (
        "--endpoints=https://10.0.0.3:2379 --cacert=/etc/pgha/tls/ca.crt "
        "--cert=/etc/pgha/tls/etcd.pem --key=/etc/pgha/tls/etcd.pem"
    ) in health.script


def test_v2_api_is_enabled_for_patroni(spec, tls):
    """Patroni's DCS is etcd's v2 API (no leases a stale leader could revoke)."""
    assert env(env_file(spec, spec.nodes[0], tls).content)["ETCD_ENABLE_V2"] == "true"


def test_clients_and_peers_must_name_the_etcd_client_name(spec, tls):
    values = env(env_file(spec, spec.nodes[0], tls).content)
    assert values["ETCD_CLIENT_CERT_ALLOWED_HOSTNAME"] == values["ETCD_PEER_CERT_ALLOWED_HOSTNAME"]
    assert values["ETCD_PEER_CERT_ALLOWED_HOSTNAME"] == "etcd-client.pgha.internal"


def test_etcd_api_v3_drops_only_the_client_name_check(dev_config, tls):
    """etcd 3.5 refuses its own JSON gateway (Patroni's etcd3) under the client name check."""
    dev_config["patroni"] = {**dev_config.get("patroni", {}), "etcdApi": "v3"}
    del dev_config["backup"]  # v3 is refused beside a repository VM
    spec = load_spec(dev_config, "dev")
    values = env(env_file(spec, spec.nodes[0], tls).content)
    assert "ETCD_CLIENT_CERT_ALLOWED_HOSTNAME" not in values
    assert values["ETCD_PEER_CERT_ALLOWED_HOSTNAME"] == "etcd-client.pgha.internal"
    assert values["ETCD_CLIENT_CERT_AUTH"] == "true"


def test_only_runtime_settings_restart_etcd(spec, tls, tmp_path):
    """Comments and the founding settings older versions kept in the file restart nothing."""
    node = spec.node("psql-01")
    install, _ = etcd.steps(spec, node, tls, membership.helper(spec, node))
    body = install.script.split("# --- end of library ---")[1]
    function = body[body.index("runtime_settings() {") : body.index("\n}\n") + 3]
    current = env_file(spec, node, tls).content
    older = current.replace(
        'ETCD_INITIAL_CLUSTER_TOKEN="pgha-dev-pgha"\n',
        'ETCD_INITIAL_CLUSTER="psql-01=https://10.0.0.4:2380"\nETCD_INITIAL_CLUSTER_STATE="new"\n'
        '# a comment\nETCD_INITIAL_CLUSTER_TOKEN="pgha-dev-pgha"\n',
    )
    assert older != current

    def settings(text: str) -> str:
        path = tmp_path / "etcd"
        path.write_text(text)
        script = function.replace(etcd.ENV_PATH, str(path)) + "runtime_settings\n"
        return subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout

    assert settings(older) == settings(current)
    changed = current.replace('ETCD_ENABLE_V2="true"', 'ETCD_ENABLE_V2="false"')
    assert settings(current) != settings(changed)
