"""plan(desired, observed) and unmanaged(observed): example tables, one behaviour per test.

Pure and fast: no NATS, no processes. The builders come from tests/planner_strategies.py,
which also holds the hypothesis strategies of tests/test_planner_properties.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

import pytest

from lattice.manifests import (
    ActorSpec,
    BindingSet,
    BindingSpec,
    Deployment,
    DesiredState,
    ProviderSpec,
    SpreadShare,
)
from lattice.protocol import HostInventory
from lattice.status import UnmanagedEntity
from reconciler import actions as A
from reconciler.planner import plan, unmanaged
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

A0, A1 = ACTORS[0], ACTORS[1]
MSG = "wascc:messaging"
LED = "iot:ledcontroller"
DEP = "Deployment"
BSET = "BindingSet"
T = TypeVar("T")
Observed = dict[str, HostInventory]


def rep(name: str, r: int, revision: str = "r1") -> dict[str, str]:
    """Annotations of replica ``r`` of a deployment's actor."""
    return owned(DEP, name, revision, replica=r)


def of_type(actions: list[A.Action], kind: type[T]) -> list[T]:
    return [a for a in actions if isinstance(a, kind)]


def kinds(actions: list[A.Action]) -> list[str]:
    return [type(a).__name__ for a in actions]


def one_actor(name: str = "alpha", replicas: int = 1, rules: list[str] | None = None,
              aid: str = A0) -> Deployment:
    return deployment(name, [ActorSpec(id=aid, replicas=replicas, affinity_rules=rules or [])])


def msg_provider(rules: list[str] | None = None, vendor: str = "nats",
                 bn: str = "default") -> ProviderSpec:
    return ProviderSpec(id=MSG, binding_name=bn, vendor_id=vendor, affinity_rules=rules or [])


# ---------------------------------------------------------------- starting from nothing

def test_nothing_desired_nothing_running() -> None:
    assert plan(state(), {}) == []
    assert plan(state(), lattice(host("H0"))) == []


def test_empty_lattice_starts_every_replica_and_provider() -> None:
    desired = state(deployment(
        "alpha", [ActorSpec(id=A0, replicas=3, affinity_rules=["leds == 12", "zone=a"])],
        [msg_provider(["zone=a"])]))
    acts = plan(desired, lattice(host("H0"), host("H1")))
    assert kinds(acts) == ["StartActor"] * 3 + ["StartProvider"]
    starts = of_type(acts, A.StartActor)
    assert [s.replica for s in starts] == [0, 1, 2]
    for s in starts:
        assert s.deployment == "alpha" and s.actor_id == A0
        assert s.constraints == ("leds=12", "zone=a")  # canonical spelling, sorted
        assert dict(s.annotations) == rep("alpha", s.replica)
        assert s.annotations == tuple(sorted(s.annotations))
        assert s.avoid_hosts == ()
        assert s.key == A.start_actor_key("alpha", A0, s.replica)
        assert "replica" in s.reason and "alpha" in s.reason
    (prov,) = of_type(acts, A.StartProvider)
    assert (prov.capability_id, prov.binding_name, prov.vendor_id) == (MSG, "default", "nats")
    assert prov.constraints == ("zone=a",)
    assert prov.owners == ("alpha",)
    assert dict(prov.annotations) == owned(DEP, "alpha")
    assert prov.key == A.start_provider_key(MSG, "default", "nats", ("zone=a",))
    # no provider runs yet, so no binding can be put anywhere
    assert not of_type(acts, A.PutBinding)


def test_empty_lattice_with_no_hosts_still_plans_starts() -> None:
    acts = plan(state(one_actor(replicas=2)), {})
    assert [a.key for a in acts] == [A.start_actor_key("alpha", A0, r) for r in (0, 1)]


def test_missing_replicas_avoid_hosts_running_the_others() -> None:
    observed = lattice(host("H1", actors=[actor_inst(A0, "i0", rep("alpha", 0))]),
                       host("H0", actors=[actor_inst(A0, "i2", rep("alpha", 2))]),
                       host("H2"))
    acts = plan(state(one_actor(replicas=4)), observed)
    assert [(a.replica, a.avoid_hosts) for a in of_type(acts, A.StartActor)] == [
        (1, ("H0", "H1")), (3, ("H0", "H1"))]
    assert len(acts) == 2


