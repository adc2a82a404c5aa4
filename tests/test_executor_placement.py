"""The executor's side of placement (issue 16), against a real nats-server and the
scripted hosts of tests/test_executor.py: a start with a ``host_id`` goes to that host with
no auction, ``exclude_hosts`` is a hard exclusion, a move's stop waits for its start, and
a deployment moves at most once per ``rebalance_interval`` (on a manual clock)."""

from __future__ import annotations

from nats.aio.client import Client

from lattice.clock import ManualClock
from lattice.protocol import Subjects
from reconciler import actions as A
from reconciler.observed import ObservedState
from tests import test_executor as base
from tests.helpers import eventually
from tests.test_executor import ACTOR, Joiner, ScriptedHost, executor, owned, running_actor

# the fixtures of tests/test_executor.py
subjects, observed, host = base.subjects, base.observed, base.host


def move(to: ScriptedHost, frm: ScriptedHost, *, replica: int, deployment: str = "d"
         ) -> A.StartActor:
    return A.StartActor(deployment=deployment, actor_id=ACTOR, replica=replica,
                        constraints=(), annotations=owned(deployment, replica),
                        avoid_hosts=(),
                        placing=A.Placing(host_id=to.host_id, move_from=frm.host_id),
                        reason="rebalance")


async def test_a_targeted_start_goes_to_its_host_without_an_auction(
    nc: Client, subjects: Subjects, observed: ObservedState, host: Joiner
) -> None:
    a = await host("a", load=0)
    b = await host("b", load=9)
    start = A.StartActor(deployment="d", actor_id=ACTOR, replica="x", constraints=(),
                         annotations=owned("d", 0), avoid_hosts=(),
                         placing=A.Placing(host_id=b.host_id),
                         reason="daemon")
    ex = executor(nc, subjects, observed)
    assert await ex.execute([start]) == 1
    assert len(b.actors) == 1 and not a.actors
    assert a.auctions == [] and b.auctions == []


async def test_excluded_hosts_never_win_even_with_the_best_bid(
    nc: Client, subjects: Subjects, observed: ObservedState, host: Joiner
) -> None:
    full = await host("full", load=0)
    other = await host("other", load=7)
    ex = executor(nc, subjects, observed)
    starts: list[A.Action] = [
        A.StartActor(deployment="d", actor_id=ACTOR, replica=r, constraints=(),
                     annotations=owned("d", r), avoid_hosts=(),
                     placing=A.Placing((full.host_id,)), reason="r") for r in (0, 1)]
    assert await ex.execute(starts) == 2
    assert not full.actors and len(other.actors) == 2


async def test_an_excluded_lone_bidder_leaves_the_start_unplaced(
    nc: Client, subjects: Subjects, observed: ObservedState, host: Joiner
) -> None:
    full = await host("full")
    ex = executor(nc, subjects, observed)
    start = A.StartActor(deployment="d", actor_id=ACTOR, replica=1, constraints=(),
                         annotations=owned("d", 1), avoid_hosts=(),
                         placing=A.Placing((full.host_id,)), reason="r")
    assert await ex.execute([start]) == 0
    assert "max_per_host" in ex.unplaced[start.key]


async def test_one_move_per_deployment_per_interval_and_each_stop_waits_for_its_start(
    nc: Client, subjects: Subjects, observed: ObservedState, host: Joiner
) -> None:
    packed = await host("packed")
    free1, free2 = await host("free1"), await host("free2")
    stop1, stop2 = running_actor(packed, replica=1), running_actor(packed, replica=2)
    running_actor(packed, replica=0)
    clock = ManualClock()
    ex = executor(nc, subjects, observed, clock=clock, rebalance_interval=10.0)
    m1, m2 = move(free1, packed, replica=1), move(free2, packed, replica=2)
    await ex.execute([m1, m2, stop1, stop2])
    started = [h for h in (free1, free2) if h.actors]
    assert len(started) == 1  # one move now
    assert packed.ops("actor.stop") == []  # both stops held: their starts are planned
    assert {stop1.key, stop2.key} <= ex.held.keys()
    first, second = (m1, m2) if free1.actors else (m2, m1)
    first_stop = stop1 if first is m1 else stop2
    # the next pass: the first move is observed, its stop runs; the second still waits
    await ex.execute([second, first_stop, stop2 if first_stop is stop1 else stop1])
    assert len(packed.ops("actor.stop")) == 1
    assert not (free2 if second is m2 else free1).actors
    assert ex.next_retry_in() is not None and ex.next_retry_in() <= 10.0  # type: ignore[operator]
    clock.advance(10.0)
    other_stop = stop2 if first_stop is stop1 else stop1

    async def second_moves() -> bool:
        target = free2 if second is m2 else free1
        planned: list[A.Action] = [other_stop] if target.actors else [second, other_stop]
        await ex.execute(planned)
        return len(packed.ops("actor.stop")) == 2

    await eventually(second_moves, timeout=10,  # type: ignore[arg-type]
                     message="the second move ran after 10 s")
    assert len(free1.actors) == len(free2.actors) == 1
