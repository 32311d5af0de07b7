"""The running cluster seen from the private network: every door tried, with and without keys.

What each listener is and what protects it is the table below (docs/security.md,
"What is encrypted", lists the same). A listener not in it fails the scan.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import functools
import io
import json
import socket
import ssl
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.request
from ipaddress import ip_address

import psycopg
import pytest

from lab.machines import inside
from lab.observation import connect, observe
from lab.scenarios.apps import primary_sql
from lab.wait import wait_until
from pgha import LocalCa, backup, etcd, haproxy, monitoring, node_files, patroni, pki
from pgha.secrets import HAPROXY_STATS_USER, RESTAPI_USER

pytestmark = pytest.mark.lab

# Port → (process, how it is protected). SSH listens on every address; the
# rest on the node's private IP only (HAProxy's 5432/5433 on the VIP too).
LISTENERS = {
    "ssh": ("sshd", "SSH: public keys only, no passwords"),
    "postgres": ("postgres", "TLS required by pg_hba (hostssl), scram-sha-256, private CIDR only"),
    "primary": ("haproxy", "TCP passthrough of PostgreSQL's own TLS"),
    "replicas": ("haproxy", "TCP passthrough of PostgreSQL's own TLS"),
    "stats": ("haproxy", "HTTPS; the stats page needs a password; /health is read-only"),
    "restapi": ("patroni", "HTTPS; unsafe endpoints need a password"),
    "etcd-client": ("etcd", "TLS with client certificates from the cluster's CA"),
    "etcd-peer": ("etcd", "TLS with client certificates from the cluster's CA"),
    "pgbackrest": ("pgbackrest", "TLS; only the certificate names in tls-server-auth get in"),
    "monitoring": ("haproxy", "HTTPS; connections from outside monitoring.allowFrom are closed; GET only"),
    # pgha:pooler: HAProxy's 6432 on the VM and the VIP, PgBouncer's own 6442 on the VM.
    "pooler": ("haproxy", "TCP passthrough of PgBouncer's TLS"),
    "pgbouncer": ("pgbouncer", "TLS required, SCRAM via auth_query; its own PostgreSQL only"),
    # Loopback only, behind the monitoring port (ss shows the first 15 characters of the name).
    "node-exporter": ("prometheus-node", "loopback only: served through the monitoring port"),
    "postgres-exporter": ("prometheus-post", "loopback only: served through the monitoring port"),
    "pgbouncer-exporter": ("prometheus-pgbo", "loopback only: served through the monitoring port"),
    "etcd-metrics": ("etcd", "loopback only, /metrics and /health: served through the monitoring port"),
}
LOOPBACK_ONLY = ("node-exporter", "postgres-exporter", "pgbouncer-exporter", "etcd-metrics")
ETCD_METRICS_PORT = int(etcd.METRICS_ADDRESS.rpartition(":")[2])
EXPORTER_PORTS = {
    int(monitoring.NODE_EXPORTER_ADDRESS.rpartition(":")[2]): "node-exporter",
    int(monitoring.POSTGRES_EXPORTER_ADDRESS.rpartition(":")[2]): "postgres-exporter",
}
PGBOUNCER_EXPORTER_PORT = int(monitoring.PGBOUNCER_EXPORTER_ADDRESS.rpartition(":")[2])


def ports(lab) -> dict[int, str]:
    spec = lab.spec
    return {
        spec.ssh.port: "ssh",
        spec.postgres.port: "postgres",
        spec.haproxy.primary_port: "primary",
        spec.haproxy.replica_port: "replicas",
        spec.haproxy.stats_port: "stats",
        spec.patroni.rest_api_port: "restapi",
        spec.etcd.client_port: "etcd-client",
        spec.etcd.peer_port: "etcd-peer",
        ETCD_METRICS_PORT: "etcd-metrics",
        **({spec.backup.tls_port: "pgbackrest"} if spec.backup else {}),
        **({spec.monitoring.port: "monitoring", **EXPORTER_PORTS} if spec.monitoring else {}),
        **({spec.pooler.port: "pooler", spec.pooler.listen_port: "pgbouncer"} if spec.pooler else {}),
        **({PGBOUNCER_EXPORTER_PORT: "pgbouncer-exporter"} if spec.monitoring and spec.pooler else {}),
    }


def leader_and_replica(lab) -> tuple[str, str]:
    """The leader and a streaming replica, once the cluster is healthy.

    The synchronous standby when there is one: it is the only candidate
    Patroni accepts for a switchover in synchronous mode (else 412), and which
    replica it is depends on the switchovers earlier tests made.
    """
    members = lab.wait_ready()["nodes"]
    leader = next(m["name"] for m in members if m["role"] == "leader")
    streaming = [m for m in members if m["role"] != "leader" and m["state"] == "streaming"]
    synchronous = [m for m in streaming if m["role"] in ("sync_standby", "quorum_standby")]
    return leader, (synchronous or streaming)[0]["name"]


def current_leader(lab) -> str | None:
    view = observe.cluster_view(lab) or {"members": []}
    return next((m["name"] for m in view["members"] if m["role"] == "leader"), None)


def post(lab, url: str, body: dict, auth: tuple[str, str] | None = None) -> tuple[int, str]:
    """POST JSON to Patroni over verified HTTPS from the lab network: (status, body)."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with (
            inside(lab.network.path),
            urllib.request.urlopen(request, timeout=30, context=lab.tls_context()) as r,
        ):
            return r.status, r.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def tls_peer_certificate(
    lab, host: str, port: int, postgres: bool = False, hostname: str | None = None
) -> bytes:
    """Handshake with the lab's CA (and the operator's certificate, which etcd asks for): the server's cert.

    ``postgres``: speak PostgreSQL's SSLRequest first, as libpq does.
    ``hostname``: also check the certificate names it (None: the chain only).
    """
    context = lab.tls_context(client_cert=True)
    context.check_hostname = hostname is not None
    with inside(lab.network.path):
        raw = socket.create_connection((host, port), timeout=5)
    with raw:
        if postgres:
            raw.sendall(struct.pack("!ii", 8, 80877103))
            assert raw.recv(1) == b"S", f"{host}:{port} does not offer TLS"
        with context.wrap_socket(raw, server_hostname=hostname) as tls:
            return tls.getpeercert(binary_form=True)


