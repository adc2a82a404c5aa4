"""Providers follow the placement rules actors do (issue 16, section 1): ``replicas`` on
distinct hosts, divided by ``spread`` weights over shares with their own requirements;
``daemon`` and ``max_per_host`` as before. Unit cases and a hypothesis property: planning
and applying reaches a fixpoint where every share has its target or no host left to take
it, nothing runs twice on a host and nothing beyond ``replicas`` keeps running."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from lattice.manifests import DesiredState, ProviderSpec, SpreadShare
from lattice.protocol import HostInventory
from reconciler import actions as A
from reconciler.assess import assess
from reconciler.matching import Matcher
from reconciler.placement import divide
from reconciler.planner import plan
from tests.planner_strategies import T0, apply_plan, deployment, host, lattice, state

CAP = "wascc:messaging"


def spec(replicas: int = 1, spread: list[SpreadShare] | None = None,
         rules: list[str] | None = None) -> ProviderSpec:
    return ProviderSpec(id=CAP, vendor_id="nats", replicas=replicas, spread=spread or [],
                        affinity_rules=rules or [])


def converge(desired: DesiredState, observed: dict[str, HostInventory], rounds: int = 6
             ) -> dict[str, HostInventory]:
    for _ in range(rounds):
        acts = plan(desired, observed)
        applied = apply_plan(acts, observed)
        if not acts or {a.key for a in acts} <= applied.unplaced:
            return observed
        observed = applied.observed
    raise AssertionError(f"no fixpoint: {plan(desired, observed)}")


def running(observed: dict[str, HostInventory]) -> list[str]:
    return sorted(h for h, inv in observed.items() for p in inv.providers
                  if p.capability_id == CAP)


def test_replicas_run_on_distinct_hosts_and_are_counted() -> None:
    desired = state(deployment("web", [], [spec(replicas=3)]))
    observed = lattice(*(host(f"H{i}") for i in range(5)))
    first = [a for a in plan(desired, observed) if isinstance(a, A.StartProvider)]
    assert [a.replica for a in first] == ["0", "1", "2"]
    assert len({a.key for a in first}) == 3
    done = converge(desired, observed)
    assert len(running(done)) == 3 and len(set(running(done))) == 3
    assert plan(desired, done) == []
    deps, _ = assess(desired, done, unplaced={}, failures={}, now=T0)
    assert (deps["web"].providers.ready, deps["web"].providers.desired) == (3, 3)
    # a host running one leaves: another host takes its place
    gone = {h: inv for h, inv in done.items() if h != running(done)[0]}
    again = converge(desired, gone)
    assert len(running(again)) == 3 and running(done)[0] not in running(again)


def test_spread_weights_divide_provider_replicas_over_their_shares() -> None:
    desired = state(deployment("web", [], [spec(replicas=4, spread=[
        SpreadShare(name="east", weight=75, requirements=["zone=a"]),
        SpreadShare(name="west", weight=25, requirements=["zone=b"])])]))
    observed = lattice(*(host(f"A{i}", {"zone": "a"}) for i in range(4)),
                       *(host(f"B{i}", {"zone": "b"}) for i in range(3)))
    done = converge(desired, observed)
    zones = sorted(done[h].labels["zone"] for h in running(done))
    assert zones == ["a", "a", "a", "b"]
    deps, _ = assess(desired, done, unplaced={}, failures={}, now=T0)
    messages = [p.message for p in deps["web"].placements if p.kind == "provider"]
    assert sum("spread east: 3/3" in m for m in messages) == 3
    assert sum("spread west: 1/1" in m for m in messages) == 1


def test_a_share_no_host_takes_is_named_and_the_others_run() -> None:
    desired = state(deployment("web", [], [spec(replicas=2, spread=[
        SpreadShare(name="east", weight=1, requirements=["zone=a"]),
        SpreadShare(name="west", weight=1, requirements=["zone=b"])])]))
    observed = lattice(host("A0", {"zone": "a"}), host("A1", {"zone": "a"}))
    acts = plan(desired, observed)
    applied = apply_plan(acts, observed)
    west = next(a for a in acts if isinstance(a, A.StartProvider) and a.replica == "west-0")
    assert applied.unplaced == {west.key}
    unplaced = {west.key: "no host satisfies zone=b"}
    deps, _ = assess(desired, applied.observed, unplaced=unplaced, failures={}, now=T0)
    assert (deps["web"].providers.ready, deps["web"].providers.desired) == (1, 2)
    assert any("spread west: no host satisfies zone=b" in c.message
               for c in deps["web"].conditions)


def test_surplus_replicas_stop_when_replicas_go_down() -> None:
    three = state(deployment("web", [], [spec(replicas=3)]))
    done = converge(three, lattice(*(host(f"H{i}") for i in range(4))))
    one = state(deployment("web", [], [spec(replicas=2)]))
    stops = [a for a in plan(one, done) if isinstance(a, A.StopProvider)]
    assert len(stops) == 1
    assert len(running(converge(one, done))) == 2


@pytest.mark.parametrize(("fields", "text"), [
    ({"daemon": True, "replicas": 2}, "remove replicas: 2"),
    ({"daemon": True, "spread": [{"name": "a", "weight": 1}]}, "cannot have a spread"),
    ({"replicas": 0}, "greater than or equal to 1"),
    ({"spread": [{"name": "a", "weight": 1}, {"name": "a", "weight": 2}]}, "named twice"),
])
def test_provider_placement_fields_are_validated(fields: dict[str, object], text: str) -> None:
    with pytest.raises(ValidationError, match=text):
        ProviderSpec.model_validate({"id": CAP, "vendor_id": "nats", **fields})


labels = st.sampled_from(({}, {"zone": "a"}, {"zone": "b"}, {"zone": "a", "edge": "1"}))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(labels, min_size=1, max_size=7), st.integers(1, 5),
       st.lists(st.integers(1, 4), max_size=3), st.booleans(),
       st.lists(st.integers(0, 6), max_size=3))
def test_provider_replicas_reach_a_fixpoint_on_target_or_out_of_hosts(
    host_labels: list[dict[str, str]], replicas: int, weights: list[int], edge: bool,
    leaving: list[int],
) -> None:
    reqs = (["zone=a"], ["zone=b"], [])
    shares = [SpreadShare(name=f"s{i}", weight=w, requirements=reqs[i])
              for i, w in enumerate(weights)]
    desired = state(deployment("web", [], [spec(replicas, shares, ["edge"] if edge else [])]))
    observed = lattice(*(host(f"H{i}", lab) for i, lab in enumerate(host_labels)))
    for k in [-1, *leaving]:
        if k >= 0 and observed:
            del observed[sorted(observed)[k % len(observed)]]
        observed = converge(desired, observed)
        on = running(observed)
        assert len(on) == len(set(on)) and len(on) <= replicas
        found = Matcher().analyse(desired, observed)
        if replicas == 1 and not weights:  # run once: a provider group as before
            assert not found.provider_spreads and len(on) == 1 - (not found.providers[0].chosen)
            continue
        [sp] = found.provider_spreads
        targets = divide(replicas, weights) if weights else [replicas]
        assert [s.target for s in sp.shares] == targets
        taken = {h.host_id for s in sp.shares for h, _p in s.chosen}
        for share in sp.shares:
            short = share.target - len(share.chosen)
            free = [h for h, inv in observed.items()
                    if h not in taken and share.rules.allows(inv)]
            assert short == 0 or not free, (share.name, short, free)
            assert all(share.rules.allows(h) for h, _p in share.chosen)
