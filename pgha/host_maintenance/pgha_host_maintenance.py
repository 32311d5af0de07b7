#!/usr/bin/python3
"""Managed by pgha: take a Proxmox host out of the cluster for a reboot, and bring it back.

    pgha-host-maintenance HOST start    switch the primary off HOST, tag its members
                                        nofailover and nosync, hand the VIP away and,
                                        when HOST carries the etcd majority, remove its
                                        etcd members so the other host keeps a quorum
    pgha-host-maintenance HOST finish   its etcd members join again (learners, then
                                        voters), tags cleared, full redundancy back
    pgha-host-maintenance status        the maintenance markers and the cluster's state
    pgha-host-maintenance agent         (systemd) carry out this VM's own part

Runs on any database VM, as root. The cluster-wide part (health checks,
switchover, etcd membership) is done by the VM the operator runs it on; what
only a VM can do for itself (its Patroni tags, its keepalived, wiping and
re-joining its etcd member) is done by the agent on each VM of HOST, which
follows a marker in etcd's v2 keyspace and acknowledges each request there.

Settings (members, hosts, ports, certificate paths) come from the JSON file
the pgha step installs next to it; the REST API password is read from
Patroni's config file, never from a command line. Only the Python standard
library, the shared library installed beside it (the health rule, the REST
client; see ``pgha/vmprograms.py``), PyYAML (Patroni's dependency) and etcdctl
are used.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

# The shared library: on the VM under LIBRARY_ROOT (pgha/vmprograms.py), in the repository the package.
LIBRARY_ROOT = "/usr/local/lib/pgha"
sys.path.append(LIBRARY_ROOT)
from pgha.vmlib import cluster_health, etcd_markers, patroni_api  # noqa: E402

INSTALL_PATH = "/usr/local/sbin/pgha-host-maintenance"
SETTINGS_PATH = "/etc/pgha/pgha-host-maintenance.json"
# Root's key that signs the maintenance markers (pgha.vmlib.etcd_markers): database VMs only.
MARKER_KEY_PATH = "/etc/pgha/host-maintenance-marker.key"
AGENT_POLL_S = 1.0
ACK_TIMEOUT_S = 60.0
JOIN_TIMEOUT_S = 900.0
HEALTHY_TIMEOUT_S = 300.0
# The tags a host in maintenance carries: never promoted, never a synchronous
# standby (a crashed sync standby would hold every commit until it is dropped).
MAINTENANCE_TAGS = {"nofailover": True, "nosync": True}


# The markers' schemas: a host's maintenance request, an agent's acknowledgement of one.
STATES = ("start", "started", "finish")
ACK = re.compile(r"(start|started|finish) [0-9]{1,20}")


def valid_request(value: object) -> bool:
    return (
        isinstance(value, dict)
        and set(value) == {"state", "id"}
        and value["state"] in STATES
        and isinstance(value["id"], str)
        and re.fullmatch(r"[0-9]{1,20}", value["id"]) is not None
    )


def valid_ack(value: object) -> bool:
    return isinstance(value, str) and ACK.fullmatch(value) is not None


MARKER_SCHEMAS = {"host": valid_request, "agent": valid_ack}


class Refused(Exception):
    """A reason not to go on, shown to the operator as is (exit 1)."""


@dataclass(frozen=True)
class Member:
    """One VM of the stack as the settings describe it."""

    name: str
    host: str
    postgres: bool
    etcd: bool
    rest_api: str
    etcd_client: str
    etcd_peer: str


def load_settings(path: str = SETTINGS_PATH) -> dict[str, Any]:
    with open(path) as handle:
        return json.load(handle)


def members_of(settings: dict[str, Any]) -> list[Member]:
    return [Member(**m) for m in settings["members"]]


# ---- pure decisions (unit-tested off the VM) ---------------------------------------------


def quorum(voters: int) -> int:
    return voters // 2 + 1


def etcd_members_to_remove(members: list[Member], host: str) -> list[str]:
    """The etcd members of ``host`` to remove so that the others keep a quorum while it is down.

    Empty when the members elsewhere already hold a majority (a witness on a
    third host); all of the host's members otherwise, since keeping any of them
    would leave a cluster whose majority still needs that host.
    """
    voters = [m for m in members if m.etcd]
    on_host = [m.name for m in voters if m.host == host]
    if len(voters) - len(on_host) >= quorum(len(voters)):
        return []
    return on_host


def with_tags(document: dict[str, Any], tags: dict[str, Any]) -> bool:
    """Set ``tags`` in a Patroni config document; whether anything changed."""
    current = document.setdefault("tags", {})
    if all(current.get(k) == v for k, v in tags.items()):
        return False
    current.update(tags)
    return True


# ---- the cluster, as seen from this VM ------------------------------------------------------


class Cluster(patroni_api.PatroniApi):
    """Patroni's REST API (the shared client), etcd's v2 keys (the markers) and etcdctl (membership)."""

    def __init__(self, settings: dict[str, Any]) -> None:
        super().__init__(settings["ca"], settings["patroni_config"], timeout=5.0)
        self.settings = settings
        self.members = members_of(settings)
        self.client_context = patroni_api.tls_context(settings["ca"], settings["client_pem"])
        self.marker_store = etcd_markers.Markers(
            [m.etcd_client for m in self.members if m.etcd],
            settings["marker_prefix"],
            self.client_context,
            self.log,
            Refused,
            key_path=settings["marker_key"],
            timeout=3,
        )

    def log(self, message: str) -> None:
        print(f"[pgha host-maintenance {self.settings['node']}] {message}", file=sys.stderr, flush=True)

    def member(self, name: str) -> Member:
        return next(m for m in self.members if m.name == name)

    def on_host(self, host: str, postgres: bool = False) -> list[Member]:
        return [m for m in self.members if m.host == host and (m.postgres or not postgres)]

    # ---- Patroni ----

    def view(self) -> dict[str, Any] | None:
        """Patroni's /cluster from the first member that answers."""
        return self.first_cluster_view(m.rest_api for m in self.members if m.postgres)

    def own(self, name: str) -> dict[str, Any]:
        """A member's own view (/patroni); {} when it does not answer."""
        return self.member_view(self.member(name).rest_api)

    @staticmethod
    def roles(view: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
        return cluster_health.members_by_name(view)

    def leader(self, view: dict[str, Any] | None) -> str | None:
        return cluster_health.running_leader(view)

    def problems(self, max_lag: int | None = None, without: str | None = None) -> list[str]:
        """Health of the database cluster; ``without`` a host: its members are not expected."""
        expected = [m.name for m in self.members if m.postgres and m.host != without]
        wanted = self.settings["sync_standbys"] if self.settings["synchronous_mode"] else 0
        if without is not None:
            wanted = min(wanted, max(len(expected) - 1, 0))
        hosts = self.settings["sync_hosts"]
        return cluster_health.problems(self.view(), expected, wanted, hosts, max_lag)

    def switchover_off(self, host: str) -> None:
        """Hand the primary to a healthy (synchronous) standby on another host."""
        view = self.view()
        leader = self.leader(view)
        if leader is None:
            raise Refused("no running leader: cannot move the primary")
        if self.member(leader).host != host:
            return
        wanted = "sync_standby" if self.settings["synchronous_mode"] else None
        candidates = sorted(
            n
            for n, m in self.roles(view).items()
            if self.member(n).host != host
            and m.get("state") == "streaming"
            and wanted in (None, m.get("role"))
            and not (m.get("tags") or {}).get("nofailover")
        )
        if not candidates:
            raise Refused(f"no healthy synchronous standby outside {host} to hand the primary to")
        self.log(f"switching the primary over from {leader} to {candidates[0]}")
        status, answer = self.call(
            self.member(leader).rest_api + "/switchover",
            "POST",
            {"leader": leader, "candidate": candidates[0]},
            auth=True,
            timeout=120,
        )
        if status != 200:
            raise Refused(f"switchover from {leader} to {candidates[0]} refused ({status}): {answer}")
        self.wait("the new primary running", lambda: self.leader(self.view()) == candidates[0], 120)

    def wait(self, what: str, done: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise Refused(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.5)
        self.log(f"{what}: ok")

    # ---- etcd: markers (v2 keys, signed: the shared client) ----

    def markers(self, folder: str) -> dict[str, Any]:
        """The signed, well-formed markers of ``folder`` (``host`` requests, ``agent`` acknowledgements)."""
        return self.marker_store.read(folder, MARKER_SCHEMAS[folder])

    def request(self, host: str) -> dict[str, Any] | None:
        return self.markers("host").get(host)

    def set_request(self, host: str, state: str, ident: str) -> None:
        self.marker_store.write(f"/host/{host}", {"state": state, "id": ident})

    def acknowledge(self, name: str, done: str) -> None:
        self.marker_store.write(f"/agent/{name}", done)

    def clear_request(self, host: str) -> None:
        self.marker_store.delete(f"/host/{host}")

    # ---- etcd: membership (v3, etcdctl) ----

    def etcdctl(self, *args: str, endpoints: list[str] | None = None) -> Any:
        urls = endpoints or [m.etcd_client for m in self.members if m.etcd]
        command = [
            "etcdctl",
            f"--cacert={self.settings['ca']}",
            f"--cert={self.settings['client_pem']}",
            f"--key={self.settings['client_pem']}",
            f"--endpoints={','.join(urls)}",
            "--dial-timeout=2s",
            "--command-timeout=10s",
            *args,
            "-w",
            "json",
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise Refused(f"etcdctl {' '.join(args)}: {result.stderr.strip()}")
        return json.loads(result.stdout) if result.stdout.strip() else None

    def etcd_list(self) -> list[dict[str, Any]]:
        """etcd's members: name (empty while unstarted), ID, peer URLs, learner flag."""
        return list(self.etcdctl("member", "list").get("members", []))

    def etcd_health(self, listed: list[dict[str, Any]]) -> dict[str, bool]:
        """Each listed member's own /health, by peer URL."""
        health = {}
        for entry in listed:
            url = (entry.get("clientURLs") or [""])[0]
            try:
                request = urllib.request.Request(url + "/health")
                with urllib.request.urlopen(request, timeout=3, context=self.client_context) as answer:
                    health[entry["peerURLs"][0]] = json.loads(answer.read()).get("health") in ("true", True)
            except (OSError, ValueError):
                health[entry["peerURLs"][0]] = False
        return health

    def etcd_problems(self) -> list[str]:
        listed = self.etcd_list()
        health = self.etcd_health(listed)
        by_peer = {m.etcd_peer: m for m in self.members}
        found = []
        for entry in listed:
            name = by_peer.get(entry["peerURLs"][0], Member("?", "?", False, False, "", "", "")).name
            if entry.get("isLearner"):
                found.append(f"etcd member {name} is still a learner")
            if not health.get(entry["peerURLs"][0]):
                found.append(f"etcd member {name} is unhealthy")
        listed_peers = {e["peerURLs"][0] for e in listed}
        for member in self.members:
            if member.etcd and member.etcd_peer not in listed_peers:
                found.append(f"{member.name} is not an etcd member")
        return found

    def etcd_leader(self, listed: list[dict[str, Any]]) -> int | None:
        """The raft leader's ID, asked of each listed member in turn (a dead one fails alone)."""
        for entry in listed:
            try:
                status = self.etcdctl("endpoint", "status", endpoints=entry.get("clientURLs") or [])
            except Refused:
                continue
            for answer in status or []:
                leader = answer.get("Status", {}).get("leader")
                if leader:
                    return int(leader)
        return None

    def remove_etcd_members(self, names: list[str], host: str) -> None:
        """Remove ``names`` one at a time, leadership first moved off ``host``."""
        # Asked of the members that stay: a member asked to remove itself stops
        # before it answers, and etcdctl reports a failure for a removal that happened.
        staying = [m.etcd_client for m in self.members if m.etcd and m.host != host]
        for name in names:
            listed = self.etcd_list()
            peer = self.member(name).etcd_peer
            entry = next((e for e in listed if peer in e.get("peerURLs", [])), None)
            if entry is None:
                continue
            leader = self.etcd_leader(listed)
            ids = {e["ID"]: e for e in listed}
            leading = ids.get(leader)
            if leading is not None and (leading.get("peerURLs") or [""])[0] in {
                m.etcd_peer for m in self.on_host(host)
            }:
                target = next(
                    e
                    for e in listed
                    if e["peerURLs"][0] not in {m.etcd_peer for m in self.on_host(host)}
                    and not e.get("isLearner")
                )
                self.log(f"moving etcd leadership to {target['name']}")
                self.etcdctl("move-leader", f"{target['ID']:x}", endpoints=leading["clientURLs"])
            self.log(f"removing etcd member {name}: the others keep the quorum while {host} is down")
            try:
                self.etcdctl("member", "remove", f"{entry['ID']:x}", endpoints=staying or None)
            except Refused:
                if any(e.get("ID") == entry["ID"] for e in self.etcd_list()):
                    raise
                self.log(f"etcd member {name} is gone although etcdctl reported an error")
            self.wait(
                "etcd healthy without " + name,
                lambda: all(self.etcd_health(self.etcd_list()).values()),
                60,
            )


# ---- the operator's commands -----------------------------------------------------------------


def _acks(cluster: Cluster, host: str, state: str, ident: str) -> bool:
    acks = cluster.markers("agent")
    return all(acks.get(m.name) == f"{state} {ident}" for m in cluster.on_host(host, postgres=True))


def start(cluster: Cluster, host: str) -> None:
    settings = cluster.settings
    if host not in settings["hosts"]:
        raise Refused(f"{host} is not a Proxmox host of this cluster (hosts: {', '.join(settings['hosts'])})")
    requests = cluster.markers("host")
    busy = [h for h, r in requests.items() if h != host]
    if busy:
        raise Refused(f"{', '.join(busy)} is already in maintenance: finish it first")
    if not [m for m in cluster.members if m.postgres and m.host != host]:
        raise Refused(f"no database VM outside {host} could hold the primary")
    survivors = [m for m in cluster.members if m.etcd and m.host != host]
    if not survivors:
        raise Refused(f"every etcd member is on {host}: nothing else could hold the quorum")
    previous = requests.get(host)
    if previous is None:
        # Nothing changed yet: refuse on any doubt, before touching anything.
        found = cluster.problems(max_lag=settings["max_lag_bytes"]) + cluster.etcd_problems()
        if found:
            raise Refused(f"not safe to start maintenance of {host}: {'; '.join(found)}")
        ident = str(int(time.time()))
    else:
        # A second run, or after a failed one: carry on from where it stopped.
        ident = previous["id"]
        cluster.log(f"{host} is already in maintenance ({previous['state']}): making sure every part is done")
        if cluster.leader(cluster.view()) is None:
            raise Refused("no running leader: wait for the cluster to elect one, then run start again")
    # The agents hand the VIP away while the primary moves: both cut the
    # writers off once, inside the switchover's few seconds.
    cluster.set_request(host, "start", ident)
    cluster.switchover_off(host)
    cluster.wait(
        f"{host}'s VMs tagged nofailover/nosync, their keepalived stopped",
        lambda: _acks(cluster, host, "start", ident),
        ACK_TIMEOUT_S,
    )
    names = {m.name for m in cluster.on_host(host, postgres=True)}
    cluster.wait(
        f"{host}'s VMs out of the synchronous standbys",
        lambda: not any(
            n in names and m.get("role") == "sync_standby" for n, m in cluster.roles(cluster.view()).items()
        ),
        60,
    )
    cluster.remove_etcd_members(etcd_members_to_remove(cluster.members, host), host)
    # The removed members' agents stop and wipe their etcd.
    cluster.set_request(host, "started", ident)
    leader = cluster.leader(cluster.view())
    voters = [e.get("name") for e in cluster.etcd_list() if not e.get("isLearner")]
    print(
        f"{host} is in maintenance: primary {leader}, etcd voters {', '.join(voters)}. "
        f"Reboot {host} now; afterwards run: pgha-host-maintenance {host} finish"
    )


def finish(cluster: Cluster, host: str) -> None:
    settings = cluster.settings
    if host not in settings["hosts"]:
        raise Refused(f"{host} is not a Proxmox host of this cluster (hosts: {', '.join(settings['hosts'])})")
    previous = cluster.request(host)
    if previous is None and not cluster.problems() and not cluster.etcd_problems():
        print(f"{host} is not in maintenance and the cluster is whole: nothing to do")
        return
    silent = [m.name for m in cluster.on_host(host, postgres=True) if not cluster.own(m.name)]
    if silent:
        raise Refused(f"Patroni does not answer on {', '.join(silent)}: boot {host}'s VMs first")
    ident = previous["id"] if previous else str(int(time.time()))
    cluster.set_request(host, "finish", ident)
    cluster.wait(
        f"{host}'s VMs back in etcd, untagged, keepalived running",
        lambda: _acks(cluster, host, "finish", ident),
        JOIN_TIMEOUT_S,
    )
    cluster.wait("every etcd member a healthy voter", lambda: not cluster.etcd_problems(), 120)
    cluster.wait(
        "the cluster healthy, every standby streaming", lambda: not cluster.problems(), HEALTHY_TIMEOUT_S
    )
    cluster.clear_request(host)
    voters = [e.get("name") for e in cluster.etcd_list() if not e.get("isLearner")]
    print(f"{host} is back: primary {cluster.leader(cluster.view())}, etcd voters {', '.join(voters)}")


def status(cluster: Cluster) -> None:
    document = {
        "maintenance": cluster.markers("host"),
        "agents": cluster.markers("agent"),
        "problems": cluster.problems(),
    }
    try:
        document["etcdProblems"] = cluster.etcd_problems()
    except Refused as error:
        document["etcdProblems"] = [str(error)]
    print(json.dumps(document, indent=1))


# ---- the agent: this VM's own part -------------------------------------------------------


class Agent:
    """Follows its host's marker; every action is idempotent, so it simply re-applies."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.settings = cluster.settings
        self.me = cluster.member(self.settings["node"])
        self.done: str | None = None

    def run(self) -> None:
        while True:
            try:
                self.once()
            except (Refused, OSError, subprocess.SubprocessError, ValueError) as error:
                self.cluster.log(f"agent: {error}")
            time.sleep(AGENT_POLL_S)

    def once(self) -> None:
        request = self.cluster.request(self.me.host)
        if request is None:
            self.done = None
            return
        # "started" (set once the etcd members are removed) re-applies start: a
        # removed member then stops and wipes its etcd at once.
        wanted = f"{request['state']} {request['id']}"
        if wanted == self.done:
            return
        if request["state"] == "finish":
            self.finish_here()
        else:
            self.start_here()
        self.cluster.acknowledge(self.me.name, wanted)
        self.done = wanted

    def start_here(self) -> None:
        # The VIP first, at once: its move then falls inside the switchover the
        # operator's VM runs meanwhile, and writers are cut off only once (the
        # tags wait for Patroni's next loop, which would push it past the switchover).
        if systemctl("is-enabled", "keepalived") == 0 or systemctl("is-active", "keepalived") == 0:
            # Its last advert (priority 0) hands the VIP to a peer at once. Stopped
            # before it is disabled: `disable --now` reloads systemd first, which
            # delayed the VIP's move by a second in the lab.
            self.cluster.log("stopping keepalived: the VIP stays off this host")
            systemctl("stop", "keepalived", check=True)
            systemctl("disable", "keepalived", check=True)
        self.set_tags(MAINTENANCE_TAGS)
        if self.me.etcd and self.etcd_entry() is None:
            self.wipe_etcd()

    def finish_here(self) -> None:
        entry = self.etcd_entry() if self.me.etcd else None
        if self.me.etcd and (entry is None or entry.get("isLearner") or not os.path.isdir(self.member_dir())):
            # A learner left by an interrupted join is removed and added anew by the join.
            self.wipe_etcd()
            self.cluster.log("joining etcd again (a learner, then a voter)")
            systemctl("unmask", "etcd", check=True)
            subprocess.run([self.settings["membership_helper"], "join"], check=True, timeout=JOIN_TIMEOUT_S)
            self.cluster.wait("etcd serving here", self.etcd_serving, 300)
            systemctl("enable", "etcd", check=True)
        self.set_tags(self.settings["normal_tags"])
        if systemctl("is-active", "keepalived") != 0:
            self.cluster.log("starting keepalived")
            systemctl("enable", "--now", "keepalived", check=True)

    def member_dir(self) -> str:
        return os.path.join(self.settings["etcd_data_dir"], "member")

    def etcd_entry(self) -> dict[str, Any] | None:
        """This VM's entry in etcd's member list, asked of the others; None once removed."""
        listed = self.cluster.etcdctl(
            "member",
            "list",
            endpoints=[m.etcd_client for m in self.cluster.members if m.etcd and m != self.me],
        ).get("members", [])
        return next((e for e in listed if self.me.etcd_peer in e.get("peerURLs", [])), None)

    def etcd_serving(self) -> bool:
        try:
            request = urllib.request.Request(self.me.etcd_client + "/health")
            with urllib.request.urlopen(request, timeout=3, context=self.cluster.client_context) as answer:
                return json.loads(answer.read()).get("health") in ("true", True)
        except (OSError, ValueError):
            return False

    def wipe_etcd(self) -> None:
        """A removed member's data can never serve again: stop it, forget it.

        Masked, not only disabled: an etcd started here without data and
        without the bootstrap settings would found a one-member cluster of
        its own (etcd's default initial cluster is itself), and this VM's
        Patroni and the tool would talk to it. Seen in the lab: etcd came back
        at the reboot although disabled, and took the tool's "finish" marker.
        """
        self.cluster.log("this etcd member was removed: stopping etcd, masking it, wiping its data")
        systemctl("mask", "--now", "etcd", check=True)
        shutil.rmtree(self.settings["etcd_data_dir"], ignore_errors=True)
        if os.path.exists(self.settings["etcd_bootstrap_env"]):
            os.unlink(self.settings["etcd_bootstrap_env"])

    def set_tags(self, tags: dict[str, Any]) -> None:
        """Patroni's tags live in its local config file: edit it in place, then reload."""
        import yaml

        path = self.settings["patroni_config"]
        with open(path) as handle:
            head, document = handle.readline(), yaml.safe_load(handle)
        if not with_tags(document, tags):
            return
        with open(path, "w") as handle:  # in place: owner and mode stay
            handle.write(head + yaml.safe_dump(document, sort_keys=False, default_flow_style=False))
        self.cluster.log(f"Patroni tags now {document['tags']}: reloading Patroni")
        systemctl("reload", "patroni", check=True)
        self.cluster.wait(
            "Patroni publishing the new tags",
            lambda: all(
                bool((self.cluster.roles(self.cluster.view()).get(self.me.name, {}).get("tags") or {}).get(k))
                == bool(v)
                for k, v in tags.items()
            ),
            30,
        )


def systemctl(*args: str, check: bool = False) -> int:
    result = subprocess.run(["systemctl", "-q", *args], check=False, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise Refused(f"systemctl {' '.join(args)}: {result.stderr.strip()}")
    return result.returncode


def main(argv: list[str] | None = None) -> int:
    args = (sys.argv if argv is None else argv)[1:]
    if args in (["status"], ["agent"]) or (len(args) == 2 and args[1] in ("start", "finish")):
        cluster = Cluster(load_settings(os.environ.get("PGHA_HOST_MAINTENANCE_SETTINGS", SETTINGS_PATH)))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        if args == ["agent"]:
            Agent(cluster).run()
        elif args == ["status"]:
            status(cluster)
        elif args[1] == "start":
            start(cluster, args[0])
        else:
            finish(cluster, args[0])
    except Refused as refused:
        print(f"pgha-host-maintenance: REFUSED: {refused}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
