"""The negative control: on the async stack, held-back replication plus a primary power-off
must SHOW lost acknowledged writes. If it does not, the loss checker cannot fail.

Brings up the 3-machine ``async`` stack (about 1-3 minutes here) and runs one
scenario (about 1 minute).
"""

from __future__ import annotations

import pytest

from lab.cluster import Lab
from lab.scenarios import control
from tests.helpers import print_result, report

pytestmark = pytest.mark.lab


def test_checker_sees_loss_on_the_async_stack(async_lab: Lab) -> None:
    result = control.async_loss(async_lab)
    print_result(result)
    assert result["acked_while_held_back"] > 0, report(result)  # the writers kept committing
    assert result["new_primary"] != result["old_primary"], report(result)  # a standby took over
    assert result["lost"] > 0, report(result)  # and the checker saw what it never received
