"""The WebAssembly runtime in-process, against a real nats-server and gantry.

Modules are signed with test keys and pushed to the lattice's gantry bucket; the runtime
fetches, verifies, compiles and runs them, and the built-in providers serve them. A NATS
request to a binding's subscription is answered by the WebAssembly code.
"""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import wasmtime
from nats.aio.client import Client

from hostagent.wascc_codec import serialize
from hostagent.wascc_codec.core import HealthRequest
from hostagent.wasm.engine import Limits
from hostagent.wasm.runtime import WasmRuntime
from hostagent.wasm.wapc import GuestTrap
from hostagent.workload import RuntimeFailure
from lattice.claims import sign_module
from lattice.gantry import Gantry
from lattice.protocol import ActorInstance, BindingInstance, ProviderInstance, new_id, utcnow
from tests.helpers import eventually
from tests.wasmutil import seed, signed

pytestmark = pytest.mark.timeout(60)

MESSAGING = ("wascc:messaging", "nats")
KEYVALUE = ("wascc:keyvalue", "memory")
LEDS = ("iot:ledcontroller", "wascc")


@pytest.fixture
async def runtime(nc: Client, lattice_id: str) -> AsyncIterator[WasmRuntime]:
    rt = WasmRuntime(nc, lattice_id, limits=Limits(call_timeout_s=0.3))
    yield rt
    await rt.close()


async def push(nc: Client, lattice_id: str, name: str, caps: tuple[str, ...]) -> str:
    wasm, claims = signed(name, caps)
    await Gantry(nc, lattice_id).push(wasm)
    return claims.subject


def actor(actor_id: str) -> ActorInstance:
    return ActorInstance(actor_id=actor_id, instance_id=new_id(), started_at=utcnow())


def provider(cap: tuple[str, str]) -> ProviderInstance:
    return ProviderInstance(capability_id=cap[0], vendor_id=cap[1], instance_id=new_id(),
                            started_at=utcnow())


def binding(actor_id: str, cap: tuple[str, str], **values: str) -> BindingInstance:
    return BindingInstance(actor_id=actor_id, capability_id=cap[0], vendor_id=cap[1],
                           values=dict(values))


async def deploy(rt: WasmRuntime, actor_id: str, subject: str,
                 *extra: tuple[str, str]) -> None:
    await rt.start_actor(actor(actor_id))
    for cap in (MESSAGING, *extra):
        if (cap[0], "default") not in rt.providers:
            await rt.start_provider(provider(cap))
    await rt.put_binding(binding(actor_id, MESSAGING), {"SUBSCRIPTION": subject})
    for cap in extra:
        await rt.put_binding(binding(actor_id, cap), {})


async def test_echo_answers_a_nats_request(runtime: WasmRuntime, nc: Client,
                                           lattice_id: str) -> None:
    echo = await push(nc, lattice_id, "echo", ("wascc:messaging",))
    await deploy(runtime, echo, f"{lattice_id}.echo")
    reply = await nc.request(f"{lattice_id}.echo", b"hello wasm", timeout=5)
    assert reply.data == b"hello wasm"
    # the module was compiled once; a second instance reuses it
    await runtime.start_actor(actor(echo))
    assert runtime.modules.compiled == 1
    replies = [await nc.request(f"{lattice_id}.echo", b"%d" % i, timeout=5) for i in range(4)]
    assert [r.data for r in replies] == [b"0", b"1", b"2", b"3"]
    # stopping one instance leaves the other serving; stopping both ends the answers
    first, second = list(runtime.workers.values())
    await runtime.stop_actor(first.actor)
    assert (await nc.request(f"{lattice_id}.echo", b"one left", timeout=5)).data == b"one left"
    await runtime.stop_actor(second.actor)
    gone = await nc.request(f"{lattice_id}.echo", b"", timeout=5)
    assert "no running instance" in (gone.headers or {}).get("Nats-Service-Error", "")


