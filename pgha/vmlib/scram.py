"""PostgreSQL's SCRAM-SHA-256 verifiers, made and checked here: a password never reaches the server.

``ALTER ROLE … PASSWORD`` with a verifier (as psql's ``\\password`` sends) puts
no password in the server's logs or ``pg_stat_activity``; an unchanged
password is recognised by recomputing the verifier with the stored salt.
pgha-databases (application roles) and pgha-cluster-passwords (Patroni's
roles) share it.

Standard library only: shipped to the VMs as it is (``pgha/vmprograms.py``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

SCRAM_ITERATIONS = 4096


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def scram_verifier(password: str, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> str:
    """PostgreSQL's stored form of a SCRAM-SHA-256 password (RFC 5802/7677).

    Passwords are printable ASCII (the config checks it), on which SASLprep
    changes nothing.
    """
    salt = salt if salt is not None else os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    return f"SCRAM-SHA-256${iterations}:{_b64(salt)}${_b64(stored_key)}:{_b64(server_key)}"


def scram_matches(verifier: str | None, password: str) -> bool:
    """Whether ``verifier`` (pg_authid.rolpassword) was made from ``password``."""
    if not verifier or not verifier.startswith("SCRAM-SHA-256$"):
        return False
    try:
        head, _keys = verifier[len("SCRAM-SHA-256$") :].split("$", 1)
        iterations, salt = head.split(":", 1)
        expected = scram_verifier(password, base64.b64decode(salt), int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(expected, verifier)
