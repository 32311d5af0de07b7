#!/usr/bin/python3
"""Managed by pgha: what a client of the cluster would see, checked from one VM.

Installed on the VM by the ``verify`` step as this very file (standard library
and PyYAML only, see ``pgha/vmprograms.py``), settings in ``SETTINGS_PATH``,
and run as ``verify [SETTINGS.json]``. It passes when,
at one moment:

- Patroni's view has exactly one running leader and the configured number of
  synchronous standbys;
- exactly one VM answers ARP for the VIP (none: clients reach nothing; two:
  split brain);
- a row written through VIP:primary_port lands on a primary, and reads back
  through VIP:replica_port from a standby;
- with ``pgha:pooler``, a row written through VIP:pooler_port lands on the
  primary too (HAProxy, PgBouncer, its auth_query and its TLS to PostgreSQL).

It retries until ``timeout_s`` (a switchover made by an earlier step may still
be settling), then exits 1 listing every check that failed. It logs in as
``pgha_verify`` (not a superuser: the superuser has no network login) to its
own database, which it owns, so it can create its table there. The password
is in the settings file, root 0600; it travels to psql in the environment,
never on a command line.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import ssl
import struct
import subprocess
import sys
import time
import urllib.request
from typing import Any

INSTALL_PATH = "/usr/local/lib/pgha/verify"
SETTINGS_PATH = "/etc/pgha/verify.json"
ETH_P_ARP = 0x0806
ARP_REQUEST, ARP_REPLY = 1, 2
BROADCAST = b"\xff" * 6


def log(message: str) -> None:
    print(f"[pgha verify] {message}", file=sys.stderr, flush=True)


def patroni_problems(settings: dict[str, Any]) -> list[str]:
    """One running leader; as many synchronous standbys as configured."""
    context = ssl.create_default_context(cafile=settings["ca"])
    try:
        with urllib.request.urlopen(settings["cluster_url"], timeout=5, context=context) as answer:
            members = json.load(answer).get("members", [])
    except (OSError, ValueError) as error:
        return [f"Patroni's REST API {settings['cluster_url']} did not answer: {error}"]
    problems = []
    leaders = [m["name"] for m in members if m.get("role") in ("leader", "standby_leader")]
    running = [m["name"] for m in members if m.get("role") == "leader" and m.get("state") == "running"]
    if len(leaders) != 1 or len(running) != 1:
        problems.append(f"expected one running leader, Patroni reports leaders {leaders or 'none'}")
    wanted = settings["sync_standbys"]
    syncs = sorted(m["name"] for m in members if m.get("role") in ("sync_standby", "quorum_standby"))
    if wanted and len(syncs) != wanted:
        problems.append(
            f"expected {wanted} synchronous standby(s), Patroni reports {len(syncs)}: {syncs or 'none'}"
        )
    absent = sorted(set(settings["members"]) - {m["name"] for m in members})
    if absent:
        problems.append(f"members missing from Patroni's view: {absent}")
    return problems


def _arp_frame(own_mac: bytes, own_ip: str, target_ip: str) -> bytes:
    ethernet = BROADCAST + own_mac + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, ARP_REQUEST)
    arp += own_mac + socket.inet_aton(own_ip) + b"\x00" * 6 + socket.inet_aton(target_ip)
    return ethernet + arp


def vip_holders(settings: dict[str, Any], listen_s: float = 2.0) -> set[str]:
    """The MACs that hold the VIP: this VM's own if the address is local, plus ARP repliers."""
    interface, vip = settings["interface"], settings["vip"]
    holders: set[str] = set()
    with open(f"/sys/class/net/{interface}/address") as handle:
        own_mac_text = handle.read().strip()
    own = subprocess.run(
        ["ip", "-o", "-4", "addr", "show", "dev", interface], capture_output=True, text=True, check=True
    )
    if any(f" {vip}/" in line for line in own.stdout.splitlines()):
        holders.add(own_mac_text)
    own_mac = bytes.fromhex(own_mac_text.replace(":", ""))
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as sock:
        sock.bind((interface, 0))
        sock.settimeout(0.2)
        frame = _arp_frame(own_mac, settings["node_ip"], vip)
        deadline = time.monotonic() + listen_s
        next_send = 0.0
        while time.monotonic() < deadline:
            if time.monotonic() >= next_send:
                sock.send(frame)
                next_send = time.monotonic() + listen_s / 3
            try:
                packet = sock.recv(128)
            except TimeoutError:
                continue
            if len(packet) < 42 or struct.unpack("!H", packet[12:14])[0] != ETH_P_ARP:
                continue
            operation = struct.unpack("!H", packet[20:22])[0]
            sender_mac, sender_ip = packet[22:28], socket.inet_ntoa(packet[28:32])
            if operation == ARP_REPLY and sender_ip == vip and sender_mac != own_mac:
                holders.add(":".join(f"{b:02x}" for b in sender_mac))
    return holders


