"""Hostile actors against the providers of a real ``lattice-host --runtime wasm`` process
(issue 12, items 1 and 4): the modules of ``tests/hostile/`` are signed, pushed to gantry,
started and bound by command on one host shared by the tests of this file, next to the
example counter actor (messaging and keyvalue, as the demo runs it).

* ``kv_flood.wat`` Sets 1,000,000-byte values in a loop: stopped by the keyvalue quota
  ``MAX_BYTES`` at 16 MiB, the host's RSS stays bounded, the data goes with the binding;
* ``publish_control.wat`` publishes what it is told: an ``actor.stop`` to the host's
  command subject, a new trust policy to ``$KV.vinculum_policy_<id>.trusted_issuers``, an
  inbox; all refused with the reason, nothing reaches the bus (an open server here: the
  provider's own check, not the server's permissions, stops it), application subjects
  still work;
* ``publish_flood.wat`` publishes in a loop: stopped by ``PUBLISH_RATE``.

After each, the counter (the neighbour) still counts.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import wasmtime
from nats.aio.client import Client
from nats.aio.msg import Msg

from lattice.claims import sign_module
from lattice.gantry import Gantry
from lattice.localnats import NatsServer
from lattice.natsutil import connect
from lattice.policy import bucket_name, read_trusted
from lattice.protocol import (
    CommandOp,
    DeleteBindingCommand,
    Message,
    PutBindingCommand,
    StartActorCommand,
    StartProviderCommand,
    StopActorCommand,
    Subjects,
    encode,
)
from tests.helpers import eventually
from tests.hostproc import HostPool, HostProcess, command, ping
from tests.wasmutil import EXAMPLES, seed

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

HOSTILE = Path(__file__).resolve().parent / "hostile"
LATTICE = "hostile"
MESSAGING, KEYVALUE = "wascc:messaging", "wascc:keyvalue"
FLOOD_RATE = 100  # PUBLISH_RATE of the flood's binding: far below what a loop can send


def rss_mib(pid: int) -> float:
    """The process's resident set (VmRSS), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


@dataclass
class Lab:
    url: str
    host: HostProcess
    host_id: str
    ids: dict[str, str]  # name -> actor id


def _sign(path: Path, name: str) -> tuple[bytes, str]:
    wat = path.read_text()
    caps = [c.strip() for c in wat.split("capabilities:", 1)[1].splitlines()[0].split(",")]
    wasm, claims = sign_module(wasmtime.wat2wasm(wat), account_seed=seed("account", "A"),
                               module_seed=seed(f"hostile {name}", "M"), name=name,
                               capabilities=caps)
    return wasm, claims.subject


async def _ok(nc: Client, host: HostProcess, host_id: str, op: CommandOp,
              payload: Message) -> None:
    ack = await command(nc, LATTICE, host_id, op, payload, timeout=30)
    assert ack.accepted, f"{op}: {ack.reason}\n{host.log()[-3000:]}"


async def _set_up(url: str, pool: HostPool) -> Lab:
    modules = {name: _sign(HOSTILE / f"{name}.wat", name)
               for name in ("kv_flood", "publish_control", "publish_flood")}
    modules["counter"] = _sign(EXAMPLES / "counter.wat", "counter")
    nc = await connect(url)
    try:
        gantry = Gantry(nc, LATTICE)
        for wasm, _ in modules.values():
            await gantry.push(wasm)
        host = pool.spawn(labels={}, name="h", runtime="wasm")
        [inv] = await eventually(lambda: ping(nc, LATTICE, expect=1), timeout=30,
                                 message=lambda: f"the host answers\n{host.log()[-2000:]}")
        lab = Lab(url, host, inv.host_id, {n: aid for n, (_, aid) in modules.items()})
        for cap, vendor in ((MESSAGING, "nats"), (KEYVALUE, "memory")):
            await _ok(nc, host, lab.host_id, CommandOp.PROVIDER_START,
                      StartProviderCommand(capability_id=cap, vendor_id=vendor))
        extra = {"publish_flood": {"PUBLISH_RATE": str(FLOOD_RATE)}}
        for name, aid in lab.ids.items():
            await _ok(nc, host, lab.host_id, CommandOp.ACTOR_START, StartActorCommand(actor_id=aid))
            await _ok(nc, host, lab.host_id, CommandOp.BINDING_PUT, PutBindingCommand(
                actor_id=aid, capability_id=MESSAGING,
                values={"SUBSCRIPTION": f"hostile.{name}", **extra.get(name, {})}))
        for name in ("kv_flood", "counter"):
            await _ok(nc, host, lab.host_id, CommandOp.BINDING_PUT,
                      PutBindingCommand(actor_id=lab.ids[name], capability_id=KEYVALUE))
        return lab
    finally:
        await nc.close()


