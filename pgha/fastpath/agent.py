#!/usr/bin/python3
"""Managed by pgha: while this VM's Patroni is the primary, the kernel forwards VIP:5432 to it.

    pgha-fastpath    (systemd) follow the local Patroni, load the nftables rules to match

HAProxy relays every byte of every query, which costs tens of microseconds per
round trip (docs/one-hop.md). With one hop the VIP is on the primary's own VM,
so the kernel can hand a client's connection to the local PostgreSQL itself: a
DNAT rule in prerouting, loaded only while Patroni answers 200 on /primary.
Without the rule, VIP:5432 is HAProxy's, as before.

The agent fails closed: no answer from Patroni, an error, a stop or a crash
(systemd runs ``off`` after the process) leaves the rule out, and clients go
through HAProxy. Both rule sets are files the pgha step renders; this program
only chooses which one to load. Settings come from the JSON file next to it.
Only the Python standard library is used.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

INSTALL_PATH = "/usr/local/lib/pgha/fastpath"
SETTINGS_PATH = "/etc/pgha/fastpath.json"


def load_settings(path: str = SETTINGS_PATH) -> dict[str, Any]:
    with open(path) as handle:
        return dict(json.load(handle))


def is_primary(url: str, context: ssl.SSLContext, timeout: float) -> bool:
    """Patroni's /primary: 200 only while this node holds the leader key and runs as primary."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False  # 503 (HTTPError is a URLError), refused, timeout: not primary


def load_rules(path: str) -> bool:
    """Load one of the two rendered rule sets; each replaces the table as a whole."""
    result = subprocess.run(["nft", "-f", path], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        print(f"nft -f {path} failed: {result.stderr.strip()}", file=sys.stderr, flush=True)
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


class Stop(Exception):
    """SIGTERM: leave the loop; systemd's ExecStopPost removes the rule."""


def _stop(_signum: int, _frame: object) -> None:
    raise Stop


def follow(settings: dict[str, Any]) -> int:
    context = ssl.create_default_context(cafile=settings["ca"])
    poll_s = float(settings["poll_s"])
    forwarding: bool | None = None  # unknown: the first answer decides, whatever is loaded
    signal.signal(signal.SIGTERM, _stop)
    notify("READY=1")
    try:
        while True:
            wanted = is_primary(settings["primary_url"], context, timeout=max(poll_s, 0.5))
            if wanted != forwarding:
                if load_rules(settings["on"] if wanted else settings["off"]):
                    forwarding = wanted
                    print(
                        "forwarding VIP to the local primary" if wanted else "VIP left to HAProxy", flush=True
                    )
                else:
                    forwarding = None  # try again next time
                    if wanted:
                        load_rules(settings["off"])
            notify("WATCHDOG=1")
            time.sleep(poll_s)
    except Stop:
        return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    settings = load_settings(args[0] if args else SETTINGS_PATH)
    return follow(settings)


if __name__ == "__main__":
    sys.exit(main())
