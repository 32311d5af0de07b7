"""Read a stack's ``pgha:`` config straight from ``Pulumi.<stack>.yaml``.

For the tools that run without the Pulumi engine (the offline renderer and
the lab); ``pulumi preview`` reads the same keys through ``pulumi.Config``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .config import ENCRYPTED_STAND_IN, NAMESPACE, load_spec
from .files import REPO_DIR
from .spec import ClusterSpec


def stack_file(stack: str, root: Path = REPO_DIR) -> Path:
    return root / f"Pulumi.{stack}.yaml"


def read_config(stack: str, root: Path = REPO_DIR) -> dict[str, Any]:
    """The stack's ``pgha:`` keys, encrypted values replaced by stand-ins (see :func:`read_stack`)."""
    return read_stack(stack, root)[0]


def read_stack(stack: str, root: Path = REPO_DIR) -> tuple[dict[str, Any], frozenset[str]]:
    """The stack's ``pgha:`` keys, and which of them the file keeps encrypted.

    Pulumi writes a ``--secret`` value as ``{secure: <ciphertext>}`` (with
    ``--path``, at the leaf). Without the engine it cannot be read: a leaf
    becomes a marked stand-in, an encrypted ``rolePasswords`` object none
    (the offline render gives every role a stand-in password anyway).
    """
    path = stack_file(stack, root)
    if not path.exists():
        raise FileNotFoundError(f"no stack file {path} (stacks: Pulumi.<stack>.yaml)")
    return read_stack_file(path)


def read_stack_file(path: Path) -> tuple[dict[str, Any], frozenset[str]]:
    """:func:`read_stack` of any file: a stack's next config (``Pulumi.dev.next.yaml``) too."""
    document = yaml.safe_load(path.read_text()) or {}
    config = document.get("config") or {}
    prefix = f"{NAMESPACE}:"
    values: dict[str, Any] = {}
    encrypted: set[str] = set()
    for full_key, value in config.items():
        if not full_key.startswith(prefix):
            continue
        key = full_key.removeprefix(prefix)
        if _holds_secure(value):
            encrypted.add(key)
        values[key] = {} if key == "rolePasswords" and _is_secure(value) else _stand_ins(value, key)
    return values, frozenset(encrypted)


def load_stack(stack: str, root: Path = REPO_DIR) -> ClusterSpec:
    config, encrypted = read_stack(stack, root)
    return load_spec(config, stack, encrypted)


def _is_secure(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"secure"}


def _holds_secure(value: Any) -> bool:
    if _is_secure(value):
        return True
    if isinstance(value, dict):
        return any(_holds_secure(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_secure(v) for v in value)
    return False


def _stand_ins(value: Any, key: str) -> Any:
    if _is_secure(value):
        return f"{ENCRYPTED_STAND_IN}{key})"
    if isinstance(value, dict):
        return {k: _stand_ins(v, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_stand_ins(v, f"{key}[{i}]") for i, v in enumerate(value)]
    return value
