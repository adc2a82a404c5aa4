"""A real ``lattice-host --runtime wasm`` process: modules pushed to gantry, started by
command, bound to messaging; a NATS request to the binding's subscription is answered by
the WebAssembly code. A runaway guest and a refused start leave the host heartbeating."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from nats.aio.client import Client

from lattice.gantry import Gantry
from lattice.localnats import NatsServer
from lattice.protocol import (
    CommandOp,
    EventType,
    HostInventory,
    PutBindingCommand,
    StartActorCommand,
    StartProviderCommand,
)
from tests.helpers import eventually
from tests.hostproc import EventRecorder, HostPool, command
from tests.wasmutil import signed

pytestmark = pytest.mark.timeout(120)


async def test_a_wasm_host_answers_requests_with_webassembly(
    nats_server: NatsServer, nc: Client, lattice_id: str, tmp_path: Path
) -> None:
    gantry = Gantry(nc, lattice_id)
    echo_wasm, echo = signed("echo", ("wascc:messaging",))
    loop_wasm, looping = signed("loop", ("wascc:messaging",))
    init_wasm, init_loop = signed("loop_init", ())
    for wasm in (echo_wasm, loop_wasm, init_wasm):
        await gantry.push(wasm)
    async with EventRecorder(nc, lattice_id) as bus:
        with HostPool(nats_server.url, lattice_id, log_dir=tmp_path) as pool:
            proc = pool.spawn(labels={}, name="wasm", runtime="wasm")
            [hello] = await bus.wait_for(EventType.HOST_STARTED, timeout=30)
            host_id = hello.source

            async def ok(op: CommandOp,
                         payload: StartActorCommand | StartProviderCommand | PutBindingCommand
                         ) -> None:
                ack = await command(nc, lattice_id, host_id, op, payload, timeout=20)
                assert ack.accepted, f"{ack.reason}\n{proc.log()[-3000:]}"

            await ok(CommandOp.PROVIDER_START,
                     StartProviderCommand(capability_id="wascc:messaging", vendor_id="nats"))
            await ok(CommandOp.PROVIDER_START,
                     StartProviderCommand(capability_id="iot:ledcontroller", vendor_id="wascc"))
            for actor, subject in ((echo, "echo"), (looping, "loop")):
                await ok(CommandOp.ACTOR_START, StartActorCommand(actor_id=actor.subject))
                await ok(CommandOp.BINDING_PUT, PutBindingCommand(
                    actor_id=actor.subject, capability_id="wascc:messaging",
                    values={"SUBSCRIPTION": f"{lattice_id}.{subject}"}))

            reply = await nc.request(f"{lattice_id}.echo", b"from wasm", timeout=10)
            assert reply.data == b"from wasm"

            # a guest that spins: its caller gets an error, the host keeps going
            spun = await nc.request(f"{lattice_id}.loop", b"", timeout=20)
            assert "CPU deadline" in (spun.headers or {}).get("Nats-Service-Error", "")
            # an actor that cannot start is refused with the reason
            ack = await command(nc, lattice_id, host_id, CommandOp.ACTOR_START,
                                StartActorCommand(actor_id=init_loop.subject), timeout=20)
            assert not ack.accepted and "CPU deadline" in ack.reason, ack.reason
            await bus.wait_for(EventType.ACTOR_START_FAILED, host_id=host_id)
            # an unclaimed capability is refused
            ack = await command(nc, lattice_id, host_id, CommandOp.BINDING_PUT, PutBindingCommand(
                actor_id=echo.subject, capability_id="iot:ledcontroller"), timeout=20)
            assert not ack.accepted and "does not claim capability" in ack.reason, ack.reason

            beats = len(bus.of(EventType.HOST_HEARTBEAT, host_id=host_id))
            await bus.wait_for(EventType.HOST_HEARTBEAT, host_id=host_id, count=beats + 2,
                               timeout=10)
            last = HostInventory.model_validate(
                bus.of(EventType.HOST_HEARTBEAT, host_id=host_id)[-1].data)
            leds = next(p for p in last.providers if p.capability_id == "iot:ledcontroller")
            assert leds.state["length"] == "12"
            assert (await nc.request(f"{lattice_id}.echo", b"again", timeout=10)).data == b"again"

            proc.terminate()
            assert await asyncio.to_thread(proc.wait, 15.0) == 0, proc.log()[-3000:]
            await eventually(lambda: bus.of(EventType.HOST_STOPPED, host_id=host_id),
                             timeout=10, message="host_stopped")
