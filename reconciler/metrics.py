"""The agent's Prometheus metrics: declared here once, recorded at the edges.

Three kinds of numbers, all named ``vinculum_<what>_<unit>``:

* **Read at scrape time** by :class:`AgentCollector` from what the agent already keeps
  (its last status report, the lease, the observed hosts, the source's health, the status
  writer's push errors): nothing in the loop updates them, so they cannot drift from
  ``latticectl status``.
* **Timed where the work happens**: a reconcile pass (:func:`timed_pass`, around
  ``Agent.reconcile_once`` in the loop), an auction (:func:`auction_done`, in
  :mod:`reconciler.auctions`).
* **Counted where commands go out**: :func:`counted` wraps the executor's dispatch of one
  action and counts it by command kind and result.

:func:`serve` starts the ``--metrics-addr`` port (:class:`lattice.metricserver.MetricsServer`)
with ``/readyz`` answered by :func:`readiness`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from prometheus_client import Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric

from lattice.logsetup import add_context
from lattice.metricserver import MetricsServer
from lattice.status import Phase
from reconciler import actions as A
from reconciler.alerts import OUTCOMES, where
from reconciler.errors import CommandRefused, CommandUnanswered, Unplaceable

if TYPE_CHECKING:
    from reconciler.agent import Agent

T = TypeVar("T")
log = logging.getLogger(__name__)

RECONCILE_SECONDS = Histogram(
    "vinculum_reconcile_duration_seconds",
    "Duration of one reconcile pass (plan, execute, assess, status).",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
AUCTION_SECONDS = Histogram(
    "vinculum_auction_duration_seconds",
    "Duration of one auction, from the request to the last reply read.", ["kind"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2))
AUCTION_BIDS = Histogram(
    "vinculum_auction_bids", "Bids received in one auction (declines not counted).",
    ["kind"], buckets=(0, 1, 2, 3, 5, 10, 25, 100, 1000))
COMMANDS = Counter(
    "vinculum_commands_total",
    "Actions dispatched to hosts, by command kind and result "
    "(ok, refused, unanswered, unplaced, error).", ["kind", "result"])

#: command kind of each action type (the host command it sends)
KINDS: dict[type, str] = {
    A.StartActor: "start_actor", A.StopActor: "stop_actor",
    A.StartProvider: "start_provider", A.StopProvider: "stop_provider",
    A.PutBinding: "put_binding", A.DeleteBinding: "delete_binding",
}

_last_pass: list[float] = []  # wall-clock end of the last reconcile pass that finished


async def timed_pass(work: Awaitable[T]) -> T:
    """Await one reconcile pass, observing its duration (also when it raises)."""
    started = time.perf_counter()
    try:
        return await work
    finally:
        RECONCILE_SECONDS.observe(time.perf_counter() - started)
        _last_pass[:] = [time.time()]


async def counted(act: object, work: Awaitable[T]) -> T:
    """Await the dispatch of ``act``, counting it under its kind and result."""
    kind = KINDS.get(type(act), type(act).__name__)
    result = "error"
    try:
        out = await work
        result = "ok"
        return out
    except CommandRefused:
        result = "refused"
        raise
    except CommandUnanswered:
        result = "unanswered"
        raise
    except Unplaceable:
        result = "unplaced"
        raise
    finally:
        COMMANDS.labels(kind, result).inc()


def auction_done(kind: str, started: float, bids: int) -> None:
    """Record an auction that began at ``started`` (``time.perf_counter``) with ``bids``."""
    AUCTION_SECONDS.labels(kind).observe(time.perf_counter() - started)
    AUCTION_BIDS.labels(kind).observe(bids)


class AgentCollector:
    """The agent's state as metrics, read at scrape time (prometheus_client calls
    :meth:`collect` on every scrape, on the agent's event loop)."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def collect(self) -> Iterator[Metric]:
        agent = self.agent
        lease = agent.lease
        yield _gauge("vinculum_leader", "1 when this agent holds the leader lease.",
                     1 if lease is not None and lease.is_leader else 0)
        yield _gauge("vinculum_hosts", "Hosts up: answering pings or heartbeating.",
                     len(agent.observed))
        if _last_pass:
            yield _gauge("vinculum_last_reconcile_timestamp_seconds",
                         "When the last reconcile pass ended (Unix time).", _last_pass[0])
            yield _gauge("vinculum_seconds_since_last_reconcile",
                         "Seconds since the last reconcile pass ended.",
                         time.time() - _last_pass[0])
        source = agent.source
        if source is not None:
            health = source.health
            yield _gauge("vinculum_git_fetch_failures",
                         "Failed fetches of the repository in a row (0 when healthy).",
                         health.failures)
        if agent.writer is not None:
            yield _gauge("vinculum_git_push_errors",
                         "Status refs whose last push failed (0 when all pushed).",
                         len(agent.writer.push_errors))
        yield from _report(agent)
        yield from _alerts(agent)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _report(agent: Agent) -> Iterator[Metric]:
    """Per deployment: its phase, desired and ready counts and revision, from the last
    status report (the one ``latticectl status`` reads)."""
    report = agent.last_report
    phase = GaugeMetricFamily("vinculum_deployment_phase",
                              "1 for the deployment's phase, 0 for the others.",
                              labels=["deployment", "phase"])
    desired = GaugeMetricFamily("vinculum_deployment_desired",
                                "Instances the deployment asks for.",
                                labels=["deployment", "kind"])
    ready = GaugeMetricFamily("vinculum_deployment_ready",
                              "Instances of the deployment running where they should.",
                              labels=["deployment", "kind"])
    revision = InfoMetricFamily("vinculum_deployment_revision",
                                "The revision the deployment's status was assessed at.",
                                labels=["deployment"])
    applied = InfoMetricFamily("vinculum_applied_revision",
                               "The revision in force (the last valid one).")
    deployments: dict[str, Any] = dict(report.deployments) if report is not None else {}
    for name, dep in sorted(deployments.items()):
        for p in Phase:
            phase.add_metric([name, p.value], 1 if dep.phase is p else 0)
        for kind, count in (("actors", dep.actors), ("providers", dep.providers)):
            desired.add_metric([name, kind], count.desired)
            ready.add_metric([name, kind], count.ready)
        revision.add_metric([name], {"revision": dep.revision})
    if report is not None and report.summary.applied_revision:
        applied.add_metric([], {"revision": report.summary.applied_revision})
    yield from (phase, desired, ready, revision, applied)


