"""A revision of the watched branch as the agent tracks it, and the note written on it.

The agent keeps two: the applied revision (the last valid one, in force) and the refused
one (the newest invalid or untrusted head, when newer). :func:`revision_note` turns one
into the :class:`~lattice.status.RevisionNote` that ``git notes`` carries on the commit;
:func:`evaluated` makes one from :meth:`gitsync.source.GitSource.evaluate`'s verdict. A
revision replaced before it was ``Synced`` is noted ``Superseded`` (:mod:`reconciler.follow`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from gitsync.health import SourceHealth
from gitsync.source import Evaluation
from lattice.protocol import utcnow
from lattice.status import CommitSignature, EntityCount, Phase, RevisionNote
from reconciler.report import Counts


@dataclass
class Revision:
    """One evaluated head: when first seen, its phase and counts as last noted."""

    sha: str
    first_seen: datetime
    phase: Phase | None = None
    errors: list[str] = field(default_factory=list)
    counts: Counts = ()
    reason: str = ""  # why it is Invalid
    signature: CommitSignature | None = None  # the policy's verdict, when there is one


def evaluated(sha: str, ev: Evaluation) -> Revision:
    """The revision ``sha`` as first seen, with ``ev``'s errors and reason when it is
    ``Invalid`` (its phase set: the note says so at once). Pure but for the clock."""
    rev = Revision(sha=sha, first_seen=utcnow(),
                   signature=ev.signature.record() if ev.signature else None)
    if ev.desired is None:
        rev.errors, rev.phase, rev.reason = list(ev.errors), Phase.INVALID, ev.reason
    return rev


def revision_note(
    rev: Revision, phase: Phase, message: str, health: SourceHealth | None
) -> RevisionNote:
    """The note for ``rev`` in ``phase``; a failing source's condition goes with it."""
    return RevisionNote(
        revision=rev.sha, phase=phase, reason=rev.reason if phase is Phase.INVALID else "",
        message=message, first_seen=rev.first_seen, updated=utcnow(), errors=rev.errors,
        signature=rev.signature,
        conditions=[health.condition()] if health is not None and not health.ok else [],
        entities=[EntityCount(kind=k, name=n, phase=p, ready=r, desired=d)
                  for k, n, p, r, d in rev.counts],
    )
