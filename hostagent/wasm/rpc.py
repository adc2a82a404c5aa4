"""Lattice RPC: actor calls and host calls between hosts, when the two ends are apart.

The agent places a deployment's actors and providers independently, so an actor may run on
one host while the provider it is bound to runs on another (as in wasmCloud's lattice).
Calls take the local path when both ends are on the same host; otherwise they travel over
NATS request/reply, with the operation in the :data:`OP_HEADER` header and a failure as an
empty reply with a ``Nats-Service-Error`` header:

* ``lattice.<id>.rpc.actor.<actor_id>``: a call to the actor (e.g. ``DeliverMessage`` from a
  messaging provider on another host). Every host running an instance of the actor
  subscribes in queue group ``actors``; a host answers only from its local instances.
* ``lattice.<id>.rpc.provider.<actor_id>.<capability_id>.<binding_name>``: a host call of
  the actor to a provider. The host holding that binding subscribes in queue group
  ``providers`` and answers from its local provider.

No request is forwarded twice: a responder never makes a remote call on behalf of another.

A payload that NATS cannot carry (over the server's ``max_payload``, headers included) is
refused where it is made, with :class:`PayloadTooLarge` naming both sizes: the client
would refuse it anyway, but only after the caller waited for its timeout, and a message
whose headers take it over the limit makes the server close the host's connection.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from nats.aio.client import Client
from nats.aio.msg import Msg

from hostagent.workload import RuntimeFailure
from lattice.protocol import Subjects

log = logging.getLogger(__name__)

OP_HEADER = "Vinculum-Op"
ERROR_HEADER = "Nats-Service-Error"
ACTOR_QUEUE = "actors"
PROVIDER_QUEUE = "providers"


def actor_subject(subjects: Subjects, actor_id: str) -> str:
    """Where calls to ``actor_id`` go. Pure."""
    return subjects.actor_rpc(actor_id)


def provider_subject(subjects: Subjects, actor_id: str, capability_id: str,
                     binding_name: str) -> str:
    """Where host calls of ``actor_id`` to (capability, binding) go. Pure."""
    return subjects.provider_rpc(actor_id, capability_id, binding_name)


def error_of(msg: Msg) -> str | None:
    """The error a reply carries, or None."""
    if msg.headers and msg.headers.get(ERROR_HEADER):
        return msg.headers[ERROR_HEADER]
    return None


def error_headers(message: str) -> dict[str, str]:
    return {ERROR_HEADER: message[:500], f"{ERROR_HEADER}-Code": "500"}


class PayloadTooLarge(RuntimeFailure):
    """A payload over what the lattice's NATS carries; sending it again cannot help."""

    def __init__(self, what: str, size: int, limit: int, max_payload: int) -> None:
        headers = f", {max_payload - limit} bytes of it taken by headers" if (
            limit != max_payload) else ""
        super().__init__(f"{what} is {size} bytes, over the {limit}-byte limit of the "
                         f"lattice's NATS (max_payload {max_payload}{headers})")
        self.size = size
        self.limit = limit


def header_bytes(headers: Mapping[str, str] | None) -> int:
    """What ``headers`` add to a message on the wire (``NATS/1.0``, one line each, a blank
    line): the server holds headers and payload together to ``max_payload``. Pure."""
    if not headers:
        return 0
    lines = sum(len(k.encode()) + len(v.encode()) + 4 for k, v in headers.items())
    return len(b"NATS/1.0\r\n") + lines + 2


def ensure_fits(nc: Client | None, what: str, payload: bytes,
                headers: Mapping[str, str] | None = None) -> bytes:
    """``payload``, if a message with it and ``headers`` fits through ``nc``; else log the
    refusal and raise :class:`PayloadTooLarge`. Without a connection nothing is sent:
    anything fits."""
    if nc is None:
        return payload
    limit = nc.max_payload - header_bytes(headers)
    if len(payload) > limit:
        refused = PayloadTooLarge(what, len(payload), limit, nc.max_payload)
        log.warning("refused: %s", refused.message)
        raise refused
    return payload