@pytest.fixture(scope="module")
def lab(module_nats_server: NatsServer,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """One nats-server and one wasm host for the whole file, everything bound."""
    url = module_nats_server.url
    with HostPool(url, LATTICE, log_dir=tmp_path_factory.mktemp("hostile")) as pool:
        yield asyncio.run(_set_up(url, pool))


@pytest.fixture
async def nc(lab: Lab) -> AsyncIterator[Client]:  # the conftest's starts its own server
    client = await connect(lab.url)
    try:
        yield client
    finally:
        await client.close()


async def ask(nc: Client, name: str, body: bytes) -> str:
    """The actor's answer (what it read from a failed host call, or its own words)."""
    reply = await nc.request(f"hostile.{name}", body, timeout=20)
    error = (reply.headers or {}).get("Nats-Service-Error")
    assert error is None, error
    return reply.data.decode()


async def counts(nc: Client, lab: Lab, key: bytes) -> list[str]:
    """Three calls to the neighbour: it still counts, in a store of its own."""
    assert lab.host.alive(), lab.host.log()[-3000:]
    return [await ask(nc, "counter", key) for _ in range(3)]


async def kv_keys(nc: Client) -> int:
    """Keys the host's keyvalue provider holds, all stores together (its inventory)."""
    [inv] = await ping(nc, LATTICE, expect=1)
    return int(next(p.state["keys"] for p in inv.providers if p.capability_id == KEYVALUE))


async def test_a_kv_flood_stops_at_the_quota_and_its_data_goes_with_the_binding(
        lab: Lab, nc: Client) -> None:
    assert await counts(nc, lab, b"before") == ["1", "2", "3"]
    keys = await kv_keys(nc)
    before = rss_mib(lab.host.pid)
    said = [await ask(nc, "kv_flood", prefix) for prefix in (b"a", b"b", b"c", b"d")]
    after = rss_mib(lab.host.pid)
    quota = ("keyvalue quota MAX_BYTES exceeded: the store would hold 17000051 bytes, "
             "over the limit of 16777216 bytes (binding value MAX_BYTES)")
    assert said == [quota] * 4, said  # 16 values stored, the 17th refused, then nothing
    # 800 MB of Sets; 16 MB kept (+19 MB measured; +768 MB without the quota)
    assert after - before < 64, f"host RSS {before:.0f} -> {after:.0f} MiB"
    assert await kv_keys(nc) == keys + 16
    assert await counts(nc, lab, b"after") == ["1", "2", "3"]  # its own store, untouched

    await _ok(nc, lab.host, lab.host_id, CommandOp.BINDING_DEL, DeleteBindingCommand(
        actor_id=lab.ids["kv_flood"], capability_id=KEYVALUE))
    assert await kv_keys(nc) == keys + 1  # the flood's data is gone, the counter's stays
    await _ok(nc, lab.host, lab.host_id, CommandOp.BINDING_PUT,
              PutBindingCommand(actor_id=lab.ids["kv_flood"], capability_id=KEYVALUE))
    assert await ask(nc, "kv_flood", b"e") == quota  # a fresh store, the same quota


async def test_an_actor_cannot_publish_to_the_control_plane(lab: Lab, nc: Client) -> None:
    attacks = {  # each would work if it went out: a valid command, policy, API request
        f"{Subjects(LATTICE).prefix}.ctl.host.{lab.host_id}.actor.stop":
            encode(StopActorCommand(actor_id=lab.ids["counter"])),
        f"$KV.{bucket_name(LATTICE)}.trusted_issuers": json.dumps({"issuers": []}).encode(),
        "$JS.API.STREAM.DELETE.OBJ_gantry_hostile": b"",
        "_INBOX.someone.reply": b"forged",
        "app.*": b"everywhere",
    }
    namespaces = ["lattice.>", "$KV.>", "$JS.>", "_INBOX*", "wildcard"]
    seen: list[Msg] = []

    async def spy(msg: Msg) -> None:
        if msg.subject in attacks or msg.subject == "app.news":
            seen.append(msg)

    sub = await nc.subscribe(">", cb=spy)
    await nc.flush()
    try:
        for (subject, body), namespace in zip(attacks.items(), namespaces, strict=True):
            said = await ask(nc, "publish_control", subject.encode() + b"\n" + body)
            assert said.startswith("Publish refused: subject"), said
            assert namespace in said, said
        # the data plane still works, and comes after the refusals on the same connection
        assert await ask(nc, "publish_control", b"app.news\nharmless") == "published"
        await eventually(lambda: seen, timeout=10, message="the application message")
    finally:
        await sub.unsubscribe()
    assert [m.subject for m in seen] == ["app.news"]
    policy, _ = await read_trusted(nc, LATTICE)
    assert policy is None  # the trust policy was not written
    [inv] = await ping(nc, LATTICE, expect=1)
    assert lab.ids["counter"] in {a.actor_id for a in inv.actors}  # not stopped
    assert await counts(nc, lab, b"control") == ["1", "2", "3"]


async def test_a_publish_flood_stops_at_the_rate_quota(lab: Lab, nc: Client) -> None:
    got = 0

    async def count(msg: Msg) -> None:
        nonlocal got
        got += 1

    sub = await nc.subscribe("app.flood", cb=count)
    await nc.flush()
    started = time.monotonic()
    said = await ask(nc, "publish_flood", b"app.flood\nx")
    took = time.monotonic() - started
    # the burst went out before the refusal, on the connection that answered
    await eventually(lambda: got >= FLOOD_RATE, timeout=10, message="the burst")
    await sub.unsubscribe()
    assert said == ("messaging quota PUBLISH_RATE exceeded: more messages a second, over "
                    f"the limit of {FLOOD_RATE} messages/s (binding value PUBLISH_RATE)"), said
    # the loop would send 100,000; a bucket of one second lets through its burst and
    # what it refilled while the call ran
    assert got <= FLOOD_RATE + FLOOD_RATE * took + 1, (got, took)
    assert await counts(nc, lab, b"flood") == ["1", "2", "3"]
