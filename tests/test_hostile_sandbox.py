"""Hostile actors against a real ``lattice-host --runtime wasm`` (issue 12, items 2, 3, 7, 8).

One host process serves every case of this module (starting one costs seconds): the
modules of ``tests/hostile/`` are signed, pushed to gantry and started on it by command,
as the agent would, each bound to messaging next to a neighbour, the echo actor. Each
case asserts that the attack is stopped (the instance is refused, or it traps with a
message naming the import or the limit), that the host's resident memory stays bounded
(``VmRSS`` of its process), and that the neighbour still answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
import wasmtime
from nats.aio.client import Client

from lattice.claims import sign_module
from lattice.gantry import Gantry
from lattice.localnats import NatsServer
from lattice.natsutil import connect
from lattice.protocol import (
    CloudEvent,
    CommandOp,
    EventType,
    PutBindingCommand,
    StartActorCommand,
    StartProviderCommand,
)
from tests.helpers import eventually
from tests.hostproc import EventRecorder, HostPool, HostProcess, command
from tests.wasmutil import seed, signed

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120),
              pytest.mark.asyncio(loop_scope="module")]

HOSTILE = Path(__file__).resolve().parent / "hostile"
LATTICE = "hostile"
MESSAGING = ("wascc:messaging",)
MIB = 1 << 20


def rss(pid: int) -> int:
    """Resident memory of process ``pid``, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


@dataclass
class Sandbox:
    """The shared host, the bus, and what runs on the host."""

    nc: Client
    host: HostProcess
    host_id: str
    bus: EventRecorder
    baseline: int  # the host's RSS once the neighbour served a call

    async def push(self, name: str, caps: tuple[str, ...] = MESSAGING) -> str:
        """``tests/hostile/<name>.wat``, signed and pushed; its actor id."""
        wasm = bytes(wasmtime.wat2wasm((HOSTILE / f"{name}.wat").read_text()))
        module, claims = sign_module(wasm, account_seed=seed("account", "A"),
                                     module_seed=seed(name, "M"), name=name,
                                     capabilities=list(caps))
        await Gantry(self.nc, LATTICE).push(module)
        return claims.subject

    async def start(self, actor_id: str, subject: str | None = None) -> tuple[bool, str]:
        """Start ``actor_id`` (bound to ``subject``): (accepted, reason)."""
        ack = await command(self.nc, LATTICE, self.host_id, CommandOp.ACTOR_START,
                            StartActorCommand(actor_id=actor_id), timeout=20)
        if ack.accepted and subject is not None:
            bound = await command(self.nc, LATTICE, self.host_id, CommandOp.BINDING_PUT,
                                  PutBindingCommand(actor_id=actor_id, capability_id=MESSAGING[0],
                                             values={"SUBSCRIPTION": subject}), timeout=20)
            assert bound.accepted, bound.reason
        return ack.accepted, ack.reason

    async def request(self, subject: str, body: bytes = b"") -> tuple[bytes, str]:
        """(reply body, its Nats-Service-Error) of one request."""
        reply = await self.nc.request(subject, body, timeout=10)
        return reply.data, (reply.headers or {}).get("Nats-Service-Error", "")

    async def crashed(self, actor_id: str, count: int) -> list[CloudEvent]:
        """The first ``count`` ``actor_stopped`` events of ``actor_id``, all crashes."""
        stopped = await self.bus.wait_for(
            EventType.ACTOR_STOPPED, host_id=self.host_id, count=count,
            where=lambda d: d["actor_id"] == actor_id, timeout=20)
        assert all(e.data["reason"].startswith("crashed: ") for e in stopped), stopped
        return stopped

    def grown(self) -> int:
        return rss(self.host.pid) - self.baseline

    async def unharmed(self, *, most: int) -> None:
        """The host is up, its RSS back within ``most`` bytes of the baseline (a stopped
        instance is freed a few milliseconds after its ``actor_stopped``), and the
        neighbour answers."""
        assert self.host.alive(), self.host.log()[-3000:]
        await eventually(lambda: self.grown() < most, timeout=5, interval=0.01,
                         message=f"the host's RSS within {most // MIB} MiB of "
                                 f"{self.baseline // MIB} MiB (grown {self.grown() // MIB})")
        assert await self.request("sandbox.echo", b"still here") == (b"still here", "")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sandbox(module_nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory
                  ) -> AsyncIterator[Sandbox]:
    nc = await connect(module_nats_server.url)
    echo_wasm, echo = signed("echo", MESSAGING)
    await Gantry(nc, LATTICE).push(echo_wasm)
    try:
        async with EventRecorder(nc, LATTICE) as bus:
            hosts = tmp_path_factory.mktemp("hosts")
            with HostPool(module_nats_server.url, LATTICE, log_dir=hosts) as pool:
                host = pool.spawn(labels={}, name="sandbox", runtime="wasm")
                [hello] = await bus.wait_for(EventType.HOST_STARTED, timeout=30)
                box = Sandbox(nc, host, hello.source, bus, baseline=0)
                ack = await command(nc, LATTICE, box.host_id, CommandOp.PROVIDER_START,
                                    StartProviderCommand(capability_id=MESSAGING[0],
                                                  vendor_id="nats"), timeout=20)
                assert ack.accepted, ack.reason
                assert (await box.start(echo.subject, "sandbox.echo"))[0]
                for _ in range(20):  # warm: the baseline is the host serving an actor
                    await box.request("sandbox.echo", b"warm")
                box.baseline = rss(host.pid)
                yield box
    finally:
        await nc.close()


