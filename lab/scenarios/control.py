"""The negative control: the loss checker must see loss where loss is real.

On a stack with asynchronous replication (``Pulumi.async.yaml``), replication
is held back on purpose: every standby's WAL receiver is stopped (SIGSTOP)
while the concurrent writers keep committing on the primary, then the
primary is powered off and the receivers resumed. Patroni promotes a standby
that never received the last commits, and the old primary is rewound when
it boots: acknowledged writes are gone, and ``lost`` must say so. If it says
0, the checker (or the workload) cannot catch loss and the fault tests'
"0 lost" means nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..cluster import Lab
from ..faults import RESUME_TIMEOUT, scenario
from ..observation import wait_serving

HELD_BACK_S = 3.0  # commits acknowledged while no standby receives WAL


def walreceiver_pids(lab: Lab, node: str) -> list[int]:
    """The WAL receiver process of a standby (by its process title)."""
    result = lab.exec(node, ["ps", "-eo", "pid=,args="], capture_output=True, text=True, check=True)
    pids = []
    for line in result.stdout.splitlines():
        pid, _, args = line.strip().partition(" ")
        if "walreceiver" in args:
            pids.append(int(pid))
    return pids


def _signal_receivers(lab: Lab, pids: dict[str, list[int]], signal: str) -> None:
    for node, node_pids in pids.items():
        if node_pids:
            lab.exec(node, ["kill", f"-{signal}", *map(str, node_pids)], check=False)


def async_loss(lab: Lab, held_back: float = HELD_BACK_S) -> dict[str, Any]:
    """Hold replication back, power the primary off: acknowledged writes must show as lost."""
    if lab.spec.patroni.synchronous_mode:
        raise RuntimeError("the negative control needs a stack without synchronous mode (--stack async)")
    with scenario(lab, "async_loss_control") as run:
        old = run.old_primary
        if old is None:
            raise RuntimeError("no running leader before the fault")
        standbys = [n.name for n in lab.spec.postgres_nodes if n.name != old]
        pids = {n: walreceiver_pids(lab, n) for n in standbys}
        run.extra["walreceivers"] = pids
        machine = lab.machine(lab.spec.node(old))
        _signal_receivers(lab, pids, "STOP")
        try:
            acked_before = len(run.writer.snapshot()[0])
            time.sleep(held_back)
            run.extra["acked_while_held_back"] = len(run.writer.snapshot()[0]) - acked_before
            since = run.inject(machine.kill)
        finally:
            _signal_receivers(lab, pids, "CONT")
        try:
            run.writer.wait_resumed(since, RESUME_TIMEOUT)
        finally:
            restarted = time.monotonic()
            machine.start()
        run.rejoin_s = wait_serving(lab, old, restarted, as_replica=True)
    return run.result()


SCENARIOS: dict[str, Callable[[Lab], dict[str, Any]]] = {"control-async-loss": async_loss}
