"""The dashboard's live picture: the status branch, the hosts and the lattice's events,
kept current, with a version number and the regions each change touched.

Two loops feed it. :meth:`Picture.watch_git` reads the repository through a
:class:`cli.view.RepoView` in one worker thread (GitPython objects stay in that thread):
when a ref of a local repository moves (inotify, as the agent watches) and at the latest
every :data:`GIT_TICK` seconds it compares the status and branch tips, and re-reads the
status only when the status tip moved (unchanged files are not parsed again); with a
remote it fetches every :data:`FETCH_EVERY` seconds. :meth:`Picture.watch_lattice`
follows the lattice's events on one NATS connection and pings the hosts every
:data:`PING_EVERY` seconds and after events that change what a host runs. A host is
``gone`` (greyed out) when it says it stopped, when it missed :data:`MISSES_GONE` pings in
a row, or when the agent's status no longer lists it after listing it; it is forgotten
:data:`FORGET_AFTER` seconds later.

Subscribers (the server's event streams) wait on :meth:`Picture.changed`, which returns
the version and the regions changed since the version they have.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import functools
import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nats.aio.client import Client

from cli.dashboard.model import HistoryRow, HostSeen, entity_row
from cli.output import age
from cli.reach import connect_quickly
from cli.view import RepoView
from gitsync.statusformat import ParseCache, read_status
from gitsync.watch import watch_refs
from lattice.natsutil import NatsOptions, scatter_gather
from lattice.protocol import (
    CloudEvent,
    EventType,
    HostInventory,
    PingRequest,
    Subjects,
    decode,
    decode_event,
    encode,
)
from lattice.status import CommitSignature, StatusReport

log = logging.getLogger(__name__)

GIT_TICK = 0.2
FETCH_EVERY = 2.0
PING_EVERY = 1.0
#: Seconds the hosts have to answer a ping.
PING_WINDOW = 0.5
MISSES_GONE = 2
FORGET_AFTER = 600.0
#: Events kept for the feed.
EVENTS_KEPT = 200
#: Regions a page can show (``data-region``); a change names the ones it touched.
STATUS_REGIONS = frozenset({"source", "deployments", "bindingsets", "entity"})
#: Signature verdicts kept, by revision.
SIGNATURES_KEPT = 64
#: Status-branch commits of one entity a page shows.
HISTORY = 20
#: Events after which the hosts are pinged at once (what they run changed).
_REPING = {EventType.HOST_STARTED, EventType.HOST_STOPPED, EventType.ACTOR_STARTED,
           EventType.ACTOR_STOPPED, EventType.PROVIDER_STARTED, EventType.PROVIDER_STOPPED}


@dataclass(frozen=True)
class GitFacts:
    """What the repository said at one look."""

    report: StatusReport | None
    branch: str
    head: str | None
    head_subject: str
    evaluated: bool
    signature: CommitSignature | None
    #: the revision whose note has not been read yet for its signature
    unread: str = ""


class Picture:
    """Everything the pages show, current; see the module doc."""

    def __init__(self, view_opener: Callable[[], contextlib.AbstractContextManager[RepoView]],
                 nats: NatsOptions | str | None, lattice: str, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._open_view = view_opener
        self.nats = nats
        self.lattice = lattice
        self.now = clock
        self.git = GitFacts(None, "", None, "", True, None)
        self._signatures: dict[str, CommitSignature | None] = {}
        self.hosts: dict[str, HostSeen] = {}
        self.events: deque[CloudEvent] = deque(maxlen=EVENTS_KEPT)
        self.nats_error: str | None = None
        self.version = 1
        self._changes: dict[int, frozenset[str]] = {}
        self._cond = asyncio.Condition()
        self._misses: dict[str, int] = {}
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="git")
        self._view: RepoView | None = None
        self._stack = contextlib.ExitStack()
        self._cache: ParseCache = {}
        self._tips: tuple[Any, ...] = ()
        self._reping = asyncio.Event()
        self.stopped = asyncio.Event()

    # ------------------------------------------------------------------ changes
    async def _bump(self, regions: Iterable[str]) -> None:
        regions = frozenset(regions)
        if not regions:
            return
        async with self._cond:
            self.version += 1
            self._changes[self.version] = regions
            self._changes.pop(self.version - 1000, None)
            self._cond.notify_all()

    async def changed(self, since: int, timeout: float) -> tuple[int, frozenset[str]]:
        """Wait up to ``timeout`` s for a version after ``since`` (or for :meth:`stop`):
        the current version and the regions changed since ``since`` (``*`` when too old to
        say)."""
        async with self._cond:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._cond.wait_for(
                    lambda: self.version > since or self.stopped.is_set()), timeout)
            return self.version, self._since(since)

    async def stop(self) -> None:
        """Wake every waiter of :meth:`changed` for good."""
        async with self._cond:
            self.stopped.set()
            self._cond.notify_all()

    def _since(self, since: int) -> frozenset[str]:
        if since >= self.version:
            return frozenset()
        if since + 1 not in self._changes:
            return frozenset({"*"})
        out: set[str] = set()
        for v in range(since + 1, self.version + 1):
            out |= self._changes.get(v, frozenset())
        return frozenset(out)

    # ------------------------------------------------------------------ git
    async def in_git(self, fn: Callable[[RepoView], Any]) -> Any:
        """Run ``fn(view)`` in the git thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._call, fn)

    def _call(self, fn: Callable[[RepoView], Any]) -> Any:
        if self._view is None:
            self._view = self._stack.enter_context(self._open_view())
        return fn(self._view)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._pool.submit(self._stack.close).result(timeout=10)
        self._pool.shutdown(wait=False)

    def _look(self, view: RepoView, fetch: bool) -> GitFacts | None:
        """The repository's facts, or None when neither tip moved (git thread)."""
        if fetch:
            view.refresh()
        tips = view.status_tips()
        branch = self.git.branch or view.current_branch() or ""
        head = view.head(branch) if branch else None
        if (tips, head) == self._tips:
            return None
        moved = not self._tips or tips != self._tips[0]
        self._tips = (tips, head)
        report = read_status(view.repo, cache=self._cache) if moved else self.git.report
        branch = view.branch_of(report) if report or branch else ""
        head = view.head(branch) if branch else None
        subject = ""
        if head:
            with contextlib.suppress(ValueError):
                subject = str(view.repo.commit(head).summary)
        evaluated, signature, unread = True, None, ""
        if report is not None and head:
            fresh = view.freshness(report)
            evaluated = fresh.evaluated
            revision = report.summary.attempted_revision
            if fresh.note is not None:  # HEAD evaluated, the status branch not yet written
                signature = fresh.note.signature
            elif revision in self._signatures:
                signature = self._signatures[revision]
            else:
                unread = revision
        return GitFacts(report, branch, head, subject, evaluated, signature, unread)

    def _signature(self, view: RepoView, revision: str) -> bool:
        """Read the signature verdict in the note on ``revision`` (git thread): True when
        there is a note (a verdict never changes once written, so it is kept)."""
        note = view.note(revision)
        if note is None:
            return False
        self._signatures[revision] = note.signature
        while len(self._signatures) > SIGNATURES_KEPT:
            del self._signatures[next(iter(self._signatures))]
        return True

    async def watch_git(self, stop: asyncio.Event) -> None:
        """Follow the repository until ``stop`` is set: at once when a ref of a local
        repository moves (inotify), else every :data:`GIT_TICK` seconds."""
        loop = asyncio.get_running_loop()
        last_fetch = -FETCH_EVERY
        said = ""
        wake = asyncio.Event()
        watchers: list[asyncio.Task[None]] = []
        try:
            git_dir, local = await self.in_git(
                lambda v: (v.git_dir, v.remote is None and not v.temporary))
            if local:
                watchers = watch_refs(git_dir, wake, stop)
        except Exception as exc:  # reported by the first look below
            log.debug("dashboard: not watching the repository's refs: %s", exc)
        try:
            while not stop.is_set():
                wake.clear()
                fetch = loop.time() - last_fetch >= FETCH_EVERY
                if fetch:
                    last_fetch = loop.time()
                try:
                    facts = await self.in_git(functools.partial(self._look, fetch=fetch))
                except Exception as exc:  # a repository we cannot read: say so, keep looking
                    if str(exc) != said:
                        said = str(exc)
                        log.warning("dashboard: reading the repository failed: %s", exc)
                    facts = None
                if facts is not None:
                    await self._git_changed(facts)
                    if facts.unread:  # after the change is out: a note can be long to parse
                        await self._read_signature(facts.unread)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(_either(wake, stop), GIT_TICK)
        finally:
            for task in watchers:
                task.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)

    async def _read_signature(self, revision: str) -> None:
        try:
            found = await self.in_git(lambda view: self._signature(view, revision))
        except Exception as exc:  # an unreadable note: the panel says "not verified"
            log.debug("dashboard: note on %s: %s", revision[:12], exc)
            return
        if found and self.git.unread == revision:
            self.git = dataclasses.replace(self.git, signature=self._signatures[revision],
                                           unread="")
            await self._bump({"source"})

    async def _git_changed(self, facts: GitFacts) -> None:
        before = self.git.report
        self.git = facts
        if before is not None and facts.report is not None:
            dropped = set(before.hosts) - set(facts.report.hosts)
            for host_id in dropped & set(self.hosts):  # the agent declared it gone
                self._mark(host_id, answering=False)
        await self._bump(STATUS_REGIONS | ({"lattice"} if before is None else set()))

    def history(self, view: RepoView, kind: str, name: str) -> list[HistoryRow]:
        """The status-branch commits that changed one entity, newest first (git thread)."""
        rows = []
        now = self.now()
        for c, entity in view.entity_history(f"{kind}s", name, limit=HISTORY):
            if entity is None:
                rows.append(HistoryRow(age(c.time, now), "", "Deleted", "", "", "", ""))
                continue
            row = entity_row(entity, now)
            rows.append(HistoryRow(age(c.time, now), entity.revision, row.phase, row.detail,
                                   row.message, _author(view, entity.revision), ""))
        return rows

    # ------------------------------------------------------------------ lattice
    def _mark(self, host_id: str, *, answering: bool) -> None:
        seen = self.hosts.get(host_id)
        if seen is not None and seen.answering != answering:
            self.hosts[host_id] = HostSeen(seen.inventory, answering,
                                           self.now() if answering else seen.last_seen)

    async def watch_lattice(self, stop: asyncio.Event) -> None:
        """Follow the lattice until ``stop`` is set; without NATS, say why once."""
        if self.nats is None:
            self.nats_error = "no NATS URL configured: the lattice picture is empty"
            await self._bump({"lattice"})
            return
        nc: Client | None = None
        try:
            nc = await connect_quickly(self.nats)
            self.nats_error = None
            await nc.subscribe(Subjects(self.lattice).events, cb=self._on_event)
            while not stop.is_set():
                await self._ping(nc)
                self._reping.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(_either(self._reping, stop), PING_EVERY)
        except (OSError, ConnectionError) as exc:
            self.nats_error = f"cannot reach NATS ({exc}): the lattice picture is stale"
            await self._bump({"lattice"})
        finally:
            if nc is not None:
                with contextlib.suppress(Exception):
                    await nc.close()


    async def _on_event(self, msg: Any) -> None:
        ev = decode_event(msg.data, msg.subject)
        if ev is None or ev.event_type is EventType.HOST_HEARTBEAT:
            return
        self.events.appendleft(ev)
        regions = {"events"}
        if ev.event_type is EventType.HOST_STOPPED:
            host_id = str(ev.data.get("host_id") or "")
            if host_id in self.hosts:
                self._mark(host_id, answering=False)
                regions.add("lattice")
        if ev.event_type in _REPING:
            self._reping.set()
        await self._bump(regions)

    async def _ping(self, nc: Client) -> None:
        msgs = await scatter_gather(nc, Subjects(self.lattice).ping, encode(PingRequest()),
                                    timeout=PING_WINDOW)
        now = self.now()
        answered: dict[str, HostInventory] = {}
        for m in msgs:
            inv = decode(HostInventory, m.data, subject=m.subject)
            if inv is not None:
                answered[inv.host_id] = inv
        before = {k: _shape(v) for k, v in self.hosts.items()}
        for host_id, inv in answered.items():
            self._misses.pop(host_id, None)
            self.hosts[host_id] = HostSeen(inv, True, now)
        for host_id, seen in list(self.hosts.items()):
            if host_id in answered:
                continue
            misses = self._misses.get(host_id, 0) + 1
            self._misses[host_id] = misses
            if misses >= MISSES_GONE:
                self._mark(host_id, answering=False)
            if (now - seen.last_seen).total_seconds() > FORGET_AFTER:
                del self.hosts[host_id]
                self._misses.pop(host_id, None)
        after = {k: _shape(v) for k, v in self.hosts.items()}
        if after != before:
            await self._bump({"lattice"})


def _shape(seen: HostSeen) -> tuple[Any, ...]:
    """What the picture shows of a host (not its uptime, which every answer moves)."""
    inv = seen.inventory
    return (seen.answering, inv.name, inv.labels, inv.server, inv.actors, inv.providers)


async def _either(a: asyncio.Event, b: asyncio.Event) -> None:
    """Return when ``a`` or ``b`` is set."""
    waits = [asyncio.ensure_future(a.wait()), asyncio.ensure_future(b.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


def _author(view: RepoView, revision: str) -> str:
    if not revision:
        return ""
    try:
        commit = view.repo.commit(revision)
    except (ValueError, KeyError):
        return ""
    return str(commit.author.name or "")
