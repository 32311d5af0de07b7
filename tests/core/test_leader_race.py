"""pgha.leader_race: Patroni's calls to a silent peer fail at once; without the agent, nothing changes."""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from pgha import ConfigError, leader_race, load_spec, plan
from pgha.leader_race import agent


def rendered(spec, node) -> dict[str, str]:
    return {f.path: f.content for f in leader_race.files(spec, node)}


def test_on_by_default_on_every_database_vm_only(spec):
    assert spec.patroni.leader_race_fail_fast is True
    for node in spec.nodes:
        steps = leader_race.steps(spec, node)
        if not node.runs_postgres:
            assert steps == []
            continue
        [step] = steps
        assert step.name == "leader-race" and step.files
        assert "systemctl restart pgha-leader-race.service" in step.script
    assert "nftables" in plan.image_packages(spec)


def test_off_removes_the_agent_and_its_table(dev_config):
    dev_config["patroni"] = {"leaderRaceFailFast": False}
    spec = load_spec(dev_config, "dev")
    [step] = leader_race.steps(spec, spec.postgres_nodes[0])
    assert not step.files
    assert "disable -q --now pgha-leader-race.service" in step.script
    assert "nft delete table ip pgha_leader_race" in step.script


def test_a_non_boolean_is_refused_by_key(dev_config):
    dev_config["patroni"] = {"leaderRaceFailFast": "yes"}
    with pytest.raises(ConfigError, match="leaderRaceFailFast"):
        load_spec(dev_config, "dev")


def test_only_patronis_calls_to_the_rest_port_of_a_silent_peer_are_reset(spec):
    node = spec.postgres_nodes[0]
    rules = rendered(spec, node)[leader_race.RULES_PATH]
    [rule] = [line.strip() for line in rules.splitlines() if "reject" in line]
    assert rule == 'meta skuid "postgres" ip daddr @silent_peers tcp dport 8008 reject with tcp reset'
    assert "hook output" in rules and "policy accept" in rules
    # Loading the file again starts from an empty set: a restarted agent trusts every peer.
    assert rules.index("delete table ip pgha_leader_race") < rules.index("set silent_peers")


def test_the_unit_fails_open(spec):
    unit = rendered(spec, spec.postgres_nodes[0])[leader_race.UNIT_PATH]
    assert "ExecStopPost=-/usr/sbin/nft delete table ip pgha_leader_race" in unit
    assert "WatchdogSec=" in unit and "Restart=always" in unit


def test_peers_are_the_other_database_vms_asked_with_patronis_own_limit(spec):
    node = spec.postgres_nodes[0]
    settings = leader_race.settings(spec, node)
    assert [p["name"] for p in settings["peers"]] == [n.name for n in spec.postgres_nodes if n != node]
    assert all(p["url"] == f"https://{p['ip']}:8008/liveness" for p in settings["peers"])
    assert settings["probe_timeout_s"] == 2.0  # Ha.fetch_node_status: timeout=2, retries=0
    # Marked well before a silent former leader's key can expire (ttl - loop_wait after its last renewal).
    assert settings["unanswered_s"] <= spec.patroni.ttl - spec.patroni.loop_wait - 5


def peer(silent_for: float, refused: bool = False) -> agent.Peer:
    p = agent.Peer("psql-02", "10.0.0.3", "https://10.0.0.3:8008/liveness")
    p.last_answer = 100.0 - silent_for
    p.refused = refused
    return p


def test_a_peer_is_refused_once_silent_long_enough_and_released_at_its_first_answer():
    assert agent.decide([peer(9.9)], now=100.0, unanswered_s=10.0) == []
    silent = peer(10.0)
    assert agent.decide([silent], now=100.0, unanswered_s=10.0) == [(silent, True)]
    back = peer(0.5, refused=True)
    assert agent.decide([back], now=100.0, unanswered_s=10.0) == [(back, False)]
    still = peer(30.0, refused=True)
    assert agent.decide([still], now=100.0, unanswered_s=10.0) == []


class Busy(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(503)
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


def test_any_answer_counts_and_silence_is_bounded_by_the_timeout():
    server = HTTPServer(("127.0.0.1", 0), Busy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    api = agent.patroni_api.PatroniApi(None, patroni_config="")
    try:
        assert agent.answers(api, f"http://127.0.0.1:{server.server_port}/liveness", timeout=2.0) is True
    finally:
        server.shutdown()
        server.server_close()
    # A listener that never answers: the probe gives up after its timeout, like Patroni.
    with __import__("socket").socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(1)
        started = time.monotonic()
        assert agent.answers(api, f"http://127.0.0.1:{mute.getsockname()[1]}/liveness", timeout=0.5) is False
        assert 0.4 < time.monotonic() - started < 2.0


def test_the_set_is_changed_one_address_at_a_time(monkeypatch):
    calls: list[list[str]] = []

    def fake_run(argv: list[str], **_kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(agent.subprocess, "run", fake_run)
    assert agent.set_element("pgha_leader_race", "silent_peers", "10.0.0.3", True)
    assert agent.set_element("pgha_leader_race", "silent_peers", "10.0.0.3", False)
    assert calls == [
        ["nft", "add", "element", "ip", "pgha_leader_race", "silent_peers", "{", "10.0.0.3", "}"],
        ["nft", "delete", "element", "ip", "pgha_leader_race", "silent_peers", "{", "10.0.0.3", "}"],
    ]


def test_nothing_else_reaches_the_plan_when_off(spec, secrets, tls):
    off = replace(spec, patroni=replace(spec.patroni, leader_race_fail_fast=False))
    names = {s.name for n in off.nodes for s in plan.node_steps(off, n, secrets, tls)}
    assert "leader-race" in names  # the step stays, to remove what an earlier "on" left
    assert "nftables" not in plan.image_packages(off)
