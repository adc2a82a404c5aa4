"""``wascc:messaging`` / ``nats``: NATS subjects delivered to actors, and ``Publish``.

Per binding, the provider subscribes to ``SUBSCRIPTION`` in queue group ``QUEUE`` (default
``vinculum.<actor id>``, so a message is handled once by the lattice however many hosts
run the provider bound to that actor) on the host's NATS connection, or on its own
connection to ``URL`` when that value is given. Every message becomes a ``HandleMessage``
call with the body; the actor's answer is published to the message's reply subject. A
failed call is answered with an empty body and a ``Nats-Service-Error`` header (and
logged), so a requester learns at once. Up to :data:`MAX_IN_FLIGHT` messages per binding
are in flight; more wait in nats-py's pending queue. The actor's ``Publish`` host call
takes "subject\\nbody".

The data plane is not the control plane: a ``SUBSCRIPTION`` or a ``Publish`` subject in
the lattice's reserved namespaces (``lattice.>``, ``$KV.>``, ``$JS.>``, inboxes, ...) is
refused here, also in an insecure lattice (:mod:`lattice.dataplane`), and a Publish
subject may hold no wildcard. Each binding's publishing is bounded (:mod:`.quota`):
``PUBLISH_RATE`` messages and ``PUBLISH_BYTES_RATE`` bytes a second (token buckets holding
one second's worth), and ``MAX_PAYLOAD`` bytes a message, at most the connection's max
payload.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from hostagent.host import server_barrier
from hostagent.providers.base import ProviderContext, ProviderError
from hostagent.providers.quota import Quota, QuotaExceeded, TokenBucket, read_quota
from lattice.dataplane import publish_problem, subscription_problem

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 256
PUBLISH_TIMEOUT_S = 5.0
ERROR_HEADER = "Nats-Service-Error"  # the NATS micro services convention
PUBLISH_RATE = Quota("PUBLISH_RATE", 1000, "messages/s")
PUBLISH_BYTES_RATE = Quota("PUBLISH_BYTES_RATE", 8 * 1024 * 1024, "bytes/s")
#: always at most the connection's max payload (the server's, 1 MiB unless configured;
#: NATS allows up to 64 MiB), which is therefore the default
MAX_PAYLOAD = Quota("MAX_PAYLOAD", 64 * 1024 * 1024, "bytes")
_WHO = "messaging"


@dataclass(frozen=True)
class PublishLimits:
    """The publishing quotas a binding's values set."""

    rate: int
    byte_rate: int
    max_payload: int

    @classmethod
    def of(cls, values: Mapping[str, str]) -> PublishLimits:
        """From a binding's values (ProviderError on a bad one). Pure."""
        return cls(read_quota(values, PUBLISH_RATE), read_quota(values, PUBLISH_BYTES_RATE),
                   read_quota(values, MAX_PAYLOAD))


class PublishQuota:
    """How much one binding may publish: a message and a byte rate, a payload size (at
    most ``connection_max``, the connection's max payload)."""

    def __init__(self, limits: PublishLimits, connection_max: int) -> None:
        self.max_payload = min(limits.max_payload, connection_max)
        rate, byte_rate = limits.rate, limits.byte_rate
        self.messages = TokenBucket(rate, rate)
        # one second's worth, and never less than one message of the largest size
        self.bytes = TokenBucket(byte_rate, max(byte_rate, self.max_payload))
        self._lock = threading.Lock()

    def admit(self, size: int) -> None:
        """Count one message of ``size`` bytes, or raise QuotaExceeded (nothing counted)."""
        if size > self.max_payload:
            raise QuotaExceeded(_WHO, MAX_PAYLOAD, self.max_payload,
                                f"a payload of {size} bytes")
        with self._lock:
            if self.messages.available() < 1:
                raise QuotaExceeded(_WHO, PUBLISH_RATE, round(self.messages.rate),
                                    "more messages a second")
            if self.bytes.available() < size:
                raise QuotaExceeded(_WHO, PUBLISH_BYTES_RATE, round(self.bytes.rate),
                                    f"{size} bytes more this second")
            self.messages.take(1)
            self.bytes.take(size)


@dataclass
class _Bound:
    sub: Subscription
    nc: Client
    own_connection: bool
    quota: PublishQuota