# ---- PostgreSQL ---------------------------------------------------------------------


def test_plaintext_postgres_is_refused_on_every_port(lab):
    targets = [
        (str(lab.spec.vip), lab.spec.haproxy.primary_port),
        (str(lab.spec.vip), lab.spec.haproxy.replica_port),
    ]
    targets += [(str(n.ip), lab.spec.postgres.port) for n in lab.spec.postgres_nodes]
    for host, port in targets:
        with pytest.raises(psycopg.OperationalError, match=r"no pg_hba\.conf entry.*no encryption"):
            connect(lab, port, host=host, sslmode="disable")


def test_every_connection_is_tls_and_the_vip_certificate_verifies(lab):
    """verify-full against the VIP: each PostgreSQL node's certificate names it."""
    for port in (lab.spec.haproxy.primary_port, lab.spec.haproxy.replica_port):
        with connect(lab, port) as conn:
            row = conn.execute("select ssl, version from pg_stat_ssl where pid = pg_backend_pid()").fetchone()
            assert row[0] is True and row[1] in ("TLSv1.2", "TLSv1.3"), row
    for node in lab.spec.postgres_nodes:
        with connect(lab, lab.spec.postgres.port, host=str(node.ip)) as conn:
            assert str(conn.execute("select inet_server_addr()").fetchone()[0]) == str(node.ip)


def test_replication_runs_over_tls(lab):
    # Other sessions' TLS state is the superuser's to read: on the primary's socket.
    output = primary_sql(
        lab, "select r.application_name, s.ssl from pg_stat_replication r join pg_stat_ssl s using (pid)"
    )
    rows = [line.split("|") for line in output.splitlines()]
    assert len(rows) == len(lab.spec.postgres_nodes) - 1 and all(ssl_on == "t" for _, ssl_on in rows), rows


def test_a_wrong_password_is_refused(lab):
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect(lab, lab.spec.haproxy.primary_port, password="not-the-password")