async def test_sixteen_memories_are_refused_at_start(sandbox: Sandbox) -> None:
    """Item 3: 16 memories of 56 MiB, each under the 64 MiB limit (900 MB together)."""
    actor_id = await sandbox.push("many_memories")
    accepted, reason = await sandbox.start(actor_id)
    assert not accepted and "memory count too high" in reason, reason
    await sandbox.unharmed(most=16 * MIB)


async def test_table_grow_is_refused_in_the_guest(sandbox: Sandbox) -> None:
    """Item 3: table.grow by 100 million elements (780 MB of host memory before)."""
    actor_id = await sandbox.push("table_grow")
    assert (await sandbox.start(actor_id, "sandbox.table"))[0]
    for _ in range(3):
        data, error = await sandbox.request("sandbox.table")
        assert data == b"" and "guest error: table.grow refused" in error, error
    await sandbox.unharmed(most=16 * MIB)


async def test_bad_pointers_crash_the_instance_naming_the_import(sandbox: Sandbox) -> None:
    """Item 7: each import given a pointer past 2^31 or a span past the memory's end traps
    (the message length picks the import); the host stops the instance and says why in
    ``actor_stopped``, and the next instance meets the same fate."""
    actor_id = await sandbox.push("negative_pointer", ("wascc:messaging", "wascc:keyvalue"))
    expected = ["__guest_request: pointer 4294967283 + length 14",  # "DeliverMessage"
                "__guest_response: pointer 4294967280 + length 32",
                "__console_log: pointer 65530 + length 100",
                "__host_error: pointer 4294967295 + length"]
    for length, words in enumerate(expected):
        assert (await sandbox.start(actor_id, "sandbox.pointer"))[0]
        data, error = await sandbox.request("sandbox.pointer", b"x" * length)
        assert data == b"" and words in error, error
        stopped = await sandbox.crashed(actor_id, count=length + 1)
        assert words in stopped[-1].data["reason"], stopped[-1].data
        assert "is outside the 65536-byte memory" in stopped[-1].data["reason"]
    await sandbox.unharmed(most=16 * MIB)


async def test_a_reply_over_the_max_payload_is_refused_not_timed_out(
        sandbox: Sandbox) -> None:
    """Item 8: a 2 MiB reply is refused on the actor's host, which logs it; the requester
    hears why at once instead of waiting for a timeout."""
    actor_id = await sandbox.push("big_reply", ("wascc:messaging", "wascc:keyvalue"))
    assert (await sandbox.start(actor_id, "sandbox.big"))[0]
    loop = asyncio.get_running_loop()
    started = loop.time()
    data, error = await sandbox.request("sandbox.big")
    assert data == b"" and "is 2097152 bytes, over the 1048576-byte limit" in error, error
    assert loop.time() - started < 2.0
    assert f"refused: the reply of actor {actor_id} to DeliverMessage" in sandbox.host.log()
    await sandbox.unharmed(most=32 * MIB)


async def test_crashes_of_a_memory_hog_free_its_memory(sandbox: Sandbox) -> None:
    """Item 2: an actor that fills 63 MiB and traps, started and crashed ten times; a host
    that kept crashed instances grew by 63 MiB each time (630 MB here)."""
    actor_id = await sandbox.push("crash_hog")
    for crash in range(1, 11):
        assert (await sandbox.start(actor_id, "sandbox.hog"))[0]
        _, error = await sandbox.request("sandbox.hog")
        assert "unreachable" in error, error
        await sandbox.crashed(actor_id, count=crash)
        await sandbox.unharmed(most=48 * MIB)  # less than one crashed instance's memory
