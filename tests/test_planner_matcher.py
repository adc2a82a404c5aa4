"""A kept Matcher makes plan() faster, never different; nothing is kept at module level.

The agent keeps one :class:`reconciler.matching.Matcher` for its life and plans every pass
with it; the matcher keeps each host's indexes by inventory object. That is only correct
because inventories are frozen and :class:`reconciler.observed.ObservedState` replaces a
host's object whenever it says something new, which is tested here too. The property runs
random sequences of what happens between two passes (events, heartbeats, pings, a new
desired state) through a real ObservedState and compares a kept matcher with a fresh one.
"""

from __future__ import annotations
import __future__

import importlib
import types
import typing

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from lattice.ids import encode_module_key
from lattice.manifests import ActorSpec, BindingSpec, DesiredState, ProviderSpec
from lattice.protocol import (
    ActorEvent,
    ActorInstance,
    BindingEvent,
    EventType,
    HostInventory,
    HostStopped,
    ProviderEvent,
    make_event,
)
from reconciler import actions as A
from reconciler.matching import Analysis, Matcher
from reconciler.observed import ObservedState
from reconciler.planner import plan
from tests.planner_strategies import (
    ACTORS,
    CAPS,
    VALUES,
    Step,
    actor_inst,
    apply_plan,
    binding_inst,
    bindingset,
    deployment,
    desired_states,
    host,
    labels_st,
    lattice,
    observed_lattices,
    owned,
    provider_inst,
    state,
    steps_st,
)

PROPS = settings(max_examples=150, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow])
LABELS: tuple[dict[str, str], ...] = ({}, {"zone": "a"}, {"zone": "b", "leds": "12"},
                                      {"gpu": "1"})
ACTOR = encode_module_key(bytes([3]) * 32)


def summary(found: Analysis) -> tuple[object, ...]:
    """What the planner and the assessment read of an analysis, as comparable values
    (rule sets compare by identity, instances by host and instance id; the surplus lists
    as sets: the planner sorts its stops and the assessment counts them, and a patched
    analysis may list them in another order)."""
    def where(inst: ActorInstance | None) -> tuple[str, str] | None:
        return None if inst is None else (found.host_of(inst).host_id, inst.instance_id)

    return (
        [(s.deployment, s.actor_id, s.rules.rules, [where(i) for i in s.instances], s.limits)
         for s in found.actors],
        sorted((h.host_id, i.instance_id, why) for h, i, why in found.surplus_actors),
        [(g.key, g.rules.rules, g.owners,
          None if g.chosen is None else (g.chosen[0].host_id, g.chosen[1].instance_id))
         for g in found.providers],
        sorted((k, g.key, g.rules.rules) for k, g in found.group_of.items()),
        sorted((h.host_id, p.instance_id, why) for h, p, why in found.surplus_providers),
        [(m.bindingset, m.spec, m.owner, [h.host_id for h in m.hosts],
          [(s.host.host_id, s.observed) for s in m.stale]) for m in found.bindings],
        sorted(((h.host_id, b, why) for h, b, why in found.surplus_bindings),
               key=lambda e: (e[0], e[1].actor_id, e[1].capability_id, e[1].binding_name)),
    )


