"""Read a stack's ``pgha:`` config straight from ``Pulumi.<stack>.yaml``.

For the tools that run without the Pulumi engine (the offline renderer and
the lab); ``pulumi preview`` reads the same keys through ``pulumi.Config``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .config import NAMESPACE, load_spec
from .files import REPO_DIR
from .spec import ClusterSpec


def stack_file(stack: str, root: Path = REPO_DIR) -> Path:
    return root / f"Pulumi.{stack}.yaml"


def read_config(stack: str, root: Path = REPO_DIR) -> dict[str, Any]:
    path = stack_file(stack, root)
    if not path.exists():
        raise FileNotFoundError(f"no stack file {path} (stacks: Pulumi.<stack>.yaml)")
    document = yaml.safe_load(path.read_text()) or {}
    config = document.get("config") or {}
    prefix = f"{NAMESPACE}:"
    return {k.removeprefix(prefix): v for k, v in config.items() if k.startswith(prefix)}


def load_stack(stack: str, root: Path = REPO_DIR) -> ClusterSpec:
    return load_spec(read_config(stack, root), stack)
