#!/usr/bin/python3
"""Managed by pgha: Patroni's calls to a peer that stopped answering fail at once, not after 2 s.

    pgha-leader-race    (systemd) probe each peer's Patroni; refuse Patroni's calls to a silent one

When the leader key expires, each synchronous standby asks every member of the
last known cluster, the former leader included, for its WAL position before it
takes the lock (Patroni's ``Ha.fetch_node_status``, ``timeout=2, retries=0``,
hard-coded). The former leader is usually the member that died: the question
then costs the full 2 s, every failover, before the new leader may promote.

This agent asks each peer's ``/liveness`` the same question with the same 2 s
limit, once a second. A peer that has not answered for ``unanswered_s`` goes
into an nftables set, and a rule refuses connections from Patroni's user to
that set's REST port with a TCP reset: Patroni's request fails in
milliseconds, as it would have failed after 2 s. The first answer takes the
peer out again. Nothing else changes: other users (HAProxy, the lab, root) and
other ports are untouched, and Patroni decides as before on what it hears.

It fails open: without the agent (stopped, crashed, hung: systemd removes the
table after it) Patroni waits its 2 s, as it always did. Settings come from
the JSON file next to it; only the standard library and pgha's VM library are used.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

INSTALL_PATH = "/usr/local/lib/pgha/leader-race"
SETTINGS_PATH = "/etc/pgha/leader-race.json"
LIBRARY_ROOT = "/usr/local/lib/pgha"

sys.path.append(LIBRARY_ROOT)
from pgha.vmlib import patroni_api  # noqa: E402


def load_settings(path: str = SETTINGS_PATH) -> dict[str, Any]:
    with open(path) as handle:
        return dict(json.load(handle))


def answers(api: patroni_api.PatroniApi, url: str, timeout: float) -> bool:
    """Whether the peer's Patroni answered within ``timeout``, whatever it said."""
    try:
        api.call(url, timeout=timeout)
    except (OSError, ValueError):
        return False
    return True


def set_element(table: str, set_name: str, ip: str, present: bool) -> bool:
    """Add or delete one address of the set; False (and a log line) if nft refused."""
    verb = "add" if present else "delete"
    command = ["nft", verb, "element", "ip", table, set_name, "{", ip, "}"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        print(f"nft {verb} element {ip} failed: {result.stderr.strip()}", file=sys.stderr, flush=True)
    return result.returncode == 0


def notify(message: str) -> None:
    """sd_notify without libsystemd: one datagram to $NOTIFY_SOCKET (READY=1, WATCHDOG=1)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(message.encode(), address)


class Peer:
    """One peer's probe, in its own thread: a silent peer must not delay the others."""

    def __init__(self, name: str, ip: str, url: str) -> None:
        self.name = name
        self.ip = ip
        self.url = url
        self.last_answer = time.monotonic()  # a fresh start trusts every peer
        self.refused = False

    def probe_forever(self, api: patroni_api.PatroniApi, timeout: float, interval: float) -> None:
        while True:
            started = time.monotonic()
            if answers(api, self.url, timeout):
                self.last_answer = time.monotonic()
            time.sleep(max(0.0, interval - (time.monotonic() - started)))


class Stop(Exception):
    """SIGTERM: leave the loop; systemd's ExecStopPost removes the table."""


def _stop(_signum: int, _frame: object) -> None:
    raise Stop


def decide(peers: list[Peer], now: float, unanswered_s: float) -> list[tuple[Peer, bool]]:
    """The peers whose state must change: (peer, refuse) for each."""
    changes = []
    for peer in peers:
        silent = now - peer.last_answer >= unanswered_s
        if silent != peer.refused:
            changes.append((peer, silent))
    return changes


def watch(settings: dict[str, Any]) -> int:
    api = patroni_api.PatroniApi(settings["ca"], patroni_config="")
    peers = [Peer(p["name"], p["ip"], p["url"]) for p in settings["peers"]]
    timeout, interval = float(settings["probe_timeout_s"]), float(settings["interval_s"])
    for peer in peers:
        threading.Thread(
            target=peer.probe_forever, args=(api, timeout, interval), name=f"probe-{peer.name}", daemon=True
        ).start()
    signal.signal(signal.SIGTERM, _stop)
    notify("READY=1")
    try:
        while True:
            for peer, refuse in decide(peers, time.monotonic(), float(settings["unanswered_s"])):
                if set_element(settings["table"], settings["set"], peer.ip, refuse):
                    peer.refused = refuse
                    silent = time.monotonic() - peer.last_answer
                    print(
                        f"{peer.name} silent for {silent:.1f} s: Patroni's calls to it are refused at once"
                        if refuse
                        else f"{peer.name} answers again: Patroni's calls to it go through",
                        flush=True,
                    )
            notify("WATCHDOG=1")
            time.sleep(interval / 4)
    except Stop:
        return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    return watch(load_settings(args[0] if args else SETTINGS_PATH))


if __name__ == "__main__":
    sys.exit(main())
