"""The maintenance steps: Patroni's dynamic config applied, rolling restarts, rolling updates."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
import yaml

from pgha import ConfigError, load_spec, node_steps, patroni, rolling, vmprograms
from pgha.files import RenderedFile
from pgha.rolling import pgha_rolling


def files_of(step) -> dict[str, RenderedFile]:
    return {f.path: f for f in step.files}


def test_bootstrap_and_patch_come_from_one_function(spec, secrets, tls):
    (step,) = [s for s in node_steps(spec, spec.nodes[0], secrets, tls) if s.name == "patroni-config"]
    plan = json.loads(files_of(step)[rolling.CONFIG_PLAN_PATH].content)
    config_file = next(
        f for f in patroni.files(spec, spec.nodes[0], secrets, tls) if f.path == patroni.CONFIG_PATH
    )
    bootstrap = yaml.safe_load(config_file.content)["bootstrap"]["dcs"]
    assert bootstrap == patroni.dynamic_config(spec)
    # One writer per key on a running cluster: the patroni step the scaling keys, this step the rest.
    scaling = patroni.scaling_dcs_settings(spec)
    assert set(scaling) == {"member_slots_ttl", "synchronous_node_count"}
    assert not set(plan["dynamic"]) & set(scaling)
    assert {**plan["dynamic"], **scaling} == bootstrap
    assert plan["rest_api_urls"] == {
        "psql-01": "https://10.0.0.4:8008",
        "psql-02": "https://10.0.0.3:8008",
        "psql-03": "https://10.0.0.2:8008",
    }
    assert plan["sync_standbys"] == 1  # host-aware: one standby on another host


def test_config_step_runs_on_one_vm_and_holds_no_secret(spec, secrets, tls):
    steps = [s for n in spec.nodes for s in node_steps(spec, n, secrets, tls) if s.name == "patroni-config"]
    assert [s.node for s in steps] == ["psql-01"]
    (step,) = steps
    assert step.name == rolling.CONFIG_STEP and not step.has_secrets
    for value in secrets.values():
        assert value not in step.command and value not in step.stdin
    # The password comes from Patroni's own root/postgres-only config, on the VM.
    tool = files_of(step)[rolling.TOOL_PATH]
    assert tool.content == vmprograms.source(pgha_rolling) and tool.mode == 0o755
    settings = files_of(step)[pgha_rolling.SETTINGS_PATH]
    assert json.loads(settings.content) == {"patroni_config": patroni.CONFIG_PATH}
    assert files_of(step)[rolling.CONFIG_PLAN_PATH].mode == 0o600
    assert f"python3 {rolling.TOOL_PATH} apply-config {rolling.CONFIG_PLAN_PATH}" in step.script


def test_a_parameter_change_reruns_the_config_step(spec, secrets, tls, dev_config):
    before = {s.name: s.digest for s in node_steps(spec, spec.nodes[0], secrets, tls)}
    dev_config["postgres"] = {"parameters": {"log_min_duration_statement": 250}}
    changed = load_spec(dev_config, "dev")
    after = {s.name: s.digest for s in node_steps(changed, changed.nodes[0], secrets, tls)}
    # bootstrap.dcs in config.yml (a reload) and the PATCH; then the check of the result.
    assert {t for t in before if before[t] != after[t]} == {"patroni", "patroni-config", "verify"}


def test_upgrade_steps_only_with_a_generation(spec, secrets, tls, dev_config):
    assert not any(s.name == "upgrade" for n in spec.nodes for s in node_steps(spec, n, secrets, tls))
    dev_config["maintenance"] = {"upgrade": 3, "aptUpdate": False}
    upgrading = load_spec(dev_config, "dev")
    for node in upgrading.nodes:
        (step,) = [s for s in node_steps(upgrading, node, secrets, tls) if s.name == "upgrade"]
        plan = json.loads(files_of(step)[rolling.UPGRADE_PLAN_PATH].content)
        assert (plan["node"], plan["generation"], plan["apt_update"]) == (node.name, 3, False)
        pem = "patroni-etcd.pem" if node.runs_postgres else "pgbackrest.pem"  # the repository: no etcd pair
        assert plan["client_pem"] == f"/etc/pgha/tls/{pem}"
        assert plan["marker_prefix"] == "/pgha-maintenance/pgha/upgrade"
        assert not step.has_secrets
        subprocess.run(["bash", "-n"], input=step.script, text=True, check=True)


def test_a_witness_takes_its_turn_with_its_etcd_certificate(dev_config, secrets):
    from pgha import LocalCa

    dev_config["witness"] = {"name": "witness", "host": "pve3", "ip": "10.0.0.5"}
    dev_config["maintenance"] = {"upgrade": 1}
    spec = load_spec(dev_config, "dev")
    tls = LocalCa.create(spec).issue_cluster(spec)
    steps = node_steps(spec, spec.node("witness"), secrets, tls)
    (step,) = [s for s in steps if s.name == "upgrade"]
    plan = json.loads(files_of(step)[rolling.UPGRADE_PLAN_PATH].content)
    assert plan["client_pem"] == "/etc/pgha/tls/etcd.pem"
    assert plan["without_postgres"] == ["witness", "backup-01"] and "witness" not in plan["members"]


def test_tool_patches_only_what_differs(spec):
    tool = pgha_rolling
    desired = patroni.dynamic_config(spec)
    current = json.loads(json.dumps(desired))
    assert tool.difference(desired, current) == {}
    # Patroni keeps what it was given: '200' and 200 are one setting, True and 'on' too.
    current["postgresql"]["parameters"]["max_connections"] = "200"
    current["failsafe_mode"] = "true"
    assert tool.difference(desired, current) == {}
    current["postgresql"]["parameters"]["work_mem"] = "64MB"  # no longer set by pgha
    current["loop_wait"] = 10
    current["slots"] = {"keep": {"type": "physical"}}  # not pgha's: left alone
    assert tool.difference(desired, current) == {
        "loop_wait": 1,
        "postgresql": {"parameters": {"work_mem": None}},
    }
    assert list(tool.describe({"postgresql": {"parameters": {"work_mem": None}}})) == [
        "postgresql.parameters.work_mem=(removed)"
    ]


def _view(leader: str, replicas: dict[str, str], pending: tuple[str, ...] = ()) -> dict[str, Any]:
    members = [{"name": leader, "role": "leader", "state": "running"}]
    members += [{"name": n, "role": "sync_standby", "state": s} for n, s in replicas.items()]
    for member in members:
        if member["name"] in pending:
            member["pending_restart"] = True
    return {"members": members}


def _tool(spec, node: str, markers: dict[str, str], view: dict[str, Any]) -> pgha_rolling.RollingOperation:
    plan = rolling.upgrade_plan(spec, spec.node(node))
    plan["ca"] = None  # no CA file here: nothing is fetched
    tool = pgha_rolling.RollingOperation(plan)
    tool.markers = lambda: dict(markers)
    tool.cluster = lambda: view
    return tool


def test_turns_go_to_replicas_by_name_then_the_primary(dev_config, monkeypatch):
    dev_config["maintenance"] = {"upgrade": 7}
    spec = load_spec(dev_config, "dev")
    healthy = _view("psql-01", {"psql-02": "streaming", "psql-03": "streaming"})
    repository = _tool(spec, "psql-02", {}, healthy)
    with monkeypatch.context() as patched:
        patched.setattr(pgha_rolling, "TURN_TIMEOUT", -1)
        with pytest.raises(pgha_rolling.Stop, match="not my turn"):
            repository.wait_turn()  # the VMs without PostgreSQL (here backup-01) go first
    done = {"backup-01": "done 7"}
    first = _tool(spec, "psql-02", done, healthy)
    first.wait_turn()  # returns at once: psql-02 is the first replica by name
    later = _tool(spec, "psql-03", {**done, "psql-02": "done 7"}, healthy)
    later.wait_turn()
    primary = _tool(spec, "psql-01", {**done, "psql-02": "done 7", "psql-03": "done 6"}, healthy)
    monkeypatch.setattr(pgha_rolling, "TURN_TIMEOUT", -1)  # give up on the first round instead of waiting
    with pytest.raises(pgha_rolling.Stop, match="not my turn"):
        primary.wait_turn()  # psql-03 has not done generation 7 yet


def test_a_failed_turn_or_an_unhealthy_cluster_stops_everyone(dev_config, monkeypatch):
    dev_config["maintenance"] = {"upgrade": 7}
    spec = load_spec(dev_config, "dev")
    healthy = _view("psql-01", {"psql-02": "streaming", "psql-03": "streaming"})
    tool = _tool(spec, "psql-03", {"psql-02": "failed 7: apt-get failed"}, healthy)
    with pytest.raises(pgha_rolling.Stop, match="rolling update stopped: psql-02 failed 7"):
        tool.wait_turn()
    broken = _view("psql-01", {"psql-02": "streaming", "psql-03": "stopped"})
    tool = _tool(spec, "psql-02", {}, broken)
    monkeypatch.setattr(pgha_rolling, "START_GRACE", -1)  # no time to settle
    stopped = r"cluster unhealthy before the rolling update.*psql-03 is stopped"
    with pytest.raises(pgha_rolling.Stop, match=stopped):
        tool.wait_turn()


def test_health_needs_one_leader_streaming_replicas_and_sync_standbys(spec):
    plan = rolling.config_plan(spec)
    plan["ca"] = None
    tool = pgha_rolling.RollingOperation(plan)
    assert tool.problems(_view("psql-01", {"psql-02": "streaming", "psql-03": "streaming"})) == []
    lagging = _view("psql-01", {"psql-02": "streaming", "psql-03": "starting"})
    assert tool.problems(lagging) == ["psql-03 is starting, not streaming"]
    async_view = _view("psql-01", {"psql-02": "streaming", "psql-03": "streaming"})
    for member in async_view["members"][1:]:
        member["role"] = "replica"
    assert tool.problems(async_view) == ["0 synchronous standby(s) of 1"]
    assert tool.problems(None) == ["no Patroni REST API answers"]


@pytest.mark.parametrize(
    ("section", "value", "message"),
    [
        ({"upgrade": "soon"}, None, "pgha:maintenance.upgrade: expected an integer, got 'soon'"),
        ({"upgrade": -1}, None, "pgha:maintenance.upgrade: must not be negative, got -1"),
        ({"aptUpdate": "maybe"}, None, "pgha:maintenance.aptUpdate: expected true or false, got 'maybe'"),
        ({"reboot": True}, None, "pgha:maintenance.reboot: unknown key (known: aptUpdate, upgrade)"),
    ],
)
def test_bad_maintenance_values_are_named(dev_config, section, value, message):
    dev_config["maintenance"] = section
    with pytest.raises(ConfigError) as caught:
        load_spec(dev_config, "dev")
    assert message in caught.value.problems


def test_parameters_must_be_scalars_with_postgresql_names(dev_config):
    dev_config["postgres"] = {
        "parameters": {"shared_preload_libraries": ["pg_stat_statements"], "Work-Mem": "8MB", "jit": False}
    }
    with pytest.raises(ConfigError) as caught:
        load_spec(dev_config, "dev")
    assert caught.value.problems == [
        "pgha:postgres.parameters.shared_preload_libraries: expected a string or a number, "
        "got ['pg_stat_statements']",
        "pgha:postgres.parameters.Work-Mem: is not a PostgreSQL parameter name",
    ]
    dev_config["postgres"] = {"parameters": {"jit": False, "auto_explain.log_min_duration": 100}}
    parameters = load_spec(dev_config, "dev").postgres.parameters
    assert parameters == {"jit": "off", "auto_explain.log_min_duration": 100}  # YAML's `off` is PostgreSQL's


def test_config_step_acts_only_on_a_difference_and_only_on_a_healthy_cluster(spec, monkeypatch):
    plan = rolling.config_plan(spec)
    plan["ca"] = None
    tool = pgha_rolling.RollingOperation(plan)
    calls: list[tuple[str, str]] = []
    current = json.loads(json.dumps(plan["dynamic"]))

    def call(url: str, method: str = "GET", *args: Any, **kwargs: Any) -> tuple[int, Any]:
        calls.append((method, url))
        return 200, current

    tool.call = call
    tool.cluster = lambda: _view("psql-01", {"psql-02": "streaming", "psql-03": "stopped"})
    tool.apply_config()  # in step: nothing to do, even with a replica down
    assert calls == [("GET", "https://10.0.0.4:8008/config")]
    current["postgresql"]["parameters"]["max_connections"] = 100
    monkeypatch.setattr(pgha_rolling, "START_GRACE", -1)
    stopped = r"not healthy before the configuration change.*psql-03 is stopped"
    with pytest.raises(pgha_rolling.Stop, match=stopped):
        tool.apply_config()
    assert ("PATCH", "https://10.0.0.4:8008/config") not in calls


def test_health_needs_the_sync_standby_on_another_host_than_the_primary(spec):
    """Host-aware: right after a leader change /sync may name a standby on the primary's own host;
    a crash of that host would then leave nothing promotable, so that is not healthy yet."""
    plan = rolling.config_plan(spec)
    plan["ca"] = None
    assert plan["hosts"] == {"psql-01": "pve1", "psql-02": "pve2", "psql-03": "pve1"}
    tool = pgha_rolling.RollingOperation(plan)
    view = _view("psql-01", {"psql-02": "streaming", "psql-03": "streaming"})
    view["members"][1]["role"] = "replica"  # psql-02, on pve2, does not confirm commits yet
    assert tool.problems(view) == [
        "no synchronous standby on another host than the primary's (pve1) yet: psql-02 could be"
    ]
    # A standby elsewhere that may not confirm commits (a host in maintenance) is no reason to wait.
    view["members"][1]["tags"] = {"nosync": True, "nofailover": True}
    assert tool.problems(view) == []
    # Nor is one that does not stream yet: that is reported as such.
    view["members"][1] = {"name": "psql-02", "role": "replica", "state": "starting"}
    assert tool.problems(view) == ["psql-02 is starting, not streaming"]
    # Primary on pve2: any sync standby is on another host.
    moved = _view("psql-02", {"psql-01": "streaming", "psql-03": "streaming"})
    assert tool.problems(moved) == []


def test_without_host_aware_sync_the_host_of_the_sync_standby_is_free(dev_config):
    dev_config["patroni"] = {"hostAwareSync": False}
    plan = rolling.config_plan(load_spec(dev_config, "dev"))
    plan["ca"] = None
    assert plan["hosts"] == {}
    view = _view("psql-01", {"psql-02": "streaming", "psql-03": "streaming"})
    view["members"][1]["role"] = "replica"
    assert pgha_rolling.RollingOperation(plan).problems(view) == ["1 synchronous standby(s) of 2"]


class FakeTime:
    """pgha_rolling's clock: sleeping advances it, so a wait's deadline costs no real time."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class MaxConnectionsCluster:
    """Patroni and PostgreSQL as far as max_connections goes: a replica starts with the primary's
    value while that is higher (its pg_controldata; Patroni's ``effective_configuration``) and stays
    pending_restart; a promoted standby keeps what it runs with."""

    def __init__(self, urls: dict[str, str], leader: str, running: int, configured: int) -> None:
        self.urls = {url: name for name, url in urls.items()}
        self.leader = leader
        self.running = dict.fromkeys(urls, running)
        self.configured = configured
        self.starts = dict.fromkeys(urls, 0)
        self.wal = 100
        self.actions: list[str] = []

    def start(self, name: str) -> None:
        primary_value = self.running[self.leader]
        self.running[name] = self.configured if name == self.leader else max(self.configured, primary_value)
        self.starts[name] += 1
        self.wal += 1  # a primary's start writes its settings to the WAL, the replicas replay them

    def pending(self, name: str) -> dict[str, Any]:
        if self.running[name] == self.configured:
            return {}
        change = {"old_value": str(self.running[name]), "new_value": str(self.configured)}
        return {"pending_restart": True, "pending_restart_reason": {"max_connections": change}}

    def own(self, name: str) -> dict[str, Any]:
        state = {"state": "running", "postmaster_start_time": str(self.starts[name]), **self.pending(name)}
        if name == self.leader:
            return {**state, "role": "primary", "xlog": {"location": self.wal}}
        return {
            **state,
            "role": "replica",
            "replication_state": "streaming",
            "xlog": {"replayed_location": self.wal},
        }

    def cluster(self) -> dict[str, Any]:
        members = []
        for name in sorted(self.running):
            role, state = ("leader", "running") if name == self.leader else ("sync_standby", "streaming")
            members.append({"name": name, "role": role, "state": state, **self.pending(name)})
        return {"members": members}

    def call(self, url: str, method: str = "GET", body: Any = None, **kwargs: Any) -> tuple[int, Any]:
        base, endpoint = url.rsplit("/", 1)
        name = self.urls[base]
        self.actions.append(f"{endpoint} {name}")
        if endpoint == "restart":
            self.start(name)
        elif endpoint == "switchover":
            old, self.leader = name, body["candidate"]
            self.start(old)  # demoted: starts again as a replica
        return 200, {}


