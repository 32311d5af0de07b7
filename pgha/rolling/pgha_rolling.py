#!/usr/bin/python3
"""Managed by pgha: changes that touch running PostgreSQL, made one member at a time.

    pgha-rolling apply-config PLAN   PATCH Patroni's dynamic config where it differs
                                     from PLAN, then restart the members left
                                     pending_restart: replicas one by one, a
                                     switchover to a synchronous standby, the old primary;
                                     a lowered max_connections (or kin): the
                                     primary in place first, then the replicas
    pgha-rolling upgrade PLAN        this VM's turn of a rolling package update

Only Patroni's REST API (HTTPS, verified against the cluster's CA) and, for
the upgrade's turn-taking, etcd's v2 keys are used. The REST API password is
read from Patroni's own config file (root/postgres only): it is never on a
command line or in this file. Every wait has a deadline, and an unhealthy
cluster stops the run with a non-zero exit and the reason.

Settings (``patroni_config``: where Patroni's config file is) come from
``SETTINGS_PATH``; the plan of each run from the PLAN file its step installs.
Installed as one file on the VM, beside the shared library it imports (the
health rule, the REST client); standard library plus python3-yaml, which
Patroni brings (see ``pgha/vmprograms.py``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

# The shared library: on the VM under LIBRARY_ROOT (pgha/vmprograms.py), in the repository the package.
LIBRARY_ROOT = "/usr/local/lib/pgha"
sys.path.append(LIBRARY_ROOT)
from pgha.vmlib import cluster_health, etcd_markers, patroni_api  # noqa: E402

INSTALL_PATH = "/usr/local/lib/pgha/pgha-rolling"
SETTINGS_PATH = "/etc/pgha/pgha-rolling.json"
# Patroni's config, as Debian's patroni.service reads it (the settings say so).
PATRONI_CONFIG = "/etc/patroni/config.yml"
POLICY_RC = "/usr/sbin/policy-rc.d"
# Root's key that signs the turn markers (pgha.vmlib.etcd_markers): database VMs and witnesses.
MARKER_KEY_PATH = "/etc/pgha/rolling-marker.key"
HEALTHY_TIMEOUT = 180
RESTART_TIMEOUT = 600
TURN_TIMEOUT = 3600
# A cluster just deployed may still be settling (a synchronous standby being
# chosen): it gets this long to be healthy before a rolling operation gives up.
START_GRACE = 60
# A member restarted or switched over may take this long to show up healthy:
# waiting VMs put up with an unhealthy cluster that long while another one works.
UNHEALTHY_GRACE = 300
# A member streaming again from a new postmaster that Patroni still flags pending_restart after
# this long (at least three HA loops) will stay so: a clear stop rather than RESTART_TIMEOUT's wait.
SETTLE_TIMEOUT = 10
# A standby's value of these may not be below the primary's, as pg_controldata records it:
# Patroni starts a replica with the primary's value while that is higher, and leaves it
# pending_restart. Lowered, they take the primary's restart first, then the replicas'
# (Patroni's docs, "patroni_configuration"); raised, the replicas' first.
AT_LEAST_THE_PRIMARYS = (
    "max_connections",
    "max_locks_per_transaction",
    "max_prepared_transactions",
    "max_wal_senders",
    "max_worker_processes",
)

View = dict[str, Any]


class Stop(Exception):
    """A reason to stop, shown to the operator as is."""


class RollingOperation(patroni_api.PatroniApi):
    """One run of a rolling operation, as its plan describes it, through Patroni's REST API."""

    def __init__(self, plan: dict[str, Any], patroni_config: str = PATRONI_CONFIG) -> None:
        super().__init__(plan["ca"], patroni_config)
        self.plan = plan
        self.step = plan["step"]
        self._markers: etcd_markers.Markers | None = None

    # ---- output ----------------------------------------------------------------

    def log(self, message: str) -> None:
        print(f"[pgha {self.step}] {message}", file=sys.stderr, flush=True)

    # ---- Patroni's REST API ------------------------------------------------------

    def api_urls(self) -> dict[str, str]:
        return self.plan["rest_api_urls"]

    def cluster(self) -> View | None:
        """Patroni's /cluster from the first member that answers; None if none does."""
        return self.first_cluster_view(self.api_urls().values())

    def own(self, name: str) -> View:
        """The member's own view (/patroni), live from its PostgreSQL; {} when silent."""
        return self.member_view(self.api_urls()[name])

    @staticmethod
    def members(view: View | None) -> dict[str, View]:
        return cluster_health.members_by_name(view)

    def leader(self, view: View | None) -> str | None:
        return cluster_health.running_leader(view)

    def problems(self, view: View | None) -> list[str]:
        """What stands between the cluster and healthy (the shared rule); empty when healthy."""
        return cluster_health.problems(
            view, self.plan["members"], self.plan["sync_standbys"], self.plan.get("hosts") or {}
        )

    def wait_healthy(self, what: str, timeout: float = HEALTHY_TIMEOUT) -> View:
        deadline = time.monotonic() + timeout
        while True:
            view = self.cluster()
            found = self.problems(view)
            if not found:
                return view
            if time.monotonic() > deadline:
                raise Stop(f"cluster not healthy {what} after {timeout} s: {'; '.join(found)}")
            time.sleep(1)

    def wait_leader(self, timeout: float = HEALTHY_TIMEOUT) -> View:
        deadline = time.monotonic() + timeout
        while True:
            view = self.cluster()
            if self.leader(view) is not None:
                return view
            if time.monotonic() > deadline:
                raise Stop(f"no running leader after {timeout} s: {'; '.join(self.problems(view))}")
            time.sleep(1)

    def require_healthy(self, what: str) -> View:
        """Healthy now, or a clear stop: nothing is changed on a cluster already in trouble."""
        view = self.cluster()
        found = self.problems(view)
        if found:
            raise Stop(f"cluster unhealthy {what}, nothing done: {'; '.join(found)}")
        return view

    def wait_member(
        self, name: str, started_before: str | None, settled: bool = True, timeout: float = RESTART_TIMEOUT
    ) -> None:
        """Until ``name`` runs a new postmaster as a streaming replica (``settled``: with
        nothing left pending restart, or a stop naming what still is)."""
        deadline = time.monotonic() + timeout
        streaming_since = None
        settle = max(SETTLE_TIMEOUT, 3 * int(self.plan.get("loop_wait") or 1))
        while time.monotonic() < deadline:
            state = self.own(name)
            if (
                state.get("role") == "replica"
                and state.get("replication_state") == "streaming"
                and state.get("postmaster_start_time") not in (None, started_before)
            ):
                if not (settled and state.get("pending_restart")):
                    return
                streaming_since = streaming_since or time.monotonic()
                if time.monotonic() - streaming_since > settle:
                    raise Stop(f"{name} restarted and streams, still pending restart: {still_pending(state)}")
            time.sleep(1)
        raise Stop(f"{name} did not stream again within {timeout} s: {self.own(name)}")

    def restart_member(self, name: str) -> None:
        """Patroni restarts the member's PostgreSQL (a replica): wait until it streams again."""
        before = self.own(name).get("postmaster_start_time")
        self.log(f"(re)starting PostgreSQL on {name}")
        status, answer = self.call(
            self.api_urls()[name] + "/restart",
            "POST",
            {"restart_pending": True},
            auth=True,
            timeout=RESTART_TIMEOUT,
        )
        if status != 200:
            if status == 503 and not self.own(name).get("pending_restart"):
                self.log(f"{name} no longer needs a restart")  # it restarted meanwhile
                return
            raise Stop(f"restart of {name} refused ({status}): {answer}")
        self.wait_member(name, before)
        self.wait_healthy(f"after restarting {name}")

    def switchover(self, view: View, prefer: list[str] | tuple[str, ...] = ()) -> tuple[str, View]:
        """Hand the leadership to a healthy synchronous standby (one of ``prefer`` if possible).

        In synchronous mode only a synchronous standby is certain to hold every
        acknowledged commit; Patroni refuses others anyway.
        """
        leader = self.leader(view)
        members = self.members(view)
        wanted_role = "sync_standby" if self.plan["synchronous_mode"] else None
        candidates = [
            n
            for n, m in sorted(members.items())
            if n != leader and m.get("state") == "streaming" and wanted_role in (None, m.get("role"))
        ]
        candidates.sort(key=lambda n: n not in prefer)
        if not candidates:
            wanted = "synchronous standby" if wanted_role else "replica"
            raise Stop(f"no healthy {wanted} to switch over to")
        candidate = candidates[0]
        before = self.own(leader).get("postmaster_start_time")
        self.log(f"switching over from {leader} to {candidate}")
        status, answer = self.call(
            self.api_urls()[leader] + "/switchover",
            "POST",
            {"leader": leader, "candidate": candidate},
            auth=True,
            timeout=RESTART_TIMEOUT,
        )
        if status != 200:
            raise Stop(f"switchover from {leader} to {candidate} refused ({status}): {answer}")
        self.wait_member(leader, before, settled=False)
        return leader, self.wait_healthy(f"after the switchover to {candidate}")

    # ---- apply-config ------------------------------------------------------------

    def apply_config(self) -> None:
        view = self.wait_leader()
        leader_url = self.api_urls()[self.leader(view)]
        status, current = self.call(leader_url + "/config")
        if status != 200 or not isinstance(current, dict):
            raise Stop(f"cannot read Patroni's dynamic config ({status}): {current}")
        patch = difference(self.plan["dynamic"], current)
        pending = any(m.get("pending_restart") for m in self.members(view).values())
        if not patch and not pending:
            return  # nothing to do, whatever the cluster's health
        self.wait_healthy("before the configuration change", timeout=START_GRACE)
        if patch:
            self.log(f"changed: Patroni dynamic config: {', '.join(describe(patch))}")
            status, answer = self.call(leader_url + "/config", "PATCH", patch, auth=True)
            if status != 200:
                raise Stop(f"PATCH /config refused ({status}): {answer}")
            # Every member applies it in its next HA loop, reloading PostgreSQL
            # and flagging what needs a restart: give them two loops.
            loops = max(self.plan["loop_wait"], int(current.get("loop_wait") or 0))
            time.sleep(2 * loops + 2)
        self.restart_pending()
        if patch:
            # A member slower to apply the change than the wait above flags its
            # pending restart late: one more loop, and catch it up.
            time.sleep(loops + 1)
            self.restart_pending()

    def restart_pending(self) -> None:
        """Restart the members whose PostgreSQL waits for one: replicas, then the primary
        through a switchover; when the primary lowers a setting a standby may not have
        below it (AT_LEAST_THE_PRIMARYS), the primary in place first, then the replicas.
        Nothing pending: nothing happens."""
        view = self.wait_healthy("before restarting")
        pending = sorted(n for n, m in self.members(view).items() if m.get("pending_restart"))
        if not pending:
            return
        self.log(f"pending restart: {', '.join(pending)}")
        leader = self.leader(view)
        lowered = lowered_settings(self.own(leader)) if leader in pending else []
        if lowered:
            # A switchover would not help: a promoted standby keeps the higher value it runs
            # with. The primary restarts in place, no failover (Patroni keeps its leader lock).
            self.log(f"lowered on the primary: {', '.join(lowered)}; a standby's may not be below it")
            self.restart_primary(leader)
            pending.remove(leader)
        for name in pending:
            if name != leader:
                self.restart_member(name)
        if leader in pending:
            view = self.wait_healthy("before the switchover")
            old, view = self.switchover(view, prefer=[n for n in pending if n != leader])
            # The demoted primary restarted as a replica with the new settings;
            # restart it again only if Patroni still says so.
            if self.members(view).get(old, {}).get("pending_restart"):
                self.restart_member(old)
        still = sorted(
            n for n, m in self.members(self.wait_healthy("at the end")).items() if m.get("pending_restart")
        )
        if still:
            raise Stop(f"still pending restart after the rolling restart: {', '.join(still)}")

    def restart_primary(self, name: str, timeout: float = RESTART_TIMEOUT) -> None:
        """Patroni restarts the primary's PostgreSQL where it is; then every replica replays
        past its new start (the new values' WAL record, which updates their pg_controldata)."""
        before = self.own(name).get("postmaster_start_time")
        self.log(f"(re)starting PostgreSQL on {name}, the primary, in place")
        status, answer = self.call(
            self.api_urls()[name] + "/restart", "POST", {"restart_pending": True}, auth=True, timeout=timeout
        )
        if status != 200:
            raise Stop(f"restart of the primary {name} refused ({status}): {answer}")
        deadline = time.monotonic() + timeout
        while True:
            state = self.own(name)
            if (
                state.get("role") in ("primary", "master")
                and state.get("state") == "running"
                and state.get("postmaster_start_time") not in (None, before)
            ):
                break
            if time.monotonic() > deadline:
                raise Stop(f"{name} did not run as the primary again within {timeout} s: {state}")
            time.sleep(0.5)
        if state.get("pending_restart"):
            raise Stop(f"{name} restarted, still pending restart: {still_pending(state)}")
        started_at = int((state.get("xlog") or {}).get("location") or 0)
        view = self.wait_healthy(f"after restarting the primary {name}")
        for replica in sorted(n for n in self.members(view) if n != name):
            self.wait_replayed(replica, started_at)

    def wait_replayed(self, name: str, location: int, timeout: float = HEALTHY_TIMEOUT) -> None:
        """Until ``name`` has replayed up to ``location``: only then may it restart with lower values."""
        deadline = time.monotonic() + timeout
        while True:
            xlog = self.own(name).get("xlog") or {}
            if int(xlog.get("replayed_location") or 0) >= location:
                return
            if time.monotonic() > deadline:
                raise Stop(f"{name} did not replay up to {location} within {timeout} s: {xlog}")
            time.sleep(0.5)

    # ---- upgrade: this VM's turn -------------------------------------------------

    def marker_store(self) -> etcd_markers.Markers:
        """The signed markers under the plan's prefix, with this VM's client certificate."""
        if self._markers is None:
            self._markers = etcd_markers.Markers(
                self.plan["etcd_urls"],
                self.plan["marker_prefix"],
                patroni_api.tls_context(self.plan["ca"], self.plan["client_pem"]),
                self.log,
                Stop,
                key_path=self.plan["marker_key"],
            )
        return self._markers

    def markers(self) -> dict[str, str]:
        """Each VM's last word about the rolling update: 'done G', 'running G', 'failed G: …'."""
        return self.marker_store().read("", valid_marker)

    def mark(self, state: str, reason: str = "") -> None:
        generation = self.plan["generation"]
        value = f"{state} {generation}: {reason}" if reason else f"{state} {generation}"
        self.marker_store().write("/" + self.plan["node"], value)

    def upgrade(self) -> None:
        me, generation = self.plan["node"], self.plan["generation"]
        tag = f" {generation}"
        if self.markers().get(me) == "done" + tag:
            self.log(f"already upgraded in generation {generation}")
            return
        self.wait_turn()
        self.mark("running")
        try:
            self.upgrade_here()
        except BaseException as error:
            with contextlib.suppress(Stop):
                self.mark("failed", (str(error) or type(error).__name__)[:500])
            raise
        self.mark("done")
        self.log(f"changed: {me} upgraded and restarted (generation {generation})")

    def wait_turn(self) -> None:
        """Witnesses first, then the replicas by name, then the primary; one VM at a time.

        Roles are read anew on every round, so a failover meanwhile only
        changes who comes last.
        """
        me, generation = self.plan["node"], self.plan["generation"]
        tag = f" {generation}"
        started = time.monotonic()
        deadline = started + TURN_TIMEOUT
        unhealthy_since = None
        waiting_for = None
        while True:
            markers = self.markers()
            failed = {n: v for n, v in markers.items() if v.startswith("failed" + tag)}
            if failed:
                stopped = "; ".join(f"{n} {v}" for n, v in failed.items())
                raise Stop(f"rolling update stopped: {stopped}")
            view = self.cluster()
            found = self.problems(view)
            busy = [n for n, v in markers.items() if v == "running" + tag and n != me]
            if found:
                # While another VM takes its turn, its restart shows as unhealthy.
                unhealthy_since = unhealthy_since or time.monotonic()
                if not busy and waiting_for is None and time.monotonic() - started > START_GRACE:
                    raise Stop(
                        f"cluster unhealthy before the rolling update (for {START_GRACE} s), "
                        f"nothing done: {'; '.join(found)}"
                    )
                if time.monotonic() - unhealthy_since > UNHEALTHY_GRACE:
                    raise Stop(f"cluster unhealthy for {UNHEALTHY_GRACE} s: {'; '.join(found)}")
            else:
                unhealthy_since = None
                done = {n for n, v in markers.items() if v == "done" + tag}
                leader = self.leader(view)
                replicas = sorted(n for n in self.plan["members"] if n != leader)
                order = sorted(self.plan["without_postgres"]) + replicas + [leader]
                pending = [n for n in order if n not in done]
                if pending and pending[0] == me and not busy:
                    return
                if waiting_for != pending[:1]:
                    waiting_for = pending[:1]
                    self.log(f"waiting for {', '.join(waiting_for) or 'the others'} to finish")
            if time.monotonic() > deadline:
                raise Stop(f"not my turn after {TURN_TIMEOUT} s")
            time.sleep(2)

    def upgrade_here(self) -> None:
        me = self.plan["node"]
        is_postgres = me in self.plan["members"]
        if is_postgres:
            view = self.require_healthy(f"at {me}'s turn")
            if self.leader(view) == me:
                markers = self.markers()
                upgraded = [n for n, v in markers.items() if v == f"done {self.plan['generation']}"]
                self.switchover(view, prefer=upgraded)
        upgraded = self.apt_upgrade()
        if self.unit_needs_restart("etcd", upgraded, ("etcd-server",)):
            self.log("(re)starting etcd")
            run(["systemctl", "restart", "etcd"])
            self.wait_etcd_member()
        if self.unit_needs_restart("pgbackrest", upgraded, ("pgbackrest",)):
            self.log("(re)starting pgBackRest's TLS server")
            run(["systemctl", "restart", "pgbackrest"])
        if is_postgres:
            before = self.own(me).get("postmaster_start_time")
            # Patroni and PostgreSQL both start from the new binaries; a replica
            # restarting costs the writers no failover.
            self.log(f"(re)starting patroni and PostgreSQL on {me}")
            run(["systemctl", "restart", "patroni"])
            self.wait_member(me, before)
            if self.unit_needs_restart("haproxy", upgraded, ("haproxy",)):
                # A reload re-executes HAProxy's master with the new binary; sessions stay.
                self.log("reloading haproxy")
                run(["systemctl", "reload", "haproxy"])
            if self.unit_needs_restart("keepalived", upgraded, ("keepalived",)):
                self.log("(re)starting keepalived")
                run(["systemctl", "restart", "keepalived"])
            self.wait_healthy(f"after upgrading {me}")

    def apt_upgrade(self) -> list[str]:
        """``apt-get upgrade`` with service (re)starts held back: we restart in order.

        Returns the packages whose version changed.
        """
        before = installed()
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        own_policy = not os.path.exists(POLICY_RC)
        if own_policy:
            with open(POLICY_RC, "w") as handle:
                handle.write(
                    "#!/bin/sh\n# pgha rolling update: services are restarted by pgha, in order.\nexit 101\n"
                )
            os.chmod(POLICY_RC, 0o755)
        try:
            if self.plan["apt_update"]:
                run(["apt-get", "-q", "update"], env=env)
            run(
                [
                    "apt-get",
                    "-q",
                    "-y",
                    "-o",
                    "Dpkg::Options::=--force-confdef",
                    "-o",
                    "Dpkg::Options::=--force-confold",
                    "upgrade",
                ],
                env=env,
            )
        finally:
            if own_policy:
                os.unlink(POLICY_RC)
        after = installed()
        changed = sorted(p for p in after if before.get(p) != after[p])
        self.log(f"packages upgraded: {', '.join(changed) or 'none (already current)'}")
        return changed

    def unit_needs_restart(self, unit: str, upgraded: list[str], packages: tuple[str, ...]) -> bool:
        """Its package changed, or its main process maps a file that was replaced."""
        active = subprocess.run(["systemctl", "is-active", "-q", unit]).returncode == 0
        if not active:
            return False
        if any(p in upgraded for p in packages):
            return True
        pid = subprocess.run(
            ["systemctl", "show", "-P", "MainPID", unit], capture_output=True, text=True
        ).stdout.strip()
        try:
            with open(f"/proc/{pid}/maps") as handle:
                return any(line.rstrip().endswith("(deleted)") and " /usr/" in line for line in handle)
        except OSError:
            return False

    def wait_etcd_member(self, timeout: float = 120) -> None:
        context = patroni_api.tls_context(self.plan["ca"], self.plan["client_pem"])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                status, answer = self.call(self.plan["own_etcd_url"] + "/health", timeout=3, context=context)
                if status == 200 and isinstance(answer, dict) and answer.get("health") in ("true", True):
                    return
            except OSError:
                pass
            time.sleep(1)
        raise Stop(f"etcd on {self.plan['node']} not healthy {timeout} s after its restart")


