"""Attacks from the second security review, run against a live lab.

Each function performs one attack the way an intruder on a VM would (inside
the machine, with what that machine holds) and reports what happened, so the
tests can assert that it fails now, and the same code run against an older
tree shows that it used to succeed.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from pgha import etcd, patroni, pki

from ..cluster import Lab

# Runs inside a machine: one etcd v2 request with the given client certificate.
_ETCD_REQUEST = r"""
import json, ssl, sys, urllib.parse, urllib.request
url, pem, ca, method, body = sys.argv[1:6]
context = ssl.create_default_context(cafile=ca)
context.load_cert_chain(pem)
data = urllib.parse.urlencode({"value": body}).encode() if method == "PUT" else None
request = urllib.request.Request(url, data=data, method=method)
try:
    with urllib.request.urlopen(request, timeout=10, context=context) as answer:
        print(json.dumps({"status": answer.status, "body": answer.read().decode()}))
except urllib.error.HTTPError as error:
    print(json.dumps({"status": error.code, "body": error.read().decode()}))
except Exception as error:
    print(json.dumps({"status": None, "body": f"{type(error).__name__}: {error}"}))
"""


def config_key_url(lab: Lab) -> str:
    """Patroni's dynamic configuration in etcd's v2 keyspace (namespace /service/, the scope)."""
    member = etcd.members(lab.spec)[0]
    return f"{etcd.client_url(lab.spec, member)}/v2/keys/service/{lab.spec.postgres.scope}/config"


def etcd_request(
    lab: Lab, node: str, pem_path: str, method: str = "GET", body: str = ""
) -> tuple[int | None, str]:
    """(HTTP status or None when the TLS handshake failed, body) of a request made on ``node``."""
    argv = ["python3", "-c", _ETCD_REQUEST, config_key_url(lab), pem_path, pki.CA_PATH, method, body]
    result = lab.exec(node, argv, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        return None, result.stderr
    answer = json.loads(result.stdout)
    return answer["status"], answer["body"]


def dcs_write_archive_command(lab: Lab, node: str, pem_path: str, command: str) -> tuple[int | None, str]:
    """Read Patroni's dynamic config with ``node``'s certificate and write it back with ``command``."""
    status, body = etcd_request(lab, node, pem_path)
    if status != 200:
        return status, body
    document: dict[str, Any] = json.loads(json.loads(body)["node"]["value"])
    document.setdefault("postgresql", {}).setdefault("parameters", {})["archive_command"] = command
    return etcd_request(lab, node, pem_path, "PUT", json.dumps(document))


def postgres_setting(lab: Lab, node: str, name: str) -> str:
    """What the running PostgreSQL on ``node`` uses, read as postgres over the local socket."""
    query = ["psql", "-h", patroni.SOCKET_DIR, "-p", str(lab.spec.postgres.port), "-XAtc", f"show {name}"]
    result = lab.exec(
        node, ["runuser", "-u", "postgres", "--", *query], capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def as_postgres(lab: Lab, node: str, *argv: str) -> subprocess.CompletedProcess:
    """A shell as the postgres OS user, as ``COPY ... TO PROGRAM`` would give one."""
    return lab.exec(node, ["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True)


def owner(lab: Lab, node: str, path: str) -> str:
    """user:group of ``path`` itself (a symlink is not followed)."""
    result = lab.exec(node, ["stat", "-c", "%U:%G", path], capture_output=True, text=True, check=True)
    return result.stdout.strip()
