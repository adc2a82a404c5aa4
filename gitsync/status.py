"""The status writer: notes on evaluated commits and the ``lattice/status`` branch.

The reconciler calls :meth:`StatusWriter.note` when a revision's phase or counts change and
:meth:`StatusWriter.publish` after each reconcile. Everything is written with plumbing into
the source's git directory (objects, ``update-ref`` compare-and-swap, ``git notes`` with
``--git-dir``): a local repository's working tree and index are never touched.

* Notes are written at once (a new commit is noted within milliseconds).
* Status reports are compared without their clock fields (see
  :func:`~gitsync.statusformat.without_clock`); an unchanged report makes no commit, and a
  burst is coalesced by a background thread into at most one commit per ``min_interval``
  (1 s): the first change is written at once, the last one of a burst a second later.
  :meth:`StatusWriter.publish` only hands the report over: rendering its files (seconds
  for 10,000 deployments and hosts) happens on that thread, so the reconcile that
  published does not wait for it.
* For a remote source, notes and the status branch are pushed by the same thread, each
  ref on its own: fetch → add → push without force; a rejected push (the remote moved) is
  fetched, our notes are re-added on the remote's notes and our status tree re-committed
  on the remote's status tip, and the push retried with jittered backoff. A push that
  fails otherwise (a hook, the network) is logged with its ref, kept in
  :attr:`StatusWriter.push_errors` and retried later with growing delays (1 s, 2 s, 4 s
  ... up to 30 s), that ref's alone: it holds up neither the other ref's push nor a local
  status commit. Both delays come from :class:`lattice.backoff.Backoff` policies, and
  the pacing from an injected clock (:mod:`lattice.clock`).
* What an earlier writer (the agent before a restart, the leader before a hand-over)
  left stays its: :meth:`StatusWriter.read_back` hands the agent the branch's report, so
  creation and transition times carry over, and a note replacing an existing one keeps
  its ``first_seen``.

Reading back lives in :mod:`gitsync.statusformat` (re-exported here).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import git

from gitsync.errors import GitCommandError, PushError
from gitsync.gitcmd import (
    AGENT_IDENTITY,
    BlobBatch,
    blob_id,
    commit_tree,
    identity_env,
    resolve,
    run_git,
    tree_blob_ids,
    tree_from_ids,
    tree_of,
    update_ref,
    write_blob,
)
from gitsync.source import REMOTE, GitSource
from gitsync.statusformat import (
    NOTES_REF,
    REMOTE_NOTES_REF,
    REMOTE_STATUS_REF,
    STATUS_REF,
    fetch_status,
    file_digests,
    iter_report_files,
    read_note,
    read_status,
    render_note,
    without_clock,
)
from lattice.backoff import Backoff
from lattice.clock import Clock, monotonic
from lattice.status import RevisionNote, StatusReport

__all__ = ["StatusWriter", "fetch_status", "read_note", "read_status"]

log = logging.getLogger(__name__)

_ENV: Final = identity_env(*AGENT_IDENTITY)

#: A compare-and-swap race with another writer: 0.05 s x 2^n x U(0.5, 1.5), capped at
#: 2 s x U(0.5, 1.5), so racing writers spread out.
RACE_BACKOFF: Final = Backoff(base=0.075, max=3.0, jitter=2 / 3)
#: A push the remote refuses (not a race): that ref waits 1 s, 2 s, 4 s ... up to 30 s.
PUSH_BACKOFF: Final = Backoff(base=1.0, max=30.0)


@dataclass(frozen=True)
class _Pending:
    """A report to write, as published: rendered to files by the writer's thread."""

    report: StatusReport
    unclocked: StatusReport
    message: str


