"""keepalived.conf: one VRRP instance per node, unicast peers, HAProxy tracked."""

from __future__ import annotations

import re

from pgha import keepalived


def conf(spec, node) -> str:
    return next(f.content for f in keepalived.files(spec, node) if f.path == keepalived.CONFIG_PATH)


def test_instance_per_node(spec):
    for node in spec.postgres_nodes:
        text = conf(spec, node)
        assert f"router_id {node.name}" in text
        assert f"unicast_src_ip {node.ip}" in text
        peers = re.search(r"unicast_peer \{([^}]*)\}", text).group(1).split()
        assert sorted(peers) == sorted(str(n.ip) for n in spec.postgres_nodes if n != node)
        assert "10.0.0.10/24 dev ens18" in text
        assert "interface ens18" in text
        assert "virtual_router_id 10" in text
        assert "state BACKUP" in text
        assert "check_unicast_src" in text


def test_tracks_haproxy_with_script_security(spec):
    text = conf(spec, spec.nodes[0])
    assert "enable_script_security" in text and "script_user keepalived_script" in text
    assert re.search(r"track_script \{\s*chk_haproxy\s", text)
    check = next(f for f in keepalived.files(spec, spec.nodes[0]) if f.path == keepalived.CHECK_PATH)
    assert check.mode == 0o755
    assert "--cacert /etc/pgha/tls/ca.crt https://10.0.0.4:7000/health" in check.content


def test_haproxy_may_bind_the_vip(spec, tls, secrets):
    from pgha import system

    sysctl, *_ = system.files(spec, spec.nodes[0], tls, secrets)
    assert "net.ipv4.ip_nonlocal_bind = 1" in sysctl.content


def test_a_connection_stuck_by_a_network_fault_is_given_up_in_seconds(spec, tls, secrets):
    """Linux's default 15 retransmissions kept etcd's peer streams stuck 25 s after a drop ended."""
    from pgha import system

    sysctl, *_ = system.files(spec, spec.nodes[0], tls, secrets)
    assert re.search(r"^net\.ipv4\.tcp_retries2 = 5$", sysctl.content, re.MULTILINE)


def test_vip_prefers_the_primary(spec):
    """One hop: a weighted /primary check, and preemption, so the VIP follows the primary."""
    text = conf(spec, spec.nodes[0])
    block = re.search(r"vrrp_script chk_primary \{([^}]*)\}", text).group(1)
    assert "weight 50" in block and 'script "/usr/local/lib/pgha/check-primary"' in block
    assert re.search(r"track_script \{\s*chk_haproxy\s*chk_primary\s*\}", text)
    assert "nopreempt" not in text  # with nopreempt a higher priority never takes the VIP
    check = next(f for f in keepalived.files(spec, spec.nodes[0]) if f.path == keepalived.PRIMARY_CHECK_PATH)
    assert check.mode == 0o755
    assert "--cacert /etc/pgha/tls/ca.crt https://10.0.0.4:8008/primary" in check.content


def test_primary_preference_off(spec):
    """primaryWeight 0: the old behaviour, the VIP stays until its holder fails."""
    from dataclasses import replace

    off = replace(spec, keepalived=replace(spec.keepalived, primary_weight=0))
    text = conf(off, off.nodes[0])
    assert "nopreempt" in text and "chk_primary" not in text


def test_primary_weight_bounds(dev_config):
    from pgha.config import ConfigError, load_spec

    dev_config["keepalived"] = {"primaryWeight": 200}
    try:
        load_spec(dev_config, "dev")
    except ConfigError as error:
        assert any("pgha:keepalived.primaryWeight: 200 is outside 0-150" in p for p in error.problems)
    else:
        raise AssertionError("primaryWeight 200 was accepted")
