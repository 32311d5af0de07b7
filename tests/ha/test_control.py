"""The negative control: on the async stack, held-back replication plus a primary power-off
must SHOW lost acknowledged writes. If it does not, the loss checker cannot fail.

Brings up the 3-machine ``async`` stack (about 1-3 minutes here) and runs one
scenario (about 1 minute).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from lab import control
from lab.cluster import Lab
from tests.lab.conftest import running_lab

from .test_faults import _report

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def async_lab() -> Iterator[Lab]:
    yield from running_lab(os.environ.get("PGHA_ASYNC_STACK", "async"))


def test_checker_sees_loss_on_the_async_stack(async_lab: Lab) -> None:
    result = control.async_loss(async_lab)
    print(json.dumps({k: v for k, v in result.items() if k != "patroni_logs"}))
    assert result["acked_while_held_back"] > 0, _report(result)  # the writers kept committing
    assert result["new_primary"] != result["old_primary"], _report(result)  # a standby took over
    assert result["lost"] > 0, _report(result)  # and the checker saw what it never received
