"""Alerts out: a phase change worth a page is POSTed to the configured URLs.

Modelled on Flux's notification-controller: when the note on the applied revision is
(re)written (:meth:`reconciler.agent.Agent._write_note`, the one place a revision's phase
and its entities' phases change) the agent hands the revision to :meth:`Alerts.noted`.
:func:`changes` compares it with what was last alerted -- per entity (``Deployment``,
``BindingSet``) and for the branch's revision (kind ``Revision``) -- and yields an
:class:`AlertEvent` when one becomes ``Degraded`` or ``Invalid``, or ``Synced`` after
being ``Degraded`` or ``Invalid`` (``Progressing`` in between does not count; a first
``Synced`` says nothing). Only the leader writes notes, so only the leader alerts; a new
leader starts with no memory.

Sending never blocks the reconcile: each URL has a bounded queue (the oldest event is
dropped, with a warning, when it is full) and a worker that POSTs the JSON body, signed
``X-Vinculum-Signature: sha256=<hex HMAC-SHA256 of the body>`` when an alert secret is
set, and retries a 5xx, a 429 or a network error with :data:`RETRY` (a bounded number of
attempts). The body is Flux's generic event flattened (``kind``, ``name``, ``revision``,
``phase``, ``previous_phase``, ``message``, ``time``, ``severity``) plus a ``text`` field,
which is what a Slack (or Mattermost, Rocket.Chat) incoming webhook renders. URLs are
logged by host only: an incoming-webhook URL is itself a secret.

What became of the events is counted per URL (:attr:`Alerts.counts`: ``sent``, ``failed``,
``dropped``); :mod:`reconciler.metrics` exports the counts as
``vinculum_alerts_{sent,failed,dropped}_total`` by destination (scheme, host and port), and
the events waiting as ``vinculum_alerts_queued``. Every log line about an event carries
its entity and revision (:func:`lattice.logsetup.log_context`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp

from lattice.backoff import Backoff
from lattice.logsetup import log_context
from lattice.protocol import utcnow
from lattice.status import Phase
from reconciler.report import Counts
from reconciler.webhook import sign

log = logging.getLogger(__name__)

#: an alert that failed is tried again after ~0.25 s, 0.5 s, 1 s, 2 s (5 attempts in all)
RETRY = Backoff(base=0.25, max=5.0, jitter=0.25)
#: phases that raise an alert, and those an entity is remembered in
ALERTING = frozenset({Phase.DEGRADED, Phase.INVALID})
REMEMBERED = ALERTING | {Phase.SYNCED}
#: the kind of the revision's own events (entities carry theirs: Deployment, BindingSet)
REVISION = "Revision"
#: what becomes of an event, per URL: delivered (a 2xx), given up on (attempts spent, or
#: a 4xx), dropped from a full queue
OUTCOMES = ("sent", "failed", "dropped")


@dataclass(frozen=True, kw_only=True)
class AlertConfig:
    """Where alerts go (``--alert-url``, repeatable) and how they are sent."""

    urls: tuple[str, ...] = ()
    secret: bytes = field(default=b"", repr=False)  #: ``--alert-secret-file``; never logged
    attempts: int = 5  #: per event and URL, the first included
    retry: Backoff = RETRY
    queue_size: int = 100  #: events waiting per URL; the oldest goes when full
    timeout: float = 10.0  #: per POST


#: the default: no alerts
NO_ALERTS = AlertConfig()


@dataclass(frozen=True, kw_only=True)
class AlertEvent:
    """One phase change of one entity (or of the revision)."""

    kind: str
    name: str
    revision: str
    phase: Phase
    previous_phase: Phase | None
    message: str
    time: datetime

    def body(self) -> bytes:
        """The JSON POSTed: the generic fields and Slack's ``text``. Pure."""
        bad = self.phase in ALERTING
        was = f" (was {self.previous_phase})" if self.previous_phase else ""
        text = (f"{':x:' if bad else ':white_check_mark:'} {self.kind} {self.name} is "
                f"{self.phase}{was} at revision {self.revision[:12]}"
                + (f": {self.message}" if self.message else ""))
        return json.dumps({
            "kind": self.kind, "name": self.name, "revision": self.revision,
            "phase": str(self.phase),
            "previous_phase": str(self.previous_phase) if self.previous_phase else None,
            "message": self.message, "time": self.time.isoformat(),
            "severity": "error" if bad else "info", "reporting_controller": "vinculum",
            "text": text,
        }).encode()


class NotedRevision(Protocol):
    """What :meth:`Alerts.noted` reads of a :class:`reconciler.revision.Revision`."""

    sha: str
    counts: Counts


def changes(last: Mapping[tuple[str, str], Phase],
            seen: Iterable[tuple[str, str, Phase, str]]
            ) -> list[tuple[str, str, Phase, Phase | None, str]]:
    """The alerts that ``seen`` (kind, name, phase, message) raises after ``last`` (the
    phase last remembered per kind and name): ``(kind, name, phase, previous, message)``.
    Pure; :meth:`Alerts.noted` consumes it and remembers."""
    out: list[tuple[str, str, Phase, Phase | None, str]] = []
    for kind, name, phase, message in seen:
        before = last.get((kind, name))
        if phase not in REMEMBERED or phase == before:
            continue
        if phase in ALERTING or before in ALERTING:
            out.append((kind, name, phase, before, message))
    return out


