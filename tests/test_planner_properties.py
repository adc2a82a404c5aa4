"""Properties of plan(): convergence, ownership, determinism, order, unique keys.

Random small desired states against random lattices (tests/planner_strategies.py), with a
simulated executor and hosts (:func:`apply_plan`) standing in for the lattice. Pure and
fast: about a second per property.
"""

from __future__ import annotations

from collections.abc import Mapping

from hypothesis import HealthCheck, given, settings

from lattice.manifests import DesiredState
from lattice.protocol import HostInventory, is_managed
from reconciler import actions as A
from reconciler.planner import plan, unmanaged
from tests.planner_strategies import apply_plan, desired_states, observed_lattices

PROPS = settings(max_examples=200, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow])
ROUNDS = 4  # e.g. stop a wrong vendor, start the right one, then bind to it


def owner_of_target(act: A.Action, observed: Mapping[str, HostInventory]) -> dict[str, str]:
    """The annotations of the entity a stop or delete names (fails if it does not exist)."""
    match act:
        case A.StopActor():
            (ann,) = [a.annotations for a in observed[act.host_id].actors
                      if (a.actor_id, a.instance_id) == (act.actor_id, act.instance_id)]
        case A.StopProvider():
            (ann,) = [p.annotations for p in observed[act.host_id].providers
                      if (p.capability_id, p.binding_name)
                      == (act.capability_id, act.binding_name)]
        case A.DeleteBinding():
            (ann,) = [b.annotations for b in observed[act.host_id].bindings
                      if (b.actor_id, b.capability_id, b.binding_name)
                      == (act.actor_id, act.capability_id, act.binding_name)]
        case _:
            raise AssertionError(f"not a stop or delete: {act}")
    return dict(ann)


@PROPS
@given(desired_states(), observed_lattices())
def test_plan_is_sorted_with_unique_keys(
    desired: DesiredState, observed: dict[str, HostInventory]
) -> None:
    acts = plan(desired, observed)
    assert acts == sorted(acts, key=lambda a: (a.phase, a.key))
    assert len({a.key for a in acts}) == len(acts)


@PROPS
@given(desired_states(), observed_lattices())
def test_plan_stops_and_deletes_only_owned_entities_that_exist(
    desired: DesiredState, observed: dict[str, HostInventory]
) -> None:
    acts = plan(desired, observed)
    for act in acts:
        if isinstance(act, A.StopActor | A.StopProvider | A.DeleteBinding):
            assert is_managed(owner_of_target(act, observed)), act
        if isinstance(act, A.PutBinding | A.DeleteBinding | A.StopActor | A.StopProvider):
            assert act.host_id in observed
        assert act.reason
    # a binding is never both put and deleted, and never deleted under a stopping provider
    puts = {(a.host_id, a.actor_id, a.capability_id, a.binding_name)
            for a in acts if isinstance(a, A.PutBinding)}
    stopping = {(a.host_id, a.capability_id, a.binding_name)
                for a in acts if isinstance(a, A.StopProvider)}
    for a in acts:
        if isinstance(a, A.DeleteBinding):
            assert (a.host_id, a.actor_id, a.capability_id, a.binding_name) not in puts
            assert (a.host_id, a.capability_id, a.binding_name) not in stopping
        if isinstance(a, A.PutBinding):
            assert (a.host_id, a.capability_id, a.binding_name) not in stopping


@PROPS
@given(desired_states(), observed_lattices())
def test_starts_are_for_desired_things_and_owned(
    desired: DesiredState, observed: dict[str, HostInventory]
) -> None:
    for act in plan(desired, observed):
        if isinstance(act, A.StartActor):
            (spec,) = [s for s in desired.deployments[act.deployment].spec.actors
                       if s.id == act.actor_id]
            assert 0 <= act.replica < spec.replicas
            assert is_managed(dict(act.annotations))
            assert dict(act.annotations)["vinculum.io/revision"] == desired.revision
        elif isinstance(act, A.StartProvider):
            assert act.owners and set(act.owners) <= set(desired.deployments)
            assert is_managed(dict(act.annotations))
        elif isinstance(act, A.PutBinding):
            assert is_managed(dict(act.annotations))
            assert dict(act.annotations)["vinculum.io/name"] in desired.bindingsets


@PROPS
@given(desired_states(), observed_lattices())
def test_plan_is_deterministic_and_ignores_host_order(
    desired: DesiredState, observed: dict[str, HostInventory]
) -> None:
    acts = plan(desired, observed)
    assert plan(desired, observed) == acts
    backwards = dict(reversed(observed.items()))
    again = plan(desired, backwards)
    assert again == acts
    assert [a.reason for a in again] == [a.reason for a in acts]


@PROPS
@given(desired_states(), observed_lattices())
def test_applied_work_is_not_planned_again(
    desired: DesiredState, observed: dict[str, HostInventory]
) -> None:
    """After a plan is applied, only what could not be placed comes back under its key."""
    acts = plan(desired, observed)
    applied = apply_plan(acts, observed)
    again = {a.key for a in plan(desired, applied.observed)}
    assert again & {a.key for a in acts} <= applied.unplaced


@PROPS
@given(desired_states(), observed_lattices())
def test_plans_converge_in_a_few_rounds(
    desired: DesiredState, observed: dict[str, HostInventory]
) -> None:
    """Apply, plan again: the lattice settles (nothing left, or only unplaceable starts)
    within a few rounds, and nothing unowned is ever stopped on the way."""
    before = unmanaged(observed)
    current = observed
    for _ in range(ROUNDS):
        acts = plan(desired, current)
        applied = apply_plan(acts, current)
        if not acts:
            break
        if applied.observed == current:  # stuck: only starts nobody can place
            assert all(isinstance(a, A.StartActor | A.StartProvider) for a in acts), acts
            assert {a.key for a in acts} == applied.unplaced
            break
        current = applied.observed
    else:
        raise AssertionError(f"not settled after {ROUNDS} rounds: {plan(desired, current)}")
    after = unmanaged(current)
    # unowned actors and providers survive; unowned bindings may go with a stopped provider
    assert [u for u in before if u.kind != "binding"] == [
        u for u in after if u.kind != "binding"]



@PROPS
@given(desired_states(), observed_lattices())
def test_later_rounds_only_bind_what_was_placed_or_retry_what_was_not(
    desired: DesiredState, observed: dict[str, HostInventory]
) -> None:
    """What a plan cannot do in one round: put a binding on the host that a start of the
    same plan will pick (the executor's auction chooses it), or start what no host could
    take yet (a provider swapped on the one host that may run it). So every plan after an
    applied one holds only binding puts and the previous round's unplaced starts, and a
    round that placed nothing new leaves only those starts."""
    applied = apply_plan(plan(desired, observed), observed)
    for _ in range(ROUNDS):
        acts = plan(desired, applied.observed)
        assert all(isinstance(a, A.PutBinding) or a.key in applied.unplaced
                   for a in acts), acts
        if not acts:
            break
        nxt = apply_plan(acts, applied.observed)
        if nxt.observed == applied.observed:  # nothing placed: only unplaceable starts left
            assert all(isinstance(a, A.StartActor | A.StartProvider) for a in acts), acts
            break
        applied = nxt
