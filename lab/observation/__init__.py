"""Reading a live lab, and the clients that measure it; nothing here changes the cluster."""

from . import etcdctl, observe, timeline
from .client import TCP_OPTIONS, connect
from .observe import (
    etcd_health,
    health_problems,
    is_healthy,
    is_streaming,
    leader,
    members,
    node_ip,
    own_state,
    patroni_logs,
    single_vip_holder,
    status,
    sync_standby,
    sync_standbys,
    vip_holders,
    wait_leader,
    wait_ready,
    wait_serving,
    wait_vip_moves,
)
from .probe import DirectProbe, Probe, judge
from .prometheus import LabPrometheus
from .workload import CLIENT_OPTIONS, Reader, Writer, ensure_ledger

__all__ = [
    "CLIENT_OPTIONS",
    "TCP_OPTIONS",
    "DirectProbe",
    "LabPrometheus",
    "Probe",
    "Reader",
    "Writer",
    "connect",
    "ensure_ledger",
    "etcd_health",
    "etcdctl",
    "health_problems",
    "is_healthy",
    "is_streaming",
    "judge",
    "leader",
    "members",
    "node_ip",
    "observe",
    "own_state",
    "patroni_logs",
    "single_vip_holder",
    "status",
    "sync_standby",
    "sync_standbys",
    "timeline",
    "vip_holders",
    "wait_leader",
    "wait_ready",
    "wait_serving",
    "wait_vip_moves",
]
