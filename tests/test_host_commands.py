"""Host commands against a real nats-server, with in-process hosts: acks, events, inventory,
idempotency, refusals, starts that take their time, and what a host does when it stops."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

import pytest
from nats.aio.client import Client

from hostagent.host import Host, HostConfig
from hostagent.workload import MemoryRuntime, RuntimeFailure
from lattice.ids import random_actor_id
from lattice.localnats import NatsServer
from lattice.natsutil import connect
from lattice.protocol import (
    ANN_MANAGED_BY,
    ANN_REPLICA,
    ANN_REVISION,
    ActorInstance,
    BindingInstance,
    CommandAck,
    CommandOp,
    DeleteBindingCommand,
    EventType,
    HostInventory,
    ProviderInstance,
    PutBindingCommand,
    StartActorCommand,
    StartProviderCommand,
    StopActorCommand,
    StopProviderCommand,
)
from tests.helpers import eventually
from tests.hostproc import EventRecorder, command, ping

ECHO = random_actor_id()
OTHER = random_actor_id()
SLOW = random_actor_id()
OWNED = {ANN_MANAGED_BY: "vinculum", "vinculum.io/name": "demo"}


class FlakyRuntime(MemoryRuntime):
    """Fails to start the actor ``OTHER`` and the provider ``bad:cap``, and to bind to
    ``leaky:cap`` with an error that repeats the resolved token. Starts of ``SLOW`` wait
    until :attr:`gate` opens (a long compile, a slow ``wapc_init``)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.slow_starts = 0
        self.stopped: list[str] = []

    async def start_actor(self, actor: ActorInstance) -> None:
        if actor.actor_id == OTHER:
            raise RuntimeFailure("no module for this actor")
        if actor.actor_id == SLOW:
            self.slow_starts += 1
            await self.gate.wait()
        await super().start_actor(actor)

    async def stop_actor(self, actor: ActorInstance) -> None:
        self.stopped.append(actor.instance_id)
        await super().stop_actor(actor)

    async def start_provider(self, provider: ProviderInstance) -> None:
        if provider.capability_id == "bad:cap":
            raise RuntimeFailure("provider archive missing")
        await super().start_provider(provider)

    async def put_binding(self, binding: BindingInstance, resolved: Mapping[str, str]) -> None:
        if binding.capability_id == "leaky:cap":
            raise RuntimeFailure(f"token {resolved.get('token')} was rejected")
        await super().put_binding(binding, resolved)


@pytest.fixture
async def host(nats_server: NatsServer, lattice_id: str) -> AsyncIterator[Host]:
    conn = await connect(nats_server.url)
    h = Host(
        conn,
        HostConfig(name="h1", labels={"leds": "12"}, lattice=lattice_id, heartbeat_s=30,
                   environ={"APP_TOKEN": "tok-3f9a1c", "EMPTY": ""}),
        runtime=FlakyRuntime(),
    )
    await h.start()
    try:
        yield h
    finally:
        await h.stop()
        await conn.close()


@pytest.fixture
async def bus(nc: Client, lattice_id: str) -> AsyncIterator[EventRecorder]:
    async with EventRecorder(nc, lattice_id) as rec:
        yield rec


async def inventory(nc: Client, lattice_id: str, host: Host) -> HostInventory:
    replies = await ping(nc, lattice_id, expect=1, timeout=5)
    found = [i for i in replies if i.host_id == host.host_id]
    assert found, "host did not answer ping"
    return found[0]


