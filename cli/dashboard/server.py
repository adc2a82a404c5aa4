"""The dashboard's HTTP side: server-rendered pages, their live regions, an event stream.

Every page is whole without JavaScript (``curl /`` shows the deployments and their
phases). A page's live regions carry ``data-region`` and ``data-fragment``; the script
(``static/dashboard.js``) listens on ``/stream`` (server-sent events) and fetches again the
regions a change touched. Only GET and HEAD are routed: there is no way to change anything
from here. Requests whose ``Host`` is not the address the server was started on are
refused (a page elsewhere cannot reach it through DNS rebinding), and every response
forbids framing and scripts from anywhere but here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import Any

import jinja2
from aiohttp import web

from cli.dashboard import model
from cli.dashboard.picture import Picture
from cli.view import RepoView
from gitsync.errors import GitCommandError
from gitsync.gitcmd import run_git

#: Bytes of a diff a page shows; the rest is cut with a note.
DIFF_LIMIT = 256 * 1024
#: Event streams served at once (each is one open response).
MAX_STREAMS = 64
#: Seconds between keep-alive comments on an idle stream.
KEEPALIVE = 15.0
#: The label hosts are grouped by when the page does not say.
DEFAULT_GROUP = "zone"
_SHA = re.compile(r"^[0-9a-f]{7,40}$")
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,253}$")
_LABEL = re.compile(r"^[A-Za-z0-9._/-]{0,253}$")
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; "
                               "base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def templates() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("cli.dashboard", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.globals["phase_class"] = model.phase_class
    return env


class Dashboard:
    """The aiohttp application around one :class:`Picture`."""

    def __init__(self, picture: Picture, *, group_by: str = DEFAULT_GROUP,
                 allowed_hosts: frozenset[str] = frozenset()) -> None:
        self.picture = picture
        self.group_by = group_by
        self.allowed_hosts = allowed_hosts
        self.env = templates()
        self.streams = 0

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard])
        r = app.router
        r.add_get("/", self.overview)
        r.add_get("/lattice", self.lattice)
        r.add_get("/deployments/{name}", self.entity)
        r.add_get("/bindingsets/{name}", self.entity)
        r.add_get("/events", self.events)
        r.add_get("/diff/{spec}", self.diff)
        r.add_get("/fragment/{region}", self.fragment)
        r.add_get("/stream", self.stream)
        r.add_get("/healthz", self.healthz)
        static = resources.files("cli.dashboard") / "static"
        r.add_static("/static", str(static), append_version=False)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_shutdown(self, app: web.Application) -> None:
        await self.picture.stop()

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.allowed_hosts and request.host not in self.allowed_hosts:
            return web.Response(status=421, text="misdirected request: unknown Host\n")
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status != 404:
                raise
            response = self._page("missing.html", status=404, title="Not found",
                                  message=exc.text or "no such page")
        for key, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        return response

    # ------------------------------------------------------------------ rendering
    def _context(self, request: web.Request) -> dict[str, Any]:
        p = self.picture
        g = p.git
        now = p.now()
        report = g.report
        f = model.Filter.parse(request.query)
        return {
            "version": p.version,
            "source": model.source_view(report, branch=g.branch, head=g.head,
                                        head_subject=g.head_subject, evaluated=g.evaluated,
                                        signature=g.signature, now=now),
            "deployments": model.table(model.entity_rows(report.deployments, now)
                                       if report else [], f),
            "bindingsets": model.table(model.entity_rows(report.bindingsets, now)
                                       if report else [], f),
            "unmanaged": report.summary.unmanaged if report else [],
            "filter": f,
            "phases": model.SEVERITY,
            "nats_error": p.nats_error,
        }

    def _render(self, template: str, **values: Any) -> str:
        return self.env.get_template(template).render(**values)

    def _page(self, template: str, *, status: int = 200, **values: Any) -> web.Response:
        values.setdefault("version", self.picture.version)
        values.setdefault("page", "")
        return web.Response(text=self._render(template, **values), status=status,
                            content_type="text/html", charset="utf-8")

    def _group(self, request: web.Request) -> str:
        group = request.query.get("group", self.group_by)
        return group if _LABEL.match(group) else self.group_by

    def _lattice_values(self, group: str) -> dict[str, Any]:
        p = self.picture
        hosts = list(p.hosts.values())
        return {"groups": model.picture(hosts, group, p.now()), "group": group,
                "label_keys": sorted({*model.label_keys(hosts), group} - {""}),
                "nats_error": p.nats_error, "hosts_total": len(hosts),
                "hosts_gone": sum(1 for h in hosts if not h.answering)}

    async def _entity_values(self, kind: str, name: str) -> dict[str, Any] | None:
        report = self.picture.git.report
        if report is None or not _NAME.match(name):
            return None
        found = (report.deployments if kind == "deployment" else report.bindingsets).get(name)
        if found is None:
            return None
        history = await self.picture.in_git(
            lambda view: self.picture.history(view, kind, name))
        now = self.picture.now()
        return {"kind": kind, "e": found, "row": model.entity_row(found, now),
                "manifest": model.manifest_yaml(found),
                "placements": model.placement_rows(found.placements, now),
                "conditions": found.conditions, "history": model.with_previous(history),
                "now": now}

    # ------------------------------------------------------------------ pages
    async def overview(self, request: web.Request) -> web.Response:
        return self._page("overview.html", page="overview", **self._context(request))

    async def lattice(self, request: web.Request) -> web.Response:
        return self._page("lattice.html", page="lattice",
                          **self._lattice_values(self._group(request)))

    async def entity(self, request: web.Request) -> web.Response:
        kind = "deployment" if request.path.startswith("/deployments/") else "bindingset"
        name = request.match_info["name"]
        values = await self._entity_values(kind, name)
        if values is None:
            raise web.HTTPNotFound(text=f"no {kind} named {name!r} in the status")
        return self._page("entity.html", page=f"{kind}s", **values)

    async def events(self, request: web.Request) -> web.Response:
        return self._page("events.html", page="events", events=self._event_rows())

    def _event_rows(self) -> list[model.EventRow]:
        return [model.event_row(ev) for ev in list(self.picture.events)]

    async def diff(self, request: web.Request) -> web.Response:
        old, sep, new = request.match_info["spec"].partition("..")
        if not sep or not _SHA.match(old) or not _SHA.match(new):
            raise web.HTTPNotFound(text="a diff is /diff/OLD..NEW with two commit shas")

        def read(view: RepoView) -> str:
            return run_git("diff", "--no-color", "--no-ext-diff", "--stat", "--patch",
                           f"{old}^{{commit}}", f"{new}^{{commit}}", "--",
                           git_dir=view.git_dir)

        try:
            text = await self.picture.in_git(read)
        except GitCommandError:
            raise web.HTTPNotFound(text=f"no such revisions in the repository: {old}, {new}"
                                   ) from None
        cut = len(text) > DIFF_LIMIT
        return self._page("diff.html", page="diff", old=old, new=new,
                          diff=text[:DIFF_LIMIT], cut=cut)

    async def fragment(self, request: web.Request) -> web.Response:
        region = request.match_info["region"]
        if region in ("source", "deployments", "bindingsets"):
            html = self._render(f"_{region}.html", **self._context(request))
        elif region == "lattice":
            html = self._render("_lattice.html", **self._lattice_values(self._group(request)))
        elif region == "events":
            html = self._render("_events.html", events=self._event_rows())
        elif region == "entity":
            kind = request.query.get("kind", "")
            values = await self._entity_values(kind, request.query.get("name", "")) \
                if kind in ("deployment", "bindingset") else None
            if values is None:
                raise web.HTTPNotFound(text="no such entity")
            html = self._render("_entity.html", **values)
        else:
            raise web.HTTPNotFound(text=f"no region {region!r}")
        return web.Response(text=html, content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-store"})

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    # ------------------------------------------------------------------ live
    async def stream(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: ``change`` with the new version and the regions touched
        since the version the page was rendered at (``?v=``)."""
        if self.streams >= MAX_STREAMS:
            return web.Response(status=503, text="too many open streams\n")
        try:
            since = int(request.query.get("v", "0"))
        except ValueError:
            since = 0
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-store",
            "X-Accel-Buffering": "no"})
        for key, value in _SECURITY_HEADERS.items():
            response.headers[key] = value
        await response.prepare(request)
        self.streams += 1
        try:
            await response.write(b"retry: 1000\n\n")
            while not self.picture.stopped.is_set():
                version, regions = await self.picture.changed(since, KEEPALIVE)
                if not regions:
                    await response.write(b": keep-alive\n\n")
                    continue
                since = version
                data = json.dumps({"version": version, "regions": sorted(regions)})
                await response.write(f"event: change\ndata: {data}\n\n".encode())
        except ConnectionResetError:
            pass  # the page went away
        finally:
            self.streams -= 1
        return response


@contextlib.asynccontextmanager
async def serving(dashboard: Dashboard, site: Callable[[web.AppRunner], web.BaseSite]
                  ) -> AsyncIterator[web.AppRunner]:
    """Serve ``dashboard`` on ``site(runner)`` with its picture followed, until the block
    ends; then stop the streams, the watchers and the server, in that order."""
    picture = dashboard.picture
    stop = asyncio.Event()
    runner = web.AppRunner(dashboard.app(), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    tasks = [asyncio.create_task(picture.watch_git(stop)),
             asyncio.create_task(picture.watch_lattice(stop))]
    try:
        await site(runner).start()
        yield runner
    finally:
        stop.set()
        await picture.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        await runner.cleanup()
        picture.close()