def happen(step: Step, observed: ObservedState, desired: DesiredState,
           choices: tuple[DesiredState, DesiredState]) -> DesiredState:
    """Apply ``step`` to ``observed`` as the agent's event and ping handlers would; the
    desired state for the next pass."""
    snap = observed.snapshot()
    hosts = sorted(snap.values(), key=lambda h: h.host_id)
    actors = [(h, a) for h in hosts for a in h.actors]
    providers = [(h, p) for h in hosts for p in h.providers]
    one = hosts[step.pick % len(hosts)] if hosts else None
    hid = one.host_id if one else ""

    def event(kind: EventType, data: ActorEvent | ProviderEvent | BindingEvent
              | HostInventory | HostStopped) -> None:
        observed.apply_event(make_event(kind, hid, data))

    match step.kind:
        case "apply":  # the plan carried out, the hosts' answers to a ping merged
            observed.merge_ping(list(apply_plan(plan(desired, snap), snap).observed.values()))
        case "echo" if one:  # a heartbeat with nothing new: the object is kept
            event(EventType.HOST_HEARTBEAT, one.model_copy(update={"uptime_s": 9.0}))
        case "relabel" if one:
            event(EventType.HOST_HEARTBEAT, one.model_copy(update={"labels": LABELS[step.value]}))
        case "stop_actor" if actors:
            h, a = actors[step.pick % len(actors)]
            hid = h.host_id
            event(EventType.ACTOR_STOPPED,
                  ActorEvent(host_id=hid, actor_id=a.actor_id, instance_id=a.instance_id))
        case "stop_provider" if providers:
            h, p = providers[step.pick % len(providers)]
            hid = h.host_id
            event(EventType.PROVIDER_STOPPED, ProviderEvent(
                host_id=hid, capability_id=p.capability_id, binding_name=p.binding_name,
                vendor_id=p.vendor_id, instance_id=p.instance_id))
        case "put_binding" if one:
            event(EventType.BINDING_PUT, BindingEvent(
                host_id=hid, actor_id=ACTORS[step.pick % len(ACTORS)], capability_id=CAPS[0],
                binding_name="default", values=VALUES[step.value],
                annotations=owned("BindingSet", "b-one")))
        case "host_left" if one:
            event(EventType.HOST_STOPPED, HostStopped(host_id=hid))
        case "desired":
            return choices[1] if desired is choices[0] else choices[0]
        case "same_desired":  # an equal desired state in a new object (a new commit)
            return desired.model_copy(deep=True)
        case "reset":  # a ping after a restart: every record a new object
            observed.reset([h.model_copy() for h in hosts])
    return desired


@PROPS
@given(desired_states(), desired_states(), observed_lattices(), steps_st)
def test_a_kept_matcher_plans_as_a_fresh_one_whatever_happens_between_passes(
    first: DesiredState, second: DesiredState, initial: dict[str, HostInventory],
    steps: list[Step],
) -> None:
    observed = ObservedState()
    observed.reset(list(initial.values()))
    kept = Matcher()
    desired = first
    for step in [*steps, Step("apply", 0, 0)]:
        snap = observed.snapshot()
        fresh = plan(desired, snap)
        assert plan(desired, snap, matcher=kept) == fresh
        assert plan(desired, snap, matcher=kept) == fresh  # the analysis reused: the same
        assert summary(kept.analyse(desired, snap)) == summary(Matcher().analyse(desired, snap))
        desired = happen(step, observed, desired, (first, second))


def moves_of(found: Analysis) -> list[tuple[object, ...]]:
    return [(s.deployment, s.actor_id, s.moves) for s in found.actors if s.moves]


@PROPS
@given(desired_states(), observed_lattices(), st.lists(labels_st, min_size=1, max_size=3),
       st.booleans(), st.integers(0, 2))
def test_hosts_joining_are_matched_by_a_kept_matcher_as_by_a_fresh_one(
    desired: DesiredState, initial: dict[str, HostInventory], joining: list[dict[str, str]],
    unowned: bool, rounds: int,
) -> None:
    """The kept matcher patches its last analysis when a few hosts that run nothing join
    (their labels may make them targets of rebalancing moves, or daemon hosts: then it
    builds in full); the answer is a fresh matcher's."""
    kept = Matcher()
    observed = dict(initial)
    for _ in range(rounds):  # some of it running, perhaps packed
        observed = apply_plan(plan(desired, observed), observed).observed
    kept.analyse(desired, observed)
    for k, labels in enumerate(joining):
        stray = [actor_inst(ACTOR, f"u{k}")] if unowned else []
        observed = {**observed, f"J{k}": host(f"J{k}", labels, actors=stray)}
        got, want = kept.analyse(desired, observed), Matcher().analyse(desired, observed)
        assert summary(got) == summary(want)
        assert moves_of(got) == moves_of(want)
        assert list(got.hosts) == list(want.hosts)
        assert plan(desired, observed, matcher=kept) == plan(desired, observed)


