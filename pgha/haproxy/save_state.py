#!/usr/bin/python3
"""Managed by pgha: save HAProxy's server states just before a reload.

The new workers start from them (load-server-state-from-file) instead of
taking every server for UP until its first check, which would send writes
to a replica for a moment, and cut its sessions when the check then fails.
Run by systemd as an ``ExecReload`` of haproxy.service; settings
(``admin_socket``, ``state_file``) in ``SETTINGS_PATH``. Installed as one file
on the VM, standard library only (see ``pgha/vmprograms.py``).
"""

from __future__ import annotations

import json
import os
import socket
import sys

INSTALL_PATH = "/usr/local/lib/pgha/haproxy-save-state"
SETTINGS_PATH = "/etc/pgha/haproxy-save-state.json"


def server_states(admin_socket: str) -> bytes:
    """``show servers state`` from HAProxy's admin socket; OSError when it does not answer."""
    with socket.socket(socket.AF_UNIX) as admin:
        admin.settimeout(5)
        admin.connect(admin_socket)
        admin.sendall(b"show servers state\n")
        chunks = []
        while chunk := admin.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def save(states: bytes, state_file: str) -> None:
    """Written next to the target and renamed: HAProxy never reads half a file."""
    temporary = state_file + ".tmp"
    with open(temporary, "wb") as handle:
        handle.write(states)
    os.replace(temporary, state_file)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    with open(args[0] if args else SETTINGS_PATH) as handle:
        settings = json.load(handle)
    try:
        states = server_states(settings["admin_socket"])
    except OSError as error:
        # Not running or not answering: the reload still happens, from scratch.
        print(f"pgha: HAProxy server states not saved: {error}", file=sys.stderr)
        return 0
    save(states, settings["state_file"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