def test_a_client_trusting_another_ca_refuses_the_server(lab, tmp_path):
    """The client side of verify-full really verifies: a look-alike CA is not enough."""
    stranger = tmp_path / "stranger-ca.crt"
    stranger.write_text(LocalCa.create(lab.spec).certificate)
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        connect(lab, lab.spec.haproxy.primary_port, sslrootcert=str(stranger))


# ---- etcd ---------------------------------------------------------------------------


def etcdctl(lab, node, *flags: str) -> tuple[int, str]:
    argv = ["etcdctl", *flags, "--dial-timeout=2s", "--command-timeout=3s", "endpoint", "health"]
    result = lab.exec(node.name, argv, capture_output=True, text=True)
    return result.returncode, result.stdout + result.stderr


def test_etcd_refuses_clients_without_a_certificate(lab):
    node = etcd.members(lab.spec)[0]
    https, http = etcd.client_url(lab.spec, node), etcd.client_url(lab.spec, node).replace("https", "http")
    status, output = etcdctl(lab, node, f"--endpoints={https}", f"--cacert={pki.CA_PATH}")
    assert status != 0 and "is unhealthy" in output, output
    status, output = etcdctl(lab, node, f"--endpoints={http}")
    assert status != 0, output
    # Nothing listens on loopback any more.
    status, output = etcdctl(lab, node, "--endpoints=http://127.0.0.1:2379")
    assert status != 0, output
    status, output = etcdctl(lab, node, *etcd.etcdctl_flags(lab.spec, node))
    assert status == 0 and "is healthy" in output, output