def test_a_host_joining_a_packed_lattice_is_patched_in_and_becomes_a_move_target() -> None:
    desired = state(
        deployment("web", [ActorSpec(id=ACTOR, replicas=4)],
                   [ProviderSpec(id="wascc:messaging", vendor_id="nats")]),
        bindingset("web", [BindingSpec(capability_id="wascc:messaging", actor=ACTOR,
                                       values={"SUBSCRIPTION": "web"})]))
    kept = Matcher()
    observed = lattice(host("H0"), host("H1"))
    for _ in range(5):
        observed = apply_plan(plan(desired, observed, matcher=kept), observed).observed
    assert plan(desired, observed, matcher=kept) == []
    before = kept.analyse(desired, observed)
    joined = {**observed, "H2": host("H2")}
    after = kept.analyse(desired, joined)
    assert after.bindings is before.bindings  # patched, not built again
    assert [m.target for s in after.moving for m in s.moves] == ["H2"]
    assert plan(desired, joined, matcher=kept) == plan(desired, joined)
    assert any(isinstance(a, A.StartActor) and a.host_id == "H2"
               for a in plan(desired, joined, matcher=kept))
    busy = {**joined, "H3": host("H3", providers=[provider_inst("wascc:messaging", "p9")])}
    assert kept.analyse(desired, busy).bindings is not after.bindings  # it serves: in full
    assert summary(kept.analyse(desired, busy)) == summary(Matcher().analyse(desired, busy))


def test_a_changed_host_is_a_new_object_and_a_snapshot_never_changes() -> None:
    """What a kept matcher relies on: a record it indexed says the same for ever."""
    observed = ObservedState()
    mine = owned("Deployment", "web", replica=0)
    observed.reset([host("H0", actors=[actor_inst(ACTOR, "i1", mine)],
                         bindings=[binding_inst(ACTOR, CAPS[0], {"A": "1"})])])
    seen: list[tuple[HostInventory, str]] = []

    def record() -> HostInventory:
        inv = observed.snapshot()["H0"]
        seen.append((inv, inv.model_dump_json()))
        return inv

    first = record()
    with pytest.raises(ValidationError):
        first.labels = {"zone": "a"}  # type: ignore[misc]
    events = [
        make_event(EventType.ACTOR_STARTED, "H0", ActorEvent(
            host_id="H0", actor_id=ACTOR, instance_id="i2", annotations=mine)),
        make_event(EventType.ACTOR_STOPPED, "H0", ActorEvent(
            host_id="H0", actor_id=ACTOR, instance_id="i1")),
        make_event(EventType.BINDING_PUT, "H0", BindingEvent(
            host_id="H0", actor_id=ACTOR, capability_id=CAPS[0], binding_name="default",
            values={"A": "2"})),
        make_event(EventType.HOST_HEARTBEAT, "H0",
                   first.model_copy(update={"labels": {"zone": "a"}})),
    ]
    for ev in events:
        before = observed.snapshot()["H0"]
        observed.apply_event(ev)
        assert record() is not before
    last = observed.snapshot()["H0"]
    observed.apply_event(make_event(EventType.HOST_HEARTBEAT, "H0",
                                    last.model_copy(update={"uptime_s": 60.0})))
    assert observed.snapshot()["H0"] is last  # nothing new: the object (and its index) kept
    assert [inv.model_dump_json() for inv, _ in seen] == [dump for _, dump in seen]
    assert [a.instance_id for a in first.actors] == ["i1"]


