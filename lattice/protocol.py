"""The wire protocol of a lattice: subjects and message models.

This module is the only contract between processes: hosts (``hostagent``), the agent
(``reconciler``) and ``latticectl`` speak nothing else. Every subject lives under
``lattice.<lattice_id>``; every payload is JSON validated by a pydantic model below and
carries the protocol version ``v``. Events are CloudEvents 1.0 envelopes whose ``data``
is one of the event models. A process that receives a message it cannot parse logs it
with the subject (see :func:`decode`) and drops it; it never crashes.

The models are documented, with a JSON example each, in docs/protocol.md, which a test
regenerates and compares so the two cannot drift.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

PROTOCOL_VERSION = 1
DEFAULT_LATTICE = "default"
EVENT_TYPE_PREFIX = "io.vinculum.lattice."

log = logging.getLogger(__name__)

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


class PingRequest(Message):
    """Scatter/gather probe: every host replies with its :class:`HostInventory`."""


# ---------------------------------------------------------------- auctions

class AuctionRequest(Message):
    """Ask the lattice who can run an entity under ``constraints`` (affinity rules)."""

    auction_id: str = Field(default_factory=new_id)
    kind: Literal["actor", "provider"]
    actor_id: str | None = None
    capability_id: str | None = None
    binding_name: str | None = None
    vendor_id: str | None = None
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


class StartActor(Message):
    """Start an actor. Idempotent: an instance of the actor whose identity annotations
    (:func:`identity_annotations`) equal these is acked without starting a second one;
    replicas of one deployment differ by their ``vinculum.io/replica`` annotation."""

    op: Literal["actor.start"] = "actor.start"
    actor_id: str
    annotations: Annotations = Field(default_factory=dict)


class StopActor(Message):
    """Stop the instance ``instance_id``, or every instance of the actor whose annotations
    include ``annotations``. Stopping what does not run is acked (idempotent)."""

    op: Literal["actor.stop"] = "actor.stop"
    actor_id: str
    instance_id: str | None = None
    annotations: Annotations = Field(default_factory=dict)


class StartProvider(Message):
    """Start a provider; a host runs at most one per (capability_id, binding_name)."""

    op: Literal["provider.start"] = "provider.start"
    capability_id: str
    binding_name: str = "default"
    vendor_id: str
    annotations: Annotations = Field(default_factory=dict)


class StopProvider(Message):
    """Stop the provider for (capability_id, binding_name); its bindings go with it."""

    op: Literal["provider.stop"] = "provider.stop"
    capability_id: str
    binding_name: str = "default"


class PutBinding(Message):
    """Bind an actor to the provider running here; values stay templates on the wire and
    are resolved from the host's environment by the host only."""

    op: Literal["binding.put"] = "binding.put"
    actor_id: str
    capability_id: str
    binding_name: str = "default"
    vendor_id: str | None = None
    values: dict[str, str] = Field(default_factory=dict)
    annotations: Annotations = Field(default_factory=dict)


class DeleteBinding(Message):
    """Remove a binding; deleting what does not exist is acked."""

    op: Literal["binding.del"] = "binding.del"
    actor_id: str
    capability_id: str
    binding_name: str = "default"


Command = Annotated[
    StartActor | StopActor | StartProvider | StopProvider | PutBinding | DeleteBinding,
    Field(discriminator="op"),
]