def vip_problems(settings: dict[str, Any]) -> list[str]:
    try:
        holders = vip_holders(settings)
    except OSError as error:
        return [f"could not look for the VIP {settings['vip']} on {settings['interface']}: {error}"]
    if len(holders) == 1:
        return []
    if not holders:
        return [f"no VM holds the VIP {settings['vip']} (keepalived down, or every HAProxy check failing)"]
    named = [settings["macs"].get(mac, mac) for mac in sorted(holders)]
    return [f"{len(holders)} VMs answer for the VIP {settings['vip']}: {named} (split brain)"]


def psql(settings: dict[str, Any], port: int, sql: str, password: str) -> tuple[bool, str]:
    """Run SQL as a client would: TLS to the VIP, the server's certificate checked."""
    conninfo = (
        f"host={settings['vip']} port={port} dbname={settings['database']} user={settings['user']} "
        f"sslmode=verify-full sslrootcert={settings['ca']} connect_timeout=5"
    )
    env = {**os.environ, "PGPASSWORD": password, "PGAPPNAME": "pgha-verify"}
    try:
        done = subprocess.run(
            ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", conninfo, "-c", sql],
            capture_output=True,
            text=True,
            env=env,
            timeout=20,
        )
    except subprocess.TimeoutExpired:
        return False, f"no answer within 20 s on {settings['vip']}:{port}"
    if done.returncode != 0:
        # libpq splits one error over lines ("connection ... failed: No route to host", "Is the server ...").
        message = " ".join(line.strip() for line in done.stderr.splitlines() if line.strip())
        return False, (message or f"psql exited with {done.returncode}")[:400]
    return True, done.stdout.strip()


def write_read_problems(settings: dict[str, Any]) -> list[str]:
    """A row written on the primary port must come back from a standby on the replica port."""
    token = secrets.token_hex(8)
    table = settings["table"]
    password = settings["password"]
    write = (
        f"CREATE TABLE IF NOT EXISTS {table} (id int PRIMARY KEY, token text NOT NULL, "
        "written_at timestamptz NOT NULL DEFAULT now()); "
        f"INSERT INTO {table} (id, token) VALUES (1, '{token}') "
        "ON CONFLICT (id) DO UPDATE SET token = EXCLUDED.token, written_at = now(); "
        "SELECT pg_is_in_recovery();"
    )
    ok, out = psql(settings, settings["primary_port"], write, password)
    if not ok:
        return [f"write through {settings['vip']}:{settings['primary_port']} failed: {out}"]
    if out.splitlines()[-1:] != ["f"]:
        return [f"{settings['vip']}:{settings['primary_port']} reached a standby, not the primary"]
    read = f"SELECT pg_is_in_recovery(), (SELECT token FROM {table} WHERE id = 1);"
    last = ""
    for _ in range(10):  # replay on the standby may lag the commit by a moment
        ok, out = psql(settings, settings["replica_port"], read, password)
        if ok and out == f"t|{token}":
            return []
        last = out if not ok else f"answered {out!r}, wanted a standby with the row just written"
        time.sleep(0.5)
    return [f"read back through {settings['vip']}:{settings['replica_port']} failed: {last}"]


def pooler_problems(settings: dict[str, Any]) -> list[str]:
    """A row written through the pooler port must land on the primary (no pooler: nothing to check).

    Runs after write_read_problems, whose write made the table.
    """
    port = settings.get("pooler_port")
    if not port:
        return []
    token = secrets.token_hex(8)
    write = (
        f"INSERT INTO {settings['table']} (id, token) VALUES (2, '{token}') "
        "ON CONFLICT (id) DO UPDATE SET token = EXCLUDED.token, written_at = now(); "
        "SELECT pg_is_in_recovery();"
    )
    ok, out = psql(settings, port, write, settings["password"])
    if not ok:
        return [f"write through the pooler, {settings['vip']}:{port}, failed: {out}"]
    if out.splitlines()[-1:] != ["f"]:
        return [f"the pooler, {settings['vip']}:{port}, reached a standby, not the primary"]
    return []


def problems(settings: dict[str, Any]) -> list[str]:
    found = patroni_problems(settings) + vip_problems(settings)
    if not found:
        found = write_read_problems(settings)
    if not found:
        found = pooler_problems(settings)
    return found


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    with open(args[0] if args else SETTINGS_PATH) as handle:
        settings = json.load(handle)
    deadline = time.monotonic() + settings["timeout_s"]
    attempt = 0
    while True:
        attempt += 1
        found = problems(settings)
        if not found:
            pooled = f", a write on :{settings['pooler_port']}" if settings.get("pooler_port") else ""
            log(
                f"ok (attempt {attempt}): one leader, {settings['sync_standbys']} synchronous standby(s), "
                f"one VIP holder, a write on :{settings['primary_port']} read back on "
                f":{settings['replica_port']}{pooled}"
            )
            return 0
        if time.monotonic() >= deadline:
            log(f"the cluster does not serve clients after {settings['timeout_s']} s:")
            for problem in found:
                log(f"  - {problem}")
            return 1
        time.sleep(2)


if __name__ == "__main__":
    sys.exit(main())
