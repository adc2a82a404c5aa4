"""Spread shares, daemons, max_per_host and rebalancing moves (issue 16): the manifest
fields and their errors, and what the planner makes of them, table by table."""

from __future__ import annotations

import pytest

from lattice.manifest_loader import load_sources
from lattice.manifests import ActorSpec, SpreadShare
from lattice.protocol import ANN_REPLICA, HostInventory
from reconciler import actions as A
from reconciler.placement import divide
from reconciler.planner import plan
from tests.planner_strategies import (
    ACTORS,
    actor_inst,
    deployment,
    host,
    lattice,
    owned,
    state,
)

A0 = ACTORS[0]


def rep(replica: str | int, name: str = "alpha") -> dict[str, str]:
    ann = owned("Deployment", name, "r1")
    ann[ANN_REPLICA] = str(replica)
    return ann


def spread(*shares: tuple[str, int, list[str]], replicas: int, **kw: object) -> ActorSpec:
    return ActorSpec.model_validate({
        "id": A0, "replicas": replicas, **kw,
        "spread": [SpreadShare(name=n, weight=w, requirements=r) for n, w, r in shares]})


def starts(acts: list[A.Action]) -> list[A.StartActor]:
    return [a for a in acts if isinstance(a, A.StartActor)]


@pytest.mark.parametrize(("replicas", "weights", "expected"), [
    (10, [80, 20], [8, 2]),
    (4, [75, 25], [3, 1]),
    (3, [1, 1], [2, 1]),  # a tie goes to the first share
    (5, [1, 1, 1], [2, 2, 1]),
    (1, [1, 3], [0, 1]),
    (0, [5, 5], [0, 0]),
    (7, [1], [7]),
])
def test_replicas_are_divided_by_the_largest_remainder(
        replicas: int, weights: list[int], expected: list[int]) -> None:
    assert divide(replicas, weights) == expected
    assert sum(divide(replicas, weights)) == replicas


ZONES = lattice(*(host(f"H{i}", {"zone": "a" if i < 3 else "b"}) for i in range(5)))


def test_an_80_20_spread_of_10_starts_8_east_and_2_west_under_each_shares_rules() -> None:
    spec = spread(("east", 80, ["zone=a"]), ("west", 20, ["zone=b"]), replicas=10)
    acts = starts(plan(state(deployment("alpha", [spec])), ZONES))
    by_share: dict[str, list[A.StartActor]] = {}
    for a in acts:
        by_share.setdefault(str(a.replica).rsplit("-", 1)[0], []).append(a)
    assert {k: len(v) for k, v in by_share.items()} == {"east": 8, "west": 2}
    assert {a.constraints for a in by_share["east"]} == {("zone=a",)}
    assert {a.constraints for a in by_share["west"]} == {("zone=b",)}
    assert sorted(dict(a.annotations)[ANN_REPLICA] for a in by_share["west"]) == [
        "west-0", "west-1"]
    assert all(a.key == A.start_actor_key("alpha", A0, a.replica) for a in acts)


def test_share_requirements_join_the_affinity_rules() -> None:
    spec = spread(("east", 3, ["zone=a"]), ("west", 1, ["zone=b"]), replicas=4,
                  affinity_rules=["leds=12"])
    acts = starts(plan(state(deployment("alpha", [spec])), ZONES))
    assert sorted({a.constraints for a in acts}) == [("leds=12", "zone=a"),
                                                      ("leds=12", "zone=b")]
    assert sorted(str(a.replica) for a in acts) == ["east-0", "east-1", "east-2", "west-0"]


def test_a_running_spread_is_left_alone_and_a_replica_on_a_wrong_zone_is_replaced() -> None:
    spec = spread(("east", 75, ["zone=a"]), ("west", 25, ["zone=b"]), replicas=4)
    running = lattice(
        host("H0", {"zone": "a"}, actors=[actor_inst(A0, "i0", rep("east-0"))]),
        host("H1", {"zone": "a"}, actors=[actor_inst(A0, "i1", rep("east-1"))]),
        host("H2", {"zone": "a"}, actors=[actor_inst(A0, "i2", rep("east-2"))]),
        host("H3", {"zone": "b"}, actors=[actor_inst(A0, "i3", rep("west-0"))]))
    assert plan(state(deployment("alpha", [spec])), running) == []
    moved = dict(running)
    moved["H3"] = running["H3"].model_copy(update={"labels": {"zone": "c"}})
    acts = plan(state(deployment("alpha", [spec])), moved)
    assert [(type(a).__name__, a.key) for a in acts] == [
        ("StartActor", A.start_actor_key("alpha", A0, "west-0")),
        ("StopActor", A.stop_actor_key("H3", A0, "i3"))]
    assert "spread west" in acts[1].reason