def _max_connections_tool(spec, monkeypatch, running: int, configured: int):
    monkeypatch.setattr(pgha_rolling, "time", FakeTime())
    plan = rolling.config_plan(spec)
    plan["ca"] = None
    tool = pgha_rolling.RollingOperation(plan)
    fake = MaxConnectionsCluster(plan["rest_api_urls"], "psql-01", running, configured)
    tool.own, tool.cluster, tool.call = fake.own, fake.cluster, fake.call
    tool.log = lambda message: None
    return tool, fake


def test_a_lowered_max_connections_restarts_the_primary_first_without_a_switchover(spec, monkeypatch):
    """Replicas first would leave them at the primary's higher value, pending forever."""
    tool, fake = _max_connections_tool(spec, monkeypatch, running=220, configured=200)
    tool.restart_pending()
    assert fake.actions == ["restart psql-01", "restart psql-02", "restart psql-03"]
    assert fake.leader == "psql-01" and set(fake.running.values()) == {200}
    assert not any(m.get("pending_restart") for m in fake.cluster()["members"])


def test_a_raised_max_connections_restarts_the_replicas_first_then_one_switchover(spec, monkeypatch):
    tool, fake = _max_connections_tool(spec, monkeypatch, running=200, configured=220)
    tool.restart_pending()
    assert fake.actions == ["restart psql-02", "restart psql-03", "switchover psql-01"]
    assert fake.leader == "psql-02" and set(fake.running.values()) == {220}