class StatusWriter:
    """Writes notes and the status branch of one :class:`GitSource`. Thread-safe."""

    def __init__(self, source: GitSource, *, min_interval: float = 1.0,
                 retries: int = 5, clock: Clock = monotonic) -> None:
        self.source = source
        self._clock = clock
        self.git_dir = source.git_dir
        self.remote = source.is_remote
        self.min_interval = min_interval
        self.retries = retries
        self.commits = 0  #: status commits made by this writer
        # Two independent writers, each with its own lock and its own Repo (GitPython
        # repos are not thread-safe): a note never waits for a status commit of a
        # thousand files, which matters because the note is what says Synced. Objects
        # are content-addressed and refs updated by compare-and-swap, so the two can
        # write to one repository at once.
        self._repo = git.Repo(self.git_dir)  # the status branch
        self._status_lock = threading.Lock()
        self._notes_repo = git.Repo(self.git_dir)
        self._notes_lock = threading.Lock()
        self._cond = threading.Condition()
        self._pending: _Pending | None = None
        self._in_flight = False  # the background thread is committing a report
        self._committed: dict[str, bytes] | None = None  # path -> digest, clock-free
        # the files of the status commit this writer last made or read (path -> blob
        # id) and that commit: a write stores only the files not among them
        self._ids: dict[str, bytes] = {}
        self._ids_tip: str | None = None
        self._loaded = False
        self._last_commit = float("-inf")
        self._notes: dict[str, bytes] = {}  # sha -> note blob written by us
        self._first_seen: dict[str, datetime] = {}  # sha -> first_seen of its note
        self._unpushed_notes: dict[str, bytes] = {}
        self._status_unpushed = False
        #: ref -> why its last push failed (refs whose last push succeeded are absent)
        self.push_errors: dict[str, str] = {}
        self._push_failures: dict[str, int] = {}  # ref -> failures in a row
        self._next_push: dict[str, float] = {}  # ref -> monotonic time of its next try
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="status-writer", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ notes
    def note(self, sha: str, note: RevisionNote) -> None:
        """Write (or replace) the note on commit ``sha`` now; pushed soon when remote. A
        note replacing one this writer did not write (an earlier agent's) keeps the older
        ``first_seen``: the revision was seen then."""
        with self._notes_lock:
            first = self._first_seen.get(sha)
            if first is None:
                old = read_note(self._notes_repo, sha)
                first = min(old.first_seen, note.first_seen) if old else note.first_seen
                self._first_seen[sha] = first
            if first < note.first_seen:
                note = note.model_copy(update={"first_seen": first})
            content = render_note(note)
            if self._notes.get(sha) == content:
                return
            blob = write_blob(self._notes_repo, content).hex()
            self._add_note(sha, blob)
            self._notes[sha] = content
            log.debug("note on %s: %s", sha[:12], note.phase, extra={"revision": sha})
            if self.remote:
                self._unpushed_notes[sha] = content
        if self.remote:
            self.wake()

    def _add_note(self, sha: str, blob: str) -> None:
        for attempt in range(self.retries + 1):
            try:
                run_git("notes", f"--ref={NOTES_REF}", "add", "-f", "-C", blob, sha,
                        git_dir=self.git_dir, env=_ENV)
                return
            except GitCommandError as exc:
                if not exc.is_race or attempt == self.retries:
                    raise
                RACE_BACKOFF.sleep(attempt)

    # ------------------------------------------------------------------ status branch
    def publish(self, report: StatusReport, *, unclocked: StatusReport | None = None) -> None:
        """Schedule a write of the status branch; no commit when only the clock moved.
        ``unclocked`` is ``without_clock(report)`` when the caller has computed it. Returns
        at once: the files are rendered and compared with the branch's by the writer's
        thread (or :meth:`flush`); a report published before the last one was written
        replaces it."""
        stable = unclocked if unclocked is not None else without_clock(report)
        s = report.summary
        message = (f"status: {s.phase} at {s.applied_revision[:12] or '-'} "
                   f"({s.deployments} deployments, {s.bindingsets} binding sets, "
                   f"{s.hosts} hosts)")
        with self._cond:
            self._pending = _Pending(report, stable, message)
            self._cond.notify_all()

    def discard(self) -> None:
        """Drop the status scheduled but not yet committed (the agent lost its lease: what
        it saw as leader is no longer its to write). Notes already written stay."""
        with self._cond:
            self._pending = None

    def flush(self) -> None:
        """Write what is pending now (and push, when remote); raises PushError if the
        push keeps failing. A commit the background thread has under way is waited for
        first, so what was published before the call is on the branch when it returns."""
        with self._cond:
            while self._in_flight:
                self._cond.wait()
            pending, self._pending = self._pending, None
        if pending is not None:
            self._commit(pending)
        if self.remote:
            self._push()

    def close(self) -> None:
        """Flush, stop the background thread and release the repository."""
        try:
            self.flush()
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()
            self._thread.join(timeout=30)
            self._repo.close()
            self._notes_repo.close()

    def wake(self) -> None:
        """Make the background thread look again at what is due (after the clock moved:
        it sleeps until the next due time it computed)."""
        with self._cond:
            self._cond.notify_all()

    def read_back(self) -> StatusReport | None:
        """The report the status branch holds now (for a remote source, fetched first,
        with its notes, so :meth:`note` sees an earlier agent's notes too): what an agent
        that starts or takes over carries its times over from. Later writes compare with
        it, so re-publishing it makes no commit."""
        with self._status_lock:
            report = self._load(fetch=True)
        with self._cond:
            self._committed = file_digests(without_clock(report)) if report else None
        return report

    def _load_committed(self) -> None:
        """Learn what the branch holds (once), so a restart makes no needless commit."""
        if self._loaded:
            return
        with self._status_lock:
            if self._loaded:
                return
            report = self._load(fetch=self.remote and resolve(self._repo, STATUS_REF) is None)
            committed = file_digests(without_clock(report)) if report else None
        with self._cond:
            self._committed = committed

    def _load(self, *, fetch: bool) -> StatusReport | None:
        """The branch's report (holding the status lock); with ``fetch`` (remote only),
        the remote's status and notes are fetched first and a missing local branch starts
        at the remote's tip."""
        if fetch and self.remote:
            fetch_status(self._repo, remote=REMOTE)
            tip = resolve(self._repo, REMOTE_STATUS_REF)
            if tip is not None and resolve(self._repo, STATUS_REF) is None:
                update_ref(self.git_dir, STATUS_REF, tip, None)
        self._loaded = True
        # a local source: its own branch only (the user's clone may track an origin's)
        return read_status(self._repo, ref=None if self.remote else STATUS_REF)

    def _commit(self, pending: _Pending) -> None:
        """Render ``pending`` and commit it, unless the branch holds the same but for
        the clocks. Only the files that differ from the last status commit's are stored,
        streamed to one ``git fast-import`` as they are rendered."""
        self._load_committed()
        stable = file_digests(pending.unclocked)
        with self._cond:
            if stable == self._committed:
                return  # only the clock moved: no commit, and no wait for the next one
        with self._status_lock:
            tree = self._write_tree(pending.report)
            for attempt in range(self.retries + 1):
                parent = resolve(self._repo, STATUS_REF)
                if parent is not None and tree_of(self._repo, parent) == tree:
                    self._ids_tip = parent
                    break
                sha = commit_tree(self.git_dir, tree, [parent] if parent else [],
                                  pending.message, identity=AGENT_IDENTITY)
                try:
                    update_ref(self.git_dir, STATUS_REF, sha, parent,
                               message="vinculum: status")
                except GitCommandError as exc:
                    if not exc.is_race or attempt == self.retries:
                        raise
                    RACE_BACKOFF.sleep(attempt)
                    continue
                self.commits += 1
                self._ids_tip = sha
                applied = pending.report.summary.applied_revision
                log.info("status branch: %s (%s)", sha[:12], pending.message,
                         extra={"revision": applied} if applied else None)
                if self.remote:
                    self._status_unpushed = True
                break
        with self._cond:
            self._committed = stable
            self._last_commit = self._clock()

    def _write_tree(self, report: StatusReport) -> str:
        """Store ``report``'s files that the last status commit does not hold (holding
        the status lock) and its tree; updates :attr:`_ids` (:attr:`_ids_tip` is the
        caller's to set once a commit holds them)."""
        tip = resolve(self._repo, STATUS_REF)
        if tip != self._ids_tip:  # another writer moved the branch, or the first write
            self._ids = tree_blob_ids(self.git_dir, tip) if tip else {}
            self._ids_tip = tip
        old = self._ids
        stored = set(old.values())
        ids: dict[str, bytes] = {}
        with BlobBatch(self.git_dir) as batch:
            for path, data in iter_report_files(report):
                binsha = blob_id(data)
                if binsha not in stored:
                    batch.add(data)
                    stored.add(binsha)
                ids[path] = binsha
        self._ids = ids
        self._ids_tip = None  # valid for the commit about to be made, not the old tip
        return tree_from_ids(self._repo, ids)

    # ------------------------------------------------------------------ pushing
    def _unpushed(self, ref: str) -> bool:
        return bool(self._unpushed_notes) if ref == NOTES_REF else self._status_unpushed

    def _push(self, refs: tuple[str, ...] = (NOTES_REF, STATUS_REF)) -> None:
        """Push each of ``refs`` that has something unpushed, each on its own: a failure
        is logged with its ref and recorded, then the next ref is tried. Raises PushError
        naming every ref that failed."""
        failed: list[str] = []
        for ref in refs:
            try:
                if ref == NOTES_REF:
                    with self._notes_lock:
                        if self._unpushed_notes:
                            self._push_ref(NOTES_REF, self._rebase_notes)
                            self._unpushed_notes.clear()
                else:
                    with self._status_lock:
                        if self._status_unpushed:
                            self._push_ref(STATUS_REF, self._rebase_status)
                            self._status_unpushed = False
            except Exception as exc:
                failed.append(f"{ref}: {exc}")
                self._pushed(ref, error=str(exc))
            else:
                self._pushed(ref, error=None)
        if failed:
            raise PushError("; ".join(failed))

    def _pushed(self, ref: str, *, error: str | None) -> None:
        """Record the outcome of one ref's push; a failure delays that ref's next try."""
        with self._cond:
            if error is None:
                if self.push_errors.pop(ref, None) is not None:
                    log.info("status writer (%s): push %s succeeded again",
                             self.source.location, ref)
                self._push_failures.pop(ref, None)
                self._next_push.pop(ref, None)
                return
            failures = self._push_failures[ref] = self._push_failures.get(ref, 0) + 1
            delay = PUSH_BACKOFF.delay(failures - 1)
            self._next_push[ref] = self._clock() + delay
            self.push_errors[ref] = error
        log.warning("status writer (%s): push %s failed: %s; retrying in %.1fs",
                    self.source.location, ref, error, delay)

    def _push_ref(self, ref: str, rebase: Callable[[], None]) -> None:
        for attempt in range(self.retries + 1):
            try:
                run_git("push", "--quiet", "--no-verify", REMOTE, f"{ref}:{ref}",
                        git_dir=self.git_dir)
                log.debug("pushed %s", ref)
                return
            except GitCommandError as exc:
                if not exc.is_race or attempt == self.retries:
                    raise PushError(f"push {ref}: {exc.message}") from exc
                log.info("push %s rejected (the remote moved); fetching and retrying", ref)
                RACE_BACKOFF.sleep(attempt)
                rebase()

    def _fetch_to(self, repo: git.Repo, src: str, dst: str) -> str | None:
        try:
            run_git("fetch", "--no-tags", "--quiet", REMOTE, f"+{src}:{dst}",
                    git_dir=self.git_dir)
        except GitCommandError as exc:
            if "couldn't find remote ref" not in exc.stderr.lower():
                raise
            return None
        return resolve(repo, dst)

    def _is_ancestor(self, old: str, new: str) -> bool:
        try:
            run_git("merge-base", "--is-ancestor", old, new, git_dir=self.git_dir)
            return True
        except GitCommandError:
            return False

    def _rebase_notes(self) -> None:
        """Put our unpushed notes on top of the remote's notes."""
        theirs = self._fetch_to(self._notes_repo, NOTES_REF, REMOTE_NOTES_REF)
        ours = resolve(self._notes_repo, NOTES_REF)
        if theirs is None or (ours is not None and self._is_ancestor(theirs, ours)):
            return
        update_ref(self.git_dir, NOTES_REF, theirs, ours, message="vinculum: rebase notes")
        for sha, content in self._unpushed_notes.items():
            self._add_note(sha, write_blob(self._notes_repo, content).hex())

    def _rebase_status(self) -> None:
        """Re-commit our status tree on top of the remote's status tip."""
        theirs = self._fetch_to(self._repo, STATUS_REF, REMOTE_STATUS_REF)
        ours = resolve(self._repo, STATUS_REF)
        if theirs is None or ours is None or self._is_ancestor(theirs, ours):
            return
        tree = tree_of(self._repo, ours)
        if tree_of(self._repo, theirs) == tree:
            new = theirs
        else:
            message = str(self._repo.commit(ours).message)
            new = commit_tree(self.git_dir, tree, [theirs], message, identity=AGENT_IDENTITY)
        update_ref(self.git_dir, STATUS_REF, new, ours, message="vinculum: rebase status")

    # ------------------------------------------------------------------ background
    def _run(self) -> None:
        while True:
            with self._cond:
                pending, refs = self._next_job()
                if self._closed:
                    return
            if pending is not None:
                try:
                    self._commit(pending)
                except Exception as exc:  # retried after min_interval, never lost
                    log.warning("status writer (%s): status commit failed: %s; retrying",
                                self.source.location, exc)
                    with self._cond:
                        self._last_commit = self._clock()
                        if self._pending is None:
                            self._pending = pending
                finally:
                    with self._cond:
                        self._in_flight = False
                        self._cond.notify_all()
            if refs:
                with contextlib.suppress(PushError):  # logged and recorded per ref
                    self._push(tuple(refs))

    def _next_job(self) -> tuple[_Pending | None, list[str]]:
        """Wait (holding the condition) until something is due; take it. A commit is
        due ``min_interval`` after the last one, whatever the pushes do; each ref's push
        when it has something unpushed and its own backoff allows."""
        while not self._closed:
            now = self._clock()
            wait: float | None = None
            pending = None
            if self._pending is not None:
                due = self._last_commit + self.min_interval
                if due <= now:
                    pending, self._pending = self._pending, None
                    self._in_flight = True
                else:
                    wait = due - now
            refs: list[str] = []
            for ref in (NOTES_REF, STATUS_REF) if self.remote else ():
                if not self._unpushed(ref):
                    continue
                at = self._next_push.get(ref, 0.0)
                if at <= now:
                    refs.append(ref)
                else:
                    wait = min(wait if wait is not None else at - now, at - now)
            if pending is not None or refs:
                return pending, refs
            self._cond.wait(wait)
        return None, []
