"""Lattice RPC: actor calls and host calls between hosts, when the two ends are apart.

The agent places a deployment's actors and providers independently, so an actor may run on
one host while the provider it is bound to runs on another (as in wasmCloud's lattice).
Calls take the local path when both ends are on the same host; otherwise they travel over
NATS request/reply, with the operation in the :data:`OP_HEADER` header and a failure as an
empty reply with a ``Nats-Service-Error`` header:

* ``lattice.<id>.rpc.actor.<actor_id>``: a call to the actor (e.g. ``HandleMessage`` from a
  messaging provider on another host). Every host running an instance of the actor
  subscribes in queue group ``actors``; a host answers only from its local instances.
* ``lattice.<id>.rpc.provider.<actor_id>.<capability_id>.<binding_name>``: a host call of
  the actor to a provider. The host holding that binding subscribes in queue group
  ``providers`` and answers from its local provider.

No request is forwarded twice: a responder never makes a remote call on behalf of another.
"""

from __future__ import annotations

from nats.aio.msg import Msg

from lattice.protocol import Subjects

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
