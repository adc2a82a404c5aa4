"""``latticectl status`` and ``latticectl history``: the sync state of the repository.

``status`` reads ``status.yaml`` of the status branch and the branch HEAD: what the agent
evaluated last, its phase and errors, how long ago, and whether HEAD is among what it
evaluated (a note attests only evaluated revisions), and whether the agent can fetch the
repository (the ``SourceReady`` condition). It exits 0 only when HEAD is evaluated and
``Synced`` and the source is not failing, 1 otherwise (``--wait`` polls until then or
``--timeout``), 2 on errors: made for scripts and CI. ``history`` lists the commits of the
followed branch with the phase of each one's note (``Superseded by <sha>`` for one the
agent skipped for a newer one), ``-`` for a commit the agent never saw, and each one's
signature: the agent's verdict when its note records one
(``--verify-commits``), else what the reader's own git says
(:func:`gitsync.verify.signature_states`).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import click

from cli.output import age, emit, plural, short, table, warn
from cli.settings import CliError, Settings
from cli.view import NO_STATUS, Freshness, RepoView, open_view
from gitsync.verify import signature_states
from lattice.durations import DURATION
from lattice.status import (
    CommitSignature,
    Phase,
    RevisionNote,
    StatusReport,
    SyncSummary,
    time_text,
)
from reconciler.follow import superseded_message

#: Seconds between two looks at the status under ``status --wait``.
WAIT_INTERVAL = 0.5
#: Seconds between two fetches from the remote under ``status --wait``.
WAIT_FETCH_INTERVAL = 2.0
NEVER_EVALUATED = ("-: no note: the agent has not seen the commit (yet). A commit it skipped "
                   "for a newer one in a burst is noted Superseded.")


def effective_phase(report: StatusReport, fresh: Freshness) -> Phase | None:
    """The phase of HEAD: the summary's when it is about HEAD, the note on HEAD when the
    status branch lags behind it, None when HEAD was not evaluated. Pure."""
    if not fresh.evaluated:
        return None
    if fresh.note is not None:
        return fresh.note.phase
    return report.summary.phase


def source_failing(report: StatusReport) -> bool:
    """True when the agent reports that fetching its source fails. Pure."""
    cond = report.summary.source_ready
    return cond is not None and not cond.status


def all_good(report: StatusReport, fresh: Freshness) -> bool:
    """What exit status 0 means: HEAD evaluated and Synced, the source not failing. Pure."""
    return effective_phase(report, fresh) is Phase.SYNCED and not source_failing(report)


def source_line(report: StatusReport) -> str | None:
    """The ``Source:`` line: the ``SourceReady`` condition (None from an agent that does
    not report one). Pure."""
    cond = report.summary.source_ready
    if cond is None:
        return None
    since = f" since {time_text(cond.last_transition)}" if cond.last_transition else ""
    state = "Ready" if cond.status else "NOT READY"
    return f"Source:      {state}{since} ({cond.reason}): {cond.message or '-'}"


def status_lines(report: StatusReport, fresh: Freshness, now: datetime) -> list[str]:
    s = report.summary
    phase = effective_phase(report, fresh)
    if not fresh.evaluated:
        head_state = "not yet evaluated"
    elif fresh.note is not None:
        head_state = f"evaluated: {_phase(fresh.note)} " + (
            "(newer than the status branch)" if fresh.note.phase is Phase.INVALID
            else "(the status branch is catching up)")
    else:
        head_state = "evaluated"
    lines = [
        f"Branch:      {fresh.branch}",
        f"HEAD:        {short(fresh.head)}  ({head_state})",
        f"Evaluated:   {short(s.attempted_revision)}  (the newest revision the agent looked at)",
        f"Applied:     {short(s.applied_revision)}  (the desired state in force)",
        f"Phase:       {s.phase}" + (f" ({s.reason})" if s.reason else "")
        + ("" if phase in (None, s.phase) else f" (HEAD: {phase}"
           + (f", {fresh.note.reason})" if fresh.note and fresh.note.reason else ")")),
        f"Message:     {s.message or '-'}",
        f"Updated:     {age(s.updated, now)} ago"
        + (f" ({s.updated:%Y-%m-%dT%H:%M:%SZ})" if s.updated else ""),
        f"Entities:    {plural(s.deployments, 'deployment')}, "
        f"{plural(s.bindingsets, 'binding set')}, {plural(s.hosts, 'host')}",
        *([line] if (line := source_line(report)) else []),
    ]
    errors = fresh.note.errors if fresh.note is not None else s.errors
    if errors:
        lines.append("Errors:")
        lines += [f"  - {e}" for e in errors]
    if s.unmanaged:
        lines.append("Unmanaged (running, not started by the agent; left alone):")
        lines += [f"  - {u.kind} {u.entity} on host {short(u.host_id)}" for u in s.unmanaged]
    return lines


def status_document(report: StatusReport, fresh: Freshness) -> dict[str, Any]:
    phase = effective_phase(report, fresh)
    return {
        "branch": fresh.branch,
        "head": fresh.head,
        "headEvaluated": fresh.evaluated,
        "headPhase": str(phase) if phase else None,
        "synced": phase is Phase.SYNCED,
        "sourceReady": (cond.status if (cond := report.summary.source_ready) else None),
        "summary": report.summary.model_dump(mode="json"),
    }


def _look(view: RepoView) -> tuple[StatusReport, Freshness]:
    report = view.status() or _refused_from_the_start(view) or view.require_status()
    fresh = view.freshness(report)
    if fresh.evaluated and fresh.note is None and fresh.head and report.summary.updated:
        # an agent (re)started on a head it refuses writes its note, not the status branch
        # (it has no desired state to report on): a newer Invalid note on HEAD wins
        note = view.note(fresh.head)
        if (note is not None and note.phase is Phase.INVALID
                and note.updated > report.summary.updated
                and report.summary.phase is not Phase.INVALID):
            fresh = Freshness(fresh.branch, fresh.head, True, note)
    return report, fresh


def _refused_from_the_start(view: RepoView) -> StatusReport | None:
    """No status branch, yet a note on HEAD: the agent refused every revision it saw (the
    first one is Invalid, e.g. an unsigned seed under --verify-commits), so it has applied
    nothing and written no status. The summary that note implies, else None."""
    branch = view.current_branch()
    head = view.head(branch) if branch else None
    note = view.note(head) if head else None
    if note is None or note.phase is not Phase.INVALID:
        return None
    return StatusReport(summary=SyncSummary(
        branch=branch or "", attempted_revision=note.revision, phase=note.phase,
        reason=note.reason, message=f"revision {note.revision[:8]} refused; nothing applied "
        "yet", errors=note.errors, updated=note.updated))


@click.command("status")
@click.option("-o", "--output", type=click.Choice(["yaml", "json"]), default=None,
              help="Print the summary as a document (default: lines for humans).")
@click.option("--wait", is_flag=True,
              help="Wait until HEAD is evaluated and Synced and the source is not failing.")
@click.option("--timeout", type=DURATION, default="60s", show_default=True,
              help="With --wait: give up (exit 1) after this long (e.g. 2s, 2m).")
@click.pass_obj
def status_cmd(settings: Settings, output: str | None, wait: bool, timeout: float) -> None:
    """Show the branch HEAD, the last revision the agent evaluated, its phase and errors.

    Exit status: 0 when HEAD is evaluated and Synced; 1 while it is not yet evaluated,
    Progressing, Degraded or Invalid, or while the agent cannot fetch the repository
    (SourceReady False: the status is that of the last revision it fetched); 2 on errors
    (no repository, no status yet).

    \b
    Examples:
      latticectl status
      latticectl apply -f deploy.yaml && latticectl status --wait --timeout 2m
      latticectl status -o json | jq .summary.errors
    """
    with open_view(settings) as view:
        report, fresh = _look(view)
        if wait:
            deadline = time.monotonic() + timeout
            last_fetch = time.monotonic()
            while not all_good(report, fresh) and time.monotonic() < deadline:
                time.sleep(WAIT_INTERVAL)
                if view.remote is not None and \
                        time.monotonic() - last_fetch >= WAIT_FETCH_INTERVAL:
                    last_fetch = time.monotonic()
                    view.refresh(branch=fresh.branch)
                report, fresh = _look(view)
    if output is not None:
        emit(status_document(report, fresh), output)
    else:
        for line in status_lines(report, fresh, datetime.now(UTC)):
            click.echo(line)
    if not all_good(report, fresh):
        raise click.exceptions.Exit(1)


# ---------------------------------------------------------------- history

def _ready(note: RevisionNote) -> str:
    if not note.entities:
        return "-"
    ready = sum(e.ready for e in note.entities)
    desired = sum(e.desired for e in note.entities)
    return f"{ready}/{desired}"


def _phase(note: RevisionNote) -> str:
    by = superseded_message("")
    if note.phase is Phase.SUPERSEDED and note.message.startswith(by):
        return f"{by}{short(note.message.removeprefix(by))}"
    return f"{note.phase} ({note.reason})" if note.reason else str(note.phase)


def _signature(sig: CommitSignature | None) -> str:
    return str(sig.state) if sig is not None else "-"


@click.command("history")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True,
              help="How many commits to show, newest first.")
@click.option("-o", "--output", type=click.Choice(["yaml", "json"]), default=None,
              help="Print a list of documents (default: a table).")
@click.pass_obj
def history_cmd(settings: Settings, limit: int, output: str | None) -> None:
    """List the commits of the followed branch with their sync phase from the notes.

    Columns: REVISION, AGE, PHASE (from the note; - when never evaluated), READY (entities'
    ready/desired summed), SIGNATURE (good, unsigned, untrusted or bad: the agent's verdict
    when it verifies commits, else what your git config says), AUTHOR, MESSAGE.

    \b
    Examples:
      latticectl history
      latticectl history --limit 5 -o json
    """
    with open_view(settings) as view:
        report = view.status()
        branch = view.branch_of(report)
        head = view.head(branch)
        if head is None:
            raise CliError(f"branch {branch} has no commits in {view.location}")
        commits = view.log(head, limit=limit)
        notes = {c.sha: view.note(c.sha) for c in commits}
        sigs = {sha: n.signature for sha, n in notes.items() if n and n.signature}
        sigs |= {sha: v.record() for sha, v in signature_states(
            view.git_dir, [c.sha for c in commits if c.sha not in sigs]).items()}
    if report is None and not any(notes.values()):
        warn(NO_STATUS)
    if output is not None:
        emit([{"revision": c.sha, "time": c.time.isoformat(), "author": c.author,
               "subject": c.subject,
               "signature": g.model_dump(mode="json") if (g := sigs.get(c.sha)) else None,
               "note": n.model_dump(mode="json") if (n := notes[c.sha]) else None}
              for c in commits], output)
        return
    now = datetime.now(UTC)
    rows = []
    for c in commits:
        note = notes[c.sha]
        rows.append([short(c.sha), age(c.time, now), _phase(note) if note else "-",
                     _ready(note) if note else "-", _signature(sigs.get(c.sha)), c.author,
                     c.subject])
    for line in table(("REVISION", "AGE", "PHASE", "READY", "SIGNATURE", "AUTHOR", "MESSAGE"),
                      rows):
        click.echo(line)
    if any(n is None for n in notes.values()):
        click.echo(NEVER_EVALUATED, err=True)


COMMANDS: list[click.Command] = [status_cmd, history_cmd]
