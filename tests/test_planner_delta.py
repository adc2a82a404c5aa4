"""A kept Matcher patches its last analysis when a few hosts change (issue 16, section 4):
a host leaving, changing labels, losing or gaining instances (a duplicate, other limits,
a stray) re-matches only the deployments it touches. Property: after every such change the
patched analysis plans and assesses as a fresh matcher does, and it was patched (the rule
sets are its predecessor's), not built again.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lattice.manifests import ActorLimits, ActorSpec, DesiredState, ProviderSpec, SpreadShare
from lattice.protocol import ANN_LIMITS, ActorInstance, HostInventory
from reconciler.assess import assess
from reconciler.matching import Matcher
from reconciler.planner import plan
from tests.planner_strategies import (
    ACTORS,
    CAPS,
    T0,
    actor_inst,
    apply_plan,
    deployment,
    desired_states,
    host,
    labels_st,
    observed_lattices,
    owned,
    state,
)
from tests.test_planner_matcher import moves_of, summary

PROPS = settings(max_examples=200, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow])


@st.composite
def placed_states(draw: st.DrawFn) -> DesiredState:
    """Deployments with spread shares, max_per_host, limits and rebalancing on or off,
    providers run once or twice (no daemons: they follow every host and are built in
    full, as are provider replicas)."""
    deps = []
    for k, name in enumerate(draw(st.lists(st.sampled_from(("alpha", "beta", "gamma")),
                                           min_size=1, max_size=3, unique=True))):
        actors = []
        for aid in draw(st.lists(st.sampled_from(ACTORS), min_size=1, max_size=2, unique=True)):
            spread = draw(st.booleans())
            actors.append(ActorSpec(
                id=aid, replicas=draw(st.integers(1, 5)),
                affinity_rules=draw(st.sampled_from(([], ["!gpu"], ["zone!=b"]))),
                spread=[SpreadShare(name="east", weight=draw(st.integers(1, 3)),
                                    requirements=["zone=a"]),
                        SpreadShare(name="west", weight=1, requirements=["zone=b"])]
                if spread else [],
                max_per_host=draw(st.sampled_from((None, 1, 2))),
                limits=ActorLimits(memory_mib=16) if draw(st.booleans()) else None))
        providers = [ProviderSpec(id=CAPS[k % 2], vendor_id="nats",
                                  affinity_rules=draw(st.sampled_from(([], ["zone=a"]))),
                                  replicas=draw(st.sampled_from((1, 1, 2))))]
        dep = deployment(name, actors, providers)
        deps.append(dep.model_copy(update={"spec": dep.spec.model_copy(
            update={"rebalance": draw(st.booleans())})}))
    return state(*deps)


@dataclass(frozen=True)
class Change:
    """What happens to one host between two passes."""

    kind: str  # leave | relabel | drop | copy | limits | stray | join
    pick: int
    other: int
    labels: dict[str, str]


changes_st = st.lists(st.builds(
    Change, kind=st.sampled_from(("leave", "relabel", "drop", "copy", "limits", "stray",
                                  "join")),
    pick=st.integers(0, 20), other=st.integers(0, 20), labels=labels_st), min_size=1,
    max_size=6)


def change(c: Change, observed: dict[str, HostInventory], k: int) -> dict[str, HostInventory]:
    """``observed`` with one host's record changed (a new object), gone, or joined."""
    hosts = sorted(observed)
    if not hosts:
        return {f"J{k}": host(f"J{k}", c.labels)}
    hid = hosts[c.pick % len(hosts)]
    one = observed[hid]
    everyone = [a for h in hosts for a in observed[h].actors]
    out = dict(observed)
    if c.kind == "leave":
        del out[hid]
        return out
    if c.kind == "relabel":
        new = one.model_copy(update={"labels": c.labels})
    elif c.kind == "drop":
        new = one.model_copy(update={"actors": one.actors[: c.other % (len(one.actors) + 1)]})
    elif c.kind == "copy" and everyone:  # another host's instance claimed here too
        src = everyone[c.other % len(everyone)]
        dup = src.model_copy(update={"instance_id": f"{hid}-dup{k}",
                                     "started_at": T0})
        new = one.model_copy(update={"actors": [*one.actors, dup]})
    elif c.kind == "limits" and one.actors:
        a = one.actors[c.other % len(one.actors)]
        ann = {**a.annotations, ANN_LIMITS: "memory_mib=32"}
        new = one.model_copy(update={"actors": [
            a.model_copy(update={"annotations": ann}) if b is a else b for b in one.actors]})
    elif c.kind == "stray":
        stray = actor_inst(ACTORS[c.other % len(ACTORS)], f"{hid}-s{k}",
                           owned("BindingSet", "b-one"))
        new = one.model_copy(update={"actors": [*one.actors, stray]})
    elif c.kind == "join" and everyone:  # a host joins running a copy of an instance
        src = everyone[c.other % len(everyone)]
        out[f"J{k}"] = host(f"J{k}", c.labels, actors=[
            ActorInstance(actor_id=src.actor_id, instance_id=f"J{k}-a",
                          annotations=src.annotations, started_at=T0)])
        return out
    else:
        new = one.model_copy(update={"labels": c.labels})
    out[hid] = new
    return out


