"""The executor against a real nats-server and small scripted hosts.

A :class:`ScriptedHost` answers auctions and commands on the bus as a host would, but its
answers are the test's: a load to bid with, a refusal, an ack that is never confirmed. What
it runs goes straight into the executor's :class:`ObservedState` (as the host's event would).
The tests wait on conditions with deadlines, never on sleeps; retry timing runs on a
:class:`~lattice.clock.ManualClock`, so a test sees a backoff end without waiting for it.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from lattice.backoff import Backoff
from lattice.clock import ManualClock
from lattice.protocol import (
    ANN_KIND,
    ANN_MANAGED_BY,
    ANN_NAME,
    ANN_REPLICA,
    MANAGED_BY_VALUE,
    ActorInstance,
    AuctionReply,
    AuctionRequest,
    CommandAck,
    HostInventory,
    ProviderInstance,
    Subjects,
    decode,
    encode,
)
from lattice.protocol.models import new_id
from lattice.selectors import satisfied
from reconciler import actions as A
from reconciler.errors import REFUSED, RETRYING
from reconciler.executor import Executor
from reconciler.observed import ObservedState
from tests.helpers import eventually

ACTOR = "MB2ZQB6ROOMAYBO4ZCTFYWN7YIVBWA3MTKZYAQKJMTIHE2ELLRW2E3ZW"
CAP, BN = "wascc:keyvalue", "default"


class ScriptedHost:
    """A host on the bus whose answers the test sets: ``load`` to bid with, ``accept``
    (else commands are refused), ``confirm`` (else an accepted start is acked but never
    shows up). Every auction and command it receives is recorded with its arrival time."""

    def __init__(self, nc: Client, subjects: Subjects, observed: ObservedState, name: str,
                 *, labels: dict[str, str] | None = None, load: int = 0) -> None:
        self.nc, self.subjects, self.observed = nc, subjects, observed
        self.name, self.host_id = name, f"N{name.upper()}{new_id()[:8]}"
        self.labels = labels or {}
        self.load = load
        self.accept = True
        self.confirm = True
        self.answer = True  # False: a known host that says nothing
        self.command_reply: bytes | None = None  # set: every command gets this reply
        self.actors: list[ActorInstance] = []
        self.hidden: list[ActorInstance] = []  # acked, not confirmed (yet)
        self.providers: list[ProviderInstance] = []
        self.auctions: list[float] = []
        self.commands: list[tuple[float, str]] = []
        self._subs: list[Subscription] = []

    async def join(self) -> ScriptedHost:
        for kind in ("actor", "provider"):
            self._subs.append(await self.nc.subscribe(self.subjects.auction(kind),  # type: ignore[arg-type]
                                                      cb=self._on_auction))
        self._subs.append(await self.nc.subscribe(self.subjects.host_commands(self.host_id),
                                                  cb=self._on_command))
        await self.nc.flush()
        self.show()
        return self

    def show(self) -> None:
        """Tell the observed state what runs here (as a heartbeat would)."""
        self.observed.merge_ping([HostInventory(
            host_id=self.host_id, name=self.name, labels=self.labels,
            started_at=datetime.now(UTC), actors=list(self.actors),
            providers=list(self.providers))])

    def reveal(self) -> None:
        """What was acked but hidden shows up now (its event was late)."""
        self.actors += self.hidden
        self.hidden = []
        self.show()

    def ops(self, op: str) -> list[float]:
        return [t for t, o in self.commands if o == op]

    async def _on_auction(self, msg: Msg) -> None:
        self.auctions.append(time.monotonic())
        req = decode(AuctionRequest, msg.data)
        if req is None or not self.answer:
            return
        why = "" if satisfied(req.constraints, self.labels) else "labels do not match"
        if req.kind == "provider" and any(
                (p.capability_id, p.binding_name) == (req.capability_id, req.binding_name)
                for p in self.providers):
            why = "already runs the provider"
        await msg.respond(encode(AuctionReply(auction_id=req.auction_id, host_id=self.host_id,
                                              bid=not why, reason=why, load=self.load)))

    async def _on_command(self, msg: Msg) -> None:
        op = msg.subject.split(f".{self.host_id}.", 1)[1]
        self.commands.append((time.monotonic(), op))
        body = json.loads(msg.data)
        if self.command_reply is not None:
            if self.command_reply:  # empty: silence, the request times out
                await msg.respond(self.command_reply)
            return
        if not self.accept:
            await msg.respond(encode(CommandAck(host_id=self.host_id, accepted=False,
                                                reason="scripted refusal")))
            return
        iid = new_id()
        now = datetime.now(UTC)
        if op == "actor.start":
            (self.actors if self.confirm else self.hidden).append(ActorInstance(
                actor_id=body["actor_id"], instance_id=iid, annotations=body["annotations"],
                started_at=now))
        elif op == "actor.stop":
            self.actors = [a for a in self.actors if a.instance_id != body["instance_id"]]
        elif op == "provider.start" and self.confirm:
            self.providers.append(ProviderInstance(
                capability_id=body["capability_id"], binding_name=body["binding_name"],
                vendor_id=body["vendor_id"], instance_id=iid, annotations=body["annotations"],
                started_at=now))
        elif op == "provider.stop":
            self.providers = [p for p in self.providers if p.capability_id != body["capability_id"]]
        self.show()
        await msg.respond(encode(CommandAck(host_id=self.host_id, accepted=True, changed=True,
                                            instance_id=iid)))


Joiner = Callable[..., Awaitable[ScriptedHost]]


@pytest.fixture
def subjects(lattice_id: str) -> Subjects:
    return Subjects(lattice_id)


@pytest.fixture
def observed() -> ObservedState:
    return ObservedState()


@pytest.fixture
async def host(nc: Client, subjects: Subjects, observed: ObservedState) -> AsyncIterator[Joiner]:
    """``await host("name", labels=..., load=...)``: a scripted host joined to the lattice."""
    async def join(name: str, **kw: object) -> ScriptedHost:
        return await ScriptedHost(nc, subjects, observed, name, **kw).join()  # type: ignore[arg-type]
    yield join


def executor(nc: Client, subjects: Subjects, observed: ObservedState, **kw: object) -> Executor:
    return Executor(nc, subjects, observed, **kw)  # type: ignore[arg-type]


def owned(deployment: str, replica: int) -> tuple[tuple[str, str], ...]:
    return A.pairs({ANN_KIND: "Deployment", ANN_MANAGED_BY: MANAGED_BY_VALUE,
                    ANN_NAME: deployment, ANN_REPLICA: str(replica)})


def start_actor(*, rules: tuple[str, ...] = (), replica: int = 0, deployment: str = "d"
                ) -> A.StartActor:
    return A.StartActor(deployment=deployment, actor_id=ACTOR, replica=replica,
                        constraints=rules, annotations=owned(deployment, replica),
                        avoid_hosts=(), reason="replica not running")


def running_actor(h: ScriptedHost, deployment: str = "d", replica: int = 0) -> A.StopActor:
    """An instance of replica ``replica`` on ``h``, and the action that stops it."""
    inst = ActorInstance(actor_id=ACTOR, instance_id=new_id(),
                         annotations=dict(owned(deployment, replica)),
                         started_at=datetime.now(UTC))
    h.actors.append(inst)
    h.show()
    return A.StopActor(host_id=h.host_id, actor_id=ACTOR, instance_id=inst.instance_id,
                       reason="host no longer satisfies zone=b")


class NoJitter(random.Random):
    def random(self) -> float:
        return 0.0  # jitter takes nothing off: delays are exactly the policy's


# ---------------------------------------------------------------- make-before-break


@pytest.mark.parametrize("outcome", ["refused", "unplaced", "in flight"])
async def test_a_stop_waits_for_its_replacement_across_passes(
    nc: Client, subjects: Subjects, observed: ObservedState, host: Joiner, outcome: str
) -> None:
    old = await host("old", labels={"zone": "a"})
    stop = running_actor(old)
    start = start_actor(rules=("zone=b",))
    new = await host("new", labels={"zone": "b"}) if outcome != "unplaced" else None
    if new is not None:
        new.accept = outcome != "refused"
        new.confirm = outcome != "in flight"
    ex = executor(nc, subjects, observed, confirm_timeout=60)
    for _ in range(3):  # the first pass, then passes with the start in backoff or in flight
        await ex.execute([start, stop])
    assert old.ops("actor.stop") == []
    assert stop.key in ex.held

    # the replacement comes up: the refusing host changes, a host joins, the start is
    # confirmed (a refusal is retried when a host changes: what the agent does then)
    if new is None:
        new = await host("new", labels={"zone": "b"})
    new.accept = new.confirm = True
    ex.hosts_changed()
    new.reveal()

    async def one_pass() -> bool:
        planned = [stop] if new.actors else [start, stop]  # what the planner would ask
        await ex.execute(planned)
        return bool(old.ops("actor.stop"))

    await eventually(one_pass, timeout=20, message="the old replica is stopped")
    assert len(new.actors) == 1
    assert new.ops("actor.start")[-1] < old.ops("actor.stop")[0]


async def test_a_stop_without_replacement_runs_at_once(
    nc: Client, subjects: Subjects, observed: ObservedState, host: Joiner
) -> None:
    old = await host("old")
    other = running_actor(old, deployment="other")  # the start below is not its replacement
    gone = running_actor(old, deployment="d", replica=1)
    ex = executor(nc, subjects, observed)
    refused = await host("refuses", labels={"zone": "b"})
    refused.accept = False
    await ex.execute([start_actor(rules=("zone=b",)), other])
    await ex.execute([gone])  # removed from git: nothing replaces it
    assert len(old.ops("actor.stop")) == 2
    assert ex.held == {}


async def provider_host(h: ScriptedHost, vendor: str) -> A.StopProvider:
    h.providers.append(ProviderInstance(capability_id=CAP, binding_name=BN, vendor_id=vendor,
                                        instance_id=new_id(), started_at=datetime.now(UTC)))
    h.show()
    return A.StopProvider(host_id=h.host_id, capability_id=CAP, binding_name=BN,
                          reason="deployments want it from vendor redis")


def start_provider(vendor: str) -> A.StartProvider:
    return A.StartProvider(capability_id=CAP, binding_name=BN, vendor_id=vendor,
                           constraints=(), annotations=(), owners=("d",), reason="swap")


async def test_a_provider_swap_keeps_the_old_vendor_until_the_new_one_runs(
    nc: Client, subjects: Subjects, observed: ObservedState, host: Joiner
) -> None:
    old = await host("old")
    stop = await provider_host(old, "memory")
    new = await host("new")
    new.accept = False
    start = start_provider("redis")
    ex = executor(nc, subjects, observed)
    for _ in range(3):
        await ex.execute([start, stop])
    assert old.ops("provider.stop") == []
    assert len(new.ops("provider.start")) == 1  # refused: not retried until a change
    new.accept = True
    ex.hosts_changed()  # the host changed (the agent hears of it)

    async def one_pass() -> bool:
        await ex.execute([stop] if new.providers else [start, stop])
        return bool(old.ops("provider.stop"))

    await eventually(one_pass, timeout=20, message="the old provider is stopped")
    assert [p.vendor_id for p in new.providers] == ["redis"]


async def test_a_provider_swap_on_a_full_lattice_stops_first(
    nc: Client, subjects: Subjects, observed: ObservedState, host: Joiner
) -> None:
    """The only host runs the old vendor, so no host bids for the new one: holding the stop
    back would wait forever."""
    only = await host("only")
    stop = await provider_host(only, "memory")
    ex = executor(nc, subjects, observed, bid_timeout=2.0)
    await ex.execute([start_provider("redis"), stop])
    assert start_provider("redis").key in ex.unplaced
    assert only.ops("provider.stop")


# ---------------------------------------------------------------- unplaced


@pytest.mark.parametrize("replicas", [1, 2])  # a lone auction; a shared one (deal)
async def test_on_an_empty_lattice_a_start_is_placed_as_soon_as_a_host_joins(
    nc: Client, subjects: Subjects, observed: ObservedState, host: Joiner, replicas: int
) -> None:
    starts = [start_actor(replica=r) for r in range(replicas)]
    ex = executor(nc, subjects, observed, backoff=Backoff(base=20.0))  # a backoff far off
    await ex.execute(list(starts))
    assert sorted(ex.unplaced) == [s.key for s in starts]
    assert "no host answered" in ex.unplaced[starts[0].key]
    assert ex.runnable(starts) == []  # backing off
    first = await host("first")
    joined = time.monotonic()
    ex.hosts_changed()  # what the agent does on HOST_JOINED
    assert ex.runnable(starts) == starts
    await ex.execute(list(starts))
    assert len(first.actors) == replicas
    assert first.ops("actor.start")[-1] - joined < 5.0  # not the 10-20 s backoff
    assert ex.unplaced == {} and ex.failures == {}


# ---------------------------------------------------------------- auctions, flights, backoff


async def test_the_auction_ends_once_every_known_host_answered(
    nc: Client, subjects: Subjects, observed: ObservedState, host: Joiner
) -> None:
    hosts = [await host(f"h{i}", load=load) for i, load in enumerate([3, 1, 2])]
    ex = executor(nc, subjects, observed, bid_timeout=3.0)
    started = time.monotonic()
    winner = await ex.auctions.auction(AuctionRequest(kind="actor", actor_id=ACTOR), avoid=set())
    took = time.monotonic() - started
    assert all(h.auctions for h in hosts)
    assert winner == hosts[1].host_id  # the least loaded bidder
    assert took < 1.5  # of a 3 s window: it ended with the third answer

    # with the default 250 ms window (best of three: a loaded machine may stall once)
    default = executor(nc, subjects, observed)
    took_default = []
    for _ in range(3):
        started = time.monotonic()
        await default.auctions.auction(AuctionRequest(kind="actor", actor_id=ACTOR), avoid=set())
        took_default.append(time.monotonic() - started)
        default.auctions.pending.clear()
    assert min(took_default) < 0.2, took_default

    # a known host that does not answer: the window runs to its end
    hosts[1].answer = False
    slow = executor(nc, subjects, observed, bid_timeout=1.0)
    started = time.monotonic()
    winner = await slow.auctions.auction(AuctionRequest(kind="actor", actor_id=ACTOR), avoid=set())
    assert time.monotonic() - started >= 0.95
    assert winner == hosts[2].host_id  # the least loaded of those that answered


@pytest.mark.parametrize("replicas", [1, 2])  # a lone auction; one shared by both (deal)
async def test_starts_go_to_the_least_loaded_bidders(
    nc: Client, subjects: Subjects, observed: ObservedState, host: Joiner, replicas: int
) -> None:
    busy, idle, middling = [await host(n, load=load)
                            for n, load in (("busy", 5), ("idle", 1), ("middling", 3))]
    ex = executor(nc, subjects, observed, bid_timeout=3.0)
    started = time.monotonic()
    assert await ex.execute([start_actor(replica=r) for r in range(replicas)]) == replicas
    assert time.monotonic() - started < 1.5 * replicas
    assert busy.commands == []
    assert len(idle.ops("actor.start")) == 1
    assert len(middling.ops("actor.start")) == replicas - 1  # siblings spread


async def test_one_command_per_key_while_it_is_in_flight(
    nc: Client, subjects: Subjects, observed: ObservedState, host: Joiner
) -> None:
    h = await host("h")
    h.confirm = False  # acked, never seen running
    clock = ManualClock()
    ex = executor(nc, subjects, observed, confirm_timeout=1.0, clock=clock)
    act = start_actor()
    assert not ex.busy()
    for _ in range(5):
        await ex.execute([act])
    assert len(h.ops("actor.start")) == 1
    assert ex.inflight == 1 and ex.runnable([act]) == []
    assert ex.next_retry_in() == 1.0
    assert ex.busy()  # the agent's resync ping waits

    clock.advance(0.999)  # not yet confirmed, not yet timed out: still one command
    await ex.execute([act])
    assert len(h.ops("actor.start")) == 1 and ex.runnable([act]) == []

    # unconfirmed when confirm_timeout passes: issued again, once
    clock.advance(0.001)
    assert not ex.busy()  # (a lost event: the resync's ping may find it now)
    assert ex.runnable([act]) == [act]
    for _ in range(3):
        await ex.execute([act])
    assert len(h.ops("actor.start")) == 2

    h.reveal()  # confirmed: the flight ends, nothing waits
    assert ex.next_retry_in() is None and ex.inflight == 0 and not ex.busy()


# ---------------------------------------------------------------- errors decide the retry


def retrying(clock: ManualClock, **kw: object) -> dict[str, object]:
    """Executor options for timing tests: the manual clock, a 0.25 s policy (binary
    fractions: exact sums), no jitter."""
    return {"clock": clock, "backoff": Backoff(base=0.25, max=2.0, jitter=0.5),
            "rng": NoJitter(), **kw}


async def test_a_transient_failure_is_retried_after_a_growing_backoff(
    nc: Client, subjects: Subjects, observed: ObservedState, host: Joiner
) -> None:
    """An unreadable ack carries no delay: the policy's 0.25, 0.5, 1 s, then its 2 s cap."""
    h = await host("h")
    h.command_reply = b"not an ack"
    clock = ManualClock()
    ex = executor(nc, subjects, observed, **retrying(clock))
    act = start_actor()
    tick = 1 / 1024
    for n, delay in enumerate([0.25, 0.5, 1.0, 2.0, 2.0], start=1):
        await ex.execute([act])
        assert len(h.ops("actor.start")) == n
        failure = ex.failures[act.key]
        assert "did not answer actor.start: its ack is unreadable" in failure
        assert failure.reason == RETRYING
        assert ex.next_retry_in() == delay
        clock.advance(delay - tick)  # a pass before the backoff ends sends nothing
        assert ex.runnable([act]) == []
        await ex.execute([act])
        assert len(h.ops("actor.start")) == n
        clock.advance(tick)  # the pass when it ends sends it again
        assert ex.runnable([act]) == [act]

    h.command_reply = None  # the host answers: success clears the record
    await ex.execute([act])
    assert ex.failures == {} and ex.next_retry_in() is None and len(h.actors) == 1


