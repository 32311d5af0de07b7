"""What breaks a running lab: the primary's faults (this package's ``SCENARIOS``), the
standbys' and the network's, the attacks, and the harness that measures a fault."""

from . import attacks, harness, netfaults, primary, standby
from .harness import READY_TIMEOUT, RESUME_TIMEOUT, Run, scenario, wait_etcd_healthy
from .primary import (
    SCENARIOS,
    host_crash,
    planned_switchover,
    postmaster_sigkill,
    primary_drop,
    primary_freeze,
    primary_partition,
    primary_power_off,
    quorum_host_crash,
    vip_holder_dies,
    vip_holder_loses_haproxy,
)
from .standby import SCENARIOS as STANDBY_SCENARIOS

__all__ = [
    "READY_TIMEOUT",
    "RESUME_TIMEOUT",
    "SCENARIOS",
    "STANDBY_SCENARIOS",
    "Run",
    "attacks",
    "harness",
    "host_crash",
    "netfaults",
    "planned_switchover",
    "postmaster_sigkill",
    "primary",
    "primary_drop",
    "primary_freeze",
    "primary_partition",
    "primary_power_off",
    "quorum_host_crash",
    "scenario",
    "standby",
    "vip_holder_dies",
    "vip_holder_loses_haproxy",
    "wait_etcd_healthy",
]
