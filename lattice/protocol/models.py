"""The message models of the wire protocol: the base message, ownership annotations, a
host's inventory, auctions and commands (see :mod:`lattice.protocol`, which re-exports
everything here)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from lattice.names import ActorToken, BindingName, CapabilityId, VendorId

PROTOCOL_VERSION = 2
DEFAULT_LATTICE = "default"
EVENT_TYPE_PREFIX = "io.vinculum.lattice."

Annotations = dict[str, str]
Labels = dict[str, str]


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def new_id() -> str:
    """A fresh random identifier (uuid4 hex)."""
    return uuid.uuid4().hex


class Message(BaseModel):
    """Base of every wire message: frozen, strict about unknown fields, versioned."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: int = PROTOCOL_VERSION


# ---------------------------------------------------------------- annotations (ownership)

#: Annotation keys the agent puts on what it starts; hosts keep them verbatim.
ANN_MANAGED_BY = "vinculum.io/managed-by"
ANN_KIND = "vinculum.io/kind"
ANN_NAME = "vinculum.io/name"
ANN_REVISION = "vinculum.io/revision"
ANN_REPLICA = "vinculum.io/replica"
#: per-instance limits of an actor (lattice.manifests.ActorLimits.annotation)
ANN_LIMITS = "vinculum.io/limits"
MANAGED_BY_VALUE = "vinculum"
#: Annotations that do not make an instance a different one (a new revision of the same
#: replica is the same replica): ignored when a host checks a start for idempotency.
NON_IDENTITY_ANNOTATIONS = frozenset({ANN_REVISION})


def identity_annotations(annotations: Annotations) -> Annotations:
    """The annotations that identify an instance (all but :data:`NON_IDENTITY_ANNOTATIONS`)."""
    return {k: v for k, v in annotations.items() if k not in NON_IDENTITY_ANNOTATIONS}


def is_managed(annotations: Annotations) -> bool:
    """True when the agent started this (it carries the managed-by annotation)."""
    return annotations.get(ANN_MANAGED_BY) == MANAGED_BY_VALUE


# ---------------------------------------------------------------- inventory

class ActorInstance(Message):
    """One running instance of an actor on a host."""

    actor_id: str
    instance_id: str
    annotations: Annotations = Field(default_factory=dict)
    started_at: datetime


class ProviderInstance(Message):
    """One running capability provider on a host, unique per (capability_id, binding_name)."""

    capability_id: str
    binding_name: str = "default"
    vendor_id: str
    instance_id: str
    annotations: Annotations = Field(default_factory=dict)
    started_at: datetime
    #: what the provider shows about itself (e.g. the pixels of a virtual LED strip)
    state: dict[str, str] = Field(default_factory=dict)


class BindingInstance(Message):
    """A binding of an actor to a provider on a host; ``values`` are templates, unresolved."""

    actor_id: str
    capability_id: str
    binding_name: str = "default"
    vendor_id: str | None = None
    values: dict[str, str] = Field(default_factory=dict)
    annotations: Annotations = Field(default_factory=dict)


class HostInventory(Message):
    """Everything a host runs, with its identity and labels."""

    host_id: str
    name: str
    labels: Labels = Field(default_factory=dict)
    started_at: datetime
    uptime_s: float = 0.0
    heartbeat_s: float = 5.0
    actors: list[ActorInstance] = Field(default_factory=list)
    providers: list[ProviderInstance] = Field(default_factory=list)
    bindings: list[BindingInstance] = Field(default_factory=list)
    #: name of the NATS server the host is connected to when it reports (it follows
    #: reconnects), None when unknown
    server: str | None = None


class PingRequest(Message):
    """Scatter/gather probe: every host replies with its :class:`HostInventory`."""


# ---------------------------------------------------------------- auctions

class AuctionRequest(Message):
    """Ask the lattice who can run an entity under ``constraints`` (affinity rules)."""

    auction_id: str = Field(default_factory=new_id)
    kind: Literal["actor", "provider"]
    actor_id: ActorToken | None = None
    capability_id: CapabilityId | None = None
    binding_name: BindingName | None = None
    vendor_id: VendorId | None = None
    constraints: list[str] = Field(default_factory=list)


