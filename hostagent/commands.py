"""What a host does with each command: decide, call the runtime, update the state.

:class:`CommandHandler` turns one command message into an :class:`Outcome`: the
:class:`~lattice.protocol.CommandAck` to reply with and the events to publish after it, in
order. It never touches NATS: :mod:`hostagent.host` sends what it returns. Every command is
idempotent (starting what runs, stopping what does not, putting an identical binding: all
acked with ``changed=False`` and no event) and every failure is a refusal with a reason,
never an exception; a failed start and a refused ``binding.put`` are announced as events
too. Binding values are kept as templates; only the runtime sees them
resolved (:mod:`hostagent.values`). The binding commands are in
:mod:`hostagent.binding_commands`, outcomes and refusals in :mod:`hostagent.command_base`.

Commands change the state one at a time under :attr:`CommandHandler.lock`, but for the
long part of an actor's start (fetch, compile, ``wapc_init``: seconds), so other commands go
on meanwhile; the start is acked once the instance runs. A repeat of a start under way gets
its answer (one instance); a stop that matches one has the instance stopped once it is up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import ValidationError

from hostagent.binding_commands import BindingCommands
from hostagent.command_base import (
    HOST_IS_STOPPING,
    HOST_STOPPING,
    STOPPED_BY_COMMAND,
    Emit,
    Outcome,
    describe_failure,
)
from hostagent.logctx import command_entity
from hostagent.state import HostState
from hostagent.workload import Runtime
from lattice.logsetup import log_context
from lattice.protocol import (
    COMMAND_MODELS,
    PROTOCOL_VERSION,
    ActorEvent,
    ActorInstance,
    ActorStartFailed,
    CommandAck,
    CommandOp,
    DeleteBindingCommand,
    EventType,
    Message,
    ProviderEvent,
    ProviderInstance,
    ProviderStartFailed,
    PutBindingCommand,
    StartActorCommand,
    StartProviderCommand,
    StopActorCommand,
    StopProviderCommand,
    describe_validation_error,
    identity_annotations,
    new_id,
    parse_json_object,
    utcnow,
)


@dataclass(eq=False)
class Starting:
    """An actor instance whose start is under way outside the lock."""

    inst: ActorInstance
    work: asyncio.Task[None]  #: the runtime's start_actor
    done: asyncio.Future[CommandAck]  #: the ack, for starts of the same identity meanwhile
    stop_reason: str | None = None  #: set by a stop that matched it

    def matches(self, actor_id: str, instance_id: str | None,
                annotations: Mapping[str, str]) -> bool:
        """Whether a stop of (``actor_id``, ``instance_id`` or ``annotations``) means it."""
        if self.inst.actor_id != actor_id:
            return False
        if instance_id is not None:
            return self.inst.instance_id == instance_id
        return all(self.inst.annotations.get(k) == v for k, v in annotations.items())


class CommandHandler(BindingCommands):
    """Executes commands against one host's state through its runtime."""

    def __init__(
        self, state: HostState, runtime: Runtime, *, environ: Mapping[str, str]
    ) -> None:
        super().__init__(state, runtime, environ=environ)
        self.starting: dict[str, Starting] = {}  # instance id -> its start under way
        self.closing = False  #: set by abort_starts: no start begins any more

    # ------------------------------------------------------------ entry point

    async def handle(self, op: CommandOp | None, payload: bytes, *, tail: str = "?") -> Outcome:
        """Parse and execute one command received for ``op`` (None: unknown ``tail``),
        under :attr:`lock` but for the long part of an actor's start."""
        if op is None:
            known = ", ".join(o.value for o in CommandOp)
            return self._refuse(f"unknown command {tail!r}; expected one of {known}")
        obj = parse_json_object(payload)
        if isinstance(obj, str):
            return self._refuse(f"{op.value}: {obj}")
        version = obj.get("v", PROTOCOL_VERSION)
        if version != PROTOCOL_VERSION:
            return self._refuse(
                f"{op.value}: unsupported protocol version {version!r}; "
                f"this host speaks {PROTOCOL_VERSION}"
            )
        try:
            cmd = COMMAND_MODELS[op].model_validate(obj)
        except ValidationError as exc:
            return self._refuse(f"invalid {op.value} command: {describe_validation_error(exc)}")
        with log_context(entity=command_entity(cmd)):
            if isinstance(cmd, StartActorCommand):
                return await self.start_actor(cmd)
            async with self.lock:
                return await self._execute(cmd)

    async def _execute(self, cmd: Message) -> Outcome:
        match cmd:
            case StopActorCommand():
                return await self.stop_actor(cmd)
            case StartProviderCommand():
                return await self.start_provider(cmd)
            case StopProviderCommand():
                return await self.stop_provider(cmd)
            case PutBindingCommand():
                return await self.put_binding(cmd)
            case DeleteBindingCommand():
                return await self.delete_binding(cmd)
        raise AssertionError(f"no handler for {type(cmd).__name__}")  # pragma: no cover

    # ------------------------------------------------------------ actors

    async def start_actor(self, cmd: StartActorCommand) -> Outcome:
        """Start an instance unless one of this identity runs; takes :attr:`lock` for the
        decision and the bookkeeping only (see module doc)."""
        while True:
            async with self.lock:
                if self.closing:
                    return self._refuse(HOST_IS_STOPPING)
                existing = self.state.find_actor(cmd.actor_id, cmd.annotations)
                if existing is not None:
                    return self._already_running(existing, cmd)
                earlier = self._starting_like(cmd)
                if earlier is None:
                    starting = self._begin_start(cmd)
                    break
            ack = await asyncio.shield(earlier.done)
            if not ack.accepted:  # the same answer; the first start announced it
                return self._refuse(ack.reason)
            # it runs now: answered as a start of what runs (annotations updated)
        try:
            await asyncio.wait({starting.work})
        finally:  # also when this command is cancelled: the start ends with it
            if not starting.work.done():
                starting.work.cancel()
                await asyncio.wait({starting.work})
            outcome = await self._conclude(starting)
        return outcome

    async def _conclude(self, starting: Starting) -> Outcome:
        """Record or refuse a start whose work is done; the starts waiting get its ack."""
        outcome: Outcome | None = None
        try:
            async with self.lock:
                outcome = await self._finish_start(starting)
            return outcome
        finally:
            self.starting.pop(starting.inst.instance_id, None)
            starting.done.set_result(outcome.ack if outcome is not None else CommandAck(
                host_id=self.state.host_id, accepted=False, reason="start not recorded"))

    def _already_running(self, existing: ActorInstance, cmd: StartActorCommand) -> Outcome:
        reason = "already running"
        if existing.annotations != cmd.annotations:
            self.state.actors[existing.instance_id] = existing.model_copy(
                update={"annotations": dict(cmd.annotations)}
            )
            reason = "already running; annotations updated"
        self.log.info("actor %s instance %s %s", cmd.actor_id, existing.instance_id, reason)
        return self._ok(changed=False, instance_id=existing.instance_id, reason=reason)

    def _starting_like(self, cmd: StartActorCommand) -> Starting | None:
        """A start under way of the same actor and identity annotations."""
        wanted = identity_annotations(cmd.annotations)
        return next((s for s in self.starting.values() if s.inst.actor_id == cmd.actor_id
                     and identity_annotations(s.inst.annotations) == wanted), None)

    def _begin_start(self, cmd: StartActorCommand) -> Starting:
        inst = ActorInstance(
            actor_id=cmd.actor_id, instance_id=new_id(), annotations=dict(cmd.annotations),
            started_at=utcnow(),
        )
        work = asyncio.create_task(self.runtime.start_actor(inst),
                                   name=f"start-{inst.actor_id[:8]}-{inst.instance_id[:8]}")
        starting = Starting(inst, work, asyncio.get_running_loop().create_future())
        self.starting[inst.instance_id] = starting
        return starting

    async def _finish_start(self, starting: Starting) -> Outcome:
        """Record the instance the runtime started, or refuse (under :attr:`lock`)."""
        inst, work = starting.inst, starting.work
        failure: str | None = None
        if work.cancelled():
            failure = starting.stop_reason or "the start was cancelled"
        elif work.exception() is not None:
            failure = describe_failure(work.exception() or RuntimeError())
        elif starting.stop_reason is not None:
            failure = f"stopped while starting ({starting.stop_reason})"
        if failure is None:
            self.state.actors[inst.instance_id] = inst
            self.log.info("actor %s instance %s started", inst.actor_id, inst.instance_id)
            return self._ok(changed=True, instance_id=inst.instance_id,
                            events=[(EventType.ACTOR_STARTED, self._actor_event(inst, ""))])
        if work.cancelled() or work.exception() is None:  # it may have got far: undo
            try:
                await self.runtime.stop_actor(inst)
            except Exception as exc:
                self.log.warning("actor %s instance %s did not stop: %s", inst.actor_id,
                                 inst.instance_id, describe_failure(exc))
        reason = f"actor {inst.actor_id} failed to start: {failure}"
        failed = ActorStartFailed(
            host_id=self.state.host_id, actor_id=inst.actor_id,
            annotations=dict(inst.annotations), reason=reason,
        )
        return self._refuse(reason, events=[(EventType.ACTOR_START_FAILED, failed)])

    async def abort_starts(self, reason: str) -> None:
        """Cancel every start under way (the host is stopping) and wait until each is
        answered; call without holding :attr:`lock`."""
        self.closing = True
        for starting in list(self.starting.values()):
            starting.stop_reason = reason
            starting.work.cancel()
        waiting = [s.done for s in self.starting.values()]
        if waiting:
            await asyncio.wait(waiting)

    async def stop_actor(
        self, cmd: StopActorCommand, *, reason: str = STOPPED_BY_COMMAND
    ) -> Outcome:
        targets = self.state.select_actors(cmd.actor_id, cmd.instance_id, cmd.annotations)
        starting = [s for s in self.starting.values()
                    if s.matches(cmd.actor_id, cmd.instance_id, cmd.annotations)]
        for start in starting:  # stopped as soon as it is up
            start.stop_reason = reason
        if not targets:
            if starting:
                return self._ok(changed=True, instance_id=cmd.instance_id,
                                reason="stopped while starting")
            return self._ok(changed=False, instance_id=cmd.instance_id, reason="not running")
        events, failures = await self._stop_actors(targets, reason)
        if failures:
            return self._refuse("; ".join(failures), events=events, changed=bool(events))
        only = targets[0].instance_id if len(targets) == 1 else None
        return self._ok(changed=True, instance_id=only, events=events)

    async def _stop_actors(
        self, targets: list[ActorInstance], reason: str
    ) -> tuple[list[Emit], list[str]]:
        events: list[Emit] = []
        failures: list[str] = []
        for inst in targets:
            try:
                await self.runtime.stop_actor(inst)
            except Exception as exc:
                failures.append(f"actor {inst.actor_id} instance {inst.instance_id} "
                                f"failed to stop: {describe_failure(exc)}")
                continue
            self.state.actors.pop(inst.instance_id, None)
            self.log.info("actor %s instance %s stopped (%s)",
                          inst.actor_id, inst.instance_id, reason)
            events.append((EventType.ACTOR_STOPPED, self._actor_event(inst, reason)))
        return events, failures

    def _actor_event(self, inst: ActorInstance, reason: str) -> ActorEvent:
        return ActorEvent(
            host_id=self.state.host_id, actor_id=inst.actor_id, instance_id=inst.instance_id,
            annotations=dict(inst.annotations), reason=reason, started_at=inst.started_at,
        )

    # ------------------------------------------------------------ providers

    async def start_provider(self, cmd: StartProviderCommand) -> Outcome:
        key = (cmd.capability_id, cmd.binding_name)
        existing = self.state.providers.get(key)
        if existing is not None:
            if existing.vendor_id != cmd.vendor_id:
                return self._refuse(
                    f"provider {key[0]}/{key[1]} already runs here with vendor "
                    f"{existing.vendor_id}, not {cmd.vendor_id}; stop it first"
                )
            reason = "already running"
            if existing.annotations != cmd.annotations:
                self.state.providers[key] = existing.model_copy(
                    update={"annotations": dict(cmd.annotations)}
                )
                reason = "already running; annotations updated"
            return self._ok(changed=False, instance_id=existing.instance_id, reason=reason)
        inst = ProviderInstance(
            capability_id=cmd.capability_id, binding_name=cmd.binding_name,
            vendor_id=cmd.vendor_id, instance_id=new_id(),
            annotations=dict(cmd.annotations), started_at=utcnow(),
        )
        try:
            await self.runtime.start_provider(inst)
        except Exception as exc:
            reason = f"provider {key[0]}/{key[1]} failed to start: {describe_failure(exc)}"
            failed = ProviderStartFailed(
                host_id=self.state.host_id, capability_id=cmd.capability_id,
                binding_name=cmd.binding_name, vendor_id=cmd.vendor_id,
                annotations=dict(cmd.annotations), reason=reason,
            )
            return self._refuse(reason, events=[(EventType.PROVIDER_START_FAILED, failed)])
        self.state.providers[key] = inst
        self.log.info("provider %s/%s (%s) started", key[0], key[1], inst.vendor_id)
        return self._ok(changed=True, instance_id=inst.instance_id,
                        events=[(EventType.PROVIDER_STARTED, self._provider_event(inst, ""))])

    async def stop_provider(
        self, cmd: StopProviderCommand, *, reason: str = STOPPED_BY_COMMAND
    ) -> Outcome:
        key = (cmd.capability_id, cmd.binding_name)
        inst = self.state.providers.get(key)
        if inst is None:
            return self._ok(changed=False, reason="not running")
        events: list[Emit] = []
        for binding in self.state.bindings_of(*key):
            events += await self._delete_binding(binding, "provider stopped")
        try:
            await self.runtime.stop_provider(inst)
        except Exception as exc:
            return self._refuse(
                f"provider {key[0]}/{key[1]} failed to stop: {describe_failure(exc)}",
                events=events, changed=bool(events),
            )
        del self.state.providers[key]
        self.log.info("provider %s/%s stopped (%s)", key[0], key[1], reason)
        events.append((EventType.PROVIDER_STOPPED, self._provider_event(inst, reason)))
        return self._ok(changed=True, instance_id=inst.instance_id, events=events)

    def _provider_event(self, inst: ProviderInstance, reason: str) -> ProviderEvent:
        return ProviderEvent(
            host_id=self.state.host_id, capability_id=inst.capability_id,
            binding_name=inst.binding_name, vendor_id=inst.vendor_id,
            instance_id=inst.instance_id, annotations=dict(inst.annotations), reason=reason,
            started_at=inst.started_at,
        )

    # ------------------------------------------------------------ shutdown

    async def stop_everything(self, reason: str = HOST_STOPPING) -> list[Emit]:
        """Stop every actor, then every provider (with its bindings); the events, in order."""
        events, failures = await self._stop_actors(list(self.state.actors.values()), reason)
        for cap, name in sorted(self.state.providers):
            outcome = await self.stop_provider(
                StopProviderCommand(capability_id=cap, binding_name=name), reason=reason
            )
            events += outcome.events
            if not outcome.ack.accepted:
                failures.append(outcome.ack.reason)
        for why in failures:
            self.log.warning("while stopping: %s", why)
        return events