COMMAND_MODELS: dict[CommandOp, type[Message]] = {
    CommandOp.ACTOR_START: StartActor,
    CommandOp.ACTOR_STOP: StopActor,
    CommandOp.PROVIDER_START: StartProvider,
    CommandOp.PROVIDER_STOP: StopProvider,
    CommandOp.BINDING_PUT: PutBinding,
    CommandOp.BINDING_DEL: DeleteBinding,
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


# ---------------------------------------------------------------- events

class EventType(StrEnum):
    """Every event a lattice carries; the CloudEvents ``type`` is the prefixed form."""

    HOST_STARTED = "host_started"
    HOST_HEARTBEAT = "host_heartbeat"
    HOST_STOPPED = "host_stopped"
    ACTOR_STARTED = "actor_started"
    ACTOR_STOPPED = "actor_stopped"
    ACTOR_START_FAILED = "actor_start_failed"
    PROVIDER_STARTED = "provider_started"
    PROVIDER_STOPPED = "provider_stopped"
    PROVIDER_START_FAILED = "provider_start_failed"
    BINDING_PUT = "binding_put"
    BINDING_DELETED = "binding_deleted"


class HostStopped(Message):
    host_id: str
    reason: str = ""


class ActorEvent(Message):
    """Data of ``actor_started`` and ``actor_stopped``."""

    host_id: str
    actor_id: str
    instance_id: str
    annotations: Annotations = Field(default_factory=dict)
    reason: str = ""


class ActorStartFailed(Message):
    host_id: str
    actor_id: str
    annotations: Annotations = Field(default_factory=dict)
    reason: str


class ProviderEvent(Message):
    """Data of ``provider_started`` and ``provider_stopped``."""

    host_id: str
    capability_id: str
    binding_name: str
    vendor_id: str
    instance_id: str
    annotations: Annotations = Field(default_factory=dict)
    reason: str = ""


class ProviderStartFailed(Message):
    host_id: str
    capability_id: str
    binding_name: str
    vendor_id: str
    annotations: Annotations = Field(default_factory=dict)
    reason: str


class BindingEvent(Message):
    """Data of ``binding_put`` and ``binding_deleted``; values are templates."""

    host_id: str
    actor_id: str
    capability_id: str
    binding_name: str
    vendor_id: str | None = None
    values: dict[str, str] = Field(default_factory=dict)
    annotations: Annotations = Field(default_factory=dict)
    reason: str = ""


EVENT_DATA: dict[EventType, type[Message]] = {
    EventType.HOST_STARTED: HostInventory,
    EventType.HOST_HEARTBEAT: HostInventory,
    EventType.HOST_STOPPED: HostStopped,
    EventType.ACTOR_STARTED: ActorEvent,
    EventType.ACTOR_STOPPED: ActorEvent,
    EventType.ACTOR_START_FAILED: ActorStartFailed,
    EventType.PROVIDER_STARTED: ProviderEvent,
    EventType.PROVIDER_STOPPED: ProviderEvent,
    EventType.PROVIDER_START_FAILED: ProviderStartFailed,
    EventType.BINDING_PUT: BindingEvent,
    EventType.BINDING_DELETED: BindingEvent,
}


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 envelope (structured JSON mode) around one event's data."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(default_factory=new_id)
    source: str
    type: str
    time: datetime = Field(default_factory=utcnow)
    datacontenttype: Literal["application/json"] = "application/json"
    protocolversion: int = PROTOCOL_VERSION
    data: dict[str, Any]

    @property
    def event_type(self) -> EventType | None:
        """The short event type, or None for a type this version does not know."""
        short = self.type.removeprefix(EVENT_TYPE_PREFIX)
        try:
            return EventType(short)
        except ValueError:
            return None

    def typed_data(self) -> Message | None:
        """``data`` parsed into its event model, or None if unknown or malformed."""
        et = self.event_type
        if et is None:
            return None
        try:
            return EVENT_DATA[et].model_validate(self.data)
        except ValidationError:
            return None


def make_event(event_type: EventType, source: str, data: Message) -> CloudEvent:
    """Wrap ``data`` in a CloudEvent of ``event_type`` from ``source``."""
    return CloudEvent(
        source=source,
        type=EVENT_TYPE_PREFIX + event_type.value,
        data=data.model_dump(mode="json"),
    )


# ---------------------------------------------------------------- subjects

class Subjects:
    """The subjects of one lattice, all under ``lattice.<lattice_id>``.

    >>> Subjects("default").host_command("H1", CommandOp.ACTOR_START)
    'lattice.default.ctl.host.H1.actor.start'
    """

    def __init__(self, lattice_id: str = DEFAULT_LATTICE) -> None:
        if not lattice_id or any(c in lattice_id for c in " .*>\t\n"):
            raise ValueError(f"invalid lattice id {lattice_id!r}: no dots, spaces or wildcards")
        self.lattice_id = lattice_id
        self.prefix = f"lattice.{lattice_id}"

    @property
    def ping(self) -> str:
        return f"{self.prefix}.ctl.ping"

    def auction(self, kind: Literal["actor", "provider"]) -> str:
        return f"{self.prefix}.ctl.auction.{kind}"

    def host_command(self, host_id: str, op: CommandOp | str) -> str:
        return f"{self.prefix}.ctl.host.{host_id}.{CommandOp(op).value}"

    def host_commands(self, host_id: str) -> str:
        """Wildcard a host subscribes to for all its commands."""
        return f"{self.prefix}.ctl.host.{host_id}.>"

    def event(self, event_type: EventType | str) -> str:
        return f"{self.prefix}.evt.{EventType(event_type).value}"

    @property
    def events(self) -> str:
        """Wildcard for every event."""
        return f"{self.prefix}.evt.>"

    @property
    def nudge(self) -> str:
        return f"{self.prefix}.sync.nudge"

    def actor_rpc(self, actor_id: str) -> str:
        """Calls to an actor from a provider on another host (queue group ``actors``)."""
        return f"{self.prefix}.rpc.actor.{actor_id}"

    def provider_rpc(self, actor_id: str, capability_id: str, binding_name: str) -> str:
        """Host calls of an actor to the provider bound on another host (queue group
        ``providers``)."""
        return f"{self.prefix}.rpc.provider.{actor_id}.{capability_id}.{binding_name}"

    @property
    def lease_bucket(self) -> str:
        """JetStream key-value bucket holding the agent's leader lease."""
        return f"vinculum_lease_{self.lattice_id}".replace("-", "_")

    def op_of(self, subject: str) -> CommandOp | None:
        """The command op at the tail of a host command subject, or None."""
        parts = subject.split(".")
        if len(parts) < 7:
            return None
        try:
            return CommandOp(".".join(parts[-2:]))
        except ValueError:
            return None


# ---------------------------------------------------------------- encoding

M = TypeVar("M", bound=BaseModel)


def encode(msg: BaseModel) -> bytes:
    """Serialise a message to JSON bytes."""
    return msg.model_dump_json().encode()


def decode(model: type[M], payload: bytes, *, subject: str = "?") -> M | None:
    """Parse ``payload`` as ``model``; on failure log the subject and the problem and
    return None (callers drop the message: a bad message never crashes a process)."""
    try:
        return model.model_validate_json(payload)
    except ValidationError as exc:
        log.warning(
            "dropping unparseable %s on %s: %s",
            model.__name__, subject, describe_validation_error(exc),
        )
        return None


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming each bad field and what is wrong with it."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(message)"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def parse_json_object(payload: bytes) -> dict[str, Any] | str:
    """Decode a JSON object, or return a message saying why it is not one."""
    try:
        obj = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return f"malformed JSON: {exc}"
    if not isinstance(obj, dict):
        return f"expected a JSON object, got {type(obj).__name__}"
    return obj
