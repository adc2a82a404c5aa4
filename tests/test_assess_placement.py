"""The assessment's placement reasons (issue 16): each instance says why it is where it
is (its spread share with target and actual count, or the daemon's rule), and a share no
host takes is reported by name while the others run."""

from __future__ import annotations

from datetime import timedelta

from lattice.manifests import ActorSpec, ProviderSpec, SpreadShare
from lattice.protocol import ANN_REPLICA
from lattice.status import Phase, Reason
from reconciler import actions as A
from reconciler.actions import start_actor_key, start_provider_key
from reconciler.assess import assess
from reconciler.planner import plan
from tests.planner_strategies import (
    ACTORS,
    T0,
    apply_plan,
    deployment,
    host,
    lattice,
    state,
)

A0 = ACTORS[0]
NOW = T0 + timedelta(hours=1)


def spec() -> ActorSpec:
    return ActorSpec(id=A0, replicas=4, spread=[
        SpreadShare(name="east", weight=75, requirements=["zone=a"]),
        SpreadShare(name="west", weight=25, requirements=["zone=c"])])


def test_a_share_no_host_takes_is_reported_by_name_while_the_other_runs() -> None:
    desired = state(deployment("alpha", [spec()]))
    hosts = lattice(*(host(f"H{i}", {"zone": "a"}) for i in range(3)), host("H3", {"zone": "b"}))
    acts = plan(desired, hosts)
    applied = apply_plan(acts, hosts)
    west = start_actor_key("alpha", A0, "west-0")
    assert applied.unplaced == {west}  # the east share is placed, one per host
    why = "no host satisfies zone=c: 4 hosts declined: labels do not match"
    deps, _ = assess(desired, applied.observed, unplaced={west: why}, failures={}, now=NOW)
    dep = deps["alpha"]
    assert (dep.actors.ready, dep.actors.desired) == (3, 4)
    assert dep.phase is Phase.DEGRADED
    [cond] = dep.conditions
    assert cond.reason == Reason.UNPLACEABLE and cond.message == f"spread west: {why}"
    placed = sorted(p.message for p in dep.placements if p.host_id)
    assert placed == [f"replica east-{i}; spread east: 3/3 (target 3)" for i in range(3)]
    [missing] = [p for p in dep.placements if not p.host_id]
    assert missing.message == f"spread west: {why}"
    assert {dict(a.annotations)[ANN_REPLICA] for a in acts if isinstance(a, A.StartActor)} == {
        "east-0", "east-1", "east-2", "west-0"}


def test_daemon_instances_say_they_run_on_every_matching_host() -> None:
    desired = state(deployment("alpha", [ActorSpec(id=A0, daemon=True, affinity_rules=["edge"])],
                               [ProviderSpec(id="wascc:messaging", vendor_id="nats",
                                             daemon=True, affinity_rules=["edge"])]))
    hosts = lattice(host("H0", {"edge": "1"}), host("H1", {"edge": "1"}), host("H2"))
    applied = apply_plan(plan(desired, hosts), hosts)
    deps, _ = assess(desired, applied.observed, unplaced={}, failures={}, now=NOW)
    dep = deps["alpha"]
    assert dep.phase is Phase.SYNCED
    assert (dep.actors.ready, dep.actors.desired) == (2, 2)
    assert (dep.providers.ready, dep.providers.desired) == (2, 2)
    assert sorted((p.kind, p.host_id, p.message) for p in dep.placements) == [
        ("actor", "H0", "replica H0; daemon on every host with edge"),
        ("actor", "H1", "replica H1; daemon on every host with edge"),
        ("provider", "H0", "vendor nats; daemon on every host with edge"),
        ("provider", "H1", "vendor nats; daemon on every host with edge")]
    # a new edge host: one of each missing there, and the provider start is keyed per host
    joined = {**applied.observed, "H3": host("H3", {"edge": "1"})}
    deps, _ = assess(desired, joined, unplaced={}, failures={}, now=NOW)
    assert (deps["alpha"].providers.ready, deps["alpha"].providers.desired) == (2, 3)
    keys = {a.key for a in plan(desired, joined)}
    assert start_provider_key("wascc:messaging", "default", "nats", ("edge",), "H3") in keys
    assert start_actor_key("alpha", A0, "H3") in keys


def test_packed_replicas_are_progressing_until_the_moves_are_done() -> None:
    from lattice.manifests import ActorSpec as Spec
    from tests.planner_strategies import actor_inst, owned

    desired = state(deployment("alpha", [Spec(id=A0, replicas=2)]))
    packed = lattice(host("H0", actors=[actor_inst(A0, f"i{r}", owned("Deployment", "alpha",
                                                                       replica=r))
                                        for r in (0, 1)]), host("H1"))
    deps, _ = assess(desired, packed, unplaced={}, failures={}, now=NOW)
    dep = deps["alpha"]
    assert (str(dep.actors), dep.phase) == ("2/2", Phase.PROGRESSING)
    assert dep.conditions[0].message.startswith(f"rebalancing {A0[:12]}: 1 move(s) planned; "
                                                "host name-H0 runs 2, host name-H1 0")
    moved = apply_plan(plan(desired, packed), packed).observed
    assert plan(desired, moved) == []
    assert assess(desired, moved, unplaced={}, failures={}, now=NOW)[0]["alpha"].phase \
        == Phase.SYNCED
