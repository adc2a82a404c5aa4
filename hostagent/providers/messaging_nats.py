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
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from hostagent.host import server_barrier
from hostagent.providers.base import ProviderContext, ProviderError

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 256
PUBLISH_TIMEOUT_S = 5.0
ERROR_HEADER = "Nats-Service-Error"  # the NATS micro services convention


@dataclass
class _Bound:
    sub: Subscription
    nc: Client
    own_connection: bool


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
        self._bound[actor_id] = _Bound(sub=sub, nc=nc, own_connection=bool(url))
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
        subject, sep, body = payload.partition(b"\n")
        if not sep or not subject.strip():
            raise ProviderError("Publish takes 'subject\\nbody'")
        bound = self._bound.get(actor_id)
        nc = bound.nc if bound is not None else self.ctx.nc
        if nc is None:
            raise ProviderError("no NATS connection")
        future = asyncio.run_coroutine_threadsafe(
            nc.publish(subject.decode(errors="replace").strip(), body), self.ctx.loop)
        try:
            future.result(timeout=PUBLISH_TIMEOUT_S)
        except Exception as exc:
            raise ProviderError(f"publish failed: {type(exc).__name__}") from None
        return b""

    def state(self) -> dict[str, str]:
        # counters would change every heartbeat's inventory: they stay out of it
        return {"bound": str(len(self._bound))}
