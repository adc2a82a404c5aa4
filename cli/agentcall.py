"""Asking the running agent, and waiting for it: what ``reconcile``, ``version`` and the
``--wait`` of ``apply`` and ``delete`` share.

:func:`ask_agent` sends a :class:`~lattice.protocol.SyncNudge` as a NATS *request*: the
agent fetches at once, as for ``sync``, and answers with its version, whether it leads
and the revision in force (:meth:`reconciler.agent.Agent.about`); no answer within the
timeout means no agent runs on this lattice. :func:`wait_for_revision` polls the status
branch and the notes (Flux's "eventually" with a deadline) until the agent has evaluated
a revision, and says how it ended.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import nats.errors

from cli.reach import connect_quickly
from cli.settings import Settings
from cli.view import RepoView, open_view
from lattice.protocol import Subjects, SyncNudge, encode
from lattice.status import Phase

#: Seconds between two looks at the status while waiting.
WAIT_INTERVAL = 0.3
#: Seconds between two fetches from a remote while waiting.
WAIT_FETCH_INTERVAL = 2.0


def ask_agent(settings: Settings, *, reason: str, timeout: float,
              revision: str | None = None) -> dict[str, Any] | None:
    """Nudge the agent and return its answer (``version``, ``leader``, ``applied``), or
    None when no agent answered within ``timeout`` seconds (nobody listens, or an agent
    too old to answer). An unreachable NATS raises, as every command's does."""
    async def go() -> dict[str, Any] | None:
        nc = await connect_quickly(settings.nats())
        try:
            reply = await nc.request(Subjects(settings.lattice).nudge,
                                     encode(SyncNudge(reason=reason, revision=revision)),
                                     timeout=max(timeout, 0.1))
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError, TimeoutError):
            return None
        finally:
            await nc.close()
        try:
            answer = json.loads(reply.data)
        except ValueError:
            return None
        return answer if isinstance(answer, dict) else None

    return asyncio.run(go())


@dataclass(frozen=True)
class Waited:
    """How waiting for a revision ended: ``phase`` of the revision (None: never
    evaluated), ``revision`` the one that decided (a newer one when ours was superseded),
    ``done`` True when it is Synced, ``failed`` True when Degraded or Invalid."""

    revision: str
    phase: str | None
    message: str = ""

    @property
    def done(self) -> bool:
        return self.phase == "Synced"

    @property
    def failed(self) -> bool:
        return self.phase in ("Degraded", "Invalid")


def wait_for_revision(settings: Settings, revision: str, *, timeout: float,
                      until_evaluated: bool = False) -> Waited:
    """Poll until the agent notes ``revision`` (or the head that superseded it) Synced,
    Degraded or Invalid, or ``timeout`` seconds pass; with ``until_evaluated``, stop as
    soon as it has any phase. The phase is the note's on the revision, else the status
    summary's when it is about that revision."""
    deadline = time.monotonic() + timeout
    last_fetch = time.monotonic()
    with open_view(settings) as view:
        while True:
            target, phase, message = _phase_of(view, revision)
            settled = phase is not None and (until_evaluated or phase in (
                Phase.SYNCED, Phase.DEGRADED, Phase.INVALID))
            if settled or time.monotonic() >= deadline:
                return Waited(target, str(phase) if phase else None, message)
            time.sleep(WAIT_INTERVAL)
            if view.remote is not None and time.monotonic() - last_fetch >= WAIT_FETCH_INTERVAL:
                last_fetch = time.monotonic()
                view.refresh()


def _phase_of(view: RepoView, revision: str) -> tuple[str, Phase | None, str]:
    """(revision, phase, message) of ``revision``, following Superseded to the newer head
    the note names."""
    target = revision
    for _ in range(16):  # a chain of superseded heads ends somewhere
        note = view.note(target)
        report = view.status()
        summary = report.summary if report is not None else None
        if note is not None and note.phase is Phase.SUPERSEDED:
            newer = note.message.rsplit(" ", 1)[-1]
            found = view.repo.git.rev_parse("--verify", "--quiet", f"{newer}^{{commit}}",
                                            with_exceptions=False)
            if not found:
                return target, None, note.message
            target = found.strip()
            continue
        if summary is not None and summary.applied_revision == target and \
                summary.updated is not None and (note is None or summary.updated >= note.updated):
            return target, summary.phase, summary.message
        if note is not None:
            return target, note.phase, note.message
        return target, None, ""
    return target, None, ""
