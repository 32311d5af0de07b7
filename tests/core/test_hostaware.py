"""Host-aware synchronous replication: nosync follows the primary's Proxmox host."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import yaml

from pgha import load_spec, patroni
from pgha.patroni import hostaware
from pgha.topology import failure_domains

HOSTS = {"psql-01": "pve1", "psql-02": "pve2", "psql-03": "pve1"}


def test_only_standbys_on_the_primarys_host_are_nosync():
    assert hostaware.wanted_nosync("psql-03", "psql-01", HOSTS) is True
    assert hostaware.wanted_nosync("psql-02", "psql-01", HOSTS) is False
    assert hostaware.wanted_nosync("psql-01", "psql-01", HOSTS) is False  # the leader itself
    # The primary moved to pve2: both pve1 standbys may confirm commits again.
    assert hostaware.wanted_nosync("psql-03", "psql-02", HOSTS) is False
    # No leader (mid-failover) or an unknown one: leave the tag as it is.
    assert hostaware.wanted_nosync("psql-03", None, HOSTS) is None
    assert hostaware.wanted_nosync("psql-03", "psql-09", HOSTS) is None


def test_leader_is_read_from_patronis_cluster_view():
    view = {"members": [{"name": "psql-02", "role": "sync_standby"}, {"name": "psql-01", "role": "leader"}]}
    assert hostaware.leader_of(view) == "psql-01"
    assert hostaware.leader_of({"members": [{"name": "psql-02", "role": "replica"}]}) is None


def test_tag_file_only_ever_adds_nosync(tmp_path):
    path = str(tmp_path / "50-hostaware.yml")
    assert hostaware.set_tag(path, True) is True
    assert yaml.safe_load((tmp_path / "50-hostaware.yml").read_text()) == {"tags": {"nosync": True}}
    assert hostaware.set_tag(path, True) is False  # unchanged: no reload
    assert hostaware.set_tag(path, False) is True
    assert not (tmp_path / "50-hostaware.yml").exists()
    assert hostaware.set_tag(path, False) is False


def test_patroni_reads_a_directory_with_the_config_first(spec, secrets, tls):
    files = {f.path: f for f in patroni.files(spec, spec.nodes[0], secrets, tls)}
    assert f"ExecStart=/usr/bin/patroni {patroni.CONFIG_DIR}" in files[patroni.UNIT_DROPIN_PATH].content
    (step,) = patroni.steps(spec, spec.nodes[0], secrets, tls)
    assert f"ln -sfn {patroni.CONFIG_PATH} {patroni.CONFIG_LINK}" in step.script
    # The watcher's tag file sorts after config.yml's link, so it wins the merge.
    assert sorted([patroni.CONFIG_LINK, patroni.HOSTAWARE_TAG_PATH])[-1] == patroni.HOSTAWARE_TAG_PATH
    settings = json.loads(files[hostaware.SETTINGS_PATH].content)
    assert settings["hosts"] == HOSTS and settings["name"] == "psql-01"
    assert files[hostaware.INSTALL_PATH].content == (patroni.HERE / "hostaware.py").read_text()
    assert "User=postgres" in files[patroni.HOSTAWARE_UNIT_PATH].content
    assert "systemctl restart pgha-hostaware" in step.script
    subprocess.run(["bash", "-n"], input=step.script, text=True, check=True)


def test_no_watcher_without_synchronous_mode(dev_config, secrets, tls):
    dev_config["patroni"] = {"synchronousMode": False}
    spec = load_spec(dev_config, "dev")
    assert not spec.host_aware_sync
    paths = {f.path for f in patroni.files(spec, spec.nodes[0], secrets, tls)}
    assert patroni.HOSTAWARE_UNIT_PATH not in paths
    (step,) = patroni.steps(spec, spec.nodes[0], secrets, tls)
    assert "systemctl disable -q --now pgha-hostaware" in step.script


def test_wal_sender_gives_up_on_a_silent_standby_quickly(spec, secrets):
    parameters = patroni.dynamic_config(spec)["postgresql"]["parameters"]
    assert parameters["wal_sender_timeout"] == "1s"
    assert patroni.dynamic_config(spec)["loop_wait"] == 1


def test_an_unfinished_startup_cannot_hold_a_shutdown_for_a_minute(dev_config):
    """A shutting-down primary waits for backends still in their startup: 10 s, not PostgreSQL's 1 min
    (the old primary back from a partition streamed again 72 s after the heal, 23 s with this)."""
    spec = load_spec(dev_config, "dev")
    assert patroni.dynamic_config(spec)["postgresql"]["parameters"]["authentication_timeout"] == "10s"
    dev_config["postgres"] = {"parameters": {"authentication_timeout": "30s"}}
    parameters = patroni.dynamic_config(load_spec(dev_config, "dev"))["postgresql"]["parameters"]
    assert parameters["authentication_timeout"] == "30s"  # an operator's choice still wins


def test_failure_domains_say_what_each_host_loss_costs(spec, dev_config):
    domains = failure_domains(spec)
    assert "standby(s) on another host (eligible: psql-02)" in domains["pve1"]
    assert "(eligible: psql-01, psql-03)" in domains["pve2"]
    dev_config["patroni"] = {"synchronousMode": False}
    for text in failure_domains(load_spec(dev_config, "dev")).values():
        assert "asynchronous replication" in text


def test_etcd_leadership_is_read_from_endpoint_status():
    statuses = [
        {"Endpoint": "https://10.0.0.4:2379", "Status": {"header": {"member_id": 11}, "leader": 22}},
        {"Endpoint": "https://10.0.0.3:2379", "Status": {"header": {"member_id": 22}, "leader": 22}},
    ]
    assert hostaware.etcd_leadership(statuses, "https://10.0.0.4:2379") == (11, 22)
    assert hostaware.etcd_leadership(statuses, "https://10.0.0.3:2379") == (22, 22)
    assert hostaware.etcd_leadership([], "https://10.0.0.3:2379") == (None, None)


def test_etcd_settings_only_on_members(spec):
    settings = patroni.hostaware_settings(spec, spec.nodes[0])
    assert settings["etcd"]["self"] == "https://10.0.0.4:2379"
    assert len(settings["etcd"]["endpoints"]) == 3
    assert settings["etcd"]["cert"] == patroni.ETCD_PEM_PATH


def endpoint(url: str, member: int, leader: int, term: int, index: int, applied: int) -> dict[str, Any]:
    header = {"member_id": member}
    return {
        "Endpoint": url,
        "Status": {
            "header": header,
            "leader": leader,
            "raftTerm": term,
            "raftIndex": index,
            "raftAppliedIndex": applied,
        },
    }


def test_etcd_leadership_moves_only_to_a_member_that_is_current():
    """A primary's Patroni back from a freeze or a partition must not hand etcd to its lagging member."""
    here, there = "https://10.0.0.4:2379", "https://10.0.0.3:2379"
    current = [endpoint(here, 11, 22, 7, 1000, 1000), endpoint(there, 22, 22, 7, 1010, 1010)]
    assert hostaware.caught_up(current, here)
    behind = [endpoint(here, 11, 22, 7, 400, 400), endpoint(there, 22, 22, 7, 5000, 5000)]
    assert not hostaware.caught_up(behind, here)
    old_term = [endpoint(here, 11, 22, 6, 1000, 1000), endpoint(there, 22, 22, 7, 1001, 1001)]
    assert not hostaware.caught_up(old_term, here)
    leader_unseen = [endpoint(here, 11, 22, 7, 1000, 1000)]  # the leader's endpoint did not answer
    assert not hostaware.caught_up(leader_unseen, here)
    assert not hostaware.caught_up([], here)


def test_a_clone_does_not_wait_for_a_spread_checkpoint(spec, secrets):
    """A new or replaced VM's pg_basebackup asks its source for a fast checkpoint (spread took 187.6 s)."""
    local = patroni.config(spec, spec.nodes[0], secrets)["postgresql"]
    assert local["basebackup"] == {"checkpoint": "fast"}
    assert local["create_replica_methods"] == ["basebackup"]
