"""ObservedState.expire skips its scan until a deadline can have passed (issue 15: the
agent calls it 4 times a second, and a scan of 10,000 hosts costs ~15 ms), and still drops
every silent host on time: hosts that join later with a shorter heartbeat, hosts whose
heartbeat period changes, hosts after a reset."""

from __future__ import annotations

from datetime import UTC, datetime

from lattice.clock import ManualClock
from lattice.ids import random_host_id
from lattice.protocol import EventType, HostInventory, encode, make_event
from reconciler.observed import ObservedState

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def inv(host: str, heartbeat: float, **labels: str) -> HostInventory:
    return HostInventory(host_id=host, name=host[:6], labels=labels, started_at=T0,
                         heartbeat_s=heartbeat)


def test_a_later_host_with_a_shorter_heartbeat_expires_on_time() -> None:
    clock = ManualClock()
    o = ObservedState(clock=clock)
    slow, fast = random_host_id(), random_host_id()
    o.reset([inv(slow, 30.0)])
    assert o.expire() == []  # a scan: the next deadline is 90 s away
    o.apply_event(make_event(EventType.HOST_STARTED, fast, inv(fast, 1.0)))
    clock.advance(3.1)
    assert o.expire() == [fast]
    assert o.host_ids == [slow]


def test_a_host_whose_heartbeat_shortens_expires_on_time() -> None:
    clock = ManualClock()
    o = ObservedState(clock=clock)
    h = random_host_id()
    o.reset([inv(h, 30.0)])
    assert o.expire() == []
    o.merge_ping([inv(h, 1.0)])  # it now beats every second
    clock.advance(3.1)
    assert o.expire() == [h]


def test_heartbeats_keep_hosts_and_expiry_still_comes() -> None:
    clock = ManualClock()
    o = ObservedState(clock=clock)
    hosts = [random_host_id() for _ in range(3)]
    o.reset([inv(h, 1.0) for h in hosts])
    for _ in range(10):  # bounded: 10 beats of 1 s from the first two hosts
        clock.advance(1.0)
        for h in hosts[:2]:
            o.apply_event(make_event(EventType.HOST_HEARTBEAT, h, inv(h, 1.0)))
        gone = o.expire()
        assert gone in ([], [hosts[2]])
    assert sorted(o.host_ids) == sorted(hosts[:2])
    clock.advance(3.1)
    assert sorted(o.expire()) == sorted(hosts[:2])


def test_reset_looks_again() -> None:
    clock = ManualClock()
    o = ObservedState(clock=clock)
    a, b = random_host_id(), random_host_id()
    o.reset([inv(a, 30.0)])
    assert o.expire() == []
    o.reset([inv(b, 1.0)])
    clock.advance(3.1)
    assert o.expire() == [b]


def test_decode_ping_reuses_an_answer_that_only_changed_its_uptime() -> None:
    o = ObservedState()
    h = random_host_id()
    first = inv(h, 30.0, zone="a").model_copy(update={"uptime_s": 1.5})
    [a] = o.decode_ping([encode(first)])
    assert a == first
    o.reset([a])
    later = first.model_copy(update={"uptime_s": 2.25e3})
    [b] = o.decode_ping([encode(later)])
    assert b is a  # not parsed again: the planner's per-host memos hold
    assert o.merge_ping([b]) == []
    moved = first.model_copy(update={"labels": {"zone": "b"}, "uptime_s": 3.0})
    [c] = o.decode_ping([encode(moved), b"not json"])
    assert c.labels == {"zone": "b"} and c is not a
    o.merge_ping([c])
    assert o.get(h) is c
