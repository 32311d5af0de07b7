"""etcd's environment file: one member per node, the seed's variables, our data dir."""

from __future__ import annotations

from components.core import etcd, load_spec


def env(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {k: v.strip('"') for k, v in pairs}


def test_member_file_per_node(spec):
    for node in spec.nodes:
        (rendered,) = etcd.files(spec, node)
        assert rendered.path == "/etc/default/etcd"
        values = env(rendered.content)
        assert values["ETCD_NAME"] == node.name
        assert values["ETCD_LISTEN_PEER_URLS"] == f"http://{node.ip}:2380"
        assert values["ETCD_ADVERTISE_CLIENT_URLS"] == f"http://{node.ip}:2379"
        assert f"http://{node.ip}:2379" in values["ETCD_LISTEN_CLIENT_URLS"].split(",")
        assert values["ETCD_INITIAL_CLUSTER"] == (
            "psql-01=http://10.0.0.4:2380,psql-02=http://10.0.0.3:2380,psql-03=http://10.0.0.2:2380"
        )
        assert values["ETCD_INITIAL_CLUSTER_STATE"] == "new"
        assert values["ETCD_DATA_DIR"] == etcd.DATA_DIR != "/var/lib/etcd/default"
        assert not rendered.secret


def test_token_is_the_same_everywhere(spec):
    tokens = {env(etcd.files(spec, n)[0].content)["ETCD_INITIAL_CLUSTER_TOKEN"] for n in spec.nodes}
    assert len(tokens) == 1


def test_witness_gives_one_member_per_host(dev_config):
    dev_config["witness"] = {"name": "witness", "host": "pve3", "ip": "10.0.0.6"}
    spec = load_spec(dev_config, "dev")
    members = [m.name for m in etcd.members(spec)]
    assert members == ["psql-01", "psql-02", "witness"]
    assert etcd.client_endpoints(spec) == ["10.0.0.4:2379", "10.0.0.3:2379", "10.0.0.6:2379"]
    (absent,) = etcd.steps(spec, spec.node("psql-03"))
    assert "systemctl disable -q --now etcd" in absent.script and not absent.files


def test_steps_start_without_blocking_and_wait_for_health(spec):
    install, health = etcd.steps(spec, spec.node("psql-02"))
    assert install.phase < health.phase
    assert "systemctl restart --no-block etcd" in install.script
    assert "endpoint health --cluster" in health.script
    assert "--endpoints=http://10.0.0.3:2379" in health.script
