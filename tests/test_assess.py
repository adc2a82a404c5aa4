"""The assessment: ready counts, placements, phases and conditions per entity (pure)."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings

from lattice.manifests import ActorSpec, BindingSpec, DesiredState, ProviderSpec
from lattice.protocol import BindingInstance, HostInventory
from lattice.status import Phase, Reason, StatusReport, SyncSummary
from reconciler.actions import put_binding_key, start_actor_key, start_provider_key
from reconciler.assess import Statuses, assess
from reconciler.planner import plan
from tests.planner_strategies import (
    ACTORS,
    T0,
    actor_inst,
    apply_plan,
    bindingset,
    deployment,
    desired_states,
    host,
    lattice,
    observed_lattices,
    owned,
    provider_inst,
    state,
)

A, B = ACTORS[0], ACTORS[1]
NOW = T0 + timedelta(hours=1)
MSG = "wascc:messaging"


def run(desired: DesiredState, observed: dict[str, HostInventory], *,
        unplaced: dict[str, str] | None = None, failures: dict[str, str] | None = None,
        previous: StatusReport | None = None) -> Statuses:
    return assess(desired, observed, unplaced=unplaced or {}, failures=failures or {},
                  now=NOW, previous=previous)


def test_empty_lattice_is_progressing_with_zero_ready() -> None:
    desired = state(deployment("d", [ActorSpec(id=A, replicas=3)],
                               [ProviderSpec(id=MSG, vendor_id="nats")]))
    deps, _ = run(desired, lattice(host("H1")))
    d = deps["d"]
    assert (str(d.actors), str(d.providers), d.phase) == ("0/3", "0/1", Phase.PROGRESSING)
    assert d.conditions[0].reason == Reason.PROGRESSING
    assert "0/3 actors" in d.conditions[0].message
    assert [p.host_id for p in d.placements] == [None] * 4
    assert d.created == NOW and d.conditions[0].last_transition == NOW


def test_converged_is_synced_with_placements_on_hosts() -> None:
    desired = state(deployment("d", [ActorSpec(id=A, replicas=2)],
                               [ProviderSpec(id=MSG, vendor_id="nats")]))
    observed = lattice(
        host("H1", actors=[actor_inst(A, "i0", owned("Deployment", "d", replica=0))],
             providers=[provider_inst(MSG, "p0", owned("Deployment", "d"))]),
        host("H2", actors=[actor_inst(A, "i1", owned("Deployment", "d", replica=1), at=5)]))
    deps, _ = run(desired, observed)
    d = deps["d"]
    assert (str(d.actors), str(d.providers), d.phase) == ("2/2", "1/1", Phase.SYNCED)
    assert d.conditions[0].status is True
    assert sorted((p.kind, p.host_id, p.message) for p in d.placements) == [
        ("actor", "H1", "replica 0"), ("actor", "H2", "replica 1"),
        ("provider", "H1", "vendor nats")]
    assert d.spec["actors"][0]["replicas"] == 2


def test_unplaced_replica_makes_the_deployment_degraded_with_the_reason() -> None:
    desired = state(deployment("d", [ActorSpec(id=A, affinity_rules=["leds=12"])]))
    why = "no host satisfies leds=12: 2 hosts declined: label leds missing"
    deps, _ = run(desired, lattice(host("H1"), host("H2")),
                  unplaced={start_actor_key("d", A, 0): why})
    d = deps["d"]
    assert d.phase == Phase.DEGRADED
    assert (d.conditions[0].reason, d.conditions[0].message) == (Reason.UNPLACEABLE, why)
    assert d.placements[0].message == why


def test_failed_provider_start_is_degraded_command_failed() -> None:
    desired = state(deployment("d", providers=[ProviderSpec(id=MSG, vendor_id="nats")]))
    key = start_provider_key(MSG, "default", "nats", ())
    deps, _ = run(desired, lattice(host("H1")), failures={key: "host refused: boom"})
    assert deps["d"].phase == Phase.DEGRADED
    assert deps["d"].conditions[0].reason == Reason.COMMAND_FAILED


def test_scale_down_is_progressing_until_surplus_stops() -> None:
    desired = state(deployment("d", [ActorSpec(id=A, replicas=1)]))
    observed = lattice(host("H1", actors=[
        actor_inst(A, "i0", owned("Deployment", "d", replica=0)),
        actor_inst(A, "i1", owned("Deployment", "d", replica=1))]))
    deps, _ = run(desired, observed)
    assert str(deps["d"].actors) == "1/1"
    assert deps["d"].phase == Phase.PROGRESSING
    assert "to stop" in deps["d"].conditions[0].message


def test_binding_waits_for_its_provider() -> None:
    desired = state(bindingset("b", [BindingSpec(capability_id=MSG, actor=A)]),
                    deployment("d", providers=[ProviderSpec(id=MSG, vendor_id="nats")]))
    _, bss = run(desired, lattice(host("H1")))
    b = bss["b"]
    assert (str(b.bindings), b.phase) == ("0/1", Phase.PROGRESSING)
    assert b.conditions[0].reason == Reason.WAITING_FOR_PROVIDER
    assert "waiting for provider wascc:messaging/default" in b.conditions[0].message


def test_binding_without_any_declared_provider_is_degraded() -> None:
    desired = state(bindingset("b", [BindingSpec(capability_id=MSG, actor=A,
                                                 vendor_id="nats")]),
                    deployment("d", providers=[ProviderSpec(id=MSG, vendor_id="other")]))
    _, bss = run(desired, lattice(host("H1")))
    b = bss["b"]
    assert (b.phase, b.conditions[0].reason) == (Phase.DEGRADED, Reason.WAITING_FOR_PROVIDER)
    assert "no deployment declares provider wascc:messaging/default from nats" in (
        b.conditions[0].message)


def test_binding_ready_on_the_provider_host_and_stale_values_are_not() -> None:
    spec = BindingSpec(capability_id=MSG, actor=A, values={"SUBSCRIPTION": "a.b"})
    desired = state(bindingset("b", [spec]))
    bound = BindingInstance(actor_id=A, capability_id=MSG, values={"SUBSCRIPTION": "a.b"},
                            annotations=owned("BindingSet", "b"))
    ok = lattice(host("H1", providers=[provider_inst(MSG, "p")], bindings=[bound]))
    _, bss = run(desired, ok)
    assert (str(bss["b"].bindings), bss["b"].phase) == ("1/1", Phase.SYNCED)
    assert bss["b"].placements[0].host_id == "H1"
    stale = lattice(host("H1", providers=[provider_inst(MSG, "p")], bindings=[
        bound.model_copy(update={"values": {"SUBSCRIPTION": "old"}})]))
    key = put_binding_key("H1", A, MSG, "default")
    _, bss = run(desired, stale, failures={key: "host refused the binding"})
    assert (str(bss["b"].bindings), bss["b"].phase) == ("0/1", Phase.DEGRADED)
    assert bss["b"].placements[0].message == "host refused the binding"


def test_losing_binding_set_says_who_wins() -> None:
    desired = state(bindingset("a", [BindingSpec(capability_id=MSG, actor=A, values={"V": "1"})]),
                    bindingset("z", [BindingSpec(capability_id=MSG, actor=A, values={"V": "2"})]))
    bound = BindingInstance(actor_id=A, capability_id=MSG, values={"V": "1"},
                            annotations=owned("BindingSet", "a"))
    _, bss = run(desired, lattice(host("H1", providers=[provider_inst(MSG, "p")],
                                       bindings=[bound])))
    assert bss["a"].phase == Phase.SYNCED
    assert (bss["z"].phase, bss["z"].conditions[0].reason) == (Phase.DEGRADED, Reason.CONFLICT)
    assert "binding set a" in bss["z"].conditions[0].message


def test_created_and_transition_times_carry_over() -> None:
    desired = state(deployment("d", [ActorSpec(id=A)]))
    empty = lattice(host("H1"))
    first, _ = run(desired, empty)
    earlier = NOW - timedelta(minutes=5)
    old = first["d"].model_copy(update={
        "created": earlier,
        "conditions": [first["d"].conditions[0].model_copy(update={"last_transition": earlier})]})
    prev = StatusReport(summary=SyncSummary(), deployments={"d": old})
    again, _ = run(desired, empty, previous=prev)
    assert again["d"].created == earlier
    assert again["d"].conditions[0].last_transition == earlier
    placed = lattice(host("H1", actors=[actor_inst(A, "i", owned("Deployment", "d", replica=0))]))
    synced, _ = run(desired, placed, previous=prev)
    assert synced["d"].created == earlier
    assert synced["d"].conditions[0].last_transition == NOW  # Ready changed: a transition


@settings(max_examples=150, deadline=None)
@given(desired_states(), observed_lattices())
def test_synced_exactly_when_the_planner_has_nothing_left(
        desired: DesiredState, observed: dict[str, HostInventory]) -> None:
    """Status never disagrees with the planner: with nothing left to plan every entity is
    Synced, bar binding sets stuck on what no action fixes (a provider no deployment
    declares, a binding another set wins)."""
    for obs in (observed, apply_plan(plan(desired, observed), observed).observed):
        actions = plan(desired, obs)
        deps, bss = run(desired, obs)
        if not actions:  # Synced, or stuck on what no action can fix
            assert all(d.phase == Phase.SYNCED for d in deps.values())
            for b in bss.values():
                cond = b.conditions[0]
                assert b.phase == Phase.SYNCED or (b.phase == Phase.DEGRADED and (
                    cond.reason == Reason.CONFLICT or (
                        cond.reason == Reason.WAITING_FOR_PROVIDER
                        and "no deployment declares" in cond.message))), (b.name, cond)
        for d in deps.values():
            assert 0 <= d.actors.ready <= d.actors.desired
            assert 0 <= d.providers.ready <= d.providers.desired
        for b in bss.values():
            assert 0 <= b.bindings.ready <= b.bindings.desired


def test_a_crash_looping_replica_is_degraded_with_the_last_reason() -> None:
    desired = state(deployment("d", [ActorSpec(id=A)]))
    placed = lattice(host("H1", actors=[actor_inst(A, "i", owned("Deployment", "d", replica=0))]))
    key = start_actor_key("d", A, 0)
    deps, _ = assess(desired, placed, unplaced={}, failures={}, now=NOW,
                     crashes={key: (3, "crashed: trapped: unreachable")})
    d = deps["d"]
    assert (d.phase, d.conditions[0].reason) == (Phase.DEGRADED, Reason.CRASH_LOOP)
    assert "crashed 3 times" in d.conditions[0].message
    assert "trapped: unreachable" in d.conditions[0].message
    assert d.placements[0].message == "replica 0, 3 crashes in 10 min"