class AuctionReply(Message):
    """A host's answer to an auction: a bid, or an explicit decline with its reason."""

    auction_id: str
    host_id: str
    bid: bool
    reason: str = ""
    load: int = 0
    labels: Labels = Field(default_factory=dict)


# ---------------------------------------------------------------- commands

class CommandOp(StrEnum):
    """The commands a host obeys; each is the tail of its subject."""

    ACTOR_START = "actor.start"
    ACTOR_STOP = "actor.stop"
    PROVIDER_START = "provider.start"
    PROVIDER_STOP = "provider.stop"
    BINDING_PUT = "binding.put"
    BINDING_DEL = "binding.del"


class StartActorCommand(Message):
    """Start an actor. Idempotent: an instance of the actor whose identity annotations
    (:func:`identity_annotations`) equal these is acked without starting a second one;
    replicas of one deployment differ by their ``vinculum.io/replica`` annotation."""

    op: Literal["actor.start"] = "actor.start"
    actor_id: ActorToken
    annotations: Annotations = Field(default_factory=dict)


class StopActorCommand(Message):
    """Stop the instance ``instance_id``, or every instance of the actor whose annotations
    include ``annotations``. Stopping what does not run is acked (idempotent)."""

    op: Literal["actor.stop"] = "actor.stop"
    actor_id: ActorToken
    instance_id: str | None = None
    annotations: Annotations = Field(default_factory=dict)


class StartProviderCommand(Message):
    """Start a provider; a host runs at most one per (capability_id, binding_name)."""

    op: Literal["provider.start"] = "provider.start"
    capability_id: CapabilityId
    binding_name: BindingName = "default"
    vendor_id: VendorId
    annotations: Annotations = Field(default_factory=dict)


class StopProviderCommand(Message):
    """Stop the provider for (capability_id, binding_name); its bindings go with it."""

    op: Literal["provider.stop"] = "provider.stop"
    capability_id: CapabilityId
    binding_name: BindingName = "default"


class PutBindingCommand(Message):
    """Bind an actor to the provider running here; values stay templates on the wire and
    are resolved from the host's environment by the host only."""

    op: Literal["binding.put"] = "binding.put"
    actor_id: ActorToken
    capability_id: CapabilityId
    binding_name: BindingName = "default"
    vendor_id: VendorId | None = None
    values: dict[str, str] = Field(default_factory=dict)
    annotations: Annotations = Field(default_factory=dict)


class DeleteBindingCommand(Message):
    """Remove a binding; deleting what does not exist is acked."""

    op: Literal["binding.del"] = "binding.del"
    actor_id: ActorToken
    capability_id: CapabilityId
    binding_name: BindingName = "default"


Command = Annotated[
    StartActorCommand | StopActorCommand | StartProviderCommand | StopProviderCommand
    | PutBindingCommand | DeleteBindingCommand,
    Field(discriminator="op"),
]

COMMAND_MODELS: dict[CommandOp, type[Message]] = {
    CommandOp.ACTOR_START: StartActorCommand,
    CommandOp.ACTOR_STOP: StopActorCommand,
    CommandOp.PROVIDER_START: StartProviderCommand,
    CommandOp.PROVIDER_STOP: StopProviderCommand,
    CommandOp.BINDING_PUT: PutBindingCommand,
    CommandOp.BINDING_DEL: DeleteBindingCommand,
}


class CommandAck(Message):
    """A host's reply to a command: accepted (with ``changed`` telling whether anything
    happened) or refused with a reason."""

    host_id: str
    accepted: bool
    reason: str = ""
    changed: bool = False
    instance_id: str | None = None


class SyncNudge(Message):
    """Ask the agent to fetch its repository now (published by ``latticectl apply``)."""

    reason: str = ""
    revision: str | None = None
