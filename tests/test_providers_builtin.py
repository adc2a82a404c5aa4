"""The built-in providers on their own: discovery through entry points, the keyvalue and
LED operations, and messaging against a real nats-server (subscription, reply, Publish,
its own connection when the binding gives a URL)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client

from hostagent.host import server_barrier
from hostagent.providers.base import ProviderContext, ProviderError
from hostagent.providers.keyvalue_memory import MemoryKeyValue
from hostagent.providers.ledcontroller import LedController
from hostagent.providers.messaging_nats import NatsMessaging
from hostagent.providers.registry import discover
from lattice.localnats import NatsServer

pytestmark = pytest.mark.timeout(60)

Calls = list[tuple[str, str, bytes]]
Messaging = tuple[NatsMessaging, Calls]


def context(cap: str, vendor: str, nc: Client | None, calls: list[tuple[str, str, bytes]]
            ) -> ProviderContext:
    async def call_actor(actor_id: str, op: str, payload: bytes) -> bytes:
        calls.append((actor_id, op, payload))
        if payload == b"boom":
            raise RuntimeError("guest trapped")
        return payload.upper()

    return ProviderContext(capability_id=cap, binding_name="default", vendor_id=vendor,
                           nc=nc, loop=asyncio.get_running_loop(), call_actor=call_actor)


def test_the_builtins_are_registered_as_entry_points() -> None:
    from importlib.metadata import entry_points

    names = {ep.value for ep in entry_points(group="vinculum.providers")}
    assert "hostagent.providers.messaging_nats:NatsMessaging" in names
    assert set(discover()) >= {("wascc:messaging", "nats"), ("wascc:keyvalue", "memory"),
                               ("iot:ledcontroller", "wascc")}


@pytest.mark.parametrize(("op", "payload", "expected"), [
    ("Get", b"missing", b""),
    ("Set", b"a=1", b""),
    ("Incr", b"n", b"1"),
])
async def test_keyvalue_operations(op: str, payload: bytes, expected: bytes) -> None:
    kv = MemoryKeyValue(context("wascc:keyvalue", "memory", None, []))
    assert kv.host_call("M1", op, payload) == expected


async def test_keyvalue_set_get_incr_del() -> None:
    kv = MemoryKeyValue(context("wascc:keyvalue", "memory", None, []))
    kv.host_call("M1", "Set", b"n=41")
    assert kv.host_call("M1", "Incr", b"n") == b"42"
    assert kv.host_call("M1", "Get", b"n") == b"42"
    kv.host_call("M1", "Del", b"n")
    assert kv.host_call("M1", "Get", b"n") == b""
    kv.host_call("M1", "Set", b"word=abc")
    with pytest.raises(ProviderError, match="not an integer"):
        kv.host_call("M1", "Incr", b"word")
    with pytest.raises(ProviderError, match="no operation"):
        kv.host_call("M1", "Explode", b"")


async def test_led_strip_operations() -> None:
    strip = LedController(context("iot:ledcontroller", "wascc", None, []))
    await strip.bind("M1", {"LEDS": "4"})
    strip.host_call("M1", "Fill", b"00ff00")
    assert strip.host_call("M1", "Set", b"0=ABCDEF") == b"abcdef,00ff00,00ff00,00ff00"
    assert strip.state() == {"length": "4", "pixels": "abcdef,00ff00,00ff00,00ff00"}
    strip.host_call("M1", "Clear", b"")
    assert strip.state()["pixels"] == ",".join(["000000"] * 4)
    for op, payload in [("Set", b"9=ffffff"), ("Set", b"x"), ("Fill", b"red")]:
        with pytest.raises(ProviderError):
            strip.host_call("M1", op, payload)
    with pytest.raises(ProviderError, match="LEDS"):
        await strip.bind("M1", {"LEDS": "lots"})


@pytest.fixture
async def messaging(nc: Client) -> AsyncIterator[Messaging]:
    calls: list[tuple[str, str, bytes]] = []
    provider = NatsMessaging(context("wascc:messaging", "nats", nc, calls))
    await provider.start()
    yield provider, calls
    await provider.stop()


async def test_messaging_delivers_requests_and_replies(
        messaging: Messaging, nc: Client) -> None:
    provider, calls = messaging
    await provider.bind("M1", {"SUBSCRIPTION": "t.in"})
    assert (await nc.request("t.in", b"shout", timeout=5)).data == b"SHOUT"
    assert calls == [("M1", "HandleMessage", b"shout")]
    failed = await nc.request("t.in", b"boom", timeout=5)
    assert failed.data == b""
    assert failed.headers is not None and "guest trapped" in failed.headers["Nats-Service-Error"]
    await provider.bind("M1", {"SUBSCRIPTION": "t.other"})  # rebinding moves the subscription
    assert (await nc.request("t.other", b"x", timeout=5)).data == b"X"
    await provider.unbind("M1")
    assert provider.state() == {"bound": "0"}


async def test_messaging_publish_from_an_actor_thread(
        messaging: Messaging, nc: Client) -> None:
    provider, _ = messaging
    sub = await nc.subscribe("t.out")
    await server_barrier(nc)
    await asyncio.to_thread(provider.host_call, "M1", "Publish", b"t.out\nhello\nworld")
    msg = await sub.next_msg(timeout=5)
    assert msg.data == b"hello\nworld"
    with pytest.raises(ProviderError, match="subject"):
        await asyncio.to_thread(provider.host_call, "M1", "Publish", b"no newline")


async def test_messaging_needs_a_subscription(
        messaging: Messaging) -> None:
    provider, _ = messaging
    with pytest.raises(ProviderError, match="SUBSCRIPTION"):
        await provider.bind("M1", {})


async def test_messaging_on_its_own_connection_to_the_binding_url(
        messaging: Messaging, nc: Client,
        nats_server: NatsServer) -> None:
    provider, _ = messaging
    await provider.bind("M1", {"SUBSCRIPTION": "t.url", "URL": nats_server.url})
    assert (await nc.request("t.url", b"via url", timeout=5)).data == b"VIA URL"
    await provider.unbind("M1")


async def test_two_hosts_bound_to_one_actor_handle_a_message_once(
        messaging: Messaging, nc: Client) -> None:
    provider, calls = messaging
    twin_calls: Calls = []
    twin = NatsMessaging(context("wascc:messaging", "nats", nc, twin_calls))
    await twin.start()
    try:
        for p in (provider, twin):
            await p.bind("M1", {"SUBSCRIPTION": "t.once"})
        for i in range(10):
            assert (await nc.request("t.once", b"m%d" % i, timeout=5)).data == b"M%d" % i
        assert len(calls) + len(twin_calls) == 10
    finally:
        await twin.stop()