#: the help of each alert counter (:data:`reconciler.alerts.OUTCOMES`)
ALERT_HELP = {
    "sent": "Alert events delivered (the endpoint answered 2xx).",
    "failed": "Alert events given up on (every attempt failed, or the endpoint answered 4xx).",
    "dropped": "Alert events dropped unsent: their queue was full.",
}


def _alerts(agent: Agent) -> Iterator[Metric]:
    """What became of the alert events, per destination (``--alert-url``'s scheme, host
    and port: its path may be a secret; URLs on one host and port add up), and how many
    wait. Nothing when no alert URL is configured."""
    alerts = getattr(agent, "alerts", None)
    if alerts is None or not alerts.counts:
        return
    totals: dict[str, dict[str, int]] = {}
    queued: dict[str, int] = {}
    for url, counts in alerts.counts.items():
        total = totals.setdefault(where(url), dict.fromkeys(OUTCOMES, 0))
        for outcome in OUTCOMES:
            total[outcome] += counts[outcome]
        queue = alerts.queues.get(url)
        queued[where(url)] = queued.get(where(url), 0) + (queue.qsize() if queue else 0)
    for outcome in OUTCOMES:
        family = CounterMetricFamily(f"vinculum_alerts_{outcome}", ALERT_HELP[outcome],
                                     labels=["destination"])
        for dest, total in sorted(totals.items()):
            family.add_metric([dest], total[outcome])
        yield family
    waiting = GaugeMetricFamily("vinculum_alerts_queued",
                                "Alert events waiting to be sent.", labels=["destination"])
    for dest, count in sorted(queued.items()):
        waiting.add_metric([dest], count)
    yield waiting


def readiness(agent: Agent) -> str | None:
    """Whether the agent is ready (None) or why not: a leader is ready; a follower is
    ready with a fresh view, i.e. connected to NATS (events and heartbeats keep its
    observed hosts current) with the head of its branch evaluated."""
    if agent.lease is not None and agent.lease.is_leader:
        return None
    if agent.nc is None or not agent.nc.is_connected:
        return "not connected to NATS"
    if agent.lease is None:
        return "starting"
    if agent.desired is None:
        return "no valid revision evaluated yet"
    return None


async def serve(agent: Agent, host: str, port: int) -> MetricsServer:
    """Start the agent's metrics port; the caller closes it."""
    server = MetricsServer(host, port, collectors=[AgentCollector(agent)],
                           ready=lambda: readiness(agent))
    await server.start()
    return server


async def run_operated(agent: Agent, stop: asyncio.Event) -> None:
    """Run ``agent`` until ``stop`` with its operations surface: the revision in force on
    every log record (``--log-format json`` shows it), and the metrics port when
    ``--metrics-addr`` asks for one."""
    forget = add_context(lambda: {"revision": agent.applied.sha if agent.applied else None})
    addr = agent.config.metrics_addr
    server = await serve(agent, *addr) if addr is not None else None
    if server is not None:
        log.info("metrics on %s", server.url)
    try:
        await agent.run(stop)
    finally:
        forget()
        if server is not None:
            await server.close()
