"""lab/observation/timeline.py: a failover's phases from etcd's events and the VMs' journals."""

from __future__ import annotations

from datetime import UTC, datetime

from lab.observation import timeline
from lab.observation.timeline import Evidence, JournalLine

FAULT = 1_000_000.0


def expiration(epoch: float) -> str:
    """etcd's RFC 3339 form, with nanoseconds."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


def key(at: float, action: str, leader: str, expires: float) -> dict:
    return {"t": at, "action": action, "node": {"value": leader, "expiration": expiration(expires)}}


def renewal(at: float, leader: str = "psql-01") -> dict:
    return key(at + 0.002, "compareAndSwap", leader, at + 20)


def line(seconds: float, node: str, message: str, unit: str = "patroni") -> JournalLine:
    return JournalLine(FAULT + seconds, node, unit, message)


def evidence(journal: list[JournalLine]) -> Evidence:
    return Evidence(
        fault_wall=FAULT,
        old_primary="psql-01",
        new_primary="psql-02",
        ttl=20,
        vip_holder="psql-03",
        key_events=[
            {
                "t": FAULT - 3.0,
                "action": "get",
                "node": {"value": "psql-01", "expiration": expiration(FAULT + 17.4)},
            },
            renewal(FAULT - 1.6),
            renewal(FAULT - 0.6),
            {"t": FAULT + 19.8, "action": "expire", "node": {}, "prev": {"value": "psql-01"}},
            {
                "t": FAULT + 20.4,
                "action": "create",
                "node": {"value": "psql-02", "expiration": expiration(FAULT + 40.39)},
            },
            renewal(FAULT + 21.4, "psql-02"),
        ],
        journal=journal,
        first_write_wall=FAULT + 21.2,
    )


JOURNAL = [
    JournalLine(FAULT - 0.6, "psql-01", "patroni", "no action. I am (psql-01), the leader with the lock"),
    JournalLine(
        FAULT + 20.35, "psql-02", "patroni", "Got response from psql-03 https://10.0.0.2:8008/patroni: {}"
    ),
    JournalLine(
        FAULT + 20.37, "psql-02", "patroni", "Request failed to psql-01: GET https://10.0.0.4:8008 (reset)"
    ),
    JournalLine(FAULT + 20.45, "psql-02", "patroni", "LOG:  received promote request"),
    JournalLine(FAULT + 20.6, "psql-02", "patroni", "LOG:  database system is ready to accept connections"),
    # Another VM's HAProxy first: not the one clients reach.
    JournalLine(
        FAULT + 20.7, "psql-02", "haproxy", "Server primary/psql-02 is UP, reason: Layer7 check passed"
    ),
    JournalLine(
        FAULT + 20.9, "psql-03", "haproxy", "Server replicas/psql-02 is DOWN, reason: Layer7 wrong status"
    ),
    JournalLine(
        FAULT + 21.1, "psql-03", "haproxy", "Server primary/psql-02 is UP, reason: Layer7 check passed"
    ),
]


def test_each_phase_from_its_own_record():
    result = timeline.reduce(evidence(JOURNAL))
    assert result == {
        "fault": 0.0,
        "last_renewal": -0.6,  # etcd's expiration of the last renewal before the fault, minus the ttl
        "key_expired": 19.8,
        "race_answered": 20.35,
        "race_timed_out": 20.37,
        "new_leader_lock": 20.39,
        "promote_begin": 20.45,
        "promote_end": 20.6,
        "vip_switch": None,  # the VIP did not move
        "haproxy_up": 21.1,  # the VIP holder's HAProxy, not the first one
        "first_write": 21.2,
    }
    assert timeline.leader_race_s(result) == 0.59


def test_the_vip_holder_is_the_one_that_took_the_vip():
    moved = [*JOURNAL, line(2.0, "psql-02", "(VI_1) Entering MASTER STATE", "keepalived")]
    result = timeline.reduce(evidence(moved))
    assert result["vip_switch"] == 2.0
    assert result["haproxy_up"] == 20.7


def test_what_left_no_record_is_none():
    result = timeline.reduce(evidence([]))
    assert (
        result["race_timed_out"] is None and result["promote_begin"] is None and result["haproxy_up"] is None
    )
    assert result["key_expired"] == 19.8  # etcd's events alone still give the key's phases


def test_first_write_ends_the_longest_stretch_without_one():
    acks = [9.0, 9.5, 10.2, 10.4, 31.0, 31.1, 35.0]
    assert timeline.first_write_after(acks, fault_at=10.0, fault_wall=FAULT) == FAULT + 21.0


def test_medians_and_table():
    rows = [timeline.reduce(evidence(JOURNAL)), timeline.reduce(evidence([]))]
    medians = timeline.medians(rows)
    assert medians["key_expired"] == 19.8 and medians["promote_end"] == 20.6
    text = timeline.table(rows)
    assert text.splitlines()[0].split()[:3] == ["fault", "last_renewal", "key_expired"]
    assert len(text.splitlines()) == 3


REFUSED = (
    "Request failed to psql-01: GET https://10.0.0.4:8008/patroni (HTTPSConnectionPool(host='10.0.0.4', "
    "port=8008): Max retries exceeded (Caused by NewConnectionError(...: Failed to establish a new "
    "connection: [Errno 111] Connection refused'))"
)
TIMED_OUT = (
    "Request failed to psql-01: GET https://10.0.0.4:8008/patroni (HTTPSConnectionPool(host='10.0.0.4', "
    "port=8008): Max retries exceeded (Caused by ConnectTimeoutError(..., 'Connection to 10.0.0.4 timed "
    "out. (connect timeout=2)'))"
)


def test_the_race_question_to_the_former_leader_is_told_refused_from_timed_out() -> None:
    refused = evidence([line(20.37, "psql-02", REFUSED)])
    assert timeline.race_request(refused) == "refused"
    # The negative control: Patroni's own 2 s, what the leader race agent removes.
    assert timeline.race_request(evidence([line(22.3, "psql-02", TIMED_OUT)])) == "timed out"
    # Another member's line, or a failed request to another peer, says nothing of the former leader.
    assert timeline.race_request(evidence([line(20.37, "psql-03", REFUSED)])) is None
    other_peer = REFUSED.replace("to psql-01", "to psql-03")
    assert timeline.race_request(evidence([line(20.37, "psql-02", other_peer)])) is None


def test_race_evidence_keeps_the_new_leaders_race_and_agent_lines() -> None:
    agent = line(9.4, "psql-02", "psql-01 silent for 10.1 s: Patroni's calls to it are refused at once")
    agent.unit = "pgha-leader-race.service"
    lines = timeline.race_evidence(evidence([*JOURNAL, agent, line(20.37, "psql-02", REFUSED)]))
    assert lines[0].startswith("+9.400 pgha-leader-race.service: psql-01 silent")
    assert any("Connection refused" in entry for entry in lines)
    assert not any("promote" in entry or "haproxy" in entry for entry in lines)
