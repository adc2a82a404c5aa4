"""The built-in providers on their own (issues 12 and 13): discovery through entry points,
messaging against a real nats-server speaking waSCC's broker contract (``DeliverMessage``
in, the actor's answer a ``Publish`` to its ``replyTo``, the inbox it may use once,
``Request``), its own connection when the binding gives a URL, logging and extras, the
LED strip; the per-binding quotas of messaging (rates, payload size) and the subjects it
refuses. The keyvalue provider has tests/test_providers_keyvalue.py."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from hostagent.host import server_barrier
from hostagent.providers.base import ProviderContext, ProviderError
from hostagent.providers.extras_default import Extras
from hostagent.providers.ledcontroller import LedController
from hostagent.providers.logging_default import MAX_BODY, HostLog
from hostagent.providers.messaging_nats import NatsMessaging
from hostagent.providers.quota import QuotaExceeded, TokenBucket
from hostagent.providers.registry import discover
from hostagent.wascc_codec import deserialize, serialize
from hostagent.wascc_codec import extras as ex
from hostagent.wascc_codec import logging as lg
from hostagent.wascc_codec.core import HEALTHY
from hostagent.wascc_codec.messaging import BrokerMessage, RequestMessage
from lattice.localnats import NatsServer
from tests.helpers import eventually

pytestmark = pytest.mark.timeout(60)

Calls = list[tuple[str, str, BrokerMessage]]
Messaging = tuple[NatsMessaging, Calls]


def publish(subject: str, body: bytes, reply_to: str = "") -> bytes:
    """A ``Publish`` payload, as wascc-actor writes it."""
    return serialize(BrokerMessage(subject=subject, reply_to=reply_to, body=body))


def context(cap: str, vendor: str, nc: Client | None, calls: Calls | None = None,
            provider: list[NatsMessaging] | None = None) -> ProviderContext:
    """A provider's context whose actor behaves as a waSCC actor does: on
    ``DeliverMessage`` it answers the ``replyTo`` by publishing the body in capitals
    (``silent``: it answers nothing, returning bytes that must be dropped; ``boom``: it
    fails) and returns ``()``."""

    async def call_actor(actor_id: str, op: str, payload: bytes) -> bytes:
        message = deserialize(BrokerMessage, payload)
        if calls is not None:
            calls.append((actor_id, op, message))
        if message.body == b"boom":
            raise RuntimeError("guest trapped")
        if message.body == b"silent":
            return b"DROPPED"
        if message.reply_to and provider:
            await asyncio.to_thread(provider[0].host_call, actor_id, "Publish",
                                    publish(message.reply_to, message.body.upper()))
        return HEALTHY

    return ProviderContext(capability_id=cap, binding_name="default", vendor_id=vendor,
                           nc=nc, loop=asyncio.get_running_loop(), call_actor=call_actor)


def test_the_builtins_are_registered_as_entry_points() -> None:
    from importlib.metadata import entry_points

    names = {ep.value for ep in entry_points(group="vinculum.providers")}
    assert {"hostagent.providers.messaging_nats:NatsMessaging",
            "hostagent.providers.logging_default:HostLog",
            "hostagent.providers.extras_default:Extras"} <= names
    assert set(discover()) >= {("wascc:messaging", "nats"), ("wascc:keyvalue", "memory"),
                               ("wascc:logging", "default"), ("wascc:extras", "default"),
                               ("iot:ledcontroller", "wascc")}


async def test_led_strip_operations() -> None:
    strip = LedController(context("iot:ledcontroller", "wascc", None))
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


# ---------------------------------------------------------------- messaging

@pytest.fixture
async def messaging(nc: Client) -> AsyncIterator[Messaging]:
    calls: Calls = []
    ref: list[NatsMessaging] = []
    provider = NatsMessaging(context("wascc:messaging", "nats", nc, calls, ref))
    ref.append(provider)
    await provider.start()
    yield provider, calls
    await provider.stop()


async def test_messages_are_delivered_and_answered_through_reply_to(
        messaging: Messaging, nc: Client) -> None:
    provider, calls = messaging
    await provider.bind("M1", {"SUBSCRIPTION": "t.in"})
    reply = await nc.request("t.in", b"shout", timeout=5)
    assert reply.data == b"SHOUT"
    [(actor, op, delivered)] = calls
    assert (actor, op, delivered.subject, delivered.body) == ("M1", "DeliverMessage", "t.in",
                                                              b"shout")
    assert delivered.reply_to.startswith("_INBOX.")
    failed = await nc.request("t.in", b"boom", timeout=5)
    assert failed.data == b""
    assert failed.headers is not None and "guest trapped" in failed.headers["Nats-Service-Error"]
    await provider.bind("M1", {"SUBSCRIPTION": "t.other, t.more"})  # waSCC's list
    assert (await nc.request("t.other", b"x", timeout=5)).data == b"X"
    assert (await nc.request("t.more", b"y", timeout=5)).data == b"Y"
    await provider.unbind("M1")
    assert provider.state() == {"bound": "0"}


async def test_what_the_actor_returns_is_dropped_and_no_reply_is_made_up(
        messaging: Messaging, nc: Client) -> None:
    provider, calls = messaging
    await provider.bind("M1", {"SUBSCRIPTION": "t.in"})
    replies = await nc.subscribe("t.replies")
    await server_barrier(nc)
    await nc.publish("t.in", b"silent", reply="t.replies")  # returns b"DROPPED"
    await nc.publish("t.in", b"loud", reply="t.replies")
    first = await replies.next_msg(timeout=5)
    assert first.data == b"LOUD"
    await eventually(lambda: len(calls) == 2, timeout=5, message="both delivered")
    await server_barrier(nc)  # the provider publishes on this connection
    assert replies.pending_msgs == 0
    assert [m.reply_to for _, _, m in calls] == ["t.replies", "t.replies"]


async def test_a_message_without_a_reply_subject_is_delivered_with_an_empty_reply_to(
        messaging: Messaging, nc: Client) -> None:
    provider, calls = messaging
    await provider.bind("M1", {"SUBSCRIPTION": "t.in"})
    await nc.publish("t.in", b"")
    await eventually(lambda: calls, timeout=5, message="the delivery")
    assert calls[0][2] == BrokerMessage(subject="t.in", reply_to="", body=b"")


async def test_an_inbox_given_as_reply_to_may_be_answered_once(
        messaging: Messaging, nc: Client) -> None:
    provider, calls = messaging
    await provider.bind("M1", {"SUBSCRIPTION": "t.in"})
    assert (await nc.request("t.in", b"once", timeout=5)).data == b"ONCE"
    inbox = calls[0][2].reply_to
    with pytest.raises(ProviderError, match=r"Publish refused: subject '_INBOX.*reserved"):
        await asyncio.to_thread(provider.host_call, "M1", "Publish", publish(inbox, b"again"))
    # a requester that names a control subject as its reply gets no answer there
    await nc.publish("t.in", b"trick", reply="lattice.t1.ctl.host.H.actor.stop")
    await eventually(lambda: len(calls) == 2, timeout=5, message="the trick delivered")
    with pytest.raises(ProviderError, match="reserved namespace lattice"):
        await asyncio.to_thread(provider.host_call, "M1", "Publish",
                                publish("lattice.t1.ctl.host.H.actor.stop", b"x"))


async def test_publish_and_request_from_an_actor_thread(
        messaging: Messaging, nc: Client) -> None:
    provider, _ = messaging
    await provider.bind("M1", {"SUBSCRIPTION": "t.in"})
    sub = await nc.subscribe("t.out")

    async def service(msg: Msg) -> None:
        await msg.respond(b"answer to " + msg.data)

    await nc.subscribe("t.svc", cb=service)
    await server_barrier(nc)
    assert await asyncio.to_thread(provider.host_call, "M1", "Publish",
                                   publish("t.out", b"hello\nworld", "t.back")) == b""
    msg = await sub.next_msg(timeout=5)
    assert (msg.data, msg.reply) == (b"hello\nworld", "t.back")
    request = serialize(RequestMessage(subject="t.svc", body=b"q", timeout_ms=5000))
    reply = await asyncio.to_thread(provider.host_call, "M1", "Request", request)
    assert reply == b"answer to q"  # raw, as wascc-actor's request() returns it
    nobody = serialize(RequestMessage(subject="t.nobody", body=b"", timeout_ms=2000))
    with pytest.raises(ProviderError, match="no responders"):
        await asyncio.to_thread(provider.host_call, "M1", "Request", nobody)
    for bad, words in [(b"t.out\nhello", "Failed to de-serialize BrokerMessage"),
                       (serialize(RequestMessage(subject="t.x", timeout_ms=0)), "1 ms")]:
        op = "Publish" if bad.startswith(b"t.") else "Request"
        with pytest.raises(ProviderError, match=words):
            await asyncio.to_thread(provider.host_call, "M1", op, bad)
    with pytest.raises(ProviderError, match="Publish refused: replyTo subject '\\$KV"):
        await asyncio.to_thread(provider.host_call, "M1", "Publish",
                                publish("t.out", b"x", "$KV.bucket.key"))
    with pytest.raises(ProviderError, match="no operation 'HandleMessage'"):
        await asyncio.to_thread(provider.host_call, "M1", "HandleMessage", b"")


async def test_messaging_needs_a_subscription(messaging: Messaging) -> None:
    provider, _ = messaging
    with pytest.raises(ProviderError, match="SUBSCRIPTION"):
        await provider.bind("M1", {})


async def test_messaging_on_its_own_connection_to_the_binding_url(
        messaging: Messaging, nc: Client, nats_server: NatsServer) -> None:
    provider, _ = messaging
    await provider.bind("M1", {"SUBSCRIPTION": "t.url", "URL": nats_server.url})
    assert (await nc.request("t.url", b"via url", timeout=5)).data == b"VIA URL"
    await provider.unbind("M1")


async def test_two_hosts_bound_to_one_actor_handle_a_message_once(
        messaging: Messaging, nc: Client) -> None:
    provider, calls = messaging
    twin_calls: Calls = []
    ref: list[NatsMessaging] = []
    twin = NatsMessaging(context("wascc:messaging", "nats", nc, twin_calls, ref))
    ref.append(twin)
    await twin.start()
    try:
        for p in (provider, twin):
            await p.bind("M1", {"SUBSCRIPTION": "t.once", "QUEUEGROUP_NAME": "waSCC's"})
        for i in range(10):
            assert (await nc.request("t.once", b"m%d" % i, timeout=5)).data == b"M%d" % i
        assert len(calls) + len(twin_calls) == 10
    finally:
        await twin.stop()


# ---------------------------------------------------------------- logging, extras

async def test_write_log_reaches_the_hosts_log_bounded(caplog: pytest.LogCaptureFixture
                                                       ) -> None:
    provider = HostLog(context("wascc:logging", "default", None))
    await provider.bind("M1", {"LOG_RATE": "3"})
    caplog.set_level(logging.DEBUG, logger="vinculum.actor")

    def write(level: int, body: str) -> bytes:
        return provider.host_call("M1", "WriteLog",
                                  serialize(lg.WriteLogRequest(level=level, body=body)))

    assert write(lg.ERROR, "disk\nINFO forged line") == b""
    write(lg.OFF, "not written")
    write(lg.TRACE, "x" * (MAX_BODY + 100))
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("ERROR", "actor M1: disk\\nINFO forged line"),
        ("DEBUG", "actor M1: " + "x" * MAX_BODY + "...")]
    write(lg.INFO, "third")
    with pytest.raises(QuotaExceeded, match="LOG_RATE exceeded"):
        write(lg.INFO, "over the rate")
    with pytest.raises(ProviderError, match="level 9"):
        write(9, "what level")
    with pytest.raises(ProviderError, match="missing field body"):
        provider.host_call("M1", "WriteLog", bytes.fromhex("81a56c6576656c03"))
    with pytest.raises(ProviderError, match="not bound"):
        provider.host_call("M2", "WriteLog", serialize(lg.WriteLogRequest(level=3, body="")))


async def test_extras_generate_guids_random_numbers_and_sequences() -> None:
    provider = Extras(context("wascc:extras", "default", None))
    await provider.bind("M1", {})
    await provider.bind("M2", {})

    def ask(op: str, actor: str = "M1", *, random: bool = False, low: int = 0,
            high: int = 0) -> ex.GeneratorResult:
        request = ex.GeneratorRequest(guid=op == "RequestGuid",
                                      sequence=op == "RequestSequence",
                                      random=random, min=low, max=high)
        return deserialize(ex.GeneratorResult, provider.host_call(actor, op,
                                                                  serialize(request)))

    guid = ask("RequestGuid")
    assert guid.guid is not None and uuid.UUID(guid.guid).version == 4
    assert (guid.sequence_number, guid.random_number) == (0, 0)
    numbers = {ask("RequestRandom", random=True, low=10, high=13).random_number
               for _ in range(200)}
    assert numbers == {10, 11, 12}  # [min, max)
    assert ask("RequestRandom", random=False, low=10, high=13) == ex.GeneratorResult(
        sequence_number=0, random_number=0)
    with pytest.raises(ProviderError, match="min < max"):
        ask("RequestRandom", random=True, low=5, high=5)
    assert [ask("RequestSequence").sequence_number for _ in range(3)] == [0, 1, 2]
    assert ask("RequestSequence", "M2").sequence_number == 0  # each actor its own
    with pytest.raises(ProviderError, match="missing field sequence"):
        provider.host_call("M1", "RequestGuid", bytes.fromhex("81a467756964c3"))
    await provider.unbind("M2")
    with pytest.raises(ProviderError, match="not bound"):
        ask("RequestSequence", "M2")


# ---------------------------------------------------------------- messaging's quotas (issue 12)

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
        await asyncio.to_thread(provider.host_call, "M1", "Publish", publish(subject, b"PWNED"))
    with pytest.raises(ProviderError, match=r"Request refused: .*subject"):
        await asyncio.to_thread(provider.host_call, "M1", "Request", serialize(
            RequestMessage(subject=subject, body=b"PWNED", timeout_ms=100)))
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
            await asyncio.to_thread(provider.host_call, "M1", "Publish", publish("t.rate", b"x"))
        except QuotaExceeded as exc:
            refused = exc
            break
        sent += 1
    assert refused is not None and sent >= 5
    assert refused.quota == "PUBLISH_RATE" and refused.limit == 5
    assert "over the limit of 5 messages/s (binding value PUBLISH_RATE)" in str(refused)
    # the reply owed to a delivered message is not counted: the actor still answers
    assert (await nc.request("t.in", b"still", timeout=5)).data == b"STILL"


async def test_messaging_payload_quota(messaging: Messaging, nc: Client) -> None:
    provider, _ = messaging
    await provider.bind("M1", {"SUBSCRIPTION": "t.in", "MAX_PAYLOAD": "10"})
    await asyncio.to_thread(provider.host_call, "M1", "Publish", publish("t.p", b"0123456789"))
    with pytest.raises(QuotaExceeded, match="MAX_PAYLOAD exceeded: a payload of 11 bytes, "
                                            "over the limit of 10 bytes"):
        await asyncio.to_thread(provider.host_call, "M1", "Publish", publish("t.p", b"0123456789X"))
    # never more than the connection's max payload, whatever the binding says
    await provider.bind("M1", {"SUBSCRIPTION": "t.in", "MAX_PAYLOAD": str(10 * nc.max_payload)})
    over = publish("t.p", b"x" * (nc.max_payload + 1))
    with pytest.raises(QuotaExceeded, match=f"over the limit of {nc.max_payload} bytes"):
        await asyncio.to_thread(provider.host_call, "M1", "Publish", over)


async def test_messaging_byte_rate_quota(messaging: Messaging, nc: Client) -> None:
    provider, _ = messaging
    await provider.bind("M1", {"SUBSCRIPTION": "t.in", "PUBLISH_BYTES_RATE": "1000",
                               "MAX_PAYLOAD": "400"})
    payload = publish("t.b", b"x" * 400)
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
        await asyncio.to_thread(provider.host_call, "M9", "Publish", publish("t.x", b"y"))