async def test_actor_start_is_acked_announced_and_inventoried(
    nc: Client, lattice_id: str, host: Host, bus: EventRecorder
) -> None:
    ack = await command(nc, lattice_id, host.host_id, CommandOp.ACTOR_START,
                        StartActorCommand(actor_id=ECHO, annotations=OWNED))
    assert ack.accepted and ack.changed and ack.instance_id and ack.host_id == host.host_id
    [event] = await bus.wait_for(EventType.ACTOR_STARTED, host_id=host.host_id)
    assert event.data["instance_id"] == ack.instance_id
    assert event.data["annotations"] == OWNED
    inv = await inventory(nc, lattice_id, host)
    assert [(a.actor_id, a.instance_id, a.annotations) for a in inv.actors] == [
        (ECHO, ack.instance_id, OWNED)
    ]

    again = await command(nc, lattice_id, host.host_id, CommandOp.ACTOR_START,
                          StartActorCommand(actor_id=ECHO, annotations=OWNED))
    assert again.accepted and not again.changed and again.instance_id == ack.instance_id
    # Events from one host arrive in order: had the repeat published a second
    # actor_started, it would be seen before this stop's actor_stopped.
    stop = await command(nc, lattice_id, host.host_id, CommandOp.ACTOR_STOP,
                         StopActorCommand(actor_id=ECHO, instance_id=ack.instance_id))
    assert stop.accepted and stop.changed
    await bus.wait_for(EventType.ACTOR_STOPPED, host_id=host.host_id)
    assert bus.types(host_id=host.host_id)[-2:] == ["actor_started", "actor_stopped"]
    assert len(bus.of(EventType.ACTOR_STARTED)) == 1
    assert (await inventory(nc, lattice_id, host)).actors == []

    gone = await command(nc, lattice_id, host.host_id, CommandOp.ACTOR_STOP,
                         StopActorCommand(actor_id=ECHO, instance_id=ack.instance_id))
    assert gone.accepted and not gone.changed


async def test_replicas_are_distinct_and_revisions_are_not(
    nc: Client, lattice_id: str, host: Host, bus: EventRecorder
) -> None:
    acks = [
        await command(nc, lattice_id, host.host_id, CommandOp.ACTOR_START,
                      StartActorCommand(actor_id=ECHO, annotations={**OWNED, ANN_REPLICA: str(i),
                                                             ANN_REVISION: "r1"}))
        for i in range(2)
    ]
    assert all(a.changed for a in acks) and acks[0].instance_id != acks[1].instance_id
    bumped = await command(nc, lattice_id, host.host_id, CommandOp.ACTOR_START,
                           StartActorCommand(actor_id=ECHO, annotations={**OWNED, ANN_REPLICA: "0",
                                                                  ANN_REVISION: "r2"}))
    assert bumped.accepted and not bumped.changed and bumped.instance_id == acks[0].instance_id
    inv = await inventory(nc, lattice_id, host)
    revisions = {a.instance_id: a.annotations[ANN_REVISION] for a in inv.actors}
    assert revisions == {acks[0].instance_id: "r2", acks[1].instance_id: "r1"}

    # stop by annotations: every instance whose annotations include the given ones
    stop = await command(nc, lattice_id, host.host_id, CommandOp.ACTOR_STOP,
                         StopActorCommand(actor_id=ECHO, annotations=OWNED))
    assert stop.accepted and stop.changed
    stopped = await bus.wait_for(EventType.ACTOR_STOPPED, host_id=host.host_id, count=2)
    assert {e.data["instance_id"] for e in stopped} == {a.instance_id for a in acks}
    assert all(e.data["reason"] == "stopped by command" for e in stopped)
    assert (await inventory(nc, lattice_id, host)).actors == []


