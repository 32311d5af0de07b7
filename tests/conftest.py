"""Shared fixtures: the dev stack's config and spec, as every test sees them."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pgha import ClusterSecrets, ClusterSpec, ClusterTls, LocalCa, load_spec
from pgha.stackfile import load_stack, read_config


@pytest.fixture
def dev_config() -> dict[str, Any]:
    """A fresh deep copy of Pulumi.dev.yaml's pgha: namespace, safe to mutate."""
    return copy.deepcopy(read_config("dev"))


@pytest.fixture
def spec(dev_config: dict[str, Any]) -> ClusterSpec:
    return load_spec(dev_config, "dev")


@pytest.fixture
def secrets() -> ClusterSecrets:
    return ClusterSecrets(
        superuser_password="su-Secret-1",
        replication_password="repl-Secret-2",
        rewind_password="rewind-Secret-3",
        restapi_password="api-Secret-4",
        haproxy_stats_password="stats-Secret-5",
        role_passwords={"app": "app-Secret-6-abcdefgh"},
    )


@pytest.fixture(scope="session")
def tls() -> ClusterTls:
    """Real certificates for the dev stack, issued locally once (the lab's code path)."""
    spec = load_stack("dev")
    return LocalCa.create(spec).issue_cluster(spec)
