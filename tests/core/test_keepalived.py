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
        assert "state BACKUP" in text and "nopreempt" in text
        assert "check_unicast_src" in text


def test_tracks_haproxy_with_script_security(spec):
    text = conf(spec, spec.nodes[0])
    assert "enable_script_security" in text and "script_user keepalived_script" in text
    assert re.search(r"track_script \{\s*chk_haproxy\s*\}", text)
    check = next(f for f in keepalived.files(spec, spec.nodes[0]) if f.path == keepalived.CHECK_PATH)
    assert check.mode == 0o755
    assert "--cacert /etc/pgha/tls/ca.crt https://10.0.0.4:7000/health" in check.content


def test_haproxy_may_bind_the_vip(spec, tls):
    from pgha import system

    sysctl, _ = system.files(spec, spec.nodes[0], tls)
    assert "net.ipv4.ip_nonlocal_bind = 1" in sysctl.content