def test_a_replica_left_pending_stops_soon_with_the_reason(spec, monkeypatch):
    """Patroni keeps a restarted replica at the primary's higher value: a stop naming it within
    seconds, where the wait once ran into RESTART_TIMEOUT (10 min) with no reason."""
    tool, fake = _max_connections_tool(spec, monkeypatch, running=220, configured=200)
    fake.start("psql-02")  # restarted while the primary still runs 220: still pending
    with pytest.raises(pgha_rolling.Stop) as stopped:
        tool.wait_member("psql-02", started_before="0")
    assert "psql-02 restarted and streams, still pending restart: max_connections 220 -> 200" in str(
        stopped.value
    )
    assert "the primary restarts first" in str(stopped.value)
    assert pgha_rolling.time.monotonic() <= 2 * pgha_rolling.SETTLE_TIMEOUT


def test_only_lowered_settings_a_standby_must_match_count(spec):
    def state(reasons: dict[str, tuple[str, str]]) -> dict[str, Any]:
        return {
            "pending_restart_reason": {k: {"old_value": o, "new_value": n} for k, (o, n) in reasons.items()}
        }

    assert pgha_rolling.lowered_settings({}) == []
    assert pgha_rolling.lowered_settings(state({"max_connections": ("200", "220")})) == []
    assert pgha_rolling.lowered_settings(state({"shared_buffers": ("256MB", "128MB")})) == []
    mixed = state({"max_wal_senders": ("10", "8"), "max_connections": ("200", "300"), "work_mem": ("4", "2")})
    assert pgha_rolling.lowered_settings(mixed) == ["max_wal_senders 10 -> 8"]
