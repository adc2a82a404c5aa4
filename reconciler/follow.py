"""Following the newest commit of a burst: what supersedes what, and the notes saying so.

The agent (:mod:`reconciler.agent`) follows the newest head, not every commit. Three parts
make that so, and this module holds the agent's side of them:

* the watcher (:func:`gitsync.watch.watch_heads`) holds a head that comes while the applied
  revision is not ``Synced`` yet until the branch has been still for :data:`SETTLE`, and
  yields only the newest tip (:meth:`Follow.busy` is its question);
* a reconcile pass stops issuing commands between the executor's phases once a newer valid
  revision is in force (the agent checks the revision object it started with);
* every commit the agent saw gets a note: ``Synced`` or ``Invalid`` as before, and
  ``Superseded by <sha>`` for an applied revision replaced before it was ``Synced``
  (:meth:`Follow.replaced`) and for the commits a new head skipped
  (:meth:`Follow.seen`, resolved with :func:`gitsync.watch.commits_between`). Those notes
  are written when the agent's loop is idle (:meth:`Follow.note_superseded`), one at a
  time, so they never delay a command or the newest revision's own note.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from gitsync.source import GitSource
from gitsync.watch import commits_between
from lattice.protocol import utcnow
from lattice.status import Phase
from reconciler.revision import Revision

log = logging.getLogger(__name__)

#: How long the branch must keep one tip before a held head is yielded (a burst's commits
#: come tens of milliseconds apart; a person's, seconds).
SETTLE = 0.075
#: At most this many skipped commits are noted per new head (an import of a long history
#: is not a burst to annotate commit by commit).
SKIPPED_LIMIT = 100

#: How long a new leader waits for its fetch of a remote before acting on what it has
CATCH_UP_FETCH_S = 10.0

Write = Callable[[Revision, Phase, str], Awaitable[None]]


def superseded_message(by: str) -> str:
    """The message of a ``Superseded`` note. Pure."""
    return f"Superseded by {by}"


@dataclass
class Follow:
    """The heads the agent has seen and the ``Superseded`` notes it still owes."""

    head: str | None = None  #: the newest head evaluated
    _revisions: list[tuple[Revision, str]] = field(default_factory=list)  # (rev, by)
    _skipped: list[tuple[str, str]] = field(default_factory=list)  # (old head, new head)

    @staticmethod
    def busy(applied: Revision | None) -> bool:
        """Whether a new head should wait for the burst to settle: the applied revision
        has not been noted ``Synced`` yet (the agent is still working on it). Pure."""
        return applied is not None and applied.phase is not Phase.SYNCED

    def seen(self, sha: str) -> None:
        """``sha`` is the new head: the commits between the last head and it are owed a
        ``Superseded by sha`` note."""
        if self.head is not None and self.head != sha:
            self._skipped.append((self.head, sha))
        self.head = sha

    def replaced(self, previous: Revision | None, new: Revision) -> Revision:
        """The valid revision ``new`` is evaluated: the applied revision from now on, unless
        it is ``previous`` again (the same commit). A ``previous`` it replaces is owed a
        ``Superseded`` note unless it was ``Synced`` (the lattice did reach it)."""
        if previous is not None and previous.sha == new.sha:
            return previous
        if previous is not None and previous.phase is not Phase.SYNCED:
            self._revisions.append((previous, new.sha))
        return new

    async def caught_up(self, source: GitSource) -> bool:
        """Whether the newest head evaluated is the branch's head now (a remote source is
        fetched first): what a new leader checks before its first pass, as its watch may
        not have looked for a while (a follower's fetch runs every interval) and acting on
        an older revision would undo what the last leader applied. A fetch that fails, or
        takes over :data:`CATCH_UP_FETCH_S`, counts as caught up: the last fetched head is
        the best there is, and the source condition says the fetch fails."""
        try:
            if source.is_remote:  # (a hung fetch must not keep a new leader idle for long)
                await asyncio.wait_for(asyncio.to_thread(source.fetch), CATCH_UP_FETCH_S)
            head = await asyncio.to_thread(source.head)
        except TimeoutError:
            log.warning("new leader: fetching %s took over %.0f s; acting on the last "
                        "fetched head", source.location, CATCH_UP_FETCH_S)
            return True
        except Exception as exc:  # FetchError, NoHeadError, git failing: go on as we are
            log.debug("caught up? %s", exc)
            return True
        if head != self.head:
            log.info("new leader: head %s not evaluated yet (last %s): evaluating it first",
                     head[:12], (self.head or "-")[:12])
            return False
        return True

    @property
    def owed(self) -> int:
        """Notes still to write (skipped ranges count one until resolved)."""
        return len(self._revisions) + len(self._skipped)

    async def note_superseded(self, source: GitSource | None, write: Write, *,
                              until: tuple[asyncio.Event, ...]) -> int:
        """Write the owed notes one at a time until one of ``until`` is set (the agent has
        work again, or stops); returns how many."""
        written = 0
        while (source is not None and not any(e.is_set() for e in until)
               and (self._revisions or self._skipped)):
            if self._skipped:
                old, new = self._skipped.pop(0)
                shas = await asyncio.to_thread(commits_between, source, old, new,
                                               limit=SKIPPED_LIMIT)
                now = utcnow()
                self._revisions += [(Revision(sha=s, first_seen=now), new) for s in shas]
                continue
            rev, by = self._revisions.pop(0)
            await write(rev, Phase.SUPERSEDED, superseded_message(by))
            written += 1
        if written:
            log.info("%d superseded revision(s) noted", written)
        return written
