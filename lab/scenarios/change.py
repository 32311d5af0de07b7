"""``python -m lab change --to FILE``: ``pulumi up`` from the stack's config to FILE, replayed.

The plan comes from two runs of the program under Pulumi's mocks
(components/change_plan.py; ``pulumi preview`` cannot run here). The lab
then does what Proxmox and the steps would: a reboot stops and starts the
machine, a replacement destroys its disk and boots a fresh one, a created
or removed VM comes or goes, and the steps whose Commands the plan replaces
run again, in the program's phases. A writer and a reader run throughout
(lab/faults/harness.py): the result says the longest stretch without an
acknowledged write and the acknowledged writes lost, and whether the change
kept the program's rule (rolling: at most ``ROLLING_MAX_GAP_S``, none lost).

What the lab cannot do is said, not faked: a VM's hardware, a NIC's MTU and
a live migration are not modelled (the machine stays as it is).
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

from components.change_plan import COMMAND, Plan
from components.legacy_names import command_name
from components.provider_behaviour import VM
from pgha import ClusterSpec, load_spec, phases
from pgha.files import REPO_DIR
from pgha.stackfile import read_stack_file

from ..cluster import Lab
from ..faults.harness import scenario

ROLLING_MAX_GAP_S = 5.0  # the program's promise for a rolling change, with 0 writes lost
NOT_MODELLED = {"live": "NIC changed live (not modelled in the lab)", "migrate": "live migration (stays up)"}


def compute(stack: str, to: Path, *, start: Path | None = None, guards: bool = True) -> Plan:
    """The plan from ``start`` (default ``Pulumi.<stack>.yaml``) to ``to``: two runs under mocks."""
    # The mocks stand in for the Pulumi CLI here, as in the unit tests: one harness for both.
    from tests.pulumi.harness import config_file, replay_plan

    old = config_file(start or REPO_DIR / f"Pulumi.{stack}.yaml")
    # Pulumi's mocks need a current event loop; the lab's SSH runs (asyncio.run) leave none behind.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return replay_plan(old, config_file(to), stack, guards=guards)
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def new_spec(stack: str, to: Path) -> ClusterSpec:
    config, encrypted = read_stack_file(to)
    return load_spec(config, stack, encrypted)


def carry_out(lab: Lab, plan: Plan, spec: ClusterSpec) -> dict[str, Any]:
    """Do the plan on the lab under a writer and a reader; what was done and what clients saw."""
    done: list[str] = []
    with scenario(lab, "change") as run:
        run.inject(lambda: _execute(lab, plan, spec, done))
    result = run.result()
    keep = (
        "max_gap_s",
        "unavailability_s",
        "acked",
        "lost",
        "lost_by_node",
        "split_brain",
        "servers_in_order",
    )
    summary = {"kind": plan.verdict(), "done": done, **{k: result[k] for k in keep}}
    if plan.verdict() == "rolling":
        kept = result["max_gap_s"] <= ROLLING_MAX_GAP_S and result["lost"] == 0
        summary["rule"] = "kept" if kept else f"BROKEN (> {ROLLING_MAX_GAP_S} s or writes lost)"
    return summary


def _execute(lab: Lab, plan: Plan, spec: ClusterSpec, done: list[str]) -> None:
    started = time.monotonic()

    def did(what: str) -> None:
        line = f"[{time.monotonic() - started:6.1f} s] {what}"
        done.append(line)
        lab.report(line)

    rebuild = False
    for wave, steps in sorted(plan.waves.items()):
        vms = [s for s in steps if s.resource.typ == VM]
        restarts = [s.resource.name for s in vms if s.effect in ("reboot", "stop")]
        if restarts:
            did(f"wave {wave}: restarting {', '.join(restarts)} at the same time")
            _together(lab, restarts, lambda m: (m.stop(), m.start()))
            did(f"wave {wave}: {', '.join(restarts)} booted again")
        for step in vms:
            name = step.resource.name
            if step.op == "replace" or step.effect == "replace":
                did(f"wave {wave}: replacing {name}: its disk destroyed")
                lab.machine(lab.spec.node(name)).remove()
                rebuild = True
            elif step.op in ("create", "delete"):
                rebuild = True
            elif step.effect == "pending":
                did(f"wave {wave}: {name}: change left pending until a restart from Proxmox (nothing done)")
            elif step.effect in NOT_MODELLED:
                did(f"wave {wave}: {name}: {NOT_MODELLED[step.effect]}")
    commands = {s.resource.name for s in plan.steps if s.resource.typ == COMMAND and s.op != "delete"}
    if rebuild:
        did("VMs created, replaced or removed: the lab's up (every step, unchanged ones converge)")
        lab.apply(spec)
        did("up done")
        return
    lab.lock.acquire()
    lab.spec = spec
    lab.save_identity()
    wanted = [
        (group, [s for s in steps if command_name(s.node, s.name) in commands])
        for group, steps in phases(lab.spec, lab.secrets(), lab.tls())
    ]
    wanted = [(group, steps) for group, steps in wanted if steps]
    names = [command_name(s.node, s.name) for _, steps in wanted for s in steps]
    if names:
        did(f"steps whose Commands the plan replaces: {', '.join(names)}")
        asyncio.run(lab.runner().run_phases(wanted, lab.targets(), report=lab.report))
        did("steps done")


def _together(lab: Lab, names: list[str], action: Any) -> None:
    """``action`` on each named machine in its own thread: Pulumi updates independent VMs at once."""
    errors: list[BaseException] = []

    def one(name: str) -> None:
        try:
            action(lab.machine(lab.spec.node(name)))
        except BaseException as error:  # re-raised below, after the others finished
            errors.append(error)

    threads = [threading.Thread(target=one, args=(n,)) for n in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
