"""matching: canonical rule sets and analyse(), the matching shared by plan and assess."""

from __future__ import annotations

import pytest

from lattice.errors import SelectorError
from lattice.manifests import ActorSpec, BindingSpec, Deployment, ProviderKey, ProviderSpec
from reconciler.matching import RuleSet, analyse, canonical_rules
from tests.planner_strategies import (
    ACTORS,
    actor_inst,
    binding_inst,
    bindingset,
    deployment,
    host,
    lattice,
    owned,
    provider_inst,
    state,
)

A0 = ACTORS[0]
MSG = "wascc:messaging"
KEY = ProviderKey(MSG, "default", "nats")


@pytest.mark.parametrize(("rules", "canon"), [
    ((), ()),
    (("leds == 12",), ("leds=12",)),
    (("zone=a", "leds == 12", "leds=12"), ("leds=12", "zone=a")),
    ((" gpu ", "!gpu", "zone != b"), ("!gpu", "gpu", "zone!=b")),
])
def test_canonical_rules(rules: tuple[str, ...], canon: tuple[str, ...]) -> None:
    assert canonical_rules(rules) == canon


def test_canonical_rules_rejects_bad_rules() -> None:
    with pytest.raises(SelectorError):
        canonical_rules(("zone=a", "!zone=a"))


def test_rule_set_verdicts_and_description() -> None:
    rs = RuleSet(("zone=a",))
    assert rs.allows(host("H0", {"zone": "a"})) and not rs.allows(host("H1"))
    assert rs.verdicts == {"H0": True, "H1": False}
    assert str(rs) == "zone=a" and str(RuleSet(())) == "(no affinity rules)"
    assert RuleSet(()).allows(host("H2"))


def test_actor_slots_hold_the_serving_instances() -> None:
    desired = state(deployment("alpha", [ActorSpec(id=A0, replicas=3,
                                                   affinity_rules=["zone = a"])]))
    running = actor_inst(A0, "i0", owned("Deployment", "alpha", "r0", replica=0))
    observed = lattice(host("H0", {"zone": "a"}, actors=[running]),
                       host("H1", {"zone": "a"}, actors=[actor_inst(A0, "hand")]))
    found = analyse(desired, observed)
    (slots,) = found.actors
    assert (slots.deployment, slots.actor_id, slots.rules.rules) == ("alpha", A0, ("zone=a",))
    assert slots.instances == [running, None, None]
    assert found.host_of(running).host_id == "H0"
    assert found.surplus_actors == []


def shared() -> tuple[Deployment, Deployment]:
    return (deployment("alpha", providers=[ProviderSpec(id=MSG, vendor_id="nats")]),
            deployment("beta", providers=[ProviderSpec(id=MSG, vendor_id="nats",
                                                       affinity_rules=["leds=12"])]))


def test_provider_group_choice_is_stable_under_a_later_instance() -> None:
    desired = state(*shared())
    first = provider_inst(MSG, "p-alpha", owned("Deployment", "alpha"), at=5)
    later = provider_inst(MSG, "p-beta", owned("Deployment", "beta"), at=9)
    before = analyse(desired, lattice(host("H1", {"leds": "12"}, providers=[first])))
    # one instance on a leds=12 host serves both groups until beta gets its own
    assert [(g.owners, g.chosen[1].instance_id if g.chosen else None)
            for g in before.providers] == [(("alpha",), "p-alpha"), (("beta",), "p-alpha")]
    after = analyse(desired, lattice(host("H1", {"leds": "12"}, providers=[first]),
                                     host("H0", {"leds": "12"}, providers=[later])))
    assert [(g.owners, g.chosen[1].instance_id if g.chosen else None)
            for g in after.providers] == [(("alpha",), "p-alpha"), (("beta",), "p-beta")]
    assert after.surplus_providers == []
    assert after.group_of[("beta", KEY)] is after.providers[1]


def test_a_later_owned_instance_may_take_over_from_an_unowned_one() -> None:
    """Harmless: unowned instances are never stopped, so nothing churns."""
    desired = state(*shared())
    hand = provider_inst(MSG, "hand", at=0)
    later = provider_inst(MSG, "p-beta", owned("Deployment", "beta"), at=9)
    found = analyse(desired, lattice(host("H0", providers=[hand]),
                                     host("H1", {"leds": "12"}, providers=[later])))
    assert [g.chosen[1].instance_id if g.chosen else None for g in found.providers] == [
        "p-beta", "p-beta"]
    assert found.surplus_providers == []


def test_provider_preference_mine_then_owned_then_oldest() -> None:
    desired = state(deployment("alpha", providers=[ProviderSpec(id=MSG, vendor_id="nats")]))
    hand = provider_inst(MSG, "hand", at=0)
    gone = provider_inst(MSG, "gone", owned("Deployment", "gone"), at=1)
    mine = provider_inst(MSG, "mine", owned("Deployment", "beta,alpha"), at=2)
    for expected, running in [("mine", [hand, gone, mine]), ("gone", [hand, gone]),
                              ("hand", [hand])]:
        observed = lattice(*(host(f"H{i}", providers=[p]) for i, p in enumerate(running)))
        (group,) = analyse(desired, observed).providers
        assert group.chosen is not None and group.chosen[1].instance_id == expected


def test_bindings_match_ready_wins_and_stopping_providers() -> None:
    spec = BindingSpec(capability_id=MSG, actor=A0, values={"K": "v"})
    desired = state(bindingset("b-one", [spec]),
                    bindingset("b-two", [spec.model_copy(update={"values": {"K": "w"}})]))
    observed = lattice(
        host("H0", providers=[provider_inst(MSG, "p0")],
             bindings=[binding_inst(A0, MSG, {"K": "v"}, owned("BindingSet", "b-one"))]),
        host("H1", providers=[provider_inst(MSG, "p1", owned("Deployment", "gone"))],
             bindings=[binding_inst(A0, MSG, {"K": "v"}, owned("BindingSet", "b-one"))]))
    found = analyse(desired, observed)
    one, two = found.bindings
    assert (one.bindingset, one.owner, one.wins, one.ready) == ("b-one", "b-one", True, True)
    assert [h.host_id for h in one.hosts] == ["H0"]  # H1's provider is being stopped
    assert (two.owner, two.wins, two.ready) == ("b-one", False, False)
    assert [s.host.host_id for s in two.stale] == ["H0"]
    assert found.surplus_bindings == []  # H1's binding goes with its provider
    assert [(h.host_id, p.instance_id) for h, p, _ in found.surplus_providers] == [("H1", "p1")]