def check(desired: DesiredState, observed: dict[str, HostInventory], kept: Matcher) -> None:
    got, want = kept.analyse(desired, observed), Matcher().analyse(desired, observed)
    assert summary(got) == summary(want)
    assert moves_of(got) == moves_of(want)
    assert got.rebalancing == want.rebalancing
    assert plan(desired, observed, matcher=kept) == plan(desired, observed)
    assert assess(desired, observed, unplaced={}, failures={}, now=T0, matcher=kept) == \
        assess(desired, observed, unplaced={}, failures={}, now=T0)


def run(desired: DesiredState, observed: dict[str, HostInventory], rounds: int,
        changes: list[Change]) -> int:
    """Converge for ``rounds`` plans, then apply ``changes`` one by one, checking each;
    the number of analyses that were patched."""
    kept = Matcher()
    for _ in range(rounds):
        observed = apply_plan(plan(desired, observed, matcher=kept), observed).observed
    patched = 0
    for k, c in enumerate(changes):
        before = kept.analyse(desired, observed)
        observed = change(c, observed, k)
        check(desired, observed, kept)
        after = kept.analyse(desired, observed)
        if after is not before and after.rulesets is before.rulesets:
            patched += 1
        elif after is not before:  # built in full: daemons, provider replicas
            assert (before.daemons or before.daemon_actors or before.provider_spreads
                    or len(before.hosts) == 0)
    return patched


@PROPS
@given(placed_states(), observed_lattices(), st.integers(0, 3), changes_st)
def test_a_changed_host_patched_in_plans_as_a_fresh_matcher(
    desired: DesiredState, initial: dict[str, HostInventory], rounds: int,
    changes: list[Change],
) -> None:
    run(desired, initial, rounds, changes)


@PROPS
@given(desired_states(), observed_lattices(), st.integers(0, 2), changes_st)
def test_a_changed_host_patched_in_plans_as_a_fresh_matcher_any_desired_state(
    desired: DesiredState, initial: dict[str, HostInventory], rounds: int,
    changes: list[Change],
) -> None:
    run(desired, initial, rounds, changes)


def test_a_host_leaving_a_converged_lattice_is_patched_not_built_again() -> None:
    desired = state(deployment("web", [ActorSpec(id=ACTORS[0], replicas=4)],
                               [ProviderSpec(id=CAPS[0], vendor_id="nats")]))
    observed = {f"H{i}": host(f"H{i}", {"zone": "a"}) for i in range(6)}
    for _ in range(4):
        observed = apply_plan(plan(desired, observed), observed).observed
    kept = Matcher()
    assert plan(desired, observed, matcher=kept) == []
    busy = next(h for h, inv in sorted(observed.items()) if inv.actors)
    gone = {h: inv for h, inv in observed.items() if h != busy}
    assert run(desired, observed, 0, [Change("leave", sorted(observed).index(busy), 0, {})]) == 1
    acts = plan(desired, gone, matcher=kept)
    assert acts == plan(desired, gone)
    assert next(a.key for a in acts if a.phase == 0).startswith("actor.start/web/")
