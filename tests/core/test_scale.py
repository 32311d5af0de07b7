"""Growing, shrinking and replacing VMs: what the core renders for it.

The membership rule (etcd.members), the join/leave helper each VM gets, the
leave step Pulumi and the lab run before a VM is deleted, and what the other
services learn about a new VM count.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
from typing import Any

import pytest
import yaml

from pgha import (
    ClusterSpec,
    ConfigError,
    LocalCa,
    cluster_steps,
    etcd,
    haproxy,
    keepalived,
    leave_step,
    load_spec,
    membership,
    node_steps,
    patroni,
)
from pgha.stackfile import read_config

NEW_VMS = [
    {"name": "psql-04", "host": "pve2", "ip": "10.0.0.5"},
    {"name": "psql-05", "host": "pve1", "ip": "10.0.0.6"},
]


def five(config: dict[str, Any]) -> ClusterSpec:
    config["vms"] = [*config["vms"], *NEW_VMS]
    return load_spec(config, "dev")


@pytest.fixture
def spec5(dev_config) -> ClusterSpec:
    return five(dev_config)


@pytest.fixture(scope="module")
def tls5():
    from pgha.stackfile import read_config

    spec = five(read_config("dev"))
    return LocalCa.create(spec).issue_cluster(spec)


def helper_vars(text: str) -> dict[str, str]:
    return dict(re.findall(r"^([A-Z_]+)=(.+)$", text, re.MULTILINE))


def test_five_vms_on_two_hosts_are_five_etcd_members(spec5):
    """Two hosts: every VM is a member (5 members tolerate 2 lost ones); Patroni follows."""
    assert [m.name for m in etcd.members(spec5)] == ["psql-01", "psql-02", "psql-03", "psql-04", "psql-05"]
    assert patroni.config(spec5, spec5.node("psql-01"), _secrets())["etcd"]["hosts"] == [
        "10.0.0.4:2379",
        "10.0.0.3:2379",
        "10.0.0.2:2379",
        "10.0.0.5:2379",
        "10.0.0.6:2379",
    ]
    assert etcd.initial_cluster(spec5).count("=https://") == 5


def test_with_a_witness_new_vms_join_patroni_only(dev_config):
    dev_config["witness"] = {"name": "witness", "host": "pve3", "ip": "10.0.0.9"}
    spec = five(dev_config)
    assert [m.name for m in etcd.members(spec)] == ["psql-01", "psql-02", "witness"]


def test_the_member_list_is_not_in_the_restarting_env_file(spec, spec5, tls5):
    """A scale-out changes the helper, not /etc/default/etcd: no running member restarts."""
    for node in etcd.members(spec):
        before = {f.path: f.content for f in etcd.files(spec, node, tls5)}
        after = {f.path: f.content for f in etcd.files(spec5, node, tls5)}
        assert before[etcd.ENV_PATH] == after[etcd.ENV_PATH]
        assert "\nETCD_INITIAL_CLUSTER=" not in after[etcd.ENV_PATH]
        assert "\nETCD_INITIAL_CLUSTER_STATE=" not in after[etcd.ENV_PATH]
        assert 'ETCD_INITIAL_CLUSTER_TOKEN="pgha-dev-pgha"' in after[etcd.ENV_PATH]
    dropin = after[etcd.DROPIN_PATH]
    assert f"EnvironmentFile=-{etcd.BOOTSTRAP_ENV_PATH}" in dropin


def test_the_etcd_step_joins_only_without_data_and_installs_the_helper(spec5, tls5):
    node = spec5.node("psql-04")
    install, _health = etcd.steps(spec5, node, tls5, membership.helper(spec5, node))
    assert membership.HELPER_PATH in [f.path for f in install.files]
    body = install.script.split("# --- end of library ---")[1]
    assert f"if [ ! -d {etcd.DATA_DIR}/member ]; then\n  # " in body
    assert f"{membership.HELPER_PATH} join" in body
    assert "systemctl daemon-reload" in body


def test_the_join_helper_of_a_new_vm(spec5):
    node = spec5.node("psql-04")
    rendered = membership.helper(spec5, node)
    assert (rendered.mode, rendered.owner, rendered.secret) == (0o755, "root", False)
    text = rendered.content
    subprocess.run(["bash", "-n"], input=text, text=True, check=True)
    values = helper_vars(text)
    assert values["NAME"] == "psql-04"
    assert values["PEER_URL"] == "https://10.0.0.5:2380"
    # Asks the others (its own etcd is not up yet), with its own certificate.
    assert values["OTHERS"] == (
        "https://10.0.0.4:2379,https://10.0.0.3:2379,https://10.0.0.2:2379,https://10.0.0.6:2379"
    )
    assert values["INITIAL_CLUSTER"] == etcd.initial_cluster(spec5)
    assert "--cert=/etc/pgha/tls/etcd.pem" in values["TLS"]
    # One VM at a time: every membership change under the etcd lock.
    assert values["LOCK"] == "pgha/membership"
    assert 'lock "$LOCK" "$0" join-locked' in text
    assert 'lock "$LOCK" "$0" leave-locked' in text
    # Added as a learner (outside the quorum), promoted once caught up, started as "existing".
    assert 'member add "$NAME" --peer-urls="$PEER_URL" --learner' in text
    assert 'ctl member promote "$id"' in text
    assert "write_env existing" in text and "write_env new" in text
    # The first deployment (no etcd listening anywhere else) founds the cluster without waiting.
    assert "if other_listening; then" in text
    # A replaced VM: a started member under its name or address is removed first.
    assert '($3 == n || $4 == p) && $2 == "started"' in text


def test_the_helper_carries_no_secret_and_differs_by_role(dev_config, secrets, tls):
    dev_config["witness"] = {"name": "witness", "host": "pve3", "ip": "10.0.0.9"}
    spec = load_spec(dev_config, "dev")
    generated = [*secrets.values(), *tls.private_keys()]
    for node in spec.nodes:
        text = membership.helper(spec, node).content
        subprocess.run(["bash", "-n"], input=text, text=True, check=True)
        assert not any(value in text for value in generated)
        assert ("patronictl" in text) == node.runs_postgres
        assert ("removing etcd member" in text) == (node in etcd.members(spec))
    # A non-member still gets it (for leaving), on its etcd step.
    (absent,) = etcd.steps(spec, spec.node("psql-03"), tls, membership.helper(spec, spec.node("psql-03")))
    assert [f.path for f in absent.files] == [membership.HELPER_PATH]


def test_leaving_hands_over_before_it_stops(spec5):
    text = membership.helper(spec5, spec5.node("psql-05")).content
    leave = text[text.index("leave_locked() {") :]
    order = [
        "systemctl disable -q --now keepalived",
        "leave_patroni",
        'ctl member remove "$id"',
        "systemctl disable -q --now etcd",
        "systemctl disable -q --now haproxy",
    ]
    positions = [leave.index(marker) for marker in order]
    assert positions == sorted(positions)
    patroni_part = text[text.index("leave_patroni() {") :]
    assert (
        patroni_part.index("switchover --force")
        < patroni_part.index("not_sync")
        < patroni_part.index("systemctl disable -q --now patroni")
    )
    # Before queueing for the lock: no other leaving VM hands the primary to this one.
    assert text[text.index("leave() {") :].index("mark_leaving") < text.index('"$0" leave-locked')
    assert '"nofailover": True, "nosync": True, "clonefrom": False' in text


def test_the_leave_step_is_a_secret_free_step_outside_the_phases(spec5, secrets, tls5):
    node = spec5.node("psql-05")
    step = leave_step(spec5, node)
    assert (step.name, step.files, step.stdin) == ("leave", (), "")
    subprocess.run(["bash", "-n"], input=step.script, text=True, check=True)
    assert f"helper={membership.HELPER_PATH}\n" in step.script and 'exec "$helper" leave' in step.script
    assert step.command.startswith("sudo -n /bin/bash -c ")
    assert "leave" not in {s.name for s in node_steps(spec5, node, secrets, tls5)}


def test_every_service_learns_five_vms(spec5, secrets, tls5):
    for node in spec5.postgres_nodes:
        files = haproxy.files(spec5, node, secrets, tls5)
        cfg = next(f for f in files if f.path == haproxy.CONFIG_PATH).content
        for listener in ("listen primary", "listen replicas"):
            section = cfg[cfg.index(listener) :].split("\n\n")[0]
            assert len(re.findall(r"^\s+server ", section, re.MULTILINE)) == 5, listener
        conf = next(f for f in keepalived.files(spec5, node) if f.path == keepalived.CONFIG_PATH).content
        peers = re.search(r"unicast_peer \{([^}]*)\}", conf).group(1).split()
        assert sorted(peers) == sorted(str(n.ip) for n in spec5.postgres_nodes if n != node)


def test_synchronous_standbys_follow_the_vm_count(spec5, secrets, tls5):
    """synchronous_node_count sits in the DCS from bootstrap on: the step reconciles it.

    Host-aware (the default) it stays one; without host awareness every replica counts.
    """
    config = read_config("dev")
    config["patroni"] = {"hostAwareSync": False}
    all_sync = load_spec(config, "dev")
    all_sync5 = dataclasses.replace(spec5, patroni=all_sync.patroni)
    for current, wanted in ((all_sync, 2), (all_sync5, 4), (spec5, 1)):
        (step,) = patroni.steps(current, current.nodes[0], secrets, tls5)
        assert f"\nkeep_dcs synchronous_node_count {wanted}\n" in step.script
        # Every VM's step may try at once: a compare-and-set loser retries.
        assert 'edit-config --force --quiet -s "$1=$2"' in step.script
        assert 'if [ "$(dcs_setting "$1")" != "$2" ]; then' in step.script
        assert 'wait_until 60 "$1 = $2 in the DCS" set_dcs "$1" "$2"' in step.script
        subprocess.run(["bash", "-n"], input=step.script, text=True, check=True)


def test_no_synchronous_count_without_synchronous_mode(dev_config, secrets, tls):
    dev_config["patroni"] = {"synchronousMode": False}
    spec = load_spec(dev_config, "dev")
    (step,) = patroni.steps(spec, spec.nodes[0], secrets, tls)
    assert "synchronous_node_count" not in step.script
    assert patroni.scaling_dcs_settings(spec) == {"member_slots_ttl": 1800}


def test_member_slots_ttl_is_bootstrapped_and_kept_in_line(dev_config, secrets, tls):
    """How long a removed or dead member's slot stays (Patroni 4's default: 30 min)."""
    spec = load_spec(dev_config, "dev")
    assert patroni.config(spec, spec.nodes[0], secrets)["bootstrap"]["dcs"]["member_slots_ttl"] == 1800
    dev_config["patroni"] = {"memberSlotsTtl": 60}
    spec = load_spec(dev_config, "dev")
    (step,) = patroni.steps(spec, spec.nodes[0], secrets, tls)
    assert "\nkeep_dcs member_slots_ttl 60\n" in step.script
    assert patroni.config(spec, spec.nodes[0], secrets)["bootstrap"]["dcs"]["member_slots_ttl"] == 60


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (5, "pgha:patroni.memberSlotsTtl: 5 s is shorter than pgha:patroni.ttl (20 s)"),
        (-1, "pgha:patroni.memberSlotsTtl: must not be negative, got -1"),
        ("soon", "pgha:patroni.memberSlotsTtl: expected an integer, got 'soon'"),
    ],
)
def test_member_slots_ttl_validation(dev_config, value, message):
    dev_config["patroni"] = {"memberSlotsTtl": value}
    with pytest.raises(ConfigError) as error:
        load_spec(dev_config, "dev")
    assert any(p.startswith(message) for p in error.value.problems), error.value.problems


def test_member_slots_ttl_zero_is_allowed(dev_config):
    dev_config["patroni"] = {"memberSlotsTtl": 0}
    assert load_spec(dev_config, "dev").patroni.member_slots_ttl == 0


def test_new_members_clone_from_a_replica(spec5, secrets):
    tags = patroni.config(spec5, spec5.node("psql-04"), secrets)["tags"]
    assert tags["clonefrom"] is True and tags["nofailover"] is False and tags["nosync"] is False
    yaml.safe_dump(tags)


def test_every_step_of_five_vms_parses(spec5, secrets, tls5):
    for steps in cluster_steps(spec5, secrets, tls5).values():
        for step in steps:
            subprocess.run(["bash", "-n"], input=step.script, text=True, check=True)


def _secrets():
    from pgha import ClusterSecrets

    return ClusterSecrets.placeholders()
