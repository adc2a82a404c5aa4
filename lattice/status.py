"""Status models: what the agent reports about desired next to observed.

Pure pydantic models, no I/O. The reconciler builds a :class:`StatusReport`; the status
writer in :mod:`gitsync.status` turns it into a note on the evaluated commit
(:class:`RevisionNote`) and files on the ``lattice/status`` branch; ``latticectl get``
reads those files back into the same models. docs/status-format.md describes the format.

Nothing here ever holds a resolved secret: binding values are the templates from git.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    WrapSerializer,
)

STATUS_FORMAT = 1


def canonical_time(t: datetime) -> datetime:
    """``t`` in UTC, truncated to the millisecond: the one precision of every time in the
    status. The same instant reaches the agent as readings microseconds apart (a host's
    ack and its event, a ping), so microseconds would make status commits of jitter alone;
    a time read back from git and rendered again is byte-identical. Naive times are UTC.
    Pure."""
    t = t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def _serialize_time(t: datetime, handler: SerializerFunctionWrapHandler) -> Any:
    return handler(canonical_time(t))


#: A status time: validated and rendered at :func:`canonical_time`'s precision (rendering
#: too, because ``model_copy(update=...)`` skips validation).
Time = Annotated[datetime, AfterValidator(canonical_time), WrapSerializer(_serialize_time)]


class Phase(StrEnum):
    """Sync phase of a revision or an entity."""

    SYNCED = "Synced"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    INVALID = "Invalid"
    #: a revision's note only: a newer valid revision came before this one was Synced
    SUPERSEDED = "Superseded"


class Reason(StrEnum):
    """Machine-readable reasons carried by conditions."""

    RECONCILED = "Reconciled"
    PROGRESSING = "Progressing"
    UNPLACEABLE = "Unplaceable"
    COMMAND_FAILED = "CommandFailed"  #: a command failed; retried after a delay
    COMMAND_REFUSED = "CommandRefused"  #: a host refused a command; retried on a change
    VALIDATION_FAILED = "ValidationFailed"
    WAITING_FOR_PROVIDER = "WaitingForProvider"
    CONFLICT = "Conflict"
    CRASH_LOOP = "CrashLoopBackOff"
    UNTRUSTED_COMMIT = "UntrustedCommit"
    FETCH_FAILED = "FetchFailed"  #: the source's last fetch failed (``SourceReady`` False)
    SUCCEEDED = "Succeeded"  #: the source's fetches succeed (``SourceReady`` True)


#: The type of the condition about the git source (Flux's GitRepository ``Ready``): at the
#: top level of ``status.yaml``, since it concerns the repository, not one deployment.
SOURCE_READY = "SourceReady"


def time_text(t: datetime) -> str:
    """``t`` as the status writes it in a message: ISO 8601, UTC, milliseconds, ``Z``.
    Pure."""
    return canonical_time(t).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class SignatureState(StrEnum):
    """What a commit's signature is worth under a signature policy (or, with none, under
    the reader's own git config): only ``good`` (a valid signature by a trusted key) may
    change what runs."""

    GOOD = "good"
    UNSIGNED = "unsigned"
    UNTRUSTED = "untrusted"  #: valid, but by an unknown, revoked or expired key
    BAD = "bad"  #: the signature does not match the commit


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Condition(Model):
    """A Flux-style condition: ``type`` (Ready, Reconciling, Stalled on entities;
    :data:`SOURCE_READY` on the summary), a status, a reason constant and a message for
    humans."""

    type: str
    status: bool
    reason: str
    message: str = ""
    last_transition: Time | None = None

    @classmethod
    def ready(cls, message: str = "observed matches desired") -> Condition:
        return cls(type="Ready", status=True, reason=Reason.RECONCILED, message=message)

    @classmethod
    def reconciling(cls, message: str) -> Condition:
        return cls(type="Ready", status=False, reason=Reason.PROGRESSING, message=message)

    @classmethod
    def stalled(cls, reason: Reason, message: str) -> Condition:
        return cls(type="Ready", status=False, reason=reason, message=message)

    @classmethod
    def source_ready(cls, message: str, *, since: datetime | None) -> Condition:
        """``SourceReady`` True: the source's fetches succeed (``since`` the first of them
        after the last failure)."""
        return cls(type=SOURCE_READY, status=True, reason=Reason.SUCCEEDED, message=message,
                   last_transition=since)

    @classmethod
    def fetch_failed(cls, message: str, *, since: datetime | None) -> Condition:
        """``SourceReady`` False: fetches fail ``since`` the first failure of the streak;
        the last good desired state stays in force."""
        return cls(type=SOURCE_READY, status=False, reason=Reason.FETCH_FAILED,
                   message=message, last_transition=since)


def find_condition(conditions: list[Condition], type_: str) -> Condition | None:
    """The condition of type ``type_`` in ``conditions``, or None. Pure."""
    return next((c for c in conditions if c.type == type_), None)


class Placement(Model):
    """Where one instance runs (or why it does not)."""

    entity: str = Field(description="actor id or capability_id/binding_name")
    kind: str = Field(description="actor, provider or binding")
    host_id: str | None = None
    host_name: str | None = None
    since: Time | None = None
    message: str = ""


class Count(Model):
    ready: int = 0
    desired: int = 0

    def __str__(self) -> str:
        return f"{self.ready}/{self.desired}"


class DeploymentStatus(Model):
    name: str
    #: the manifest's ``metadata.labels`` and ``metadata.annotations``, as written
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    revision: str = ""
    phase: Phase = Phase.PROGRESSING
    spec: dict[str, Any] = Field(default_factory=dict)
    actors: Count = Count()
    providers: Count = Count()
    placements: list[Placement] = Field(default_factory=list)
    conditions: list[Condition] = Field(default_factory=list)
    created: Time | None = None


class BindingSetStatus(Model):
    name: str
    #: the manifest's ``metadata.labels`` and ``metadata.annotations``, as written
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    revision: str = ""
    phase: Phase = Phase.PROGRESSING
    spec: dict[str, Any] = Field(default_factory=dict)
    bindings: Count = Count()
    placements: list[Placement] = Field(default_factory=list)
    conditions: list[Condition] = Field(default_factory=list)
    created: Time | None = None


class HostStatus(Model):
    host_id: str
    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    started_at: Time | None = None
    last_seen: Time | None = None
    actors: int = 0
    providers: int = 0
    bindings: int = 0


class UnmanagedEntity(Model):
    """Something running that the agent did not start: shown, never stopped."""

    kind: str
    entity: str
    host_id: str


class SyncSummary(Model):
    """``status.yaml`` on the status branch: the agent's view of the whole repository."""

    format: int = STATUS_FORMAT
    branch: str = ""
    attempted_revision: str = ""
    applied_revision: str = ""
    phase: Phase = Phase.PROGRESSING
    reason: str = ""  #: why the newest revision is Invalid (a :class:`Reason`), else empty
    message: str = ""
    errors: list[str] = Field(default_factory=list)
    updated: Time | None = None
    deployments: int = 0
    bindingsets: int = 0
    hosts: int = 0
    unmanaged: list[UnmanagedEntity] = Field(default_factory=list)
    #: conditions about the repository as a whole: ``SourceReady`` (the git source)
    conditions: list[Condition] = Field(default_factory=list)
    #: the version of the agent that wrote this (``latticectl version``); empty from an
    #: agent older than the field
    agent_version: str = ""

    @property
    def source_ready(self) -> Condition | None:
        """The ``SourceReady`` condition, None when the agent did not report one."""
        return find_condition(self.conditions, SOURCE_READY)