def test_revision_is_stamped_on_new_entities() -> None:
    acts = plan(state(one_actor(), revision="abc123"), lattice(host("H0")))
    (start,) = of_type(acts, A.StartActor)
    assert dict(start.annotations)["vinculum.io/revision"] == "abc123"


# ---------------------------------------------------------------- converged

def converged_lattice() -> tuple[DesiredState, Observed]:
    desired = state(
        deployment("alpha", [ActorSpec(id=A0, replicas=2, affinity_rules=["zone=a"])],
                   [msg_provider()]),
        bindingset("b-one", [BindingSpec(capability_id=MSG, actor=A0,
                                         values={"SUBSCRIPTION": "foo"})]))
    observed = lattice(
        host("H0", {"zone": "a"}, actors=[actor_inst(A0, "i0", rep("alpha", 0))],
             providers=[provider_inst(MSG, "p0", owned(DEP, "alpha"))],
             bindings=[binding_inst(A0, MSG, {"SUBSCRIPTION": "foo"}, owned(BSET, "b-one"))]),
        host("H1", {"zone": "a"}, actors=[actor_inst(A0, "i1", rep("alpha", 1))]))
    return desired, observed


def test_converged_lattice_plans_nothing() -> None:
    desired, observed = converged_lattice()
    assert plan(desired, observed) == []


def test_new_revision_alone_plans_nothing() -> None:
    desired, observed = converged_lattice()
    newer = desired.model_copy(update={"revision": "r2"})
    assert plan(newer, observed) == []


# ---------------------------------------------------------------- actors

def test_scale_down_stops_the_highest_surplus_replicas() -> None:
    observed = lattice(
        host("H0", actors=[actor_inst(A0, "i0", rep("alpha", 0)),
                           actor_inst(A0, "i2", rep("alpha", 2))]),
        host("H1", actors=[actor_inst(A0, "i1", rep("alpha", 1))]))
    acts = plan(state(one_actor(replicas=1)), observed)
    assert kinds(acts) == ["StopActor", "StopActor"]
    stops = of_type(acts, A.StopActor)
    assert {(s.host_id, s.instance_id) for s in stops} == {("H0", "i2"), ("H1", "i1")}
    by_id = {s.instance_id: s for s in stops}
    assert by_id["i2"].reason == "replica 2 is not among the 1 deployment alpha wants"
    assert by_id["i1"].key == A.stop_actor_key("H1", A0, "i1")


def test_scale_to_zero_stops_all() -> None:
    observed = lattice(host("H0", actors=[actor_inst(A0, "i0", rep("alpha", 0))]))
    acts = plan(state(one_actor(replicas=0)), observed)
    assert [a.key for a in acts] == [A.stop_actor_key("H0", A0, "i0")]


def test_host_no_longer_satisfying_rules_moves_the_replica() -> None:
    observed = lattice(
        host("H0", {"zone": "b"}, actors=[actor_inst(A0, "i0", rep("alpha", 0))]),
        host("H1", {"zone": "a"}, actors=[actor_inst(A0, "i1", rep("alpha", 1))]))
    acts = plan(state(one_actor(replicas=2, rules=["zone=a"])), observed)
    assert kinds(acts) == ["StartActor", "StopActor"]
    start, stop = acts
    assert isinstance(start, A.StartActor) and isinstance(stop, A.StopActor)
    assert start.replica == 0 and start.avoid_hosts == ("H1",)  # not the ineligible host
    assert (stop.host_id, stop.instance_id) == ("H0", "i0")
    assert stop.reason == "host name-H0 no longer satisfies zone=a"