def pgbackrest_info_via(lab, node, server) -> subprocess.CompletedProcess:
    """pgbackrest info run on ``node``, treating ``server``'s TLS server as the repository."""
    options = [
        f"--repo1-host={server.ip}",
        "--repo1-host-type=tls",
        f"--repo1-host-port={lab.spec.backup.tls_port}",
        f"--repo1-host-ca-file={pki.CA_PATH}",
        f"--repo1-host-cert-file={backup.PEM_PATH}",
        f"--repo1-host-key-file={backup.PEM_PATH}",
    ]
    return lab.exec(
        node.name,
        ["runuser", "-u", "postgres", "--", "pgbackrest", "--stanza=pgha", *options, "info"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_pgbackrest_servers_admit_only_the_certificate_names_they_list(lab):
    if lab.spec.repository_node is None:
        pytest.skip("no repository VM in this stack")
    first, second = lab.spec.postgres_nodes[:2]
    # The repository lists every database VM: allowed.
    allowed = pgbackrest_info_via(lab, second, lab.spec.repository_node)
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    # A database VM lists only the repository: its peer, with a valid CA-signed certificate, is refused.
    refused = pgbackrest_info_via(lab, second, first)
    # info reports the repository's error in its output (and exits 0).
    assert "access denied" in refused.stdout + refused.stderr, refused.stdout + refused.stderr
    assert "access denied" not in allowed.stdout + allowed.stderr


def test_etcd_peer_port_asks_for_a_certificate_too(lab):
    node = etcd.members(lab.spec)[0]
    url = f"https://{node.ip}:{lab.spec.etcd.peer_port}/members"
    curl = ["curl", "-sS", "--http1.1", "--max-time", "5", "--cacert", str(lab.ca_path), url]
    without = lab.run(curl, capture_output=True, text=True)
    assert without.returncode != 0, without.stdout
    with_cert = lab.run([*curl, "--cert", str(lab.operator_pem_path)], capture_output=True, text=True)
    assert with_cert.returncode == 0, with_cert.stderr
    assert {m["name"] for m in json.loads(with_cert.stdout)} == {m.name for m in etcd.members(lab.spec)}


# ---- Patroni ------------------------------------------------------------------------


def test_patroni_api_is_https_only(lab):
    node = lab.spec.postgres_nodes[0]
    plain = f"http://{node.ip}:{lab.spec.patroni.rest_api_port}/patroni"
    result = lab.run(["curl", "-sS", "--max-time", "3", plain], capture_output=True, text=True)
    assert result.returncode != 0, result.stdout
    assert lab.http_json(patroni.rest_api_url(lab.spec, node) + "/patroni")["state"] == "running"


def post_from(lab, node: str, url: str, body: dict, password: str | None = None) -> tuple[int, str]:
    """POST JSON to Patroni from inside ``node`` (a member: the REST API's allow-list admits it)."""
    argv = ["curl", "-sS", "-w", "\n%{http_code}", "--cacert", pki.CA_PATH, "-X", "POST", "-K", "-"]
    argv += ["-H", "Content-Type: application/json", "-d", json.dumps(body), url]
    config = f'user = "{RESTAPI_USER}:{password}"\n' if password is not None else ""
    result = lab.exec(node, argv, input=config, capture_output=True, text=True, timeout=60)
    text, _, code = result.stdout.rpartition("\n")
    return int(code or 0), text


def test_switchover_needs_the_password(lab):
    leader, candidate = leader_and_replica(lab)
    url = patroni.rest_api_url(lab.spec, lab.spec.node(leader)) + "/switchover"
    body = {"leader": leader, "candidate": candidate}
    # Not from a member: refused before the password is even looked at (restapi allow-list).
    status, text = post(lab, url, body, auth=(RESTAPI_USER, lab.secrets().restapi_password))
    assert status == 403, (status, text)
    status, text = post_from(lab, candidate, url, body)
    assert status == 401, (status, text)
    status, text = post_from(lab, candidate, url, body, "not-the-password")
    assert status == 401, (status, text)
    assert current_leader(lab) == leader  # nothing happened

    status, text = post_from(lab, candidate, url, body, lab.secrets().restapi_password)
    assert status == 200, (status, text)
    wait_until(lambda: current_leader(lab) == candidate, 60.0, interval=1.0, error="no switchover")
    lab.wait_ready()
    with connect(lab, lab.spec.haproxy.primary_port) as conn:
        assert str(conn.execute("select inet_server_addr()").fetchone()[0]) == str(
            lab.spec.node(candidate).ip
        )


# ---- HAProxy ------------------------------------------------------------------------


def stats_csv(lab, node, password: str | None) -> tuple[int, list[dict[str, str]]]:
    url = haproxy.stats_url(lab.spec, node) + haproxy.STATS_PATH + ";csv"
    request = urllib.request.Request(url)
    if password is not None:
        token = base64.b64encode(f"{HAPROXY_STATS_USER}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with (
            inside(lab.network.path),
            urllib.request.urlopen(request, timeout=5, context=lab.tls_context()) as r,
        ):
            text = r.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, []
    return 200, list(csv.DictReader(io.StringIO(text.removeprefix("# "))))


def servers_when_routed(lab, node, wanted: set[tuple[str, str]]) -> list[dict[str, str]] | None:
    """HAProxy's server rows on ``node`` once exactly ``wanted`` (backend, server) pairs are UP."""
    status, rows = stats_csv(lab, node, lab.secrets().haproxy_stats_password)
    assert status == 200
    servers = [
        r
        for r in rows
        if r["pxname"] in ("primary", "replicas") and r["svname"] not in ("FRONTEND", "BACKEND")
    ]
    up = {(r["pxname"], r["svname"]) for r in servers if r["status"] == "UP"}
    return servers if up == wanted else None


def test_haproxy_checks_patroni_over_verified_tls_and_routes(lab):
    leader = leader_and_replica(lab)[0]
    replicas = {n.name for n in lab.spec.postgres_nodes} - {leader}
    for node in lab.spec.postgres_nodes:
        assert stats_csv(lab, node, None)[0] == 401
        assert stats_csv(lab, node, "not-the-password")[0] == 401
        wanted = {("primary", leader)} | {("replicas", r) for r in replicas}
        servers = wait_until(
            functools.partial(servers_when_routed, lab, node, wanted),
            30.0,
            interval=1.0,
            error=f"{node.name}: HAProxy never routed as {sorted(wanted)}",
        )
        # Layer-7 answers (200 or 503) came back over HTTPS: the handshake and the CA check passed.
        # ("* " marks a check in progress.)
        statuses = {r["check_status"].removeprefix("* ") for r in servers}
        assert statuses <= {"L7OK", "L7STS"}, statuses


def test_haproxy_stats_is_https_only(lab):
    node = lab.spec.postgres_nodes[0]
    plain = f"http://{node.ip}:{lab.spec.haproxy.stats_port}{haproxy.HEALTH_PATH}"
    result = lab.run(["curl", "-sS", "--max-time", "3", plain], capture_output=True, text=True)
    assert result.returncode != 0, result.stdout  # HAProxy's TLS listener drops plain HTTP


# ---- files and listeners on every machine -----------------------------------------

CONFIG_DIRS = (
    "/etc/pgha",
    "/etc/patroni",
    "/etc/haproxy",
    "/etc/keepalived",
    "/etc/default",
    "/var/lib/postgresql",
    "/etc/pgbackrest.conf",
)


def test_no_secret_file_is_readable_by_others(lab):
    secrets, tls = lab.secrets(), lab.tls()
    needles = [*secrets.values(), *(k.splitlines()[1] for k in tls.private_keys()), "PRIVATE KEY"]
    for node in lab.spec.nodes:
        found = lab.exec(
            node.name,
            ["find", *CONFIG_DIRS, "-xdev", "-type", "f", "-perm", "-o+r"],
            capture_output=True,
            text=True,
        )
        readable = found.stdout.split()
        assert "/etc/pgha/tls/ca.crt" in readable  # the one public TLS file
        for path in readable:
            content = lab.exec(node.name, ["cat", path], capture_output=True, text=True).stdout
            leaked = [n[:12] for n in needles if n in content]
            assert not leaked, f"{node.name}:{path} is world-readable and holds {leaked}"
        for rendered in node_files(lab.spec, node, secrets, tls):
            if rendered.secret:
                stat = lab.exec(
                    node.name, ["stat", "-c", "%a %U %G", rendered.path], capture_output=True, text=True
                )
                mode, owner, group = stat.stdout.split()
                assert (int(mode, 8), owner, group) == (rendered.mode, rendered.owner, rendered.group)
                assert int(mode, 8) & 0o007 == 0, rendered.path


def listeners(lab, node) -> list[tuple[str, int, str]]:
    """(address, port, process) of every listening TCP socket inside the machine."""
    out = lab.exec(node.name, ["ss", "-tlnpH"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        fields = line.split()
        address, _, port = fields[3].rpartition(":")
        process = fields[5].split('"')[1] if len(fields) > 5 else "?"
        found.append((address.strip("[]"), int(port), process))
    return found


def test_every_listener_is_intended_and_protected(lab):
    names = ports(lab)
    seen: dict[str, set[int]] = {}
    for node in lab.spec.nodes:
        for address, port, process in listeners(lab, node):
            role = names.get(port)
            assert role is not None, f"{node.name}: unexpected listener {address}:{port} ({process})"
            assert process == LISTENERS[role][0], (node.name, address, port, process)
            if role == "ssh":
                assert address in ("0.0.0.0", "::", "*"), (node.name, address, port)
            elif role in ("primary", "replicas", "pooler"):
                assert address in (str(node.ip), str(lab.spec.vip)), (node.name, address, port)
            elif role in LOOPBACK_ONLY:
                assert address == "127.0.0.1", (node.name, address, port, process)
            else:
                # The private IP only: no wildcard, no loopback listener.
                assert address == str(node.ip), (node.name, address, port, process)
            seen.setdefault(node.name, set()).add(port)

        ip = str(node.ip)
        for port in seen[node.name]:
            role = names[port]
            if role in LOOPBACK_ONLY:
                continue  # not reachable from the network: nothing to check from here
            if role == "ssh":
                with inside(lab.network.path), socket.create_connection((ip, port), timeout=5) as s:
                    assert s.recv(64).startswith(b"SSH-2.0-")
            elif role in ("primary", "replicas", "pooler"):
                # Whichever node is behind it answers: check the chain, and that it names the VIP.
                der = tls_peer_certificate(lab, ip, port, postgres=True)
                assert ip_address(lab.spec.vip) in sans(der)
            else:
                speaks_postgres = role in ("postgres", "pgbouncer")  # TLS after an SSLRequest
                der = tls_peer_certificate(lab, ip, port, postgres=speaks_postgres, hostname=ip)
                assert pki.serial_number(pem(der)) == expected_serial(lab.tls(), node.name, role)
    members = {m.name for m in etcd.members(lab.spec)}
    for node in lab.spec.nodes:
        expected = {lab.spec.ssh.port}
        if node.name in members:
            expected |= {lab.spec.etcd.client_port, lab.spec.etcd.peer_port}
        if lab.spec.monitoring:
            expected |= {p for p, r in names.items() if r in ("monitoring", "node-exporter")}
        if node.runs_postgres:
            expected |= {p for p, r in names.items() if r not in ("ssh", "etcd-client", "etcd-peer")}
        if node.role == "repository":
            expected |= {p for p, r in names.items() if r == "pgbackrest"}
        assert seen[node.name] == expected, node.name


def pem(der: bytes) -> str:
    return ssl.DER_cert_to_PEM_cert(der)


def sans(der: bytes) -> list:
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.IPAddress
    )


# ---- rotation -----------------------------------------------------------------------


@dataclasses.dataclass
class Traffic:
    """New connections through the VIP, one write each, counting every failure."""

    lab: object
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)
    done: int = 0
    failures: list[str] = dataclasses.field(default_factory=list)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with connect(self.lab, self.lab.spec.haproxy.primary_port) as conn:
                    conn.execute("create table if not exists rotation_traffic (at timestamptz default now())")
                    conn.execute("insert into rotation_traffic default values")
                self.done += 1
            except psycopg.Error as error:
                self.failures.append(str(error).strip())
            time.sleep(0.05)


def expected_serial(tls, name: str, role: str) -> int:
    """etcd serves with the node's etcd certificate, every other service with its node certificate."""
    pairs = tls.etcd if role in ("etcd-client", "etcd-peer") else tls.nodes
    return pki.serial_number(pairs[name].certificate)


def served_serials(lab) -> dict[tuple[str, str], int]:
    """The serial of the certificate each TLS service presents right now."""
    serials = {}
    members = etcd.members(lab.spec)
    for node in lab.spec.nodes:
        ip = str(node.ip)
        services = {}
        if node in members:
            services |= {"etcd-client": lab.spec.etcd.client_port, "etcd-peer": lab.spec.etcd.peer_port}
        if lab.spec.backup is not None:
            services["pgbackrest"] = lab.spec.backup.tls_port
        if node.runs_postgres:
            services |= {
                "restapi": lab.spec.patroni.rest_api_port,
                "stats": lab.spec.haproxy.stats_port,
                "postgres": lab.spec.postgres.port,
            }
            if lab.spec.pooler is not None:
                services["pgbouncer"] = lab.spec.pooler.listen_port
        for role, port in services.items():
            der = tls_peer_certificate(lab, ip, port, postgres=role in ("postgres", "pgbouncer"), hostname=ip)
            serials[(node.name, role)] = pki.serial_number(pem(der))
    return serials


def service_starts(lab) -> dict[str, str]:
    """When etcd, Patroni and PostgreSQL last started on each machine: a restart changes it."""
    starts = {}
    for node in lab.spec.nodes:
        units = ["etcd", "patroni", "pgbackrest"] if node.runs_postgres else ["etcd", "pgbackrest"]
        out = lab.exec(
            node.name,
            ["systemctl", "show", "-p", "ExecMainStartTimestampMonotonic", *units],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        starts[node.name] = out
    for node in lab.spec.postgres_nodes:
        with connect(lab, lab.spec.postgres.port, host=str(node.ip)) as conn:
            starts[f"{node.name}/postgres"] = str(
                conn.execute("select pg_postmaster_start_time()").fetchone()[0]
            )
    return starts


def test_certificate_rotation_rolls_out_without_downtime(lab):
    """The documented procedure: bump pgha:tls.rotation, deploy again. No restart, no failed write."""
    # The lab as its stack file says first: an earlier test may leave a change unapplied
    # (CI saw the databases step run here), and only the rotation's own steps may change below.
    lab.up()
    serials_before, starts_before = served_serials(lab), service_starts(lab)
    lab.spec = dataclasses.replace(
        lab.spec, tls=dataclasses.replace(lab.spec.tls, rotation=lab.spec.tls.rotation + 1)
    )

    traffic = Traffic(lab)
    writer = threading.Thread(target=traffic.run, daemon=True)
    writer.start()
    time.sleep(1)
    started = time.monotonic()
    _, results = lab.up()
    rollout = time.monotonic() - started
    time.sleep(2)
    traffic.stop.set()
    writer.join(30)

    assert traffic.failures == [], traffic.failures[:5]
    assert traffic.done > 20, traffic.done
    changed = sorted({r.step.name for r in results if r.changed})
    # The services that hold a certificate; the monitoring step installs HAProxy's key on a VM
    # that runs no PostgreSQL (its metrics port); verify runs again after any other change.
    expected = {"etcd", "haproxy", "patroni", "verify"}
    expected |= {"backup"} if lab.spec.backup else set()
    expected |= {"monitoring"} if lab.spec.monitoring else set()
    # PgBouncer's own copy of the key (pgha:pooler), read again on reload.
    expected |= {"pooler"} if lab.spec.pooler else set()
    assert changed == sorted(expected), changed
    # Reloads are signals (SIGHUP to Patroni, HAProxy's reload): give the
    # services a moment to pick the new files up, under a loaded CI machine.
    serials_after = served_serials(lab)

    def all_rotated() -> bool:
        serials_after.update(served_serials(lab))
        return all(serials_after[k] != serials_before[k] for k in serials_after)

    wait_until(all_rotated, 30.0, interval=1.0)
    tls = lab.tls()
    for (name, role), serial in serials_after.items():
        assert serial != serials_before[(name, role)], (name, role)
        assert serial == expected_serial(tls, name, role), (name, role)
    assert service_starts(lab) == starts_before
    lab.wait_ready()
    print(f"rotation rolled out in {rollout:.1f} s with {traffic.done} writes and no failure")


# ---- internal secrets (pgha:secretRotation) ---------------------------------------------------

# A rolling change may hold writes this long at most, scaled for a loaded machine.
ROTATION_MAX_GAP_S = 5.0
# Each internal database role and the secret that is its password.
INTERNAL_ROLES = {
    "postgres": "superuser_password",
    "replicator": "replication_password",
    "rewind_user": "rewind_password",
    "pgha_verify": "verify_password",
    "pgha_pooler": "pooler_password",
}


def stored_verifiers(lab) -> dict[str, str]:
    """pg_authid's verifier of each internal role, read on the primary's socket."""
    names = ",".join(f"'{r}'" for r in INTERNAL_ROLES)
    rows = primary_sql(
        lab, f"select rolname || ' ' || coalesce(rolpassword, '') from pg_authid where rolname in ({names})"
    )
    return dict(line.split(" ", 1) for line in rows.splitlines())


def replication_connections(lab) -> dict[str, str]:
    """Each streaming replica's walsender on the primary: its name -> when it connected."""
    rows = primary_sql(
        lab,
        "select application_name || ' ' || backend_start from pg_stat_replication where state = 'streaming'",
    )
    return dict(line.split(" ", 1) for line in rows.splitlines())


def rotated_spec(lab):
    """The lab's spec with every rotatable secret's generation one higher (not the backup cipher's)."""
    rotation = lab.spec.secret_rotation
    bumped = {
        f.name: getattr(rotation, f.name) + 1
        for f in dataclasses.fields(rotation)
        if f.name != "backup_cipher"
    }
    return dataclasses.replace(lab.spec, secret_rotation=dataclasses.replace(rotation, **bumped))


def test_internal_secrets_rotate_under_the_writer(lab):
    """Every internal secret rotated in one change while the ledger writer runs: no acknowledged write
    lost, writes never held longer than a rolling change may, no restart, the streaming replicas keep
    their connections; then the new passwords work (a replica made to reconnect streams again) and the
    old ones are refused (REST API, stats page, the verifiers PostgreSQL checks)."""
    from lab.faults import harness
    from lab.wait import timeout_factor
    from pgha.rolling import pgha_rolling
    from pgha.vmlib.scram import scram_matches

    old = lab.secrets()
    starts_before = service_starts(lab)
    spec = rotated_spec(lab)
    results: list = []
    with harness.scenario(lab, "internal_secret_rotation") as run:
        streams_before = replication_connections(lab)
        since = run.inject(lambda: results.extend(lab.apply(spec)[1]))
        apply_s = time.monotonic() - since
        run.writer.wait_acks(20)
    result = run.result()
    print(json.dumps({k: v for k, v in result.items() if k != "patroni_logs"}))
    gap = result["max_gap_s"]
    print(f"secrets rotated in {apply_s:.1f} s; longest time without an acknowledged write: {gap} s")
    assert result["lost"] == 0 and not result["split_brain"], result
    assert result["new_primary"] == result["old_primary"], result
    assert result["max_gap_s"] <= ROTATION_MAX_GAP_S * timeout_factor(), result
    new = lab.secrets()
    for name in ROTATION_FIELDS:
        assert getattr(new, name) != getattr(old, name), name
    assert new.backup_cipher_pass == old.backup_cipher_pass

    # Only the steps holding a rotated secret changed files (verify runs after any change).
    changed = {r.step.name for r in results if r.changed}
    expected = {"system", "patroni", "haproxy", "databases", "verify"}
    if lab.spec.pooler:
        # PgBouncer's auth_query login; with monitoring its exporter logs in as that role too.
        expected |= {"pooler", "monitoring"} if lab.spec.monitoring else {"pooler"}
    assert changed == expected, sorted(changed)
    for step_result in results:
        output = step_result.stdout + step_result.stderr
        for secret in (*old.values(), *new.values()):
            assert secret not in output, f"{step_result.step.name} on {step_result.step.node}"
    # A marker key's file: the new key signs, the previous one still verifies.
    ring = lab.exec(
        leader_and_replica(lab)[0], ["cat", pgha_rolling.MARKER_KEY_PATH], capture_output=True, text=True
    ).stdout.split()
    assert ring == [new.rolling_marker_key, old.rolling_marker_key]
    # Reloads, no restart; the walsenders that streamed before stream on the same connections.
    assert service_starts(lab) == starts_before
    streams_after = replication_connections(lab)
    assert streams_after == streams_before, (streams_before, streams_after)

    # PostgreSQL checks each login against these verifiers: the new password matches, the old does not.
    for role, verifier in stored_verifiers(lab).items():
        field = INTERNAL_ROLES[role]
        assert scram_matches(verifier, getattr(new, field)), role
        assert not scram_matches(verifier, getattr(old, field)), role
    # The next connection of a replica uses the new password: end one walsender, it streams again.
    leader = current_leader(lab)
    replica = sorted(streams_after)[0]
    primary_sql(
        lab, f"select pg_terminate_backend(pid) from pg_stat_replication where application_name = '{replica}'"
    )
    wait_until(
        lambda: replica in replication_connections(lab)
        and replication_connections(lab)[replica] != streams_after[replica],
        60.0,
        interval=1.0,
        error=f"{replica} did not stream again with the new replication password",
    )
    # Patroni's REST API: the old password is refused (401), the new one admitted (POST /reload, harmless).
    node = lab.spec.node(leader)
    url = patroni.rest_api_url(lab.spec, node) + "/reload"
    assert post_from(lab, leader, url, {}, old.restapi_password)[0] == 401
    assert post_from(lab, leader, url, {}, new.restapi_password)[0] in (200, 202)
    for member in lab.spec.postgres_nodes:
        assert stats_csv(lab, member, old.haproxy_stats_password)[0] == 401, member.name
        assert stats_csv(lab, member, new.haproxy_stats_password)[0] == 200, member.name
    lab.wait_ready()
    print(f"{replica} reconnected with the new replication password; old passwords refused")


ROTATION_FIELDS = (
    "superuser_password",
    "replication_password",
    "rewind_password",
    "restapi_password",
    "haproxy_stats_password",
    "verify_password",
    "pooler_password",
    "maintenance_marker_key",
    "rolling_marker_key",
)
