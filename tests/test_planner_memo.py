"""The planner's memos (per host, and of the whole lattice's merged indexes) are keyed by
inventory object: a changed host, even one object among many, must never be planned from
what an earlier object said."""

from __future__ import annotations

from lattice.ids import encode_module_key
from lattice.manifests import ActorSpec, BindingSpec, ProviderSpec
from reconciler import actions as A
from reconciler.planner import plan
from tests.planner_strategies import apply_plan, bindingset, deployment, host, lattice, state

ACTOR = encode_module_key(bytes([3]) * 32)


def test_a_host_that_lost_its_replica_is_planned_from_its_new_inventory() -> None:
    desired = state(
        deployment("web", [ActorSpec(id=ACTOR, replicas=3)],
                   [ProviderSpec(id="wascc:messaging", vendor_id="nats")]),
        bindingset("web", [BindingSpec(capability_id="wascc:messaging", actor=ACTOR,
                                       values={"SUBSCRIPTION": "web"})]))
    empty = lattice(*(host(f"H{i}") for i in range(4)))
    converged = empty
    for _ in range(5):  # bindings follow their providers: a few rounds
        converged = apply_plan(plan(desired, converged), converged).observed
    assert plan(desired, converged) == []
    assert plan(desired, converged) == []  # memos warm: still nothing to do
    # one host loses everything it ran (a new inventory object); the others are unchanged
    victim = next(h for h in converged.values() if h.actors)
    changed = {**converged, victim.host_id: host(victim.host_id)}
    again = plan(desired, changed)
    starts = [a for a in again if isinstance(a, A.StartActor)]
    assert len(starts) == len(victim.actors) and starts
    assert plan(desired, converged) == []  # and back: the old objects plan as before
    # a binding changed on one host alone (same actors, new object) is put again
    bound = next(h for h in converged.values() if h.bindings)
    stale = bound.bindings[0].model_copy(update={"values": {"SUBSCRIPTION": "other"}})
    edited = {**converged, bound.host_id: bound.model_copy(update={"bindings": [stale]})}
    puts = [a for a in plan(desired, edited) if isinstance(a, A.PutBinding)]
    assert len(puts) == 1 and puts[0].host_id == bound.host_id


def test_the_analysis_is_shared_while_inputs_are_the_same_objects() -> None:
    """The planner and the assessment of one pass share one analysis; any new object
    (desired state or one host's record) makes a new one."""
    from reconciler.matching import analyse

    desired = state(deployment("web", [ActorSpec(id=ACTOR, replicas=2)], []))
    observed = lattice(*(host(f"H{i}") for i in range(3)))
    first = analyse(desired, observed)
    assert analyse(desired, dict(reversed(list(observed.items())))) is first  # order-free
    assert all(s.instances == [None, None] for s in first.actors)
    running = apply_plan(plan(desired, observed), observed).observed
    second = analyse(desired, running)
    assert second is not first and all(all(s.instances) for s in second.actors)
    same_content = state(deployment("web", [ActorSpec(id=ACTOR, replicas=2)], []))
    assert analyse(same_content, running) is not second  # a new desired object
    one_new = {**running, "H0": running["H0"].model_copy()}
    assert analyse(desired, one_new) is not analyse(desired, running)
