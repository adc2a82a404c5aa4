"""A host's Prometheus metrics (``lattice-host --metrics-addr HOST:PORT``).

What runs is read at scrape time from the host's state by :class:`HostCollector` (nothing
updates it on the side); actor requests are counted and timed where the WebAssembly
runtime serves them (:func:`timed_call`, around each call into a local instance, whether
it came over lattice RPC or from a provider on this host). The port also answers
``/healthz`` and ``/readyz`` (ready once connected to NATS): :mod:`lattice.metricserver`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Iterator
from typing import TYPE_CHECKING, TypeVar

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from lattice.logsetup import log_context
from lattice.metricserver import MetricsServer

if TYPE_CHECKING:
    from hostagent.host import Host

T = TypeVar("T")

REQUESTS = Counter("vinculum_host_actor_requests_total",
                   "Calls into this host's actor instances, by actor and result (ok, error).",
                   ["actor", "result"])
REQUEST_SECONDS = Histogram(
    "vinculum_host_actor_request_duration_seconds",
    "Duration of one call into an actor instance of this host.", ["actor"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5))


async def timed_call(actor_id: str, work: Awaitable[T]) -> T:
    """Await one call into actor ``actor_id``, counting it and timing it; what it logs
    (the actor's own lines, its providers') names the actor as its entity."""
    started, result = time.perf_counter(), "error"
    try:
        with log_context(entity=actor_id):
            out = await work
        result = "ok"
        return out
    finally:
        REQUESTS.labels(actor_id, result).inc()
        REQUEST_SECONDS.labels(actor_id).observe(time.perf_counter() - started)


class HostCollector:
    """What the host runs, read from its state on every scrape."""

    def __init__(self, host: Host) -> None:
        self.host = host

    def collect(self) -> Iterator[Metric]:
        state = self.host.state
        per_actor = GaugeMetricFamily("vinculum_host_actor_instances",
                                      "Actor instances running on this host, by actor.",
                                      labels=["actor"])
        counts: dict[str, int] = {}
        for a in state.actors.values():
            counts[a.actor_id] = counts.get(a.actor_id, 0) + 1
        for actor, n in sorted(counts.items()):
            per_actor.add_metric([actor], n)
        yield per_actor
        yield GaugeMetricFamily("vinculum_host_actors", "Actor instances running.",
                                value=len(state.actors))
        yield GaugeMetricFamily("vinculum_host_providers", "Providers running.",
                                value=len(state.providers))
        yield GaugeMetricFamily("vinculum_host_bindings", "Bindings held.",
                                value=len(state.bindings))


async def serve(host: Host, addr: tuple[str, int]) -> MetricsServer:
    """Start the host's metrics port; the caller closes it."""
    server = MetricsServer(*addr, collectors=[HostCollector(host)],
                           ready=lambda: None if host.nc.is_connected else "not connected")
    await server.start()
    return server
