"""The wire protocol of a lattice: subjects and message models.

This package is the only contract between processes: hosts (``hostagent``), the agent
(``reconciler``) and ``latticectl`` speak nothing else. Every subject lives under
``lattice.<lattice_id>``; every payload is JSON validated by a pydantic model below and
carries the protocol version ``v``. Events are CloudEvents 1.0 envelopes whose ``data``
is one of the event models. A process that receives a message it cannot parse logs it
with the subject (see :func:`decode`) and drops it; it never crashes.

The models are documented, with a JSON example each, in docs/protocol.md, which a test
regenerates and compares so the two cannot drift. Modules: :mod:`~lattice.protocol.models`
(base message, annotations, inventory, auctions, commands),
:mod:`~lattice.protocol.events`, :mod:`~lattice.protocol.subjects` and
:mod:`~lattice.protocol.encoding`; import the names from here.
"""

from __future__ import annotations

from lattice.protocol.encoding import (
    decode,
    describe_validation_error,
    encode,
    parse_json_object,
)
from lattice.protocol.events import (
    EVENT_DATA,
    ActorEvent,
    ActorStartFailed,
    BindingEvent,
    BindingPutFailed,
    CloudEvent,
    EventType,
    HostStopped,
    ProviderEvent,
    ProviderStartFailed,
    decode_event,
    make_event,
)
from lattice.protocol.models import (
    ANN_KIND,
    ANN_LIMITS,
    ANN_MANAGED_BY,
    ANN_NAME,
    ANN_REPLICA,
    ANN_REVISION,
    COMMAND_MODELS,
    DEFAULT_LATTICE,
    EVENT_TYPE_PREFIX,
    MANAGED_BY_VALUE,
    NON_IDENTITY_ANNOTATIONS,
    PROTOCOL_VERSION,
    ActorInstance,
    Annotations,
    AuctionReply,
    AuctionRequest,
    BindingInstance,
    Command,
    CommandAck,
    CommandOp,
    DeleteBindingCommand,
    HostInventory,
    Labels,
    Message,
    PingRequest,
    ProviderInstance,
    PutBindingCommand,
    StartActorCommand,
    StartProviderCommand,
    StopActorCommand,
    StopProviderCommand,
    SyncNudge,
    identity_annotations,
    is_managed,
    new_id,
    utcnow,
)
from lattice.protocol.subjects import (
    Subjects,
)

__all__ = [
    "ANN_KIND",
    "ANN_LIMITS",
    "ANN_MANAGED_BY",
    "ANN_NAME",
    "ANN_REPLICA",
    "ANN_REVISION",
    "COMMAND_MODELS",
    "DEFAULT_LATTICE",
    "EVENT_DATA",
    "EVENT_TYPE_PREFIX",
    "MANAGED_BY_VALUE",
    "NON_IDENTITY_ANNOTATIONS",
    "PROTOCOL_VERSION",
    "ActorEvent",
    "ActorInstance",
    "ActorStartFailed",
    "Annotations",
    "AuctionReply",
    "AuctionRequest",
    "BindingEvent",
    "BindingInstance",
    "BindingPutFailed",
    "CloudEvent",
    "Command",
    "CommandAck",
    "CommandOp",
    "DeleteBindingCommand",
    "EventType",
    "HostInventory",
    "HostStopped",
    "Labels",
    "Message",
    "PingRequest",
    "ProviderEvent",
    "ProviderInstance",
    "ProviderStartFailed",
    "PutBindingCommand",
    "StartActorCommand",
    "StartProviderCommand",
    "StopActorCommand",
    "StopProviderCommand",
    "Subjects",
    "SyncNudge",
    "decode",
    "decode_event",
    "describe_validation_error",
    "encode",
    "identity_annotations",
    "is_managed",
    "make_event",
    "new_id",
    "parse_json_object",
    "utcnow",
]
