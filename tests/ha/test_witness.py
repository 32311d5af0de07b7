"""(7) With an etcd witness on a third host, losing either VM host is survived."""

from __future__ import annotations

import pytest

from lab import faults
from lab.cluster import Lab
from tests.helpers import check_result

pytestmark = pytest.mark.lab


@pytest.mark.parametrize("host", ["pve1", "pve2"])
def test_either_host_loss_is_survived(witness_lab: Lab, host: str) -> None:
    """The primary is put on the crashing host first, so each loss forces a failover."""
    result = faults.host_crash(witness_lab, host)
    check_result(witness_lab, result, failover=True)
