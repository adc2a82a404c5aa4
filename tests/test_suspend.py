"""Suspended deployments in the planner's inputs (:mod:`reconciler.suspend`): pure, table
style. A suspended deployment is neither started nor stopped, and its instances are not
strays; a provider it shares with a deployment that is not suspended stays in view."""

from __future__ import annotations

from gitsync.edits import SUSPENDED, is_suspended
from lattice.manifests import ActorSpec, Deployment, ProviderSpec
from lattice.protocol import HostInventory
from lattice.status import DeploymentStatus
from reconciler import actions as A
from reconciler.planner import plan
from reconciler.suspend import acting_on, mark_suspended, suspended_names
from tests.planner_strategies import (
    ACTORS,
    actor_inst,
    deployment,
    host,
    lattice,
    owned,
    provider_inst,
    state,
)

A0, A1 = ACTORS[0], ACTORS[1]
MSG = "wascc:messaging"


def suspended(dep: Deployment, value: str = "true") -> Deployment:
    meta = dep.metadata.model_copy(update={"annotations": {SUSPENDED: value}})
    return dep.model_copy(update={"metadata": meta})


def counter(replicas: int, *, provider: bool = False) -> Deployment:
    return deployment("counter", [ActorSpec(id=A0, replicas=replicas)],
                      [ProviderSpec(id=MSG, binding_name="default", vendor_id="nats")]
                      if provider else [])


def two_replicas_running() -> dict[str, HostInventory]:
    return lattice(
        host("H0", actors=[actor_inst(A0, "i0", owned("Deployment", "counter", "r1",
                                                        replica=0))]),
        host("H1", actors=[actor_inst(A0, "i1", owned("Deployment", "counter", "r1",
                                                        replica=1))]))


def test_the_annotation_reads_true_only() -> None:
    assert is_suspended(suspended(counter(1)))
    assert is_suspended(suspended(counter(1), "True"))
    assert not is_suspended(suspended(counter(1), "false"))
    assert not is_suspended(counter(1))


def test_a_suspended_deployment_keeps_its_instances_through_a_scale_down() -> None:
    observed = two_replicas_running()
    # not suspended: scaling to 1 stops replica 1 (the control: the input would change it)
    assert [type(a) for a in plan(state(counter(1)), observed)] == [A.StopActor]
    desired = state(suspended(counter(1)))
    assert plan(*acting_on(desired, observed)) == []
    # removed from the manifests altogether, its instances would be stopped: they are hidden
    kept, seen = acting_on(desired, observed)
    assert kept.deployments == {} and all(not inv.actors for inv in seen.values())


def test_nothing_is_started_for_a_suspended_deployment() -> None:
    desired = state(suspended(counter(3)), deployment("other", [ActorSpec(id=A1)]))
    acts = plan(*acting_on(desired, lattice(host("H0"))))
    assert [a.deployment for a in acts if isinstance(a, A.StartActor)] == ["other"]


def test_a_shared_provider_stays_in_view() -> None:
    both = owned("Deployment", "counter,other", "r1")
    observed = lattice(host("H0", providers=[provider_inst(MSG, "p0", both)]))
    only = owned("Deployment", "counter", "r1")
    alone = lattice(host("H0", providers=[provider_inst(MSG, "p0", only)]))
    desired = state(suspended(counter(0, provider=True)))
    assert [len(inv.providers) for inv in acting_on(desired, observed)[1].values()] == [1]
    assert [len(inv.providers) for inv in acting_on(desired, alone)[1].values()] == [0]


def test_nothing_suspended_is_the_identity() -> None:
    desired, observed = state(counter(2)), two_replicas_running()
    assert acting_on(desired, observed) == (desired, observed)


def test_status_marks_it_and_leaves_it_out_of_the_verdict() -> None:
    deps = {"counter": DeploymentStatus(name="counter"), "other": DeploymentStatus(name="other")}
    names = suspended_names(state(suspended(counter(1)), deployment("other", [])))
    assert names == {"counter"}
    marked, judged = mark_suspended(deps, names)
    assert marked["counter"].conditions[0].type == "Suspended"
    assert marked["other"].conditions == []
    assert set(judged) == {"other"}