async def test_counter_counts_through_the_keyvalue_provider(
        runtime: WasmRuntime, nc: Client, lattice_id: str) -> None:
    counter = await push(nc, lattice_id, "counter", ("wascc:messaging", "wascc:keyvalue"))
    await deploy(runtime, counter, f"{lattice_id}.count", KEYVALUE)
    counts = [(await nc.request(f"{lattice_id}.count", b"", timeout=5)).data for _ in range(3)]
    assert counts == [b"1", b"2", b"3"]
    assert (await nc.request(f"{lattice_id}.count", b"apples", timeout=5)).data == b"1"
    assert runtime.provider_state(provider(KEYVALUE)) == {"keys": "2"}


async def test_a_binding_to_an_unclaimed_capability_is_refused(
        runtime: WasmRuntime, nc: Client, lattice_id: str) -> None:
    echo = await push(nc, lattice_id, "echo", ("wascc:messaging",))
    await runtime.start_provider(provider(KEYVALUE))
    with pytest.raises(RuntimeFailure, match="does not claim capability wascc:keyvalue"):
        await runtime.put_binding(binding(echo, KEYVALUE), {})


async def test_an_unbound_host_call_fails_the_call_only(
        runtime: WasmRuntime, nc: Client, lattice_id: str) -> None:
    counter = await push(nc, lattice_id, "counter", ("wascc:messaging", "wascc:keyvalue"))
    await deploy(runtime, counter, f"{lattice_id}.count")  # no keyvalue binding
    reply = await nc.request(f"{lattice_id}.count", b"", timeout=5)
    assert reply.data == b""
    assert "not bound" in (reply.headers or {}).get("Nats-Service-Error", "")


async def test_a_looping_actor_fails_its_calls_and_nothing_else(
        runtime: WasmRuntime, nc: Client, lattice_id: str) -> None:
    looping = await push(nc, lattice_id, "loop", ("wascc:messaging",))
    echo = await push(nc, lattice_id, "echo", ("wascc:messaging",))
    await deploy(runtime, looping, f"{lattice_id}.loop")
    await deploy(runtime, echo, f"{lattice_id}.echo")
    loop = asyncio.get_running_loop()
    pending = asyncio.ensure_future(nc.request(f"{lattice_id}.loop", b"", timeout=10))
    # the event loop keeps running while the guest spins on its worker thread
    ticks = 0
    while not pending.done() and ticks < 1000:
        started = loop.time()
        await asyncio.sleep(0.01)
        assert loop.time() - started < 0.25
        ticks += 1
    reply = await pending
    assert "CPU deadline" in (reply.headers or {}).get("Nats-Service-Error", "")
    assert (await nc.request(f"{lattice_id}.echo", b"alive", timeout=5)).data == b"alive"


@pytest.mark.parametrize(("name", "reason"), [
    ("loop_init", "CPU deadline"),
    ("bad_import", "__launch_missiles"),
    ("hog", "memory"),
])
async def test_an_actor_that_cannot_start_is_refused_with_the_reason(
        runtime: WasmRuntime, nc: Client, lattice_id: str, name: str, reason: str) -> None:
    actor_id = await push(nc, lattice_id, name, ())
    started = time.monotonic()
    with pytest.raises(RuntimeFailure, match=reason):
        await runtime.start_actor(actor(actor_id))
    assert time.monotonic() - started < 10
    assert not runtime.workers


async def test_an_actor_missing_from_gantry_is_refused(runtime: WasmRuntime) -> None:
    _, claims = signed("echo", (), key="never-pushed")
    with pytest.raises(RuntimeFailure, match="not in the registry"):
        await runtime.start_actor(actor(claims.subject))


async def test_an_unknown_provider_is_refused(runtime: WasmRuntime) -> None:
    with pytest.raises(RuntimeFailure, match="no provider for capability acme:teleport"):
        await runtime.start_provider(provider(("acme:teleport", "acme")))


async def test_the_led_strip_shows_its_pixels(runtime: WasmRuntime, nc: Client,
                                              lattice_id: str) -> None:
    echo = await push(nc, lattice_id, "echo", ("iot:ledcontroller",))
    await runtime.start_provider(provider(LEDS))
    await runtime.put_binding(binding(echo, LEDS), {"LEDS": "3"})
    strip = runtime.providers[("iot:ledcontroller", "default")]
    await asyncio.to_thread(strip.host_call, echo, "Set", b"1=FF0000")
    assert runtime.provider_state(provider(LEDS)) == {"length": "3",
                                                      "pixels": "000000,ff0000,000000"}