class CommitSignature(Model):
    """The signature on an evaluated commit, as the agent's policy judged it."""

    state: SignatureState
    signer: str = ""  #: the principal (SSH) or user id (OpenPGP), when known
    key: str = ""  #: the key's fingerprint (``SHA256:...`` for SSH, hex for OpenPGP)


class StatusReport(Model):
    """Everything the status writer records in one go."""

    summary: SyncSummary
    deployments: dict[str, DeploymentStatus] = Field(default_factory=dict)
    bindingsets: dict[str, BindingSetStatus] = Field(default_factory=dict)
    hosts: dict[str, HostStatus] = Field(default_factory=dict)


class EntityCount(Model):
    kind: str
    name: str
    phase: Phase
    ready: int
    desired: int


class RevisionNote(Model):
    """The note under ``refs/notes/lattice`` on every commit the agent evaluated."""

    format: int = STATUS_FORMAT
    revision: str
    phase: Phase
    reason: str = ""  #: why it is Invalid (ValidationFailed, UntrustedCommit), else empty
    message: str = ""
    first_seen: Time
    updated: Time
    errors: list[str] = Field(default_factory=list)
    entities: list[EntityCount] = Field(default_factory=list)
    #: the verdict on the commit's signature, when the agent verifies commits
    signature: CommitSignature | None = None
    #: ``SourceReady`` False when the note was written while the source's fetches failed
    conditions: list[Condition] = Field(default_factory=list)