def test_a_kept_matcher_plans_a_host_that_lost_its_replicas_from_its_new_record() -> None:
    desired = state(
        deployment("web", [ActorSpec(id=ACTOR, replicas=3)],
                   [ProviderSpec(id="wascc:messaging", vendor_id="nats")]),
        bindingset("web", [BindingSpec(capability_id="wascc:messaging", actor=ACTOR,
                                       values={"SUBSCRIPTION": "web"})]))
    kept = Matcher()
    converged = lattice(*(host(f"H{i}") for i in range(4)))
    for _ in range(5):  # bindings follow their providers: a few rounds
        converged = apply_plan(plan(desired, converged, matcher=kept), converged).observed
    assert plan(desired, converged, matcher=kept) == []
    victim = next(h for h in converged.values() if h.actors)
    changed = {**converged, victim.host_id: host(victim.host_id)}
    starts = [a for a in plan(desired, changed, matcher=kept) if isinstance(a, A.StartActor)]
    assert len(starts) == len(victim.actors) > 0
    assert plan(desired, converged, matcher=kept) == []  # and back: the old records again
    bound = next(h for h in converged.values() if h.bindings)
    stale = bound.bindings[0].model_copy(update={"values": {"SUBSCRIPTION": "other"}})
    edited = {**converged, bound.host_id: bound.model_copy(update={"bindings": [stale]})}
    puts = [a for a in plan(desired, edited, matcher=kept) if isinstance(a, A.PutBinding)]
    assert [p.host_id for p in puts] == [bound.host_id]


# ---------------------------------------------------------------- no hidden state

#: the pure core: what plan() and assess() run
PURE = ("reconciler.planner", "reconciler.matching", "reconciler.matching_actors",
        "reconciler.matching_bindings", "reconciler.matching_delta",
        "reconciler.matching_providers", "reconciler.placement",
        "reconciler.memo", "reconciler.rulesets", "reconciler.assess")
#: module-level caches allowed: keyed by value (never identity) over a pure function, so
#: they cannot change an answer
VALUE_CACHES = {("reconciler.rulesets", "canonical_rules"),
                ("reconciler.matching", "canonical_rules")}
_IMMUTABLE = (str, bytes, int, float, bool, type(None), frozenset, typing.TypeVar)
_DECLARATIONS = (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, type,
                 types.GenericAlias, types.UnionType, typing._GenericAlias,  # type: ignore[attr-defined]
                 typing._SpecialForm, type(__future__.annotations))  # type: ignore[attr-defined]


def _immutable(value: object) -> bool:
    if isinstance(value, tuple):
        return all(_immutable(v) for v in value)
    return isinstance(value, _IMMUTABLE)


def test_the_pure_core_keeps_no_state_at_module_level() -> None:
    """Every global of the planner's modules is a declaration or an immutable value: any
    memo lives in a Matcher, passed explicitly."""
    found = []
    for name in PURE:
        module = importlib.import_module(name)
        for key, value in vars(module).items():
            if key.startswith("__") or (name, key) in VALUE_CACHES:
                continue
            if not (isinstance(value, _DECLARATIONS) or _immutable(value)):
                found.append(f"{name}.{key}: {type(value).__name__}")
    assert found == []



def test_a_quiet_lattice_gets_the_kept_plan_in_a_list_of_its_own() -> None:
    """The same analysis twice: the actions planned from it the first time, equal, in a new
    list (a caller changing its list changes nothing kept); any change plans again."""
    desired = state(deployment("web", [ActorSpec(id=ACTOR, replicas=2)]))
    observed = lattice(host("H0"), host("H1"))
    kept = Matcher()
    first = plan(desired, observed, matcher=kept)
    second = plan(desired, observed, matcher=kept)
    assert second == first and second is not first
    first.clear()
    assert plan(desired, observed, matcher=kept) == second
    joined = {**observed, "H2": host("H2")}
    assert plan(desired, joined, matcher=kept) == plan(desired, joined)
