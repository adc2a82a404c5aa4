"""The built-in providers on their own: discovery through entry points, the keyvalue and
LED operations, and messaging against a real nats-server (subscription, reply, Publish,
its own connection when the binding gives a URL); the per-binding quotas (keyvalue bytes,
keys and value size; messaging rates and payload size) and the subjects messaging refuses
(issue 12)."""

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
from hostagent.providers.quota import QuotaExceeded, TokenBucket
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
    await provider.bind("M1", {"SUBSCRIPTION": "t.in"})
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


# ---------------------------------------------------------------- quotas (issue 12)

async def test_keyvalue_stores_are_per_actor_and_dropped_with_the_binding() -> None:
    kv = MemoryKeyValue(context("wascc:keyvalue", "memory", None, []))
    await kv.bind("M1", {})
    await kv.bind("M2", {})
    kv.host_call("M1", "Set", b"k=one")
    kv.host_call("M2", "Set", b"k=two")
    assert kv.host_call("M1", "Get", b"k") == b"one"
    kv.host_call("M2", "Del", b"k")  # M2 cannot delete M1's key
    assert kv.host_call("M1", "Get", b"k") == b"one"
    assert kv.state() == {"keys": "1"}
    await kv.unbind("M1")
    assert kv.state() == {"keys": "0"}
    await kv.bind("M1", {})
    assert kv.host_call("M1", "Get", b"k") == b""


async def test_keyvalue_quotas_refuse_with_the_quota_and_the_number() -> None:
    kv = MemoryKeyValue(context("wascc:keyvalue", "memory", None, []))
    await kv.bind("M1", {"MAX_BYTES": "20", "MAX_KEYS": "3", "MAX_VALUE_BYTES": "8"})
    with pytest.raises(QuotaExceeded, match=r"quota MAX_VALUE_BYTES exceeded: a value of 9 "
                                            r"bytes, over the limit of 8 bytes"):
        kv.host_call("M1", "Set", b"a=123456789")
    kv.host_call("M1", "Set", b"a=12345678")  # 1 + 8 bytes
    kv.host_call("M1", "Set", b"b=12345678")  # 18
    with pytest.raises(QuotaExceeded, match=r"quota MAX_BYTES exceeded: the store would "
                                            r"hold 21 bytes, over the limit of 20 bytes"):
        kv.host_call("M1", "Set", b"c=12")
    kv.host_call("M1", "Set", b"c=")  # 19: a key takes its bytes
    with pytest.raises(QuotaExceeded, match=r"MAX_KEYS exceeded: the store would hold 4 "
                                            r"keys, over the limit of 3 keys"):
        kv.host_call("M1", "Set", b"d=")
    kv.host_call("M1", "Del", b"c")  # 18
    kv.host_call("M1", "Set", b"a=1234567")  # 17: replacing a value counts the difference
    assert kv.host_call("M1", "Incr", b"n") == b"1"  # 19
    assert kv.host_call("M1", "Incr", b"n") == b"2"  # 19
    with pytest.raises(QuotaExceeded, match="would hold 21 bytes"):
        kv.host_call("M1", "Set", b"n=123")
    assert kv.host_call("M1", "Get", b"n") == b"2"  # refused whole, store unchanged
    assert kv.state() == {"keys": "3"}


async def test_keyvalue_rebinding_lowers_limits_and_keeps_the_data() -> None:
    kv = MemoryKeyValue(context("wascc:keyvalue", "memory", None, []))
    await kv.bind("M1", {})
    kv.host_call("M1", "Set", b"big=" + b"x" * 100)
    await kv.bind("M1", {"MAX_BYTES": "50"})
    assert kv.host_call("M1", "Get", b"big") == b"x" * 100
    with pytest.raises(QuotaExceeded, match="MAX_BYTES"):
        kv.host_call("M1", "Set", b"more=x")
    kv.host_call("M1", "Set", b"big=small")  # shrinking is always allowed
    kv.host_call("M1", "Set", b"more=x")


@pytest.mark.parametrize("value", ["lots", "0", "-5", "1.5"])
async def test_a_quota_value_that_is_not_a_positive_whole_number_is_refused(
        value: str) -> None:
    kv = MemoryKeyValue(context("wascc:keyvalue", "memory", None, []))
    with pytest.raises(ProviderError, match="binding value MAX_KEYS must be a whole number") \
            as refused:
        await kv.bind("M1", {"MAX_KEYS": value})
    assert value not in str(refused.value).split()  # values may be secrets: never echoed


def test_token_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    now = [100.0]
    bucket = TokenBucket(10, 20, clock=lambda: now[0])
    assert bucket.available() == 20
    bucket.take(20)
    assert bucket.available() == 0
    now[0] += 0.5
    assert bucket.available() == 5
    now[0] += 60
    assert bucket.available() == 20