# A marker as pgha-rolling writes it: a state and the generation, and a failure's reason.
MARKER = re.compile(r"(running|done) [0-9]+|failed [0-9]+: .*", re.DOTALL)


def valid_marker(value: object) -> bool:
    """The schema of a rolling-update marker's value (etcd_markers checks its signature)."""
    return isinstance(value, str) and MARKER.fullmatch(value) is not None


def difference(desired: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """What to PATCH so that ``current`` holds ``desired``: changed keys, and None for the
    PostgreSQL parameters pgha no longer sets (pgha owns that list; other keys it leaves)."""
    patch: dict[str, Any] = {}
    for key, value in desired.items():
        now = current.get(key)
        if isinstance(value, dict):
            sub = difference(value, now if isinstance(now, dict) else {})
            if key == "parameters" and isinstance(now, dict):
                sub.update({k: None for k in now if k not in value})
            if sub:
                patch[key] = sub
        elif normal(value) != normal(now):
            patch[key] = value
    return patch


def lowered_settings(state: View) -> list[str]:
    """The settings of AT_LEAST_THE_PRIMARYS that a member's pending restart would lower
    (Patroni's ``pending_restart_reason``: old and new value of each)."""
    reasons = state.get("pending_restart_reason") or {}
    lowered = []
    for name, change in sorted(reasons.items()):
        if name.lower() not in AT_LEAST_THE_PRIMARYS or not isinstance(change, dict):
            continue
        old, new = as_int(change.get("old_value")), as_int(change.get("new_value"))
        if old is not None and new is not None and new < old:
            lowered.append(f"{name} {old} -> {new}")
    return lowered


def still_pending(state: View) -> str:
    """What a member still waits a restart for, and why it may not get it as a replica."""
    reasons = state.get("pending_restart_reason") or {}
    found = ", ".join(
        f"{name} {change.get('old_value')} -> {change.get('new_value')}" if isinstance(change, dict) else name
        for name, change in sorted(reasons.items())
    )
    found = found or "Patroni gives no reason"
    if lowered_settings(state):
        found += " (a standby's may not be below the primary's: the primary restarts first)"
    return found


def as_int(value: object) -> int | None:
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def normal(value: object) -> str:
    """Patroni keeps values as given: 200 and '200', True and 'true' are the same setting."""
    if isinstance(value, bool):
        return "on" if value else "off"
    text = str(value).strip()
    return {"true": "on", "false": "off"}.get(text.lower(), text)


def describe(patch: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in sorted(patch.items()):
        if isinstance(value, dict):
            yield from describe(value, prefix + key + ".")
        else:
            yield f"{prefix}{key}={'(removed)' if value is None else value}"


def installed() -> dict[str, str]:
    listing = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package} ${Version} ${db:Status-Abbrev}\\n"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    versions: dict[str, str] = {}
    for line in listing.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2].startswith("ii"):
            versions[parts[0]] = parts[1]
    return versions


def run(argv: list[str], env: dict[str, str] | None = None) -> None:
    """A command whose output goes to our stderr (the step's log); its failure stops us."""
    result = subprocess.run(argv, env=env, stdout=sys.stderr, stderr=sys.stderr, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise Stop(f"{' '.join(argv)} failed with exit code {result.returncode}")


def main(argv: list[str] | None = None, settings_path: str = SETTINGS_PATH) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in ("apply-config", "upgrade"):
        print(__doc__, file=sys.stderr)
        return 2
    with open(settings_path) as handle:
        settings = json.load(handle)
    with open(args[1]) as handle:
        tool = RollingOperation(json.load(handle), settings["patroni_config"])
    try:
        if args[0] == "apply-config":
            tool.apply_config()
        else:
            tool.upgrade()
    except Stop as stop:
        tool.log(f"STOPPED: {stop}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
