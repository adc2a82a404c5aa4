"""waSCC's core operations: what a host may send any actor, whatever it claims.

From waSCC's codec (``core.rs``); only the health check concerns an actor here:

| operation | from -> to | payload | answer |
|---|---|---|---|
| ``HealthRequest`` | host -> actor | ``HealthRequest {placeholder: bool}`` | ``()``: nil, ``c0`` |

waSCC has no health response record: an actor built with ``wascc-actor`` handles
``HealthRequest`` with a function returning ``Ok(())``, which its SDK serializes as nil
(:data:`HEALTHY`); an actor that does not handle it fails the call ("bad dispatch").

vinculum's hosts do not send ``HealthRequest``, on start or later, and neither did
``wascc-host`` 0.14: it only sent the record to portable capability providers with
``GetCapabilityDescriptor``, never to an actor. A health check would refuse the actors
that do not handle it (the project's own test modules among them) for no gain: an actor
that traps is reported crashed on its first failing call already. The record is here so
that a caller that wants one (an operator's tool) speaks it exactly. The other core
operations (``PerformLiveUpdate``, ``IdentifyCapability``, ``Initialize``, ``BindActor``,
``RemoveActor``) are between waSCC's host and its native providers: vinculum's providers
are Python classes (:mod:`hostagent.providers.base`) and never see them.
"""

from __future__ import annotations

from dataclasses import dataclass

OP_HEALTH_REQUEST = "HealthRequest"
OP_PERFORM_LIVE_UPDATE = "PerformLiveUpdate"
OP_IDENTIFY_CAPABILITY = "IdentifyCapability"
OP_INITIALIZE = "Initialize"
OP_BIND_ACTOR = "BindActor"
OP_REMOVE_ACTOR = "RemoveActor"

#: what a healthy waSCC actor answers to HealthRequest: ``()`` serialized, MessagePack nil
HEALTHY = b"\xc0"


@dataclass(frozen=True, kw_only=True)
class HealthRequest:
    """Sent to an actor to check it answers; ``placeholder`` is unused (always False)."""

    placeholder: bool