async def test_provider_start_is_unique_per_binding_and_stop_takes_bindings(
    nc: Client, lattice_id: str, host: Host, bus: EventRecorder
) -> None:
    start = StartProviderCommand(capability_id="wascc:messaging", vendor_id="nats",
                                 annotations=OWNED)
    ack = await command(nc, lattice_id, host.host_id, CommandOp.PROVIDER_START, start)
    assert ack.accepted and ack.changed and ack.instance_id
    [started] = await bus.wait_for(EventType.PROVIDER_STARTED, host_id=host.host_id)
    assert started.data["binding_name"] == "default" and started.data["annotations"] == OWNED

    again = await command(nc, lattice_id, host.host_id, CommandOp.PROVIDER_START, start)
    assert again.accepted and not again.changed and again.instance_id == ack.instance_id
    other = await command(nc, lattice_id, host.host_id, CommandOp.PROVIDER_START,
                          start.model_copy(update={"vendor_id": "kafka"}))
    assert not other.accepted and "already runs here with vendor nats" in other.reason
    inv = await inventory(nc, lattice_id, host)
    assert [(p.capability_id, p.instance_id) for p in inv.providers] == [
        ("wascc:messaging", ack.instance_id)
    ]

    put = await command(nc, lattice_id, host.host_id, CommandOp.BINDING_PUT,
                        PutBindingCommand(actor_id=ECHO, capability_id="wascc:messaging",
                                   values={"subject": "demo"}))
    assert put.accepted and put.changed
    stop = await command(nc, lattice_id, host.host_id, CommandOp.PROVIDER_STOP,
                         StopProviderCommand(capability_id="wascc:messaging"))
    assert stop.accepted and stop.changed and stop.instance_id == ack.instance_id
    await bus.wait_for(EventType.PROVIDER_STOPPED, host_id=host.host_id)
    assert bus.types(host_id=host.host_id)[-2:] == ["binding_deleted", "provider_stopped"]
    inv = await inventory(nc, lattice_id, host)
    assert inv.providers == [] and inv.bindings == []
    gone = await command(nc, lattice_id, host.host_id, CommandOp.PROVIDER_STOP,
                         StopProviderCommand(capability_id="wascc:messaging"))
    assert gone.accepted and not gone.changed


async def test_bindings_keep_templates_and_resolve_only_in_the_runtime(
    nc: Client, lattice_id: str, host: Host, bus: EventRecorder
) -> None:
    values = {"token": "${APP_TOKEN}", "url": "${APP_URL:nats://127.0.0.1}", "e": "${EMPTY}"}
    put = PutBindingCommand(actor_id=ECHO, capability_id="wascc:messaging", values=values,
                     annotations=OWNED)
    refused = await command(nc, lattice_id, host.host_id, CommandOp.BINDING_PUT, put)
    assert not refused.accepted
    assert refused.reason == "no provider for wascc:messaging/default on this host"

    await command(nc, lattice_id, host.host_id, CommandOp.PROVIDER_START,
                  StartProviderCommand(capability_id="wascc:messaging", vendor_id="nats"))
    ack = await command(nc, lattice_id, host.host_id, CommandOp.BINDING_PUT, put)
    assert ack.accepted and ack.changed
    [event] = await bus.wait_for(EventType.BINDING_PUT, host_id=host.host_id)
    assert event.data["values"] == values and event.data["vendor_id"] == "nats"
    assert isinstance(host.runtime, MemoryRuntime)
    assert host.runtime.bindings[(ECHO, "wascc:messaging", "default")] == {
        "token": "tok-3f9a1c", "url": "nats://127.0.0.1", "e": ""
    }
    [bound] = (await inventory(nc, lattice_id, host)).bindings
    assert bound.values == values and bound.annotations == OWNED

    same = await command(nc, lattice_id, host.host_id, CommandOp.BINDING_PUT, put)
    assert same.accepted and not same.changed
    missing = await command(
        nc, lattice_id, host.host_id, CommandOp.BINDING_PUT,
        put.model_copy(update={"values": {"a": "${NOT_SET_A}", "b": "${NOT_SET_B}"}}),
    )
    assert not missing.accepted and "NOT_SET_A, NOT_SET_B" in missing.reason
    wrong_vendor = await command(nc, lattice_id, host.host_id, CommandOp.BINDING_PUT,
                                 put.model_copy(update={"vendor_id": "kafka"}))
    assert not wrong_vendor.accepted and "vendor nats, not kafka" in wrong_vendor.reason

    delete = DeleteBindingCommand(actor_id=ECHO, capability_id="wascc:messaging")
    deleted = await command(nc, lattice_id, host.host_id, CommandOp.BINDING_DEL, delete)
    assert deleted.accepted and deleted.changed
    await bus.wait_for(EventType.BINDING_DELETED, host_id=host.host_id)
    # the identical put published no event (the refusals each published theirs)
    assert [t for t in bus.types(host_id=host.host_id) if t != "binding_put_failed"][-2:] == [
        "binding_put", "binding_deleted"]
    again = await command(nc, lattice_id, host.host_id, CommandOp.BINDING_DEL, delete)
    assert again.accepted and not again.changed
    assert "tok-3f9a1c" not in b"".join(bus.raw).decode()


