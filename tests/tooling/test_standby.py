"""lab/faults/standby.py: a fault that has nothing to act on in a layout says so by name."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from lab.faults import standby
from pgha import etcd
from pgha.stackfile import load_stack


def test_killing_the_etcd_of_a_vm_without_a_member_is_not_applicable() -> None:
    spec = load_stack("qdevice")  # one etcd member per host: a witness, so pve1's second VM has none
    lab = SimpleNamespace(spec=spec, stack="qdevice", machine=lambda _node: object())
    members = {m.name for m in etcd.members(spec)}
    without = [n.name for n in spec.postgres_nodes if n.name not in members]
    assert without, "the qdevice stack has a database VM without an etcd member"
    with pytest.raises(standby.NotApplicable, match=f"{without[0]} runs no etcd member"):
        standby.fault_actions(lab, without[0], "etcd")  # type: ignore[arg-type]
    member = next(n.name for n in spec.postgres_nodes if n.name in members)
    cut, restore = standby.fault_actions(lab, member, "etcd")  # type: ignore[arg-type]
    assert callable(cut) and callable(restore)
