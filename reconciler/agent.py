"""The vinculum's main loop: desired state from git, observed state from the lattice.

It wires the parts together and owns no logic of its own beyond *when* to reconcile:

* a new head of the watched branch (:func:`gitsync.watch.watch_heads`) is evaluated (under
  ``--verify-commits``, its signature first: :mod:`gitsync.verify`); a valid one becomes
  the desired state, an invalid or untrusted one is noted ``Invalid`` with its reason and
  the last valid desired state stays in force; in a burst only the newest head is
  followed, and what it supersedes is noted so (:mod:`reconciler.follow`);
* lattice events update :class:`~reconciler.observed.ObservedState`; a host joining or
  leaving, or an owned entity stopping, wakes the loop (self-healing);
* a periodic full resync (APScheduler) re-pings the lattice and corrects drift;
* only the holder of the :class:`~reconciler.lease.Lease` acts and writes status to git.

Each reconcile is ``plan`` (pure) → ``Executor.execute`` → ``assess`` (pure) → status
written as a note on the revision and files on the status branch (``try/finally``: status
is written on every exit path; a pass that raises reports ``Degraded`` with the error).
Errors decide when a failed pass runs again: a :class:`~lattice.errors.TransientError`
after the delay it carries, anything else (logged with its traceback) after the loop's
backoff (:data:`PASS_RETRY`), both as the loop's wait, never a bare sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from functools import partial

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from nats.aio.client import Client
from nats.aio.msg import Msg

from gitsync.source import GitSource
from gitsync.status import StatusWriter
from gitsync.statusformat import without_clock
from gitsync.verify import CommitVerifier
from gitsync.watch import watch_heads
from lattice.aio import wait_any
from lattice.backoff import Backoff
from lattice.errors import TransientError
from lattice.logsetup import log_context, new_trace
from lattice.manifests import DesiredState
from lattice.natsutil import connect
from lattice.protocol import ActorEvent, EventType, Subjects, decode_event, utcnow
from lattice.status import Phase, StatusReport
from reconciler import alerts, discovery, webhook
from reconciler.actions import Action
from reconciler.config import AgentConfig
from reconciler.crashes import CrashTracker
from reconciler.errors import Failure
from reconciler.executor import Executor
from reconciler.follow import SETTLE, Follow
from reconciler.lease import Lease
from reconciler.lease_thread import LeaseThread
from reconciler.liveness import Liveness, expire_loop
from reconciler.matching import Matcher
from reconciler.metrics import timed_pass
from reconciler.observed import Change, ObservedState
from reconciler.pass_report import AGENT_VERSION, PassView, make_report, report_inputs
from reconciler.planner import plan
from reconciler.report import ReportInputs, carried_over, source_condition
from reconciler.revision import Revision, evaluated, revision_note
from reconciler.suspend import acting_on

log = logging.getLogger(__name__)


#: A reconcile pass that raised runs again after 0.2 s, 0.4 s ... up to 30 s (bounded),
#: unless its error carries its own delay.
PASS_RETRY = Backoff(base=0.2, max=30.0, jitter=0.5)
#: The key under which a failed pass's error shows in status (among the executor's
#: failures; the next pass forgets it, as it is no action's key).
PASS_FAILED = "reconcile-pass"


class Agent:
    """One vinculum process. ``await Agent(config).run(stop)`` until ``stop`` is set."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.subjects = Subjects(config.lattice)
        self.observed = ObservedState()
        self.matcher = Matcher()  # the matching's indexes, kept for the agent's life
        self.desired: DesiredState | None = None
        self.applied: Revision | None = None  # last valid revision, in force
        self.refused: Revision | None = None  # newest invalid revision, if newer
        self.follow = Follow()  # the heads seen, and the Superseded notes owed
        self.wake = asyncio.Event()
        self.nudge = asyncio.Event()
        self.resync_due = False
        self.rejoined = False  # a host (re)joined: the next ping hears every host, once
        self.settle = discovery.JoinSettle()  # the others coming back with it are heard
        self.evaluating = False  # a revision is being evaluated
        self.passed: Revision | None = None  # the revision of the last pass begun
        self.reconciles = 0
        self.nc: Client | None = None
        self.executor: Executor | None = None
        self.lease: Lease | LeaseThread | None = None
        self.source: GitSource | None = None
        self.verifier: CommitVerifier | None = None
        self.writer: StatusWriter | None = None
        self.last_report: StatusReport | None = None
        self.crashes = CrashTracker()
        self.alerts = alerts.Alerts(config.alerts)  # phase changes out (--alert-url)
        self._published: StatusReport | None = None  # last report handed to the writer
        self._reported: ReportInputs | None = None  # what the last report was made of
        self._seeded = False  # last_report holds the status branch's times (see _seed)

    # ------------------------------------------------------------------ lifecycle
    async def run(self, stop: asyncio.Event) -> None:
        cfg = self.config
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        if cfg.verify_commits is not None:  # a bad policy stops the agent here, not later
            self.verifier = CommitVerifier(cfg.verify_commits, data_dir=cfg.data_dir / "verify")
            await asyncio.to_thread(self.verifier.prepare)
        self.source = await asyncio.to_thread(
            GitSource.open, cfg.repo, branch=cfg.branch, path=cfg.path, data_dir=cfg.data_dir)
        self.writer = StatusWriter(self.source)
        hooks = await webhook.start(cfg.webhook, self.source.branch, self.nudge)
        self.nc = nc = await connect(cfg.nats, on_reconnect=self._resync_soon)
        self.executor = Executor(nc, self.subjects, self.observed, bid_timeout=cfg.bid_timeout,
                                 rebalance_interval=cfg.rebalance_interval)
        self.lease = lease = LeaseThread(cfg.nats, self.subjects, holder=cfg.holder,
                                         ttl=cfg.lease_ttl)  # its own thread: never starved
        liveness = Liveness(cfg, on_gone=self._host_gone)  # before the ping: no gap
        await liveness.start()
        await nc.subscribe(self.subjects.events, cb=self._on_event)
        await nc.subscribe(self.subjects.nudge, cb=self._on_nudge)
        await self._ping(replace=True)
        await lease.start()
        scheduler = AsyncIOScheduler()
        scheduler.add_job(self._resync_soon, "interval", seconds=cfg.resync,
                          id="resync", max_instances=1, coalesce=True)
        scheduler.start()
        tasks = [asyncio.create_task(self._watch(stop), name="watch"),
                 asyncio.create_task(expire_loop(self.observed.expire, self.wake.set, stop),
                                     name="expire"),
                 asyncio.create_task(self._lease_watch(stop), name="lease-watch"),
                 asyncio.create_task(liveness.run(stop), name="liveness"),
                 *hooks, asyncio.create_task(self.alerts.run(), name="alerts")]
        log.info("agent up: repo=%s branch=%s lattice=%s holder=%s",
                 cfg.repo, self.source.branch, cfg.lattice, lease.holder)
        try:
            await self._loop(stop)
        finally:
            scheduler.shutdown(wait=False)
            stop.set()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self.writer is not None:  # close flushes, while the lease is still ours
                if not lease.is_leader:
                    self.writer.discard()
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self.writer.close)
            await lease.stop()  # the lease outlives the last status write
            with contextlib.suppress(Exception):
                await nc.drain()
            log.info("agent stopped")

    async def _resync_soon(self) -> None:
        """Reconnect or resync timer: ping first (a coroutine: it runs on the loop)."""
        self.resync_due = True
        self.wake.set()

    # ------------------------------------------------------------------ inputs
    async def _on_event(self, msg: Msg) -> None:
        ev = decode_event(msg.data, msg.subject)
        if ev is None:
            return
        data = ev.typed_data()
        change = self.observed.apply_event(ev, data)
        if isinstance(data, ActorEvent) and ev.event_type is EventType.ACTOR_STOPPED:
            key = self.crashes.record(data)
            if key is not None and self.executor is not None:
                delay = self.crashes.backoff(key)
                log.warning("actor %s replica %s on host %s %s; restart in %.0fs",
                            data.actor_id[:12], key.rsplit("/", 1)[-1], data.host_id[:12],
                            data.reason, delay)
                self.executor.hold(key, delay)
        if change is Change.HOST_JOINED:  # others may be coming back with it: hear them
            self.rejoined = self.resync_due = True  # before placing
            self.settle.joined()
        if change in (Change.HOST_JOINED, Change.HOST_CHANGED) and self.executor is not None:
            self.executor.hosts_changed()
        if change is not Change.NONE:
            self.wake.set()

    def _host_gone(self, host_id: str) -> None:
        """Its connection closed for good: drop it now (its flights go on the next prune)."""
        if self.observed.lost(host_id) is Change.HOST_LEFT:
            self.wake.set()

    async def _on_nudge(self, msg: Msg) -> None:
        log.info("sync nudge received")
        self.nudge.set()
        if msg.reply and self.nc is not None:  # a request (`latticectl reconcile`): answer
            await self.nc.publish(msg.reply, json.dumps(self.about()).encode())

    def about(self) -> dict[str, object]:
        """Its answer to a nudge sent as a request: version, leader?, revision in force."""
        return {"agent": "vinculum", "version": AGENT_VERSION,
                "leader": bool(self.lease and self.lease.is_leader),
                "applied": self.applied.sha if self.applied else None}

    async def _ping(self, *, replace: bool) -> None:
        """Every host's inventory (:func:`.discovery.ping`; full after a host (re)joined)."""
        assert self.nc is not None
        full, self.rejoined = self.rejoined, False
        if await discovery.ping(self.nc, self.subjects, self.observed, replace=replace,
                                full=full) and self.executor is not None:
            self.executor.hosts_changed()

    async def _watch(self, stop: asyncio.Event) -> None:
        assert self.source is not None
        async for sha in watch_heads(self.source, interval=self.config.interval, stop=stop,
                                     nudge=self.nudge, on_health=lambda _h: self.wake.set(),
                                     settle=SETTLE, busy=lambda: Follow.busy(self.applied)):
            with log_context(revision=sha):  # to_thread copies it: gitsync's lines too
                await self._evaluate(sha)

    async def _evaluate(self, sha: str) -> None:
        assert self.source is not None
        self.evaluating = True
        try:
            ev = await asyncio.to_thread(self.source.evaluate, sha, verify=self.verifier)
        finally:
            self.evaluating = False
        rev = evaluated(sha, ev)
        self.follow.seen(sha)
        if ev.desired is None:
            self.refused = rev
            log.warning("revision %s refused (%s): %s; %s stays in force", sha[:8], ev.reason,
                        ev.errors[0] if len(ev.errors) == 1 else f"{len(ev.errors)} errors",
                        self.applied.sha[:8] if self.applied else "nothing")
            await self._write_note(rev, Phase.INVALID, "; ".join(ev.errors[:3]))
        else:
            self.applied = self.follow.replaced(self.applied, rev)  # the old one: Superseded
            self.refused = None
            self.desired = ev.desired
            log.info("revision %s: %d deployments, %d binding sets", sha[:8],
                     len(ev.desired.deployments), len(ev.desired.bindingsets))
        self.wake.set()

    async def _lease_watch(self, stop: asyncio.Event) -> None:
        assert self.lease is not None
        while not stop.is_set():
            await self.lease.changed.wait()
            self.lease.changed.clear()
            self._seeded = False  # a leader reads the branch back before it writes
            if self.lease.is_leader:  # a new leader starts from a fresh view
                self.resync_due = True
                self.wake.set()
            elif self.writer is not None:  # what it queued as leader is not its to write
                self.writer.discard()

    # ------------------------------------------------------------------ reconciling
    async def _loop(self, stop: asyncio.Event) -> None:
        assert self.executor is not None
        failed = 0  # passes in a row that raised
        retry_in: float | None = None  # when the last of them runs again
        while not stop.is_set():
            await self.follow.note_superseded(  # owed notes, while there is nothing to do
                self.source, self._write_note, until=(self.wake, stop))
            timeout = min((t for t in (self.executor.next_retry_in(), retry_in)
                           if t is not None), default=None)
            await wait_any(self.wake, stop, timeout=timeout)
            if stop.is_set():
                return
            self.wake.clear()
            retry_in = None
            if self.lease is None or not self.lease.is_leader or self.desired is None:
                continue
            retry_in = self.settle.hold()  # placing waits for the hosts coming back too
            if self.settle.ended():  # and hears every host once more before it places
                self.rejoined = self.resync_due = True
            try:
                if self.resync_due and (self.rejoined or not (  # a join's ping goes at once;
                        self.evaluating or self.executor.busy()  # a resync's waits for these,
                        or self.applied is not self.passed)):  # and a new revision's pass
                    self.resync_due = False
                    await self._ping(replace=False)
                    # refusals' inputs may change unwatched (trust policy, registry): retry
                    self.executor.retry_refused()
                if not self._seeded and not await self._seed():
                    continue  # the watch evaluates the branch's head, then wakes us
                with log_context(revision=self.applied.sha if self.applied else None,
                                 trace=new_trace()):
                    await timed_pass(self.reconcile_once())
            except TransientError as exc:
                failed += 1
                retry_in = (PASS_RETRY.jittered(exc.delay) if exc.delay is not None
                            else PASS_RETRY.delay(failed - 1))
                log.warning("reconcile failed (%s); retry in %.1fs", exc.message, retry_in)
            except Exception:
                failed += 1
                retry_in = PASS_RETRY.delay(failed - 1)
                log.exception("reconcile failed; retry in %.1fs", retry_in)
            else:
                failed = 0

    async def _seed(self) -> bool:
        """Before a leader's first pass: False (the watch nudged) unless the branch's head
        was evaluated (:meth:`.Follow.caught_up`); else the status branch is read back, so
        its ``created`` and ``last_transition`` times carry over a restart or hand-over."""
        if self.source is not None and not await self.follow.caught_up(self.source):
            self.nudge.set()
            return False
        if self.writer is not None:
            stored = await asyncio.to_thread(self.writer.read_back)
            self.last_report = carried_over(self.last_report, stored)
            self._published = None  # the branch may hold another leader's report
        self._seeded = True
        return True

    async def reconcile_once(self) -> Phase:
        """One pass: plan, execute, assess, write status. Returns the phase. Status is
        written from one ``finally``, on every exit: a pass that raises reports
        ``Degraded`` with the error among the executor's failures, then re-raises. A newer
        valid revision ends the pass between the executor's phases; its own pass reports."""
        assert self.executor is not None and self.desired is not None
        assert self.applied is not None
        self.reconciles += 1
        ex, desired, rev = self.executor, self.desired, self.applied
        self.passed = rev
        phase = Phase.DEGRADED  # unless the pass gets to its verdict
        try:
            planned = await self._plan(desired)
            actions = self.settle.holding_back(planned)  # starts wait while hosts come back
            ex.forget(a.key for a in actions)
            if actions:
                log.info("revision %s: %d actions planned", self.applied.sha[:8], len(actions))
                # the gap before it closes (`get -w` shows 1/2 before 2/2), assessed while
                # the commands go out; no note yet; not for retries only (no Degraded flap)
                progress = (asyncio.create_task(self._report(desired, Phase.PROGRESSING,
                                                             note=False))
                            if rev.phase is not Phase.DEGRADED and ex.runnable(actions) else None)
                try:
                    await ex.execute(actions, superseded=lambda: (
                        "a newer revision is in force" if self.applied is not rev
                        else None if self.lease is not None and self.lease.is_leader
                        else "lease lost"))
                finally:
                    if progress is not None:  # before any later report, and the matcher's
                        await progress  # next use (one pass at a time)
            if self.applied is not rev:
                return Phase.PROGRESSING  # superseded: the next pass (woken) takes over
            remaining = await self._plan(desired) if planned else []
            if not remaining:
                phase = Phase.SYNCED
            elif ex.unplaced or ex.failures:
                phase = Phase.DEGRADED
            else:
                phase = Phase.PROGRESSING
            return phase
        except Exception as exc:
            ex.failures[PASS_FAILED] = Failure(f"reconcile failed: {type(exc).__name__}: {exc}")
            raise
        finally:
            if self.applied is rev:
                await self._report(desired, phase)

    async def _plan(self, desired: DesiredState) -> list[Action]:
        """``plan`` on a worker thread, on immutable inputs (a snapshot, a frozen desired
        state; the matcher is used by one pass at a time): planning 10,000 entities must
        not stall the loop (the lease's renewals, the lattice's events)."""
        return await asyncio.to_thread(
            partial(plan, *acting_on(desired, self.observed.snapshot()), matcher=self.matcher))

    async def _report(self, desired: DesiredState, phase: Phase, *, note: bool = True) -> None:
        """Assess and publish the status branch; with ``note``, also (re)write the note on
        the applied revision when its phase or counts changed."""
        assert self.executor is not None and self.applied is not None
        rev = self.applied
        view = PassView(
            desired=desired, snap=self.observed.snapshot(), phase=phase, note=note, rev=rev,
            refused=self.refused, leader=self.lease.is_leader if self.lease else None,
            unplaced=dict(self.executor.unplaced), failures=dict(self.executor.failures),
            crashes=self.crashes.loops(), branch=self.source.branch if self.source else "",
            source=(source_condition(self.source.health, self.last_report)
                    if self.source is not None else None))  # SourceReady: moves with state
        inputs = report_inputs(view)
        if inputs.same_as(self._reported):
            return  # same inputs, same report (clocks aside): nothing to assess or write
        self._reported = inputs
        report, out = await asyncio.to_thread(  # off the loop, as _plan
            partial(make_report, view, previous=self.last_report, matcher=self.matcher,
                    now=utcnow()))
        if note and (rev.phase, rev.counts) != (out.phase, out.counts):
            rev.counts = out.counts
            rev.errors = out.problems
            await self._write_note(rev, out.phase, out.message)
        self.last_report = report
        if self.writer is None or self.lease is None or not self.lease.is_leader:
            return  # only the leader writes status (it may have lost the lease mid-pass)
        stable = await asyncio.to_thread(without_clock, report)
        if stable == self._published:  # only the clock moved: nothing to serialise
            return
        self._published = stable
        await asyncio.to_thread(partial(self.writer.publish, report, unclocked=stable))

    async def _write_note(self, rev: Revision, phase: Phase, message: str) -> None:
        if self.writer is None or self.lease is None or not self.lease.is_leader:
            return
        rev.phase = phase
        log.info("revision %s: noted %s", rev.sha[:8], phase)
        self.alerts.noted(rev, phase, message)
        note = revision_note(rev, phase, message,
                             self.source.health if self.source is not None else None)
        await asyncio.to_thread(self.writer.note, rev.sha, note)

