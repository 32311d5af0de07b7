"""The verify phase: last, on one VM, tied to every other step; its probe's judgement."""

from __future__ import annotations

import io
import json
import socket
import struct
from typing import Any

import pytest

from pgha import node_steps, phases, verify
from pgha.plan import step_names
from pgha.verify import probe


def settings_of(spec, secrets, tls) -> tuple[Any, dict[str, Any]]:
    (step,) = [s for s in node_steps(spec, spec.nodes[0], secrets, tls) if s.name == "verify"]
    files = {f.path: f for f in step.files}
    return step, json.loads(files[verify.SETTINGS_PATH].content)


def test_verify_is_the_last_phase_on_one_vm(spec, secrets, tls):
    _, steps = phases(spec, secrets, tls)[-1]
    assert step_names()[-1] == "verify"
    assert [s.node for s in steps] == [verify.verify_node(spec).name] == ["psql-01"]


def test_the_step_ships_the_plain_module_and_its_settings(spec, secrets, tls):
    step, settings = settings_of(spec, secrets, tls)
    files = {f.path: f for f in step.files}
    tool = files[verify.TOOL_PATH]
    assert tool.content == (verify.HERE / "probe.py").read_text() and tool.mode == 0o755
    assert tool.path == probe.INSTALL_PATH == "/usr/local/lib/pgha/verify"
    assert "{{" not in tool.content  # a plain module, not a template
    assert files[verify.SETTINGS_PATH].mode == 0o600
    # Its own login, never the superuser: the settings hold pgha_verify's password and are secret.
    assert settings["user"] == settings["database"] == "pgha_verify"
    assert settings["password"] == "verify-Secret-7" and files[verify.SETTINGS_PATH].secret
    assert step.has_secrets and "su-Secret-1" not in step.stdin
    assert f"python3 {verify.TOOL_PATH} {verify.SETTINGS_PATH}" in step.script
    assert settings["vip"] == "10.0.0.10" and settings["interface"] == "ens18"
    assert (settings["primary_port"], settings["replica_port"]) == (5432, 5433)
    assert settings["sync_standbys"] == 1 and settings["members"] == ["psql-01", "psql-02", "psql-03"]
    assert settings["cluster_url"] == "https://10.0.0.4:8008/cluster"
    assert settings["macs"] == {n.mac: n.name for n in spec.nodes}
    assert settings["pooler_port"] == 6432  # the dev stack has pgha:pooler


def test_without_the_pooler_the_probe_skips_6432(dev_config, secrets, tls):
    from pgha import load_spec

    del dev_config["pooler"]
    _, settings = settings_of(load_spec(dev_config, "dev"), secrets, tls)
    assert settings["pooler_port"] is None


def test_the_fingerprint_follows_any_other_step_anywhere(spec, secrets, tls, dev_config):
    from pgha import load_spec

    _, before = settings_of(spec, secrets, tls)
    dev_config["backup"]["retentionFull"] = 3  # touches backup-01 and the others' pgBackRest only
    changed = load_spec(dev_config, "dev")
    _, after = settings_of(changed, secrets, tls)
    assert before["fingerprint"] != after["fingerprint"]
    _, again = settings_of(load_spec(dev_config, "dev"), secrets, tls)
    assert again["fingerprint"] == after["fingerprint"]


# --- the probe's judgement, on canned answers -------------------------------------------

SETTINGS = {
    "cluster_url": "https://10.0.0.4:8008/cluster",
    "ca": "/nonexistent",
    "members": ["psql-01", "psql-02", "psql-03"],
    "sync_standbys": 2,
    "vip": "10.0.0.10",
    "interface": "ens18",
    "macs": {"bc:24:11:00:00:01": "psql-01", "bc:24:11:00:00:02": "psql-02"},
    "timeout_s": 0,
    "primary_port": 5432,
    "replica_port": 5433,
}


def member(name: str, role: str, state: str = "streaming") -> dict[str, str]:
    return {"name": name, "role": role, "state": state}


def patroni_answer(monkeypatch: pytest.MonkeyPatch, members: list[dict[str, str]]) -> None:
    monkeypatch.setattr(probe.ssl, "create_default_context", lambda cafile: None)
    monkeypatch.setattr(
        probe.urllib.request, "urlopen", lambda *a, **k: io.BytesIO(json.dumps({"members": members}).encode())
    )


HEALTHY = [
    member("psql-01", "leader", "running"),
    member("psql-02", "sync_standby"),
    member("psql-03", "sync_standby"),
]


@pytest.mark.parametrize(
    ("members", "fragment"),
    [
        (HEALTHY, None),
        ([member("psql-01", "replica"), *HEALTHY[1:]], "expected one running leader"),
        ([*HEALTHY[:2], member("psql-03", "leader", "running")], "expected one running leader"),
        (
            [*HEALTHY[:2], member("psql-03", "replica")],
            "expected 2 synchronous standby(s), Patroni reports 1",
        ),
        (HEALTHY[:2], "members missing from Patroni's view: ['psql-03']"),
    ],
    ids=["healthy", "no-leader", "two-leaders", "one-sync", "member-gone"],
)
def test_patroni_view(monkeypatch, members, fragment):
    patroni_answer(monkeypatch, members)
    found = probe.patroni_problems(SETTINGS)
    if fragment is None:
        assert found == []
    else:
        assert any(fragment in p for p in found), found