def test_plain_replicas_keep_their_numeric_ids_and_old_plans() -> None:
    [a0, a1] = starts(plan(state(deployment("alpha", [ActorSpec(id=A0, replicas=2)])),
                           lattice(host("H0"), host("H1"))))
    assert (a0.replica, a1.replica) == (0, 1) and a0.host_id is None and not a0.exclude_hosts


def test_a_daemon_runs_one_instance_targeted_at_every_matching_host() -> None:
    spec = ActorSpec(id=A0, daemon=True, affinity_rules=["zone=b"])
    acts = starts(plan(state(deployment("alpha", [spec])), ZONES))
    assert [(a.host_id, a.replica) for a in acts] == [("H3", "H3"), ("H4", "H4")]
    running = lattice(*(h.model_copy(update={"actors": [actor_inst(A0, f"i{h.host_id}",
                                                                     rep(h.host_id))]})
                        if h.labels["zone"] == "b" else h for h in ZONES.values()))
    assert plan(state(deployment("alpha", [spec])), running) == []
    # H4 loses its label: its instance stops; H0 gains it: one starts there
    relabelled = dict(running)
    relabelled["H4"] = running["H4"].model_copy(update={"labels": {"zone": "c"}})
    relabelled["H0"] = running["H0"].model_copy(update={"labels": {"zone": "b"}})
    after = plan(state(deployment("alpha", [spec])), relabelled)
    assert [(type(a).__name__, getattr(a, "host_id", None)) for a in after] == [
        ("StartActor", "H0"), ("StopActor", "H4")]
    # a host leaving takes its instance with it: nothing to do
    gone = {k: v for k, v in running.items() if k != "H3"}
    assert plan(state(deployment("alpha", [spec])), gone) == []


def test_max_per_host_excludes_full_hosts_and_stops_extras() -> None:
    spec = ActorSpec(id=A0, replicas=3, max_per_host=1)
    running = lattice(
        host("H0", actors=[actor_inst(A0, "i0", rep(0)), actor_inst(A0, "i1", rep(1))]),
        host("H1"), host("H2", actors=[actor_inst(A0, "i2", rep(2))]))
    acts = plan(state(deployment("alpha", [spec])), running)
    [start] = starts(acts)
    assert start.replica == 1 and start.exclude_hosts == ("H0", "H2")
    assert [a.key for a in acts if isinstance(a, A.StopActor)] == [
        A.stop_actor_key("H0", A0, "i1")]
    assert "max_per_host 1" in acts[-1].reason


def packed(*, rebalance: bool = True) -> tuple[ActorSpec, dict[str, HostInventory], bool]:
    spec = ActorSpec(id=A0, replicas=2, affinity_rules=["zone=a"])
    running = lattice(
        host("H0", {"zone": "a"}, actors=[actor_inst(A0, "i0", rep(0)),
                                          actor_inst(A0, "i1", rep(1))]),
        host("H1", {"zone": "a"}), host("H2", {"zone": "b"}))
    return spec, running, rebalance


def test_two_replicas_packed_on_one_host_move_make_before_break() -> None:
    spec, running, _ = packed()
    acts = plan(state(deployment("alpha", [spec])), running)
    start, stop = acts
    assert isinstance(start, A.StartActor) and isinstance(stop, A.StopActor)
    assert (start.replica, start.host_id, start.move_from) == (1, "H1", "H0")
    assert start.key == A.move_actor_key("alpha", A0, 1)
    assert stop.key == A.stop_actor_key("H0", A0, "i1")
    # once the new instance runs, the packed one is the duplicate that goes
    moved = dict(running)
    moved["H1"] = running["H1"].model_copy(update={"actors": [
        actor_inst(A0, "n1", rep(1), at=5)]})
    assert [a.key for a in plan(state(deployment("alpha", [spec])), moved)] == [stop.key]


@pytest.mark.parametrize("new_host", ["H1", "A1"])  # sorting after or before the old one
def test_after_a_move_the_new_instance_wins_whatever_the_host_ids(new_host: str) -> None:
    spec = ActorSpec(id=A0, replicas=2)
    running = lattice(
        host("H0", actors=[actor_inst(A0, "i0", rep(0)), actor_inst(A0, "i1", rep(1))]),
        host(new_host, actors=[actor_inst(A0, "n1", rep(1), at=5)]))
    assert [a.key for a in plan(state(deployment("alpha", [spec])), running)] == [
        A.stop_actor_key("H0", A0, "i1")]


