"""Benches, drills and the other runs built from the layers below: what ``python -m lab`` offers."""

from . import (
    apps,
    backups,
    bench,
    change,
    change_table,
    control,
    hostmaint,
    moving_in,
    offsite_archive,
    onehop,
    poolbench,
    restore,
)
from .bench import FAILOVER_FAULTS, failover, proxy, timeline_table
from .onehop import ab_switchover, follow, without_one_hop
from .poolbench import pooler

__all__ = [
    "FAILOVER_FAULTS",
    "ab_switchover",
    "apps",
    "backups",
    "bench",
    "change",
    "change_table",
    "control",
    "failover",
    "follow",
    "hostmaint",
    "moving_in",
    "offsite_archive",
    "onehop",
    "poolbench",
    "pooler",
    "proxy",
    "restore",
    "timeline_table",
    "without_one_hop",
]