async def test_actor_and_providers_on_different_hosts_talk_over_the_lattice(
        runtime: WasmRuntime, nc: Client, lattice_id: str) -> None:
    """The actor runs on one runtime (host), messaging and keyvalue on another: the message
    reaches the actor and its host call reaches the keyvalue through lattice RPC."""
    counter = await push(nc, lattice_id, "counter", ("wascc:messaging", "wascc:keyvalue"))
    other = WasmRuntime(nc, lattice_id, limits=Limits(call_timeout_s=0.3))
    try:
        await runtime.start_actor(actor(counter))
        for cap in (MESSAGING, KEYVALUE):
            await other.start_provider(provider(cap))
        await other.put_binding(binding(counter, MESSAGING),
                                {"SUBSCRIPTION": f"{lattice_id}.remote"})
        await other.put_binding(binding(counter, KEYVALUE), {})
        counts = [(await nc.request(f"{lattice_id}.remote", b"", timeout=5)).data
                  for _ in range(3)]
        assert counts == [b"1", b"2", b"3"]
        assert other.provider_state(provider(KEYVALUE)) == {"keys": "1"}
    finally:
        await other.close()


async def test_compiled_code_is_kept_in_the_cache_dir_across_runtimes(
        nc: Client, lattice_id: str, tmp_path: Path) -> None:
    """A restarted host finds its compiled modules on disk (the module cache's
    ``modules/`` folder of serialised modules)."""
    echo = await push(nc, lattice_id, "echo", ("wascc:messaging",))

    def cached() -> list[Path]:
        return [p for p in (tmp_path / "cache").rglob("*")
                if p.is_file() and p.parent.parent.name == "modules" and p.suffix != ".stats"]

    first = WasmRuntime(nc, lattice_id, cache_dir=tmp_path / "cache")
    try:
        await first.start_actor(actor(echo))
    finally:
        await first.close()
    entries = cached()
    assert len(entries) == 1, sorted((tmp_path / "cache").rglob("*"))
    stamp = entries[0].stat().st_mtime_ns
    second = WasmRuntime(nc, lattice_id, cache_dir=tmp_path / "cache")
    try:
        await second.start_actor(actor(echo))
    finally:
        await second.close()
    assert cached() == entries and entries[0].stat().st_mtime_ns == stamp  # read, not rewritten