def test_actor_removed_from_deployment_is_stopped() -> None:
    observed = lattice(host("H0", actors=[actor_inst(A0, "i0", rep("alpha", 0)),
                                          actor_inst(A1, "i1", rep("alpha", 0))]))
    acts = plan(state(one_actor(aid=A1)), observed)
    (stop,) = acts
    assert isinstance(stop, A.StopActor) and stop.instance_id == "i0"
    assert stop.reason == "the actor is no longer part of deployment alpha"


def test_removed_deployment_stops_what_it_owns() -> None:
    observed = lattice(host(
        "H0", actors=[actor_inst(A0, "i0", rep("gone", 0)), actor_inst(A0, "i1", rep("alpha", 0))],
        providers=[provider_inst(MSG, "p0", owned(DEP, "gone"))]))
    acts = plan(state(one_actor()), observed)
    assert kinds(acts) == ["StopActor", "StopProvider"]
    stop_a, stop_p = acts
    assert isinstance(stop_a, A.StopActor) and stop_a.instance_id == "i0"
    assert stop_a.reason == "deployment gone is no longer desired"
    assert isinstance(stop_p, A.StopProvider)
    assert stop_p.key == A.stop_provider_key("H0", MSG, "default")
    assert stop_p.reason == f"no deployment needs {MSG}/default any more"


def test_owned_actor_of_another_kind_is_stopped() -> None:
    observed = lattice(host("H0", actors=[actor_inst(A0, "i0", owned(BSET, "b-one"))]))
    (stop,) = plan(state(), observed)
    assert isinstance(stop, A.StopActor) and stop.reason == "not part of any deployment"


def test_duplicate_replicas_keep_the_earliest() -> None:
    observed = lattice(
        host("H0", actors=[actor_inst(A0, "late", rep("alpha", 0), at=5)]),
        host("H1", actors=[actor_inst(A0, "early", rep("alpha", 0, "r0"), at=1)]),
        host("H2", actors=[actor_inst(A0, "later", rep("alpha", 0), at=9)]))
    acts = plan(state(one_actor()), observed)
    assert kinds(acts) == ["StopActor", "StopActor"]
    assert {a.instance_id for a in of_type(acts, A.StopActor)} == {"late", "later"}
    assert all(a.reason == "duplicate of replica 0, which runs on host name-H1 as early"
               for a in of_type(acts, A.StopActor))


def test_duplicate_replicas_prefer_an_eligible_host() -> None:
    observed = lattice(
        host("H0", {"zone": "b"}, actors=[actor_inst(A0, "early", rep("alpha", 0), at=1)]),
        host("H1", {"zone": "a"}, actors=[actor_inst(A0, "late", rep("alpha", 0), at=5)]))
    (stop,) = plan(state(one_actor(rules=["zone=a"])), observed)
    assert isinstance(stop, A.StopActor) and stop.instance_id == "early"
    assert stop.reason == "host name-H0 no longer satisfies zone=a"


def test_duplicates_all_on_ineligible_hosts_are_all_replaced() -> None:
    observed = lattice(
        host("H0", {"zone": "b"}, actors=[actor_inst(A0, "x", rep("alpha", 0), at=1)]),
        host("H1", {"zone": "b"}, actors=[actor_inst(A0, "y", rep("alpha", 0), at=5)]),
        host("H2", {"zone": "a"}))
    acts = plan(state(one_actor(rules=["zone=a"])), observed)
    assert kinds(acts) == ["StartActor", "StopActor", "StopActor"]
    assert of_type(acts, A.StartActor)[0].avoid_hosts == ()


# ---------------------------------------------------------------- ownership

def test_unowned_entities_are_never_stopped_or_deleted() -> None:
    observed = lattice(host(
        "H0", actors=[actor_inst(A0, "i0"), actor_inst(A1, "i1", {"team": "x"})],
        providers=[provider_inst(MSG, "p0"), provider_inst(LED, "p1", vendor="wascc")],
        bindings=[binding_inst(A0, MSG, {"K": "v"})]))
    assert plan(state(), observed) == []
    # desired something else entirely: still no stop or delete of those
    acts = plan(state(one_actor(aid=A1, replicas=0)), observed)
    assert acts == []


