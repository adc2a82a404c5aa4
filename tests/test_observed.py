"""ObservedState: events, heartbeats and expiry update the agent's model of the lattice."""

from __future__ import annotations

from datetime import UTC, datetime

from lattice.clock import ManualClock
from lattice.ids import random_actor_id, random_host_id
from lattice.protocol import (
    ActorEvent,
    BindingEvent,
    EventType,
    HostInventory,
    HostStopped,
    ProviderEvent,
    make_event,
)
from reconciler import observed as obs
from reconciler.observed import Change, ObservedState

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def inv(host: str, **labels: str) -> HostInventory:
    return HostInventory(host_id=host, name=host[:6], labels=labels, started_at=T0,
                         heartbeat_s=1.0)


def test_host_join_change_leave() -> None:
    o = ObservedState()
    h = random_host_id()
    assert o.apply_event(make_event(EventType.HOST_STARTED, h, inv(h))) is Change.HOST_JOINED
    assert o.apply_event(make_event(EventType.HOST_HEARTBEAT, h, inv(h))) is Change.NONE
    changed = make_event(EventType.HOST_HEARTBEAT, h, inv(h, leds="12"))
    assert o.apply_event(changed) is Change.HOST_CHANGED
    assert o.get(h) is not None and o.get(h).labels == {"leds": "12"}  # type: ignore[union-attr]
    stopped = make_event(EventType.HOST_STOPPED, h, HostStopped(host_id=h))
    assert o.apply_event(stopped) is Change.HOST_LEFT
    assert len(o) == 0


def test_entity_events_and_stale_duplicates() -> None:
    o = ObservedState()
    h, a = random_host_id(), random_actor_id()
    o.reset([inv(h)])
    started = make_event(EventType.ACTOR_STARTED, h,
                         ActorEvent(host_id=h, actor_id=a, instance_id="i1"))
    assert o.apply_event(started) is Change.ENTITY_STARTED
    assert o.apply_event(started) is Change.NONE  # same instance twice: no second copy
    p = ProviderEvent(host_id=h, capability_id="wascc:messaging", binding_name="default",
                      vendor_id="nats", instance_id="p1")
    assert o.apply_event(make_event(EventType.PROVIDER_STARTED, h, p)) is Change.ENTITY_STARTED
    b = BindingEvent(host_id=h, actor_id=a, capability_id="wascc:messaging",
                     binding_name="default", values={"X": "${X:1}"})
    assert o.apply_event(make_event(EventType.BINDING_PUT, h, b)) is Change.BINDING_CHANGED
    snap = o.snapshot()[h]
    assert [x.instance_id for x in snap.actors] == ["i1"]
    assert snap.bindings[0].values == {"X": "${X:1}"}
    # stopping the provider takes its bindings with it
    assert o.apply_event(make_event(EventType.PROVIDER_STOPPED, h, p)) is Change.ENTITY_STOPPED
    assert o.snapshot()[h].bindings == []
    stopped = make_event(EventType.ACTOR_STOPPED, h,
                         ActorEvent(host_id=h, actor_id=a, instance_id="i1"))
    assert o.apply_event(stopped) is Change.ENTITY_STOPPED
    assert o.apply_event(stopped) is Change.NONE


def test_a_start_is_recorded_at_the_hosts_own_reading_of_it() -> None:
    """The event carries the instance's started_at, the same reading the host's inventory
    reports, so a heartbeat that follows the event changes nothing (no status jitter)."""
    o = ObservedState()
    h, a = random_host_id(), random_actor_id()
    o.reset([inv(h)])
    began = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
    ev = make_event(EventType.ACTOR_STARTED, h, ActorEvent(
        host_id=h, actor_id=a, instance_id="i1", started_at=began))
    assert ev.time != began
    assert o.apply_event(ev) is Change.ENTITY_STARTED
    [inst] = o.snapshot()[h].actors
    assert inst.started_at == began
    later = inv(h).model_copy(update={"actors": [inst]})
    assert o.apply_event(make_event(EventType.HOST_HEARTBEAT, h, later)) is Change.NONE


def test_events_for_unknown_hosts_are_ignored() -> None:
    o = ObservedState()
    ev = make_event(EventType.ACTOR_STARTED, "x",
                    ActorEvent(host_id="nobody", actor_id=random_actor_id(), instance_id="i"))
    assert o.apply_event(ev) is Change.NONE