@pytest.mark.parametrize(
    ("holders", "fragment"),
    [
        ({"bc:24:11:00:00:01"}, None),
        (set(), "no VM holds the VIP 10.0.0.10"),
        (
            {"bc:24:11:00:00:01", "bc:24:11:00:00:02"},
            "2 VMs answer for the VIP 10.0.0.10: ['psql-01', 'psql-02']",
        ),
    ],
    ids=["one", "none", "split-brain"],
)
def test_vip_holders(monkeypatch, holders, fragment):
    monkeypatch.setattr(probe, "vip_holders", lambda settings: holders)
    found = probe.vip_problems(SETTINGS)
    assert found == [] if fragment is None else any(fragment in p for p in found), found


def test_the_arp_request_asks_who_has_the_vip():
    frame = probe._arp_frame(bytes.fromhex("bc2411000001"), "10.0.0.4", "10.0.0.10")
    assert frame[:6] == b"\xff" * 6 and struct.unpack("!H", frame[12:14])[0] == probe.ETH_P_ARP
    assert struct.unpack("!H", frame[20:22])[0] == probe.ARP_REQUEST
    assert socket.inet_ntoa(frame[28:32]) == "10.0.0.4" and socket.inet_ntoa(frame[38:42]) == "10.0.0.10"
    assert len(frame) == 42


def test_main_fails_with_every_reason_after_the_deadline(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(probe, "problems", lambda settings: ["no VM holds the VIP 10.0.0.10", "other"])
    path = tmp_path / "verify.json"
    path.write_text(json.dumps(SETTINGS))
    assert probe.main([str(path)]) == 1
    err = capsys.readouterr().err
    assert "does not serve clients" in err and "- no VM holds the VIP 10.0.0.10" in err and "- other" in err
    monkeypatch.setattr(probe, "problems", lambda settings: [])
    assert probe.main([str(path)]) == 0
    assert "ok (attempt 1)" in capsys.readouterr().err


# --- through the pooler (pgha:pooler): VIP:6432 as a client ------------------------------------

POOLED = {**SETTINGS, "pooler_port": 6432, "table": "public.verify", "password": "verify-Secret-7"}


def fake_psql(monkeypatch: pytest.MonkeyPatch, answers: dict[int, tuple[bool, str]]) -> list[tuple[int, str]]:
    """psql by port: each port's canned (ok, output); returns the calls made."""
    calls: list[tuple[int, str]] = []

    def run(settings: dict[str, Any], port: int, sql: str, password: str) -> tuple[bool, str]:
        assert password == "verify-Secret-7"
        calls.append((port, sql))
        return answers[port]

    monkeypatch.setattr(probe, "psql", run)
    return calls


@pytest.mark.parametrize(
    ("answer", "fragment"),
    [
        ((True, "f"), None),
        ((True, "t"), "the pooler, 10.0.0.10:6432, reached a standby, not the primary"),
        (
            (False, 'connection to server at "10.0.0.10", port 6432 failed: Connection refused'),
            "write through the pooler, 10.0.0.10:6432, failed: connection to server",
        ),
    ],
    ids=["primary", "standby", "refused"],
)
def test_a_write_through_the_pooler_must_land_on_the_primary(monkeypatch, answer, fragment):
    calls = fake_psql(monkeypatch, {6432: answer})
    found = probe.pooler_problems(POOLED)
    assert found == [] if fragment is None else any(fragment in p for p in found), found
    ((port, sql),) = calls
    assert port == 6432 and "INSERT INTO public.verify (id, token) VALUES (2, " in sql
    assert sql.rstrip().endswith("SELECT pg_is_in_recovery();")


def test_no_pooler_no_6432_check(monkeypatch):
    calls = fake_psql(monkeypatch, {})
    assert probe.pooler_problems({**POOLED, "pooler_port": None}) == [] and calls == []


def test_the_pooler_is_checked_after_5432_and_5433_pass(monkeypatch):
    patroni_answer(monkeypatch, HEALTHY[:1])
    monkeypatch.setattr(probe, "vip_holders", lambda settings: {"bc:24:11:00:00:01"})
    settings = {**POOLED, "sync_standbys": 0, "members": ["psql-01"]}
    # 5432's write fails: the pooler is not tried (its write needs the table 5432's makes).
    calls = fake_psql(monkeypatch, {5432: (False, "refused"), 6432: (True, "f")})
    assert probe.problems(settings) == ["write through 10.0.0.10:5432 failed: refused"]
    assert [port for port, _ in calls] == [5432]
    # Both direct ports serve; the pooler reaches a standby: that is the one problem.
    monkeypatch.setattr(probe.secrets, "token_hex", lambda n: "cafe")
    calls = fake_psql(monkeypatch, {5432: (True, "f"), 5433: (True, "t|cafe"), 6432: (True, "t")})
    assert probe.problems(settings) == ["the pooler, 10.0.0.10:6432, reached a standby, not the primary"]
    assert [port for port, _ in calls] == [5432, 5433, 6432]


def test_main_names_6432_when_it_passed(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(probe, "problems", lambda settings: [])
    path = tmp_path / "verify.json"
    path.write_text(json.dumps(POOLED))
    assert probe.main([str(path)]) == 0
    assert "read back on :5433, a write on :6432" in capsys.readouterr().err
