"""pgha.fastpath: the VIP's primary port forwarded by the kernel to the local primary, failing closed."""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from pgha import ConfigError, fastpath, load_spec, plan
from pgha.fastpath import agent


def fast_spec(dev_config: dict[str, Any], **fast_path: Any):
    dev_config["fastPath"] = fast_path
    return load_spec(dev_config, "dev")


def rendered(spec, node) -> dict[str, str]:
    return {f.path: f.content for f in fastpath.files(spec, node)}


def rules(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if "dnat to" in line]


def test_off_by_default_and_then_the_agent_and_rule_are_removed(spec):
    assert spec.fast_path is None
    [step] = fastpath.steps(spec, spec.postgres_nodes[0])
    assert step.name == "fastpath" and not step.files
    assert "disable -q --now pgha-fastpath.service" in step.script
    assert "nft delete table ip pgha_fastpath" in step.script
    # nftables comes with the services that use it: here only the leader race's agent.
    without_leader_race = replace(spec, patroni=replace(spec.patroni, leader_race_fail_fast=False))
    assert "nftables" not in plan.image_packages(without_leader_race)


def test_each_vm_forwards_the_vip_to_its_own_postgresql_from_the_private_network(dev_config):
    spec = fast_spec(dev_config)
    for node in spec.postgres_nodes:
        files = rendered(spec, node)
        assert rules(files[fastpath.ON_PATH]) == [
            f"ip saddr 10.0.0.0/24 ip daddr 10.0.0.10 tcp dport 5432 dnat to {node.ip}:5442"
        ]
        # Both files replace the table as a whole; "off" leaves none.
        for path in (fastpath.ON_PATH, fastpath.OFF_PATH):
            assert "table ip pgha_fastpath\ndelete table ip pgha_fastpath\n" in files[path]
        assert not rules(files[fastpath.OFF_PATH])
        settings = json.loads(files[fastpath.SETTINGS_PATH])
        assert settings["primary_url"] == f"https://{node.ip}:8008/primary"
        assert settings["poll_s"] == 0.2
    assert "nftables" in plan.image_packages(spec)


def test_the_unit_fails_closed(dev_config):
    spec = fast_spec(dev_config)
    unit = rendered(spec, spec.nodes[0])[fastpath.UNIT_PATH]
    assert f"ExecStartPre=/usr/sbin/nft -f {fastpath.OFF_PATH}" in unit
    assert f"ExecStopPost=/usr/sbin/nft -f {fastpath.OFF_PATH}" in unit
    assert "WatchdogSec=5" in unit and "Restart=always" in unit


def test_only_database_vms_get_it(dev_config):
    dev_config["backup"] = {**dev_config["backup"]}
    spec = fast_spec(dev_config)
    repository = next(n for n in spec.nodes if not n.runs_postgres)
    assert fastpath.steps(spec, repository) == []


@pytest.mark.parametrize(
    ("allow_from", "expected"),
    [
        (["10.0.0.64/26", "192.168.5.0/24"], ["10.0.0.64/26"]),  # outside the private network: HAProxy's
        (["10.0.0.0/8"], ["10.0.0.0/24"]),
        (["192.168.5.0/24"], []),
    ],
)
def test_clients_allow_from_narrows_the_forwarded_sources(dev_config, allow_from, expected):
    dev_config["clients"] = {"allowFrom": allow_from}
    spec = fast_spec(dev_config)
    assert [str(n) for n in fastpath.client_networks(spec)] == expected
    on = rendered(spec, spec.nodes[0])[fastpath.ON_PATH]
    assert [r.split()[2] for r in rules(on)] == expected


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"pollMs": 10}, "pgha:fastPath.pollMs: 10 is outside 50-2000"),
        ({"pollMs": "fast"}, "pgha:fastPath.pollMs"),
        ({"pollMs": 200, "dnat": "10.0.0.99"}, "pgha:fastPath.dnat: unknown key"),
        ("yes", "pgha:fastPath: expected an object"),
    ],
)
def test_bad_settings_are_refused_by_key(dev_config, value, problem):
    dev_config["fastPath"] = value
    with pytest.raises(ConfigError) as caught:
        load_spec(dev_config, "dev")
    assert any(problem in p for p in caught.value.problems), caught.value.problems


# ---- the agent, run for real against a fake Patroni and a fake nft -----------------------------


class FakePatroni(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


def test_the_agent_loads_the_rule_only_while_patroni_says_primary(tmp_path: Path, monkeypatch) -> None:
    server = HTTPServer(("127.0.0.1", 0), FakePatroni)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    loaded: list[str] = []

    def fake_run(argv: list[str], **_kwargs: Any) -> subprocess.CompletedProcess[str]:
        loaded.append(Path(argv[-1]).name)
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(agent.subprocess, "run", fake_run)
    real_context = ssl.create_default_context
    monkeypatch.setattr(agent.ssl, "create_default_context", lambda **_: real_context())
    url = f"http://127.0.0.1:{server.server_port}/primary"
    states = iter([200, 200, 503, 503, 200, None])  # None: Patroni gone (refused)

    def sleep(_seconds: float) -> None:
        if len(loaded) >= 4:
            raise agent.Stop
        status = next(states)
        if status is None:
            server.shutdown()
            server.server_close()
            FakePatroni.status = 0
        else:
            FakePatroni.status = status

    monkeypatch.setattr(agent.time, "sleep", sleep)
    settings = {"primary_url": url, "ca": "unused", "on": "/x/on.nft", "off": "/x/off.nft", "poll_s": 0.01}
    FakePatroni.status = 200
    assert agent.follow(settings) == 0
    assert loaded == ["on.nft", "off.nft", "on.nft", "off.nft"]


def test_no_answer_means_not_primary() -> None:
    assert agent.is_primary("https://127.0.0.1:9/primary", ssl.create_default_context(), timeout=0.5) is False
