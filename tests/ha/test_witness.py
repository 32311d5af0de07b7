"""(7) With an etcd witness on a third host, losing either VM host is survived."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from lab import faults
from lab.cluster import Lab
from tests.lab.conftest import running_lab

from .test_faults import _check

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def witness_lab() -> Iterator[Lab]:
    yield from running_lab(os.environ.get("PGHA_WITNESS_STACK", "witness"))


@pytest.mark.parametrize("host", ["pve1", "pve2"])
def test_either_host_loss_is_survived(witness_lab: Lab, host: str) -> None:
    """The primary is put on the crashing host first, so each loss forces a failover."""
    result = faults.host_crash(witness_lab, host)
    print(json.dumps({k: v for k, v in result.items() if k != "patroni_logs"}))
    _check(witness_lab, result, failover=True)