@pytest.mark.parametrize("subject", [
    "lattice.default.ctl.host.NABC.actor.stop",
    "$KV.vinculum_policy_default.trusted_issuers",
    "$JS.API.STREAM.DELETE.OBJ_gantry_default",
    "$O.gantry_default.M.x", "$SYS.REQ.SERVER.PING", "$JSC.x", "$NRG.x",
    "_INBOX.abc.def", "_INBOX_apps.x",
    "demo.*", "demo.>", "a..b", "a b", "x" * 2000,
])
async def test_messaging_refuses_to_publish_outside_the_data_plane(
        messaging: Messaging, nc: Client, subject: str) -> None:
    provider, _ = messaging
    await provider.bind("M1", {"SUBSCRIPTION": "t.in"})
    sub = await nc.subscribe(">")
    await server_barrier(nc)
    with pytest.raises(ProviderError, match=r"Publish refused: .*subject"):
        await asyncio.to_thread(provider.host_call, "M1", "Publish",
                                subject.encode() + b"\nPWNED")
    await nc.publish("t.mark", b"")
    seen = []
    while not seen or seen[-1].subject != "t.mark":  # all that reached the server before
        seen.append(await sub.next_msg(timeout=5))
    assert [m.subject for m in seen if m.data == b"PWNED"] == []
    await sub.unsubscribe()


@pytest.mark.parametrize("subject", ["lattice.>", ">", "*.ctl", "$KV.>", "_INBOX.>",
                                     "lattice.t1.ctl.host.*.actor.stop", "a b"])
async def test_messaging_refuses_a_subscription_that_reaches_the_control_plane(
        messaging: Messaging, subject: str) -> None:
    provider, _ = messaging
    with pytest.raises(ProviderError, match="SUBSCRIPTION refused"):
        await provider.bind("M1", {"SUBSCRIPTION": subject})
    assert provider.state() == {"bound": "0"}


async def test_messaging_publish_rate_quota(messaging: Messaging, nc: Client) -> None:
    provider, _ = messaging
    await provider.bind("M1", {"SUBSCRIPTION": "t.in", "PUBLISH_RATE": "5"})
    refused: QuotaExceeded | None = None
    sent = 0
    for _ in range(100):  # far faster than 5 a second, however loaded the machine
        try:
            await asyncio.to_thread(provider.host_call, "M1", "Publish", b"t.rate\nx")
        except QuotaExceeded as exc:
            refused = exc
            break
        sent += 1
    assert refused is not None and sent >= 5
    assert refused.quota == "PUBLISH_RATE" and refused.limit == 5
    assert "over the limit of 5 messages/s (binding value PUBLISH_RATE)" in str(refused)


async def test_messaging_payload_quota(messaging: Messaging, nc: Client) -> None:
    provider, _ = messaging
    await provider.bind("M1", {"SUBSCRIPTION": "t.in", "MAX_PAYLOAD": "10"})
    await asyncio.to_thread(provider.host_call, "M1", "Publish", b"t.p\n0123456789")
    with pytest.raises(QuotaExceeded, match="MAX_PAYLOAD exceeded: a payload of 11 bytes, "
                                            "over the limit of 10 bytes"):
        await asyncio.to_thread(provider.host_call, "M1", "Publish", b"t.p\n0123456789X")
    # never more than the connection's max payload, whatever the binding says
    await provider.bind("M1", {"SUBSCRIPTION": "t.in", "MAX_PAYLOAD": str(10 * nc.max_payload)})
    over = b"t.p\n" + b"x" * (nc.max_payload + 1)
    with pytest.raises(QuotaExceeded, match=f"over the limit of {nc.max_payload} bytes"):
        await asyncio.to_thread(provider.host_call, "M1", "Publish", over)


async def test_messaging_byte_rate_quota(messaging: Messaging, nc: Client) -> None:
    provider, _ = messaging
    await provider.bind("M1", {"SUBSCRIPTION": "t.in", "PUBLISH_BYTES_RATE": "1000",
                               "MAX_PAYLOAD": "400"})
    payload = b"t.b\n" + b"x" * 400
    refused: QuotaExceeded | None = None
    for _ in range(50):
        try:
            await asyncio.to_thread(provider.host_call, "M1", "Publish", payload)
        except QuotaExceeded as exc:
            refused = exc
            break
    assert refused is not None and refused.quota == "PUBLISH_BYTES_RATE"
    assert "over the limit of 1000 bytes/s" in str(refused)


async def test_messaging_publish_needs_a_binding(messaging: Messaging) -> None:
    provider, _ = messaging
    with pytest.raises(ProviderError, match="not bound"):
        await asyncio.to_thread(provider.host_call, "M9", "Publish", b"t.x\ny")