def test_an_unowned_actor_does_not_count_as_a_replica() -> None:
    observed = lattice(host("H0", actors=[actor_inst(A0, "mine-by-hand")]))
    acts = plan(state(one_actor()), observed)
    assert kinds(acts) == ["StartActor"]


def test_an_unowned_provider_satisfies_a_need_and_gets_bindings() -> None:
    desired = state(
        deployment("alpha", providers=[msg_provider(["zone=a"])]),
        bindingset("b-one", [BindingSpec(capability_id=MSG, actor=A0, values={"K": "v"})]))
    observed = lattice(host("H0", {"zone": "a"}, providers=[provider_inst(MSG, "by-hand")]))
    (put,) = plan(desired, observed)
    assert isinstance(put, A.PutBinding) and put.host_id == "H0"


def test_unowned_provider_on_an_ineligible_host_does_not_satisfy() -> None:
    desired = state(deployment("alpha", providers=[msg_provider(["zone=a"])]))
    observed = lattice(host("H0", {"zone": "b"}, providers=[provider_inst(MSG, "by-hand")]))
    assert kinds(plan(desired, observed)) == ["StartProvider"]


def test_unmanaged_lists_everything_not_started_by_the_agent() -> None:
    observed = lattice(
        host("H1", actors=[actor_inst(A0, "i0"), actor_inst(A0, "i1", rep("alpha", 0))],
             bindings=[binding_inst(A0, MSG)]),
        host("H0", providers=[provider_inst(MSG, "p0", {"vinculum.io/managed-by": "other"}),
                              provider_inst(LED, "p1", owned(DEP, "alpha"))]))
    assert unmanaged(observed) == [
        UnmanagedEntity(kind="provider", entity=f"{MSG}/default", host_id="H0"),
        UnmanagedEntity(kind="actor", entity=A0, host_id="H1"),
        UnmanagedEntity(kind="binding", entity=f"{A0}->{MSG}/default", host_id="H1"),
    ]
    assert unmanaged({}) == []


# ---------------------------------------------------------------- providers

def test_shared_provider_starts_once_for_every_owner() -> None:
    desired = state(
        deployment("beta", providers=[msg_provider(["leds=12"])]),
        deployment("alpha", providers=[msg_provider(["leds == 12"])]),
        deployment("gamma", providers=[msg_provider()]))
    acts = plan(desired, lattice(host("H0")))
    starts = of_type(acts, A.StartProvider)
    assert len(acts) == len(starts) == 2  # one per rule set
    by_rules = {s.constraints: s for s in starts}
    assert by_rules[("leds=12",)].owners == ("alpha", "beta")
    assert dict(by_rules[("leds=12",)].annotations)["vinculum.io/name"] == "alpha,beta"
    assert by_rules[()].owners == ("gamma",)
    assert by_rules[()].reason == f"no host runs {MSG}/default from nats for gamma"
    assert by_rules[("leds=12",)].reason == (
        f"no host satisfying leds=12 runs {MSG}/default from nats for alpha, beta")
    assert len({s.key for s in starts}) == 2


def test_shared_provider_instance_serves_a_group_with_new_members() -> None:
    desired = state(deployment("alpha", providers=[msg_provider()]),
                    deployment("delta", providers=[msg_provider()]))
    observed = lattice(host("H0", providers=[provider_inst(MSG, "p0", owned(DEP, "alpha"))]))
    assert plan(desired, observed) == []


def test_removing_one_owner_keeps_the_shared_provider_for_the_others() -> None:
    """The wadm pain point: undeploying one app must not stop a provider another uses,
    whether the other was among the owners at start or came later."""
    observed = lattice(host("H0", providers=[
        provider_inst(MSG, "p0", owned(DEP, "alpha,beta"))]))
    for remaining in ("beta", "alpha"):
        assert plan(state(deployment(remaining, providers=[msg_provider()])), observed) == []
    late = state(deployment("gamma", providers=[msg_provider()]))  # joined after the start
    assert plan(late, observed) == []
    (stop,) = plan(state(deployment("other")), observed)  # nobody needs it any more
    assert isinstance(stop, A.StopProvider) and stop.host_id == "H0"


