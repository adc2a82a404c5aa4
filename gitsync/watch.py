"""When to look at the repository again: new heads of the watched branch.

:func:`watch_heads` yields the current head at once, then every change of the tip (a new
commit, a force-push, a reset: any change at all). How it notices depends on the source:

* **local**: watchfiles (inotify) on the repository's ``refs/`` directory and on its top
  directory (``packed-refs``, written by ``git pack-refs``/``gc``), with a short debounce so
  a commit is seen within tens of milliseconds; the branch is also re-read every
  ``interval`` seconds in case the platform drops events.
* **remote**: an APScheduler interval job (``interval``, default 30 s) and the ``nudge``
  event (set by the agent when a ``sync.nudge`` arrives on NATS) trigger a fetch.

A failed fetch does not stop the watch and yields nothing (the mirror keeps the last
fetched head, so the last good desired state stays in force); it is retried at the next
tick or nudge. Each fetch updates the source's :attr:`~gitsync.source.GitSource.health`,
and ``on_health`` is called with the new record whenever the ``SourceReady`` condition it
shows changes (failing, a different error, recovered): not on every attempt.

Heads are read, never queued: when the consumer is busy, changes collapse into one
wake-up and the newest tip is yielded, so a commit in the middle of a burst may never be
yielded. A burst is coalesced on purpose too: with ``settle`` (local sources), a new head
that comes while the consumer's ``busy()`` says it has not finished with the previous one
is held until the branch has kept one tip for ``settle`` seconds (at most
:data:`MAX_HOLD`), and only that tip is yielded, so twenty commits in half a second cost
one evaluation, not twenty. :func:`commits_between` names the commits a new head skipped
(the agent notes them ``Superseded``). The reconciler consumes this stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import watchfiles
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from gitsync.errors import FetchError, GitCommandError, NoHeadError
from gitsync.gitcmd import run_git
from gitsync.health import SourceHealth
from gitsync.source import GitSource
from lattice.aio import wait_any

log = logging.getLogger(__name__)

#: watchfiles tuning: collect events for ``STEP_MS``, return a batch within ``DEBOUNCE_MS``.
STEP_MS = 3
DEBOUNCE_MS = 80
#: Re-read interval when file events are unavailable (watcher failed).
FALLBACK_POLL = 0.1
PACKED = frozenset({"packed-refs", "packed-refs.lock"})
#: A held head is yielded after this long at the latest, however fast commits keep coming.
MAX_HOLD = 1.0


async def watch_heads(
    source: GitSource,
    *,
    interval: float = 30.0,
    stop: asyncio.Event,
    nudge: asyncio.Event | None = None,
    on_health: Callable[[SourceHealth], None] | None = None,
    settle: float = 0.0,
    busy: Callable[[], bool] | None = None,
) -> AsyncIterator[str]:
    """Yield the branch's head now, then each new head until ``stop`` is set; call
    ``on_health`` when a fetch changes the source's ``SourceReady`` condition. With
    ``settle`` and ``busy`` (local sources), a head that comes while ``busy()`` is held
    until the tip has not moved for ``settle`` seconds, and the tip is yielded."""
    wake = asyncio.Event()
    done = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    scheduler: AsyncIOScheduler | None = None
    poll = interval
    if source.is_remote:
        scheduler = AsyncIOScheduler()
        scheduler.add_job(wake.set, "interval", seconds=interval, id="fetch",
                          max_instances=1, coalesce=True)
        scheduler.start()
        poll = max(interval * 2, 60.0)  # the scheduler is the clock; this is a backstop
    else:
        tasks += watch_refs(source.git_dir, wake, done)
        # let the watch tasks take their first step, which arms inotify (watchfiles builds
        # its watcher before its first await): a commit made after the head is read below
        # then always wakes us (the head was read first, and a commit in between was
        # seen only by the next poll, 30 s later)
        await asyncio.sleep(0)
    last: str | None = None
    fetch_due = source.is_remote
    try:
        while not stop.is_set():
            wake.clear()
            nudged = nudge is not None and nudge.is_set()
            if nudge is not None:
                nudge.clear()
            if source.is_remote and (fetch_due or nudged):
                before = source.health
                with contextlib.suppress(FetchError):
                    await _fetch(source)
                if on_health is not None and not source.health.same_state(before):
                    on_health(source.health)
            head = await _head(source)
            if (head is not None and head != last and last is not None and settle > 0
                    and not source.is_remote and busy is not None and busy()):
                head = await _settled(source, head, wake, stop, settle)
            if head is not None and head != last:
                log.info("watch %s: head of %s is %s", source.location, source.branch,
                         head[:12], extra={"revision": head})
                last = head
                yield head
                if stop.is_set():
                    break
            if any(t.done() for t in tasks) and poll > FALLBACK_POLL:
                log.warning("watch %s: file watcher stopped; polling every %.1fs",
                            source.location, FALLBACK_POLL)
                poll = FALLBACK_POLL
            await wait_any(stop, wake, nudge, timeout=poll)
            fetch_due = source.is_remote
    finally:
        done.set()
        if scheduler is not None:
            scheduler.shutdown(wait=False)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _settled(source: GitSource, head: str, wake: asyncio.Event, stop: asyncio.Event,
                   settle: float) -> str:
    """The tip once it has stayed put for ``settle`` seconds (or :data:`MAX_HOLD` after
    ``head`` came): each batch of file events re-reads it, and a new tip starts the wait
    again. Events that move no head (notes, the status branch) do not."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + MAX_HOLD
    still_since = loop.time()
    held = 0
    while not stop.is_set():
        left = min(still_since + settle, give_up) - loop.time()
        if left <= 0:
            break
        wake.clear()
        await wait_any(stop, wake, timeout=left)
        if wake.is_set():
            newer = await _head(source)
            if newer is not None and newer != head:
                head, still_since, held = newer, loop.time(), held + 1
    if held:
        log.info("watch %s: burst: %d newer head(s) came while held; following %s",
                 source.location, held, head[:12])
    return head


