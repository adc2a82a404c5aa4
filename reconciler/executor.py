"""The executor: the only code that turns planned actions into lattice traffic.

Each start goes to a host picked by auction (:mod:`reconciler.auctions`); then the
command, acked by the host, then confirmation by event or inventory.

Retry policy lives here, not in the planner, and the error's type decides it
(:mod:`reconciler.errors`): an action whose command was acked but whose effect is not yet
observed is *in flight* and is not issued again until it is observed or ``confirm_timeout``
passes (no retry storms). A transient failure (a host did not answer) is retried after the
delay the error carries, else after the :class:`~lattice.backoff.Backoff` policy's delay,
jittered. A permanent one (a host refused the command) is *refused*: not retried until its
inputs change -- the planned action (its key or content), any host joining or changing
(:meth:`hosts_changed`), or the refusing host itself -- or the agent's periodic resync
(:meth:`retry_refused`). An entity no host will take is
*unplaced*, reported with the hosts' decline reasons, retried when a host joins or changes,
and else after the backoff. An unexpected exception (a bug) is logged with its traceback
and retried as a transient failure. Time comes from an injected clock (:mod:`lattice.clock`).

Phases run in order, START then BIND then STOP: make-before-break. Across passes too: a
stop whose replacement (a start for the same entity) is not observed running yet is held
back until it is (:meth:`Executor.held_back`).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from lattice.backoff import Backoff
from lattice.clock import Clock, monotonic
from lattice.errors import PermanentError, TransientError
from lattice.logsetup import log_context, trace_headers
from lattice.protocol import (
    ANN_KIND,
    ANN_NAME,
    ANN_REPLICA,
    AuctionRequest,
    CommandAck,
    DeleteBindingCommand,
    Message,
    PutBindingCommand,
    StartActorCommand,
    StartProviderCommand,
    StopActorCommand,
    StopProviderCommand,
    Subjects,
    decode,
    encode,
)
from lattice.selectors import satisfied
from reconciler import actions as A
from reconciler.auctions import Auctioneer, Dealt
from reconciler.errors import CommandRefused, CommandUnanswered, Failure, Unplaceable
from reconciler.metrics import counted
from reconciler.observed import ObservedState
from reconciler.retries import Retries
from reconciler.rulesets import KIND_DEPLOYMENT

log = logging.getLogger(__name__)


@dataclass
class _Flight:
    host_id: str
    deadline: float
    confirmed: Callable[[ObservedState], bool]


#: The executor's default retry policy: 0.5 s, 1 s, 2 s ... up to 30 s, less up to half.
RETRY = Backoff(base=0.5, max=30.0, jitter=0.5)
#: Commands in flight at once (each a request to one host, answered by its ack). A pass
#: spreads its starts over the hosts, so this is mostly one per host: with 32, 10,000
#: starts went out at ~430/s, each waiting on a busy host's turn (issue 15 §4)
CONCURRENCY = 256


class Executor:
    """Runs actions against the lattice with auctions, acks, backoff and in-flight tracking."""

    def __init__(
        self,
        nc: Client,
        subjects: Subjects,
        observed: ObservedState,
        *,
        bid_timeout: float = 0.25,
        command_timeout: float = 5.0,
        confirm_timeout: float = 5.0,
        concurrency: int = CONCURRENCY,
        rebalance_interval: float = 10.0,
        backoff: Backoff = RETRY,
        rng: random.Random | None = None,
        clock: Clock = monotonic,
    ) -> None:
        self.nc = nc
        self.subjects = subjects
        self.observed = observed
        self.bid_timeout = bid_timeout
        self.command_timeout = command_timeout
        self.confirm_timeout = confirm_timeout
        self._clock = clock
        self._sem = asyncio.Semaphore(concurrency)
        self._inflight: dict[str, _Flight] = {}
        self.retries = Retries(observed, backoff=backoff, clock=clock, rng=rng)
        self.auctions = Auctioneer(nc, subjects, observed, bid_timeout=bid_timeout)
        #: start key -> host chosen by a shared auction this pass (or why none was)
        self._dealt: dict[str, Dealt] = {}
        #: action key -> the hosts' decline reasons (the same dict as ``retries.unplaced``)
        self.unplaced: dict[str, str] = self.retries.unplaced
        #: action key -> its last failure: the message, and the reason status shows
        self.failures: dict[str, Failure] = self.retries.failures
        #: stop key -> why it waits for its replacement (the last pass's :meth:`held_back`)
        self.held: dict[str, str] = {}
        self.commands_sent = 0
        #: at most one rebalancing move per deployment per this many seconds
        self.rebalance_interval = rebalance_interval
        self._moved_at: dict[str, float] = {}  # deployment -> when its last move started

    # ------------------------------------------------------------------ bookkeeping
    def runnable(self, actions: Iterable[A.Action]) -> list[A.Action]:
        """Actions not in flight, not waiting out a backoff, and not refused with the same
        inputs (:class:`~reconciler.retries.Retries`)."""
        now = self.prune()
        return [act for act in actions
                if act.key not in self._inflight and not self.retries.waits(act, now)]

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def busy(self) -> bool:
        """Whether commands it sent still wait for their effect to be seen (at most
        ``confirm_timeout`` each). The agent's periodic resync waits meanwhile: the
        hosts' events confirm them, and a ping of 10,000 hosts between the passes of a
        rollout only adds to its work (a join's ping does not wait)."""
        self.prune()
        return bool(self._inflight)

    def prune(self) -> float:
        """Forget flights that are confirmed, timed out, or whose host is gone; the time."""
        now = self._clock()
        for key, flight in list(self._inflight.items()):
            if (flight.deadline <= now or self.observed.get(flight.host_id) is None
                    or flight.confirmed(self.observed)):
                del self._inflight[key]
        return now

    def next_retry_in(self) -> float | None:
        """Seconds until the earliest backoff or flight deadline ends (None: nothing waits).
        Prunes first: a flight confirmed or timed out must not wake the loop (an idle agent
        would otherwise spin on a deadline in the past)."""
        now = self.prune()
        times = self.retries.retry_times()
        times += [f.deadline for f in self._inflight.values()]
        return max(0.0, min(times) - now) if times else None

    def hold(self, key: str, delay: float) -> None:
        """Do not run the action ``key`` for ``delay`` seconds (a crash-looping replica's
        restart backs off; 0 releases it)."""
        self.retries.hold(key, delay)

    def hosts_changed(self) -> None:
        """A host joined or changed: retry unplaced entities at once (those no host would
        take, and those no host answered for, as on an empty lattice), and what a host
        refused (the new or changed host may take it)."""
        self.retries.hosts_changed()

    def retry_refused(self) -> None:
        """Let refused actions run again: the agent's periodic resync, for inputs it does
        not watch (the trust policy, the module registry)."""
        if n := self.retries.release_refused():
            log.info("resync: %d refused action(s) may run again", n)

    def forget(self, keep: Iterable[str]) -> None:
        """Drop failure records for actions the planner no longer wants."""
        self.retries.forget(keep)

    # ------------------------------------------------------------------ running
    async def execute(self, actions: list[A.Action], *,
                      superseded: Callable[[], str | None] | None = None) -> int:
        """Run ``actions`` (the whole plan of this pass) phase by phase; returns how many
        succeeded. Stops whose replacement is not confirmed yet are held back
        (:meth:`held_back`). Before each phase, ``superseded()`` giving a reason (a newer
        revision is in force, the lease is lost) ends the pass: its remaining phases would
        serve an outdated plan, or would act without the lease."""
        todo = self.runnable(actions)
        done = 0
        for phase in sorted({a.phase for a in todo}):
            why = superseded() if superseded is not None else None
            if why:
                log.info("pass ended (%s): %s and later phases skipped", why, phase.name)
                break
            batch = [a for a in todo if a.phase == phase]
            if phase == A.ActionPhase.START:
                self._dealt.update(await self.auctions.deal(
                    [a for a in batch if isinstance(a, A.StartActor) and a.host_id is None
                     and not a.exclude_hosts]))
            if phase == A.ActionPhase.STOP:  # after the starts: their outcome counts
                held = self.held_back(actions)
                for key in held.keys() - self.held.keys():
                    log.info("%s held back: %s", key, held[key])
                self.held = held
                batch = [a for a in batch if a.key not in held]
            results = await asyncio.gather(*(self._run_one(a) for a in batch))
            done += sum(results)
        self.auctions.pending.clear()
        self._dealt.clear()
        return done

    def held_back(self, actions: Iterable[A.Action]) -> dict[str, str]:
        """Make-before-break across passes: the stops in ``actions`` whose replacement is
        not confirmed, as stop key -> why.

        A replacement is a start planned for the same entity (deployment and actor id; for a
        provider, capability id and binding name). Planned means not observed running yet:
        pending, in flight, failed, unplaced or in backoff, the old instance stays until the
        planner stops asking for the start. A stop without a replacement (removed from git)
        is not held. One exception keeps a provider swap on a full lattice from deadlocking:
        a host runs one provider per capability and binding name, so when the replacement is
        unplaced and the stop's host satisfies its rules, the stop goes first. A
        rebalancing move (a start with ``move_from``) holds only the stop of the instance
        it replaces (same replica, on ``move_from``), so one move waiting out the
        rebalance interval does not hold the stops of moves already made."""
        actors: set[tuple[str, str]] = set()
        moves: set[tuple[str, str, str, str]] = set()  # (deployment, actor, from, replica)
        providers: dict[tuple[str, str], list[A.StartProvider]] = {}
        for act in actions:
            if isinstance(act, A.StartActor):
                if act.move_from is None:
                    actors.add((act.deployment, act.actor_id))
                else:
                    moves.add((act.deployment, act.actor_id, act.move_from, str(act.replica)))
            elif isinstance(act, A.StartProvider):
                providers.setdefault((act.capability_id, act.binding_name), []).append(act)
        held: dict[str, str] = {}
        for act in actions:
            if isinstance(act, A.StopActor) and (actors or moves):
                dep, replica = _deployment_of(self.observed, act.host_id, act.instance_id)
                if dep is not None and (dep, act.actor_id) in actors:
                    held[act.key] = f"its replacement in deployment {dep} is not running yet"
                elif dep is not None and (dep, act.actor_id, act.host_id, replica) in moves:
                    held[act.key] = (f"replica {replica} of deployment {dep} moves: its new "
                                     f"instance is not running yet")
            elif isinstance(act, A.StopProvider):
                starts = providers.get((act.capability_id, act.binding_name), [])
                inv = self.observed.get(act.host_id)
                if starts and not any(
                        s.key in self.unplaced and inv is not None
                        and satisfied(s.constraints, inv.labels) for s in starts):
                    held[act.key] = f"its replacement from vendor {starts[0].vendor_id} " \
                                    f"is not running yet"
        return held

    async def _run_one(self, act: A.Action) -> bool:
        async with self._sem:
            try:
                with log_context(entity=act.key):
                    await counted(act, self._dispatch(act))
            except Unplaceable as exc:  # permanent, but a joining host may take it
                self.retries.retry_later(act, exc.message, unplaced=True)
                return False
            except TransientError as exc:
                self.retries.retry_later(act, exc.message, delay=exc.delay)
                return False
            except PermanentError as exc:
                self.retries.refuse(act, exc)
                return False
            except Exception as exc:  # a bug or a library surprise: report, keep going
                log.exception("unexpected error running %s", act.key)
                self.retries.retry_later(act, f"{type(exc).__name__}: {exc}")
                return False
            self.retries.succeeded(act.key)
            return True

    async def _dispatch(self, act: A.Action) -> None:
        match act:
            case A.StartActor():
                await self._start_actor(act)
            case A.StartProvider():
                await self._start_provider(act)
            case A.StopActor():
                await self._command(act.host_id, StopActorCommand(
                    actor_id=act.actor_id, instance_id=act.instance_id))
                self._fly(act, act.host_id,
                          lambda o: not _has_actor(o, act.host_id, act.instance_id))
            case A.StopProvider():
                await self._command(act.host_id, StopProviderCommand(
                    capability_id=act.capability_id, binding_name=act.binding_name))
                self._fly(act, act.host_id, lambda o: not _has_provider(
                    o, act.host_id, act.capability_id, act.binding_name))
            case A.PutBinding():
                values = dict(act.values)
                await self._command(act.host_id, PutBindingCommand(
                    actor_id=act.actor_id, capability_id=act.capability_id,
                    binding_name=act.binding_name, vendor_id=act.vendor_id,
                    values=values, annotations=dict(act.annotations)))
                self._fly(act, act.host_id, lambda o: _binding_values(
                    o, act.host_id, act.actor_id, act.capability_id, act.binding_name) == values)
            case A.DeleteBinding():
                await self._command(act.host_id, DeleteBindingCommand(
                    actor_id=act.actor_id, capability_id=act.capability_id,
                    binding_name=act.binding_name))
                self._fly(act, act.host_id, lambda o: _binding_values(
                    o, act.host_id, act.actor_id, act.capability_id, act.binding_name) is None)

    def _fly(
        self, act: A.Action, host_id: str, confirmed: Callable[[ObservedState], bool]
    ) -> None:
        """Hold ``act`` back until ``confirmed(observed)`` (its event arrived, or a heartbeat
        shows it), ``host_id`` leaves the lattice, or ``confirm_timeout`` passes."""
        self._inflight[act.key] = _Flight(
            host_id, self._clock() + self.confirm_timeout, confirmed)

    async def _start_actor(self, act: A.StartActor) -> None:
        """Start by auction, or on ``act.host_id`` (a daemon's instance, a move). A move
        waits while its deployment moved less than ``rebalance_interval`` ago: it is held
        in flight, unconfirmable, until then (the agent wakes at its deadline)."""
        dealt = self._dealt.pop(act.key, None)
        if isinstance(dealt, Exception):
            raise dealt
        if act.host_id is not None:
            host = act.host_id
            if act.move_from is not None:
                now = self._clock()
                ready = self._moved_at.get(act.deployment, now - self.rebalance_interval) \
                    + self.rebalance_interval
                if now < ready:
                    self._inflight[act.key] = _Flight(host, ready, lambda o: False)
                    return
                self._moved_at[act.deployment] = now
                log.info("rebalance %s: %s", act.deployment, act.reason)
        elif dealt is not None:
            host = dealt
        else:
            req = AuctionRequest(kind="actor", actor_id=act.actor_id,
                                 constraints=list(act.constraints))
            host = await self.auctions.auction(req, avoid=set(act.avoid_hosts),
                                               exclude=set(act.exclude_hosts))
        ack = await self._command(host, StartActorCommand(actor_id=act.actor_id,
                                                       annotations=dict(act.annotations)))
        iid = ack.instance_id or ""
        self._fly(act, host, lambda o: _has_actor(o, host, iid))

    async def _start_provider(self, act: A.StartProvider) -> None:
        if act.host_id is not None:  # a daemon's instance: its host is known
            host = act.host_id
        else:
            req = AuctionRequest(kind="provider", capability_id=act.capability_id,
                                 binding_name=act.binding_name, vendor_id=act.vendor_id,
                                 constraints=list(act.constraints))
            host = await self.auctions.auction(req, avoid=set())
        await self._command(host, StartProviderCommand(
            capability_id=act.capability_id, binding_name=act.binding_name,
            vendor_id=act.vendor_id, annotations=dict(act.annotations)))
        self._fly(act, host, lambda o: _has_provider(o, host, act.capability_id, act.binding_name))

    async def _command(self, host_id: str, msg: Message) -> CommandAck:
        op = getattr(msg, "op", "?")
        subject = self.subjects.host_command(host_id, op)
        self.commands_sent += 1
        try:
            reply = await self.nc.request(subject, encode(msg), timeout=self.command_timeout,
                                          headers=trace_headers())
        except (NatsTimeoutError, NoRespondersError, TimeoutError) as exc:
            raise CommandUnanswered(host_id, op, type(exc).__name__, delay=1.0) from exc
        ack = decode(CommandAck, reply.data, subject=subject)
        if ack is None:
            raise CommandUnanswered(host_id, op, "its ack is unreadable")
        if not ack.accepted:
            raise CommandRefused(host_id, op, ack.reason or "no reason given")
        log.info("%s on host %s: %s", op, host_id[:12], "done" if ack.changed else "no change")
        return ack


def _deployment_of(o: ObservedState, host: str, iid: str) -> tuple[str | None, str]:
    """The deployment that owns actor instance ``iid`` on ``host`` (if any), and the
    replica it serves there."""
    inv = o.get(host)
    for a in inv.actors if inv is not None else ():
        if a.instance_id == iid and a.annotations.get(ANN_KIND) == KIND_DEPLOYMENT:
            return a.annotations.get(ANN_NAME), a.annotations.get(ANN_REPLICA, "")
    return None, ""


def _has_actor(o: ObservedState, host: str, iid: str) -> bool:
    inv = o.get(host)
    return inv is not None and any(a.instance_id == iid for a in inv.actors)


def _has_provider(o: ObservedState, host: str, cap: str, bn: str) -> bool:
    inv = o.get(host)
    return inv is not None and any(
        (p.capability_id, p.binding_name) == (cap, bn) for p in inv.providers)


def _binding_values(
    o: ObservedState, host: str, actor: str, cap: str, bn: str
) -> dict[str, str] | None:
    inv = o.get(host)
    for b in inv.bindings if inv is not None else ():
        if (b.actor_id, b.capability_id, b.binding_name) == (actor, cap, bn):
            return b.values
    return None