def test_one_instance_per_group_the_others_stop() -> None:
    desired = state(deployment("alpha", providers=[msg_provider()]))
    observed = lattice(
        host("H0", providers=[provider_inst(MSG, "old", owned(DEP, "gone"), at=1)]),
        host("H1", providers=[provider_inst(MSG, "mine", owned(DEP, "alpha"), at=9)]),
        host("H2", providers=[provider_inst(MSG, "hand", at=0)]))
    (stop,) = plan(desired, observed)
    assert isinstance(stop, A.StopProvider) and stop.host_id == "H0"
    assert stop.reason == f"another instance of {MSG}/default serves the deployments that need it"


def test_vendor_mismatch_replaces_an_owned_provider() -> None:
    desired = state(deployment("alpha", providers=[msg_provider(vendor="nats")]))
    observed = lattice(host("H0", providers=[
        provider_inst(MSG, "p0", owned(DEP, "alpha"), vendor="wascc")]))
    acts = plan(desired, observed)
    assert kinds(acts) == ["StartProvider", "StopProvider"]
    start, stop = acts
    assert isinstance(start, A.StartProvider) and start.vendor_id == "nats"
    assert stop.reason == f"deployments want {MSG}/default from vendor nats, not wascc"


def test_vendor_mismatch_leaves_an_unowned_provider_alone() -> None:
    desired = state(deployment("alpha", providers=[msg_provider(vendor="nats")]))
    observed = lattice(host("H0", providers=[provider_inst(MSG, "p0", vendor="wascc")]))
    assert kinds(plan(desired, observed)) == ["StartProvider"]


def test_provider_on_a_host_no_longer_eligible_is_replaced() -> None:
    desired = state(deployment("alpha", providers=[msg_provider(["zone=a"])]))
    observed = lattice(host("H0", {"zone": "b"}, providers=[
        provider_inst(MSG, "p0", owned(DEP, "alpha"))]), host("H1", {"zone": "a"}))
    acts = plan(desired, observed)
    assert kinds(acts) == ["StartProvider", "StopProvider"]
    assert acts[1].reason == (
        f"host name-H0 no longer satisfies the affinity rules of {MSG}/default")


def test_other_binding_name_is_another_provider() -> None:
    desired = state(deployment("alpha", providers=[msg_provider(bn="backup")]))
    observed = lattice(host("H0", providers=[provider_inst(MSG, "p0", owned(DEP, "alpha"))]))
    acts = plan(desired, observed)
    assert kinds(acts) == ["StartProvider", "StopProvider"]
    assert isinstance(acts[0], A.StartProvider) and acts[0].binding_name == "backup"


# ---------------------------------------------------------------- bindings

def bset(name: str = "b-one", values: dict[str, str] | None = None,
         vendor: str | None = None) -> BindingSet:
    return bindingset(name, [BindingSpec(capability_id=MSG, actor=A0, vendor_id=vendor,
                                         values={"K": "v"} if values is None else values)])


def test_bindings_go_on_every_host_running_the_provider() -> None:
    desired = state(deployment("alpha", providers=[msg_provider()]), bset())
    observed = lattice(
        host("H0", providers=[provider_inst(MSG, "p0", owned(DEP, "alpha"))]),
        host("H1", providers=[provider_inst(MSG, "p1")]),  # unowned, serves too
        host("H2", providers=[provider_inst(LED, "p2")]),
        host("H3"))
    acts = plan(desired, observed)
    puts = of_type(acts, A.PutBinding)
    assert len(acts) == len(puts) == 2
    assert [p.host_id for p in puts] == ["H0", "H1"]
    for p in puts:
        assert (p.actor_id, p.capability_id, p.binding_name) == (A0, MSG, "default")
        assert p.values == (("K", "v"),) and p.vendor_id is None
        assert dict(p.annotations) == owned(BSET, "b-one")
        assert p.key == A.put_binding_key(p.host_id, A0, MSG, "default")
        assert "missing" in p.reason


