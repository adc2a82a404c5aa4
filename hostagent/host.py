"""The lattice host on the bus: subscriptions, commands, auctions, heartbeats and events.

A :class:`Host` owns a set of NATS subscriptions under ``lattice.<id>`` (see
:class:`lattice.protocol.Subjects`): it answers ``ping`` with its inventory, bids on or
declines auctions (:func:`hostagent.state.auction_reply`), and executes commands sent to
``ctl.host.<host_id>.<op>`` through :class:`hostagent.commands.CommandHandler`, replying
with the ack and then publishing the events. Each command runs in a task of its own, in
the order they arrive for the state they change (the handler's lock), so a start that
compiles or initialises for seconds holds up neither the other commands nor the answers
to pings and auctions. It announces itself with ``host_started``
(again after every reconnect), heartbeats its full inventory, and on :meth:`Host.stop`
stops everything it runs and says ``host_stopped``. The NATS connection is the caller's
(:mod:`hostagent.main` connects and drains it). A message that does not parse is logged
and dropped, or refused when it is a command; nothing a peer sends brings the host down.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from hostagent.command_base import HOST_IS_STOPPING, HOST_STOPPING, Emit, Outcome
from hostagent.commands import CommandHandler
from hostagent.logctx import host_logger
from hostagent.state import HostState, auction_reply, labels_view
from hostagent.workload import MemoryRuntime, Runtime
from lattice.ids import random_host_id
from lattice.logsetup import TRACE_HEADER, log_context
from lattice.natsutil import connected_server
from lattice.protocol import (
    DEFAULT_LATTICE,
    ActorInstance,
    AuctionReply,
    AuctionRequest,
    CommandAck,
    EventType,
    HostInventory,
    HostStopped,
    Message,
    PingRequest,
    ProviderInstance,
    StopActorCommand,
    Subjects,
    decode,
    encode,
    make_event,
)

AuctionKind = Literal["actor", "provider"]


@runtime_checkable
class CrashReporter(Protocol):
    """A runtime that tells the host when an instance crashed (the WebAssembly one)."""

    on_crash: Callable[[ActorInstance, str], Coroutine[Any, Any, None]] | None


@runtime_checkable
class ProviderStateSource(Protocol):
    """A runtime that can say what its running providers show (the WebAssembly one)."""

    def provider_state(self, provider: ProviderInstance) -> dict[str, str]: ...


#: How long a starting host waits for the server to confirm its subscriptions before it
#: announces itself all the same (a late auction or ping is all it may miss)
START_BARRIER_S = 30.0


async def server_barrier(nc: Client, *, timeout: float = 5.0) -> None:
    """Return once the server has processed everything sent on ``nc`` before the call.

    A message to a private inbox travels behind every command already buffered, so its
    return proves the subscriptions before it are live. (``Client.flush()`` is no such
    barrier in nats-py 2.16: its PING is written ahead of the buffered commands.)
    """
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    try:
        await nc.publish(inbox, b"")
        await sub.next_msg(timeout=timeout)
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


@dataclass(frozen=True, kw_only=True)
class HostConfig:
    """Who a host is. ``environ`` (for resolving binding values) is never printed."""

    name: str
    labels: Mapping[str, str]
    lattice: str = DEFAULT_LATTICE
    heartbeat_s: float = 5.0
    host_id: str = field(default_factory=random_host_id)
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ), repr=False)


class Host:
    """One lattice host, attached to a NATS connection it does not own.

    >>> host = Host(nc, HostConfig(name="pi", labels={"leds": "12"}))   # doctest: +SKIP
    >>> await host.start(); ...; await host.stop()                      # doctest: +SKIP
    """

    def __init__(self, nc: Client, config: HostConfig, *, runtime: Runtime | None = None) -> None:
        self.nc = nc
        self.config = config
        self.subjects = Subjects(config.lattice)
        self.state = HostState(
            host_id=config.host_id, name=config.name, labels=dict(config.labels),
            heartbeat_s=config.heartbeat_s,
        )
        self.runtime: Runtime = runtime if runtime is not None else MemoryRuntime()
        self.commands = CommandHandler(self.state, self.runtime, environ=config.environ)
        if isinstance(self.runtime, CrashReporter):
            self.runtime.on_crash = self.actor_crashed
        self.log = host_logger(__name__, config.host_id, config.name)
        self._commands: set[asyncio.Task[None]] = set()  # commands being executed
        self._subs: list[Subscription] = []
        self._heartbeat: asyncio.Task[None] | None = None
        self.stopping = False

    @property
    def host_id(self) -> str:
        return self.config.host_id

    def inventory(self) -> HostInventory:
        """What this host runs right now, with the providers' own state when the runtime
        reports it (:class:`ProviderStateSource`) and the server it is connected to."""
        inventory = self.state.inventory()
        where = connected_server(self.nc)
        if where is not None and where.name:
            inventory = inventory.model_copy(update={"server": where.name})
        if isinstance(self.runtime, ProviderStateSource) and inventory.providers:
            providers = [p.model_copy(update={"state": self.runtime.provider_state(p)})
                         for p in inventory.providers]
            inventory = inventory.model_copy(update={"providers": providers})
        return inventory

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Subscribe, announce ``host_started`` and begin heartbeating."""
        s = self.subjects
        handlers: list[tuple[str, Callable[[Msg], Awaitable[None]]]] = [
            (s.ping, self._on_ping),
            (s.auction("actor"), self._on_actor_auction),
            (s.auction("provider"), self._on_provider_auction),
            (s.host_commands(self.host_id), self._on_command),
        ]
        self._subs = [
            await self.nc.subscribe(subject, cb=self._guard(handler))
            for subject, handler in handlers
        ]
        try:  # (a server busy with thousands of connections took over 5 s: bench_scale)
            await server_barrier(self.nc, timeout=START_BARRIER_S)
        except nats.errors.TimeoutError:
            self.log.warning("the server did not confirm the subscriptions within %.0f s; "
                             "announcing all the same", START_BARRIER_S)
        await self.announce()
        self._heartbeat = asyncio.create_task(self._heartbeat_loop(), name="host-heartbeat")
        self.log.info(
            "joined lattice %s with labels %s", s.lattice_id, labels_view(self.state.labels)
        )

    async def announce(self) -> None:
        """Publish ``host_started`` with the full inventory (at start and on reconnect)."""
        await self._emit([(EventType.HOST_STARTED, self.inventory())])

    async def on_reconnect(self) -> None:
        """Re-announce after NATS came back, so observers that lost track see us again."""
        if self.stopping:
            return
        self.log.info("reconnected to NATS; announcing again")
        await self.announce()

    async def stop(self, reason: str = HOST_STOPPING) -> None:
        """Stop every actor and provider (their events), publish ``host_stopped``, and
        unsubscribe. The connection stays open for the caller to drain."""
        if self.stopping:
            return
        self.stopping = True
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        await self.commands.abort_starts(reason)  # each refused with the reason
        if self._commands:
            await asyncio.wait(set(self._commands))  # replied to before host_stopped
        async with self.commands.lock:
            events = await self.commands.stop_everything(reason)
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs = []
        events.append((EventType.HOST_STOPPED, HostStopped(host_id=self.host_id, reason=reason)))
        await self._emit(events)
        try:
            await server_barrier(self.nc, timeout=2.0)
        except Exception as exc:
            self.log.warning("could not confirm the last events reached NATS: %r", exc)
        self.log.info("stopped (%s)", reason)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_s)
            await self._emit([(EventType.HOST_HEARTBEAT, self.inventory())])

    # ------------------------------------------------------------ handlers

    def _guard(self, handler: Callable[[Msg], Awaitable[None]]) -> Callable[[Msg], Awaitable[None]]:
        """Wrap a subscription callback so no exception escapes into nats-py."""

        async def guarded(msg: Msg) -> None:
            try:
                await handler(msg)
            except Exception:
                self.log.exception("error handling a message on %s", msg.subject)

        return guarded

    async def _on_ping(self, msg: Msg) -> None:
        if msg.data.strip() and decode(PingRequest, msg.data, subject=msg.subject) is None:
            return
        await self._reply(msg, self.inventory())

    async def _on_actor_auction(self, msg: Msg) -> None:
        await self._on_auction(msg, "actor")

    async def _on_provider_auction(self, msg: Msg) -> None:
        await self._on_auction(msg, "provider")

    async def _on_auction(self, msg: Msg, kind: AuctionKind) -> None:
        request = decode(AuctionRequest, msg.data, subject=msg.subject)
        if request is None:
            return
        if self.stopping:
            reply = AuctionReply(auction_id=request.auction_id, host_id=self.host_id,
                                 bid=False, reason="host is stopping",
                                 labels=dict(self.state.labels))
        else:
            reply = auction_reply(request, kind, self.state)
        self.log.debug("auction %s (%s): %s", request.auction_id, kind,
                       "bid" if reply.bid else f"decline: {reply.reason}")
        await self._reply(msg, reply)

    async def actor_crashed(self, actor: ActorInstance, reason: str) -> None:
        """An instance trapped or overran its CPU deadline in a call: stop it and publish
        ``actor_stopped`` with the reason, so the agent sees it gone (and may start it
        again) and ``latticectl events`` shows why."""
        async with self.commands.lock:
            if self.stopping or actor.instance_id not in self.state.actors:
                return
            outcome = await self.commands.stop_actor(
                StopActorCommand(actor_id=actor.actor_id, instance_id=actor.instance_id),
                reason=f"crashed: {reason}")
        await self._emit(outcome.events)

    async def _on_command(self, msg: Msg) -> None:
        """Hand the command to a task of its own: nats-py delivers the next message of a
        subscription only once this returns."""
        task = asyncio.create_task(self._guarded_command(msg), name=f"command-{msg.subject}")
        self._commands.add(task)
        task.add_done_callback(self._commands.discard)

    async def _guarded_command(self, msg: Msg) -> None:
        await self._guard(self._command)(msg)

    async def _command(self, msg: Msg) -> None:
        prefix = self.subjects.host_commands(self.host_id)[:-1]
        tail = msg.subject.removeprefix(prefix)
        op = self.subjects.op_of(msg.subject)
        try:
            if self.stopping:
                outcome = Outcome(CommandAck(host_id=self.host_id, accepted=False,
                                             reason=HOST_IS_STOPPING))
            else:
                with log_context(trace=(msg.headers or {}).get(TRACE_HEADER)):
                    outcome = await self.commands.handle(op, msg.data, tail=tail)
        except Exception as exc:
            self.log.exception("command %s failed unexpectedly", tail)
            outcome = Outcome(CommandAck(host_id=self.host_id, accepted=False,
                                         reason=f"internal error: {type(exc).__name__}"))
        await self._reply(msg, outcome.ack)
        await self._emit(outcome.events)

    # ------------------------------------------------------------ output

    async def _reply(self, msg: Msg, reply: Message) -> None:
        if not msg.reply:
            self.log.debug("no reply subject on %s; answer dropped", msg.subject)
            return
        await self.nc.publish(msg.reply, encode(reply))

    async def _emit(self, events: list[Emit]) -> None:
        """Publish events in order as CloudEvents from this host; a failure is logged."""
        for event_type, data in events:
            event = make_event(event_type, source=self.host_id, data=data)
            try:
                subject = self.subjects.event(event_type, self.host_id)
                await self.nc.publish(subject, encode(event))
            except Exception as exc:
                self.log.warning("could not publish %s: %s", event_type.value, exc)
