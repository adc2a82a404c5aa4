"""``wascc:messaging`` / ``nats``: waSCC's message broker contract over the lattice's NATS.

Speaks waSCC's codec (:mod:`hostagent.wascc_codec.messaging`), as waSCC's NATS provider
did, so that actors built with waSCC's SDK run unchanged:

* each message on a binding's subscription becomes a ``DeliverMessage`` call to the actor
  with ``{subject, replyTo, body}`` (``replyTo`` ``""`` when there is none); what the
  actor returns is dropped. The actor answers a request by publishing to the ``replyTo``
  it was given, as in waSCC; a call that fails is answered for it with an empty body and
  a ``Nats-Service-Error`` header (and logged), so a requester learns at once;
* the actor's ``Publish`` host call sends ``{subject, replyTo, body}`` and answers empty;
  its ``Request`` sends ``{subject, body, timeout}`` (milliseconds, at most
  :data:`MAX_REQUEST_MS`) through an inbox of the provider's and answers the reply's
  body as is (waSCC wraps it in nothing).

Binding values: ``SUBSCRIPTION``, one subject or several separated by commas (waSCC's
form); ``QUEUE`` (or waSCC's ``QUEUEGROUP_NAME``), the queue group, by default
``vinculum.<actor id>`` so that a message is handled once by the lattice however many
hosts run the provider bound to that actor; ``URL``, a NATS server to connect to instead
of the host's connection. Up to :data:`MAX_IN_FLIGHT` messages per binding are in flight;
more wait in nats-py's pending queue.

The data plane is not the control plane: a subscription, a ``Publish`` or ``Request``
subject or a ``replyTo`` in the lattice's reserved namespaces (``lattice.>``, ``$KV.>``,
``$JS.>``, inboxes, ...) is refused here, also in an insecure lattice
(:mod:`lattice.dataplane`), and a subject to publish to may hold no wildcard. The one
exception is the reply an actor owes: a ``Publish`` to the inbox a message delivered to it
named as ``replyTo``, once, within :data:`REPLY_GRANT_S` (NATS grants the ``apps`` role
the same single response). Each binding's publishing (``Publish`` and ``Request``) is
bounded (:mod:`.quota`): ``PUBLISH_RATE`` messages and ``PUBLISH_BYTES_RATE`` bytes a
second (token buckets holding one second's worth; an owed reply, one per delivered
message, is not counted), and ``MAX_PAYLOAD`` bytes a message, at most the connection's
max payload.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import nats
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from hostagent.host import server_barrier
from hostagent.providers.base import ProviderContext, ProviderError
from hostagent.providers.quota import Quota, QuotaExceeded, TokenBucket, read_quota
from hostagent.wascc_codec import CodecError, deserialize, serialize
from hostagent.wascc_codec import messaging as codec
from lattice.dataplane import publish_problem, subscription_problem

log = logging.getLogger(__name__)
R = TypeVar("R")
T = TypeVar("T")

MAX_IN_FLIGHT = 256
MAX_REQUEST_MS = 30_000  # a host call's waiting is given back to the guest up to 30 s
REPLY_GRANT_S = 60.0
MAX_REPLY_GRANTS = 4096  # per binding; the oldest go first
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

    def admit(self, size: int, *, counted: bool = True) -> None:
        """Count one message of ``size`` bytes (unless not ``counted``: a reply owed), or
        raise QuotaExceeded (nothing counted)."""
        if size > self.max_payload:
            raise QuotaExceeded(_WHO, MAX_PAYLOAD, self.max_payload,
                                f"a payload of {size} bytes")
        if not counted:
            return
        with self._lock:
            if self.messages.available() < 1:
                raise QuotaExceeded(_WHO, PUBLISH_RATE, round(self.messages.rate),
                                    "more messages a second")
            if self.bytes.available() < size:
                raise QuotaExceeded(_WHO, PUBLISH_BYTES_RATE, round(self.bytes.rate),
                                    f"{size} bytes more this second")
            self.messages.take(1)
            self.bytes.take(size)


class ReplyGrants:
    """The inboxes an actor may answer once: the ``replyTo`` of messages delivered to it."""

    def __init__(self) -> None:
        self._until: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def grant(self, subject: str) -> None:
        with self._lock:
            self._until[subject] = time.monotonic() + REPLY_GRANT_S
            self._until.move_to_end(subject)
            while len(self._until) > MAX_REPLY_GRANTS:
                self._until.popitem(last=False)

    def use(self, subject: str) -> bool:
        """Whether ``subject`` was granted and still is (the grant is spent)."""
        with self._lock:
            until = self._until.pop(subject, None)
        return until is not None and until > time.monotonic()



def owed_reply(subject: str) -> bool:
    """Whether an actor may answer on ``subject``, a reply subject it was given, although
    :func:`publish_problem` refuses it: only for being an inbox (first token ``_INBOX*``),
    its syntax otherwise fine and without wildcards. Pure."""
    first, dot, rest = subject.partition(".")
    if not first.startswith("_INBOX"):
        return False
    return publish_problem("app" + dot + rest) is None  # the same subject, not an inbox


def subjects_of(values: Mapping[str, str]) -> list[str]:
    """The subjects a binding subscribes to (``SUBSCRIPTION``, comma-separated), each
    checked; ProviderError on none or a refused one. Pure."""
    subjects = [s.strip() for s in values.get("SUBSCRIPTION", "").split(",")]
    if not any(subjects):
        raise ProviderError("messaging binding needs a SUBSCRIPTION value")
    for subject in subjects:
        problem = subscription_problem(subject)
        if problem is not None:
            raise ProviderError(f"SUBSCRIPTION refused: {problem}")
    return list(dict.fromkeys(subjects))


@dataclass
class _Bound:
    subs: list[Subscription]
    nc: Client
    own_connection: bool
    quota: PublishQuota
    replies: ReplyGrants = field(default_factory=ReplyGrants)


class NatsMessaging:
    """Subscriptions per bound actor, delivered as ``DeliverMessage``; ``Publish`` and
    ``Request`` for the actors."""

    capability_id: ClassVar[str] = "wascc:messaging"
    vendor_id: ClassVar[str] = "nats"

    def __init__(self, ctx: ProviderContext) -> None:
        self.ctx = ctx
        self._bound: dict[str, _Bound] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        if self.ctx.nc is None:
            raise ProviderError("messaging needs the host's NATS connection")

    async def stop(self) -> None:
        for actor_id in list(self._bound):
            await self.unbind(actor_id)
        for task in list(self._tasks):
            task.cancel()

    async def bind(self, actor_id: str, values: Mapping[str, str]) -> None:
        subjects = subjects_of(values)
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
        bound = _Bound(subs=[], nc=nc, own_connection=bool(url),
                       quota=PublishQuota(limits, nc.max_payload or MAX_PAYLOAD.default))
        sem = asyncio.Semaphore(MAX_IN_FLIGHT)

        async def on_message(msg: Msg) -> None:
            await sem.acquire()
            task = asyncio.create_task(self._deliver(actor_id, msg, bound))
            self._tasks.add(task)

            def done(t: asyncio.Task[None]) -> None:
                self._tasks.discard(t)
                sem.release()

            task.add_done_callback(done)

        queue = (values.get("QUEUE", "").strip() or values.get("QUEUEGROUP_NAME", "").strip()
                 or f"vinculum.{actor_id}")
        for subject in subjects:
            bound.subs.append(await nc.subscribe(subject, queue=queue, cb=on_message,
                                                 pending_msgs_limit=65536))
        self._bound[actor_id] = bound
        await server_barrier(nc)  # the binding is acked once the subscriptions are live
        log.info("messaging %s: actor %s subscribed to %s", self.ctx.binding_name, actor_id,
                 ", ".join(subjects))

    async def _deliver(self, actor_id: str, msg: Msg, bound: _Bound) -> None:
        delivery = serialize(codec.BrokerMessage(subject=msg.subject,
                                                 reply_to=msg.reply or "", body=msg.data))
        if msg.reply:
            bound.replies.grant(msg.reply)
        try:
            await self.ctx.call_actor(actor_id, codec.OP_DELIVER_MESSAGE, delivery)
        except Exception as exc:
            log.warning("messaging %s: actor %s failed on a message to %s: %s",
                        self.ctx.binding_name, actor_id, msg.subject, exc)
            if msg.reply and bound.replies.use(msg.reply):  # unless it answered already
                await bound.nc.publish(msg.reply, b"", headers={
                    ERROR_HEADER: str(exc)[:500], f"{ERROR_HEADER}-Code": "500"})

    async def unbind(self, actor_id: str) -> None:
        bound = self._bound.pop(actor_id, None)
        if bound is None:
            return
        try:
            for sub in bound.subs:
                await sub.unsubscribe()
            if bound.own_connection:
                await bound.nc.drain()
        except Exception as exc:
            log.warning("messaging %s: unsubscribing actor %s failed: %s",
                        self.ctx.binding_name, actor_id, exc)

    def host_call(self, actor_id: str, operation: str, payload: bytes) -> bytes:
        if operation == codec.OP_PUBLISH_MESSAGE:
            message = self._decode(codec.BrokerMessage, payload)
            bound = self._checked(actor_id, operation, message.subject, message.body)
            if message.reply_to:
                self._refuse(operation, "replyTo", publish_problem(message.reply_to))
            self._send(bound.nc, message)
            return b""
        if operation == codec.OP_PERFORM_REQUEST:
            request = self._decode(codec.RequestMessage, payload)
            if request.timeout_ms < 1:
                raise ProviderError(f"Request needs a timeout of at least 1 ms, not "
                                    f"{request.timeout_ms}")
            timeout = min(request.timeout_ms, MAX_REQUEST_MS) / 1000
            bound = self._checked(actor_id, operation, request.subject, request.body)
            reply = self._wait(bound.nc.request(request.subject, request.body,
                                                timeout=timeout), timeout, grace=1.0)
            return bytes(reply.data)
        raise ProviderError(f"messaging has no operation {operation[:80]!r} "
                            f"({codec.OP_PUBLISH_MESSAGE}, {codec.OP_PERFORM_REQUEST})")

    @staticmethod
    def _decode(record: type[R], payload: bytes) -> R:
        try:
            return deserialize(record, payload)
        except CodecError as exc:
            raise ProviderError(str(exc)) from exc

    @staticmethod
    def _refuse(operation: str, what: str, problem: str | None) -> None:
        if problem is not None:
            raise ProviderError(f"{operation} refused: {problem}" if what == "subject"
                                else f"{operation} refused: {what} {problem}")

    def _checked(self, actor_id: str, operation: str, subject: str, body: bytes) -> _Bound:
        """The actor's binding, once ``subject`` is one it may send to and ``body`` fits
        its quotas (counted, but for the reply owed to a delivered message: one per
        message floods nothing, and spent rates would otherwise silence its answers)."""
        bound = self._bound.get(actor_id)
        problem = publish_problem(subject)
        owed = (bound is not None and operation == codec.OP_PUBLISH_MESSAGE
                and bound.replies.use(subject))
        if problem is not None and owed and owed_reply(subject):
            problem = None  # the reply it owes to a message delivered to it
        self._refuse(operation, "subject", problem)
        if bound is None:
            raise ProviderError(f"actor {actor_id} is not bound to messaging "
                                f"{self.ctx.binding_name} here")
        bound.quota.admit(len(body), counted=not owed)
        return bound

    def _send(self, nc: Client, message: codec.BrokerMessage) -> None:
        """Queue ``message`` on ``nc`` from an actor's thread without waiting for the loop
        (nats-py's publish only buffers it; waiting held the actor's worker, which serves
        its calls one at a time, for a turn of the busy loop per message: 2,200 instead of
        4,000 echoes a second). A failure to send is logged."""

        def start() -> None:
            task = self.ctx.loop.create_task(
                nc.publish(message.subject, message.body, reply=message.reply_to))
            self._tasks.add(task)
            task.add_done_callback(self._sent)

        try:
            self.ctx.loop.call_soon_threadsafe(start)
        except RuntimeError:
            raise ProviderError("publish failed: the host is stopping") from None

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("messaging %s: a Publish was not sent: %r", self.ctx.binding_name,
                        task.exception())

    def _wait(self, coro: Coroutine[Any, Any, T], timeout: float, *,
              grace: float = 0.0) -> T:
        """What ``coro`` returns on the host's loop, within ``timeout`` (+ ``grace`` for
        a coroutine that times out by itself); NATS's failures in words."""
        future = asyncio.run_coroutine_threadsafe(coro, self.ctx.loop)
        try:
            return future.result(timeout=timeout + grace)
        except (TimeoutError, nats.errors.TimeoutError):
            future.cancel()
            raise ProviderError(f"no reply within {timeout:g} s") from None
        except nats.errors.NoRespondersError:
            raise ProviderError("no responders: nobody listens on that subject") from None
        except Exception as exc:
            raise ProviderError(f"{type(exc).__name__} from NATS") from None

    def state(self) -> dict[str, str]:
        # counters would change every heartbeat's inventory: they stay out of it
        return {"bound": str(len(self._bound))}
