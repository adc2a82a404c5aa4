"""Crash-loop counting (pure, with a manual clock)."""

from __future__ import annotations

from lattice.clock import ManualClock
from lattice.protocol import ANN_KIND, ANN_MANAGED_BY, ANN_NAME, ANN_REPLICA, ActorEvent
from reconciler.actions import start_actor_key
from reconciler.crashes import BACKOFF, WINDOW_S, CrashTracker

ACTOR = "M" + "A" * 55


def crash(reason: str = "crashed: trapped", *, managed: bool = True, replica: str = "0"
          ) -> ActorEvent:
    ann = {ANN_KIND: "Deployment", ANN_NAME: "d", ANN_REPLICA: replica}
    if managed:
        ann[ANN_MANAGED_BY] = "vinculum"
    return ActorEvent(host_id="H", actor_id=ACTOR, instance_id="i", annotations=ann,
                      reason=reason)


def test_counts_crashes_of_owned_replicas_only() -> None:
    clock = ManualClock(0.0)
    t = CrashTracker(clock)
    key = start_actor_key("d", ACTOR, 0)
    assert t.record(crash()) == key
    assert t.record(crash("stopped by command")) is None
    assert t.record(crash(managed=False)) is None
    assert t.record(crash(replica="")) is None
    # a spread share's replica and a daemon's (named by host) count under their own key
    assert t.record(crash(replica="east-0")) == start_actor_key("d", ACTOR, "east-0")
    assert t.count(key) == 1 and t.backoff(key) == 0 and t.loops() == {}
    clock.advance(5.0)
    t.record(crash("crashed: ran past its CPU deadline"))
    assert t.loops() == {key: (2, "crashed: ran past its CPU deadline")}
    assert t.backoff(key) == 1.0


def test_backoff_doubles_up_to_a_cap_and_the_window_forgets() -> None:
    clock = ManualClock(0.0)
    t = CrashTracker(clock)
    key = start_actor_key("d", ACTOR, 0)
    delays = []
    for _ in range(12):
        t.record(crash())
        delays.append(t.backoff(key))
        clock.advance(1.0)
    assert delays[:4] == [0.0, 1.0, 2.0, 4.0]
    assert delays[-1] == BACKOFF.max == 60.0
    assert delays == sorted(delays)
    clock.advance(WINDOW_S + 1)
    assert t.count(key) == 0 and t.loops() == {} and t.backoff(key) == 0.0