async def test_an_unusable_cache_dir_is_logged_and_the_runtime_works(
        nc: Client, lattice_id: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache dir should be")
    echo = await push(nc, lattice_id, "echo", ("wascc:messaging",))
    rt = WasmRuntime(nc, lattice_id, cache_dir=blocker / "cache")
    try:
        await rt.start_actor(actor(echo))
        assert rt.modules.compiled == 1
    finally:
        await rt.close()
    assert "not cached on disk" in caplog.text


# ---------------------------------------------------------------- hostile guests (issue 12)

HOSTILE = Path(__file__).resolve().parent / "hostile"


async def push_hostile(nc: Client, lattice_id: str, name: str, caps: tuple[str, ...]) -> str:
    """``tests/hostile/<name>.wat`` signed with test keys and pushed to gantry."""
    wasm = bytes(wasmtime.wat2wasm((HOSTILE / f"{name}.wat").read_text()))
    signed_wasm, claims = sign_module(wasm, account_seed=seed("account", "A"),
                                      module_seed=seed(name, "M"), name=name,
                                      capabilities=list(caps))
    await Gantry(nc, lattice_id).push(signed_wasm)
    return claims.subject


async def test_stopped_and_crashed_instances_are_freed(
        runtime: WasmRuntime, nc: Client, lattice_id: str) -> None:
    """Nothing keeps an instance (its store, its memory) once the runtime drops it."""
    echo = await push(nc, lattice_id, "echo", ("wascc:messaging",))
    hog = await push_hostile(nc, lattice_id, "crash_hog", ("wascc:messaging",))
    crashed: list[str] = []

    async def on_crash(instance: ActorInstance, reason: str) -> None:
        crashed.append(reason)
        await runtime.stop_actor(instance)

    runtime.on_crash = on_crash
    refs = []
    for actor_id in (echo, hog):
        await runtime.start_actor(actor(actor_id))
        [worker] = runtime.by_actor[actor_id]
        refs.append(weakref.ref(worker.instance))
        del worker
    # one call served (a health check: it needs no binding), then stopped
    health = serialize(HealthRequest(placeholder=False))
    assert await runtime.call_actor(echo, "HealthRequest", health) == b"\xc0"  # nil
    await runtime.stop_actor(runtime.by_actor[echo][0].actor)
    with pytest.raises(GuestTrap, match="unreachable"):
        await runtime.call_actor(hog, "HandleMessage", b"")
    await eventually(lambda: not runtime.workers, message="the crashed instance stopped")
    assert crashed and "unreachable" in crashed[0]
    # the worker threads let go of the instances once their last call is over; nothing
    # but reference counting is needed (a cycle would wait for the collector)
    gc.disable()
    try:
        await eventually(lambda: all(ref() is None for ref in refs),
                         message="both instances freed")
    finally:
        gc.enable()


async def test_a_bad_pointer_crashes_the_instance_naming_the_import(
        runtime: WasmRuntime, nc: Client, lattice_id: str) -> None:
    bad = await push_hostile(nc, lattice_id, "negative_pointer", ("wascc:messaging",))
    crashed: list[str] = []

    async def on_crash(instance: ActorInstance, reason: str) -> None:
        crashed.append(reason)

    runtime.on_crash = on_crash
    await deploy(runtime, bad, f"{lattice_id}.bad")
    reply = await nc.request(f"{lattice_id}.bad", b"", timeout=5)
    error = (reply.headers or {}).get("Nats-Service-Error", "")
    words = "__guest_request: pointer 4294967283 + length 14 is outside the 65536-byte memory"
    assert words in error
    await eventually(lambda: crashed, message="on_crash told")
    assert words in crashed[0]


async def test_replies_and_payloads_over_the_max_payload_are_refused_at_the_source(
        runtime: WasmRuntime, nc: Client, lattice_id: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """The actor on one runtime (host), messaging and keyvalue on another: a 2 MiB reply
    and a 1 MiB host call payload are refused by the runtime that makes them, with both
    sizes, at once (no caller waits for a timeout), and the connection stays up (a
    payload of max_payload with the op header would make the server close it)."""
    big = await push_hostile(nc, lattice_id, "big_reply", ("wascc:messaging",
                                                           "wascc:keyvalue"))
    other = WasmRuntime(nc, lattice_id, limits=Limits(call_timeout_s=0.3))
    try:
        await runtime.start_actor(actor(big))
        for cap in (MESSAGING, KEYVALUE):
            await other.start_provider(provider(cap))
        await other.put_binding(binding(big, MESSAGING), {"SUBSCRIPTION": f"{lattice_id}.big"})
        await other.put_binding(binding(big, KEYVALUE), {})
        started = time.monotonic()
        reply = await nc.request(f"{lattice_id}.big", b"", timeout=10)
        error = (reply.headers or {}).get("Nats-Service-Error", "")
        assert f"is 2097152 bytes, over the {nc.max_payload}-byte limit" in error, error
        assert time.monotonic() - started < 2.0
        assert "refused: the reply of actor" in caplog.text  # logged where it was made
        # 16 x 64 KiB = exactly max_payload: the header takes it over
        reply = await nc.request(f"{lattice_id}.big", b"x" * 16, timeout=10)
        assert b"the payload of host call wascc:keyvalue/default Set is 1048576 bytes" in (
            reply.data), reply
        assert nc.is_connected and nc.stats["reconnects"] == 0
        assert (await nc.request(f"{lattice_id}.big", b"x", timeout=10)).data == b"stored"
    finally:
        await other.close()