def test_binding_with_a_vendor_skips_providers_of_another_vendor() -> None:
    observed = lattice(
        host("H0", providers=[provider_inst(MSG, "p0", vendor="nats")]),
        host("H1", providers=[provider_inst(MSG, "p1", vendor="wascc")]))
    acts = plan(state(bset(vendor="nats")), observed)
    assert [(a.host_id, a.vendor_id) for a in of_type(acts, A.PutBinding)] == [("H0", "nats")]
    assert len(acts) == 1


def test_binding_values_that_differ_are_put_again() -> None:
    observed = lattice(host("H0", providers=[provider_inst(MSG, "p0")], bindings=[
        binding_inst(A0, MSG, {"K": "old"}, owned(BSET, "b-one"))]))
    (put,) = plan(state(bset()), observed)
    assert isinstance(put, A.PutBinding) and put.values == (("K", "v"),)
    assert "differs from git" in put.reason


def test_binding_equal_to_git_but_other_owner_is_left_alone() -> None:
    observed = lattice(host("H0", providers=[provider_inst(MSG, "p0")], bindings=[
        binding_inst(A0, MSG, {"K": "v"})]))  # made by hand, same values
    assert plan(state(bset()), observed) == []


def test_two_binding_sets_claiming_one_binding_first_by_name_wins() -> None:
    observed = lattice(host("H0", providers=[provider_inst(MSG, "p0")], bindings=[
        binding_inst(A0, MSG, {"K": "two"}, owned(BSET, "b-two"))]))
    desired = state(bset("b-two", {"K": "two"}), bset("b-one", {"K": "one"}))
    (put,) = plan(desired, observed)
    assert isinstance(put, A.PutBinding) and put.values == (("K", "one"),)
    assert dict(put.annotations)["vinculum.io/name"] == "b-one"
    assert put.reason.startswith("binding set b-one:")
    # and once b-one's values are there, nobody fights over it
    settled = lattice(host("H0", providers=[provider_inst(MSG, "p0")], bindings=[
        binding_inst(A0, MSG, {"K": "one"}, owned(BSET, "b-one"))]))
    assert plan(desired, settled) == []


def test_owned_binding_no_longer_declared_is_deleted() -> None:
    observed = lattice(host("H0", providers=[provider_inst(MSG, "p0")], bindings=[
        binding_inst(A0, MSG, {"K": "v"}, owned(BSET, "b-one")),
        binding_inst(A1, MSG, {"K": "v"})]))  # unowned: stays
    (delete,) = plan(state(), observed)
    assert isinstance(delete, A.DeleteBinding)
    assert delete.key == A.delete_binding_key("H0", A0, MSG, "default")
    assert delete.reason == "no binding set declares it any more"


def test_owned_binding_whose_provider_vendor_no_longer_fits_is_deleted() -> None:
    observed = lattice(host("H0", providers=[provider_inst(MSG, "p0", vendor="wascc")],
                            bindings=[binding_inst(A0, MSG, {"K": "v"}, owned(BSET, "b-one"),
                                                   vendor="wascc")]))
    (delete,) = plan(state(bset(vendor="nats")), observed)
    assert isinstance(delete, A.DeleteBinding)
    assert delete.reason == "no provider it may bind to keeps running on host name-H0"


def test_stopping_a_provider_does_not_also_delete_its_bindings() -> None:
    observed = lattice(host(
        "H0", providers=[provider_inst(MSG, "p0", owned(DEP, "gone"))],
        bindings=[binding_inst(A0, MSG, {"K": "v"}, owned(BSET, "b-one")),
                  binding_inst(A1, MSG, {}, owned(BSET, "b-gone"))]))
    acts = plan(state(bset()), observed)
    assert kinds(acts) == ["StopProvider"]


def test_no_binding_put_on_a_host_whose_provider_is_stopping() -> None:
    desired = state(deployment("alpha", providers=[msg_provider(vendor="nats")]), bset())
    observed = lattice(
        host("H0", providers=[provider_inst(MSG, "p0", owned(DEP, "alpha"), vendor="wascc")]),
        host("H1"))
    acts = plan(desired, observed)
    assert kinds(acts) == ["StartProvider", "StopProvider"]


