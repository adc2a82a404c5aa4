"""Properties of spread, daemons, max_per_host and rebalancing (issue 16), with hypothesis.

Hosts join, leave and change labels in any order; after each change the lattice is
planned and applied (:func:`settle`) until the planner asks for nothing it can do. The
simulated auction is the one the issue describes: a start goes to a matching host not
excluded, the one with the fewest replicas of that deployment and actor first, then host
id (a start with ``host_id`` goes there); stops remove. Then:

* a fixpoint is reached within a bounded number of rounds (no oscillation);
* every share runs exactly its target whenever some host matches it (the largest
  remainder targets are within one of ``replicas * weight / total``), and otherwise its
  replicas are reported unplaced by key;
* a daemon runs once on every matching host and nowhere else;
* ``max_per_host`` holds, and no host runs two replicas while a matching host runs none
  (spread is as even as the strict-improvement rule makes it).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lattice import selectors
from lattice.manifests import ActorSpec, DesiredState, SpreadShare
from lattice.protocol import ANN_NAME, ANN_REPLICA, ActorInstance, HostInventory
from lattice.status import Phase
from reconciler import actions as A
from reconciler.assess import assess
from reconciler.placement import divide
from reconciler.planner import plan
from tests.planner_strategies import ACTORS, T0, deployment, host, state

A0, A1, A2 = ACTORS[0], ACTORS[1], ACTORS[2]
ZONES = ("a", "b", "c")
PROPS = settings(max_examples=150, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow])


def auction(act: A.StartActor, hosts: dict[str, HostInventory]) -> str | None:
    """Where a start lands: its host, or the matching host outside ``exclude_hosts`` with
    the fewest replicas of that deployment and actor, then by host id."""
    if act.host_id is not None:
        return act.host_id if act.host_id in hosts else None
    sels = selectors.parse_all(act.constraints)
    cands = [h for h in sorted(hosts) if selectors.satisfied(sels, hosts[h].labels)
             and h not in act.exclude_hosts]
    if not cands:
        return None

    def siblings(h: str) -> int:
        return sum(1 for a in hosts[h].actors if a.actor_id == act.actor_id
                   and a.annotations.get(ANN_NAME) == act.deployment)
    return min(cands, key=lambda h: (siblings(h), h))


def apply(acts: list[A.Action], hosts: dict[str, HostInventory], serial: list[int]
          ) -> tuple[dict[str, HostInventory], set[str]]:
    out = dict(hosts)
    unplaced: set[str] = set()
    for act in acts:  # sorted by phase: starts before stops
        serial[0] += 1
        if isinstance(act, A.StartActor):
            where = auction(act, out)
            if where is None:
                unplaced.add(act.key)
                continue
            inst = ActorInstance(actor_id=act.actor_id, instance_id=f"i{serial[0]}",
                                 annotations=dict(act.annotations), started_at=T0)
            out[where] = out[where].model_copy(update={"actors": [*out[where].actors, inst]})
        elif isinstance(act, A.StopActor):
            h = out[act.host_id]
            out[act.host_id] = h.model_copy(update={"actors": [
                a for a in h.actors if a.instance_id != act.instance_id]})
        else:
            raise AssertionError(f"unexpected action {act}")
    return out, unplaced


ROUNDS = 40


def settle(desired: DesiredState, hosts: dict[str, HostInventory], serial: list[int]
           ) -> tuple[dict[str, HostInventory], set[str], int]:
    """Plan and apply until nothing is left but starts no host takes; the lattice, the
    keys left unplaced, and how many rounds it took."""
    for rounds in range(1, ROUNDS + 1):
        acts = plan(desired, hosts)
        nxt, unplaced = apply(acts, hosts, serial)
        if nxt == hosts:  # nothing changed: only unplaceable starts (or nothing) left
            assert {a.key for a in acts} == unplaced, acts
            return hosts, unplaced, rounds
        hosts = nxt
    raise AssertionError(f"no fixpoint after {ROUNDS} rounds: {plan(desired, hosts)}")


@dataclass(frozen=True)
class Event:
    kind: str  # join, leave, relabel
    host: int
    zone: int
    edge: bool


events_st = st.lists(st.builds(Event, kind=st.sampled_from(("join", "join", "leave",
                                                             "relabel")),
                               host=st.integers(0, 5), zone=st.integers(0, 2),
                               edge=st.booleans()), min_size=1, max_size=8)


def labels(e: Event) -> dict[str, str]:
    return {"zone": ZONES[e.zone], **({"edge": "1"} if e.edge else {})}


@st.composite
def placement_desired(draw: st.DrawFn) -> DesiredState:
    shares = draw(st.lists(st.tuples(st.sampled_from(ZONES), st.integers(1, 4)),
                           min_size=1, max_size=3, unique_by=lambda t: t[0]))
    spread = ActorSpec(id=A0, replicas=draw(st.integers(1, 6)), spread=[
        SpreadShare(name=f"z-{z}", weight=w, requirements=[f"zone={z}"]) for z, w in shares])
    plain = ActorSpec(id=A1, replicas=draw(st.integers(1, 5)),
                      affinity_rules=draw(st.sampled_from(([], ["zone!=c"]))),
                      max_per_host=draw(st.none() | st.integers(1, 2)))
    daemon = ActorSpec(id=A2, daemon=True, affinity_rules=["edge"])
    return state(deployment("alpha", [spread, plain, daemon]))


def mine(h: HostInventory, aid: str) -> list[ActorInstance]:
    return [a for a in h.actors if a.actor_id == aid]


def check(desired: DesiredState, hosts: dict[str, HostInventory], unplaced: set[str]) -> None:
    spread, plain, _daemon = desired.deployments["alpha"].spec.actors
    # shares: exactly on target where a host matches, else every replica unplaced
    targets = divide(spread.replicas, [s.weight for s in spread.spread])
    running = Counter(a.annotations[ANN_REPLICA].rsplit("-", 1)[0]
                      for h in hosts.values() for a in mine(h, A0))
    for share, target in zip(spread.spread, targets, strict=True):
        exact = spread.replicas * share.weight / sum(s.weight for s in spread.spread)
        assert abs(target - exact) < 1
        zone = share.requirements[0].split("=")[1]
        where = [h for h in hosts.values() for a in mine(h, A0)
                 if a.annotations[ANN_REPLICA].startswith(f"{share.name}-")]
        assert all(h.labels["zone"] == zone for h in where)
        if any(h.labels["zone"] == zone for h in hosts.values()):
            assert running[share.name] == target
        else:
            assert running[share.name] == 0
            assert {A.start_actor_key("alpha", A0, f"{share.name}-{i}")
                    for i in range(target)} <= unplaced
    # a daemon on every matching host, once, and nowhere else
    for h in hosts.values():
        assert len(mine(h, A2)) == (1 if "edge" in h.labels else 0)
        zone_counts = [len(mine(h, A0)) for h in hosts.values() if h.labels["zone"] == zone]
        if zone_counts:
            assert max(zone_counts) - min(zone_counts) <= 1, (share.name, zone_counts)
    # max_per_host, and as even as can be: no host two more than another that may run it
    sels = selectors.parse_all(plain.affinity_rules)
    counts = [len(mine(h, A1)) for h in hosts.values() if selectors.satisfied(sels, h.labels)]
    if plain.max_per_host is not None:
        assert max(counts, default=0) <= plain.max_per_host
    if counts:
        assert max(counts) - min(counts) <= 1, counts


@PROPS
@given(placement_desired(), events_st)
def test_hosts_joining_leaving_and_relabelling_always_settle_on_target(
        desired: DesiredState, events: list[Event]) -> None:
    hosts: dict[str, HostInventory] = {}
    serial = [0]
    for e in events:
        hid = f"H{e.host}"
        if e.kind == "join" and hid not in hosts:
            hosts[hid] = host(hid, labels(e))
        elif e.kind == "leave":
            hosts.pop(hid, None)
        elif e.kind == "relabel" and hid in hosts:
            hosts[hid] = hosts[hid].model_copy(update={"labels": labels(e)})
        hosts, unplaced, _rounds = settle(desired, hosts, serial)
        check(desired, hosts, unplaced)
        # a fixpoint: planning again asks only for what no host takes
        assert {a.key for a in plan(desired, hosts)} == unplaced
        # and the status agrees with the planner: Synced exactly when nothing is left
        deps, _ = assess(desired, hosts, unplaced={k: "no host" for k in unplaced},
                         failures={}, now=T0)
        assert (deps["alpha"].phase == Phase.SYNCED) == (not unplaced), deps["alpha"]


@PROPS
@given(st.integers(2, 6), st.integers(1, 4))
def test_packed_replicas_spread_out_when_hosts_return_and_never_move_back(
        replicas: int, returning: int) -> None:
    """All replicas packed on one host (the others were gone); hosts return: moves spread
    them to within one of each other, one strict improvement at a time, and a second
    settle changes nothing (no oscillation)."""
    desired = state(deployment("alpha", [ActorSpec(id=A1, replicas=replicas)]))
    serial = [0]
    hosts, _, _ = settle(desired, {"H0": host("H0")}, serial)
    assert len(mine(hosts["H0"], A1)) == replicas
    for i in range(1, returning + 1):
        hosts[f"H{i}"] = host(f"H{i}")
    settled, unplaced, rounds = settle(desired, hosts, serial)
    assert not unplaced and rounds <= 2 * replicas + 2
    counts = [len(mine(h, A1)) for h in settled.values()]
    assert sum(counts) == replicas and max(counts) - min(counts) <= 1
    assert settle(desired, settled, serial)[0] == settled