async def test_a_transient_failure_waits_the_delay_it_carries(
    nc: Client, subjects: Subjects, observed: ObservedState, host: Joiner
) -> None:
    """A host that does not answer a command in time: CommandUnanswered carries 1 s,
    which is the wait on every attempt (the policy's growth does not apply), jittered."""
    h = await host("h")
    h.command_reply = b""  # silence
    clock = ManualClock()
    ex = executor(nc, subjects, observed, command_timeout=0.1, **retrying(clock))
    act = start_actor()
    for n in (1, 2, 3):
        await ex.execute([act])
        assert len(h.ops("actor.start")) == n
        assert "did not answer actor.start: TimeoutError" in ex.failures[act.key]
        assert ex.next_retry_in() == pytest.approx(1.0)
        assert ex.runnable([act]) == []
        clock.advance(1.0)

    class HalfOff(random.Random):
        def random(self) -> float:
            return 1.0

    jittered = executor(nc, subjects, observed, command_timeout=0.1,
                        **retrying(clock, rng=HalfOff()))
    await jittered.execute([act])
    assert jittered.next_retry_in() == pytest.approx(0.5)  # the policy's jitter, at most half


async def test_a_refused_command_waits_for_its_inputs_to_change(
    nc: Client, subjects: Subjects, observed: ObservedState, host: Joiner
) -> None:
    """A refusal is permanent: no retry however long the wait, until the action, any
    host (hosts_changed) or the refusing host changes, or the agent's resync."""
    h = await host("h", labels={"zone": "a"})
    h.accept = False
    clock = ManualClock()
    ex = executor(nc, subjects, observed, **retrying(clock))
    act = start_actor()

    async def refused_once_more(n: int) -> None:
        await ex.execute([act])
        assert len(h.ops("actor.start")) == n
        failure = ex.failures[act.key]
        assert failure == f"host {h.host_id[:12]} refused actor.start: scripted refusal"
        assert failure.reason == REFUSED
        assert ex.next_retry_in() is None  # nothing to wake up for
        clock.advance(3600.0)
        await ex.execute([act])
        assert ex.runnable([act]) == [] and len(h.ops("actor.start")) == n

    await refused_once_more(1)
    ex.hosts_changed()  # a host joined or changed
    await refused_once_more(2)
    changed = start_actor(rules=("zone=a",))  # the desired entity changed: same key
    assert changed.key == act.key and ex.runnable([changed]) == [changed]
    act = changed
    await refused_once_more(3)
    h.labels = {"zone": "a", "disk": "ssd"}  # the refusing host itself changed
    h.show()
    await refused_once_more(4)
    ex.retry_refused()  # the agent's periodic resync (the trust policy may have changed)
    await refused_once_more(5)
    assert ex.runnable([start_actor(rules=("zone=a",), replica=1)])  # other keys run
    h.accept = True
    ex.hosts_changed()
    await ex.execute([act])
    assert ex.failures == {} and len(h.actors) == 1


async def test_an_unexpected_error_is_logged_with_its_traceback_and_retried(
    nc: Client, subjects: Subjects, observed: ObservedState, host: Joiner,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bug (here: an executor whose dispatch raises KeyError) is not a refusal: logged
    with its traceback and retried after the backoff, like a transient failure."""
    class Buggy(Executor):
        async def _dispatch(self, act: A.Action) -> None:
            raise KeyError("oops")

    await host("h")
    clock = ManualClock()
    ex = Buggy(nc, subjects, observed, clock=clock, backoff=Backoff(base=0.3),
               rng=NoJitter())
    act = start_actor()
    caplog.set_level(logging.ERROR, logger="reconciler.executor")
    assert await ex.execute([act]) == 0
    assert [r.exc_info is not None for r in caplog.records] == [True]
    assert ex.failures[act.key] == "KeyError: 'oops'"
    assert ex.failures[act.key].reason == RETRYING
    assert ex.next_retry_in() == pytest.approx(0.3)
    clock.advance(0.3)
    assert ex.runnable([act]) == [act]