# ---------------------------------------------------------------- order and determinism

def mixed() -> tuple[DesiredState, Observed]:
    desired = state(
        deployment("alpha", [ActorSpec(id=A0, replicas=3, affinity_rules=["zone=a"]),
                             ActorSpec(id=A1, replicas=1)],
                   [msg_provider(), ProviderSpec(id=LED, vendor_id="wascc")]),
        deployment("beta", [ActorSpec(id=A0, replicas=1)], [msg_provider()]),
        bset(), bset("b-two", {"K": "w"}))
    observed = lattice(
        host("H2", {"zone": "a"}, actors=[actor_inst(A0, "a", rep("alpha", 0)),
                                          actor_inst(A0, "b", rep("alpha", 5)),
                                          actor_inst(A0, "c", rep("alpha", 1))],
             providers=[provider_inst(MSG, "p", owned(DEP, "beta"))],
             bindings=[binding_inst(A1, MSG, {}, owned(BSET, "b-old"))]),
        host("H0", {"zone": "b"}, actors=[actor_inst(A0, "d", rep("alpha", 2))],
             providers=[provider_inst(LED, "q", owned(DEP, "alpha"), vendor="nats")]),
        host("H1", actors=[actor_inst(A1, "e", rep("alpha", 0))]))
    return desired, observed


def test_output_is_sorted_by_phase_then_key() -> None:
    desired, observed = mixed()
    acts = plan(desired, observed)
    assert {type(a) for a in acts} == {A.StartActor, A.StartProvider, A.PutBinding,
                                       A.StopActor, A.StopProvider, A.DeleteBinding}
    assert acts == sorted(acts, key=lambda a: (a.phase, a.key))
    assert len({a.key for a in acts}) == len(acts)


@pytest.mark.parametrize("order", [lambda hs: hs, reversed, sorted])
def test_plan_is_deterministic_whatever_the_host_order(
    order: Callable[[list[str]], Iterable[str]],
) -> None:
    desired, observed = mixed()
    first = plan(desired, observed)
    shuffled = {k: observed[k] for k in order(list(observed))}
    assert plan(desired, shuffled) == first
    assert [a.reason for a in plan(desired, shuffled)] == [a.reason for a in first]


def test_actions_are_hashable_values() -> None:
    desired, observed = mixed()
    acts = plan(desired, observed)
    assert set(acts) == set(plan(desired, observed))
    assert {a.phase for a in acts} == set(A.ActionPhase)


# ---------------------------------------------------------------- converged first, work later
# In each table the entity the planner meets first is converged and a later one is not:
# the later one's work must still be planned, with the reason a user reads in `diff`.

def test_a_converged_deployment_met_first_does_not_hide_later_missing_replicas() -> None:
    desired = state(deployment("alpha", [ActorSpec(id=A0, replicas=1),
                                         ActorSpec(id=A1, replicas=1)]),
                    one_actor("beta", replicas=2, aid=ACTORS[2]))
    observed = lattice(host("H0", actors=[actor_inst(A0, "i0", rep("alpha", 0)),
                                          actor_inst(ACTORS[2], "i2", rep("beta", 0))]))
    acts = plan(desired, observed)
    assert [(type(a).__name__, a.key, a.reason) for a in acts] == [
        ("StartActor", A.start_actor_key("alpha", A1, 0),
         "replica 0 of deployment alpha is not running"),
        ("StartActor", A.start_actor_key("beta", ACTORS[2], 1),
         "replica 1 of deployment beta is not running"),
    ]
    assert [a.avoid_hosts for a in of_type(acts, A.StartActor)] == [(), ("H0",)]


