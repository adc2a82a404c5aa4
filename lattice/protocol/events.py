"""Events: what hosts announce on ``evt.<host id>.<type>``, as CloudEvents 1.0 envelopes
whose ``data`` is one of the event models below (re-exported by :mod:`lattice.protocol`)."""

from __future__ import annotations

import logging
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lattice.protocol.encoding import decode
from lattice.protocol.models import (
    EVENT_TYPE_PREFIX,
    PROTOCOL_VERSION,
    Annotations,
    HostInventory,
    Message,
    new_id,
    utcnow,
)

_log = logging.getLogger(__name__)


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
    BINDING_PUT_FAILED = "binding_put_failed"


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
    #: when the instance started (the host's one reading, also in its inventory)
    started_at: datetime | None = None


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
    #: when the instance started (the host's one reading, also in its inventory)
    started_at: datetime | None = None


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


class BindingPutFailed(Message):
    """Data of ``binding_put_failed``: a host refused a ``binding.put`` (the same reason as
    its negative ack). It names the binding but carries no values, not even templates: a
    value may be a literal secret."""

    host_id: str
    actor_id: str
    capability_id: str
    binding_name: str
    vendor_id: str | None = None
    annotations: Annotations = Field(default_factory=dict)
    reason: str


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
    EventType.BINDING_PUT_FAILED: BindingPutFailed,
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


def decode_event(payload: bytes, subject: str) -> CloudEvent | None:
    """The event published on ``subject``, or None (logged) when it does not parse, is of
    another protocol version, or its subject, source and data disagree about which host
    sent it: the server holds a host to subjects with its own id (lattice.auth.roles), so
    an event whose payload names another host is a forgery and is dropped."""
    ev = decode(CloudEvent, payload, subject=subject)
    if ev is None:
        return None
    parts = subject.split(".")  # lattice.<lattice id>.evt.<source>.<type>
    token = parts[3] if len(parts) == 5 and parts[2] == "evt" else None
    host_id = ev.data.get("host_id") if isinstance(ev.data, dict) else None
    if token != ev.source or (host_id is not None and host_id != ev.source):
        _log.warning("dropping event %s on %s: subject names %s, source %s, data host %s",
                     ev.type, subject, token, ev.source, host_id)
        return None
    if ev.event_type is not None and parts[-1] != ev.event_type.value:
        _log.warning("dropping event %s on %s: the subject names another type",
                     ev.type, subject)
        return None
    return ev