class Alerts:
    """The agent's alert sender: :meth:`noted` (synchronous, never blocks) queues,
    :meth:`run` sends until cancelled."""

    def __init__(self, config: AlertConfig) -> None:
        self.config = config
        self.last: dict[tuple[str, str], Phase] = {}
        self.queues = {url: asyncio.Queue[AlertEvent](max(1, config.queue_size))
                       for url in config.urls}
        #: per URL, how many events were sent, failed or dropped (:data:`OUTCOMES`)
        self.counts = {url: dict.fromkeys(OUTCOMES, 0) for url in config.urls}

    @property
    def dropped(self) -> int:
        """Events dropped from a full queue, all URLs together."""
        return sum(c["dropped"] for c in self.counts.values())

    @property
    def sent(self) -> int:
        """Events delivered (a 2xx answer), all URLs together."""
        return sum(c["sent"] for c in self.counts.values())

    @property
    def failed(self) -> int:
        """Events given up on (attempts spent, or a 4xx), all URLs together."""
        return sum(c["failed"] for c in self.counts.values())

    def noted(self, rev: NotedRevision, phase: Phase, message: str) -> None:
        """The note on ``rev`` now says ``phase``: queue the alerts this raises. A
        ``Superseded`` note is on a revision no longer in force: its counts are old news."""
        if phase is Phase.SUPERSEDED:
            return
        seen = [(REVISION, "", phase, message), *(
            (kind, name, p, f"{ready}/{desired} ready; {message}" if message
             else f"{ready}/{desired} ready") for kind, name, p, ready, desired in rev.counts)]
        now = utcnow()
        for kind, name, new, before, msg in changes(self.last, seen):
            event = AlertEvent(kind=kind, name=name or rev.sha[:12], revision=rev.sha,
                               phase=new, previous_phase=before, message=msg, time=now)
            with log_context(entity=f"{kind}/{event.name}", revision=rev.sha):
                log.info("alert: %s %s is %s (was %s)", kind, event.name, new, before or "-")
                for url, queue in self.queues.items():
                    if queue.full():
                        old = queue.get_nowait()
                        self.counts[url]["dropped"] += 1
                        log.warning("alerts to %s: queue full (%d), dropped the oldest (%s "
                                    "%s %s)", where(url), queue.maxsize, old.kind, old.name,
                                    old.phase)
                    queue.put_nowait(event)
        self.last.update({(k, n): p for k, n, p, _ in seen if p in REMEMBERED})

    async def run(self) -> None:
        """Send queued events to each URL until cancelled."""
        if not self.queues:
            return
        timeout = aiohttp.ClientTimeout(total=self.config.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            workers = [asyncio.create_task(self._worker(session, url, q), name="alerts")
                       for url, q in self.queues.items()]
            try:
                await asyncio.gather(*workers)
            finally:
                for w in workers:
                    w.cancel()
                await asyncio.gather(*workers, return_exceptions=True)

    async def _worker(self, session: aiohttp.ClientSession, url: str,
                      queue: asyncio.Queue[AlertEvent]) -> None:
        while True:
            event = await queue.get()
            with log_context(entity=f"{event.kind}/{event.name}", revision=event.revision):
                delivered = await self.deliver(session, url, event)
            self.counts[url]["sent" if delivered else "failed"] += 1

    async def deliver(self, session: aiohttp.ClientSession, url: str,
                      event: AlertEvent) -> bool:
        """POST ``event`` to ``url``, retried on a 5xx, a 429 or a network error at most
        ``attempts`` times in all; whether it was delivered."""
        cfg, body = self.config, event.body()
        headers = {"Content-Type": "application/json", "User-Agent": "vinculum-alerts"}
        if cfg.secret:
            headers["X-Vinculum-Signature"] = f"sha256={sign(cfg.secret, body)}"
        why = ""
        for attempt in range(max(1, cfg.attempts)):
            if attempt:
                await asyncio.sleep(cfg.retry.delay(attempt - 1))  # a retry's wait
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    if resp.status < 300:
                        return True
                    why = f"HTTP {resp.status}"
                    if resp.status < 500 and resp.status != 429:
                        break  # the endpoint refuses this event: retrying will not help
            except (aiohttp.ClientError, TimeoutError) as exc:
                why = f"{type(exc).__name__}: {exc}".rstrip(": ")
            log.info("alert %s %s to %s: attempt %d of %d failed (%s)", event.kind,
                     event.name, where(url), attempt + 1, cfg.attempts, why)
        log.warning("alert %s %s is %s: not delivered to %s (%s)", event.kind, event.name,
                    event.phase, where(url), why)
        return False


def where(url: str) -> str:
    """A URL as logged: scheme, host and port only (paths of incoming webhooks are
    secrets). Pure."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}" + (f":{parts.port}" if parts.port
                                                            else "")
