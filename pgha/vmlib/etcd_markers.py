"""Markers in etcd's v2 keyspace that root's agents act on: pgha-rolling's and pgha-host-maintenance's.

etcd admits every client certificate that names etcd's client identity, and
nothing there says who may write which key: Patroni's certificate, which the
postgres OS user reads, writes these keys as well as root's tools. So a
marker carries an HMAC-SHA256 over its key and value, made with a key only
root holds on the VMs that take part (a file of mode 0600 whose path each
program names: pgha-host-maintenance's on the database VMs, pgha-rolling's
there and on the witnesses). A reader keeps a marker only if its signature
checks and its value fits the schema its caller gives; anything else (no
signature, a wrong one, a value of the wrong shape) is logged once and
skipped, never raised: a stray key must neither steer nor crash-loop an agent.

The key file is a ring, one key per line: the first signs, every line
verifies. A rotation (``pgha:secretRotation``) puts the new key first and
keeps the previous one on the second line, so a marker signed just before the
rotation is still acted on. The file is read again whenever it changes on
disk: a long-running agent signs with the new key from its next marker on.

Standard library only: shipped to the VMs as it is (``pgha/vmprograms.py``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from typing import Any

# The largest marker value read: agents' markers are a few dozen bytes.
MAX_VALUE_BYTES = 4096

Schema = Callable[[Any], bool]


def signature(secret: bytes, key: str, value: Any) -> str:
    """HMAC-SHA256 over the key and the value: a signed value copied to another key does not check."""
    message = json.dumps({"key": key, "value": value}, sort_keys=True, separators=(",", ":"))
    return hmac.new(secret, message.encode(), hashlib.sha256).hexdigest()


def seal(secret: bytes, key: str, value: Any) -> str:
    """What is stored in etcd for ``value`` under ``key``."""
    return json.dumps({"value": value, "hmac": signature(secret, key, value)}, sort_keys=True)


def unseal(secret: bytes | Sequence[bytes], key: str, raw: Any, schema: Schema) -> tuple[Any, str | None]:
    """The value of a stored marker and None, or None and why it is refused.

    ``secret`` is one key or a ring of them: a signature made with any of them checks.
    """
    ring = [secret] if isinstance(secret, bytes) else list(secret)
    if not isinstance(raw, str) or len(raw.encode()) > MAX_VALUE_BYTES:
        return None, "malformed (no value, or too long)"
    try:
        envelope = json.loads(raw)
    except ValueError:
        return None, "unsigned (not a signed marker)"
    if not isinstance(envelope, dict) or set(envelope) != {"value", "hmac"}:
        return None, "unsigned (not a signed marker)"
    mac = envelope["hmac"]
    if not isinstance(mac, str) or not any(
        hmac.compare_digest(mac, signature(one, key, envelope["value"])) for one in ring
    ):
        return None, "wrong signature (not written with the marker key)"
    if not schema(envelope["value"]):
        return None, f"malformed value {envelope['value']!r}"
    return envelope["value"], None


class Markers:
    """The marker keys under ``prefix``, read and written through the first etcd endpoint that answers.

    ``error`` is the caller's own exception (etcd unreachable, no key), ``log`` its log line
    writer, ``key_path`` root's file with the marker key.
    """

    def __init__(
        self,
        endpoints: Iterable[str],
        prefix: str,
        context: ssl.SSLContext,
        log: Callable[[str], None],
        error: type[Exception],
        key_path: str,
        timeout: float = 5.0,
    ) -> None:
        self.endpoints = list(endpoints)
        self.prefix = prefix
        self.context = context
        self.log = log
        self.error = error
        self.key_path = key_path
        self.timeout = timeout
        self._ring: tuple[bytes, ...] = ()
        self._read_as: tuple[int, int, int] | None = None
        self._refused: set[tuple[str, str]] = set()

    def keys(self) -> tuple[bytes, ...]:
        """The key ring (the signing key first), read again whenever the file changed on disk.

        A missing or empty key file is the caller's error.
        """
        try:
            status = os.stat(self.key_path)
            seen = (status.st_ino, status.st_mtime_ns, status.st_size)
            if seen != self._read_as:
                with open(self.key_path, "rb") as handle:
                    ring = tuple(line.strip() for line in handle.read().splitlines() if line.strip())
                if not ring:
                    raise self.error(f"marker key {self.key_path} is empty")
                self._ring, self._read_as = ring, seen
        except OSError as error:
            raise self.error(f"marker key {self.key_path} unreadable: {error}") from error
        return self._ring

    def secret(self) -> bytes:
        """The key that signs: the ring's first."""
        return self.keys()[0]

    def call(self, method: str = "GET", key: str = "", value: str | None = None) -> dict[str, Any]:
        """One request to etcd's v2 keys API; a missing key is an empty answer."""
        body = None if value is None else urllib.parse.urlencode({"value": value}).encode()
        last: Exception | None = None
        for endpoint in self.endpoints:
            url = endpoint + "/v2/keys" + self.prefix + key
            if method == "GET":
                url += "?recursive=true"
            request = urllib.request.Request(url, data=body, method=method)
            if body is not None:
                request.add_header("Content-Type", "application/x-www-form-urlencoded")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout, context=self.context) as answer:
                    document = json.loads(answer.read())
                    return document if isinstance(document, dict) else {}
            except urllib.error.HTTPError as error:
                if error.code == 404:
                    return {}
                last = error
            except (OSError, ValueError) as error:
                last = error
        raise self.error(f"etcd unreachable for the markers under {self.prefix}: {last}")

    def read(self, folder: str, schema: Schema) -> dict[str, Any]:
        """Name -> value of the signed, well-formed markers in ``folder`` ("" for the prefix itself)."""
        path = f"/{folder}" if folder else ""
        listing = (self.call(key=path).get("node") or {}).get("nodes") or []
        found: dict[str, Any] = {}
        for entry in listing if isinstance(listing, list) else []:
            key = entry.get("key") if isinstance(entry, dict) else None
            if not isinstance(key, str) or entry.get("dir"):
                continue
            value, problem = unseal(self.keys(), key, entry.get("value"), schema)
            if problem is None:
                found[key.rsplit("/", 1)[-1]] = value
            elif (key, problem) not in self._refused:
                self._refused.add((key, problem))
                self.log(f"ignoring marker {key}: {problem}")
        return found

    def write(self, key: str, value: Any) -> None:
        """Sign and store ``value`` at ``key`` (below the prefix, with its leading slash)."""
        self.call("PUT", key, seal(self.secret(), self.prefix + key, value))

    def delete(self, key: str) -> None:
        self.call("DELETE", key)