async def test_every_refused_binding_is_announced_with_its_reason_and_no_values(
    nc: Client, lattice_id: str, host: Host, bus: EventRecorder
) -> None:
    """binding.put refusals publish ``binding_put_failed``: who, what and why, the same
    reason as the ack, and none of the values: no templates, no literals, and a resolved
    secret that a runtime error repeats is redacted."""
    values = {"token": "${APP_TOKEN}", "password": "literal-pw-77d1"}
    for cap, vendor in (("wascc:messaging", "nats"), ("leaky:cap", "x")):
        await command(nc, lattice_id, host.host_id, CommandOp.PROVIDER_START,
                      StartProviderCommand(capability_id=cap, vendor_id=vendor))
    put = PutBindingCommand(actor_id=ECHO, capability_id="wascc:messaging", values=values,
                     annotations=OWNED)
    refusals = {
        "no provider for wascc:keyvalue/default on this host":
            put.model_copy(update={"capability_id": "wascc:keyvalue"}),
        "vendor nats, not kafka": put.model_copy(update={"vendor_id": "kafka"}),
        "unset environment variable NOT_SET_A":
            put.model_copy(update={"values": {**values, "a": "${NOT_SET_A}"}}),
        "token *** was rejected": put.model_copy(update={"capability_id": "leaky:cap"}),
    }
    for i, (words, cmd) in enumerate(refusals.items(), start=1):
        ack = await command(nc, lattice_id, host.host_id, CommandOp.BINDING_PUT, cmd)
        assert not ack.accepted and words in ack.reason, ack.reason
        failed = await bus.wait_for(EventType.BINDING_PUT_FAILED, host_id=host.host_id,
                                    count=i)
        data = failed[-1].data
        assert data["reason"] == ack.reason
        assert (data["host_id"], data["actor_id"], data["capability_id"],
                data["binding_name"], data["annotations"]) == (
            host.host_id, ECHO, cmd.capability_id, "default", OWNED)
        assert "values" not in data
    published = b"".join(bus.raw).decode()
    for secret in ("tok-3f9a1c", "literal-pw-77d1", "${APP_TOKEN}", "${NOT_SET_A}"):
        assert secret not in published
    assert bus.of(EventType.BINDING_PUT) == []


@pytest.mark.parametrize(
    ("op", "payload", "reason"),
    [
        ("actor.start", b"{not json", "actor.start: malformed JSON"),
        ("actor.start", b"[1, 2]", "expected a JSON object, got list"),
        ("actor.start", b"\xff\xfe", "malformed JSON"),
        ("actor.start", b"{}", "invalid actor.start command: actor_id: Field required"),
        ("actor.start", b'{"actor_id": "M", "bogus": 1}', "bogus: Extra inputs"),
        ("actor.start", b'{"op": "actor.stop", "actor_id": "M"}', "op: Input should be"),
        ("provider.start", b'{"capability_id": "a:b"}', "vendor_id: Field required"),
        ("binding.put", b'{"actor_id": "M", "capability_id": 3}', "capability_id:"),
        ("actor.start", b'{"v": 99, "actor_id": "M"}', "unsupported protocol version 99"),
        ("actor.launch", b"{}", "unknown command 'actor.launch'"),
        ("actor.start.now", b"{}", "unknown command 'actor.start.now'"),
    ],
)
async def test_bad_commands_are_refused_with_the_problem(
    nc: Client, lattice_id: str, host: Host, op: str, payload: bytes, reason: str
) -> None:
    ack = await command(nc, lattice_id, host.host_id, op, payload)
    assert not ack.accepted and reason in ack.reason, ack.reason
    assert await inventory(nc, lattice_id, host)  # still up and answering