def test_host_missing_three_heartbeats_is_dropped() -> None:
    clock = ManualClock()
    o = ObservedState(clock=clock)
    h1, h2 = random_host_id(), random_host_id()
    o.reset([inv(h1), inv(h2)])
    clock.advance(2.9)
    o.apply_event(make_event(EventType.HOST_HEARTBEAT, h2, inv(h2)))
    assert o.expire() == []
    clock.advance(0.2)  # h1: 3.1 s = more than 3 heartbeats of 1 s
    assert o.expire() == [h1]
    assert o.host_ids == [h2]
    assert obs.MISSED_HEARTBEATS == 3


def test_expiry_is_after_exactly_three_heartbeat_intervals_not_at_them() -> None:
    """A host silent for exactly 3 x heartbeat_s stays; a moment later it is gone, and
    only then does the version move (the agent replans on that)."""
    clock = ManualClock()
    o = ObservedState(clock=clock)
    h = random_host_id()
    o.reset([inv(h).model_copy(update={"heartbeat_s": 2.0})])
    v = o.version
    clock.advance(6.0)
    assert o.expire() == [] and o.version == v and o.host_ids == [h]
    clock.advance(0.001)
    assert o.expire() == [h]
    assert o.version == v + 1 and len(o) == 0 and o.get(h) is None
    assert o.expire() == [] and o.version == v + 1  # nothing left to drop: no change


def test_a_zero_heartbeat_interval_is_treated_as_a_tenth_of_a_second() -> None:
    clock = ManualClock()
    o = ObservedState(clock=clock)
    h = random_host_id()
    o.reset([inv(h).model_copy(update={"heartbeat_s": 0.0})])
    clock.advance(0.3)
    assert o.expire() == []  # not dropped at once for a host that reports no interval
    clock.advance(0.01)
    assert o.expire() == [h]


def test_any_sign_of_life_resets_the_heartbeat_timer() -> None:
    """A ping answer, an identical heartbeat, or an entity event each count as seen."""
    clock = ManualClock()
    o = ObservedState(clock=clock)
    by_ping, by_beat, by_event, silent = (random_host_id() for _ in range(4))
    o.reset([inv(by_ping), inv(by_beat), inv(by_event), inv(silent)])
    clock.advance(2.5)
    assert o.merge_ping([inv(by_ping)]) == []
    assert o.apply_event(make_event(EventType.HOST_HEARTBEAT, by_beat, inv(by_beat))) is (
        Change.NONE
    )
    started = make_event(EventType.ACTOR_STARTED, by_event, ActorEvent(
        host_id=by_event, actor_id=random_actor_id(), instance_id="i1"))
    assert o.apply_event(started) is Change.ENTITY_STARTED
    clock.advance(1.0)  # 3.5 s since the reset, 1 s since the sign of life
    assert o.expire() == [silent]
    assert o.host_ids == sorted([by_ping, by_beat, by_event])
    clock.advance(2.1)
    assert sorted(o.expire()) == sorted([by_ping, by_beat, by_event])


def test_a_heartbeat_that_says_nothing_new_keeps_the_inventory_object() -> None:
    """Uptime aside, an identical heartbeat or ping answer keeps the object the planner's
    per-host memos are keyed by; any other difference replaces it."""
    from lattice.protocol import ActorInstance

    o = ObservedState()
    h = random_host_id()
    actor = ActorInstance(actor_id=random_actor_id(), instance_id="i1", started_at=T0,
                          annotations={"vinculum.io/name": "web"})
    first = inv(h).model_copy(update={"actors": [actor]})
    o.reset([first])
    later = first.model_copy(update={"uptime_s": 99.0, "actors": [actor.model_copy()]})
    assert o.apply_event(make_event(EventType.HOST_HEARTBEAT, h, later)) is Change.NONE
    assert o.get(h) is first
    assert o.merge_ping([later]) == [] and o.get(h) is first
    relabelled = actor.model_copy(update={"annotations": {"vinculum.io/name": "api"}})
    moved = first.model_copy(update={"actors": [relabelled]})
    o.apply_event(make_event(EventType.HOST_HEARTBEAT, h, moved))
    assert o.get(h) is not first and o.get(h).actors[0].annotations == relabelled.annotations  # type: ignore[union-attr]
    o.merge_ping([first])
    assert o.get(h) is first  # a different object again: taken