def test_a_running_provider_met_first_does_not_hide_later_missing_ones() -> None:
    # groups are met by (capability, binding name, vendor), then by rules: LED first
    desired = state(
        deployment("alpha", providers=[ProviderSpec(id=LED, vendor_id="wascc"),
                                       msg_provider()]),
        deployment("beta", providers=[msg_provider(["zone=a"])]))
    observed = lattice(host("H0", providers=[
        provider_inst(LED, "p0", owned(DEP, "alpha"), vendor="wascc"),
        provider_inst(MSG, "p1", owned(DEP, "alpha"))]))
    acts = plan(desired, observed)
    assert [(type(a).__name__, a.key, a.reason) for a in acts] == [
        ("StartProvider", A.start_provider_key(MSG, "default", "nats", ("zone=a",)),
         f"no host satisfying zone=a runs {MSG}/default from nats for beta")]
    # and with nothing running at all, every group is started, LED's included
    assert [a.reason for a in plan(desired, lattice(host("H0")))] == [
        f"no host runs {LED}/default from wascc for alpha",
        f"no host runs {MSG}/default from nats for alpha",
        f"no host satisfying zone=a runs {MSG}/default from nats for beta",
    ]


def test_binding_reasons_say_what_is_wrong_after_a_converged_one() -> None:
    a2, a3 = ACTORS[2], ACTORS[3]

    def spec(actor: str, value: str) -> BindingSpec:
        return BindingSpec(capability_id=MSG, actor=actor, values={"K": value})

    # met in order: b-one/A0 (as git has it), b-one/A1 (missing), b-two/A0 (claimed by
    # b-one, so b-two loses), b-two/A2 (ours, other values), b-two/A3 (by hand, other values)
    desired = state(bindingset("b-one", [spec(A0, "v"), spec(A1, "v")]),
                    bindingset("b-two", [spec(A0, "two"), spec(a2, "v"), spec(a3, "v")]))
    observed = lattice(host("H0", providers=[provider_inst(MSG, "p0")], bindings=[
        binding_inst(A0, MSG, {"K": "v"}, owned(BSET, "b-one")),
        binding_inst(a2, MSG, {"K": "old"}, owned(BSET, "b-two")),
        binding_inst(a3, MSG, {"K": "old"})]))
    acts = plan(desired, observed)
    assert kinds(acts) == ["PutBinding"] * 3
    assert acts == sorted(acts, key=lambda a: a.key)
    puts = {p.actor_id: p for p in of_type(acts, A.PutBinding)}
    on_h0 = "on host name-H0, which runs its provider"
    assert {aid: p.reason for aid, p in puts.items()} == {
        A1: f"binding set b-one: missing {on_h0}",
        a2: f"binding set b-two: differs from git {on_h0}",
        a3: f"binding set b-two: an unowned binding differs from git {on_h0}",
    }
    assert {aid: (dict(p.annotations)["vinculum.io/name"], p.values)
            for aid, p in puts.items()} == {
        A1: ("b-one", (("K", "v"),)), a2: ("b-two", (("K", "v"),)),
        a3: ("b-two", (("K", "v"),))}


def test_starts_come_sorted_by_key_with_many_replicas_and_names_that_share_a_prefix() -> None:
    """The planner orders actor starts by slot prefix instead of by every key: replica
    10 before 2, deployment ``app-1`` after ``app-1-x`` ('-' sorts before '/'), spread and
    plain slots, moves and provider starts around them."""
    desired = state(
        deployment("app-1", [ActorSpec(id=A0, replicas=12), ActorSpec(id=A1, replicas=3,
                   spread=[SpreadShare(name="b", weight=1), SpreadShare(name="a", weight=2)])],
                   [ProviderSpec(id=MSG, vendor_id="nats", replicas=2)]),
        deployment("app-1-x", [ActorSpec(id=A1, replicas=11)]),
        deployment("app", [ActorSpec(id=A0, replicas=2)], [ProviderSpec(id=LED,
                                                                         vendor_id="v")]))
    acts = plan(desired, lattice(host("H0"), host("H1")))
    assert acts == sorted(acts, key=lambda a: (a.phase, a.key))
    assert len({a.key for a in acts}) == len(acts) == 12 + 3 + 11 + 2 + 2 + 1
    starts = [a.key for a in acts if isinstance(a, A.StartActor)]
    assert starts.index(f"actor.start/app-1/{A0}/10") < starts.index(f"actor.start/app-1/{A0}/2")