def commits_between(source: GitSource, old: str, new: str, *, limit: int) -> list[str]:
    """The commits ``new`` brought that ``old`` had not, ``new`` itself excluded, newest
    first, at most ``limit``: the ones a watcher that saw ``old`` then ``new`` skipped.
    Empty when git cannot tell (``old`` gone after a force-push and a gc)."""
    try:
        out = run_git("rev-list", f"--max-count={limit + 1}", new, f"^{old}",
                      git_dir=source.git_dir)
    except GitCommandError as exc:
        log.debug("watch %s: commits between %s and %s: %s", source.location, old[:12],
                  new[:12], exc)
        return []
    return [sha for sha in out.split() if sha != new][:limit]


async def _fetch(source: GitSource) -> None:
    try:
        await asyncio.to_thread(source.fetch)
    except FetchError as exc:
        h = source.health
        log.warning("watch %s: %s; retrying at the next tick (failure %d in a row)",
                    h.location, exc.message, h.failures)
        raise


async def _head(source: GitSource) -> str | None:
    try:
        return await asyncio.to_thread(source.head)
    except NoHeadError as exc:
        log.debug("watch %s: %s", source.location, exc.message)
        return None


def watch_refs(git_dir: Path, wake: asyncio.Event, done: asyncio.Event
               ) -> list[asyncio.Task[None]]:
    """Tasks that set ``wake`` whenever a ref of the repository at ``git_dir`` may have
    moved (a file under ``refs/``, or ``packed-refs``), until ``done``; the caller awaits
    or cancels them."""
    return [asyncio.create_task(_watch_files(git_dir / "refs", None, wake, done),
                                name="watch-refs"),
            asyncio.create_task(_watch_files(git_dir, PACKED, wake, done),
                                name="watch-packed-refs")]


async def _watch_files(path: Path, names: frozenset[str] | None, wake: asyncio.Event,
                       done: asyncio.Event) -> None:
    """Set ``wake`` on every batch of changes under ``path`` until ``done``: the whole tree
    when ``names`` is None, else only the entries of ``path`` itself with those names."""
    def keep(_change: watchfiles.Change, changed: str) -> bool:
        return names is None or Path(changed).name in names

    try:
        async for _changes in watchfiles.awatch(
            path, watch_filter=keep, stop_event=done, recursive=names is None,
            debounce=DEBOUNCE_MS, step=STEP_MS,
        ):
            wake.set()
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # inotify limits, vanished directory: fall back to polling
        log.warning("watching %s failed: %s", path, exc)
