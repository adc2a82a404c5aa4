"""``wascc:messaging``: waSCC's message broker contract (codec ``messaging.rs``).

| operation | from -> to | payload | answer |
|---|---|---|---|
| ``DeliverMessage`` | provider -> actor | ``BrokerMessage {subject, replyTo, body}`` | ignored |
| ``Publish`` | actor -> provider | ``BrokerMessage {subject, replyTo, body}`` | empty |
| ``Request`` | actor -> provider | ``RequestMessage {subject, body, timeout}`` | the reply, raw |

``replyTo`` is ``""`` when a message has no reply subject; ``body`` is a bin and may be
missing (serde ``default``); ``timeout`` is in milliseconds (i64). An actor answers a
request by publishing to the ``replyTo`` it was delivered: waSCC's NATS provider drops
what the actor returns from ``DeliverMessage``. ``Request``'s answer is the reply's body
as is, not a record: ``wascc-actor``'s ``request()`` returns the host call's bytes, and
waSCC's provider returned ``reply.payload``.
"""

from __future__ import annotations

from dataclasses import dataclass

from hostagent.wascc_codec import I64

OP_DELIVER_MESSAGE = "DeliverMessage"
OP_PUBLISH_MESSAGE = "Publish"
OP_PERFORM_REQUEST = "Request"


@dataclass(frozen=True, kw_only=True)
class BrokerMessage:
    """A message delivered to an actor, or one it publishes."""

    subject: str
    reply_to: str
    body: bytes = b""


@dataclass(frozen=True, kw_only=True)
class RequestMessage:
    """A request an actor makes: publish ``body`` on ``subject`` and wait ``timeout_ms``
    for one reply (the provider handles the inbox)."""

    subject: str
    body: bytes = b""
    timeout_ms: I64
    __renames__ = {"timeout_ms": "timeout"}
