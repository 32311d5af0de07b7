"""Patroni's REST API as the VM programs call it: one client for pgha-rolling and pgha-host-maintenance.

HTTPS verified against the cluster's CA; the password of the unsafe
endpoints (switchover, restart, config) is read from Patroni's own config
file when first needed (root and postgres read it), never from a command line
or a settings file. A rotated password (``pgha:secretRotation.restApi``) is
read again after a 401, and the call retried while the other VMs reload theirs.
:func:`tls_context` with a client certificate is what
the programs use for etcd, whose every client shows one.

Standard library only (PyYAML, which Patroni brings, for the password): shipped
to the VMs as it is (``pgha/vmprograms.py``).
"""

from __future__ import annotations

import base64
import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from typing import Any

View = dict[str, Any]
# After a 401 on an authenticated call: read the password again and retry, this
# often and this far apart: every VM reloads a rotated password in the same step
# group, within seconds of each other.
AUTH_RETRIES = 5
AUTH_RETRY_S = 2.0


def tls_context(ca: str | None, client_pem: str | None = None) -> ssl.SSLContext:
    """Verifies the peer against the cluster's CA; presents ``client_pem`` (certificate and key) if given."""
    context = ssl.create_default_context(cafile=ca)
    if client_pem is not None:
        context.load_cert_chain(client_pem)
    return context


class PatroniApi:
    """Calls to Patroni's REST API; the programs' own classes build on it."""

    def __init__(self, ca: str | None, patroni_config: str, timeout: float = 10.0) -> None:
        self.context = tls_context(ca)
        self.patroni_config = patroni_config
        self.timeout = timeout
        self._auth: str | None = None

    def auth(self) -> str:
        """Basic auth header from Patroni's config: root reads it, nobody else sees it."""
        if self._auth is None:
            import yaml  # python3-yaml comes with Patroni; only this path needs it

            with open(self.patroni_config) as handle:
                credentials = yaml.safe_load(handle)["restapi"]["authentication"]
            token = f"{credentials['username']}:{credentials['password']}"
            self._auth = "Basic " + base64.b64encode(token.encode()).decode()
        return self._auth

    def call(
        self,
        url: str,
        method: str = "GET",
        body: Any = None,
        auth: bool = False,
        timeout: float | None = None,
        context: ssl.SSLContext | None = None,
    ) -> tuple[int, Any]:
        """(status, decoded JSON or text); an unreachable URL raises OSError."""
        for attempt in range(AUTH_RETRIES + 1):
            status, answer = self._call_once(url, method, body, auth, timeout, context)
            if not (auth and status == 401) or attempt == AUTH_RETRIES:
                break
            # The password was rotated here or on the server's VM: read it again.
            self._auth = None
            time.sleep(AUTH_RETRY_S)
        return status, answer

    def _call_once(
        self,
        url: str,
        method: str,
        body: Any,
        auth: bool,
        timeout: float | None,
        context: ssl.SSLContext | None,
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if auth:
            request.add_header("Authorization", self.auth())
        try:
            with urllib.request.urlopen(
                request, timeout=self.timeout if timeout is None else timeout, context=context or self.context
            ) as answer:
                status, raw = answer.status, answer.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        text = raw.decode(errors="replace")
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text.strip()

    def first_cluster_view(self, urls: Iterable[str]) -> View | None:
        """Patroni's ``/cluster`` from the first of ``urls`` that answers; None if none does."""
        for url in urls:
            try:
                status, view = self.call(url + "/cluster", timeout=3)
            except OSError:
                continue
            if status == 200 and isinstance(view, dict):
                return view
        return None

    def member_view(self, url: str) -> View:
        """A member's own view (``/patroni``), live from its PostgreSQL; {} when it does not answer."""
        try:
            status, view = self.call(url + "/patroni", timeout=3)
        except OSError:
            return {}
        return view if status == 200 and isinstance(view, dict) else {}
