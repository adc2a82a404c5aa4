"""The metrics port of a process: Prometheus text on ``/metrics``, ``/healthz``, ``/readyz``.

Both the agent (:mod:`reconciler.metrics`) and a host (:mod:`hostagent.metrics`) serve
their metrics this way, on the ``HOST:PORT`` of their ``--metrics-addr`` option
(:data:`ADDRESS`). The server is aiohttp's, on the process's own event loop, so a scrape
reads the process's state between two of its steps without a lock; what is scraped comes
from the module-level metrics (prometheus_client's default registry) and from collectors
given by the process that read its state at scrape time.

``/healthz`` answers 200 while the process runs; ``/readyz`` answers 200 when the
``ready`` callable says so, else 503 with its reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

import click
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    _AddrParam = click.ParamType[tuple[str, int]]
else:  # click < 8.2 has no generic ParamType
    _AddrParam = click.ParamType

#: what ``/readyz`` asks: None when ready, else why not
Readiness = Callable[[], str | None]


class Address(_AddrParam):
    """``HOST:PORT`` (``:9090`` listens on every interface; port 0 picks a free one)."""

    name = "HOST:PORT"

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> tuple[str, int]:
        if isinstance(value, tuple):
            return value
        host, sep, port = str(value).rpartition(":")
        if not sep or not port.isdigit() or int(port) > 65535:
            self.fail(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:9090)", param, ctx)
        return host.strip("[]") or "0.0.0.0", int(port)


ADDRESS = Address()


class _Scrape:
    """The default registry and the process's own collectors, as one registry."""

    def __init__(self, collectors: Iterable[Collector]) -> None:
        self.collectors = list(collectors)

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
        for c in self.collectors:
            yield from c.collect()


class MetricsServer:
    """An aiohttp server of ``/metrics``, ``/healthz`` and ``/readyz``; ``start``, then
    ``url`` is where it listens, ``close`` when done."""

    def __init__(self, host: str, port: int, *, collectors: Iterable[Collector] = (),
                 ready: Readiness = lambda: None) -> None:
        self.host, self.port = host, port
        self.scrape = _Scrape(collectors)
        self.ready = ready
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server  # the port the kernel chose when asked for 0
        if server is not None and getattr(server, "sockets", None):
            self.port = int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]

    async def close(self) -> None:
        await self._runner.cleanup()

    async def _metrics(self, _req: web.Request) -> web.Response:
        body = generate_latest(self.scrape)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _req: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, _req: web.Request) -> web.Response:
        why = self.ready()
        if why is None:
            return web.Response(text="ready\n")
        return web.Response(status=503, text=f"not ready: {why}\n")