class NatsMessaging:
    """Subscriptions per bound actor, all answering through ``HandleMessage``."""

    capability_id: ClassVar[str] = "wascc:messaging"
    vendor_id: ClassVar[str] = "nats"

    def __init__(self, ctx: ProviderContext) -> None:
        self.ctx = ctx
        self._bound: dict[str, _Bound] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._handled = 0
        self._failed = 0

    async def start(self) -> None:
        if self.ctx.nc is None:
            raise ProviderError("messaging needs the host's NATS connection")

    async def stop(self) -> None:
        for actor_id in list(self._bound):
            await self.unbind(actor_id)
        for task in list(self._tasks):
            task.cancel()

    async def bind(self, actor_id: str, values: Mapping[str, str]) -> None:
        subject = values.get("SUBSCRIPTION", "").strip()
        if not subject:
            raise ProviderError("messaging binding needs a SUBSCRIPTION value")
        problem = subscription_problem(subject)
        if problem is not None:
            raise ProviderError(f"SUBSCRIPTION refused: {problem}")
        limits = PublishLimits.of(values)
        await self.unbind(actor_id)
        url = values.get("URL", "").strip()
        nc = self.ctx.nc
        if url:
            try:
                nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=-1,
                                        name=f"vinculum messaging {actor_id[:8]}")
            except Exception as exc:
                raise ProviderError(f"cannot connect to the binding's URL: "
                                    f"{type(exc).__name__}") from None
        assert nc is not None
        quota = PublishQuota(limits, nc.max_payload or MAX_PAYLOAD.default)
        sem = asyncio.Semaphore(MAX_IN_FLIGHT)

        async def on_message(msg: Msg) -> None:
            await sem.acquire()
            task = asyncio.create_task(self._deliver(actor_id, msg, nc))
            self._tasks.add(task)

            def done(t: asyncio.Task[None]) -> None:
                self._tasks.discard(t)
                sem.release()

            task.add_done_callback(done)

        queue = values.get("QUEUE", "").strip() or f"vinculum.{actor_id}"
        sub = await nc.subscribe(subject, queue=queue, cb=on_message,
                                 pending_msgs_limit=65536)
        self._bound[actor_id] = _Bound(sub=sub, nc=nc, own_connection=bool(url), quota=quota)
        await server_barrier(nc)  # the binding is acked once the subscription is live
        log.info("messaging %s: actor %s subscribed to %s", self.ctx.binding_name, actor_id,
                 subject)

    async def _deliver(self, actor_id: str, msg: Msg, nc: Client) -> None:
        try:
            reply = await self.ctx.call_actor(actor_id, "HandleMessage", msg.data)
        except Exception as exc:
            self._failed += 1
            log.warning("messaging %s: actor %s failed on a message to %s: %s",
                        self.ctx.binding_name, actor_id, msg.subject, exc)
            if msg.reply:
                await nc.publish(msg.reply, b"", headers={ERROR_HEADER: str(exc)[:500],
                                                        f"{ERROR_HEADER}-Code": "500"})
            return
        self._handled += 1
        if msg.reply:
            await nc.publish(msg.reply, reply)

    async def unbind(self, actor_id: str) -> None:
        bound = self._bound.pop(actor_id, None)
        if bound is None:
            return
        try:
            await bound.sub.unsubscribe()
            if bound.own_connection:
                await bound.nc.drain()
        except Exception as exc:
            log.warning("messaging %s: unsubscribing actor %s failed: %s",
                        self.ctx.binding_name, actor_id, exc)

    def host_call(self, actor_id: str, operation: str, payload: bytes) -> bytes:
        if operation != "Publish":
            raise ProviderError(f"messaging has no operation {operation!r} (Publish)")
        raw, sep, body = payload.partition(b"\n")
        subject = raw.decode(errors="replace").strip()
        if not sep or not subject:
            raise ProviderError("Publish takes 'subject\\nbody'")
        problem = publish_problem(subject)
        if problem is not None:
            raise ProviderError(f"Publish refused: {problem}")
        bound = self._bound.get(actor_id)
        if bound is None:
            raise ProviderError(f"actor {actor_id} is not bound to messaging "
                                f"{self.ctx.binding_name} here")
        bound.quota.admit(len(body))
        future = asyncio.run_coroutine_threadsafe(bound.nc.publish(subject, body),
                                                  self.ctx.loop)
        try:
            future.result(timeout=PUBLISH_TIMEOUT_S)
        except Exception as exc:
            raise ProviderError(f"publish failed: {type(exc).__name__}") from None
        return b""

    def state(self) -> dict[str, str]:
        # counters would change every heartbeat's inventory: they stay out of it
        return {"bound": str(len(self._bound))}