async def test_runtime_failures_are_refusals_with_events(
    nc: Client, lattice_id: str, host: Host, bus: EventRecorder
) -> None:
    ack = await command(nc, lattice_id, host.host_id, CommandOp.ACTOR_START,
                        StartActorCommand(actor_id=OTHER, annotations=OWNED))
    assert not ack.accepted and "no module for this actor" in ack.reason
    [failed] = await bus.wait_for(EventType.ACTOR_START_FAILED, host_id=host.host_id)
    assert failed.data["actor_id"] == OTHER and failed.data["annotations"] == OWNED
    ack = await command(nc, lattice_id, host.host_id, CommandOp.PROVIDER_START,
                        StartProviderCommand(capability_id="bad:cap", vendor_id="x"))
    assert not ack.accepted and "provider archive missing" in ack.reason
    await bus.wait_for(EventType.PROVIDER_START_FAILED, host_id=host.host_id)
    inv = await inventory(nc, lattice_id, host)
    assert inv.actors == [] and inv.providers == []


async def test_command_without_reply_subject_is_still_obeyed(
    nc: Client, lattice_id: str, host: Host, bus: EventRecorder
) -> None:
    await nc.publish(f"lattice.{lattice_id}.ctl.host.{host.host_id}.actor.start",
                     StartActorCommand(actor_id=ECHO).model_dump_json().encode())
    await bus.wait_for(EventType.ACTOR_STARTED, host_id=host.host_id)


async def test_stop_stops_everything_then_says_host_stopped(
    nc: Client, lattice_id: str, host: Host, bus: EventRecorder
) -> None:
    for i in range(2):
        await command(nc, lattice_id, host.host_id, CommandOp.ACTOR_START,
                      StartActorCommand(actor_id=ECHO, annotations={ANN_REPLICA: str(i)}))
    await command(nc, lattice_id, host.host_id, CommandOp.PROVIDER_START,
                  StartProviderCommand(capability_id="wascc:messaging", vendor_id="nats"))
    await command(nc, lattice_id, host.host_id, CommandOp.BINDING_PUT,
                  PutBindingCommand(actor_id=ECHO, capability_id="wascc:messaging"))
    await host.stop()
    await bus.wait_for(EventType.HOST_STOPPED, host_id=host.host_id)
    assert bus.types(host_id=host.host_id)[-5:] == [
        "actor_stopped", "actor_stopped", "binding_deleted", "provider_stopped", "host_stopped",
    ]
    assert all(e.data["reason"] == "host stopping"
               for e in bus.of(EventType.ACTOR_STOPPED, host_id=host.host_id))
    assert await ping(nc, lattice_id, timeout=0.3) == []  # no longer subscribed


async def test_heartbeat_and_reannounce_carry_the_inventory(
    nats_server: NatsServer, nc: Client, lattice_id: str, bus: EventRecorder
) -> None:
    conn = await connect(nats_server.url)
    h = Host(conn, HostConfig(name="beat", labels={"zone": "a"}, lattice=lattice_id,
                              heartbeat_s=0.2))
    try:
        await h.start()
        [beat] = await bus.wait_for(EventType.HOST_HEARTBEAT, host_id=h.host_id, timeout=5)
        inv = HostInventory.model_validate(beat.data)
        assert inv.heartbeat_s == 0.2 and inv.labels == {"zone": "a"} and inv.name == "beat"
        await h.on_reconnect()
        await bus.wait_for(EventType.HOST_STARTED, host_id=h.host_id, count=2)
    finally:
        await h.stop()
        await conn.close()


# ---------------------------------------------------------------- starts that take their time


def runtime_of(host: Host) -> FlakyRuntime:
    assert isinstance(host.runtime, FlakyRuntime)
    return host.runtime