def test_rebalance_false_leaves_packed_replicas_alone() -> None:
    spec, running, _ = packed()
    dep = deployment("alpha", [spec])
    off = dep.model_copy(update={"spec": dep.spec.model_copy(update={"rebalance": False})})
    assert plan(state(off), running) == []


def test_no_move_to_a_host_that_would_be_as_loaded_as_the_source() -> None:
    # 3 replicas on 2 hosts: 2 and 1; moving one gives 1 and 2: no improvement, no move
    spec = ActorSpec(id=A0, replicas=3)
    running = lattice(
        host("H0", actors=[actor_inst(A0, "i0", rep(0)), actor_inst(A0, "i1", rep(1))]),
        host("H1", actors=[actor_inst(A0, "i2", rep(2))]))
    assert plan(state(deployment("alpha", [spec])), running) == []


@pytest.mark.parametrize(("actor", "message"), [
    ("replicas: 3\n      daemon: true",
     "d.yaml:6: spec.actors[0]: daemon: true runs one instance on every matching host; "
     "remove replicas: 3"),
    ("daemon: true\n      spread: [{name: a, weight: 1}]",
     "d.yaml:6: spec.actors[0]: daemon: true runs one instance on every matching host; "
     "it cannot have a spread (drop one of them)"),
    ("spread: [{name: a, weight: 1}, {name: a, weight: 2}]",
     "d.yaml:7: spec.actors[0].spread: spread share 'a' named twice; share names must be "
     "unique"),
    ("spread:\n        - {name: a, weight: 0}",
     "d.yaml:8: spec.actors[0].spread[0].weight: Input should be greater than or equal to 1"),
    ("spread:\n        - {name: a, weight: 1, requirements: ['=a']}",
     "d.yaml:8: spec.actors[0].spread[0].requirements"),
    ("max_per_host: 0",
     "d.yaml:7: spec.actors[0].max_per_host: Input should be greater than or equal to 1"),
])
def test_bad_placement_fields_name_file_line_and_field(actor: str, message: str) -> None:
    text = ("apiVersion: vinculum.io/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n"
            "  actors:\n"
            f"    - id: {A0}\n      {actor}\n")
    result = load_sources([("d.yaml", text)])
    assert not result.ok
    assert any(line.startswith(message) for line in result.error_lines()), \
        result.error_lines()


def test_too_many_shares_and_provider_max_per_host_are_refused() -> None:
    shares = ", ".join(f"{{name: s{i}, weight: 1}}" for i in range(17))
    text = ("apiVersion: vinculum.io/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n"
            f"  actors:\n    - id: {A0}\n      spread: [{shares}]\n"
            "  providers:\n    - {id: 'wascc:messaging', vendor_id: nats, max_per_host: 2}\n")
    lines = load_sources([("d.yaml", text)]).error_lines()
    assert any(x.startswith("d.yaml:7: spec.actors[0].spread: List should have at most 16")
               for x in lines), lines
    assert any(x.startswith("d.yaml:9: spec.providers[0].max_per_host") for x in lines), lines


def test_a_daemon_provider_follows_hosts_joining_leaving_and_relabelling() -> None:
    from lattice.manifests import ProviderSpec
    from tests.planner_strategies import provider_inst

    spec = ProviderSpec(id="wascc:messaging", vendor_id="nats", daemon=True,
                        affinity_rules=["edge"])
    desired = state(deployment("alpha", providers=[spec]))
    hosts = lattice(host("H0", {"edge": "1"}), host("H1"), host("H2", {"edge": "1"}))
    acts = plan(desired, hosts)
    assert [(type(a).__name__, getattr(a, "host_id", None)) for a in acts] == [
        ("StartProvider", "H0"), ("StartProvider", "H2")]
    assert len({a.key for a in acts}) == 2
    ann = owned("Deployment", "alpha")
    running = {k: (h.model_copy(update={"providers": [
        provider_inst("wascc:messaging", f"p{k}", ann)]}) if "edge" in h.labels else h)
        for k, h in hosts.items()}
    assert plan(desired, running) == []
    joined = {**running, "H3": host("H3", {"edge": "1"})}
    assert [getattr(a, "host_id", None) for a in plan(desired, joined)] == ["H3"]
    relabelled = {**running, "H2": running["H2"].model_copy(update={"labels": {}})}
    [stop] = plan(desired, relabelled)
    assert isinstance(stop, A.StopProvider) and stop.host_id == "H2"
    assert "no longer satisfies" in stop.reason
    assert plan(desired, {k: v for k, v in running.items() if k != "H0"}) == []