def start_slow(nc: Client, lattice_id: str, host: Host, replica: str = "0"
               ) -> asyncio.Task[CommandAck]:
    return asyncio.create_task(command(
        nc, lattice_id, host.host_id, CommandOp.ACTOR_START,
        StartActorCommand(actor_id=SLOW, annotations={**OWNED, ANN_REPLICA: replica}), timeout=10))


async def test_a_start_under_way_holds_up_no_other_command(
    nc: Client, lattice_id: str, host: Host, bus: EventRecorder
) -> None:
    runtime = runtime_of(host)
    first = start_slow(nc, lattice_id, host)
    await eventually(lambda: runtime.slow_starts == 1, message="the slow start began")
    other = await command(nc, lattice_id, host.host_id, CommandOp.ACTOR_START,
                          StartActorCommand(actor_id=ECHO, annotations=OWNED))
    assert other.accepted and other.changed
    again = start_slow(nc, lattice_id, host)  # the same identity, while the first runs
    # commands take the lock in arrival order: once this is acked, the repeat has seen
    # the start under way and waits for it
    provider = await command(nc, lattice_id, host.host_id, CommandOp.PROVIDER_START,
                             StartProviderCommand(capability_id="wascc:messaging",
                                                  vendor_id="nats"))
    assert provider.accepted and not first.done() and not again.done()
    assert [a.actor_id for a in (await inventory(nc, lattice_id, host)).actors] == [ECHO]

    runtime.gate.set()
    started, repeated = await first, await again
    assert started.accepted and started.changed
    assert repeated.accepted and not repeated.changed
    assert repeated.instance_id == started.instance_id and runtime.slow_starts == 1
    await bus.wait_for(EventType.ACTOR_STARTED, host_id=host.host_id, count=2)
    stop = await command(nc, lattice_id, host.host_id, CommandOp.ACTOR_STOP,
                         StopActorCommand(actor_id=SLOW))
    assert stop.accepted and stop.changed
    await bus.wait_for(EventType.ACTOR_STOPPED, host_id=host.host_id)
    assert len(bus.of(EventType.ACTOR_STARTED, where=lambda d: d["actor_id"] == SLOW)) == 1


async def test_a_stop_while_starting_stops_the_instance_once_it_is_up(
    nc: Client, lattice_id: str, host: Host, bus: EventRecorder
) -> None:
    runtime = runtime_of(host)
    starting = start_slow(nc, lattice_id, host)
    await eventually(lambda: runtime.slow_starts == 1, message="the slow start began")
    stop = await command(nc, lattice_id, host.host_id, CommandOp.ACTOR_STOP,
                         StopActorCommand(actor_id=SLOW, annotations=OWNED))
    assert stop.accepted and stop.changed and stop.reason == "stopped while starting"
    runtime.gate.set()
    ack = await starting
    assert not ack.accepted
    assert ack.reason.endswith("failed to start: stopped while starting (stopped by command)")
    [failed] = await bus.wait_for(EventType.ACTOR_START_FAILED, host_id=host.host_id)
    assert failed.data["reason"] == ack.reason
    assert runtime.stopped and runtime.actors == {}  # started by the runtime, then stopped
    assert (await inventory(nc, lattice_id, host)).actors == []


async def test_a_host_that_stops_refuses_the_starts_under_way(
    nc: Client, lattice_id: str, host: Host, bus: EventRecorder
) -> None:
    runtime = runtime_of(host)
    starting = start_slow(nc, lattice_id, host)
    await eventually(lambda: runtime.slow_starts == 1, message="the slow start began")
    await host.stop()  # the gate never opens: the start is cancelled
    ack = await starting
    assert not ack.accepted and ack.reason.endswith("failed to start: host stopping")
    await bus.wait_for(EventType.HOST_STOPPED, host_id=host.host_id)
    assert bus.types(host_id=host.host_id)[-2:] == ["actor_start_failed", "host_stopped"]
    assert runtime.actors == {}
