"""The forges' door to the agent: a push webhook makes it fetch now.

``--webhook-addr HOST:PORT`` starts an aiohttp server with one route, ``POST /webhook``.
A forge (GitHub, GitLab, Gitea or Forgejo) posts its push event there; the request is
authenticated with the shared secret (``--webhook-secret-file`` or
``VINCULUM_WEBHOOK_SECRET``) *before* its body is parsed, by the forge's own scheme:

* GitHub: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>``;
* Gitea / Forgejo: ``X-Gitea-Signature`` / ``X-Forgejo-Signature``: the bare hex HMAC;
* GitLab: ``X-Gitlab-Token``: the secret itself.

Every comparison is constant-time (:func:`hmac.compare_digest`). A wrong or missing
signature is ``401`` and nothing else happens; a body over :data:`MAX_BODY` is ``413``. A
push to the watched branch sets the agent's ``nudge`` (the event
:func:`gitsync.watch.watch_heads` waits on, as for ``vinculum sync``) and answers ``202``;
a push to another branch, or another event, is ``202`` and ignored (logged at DEBUG); a
GitHub ``ping`` is ``200``. The body only names the branch: the agent fetches the
repository itself, so a forged ``after`` sha could not make it deploy anything.

The agent (:mod:`reconciler.agent`) calls :func:`start` once; the secret never reaches a
log line or a response. A request's log lines carry the forge's delivery id (GitHub's
``X-GitHub-Delivery``, ...; a fresh one otherwise) as their ``trace``, and a push's line the
head it announces as its ``revision`` (``--log-format json``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from aiohttp import web

from lattice.errors import VinculumError
from lattice.logsetup import log_context, new_trace

log = logging.getLogger(__name__)

#: the largest webhook body read (a push of many commits is ~100 KiB); larger is 413
MAX_BODY = 1 << 20
#: where the forges post
PATH = "/webhook"


@dataclass(frozen=True, kw_only=True)
class WebhookConfig:
    """The receiver's settings: off unless ``addr`` is set (``--webhook-addr``)."""

    addr: str | None = None  #: ``HOST:PORT`` (port 0: any free port, logged)
    secret: bytes = field(default=b"", repr=False)  #: never shown, never logged


#: the default: no webhook receiver
NO_WEBHOOK = WebhookConfig()


class Forge(StrEnum):
    GITHUB = "github"
    GITLAB = "gitlab"
    GITEA = "gitea"


@dataclass(frozen=True)
class Verdict:
    """What a request gets: its status, a short reason (the response's body, shown in
    the forge's delivery log) and whether the agent fetches."""

    status: int
    reason: str
    fetch: bool = False
    revision: str | None = None  #: a push's new head (``after``), when it says


#: each forge's event header (Forgejo sends both its own and Gitea's)
EVENT_HEADERS = {Forge.GITHUB: ("X-GitHub-Event",), Forge.GITLAB: ("X-Gitlab-Event",),
                 Forge.GITEA: ("X-Forgejo-Event", "X-Gitea-Event")}


def forge_of(headers: Mapping[str, str]) -> tuple[Forge, str] | None:
    """Which forge sent a request and which event it says it is, by its event header
    (header names are case-insensitive in ``aiohttp``'s mapping). Pure."""
    for forge, names in EVENT_HEADERS.items():
        for name in names:
            if event := headers.get(name):
                return forge, event
    return None


def sign(secret: bytes, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``body``: what GitHub (after ``sha256=``) and Gitea send,
    and what :mod:`reconciler.alerts` signs with. Pure."""
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def authentic(forge: Forge, headers: Mapping[str, str], body: bytes, secret: bytes) -> bool:
    """Whether the request carries ``secret``'s signature (or token) by ``forge``'s
    scheme; constant-time. An empty secret authenticates nothing. Pure."""
    get = headers.get
    if not secret:
        return False
    if forge is Forge.GITLAB:
        token = str(get("X-Gitlab-Token", "")).encode()
        return hmac.compare_digest(token, secret)
    if forge is Forge.GITHUB:
        given = str(get("X-Hub-Signature-256", ""))
        prefix, _, hexsig = given.partition("=")
        if prefix != "sha256":
            return False
    else:
        hexsig = str(get("X-Forgejo-Signature") or get("X-Gitea-Signature", ""))
    return hmac.compare_digest(hexsig.strip().lower().encode(), sign(secret, body).encode())


def judge(forge: Forge, event: str, body: bytes, branch: str) -> Verdict:
    """What an authentic request asks for. Pure: who consumes it is :func:`_handle`."""
    if forge is Forge.GITHUB and event == "ping":
        return Verdict(200, "pong")
    if event not in ("push", "Push Hook"):
        return Verdict(202, f"ignored: {event} events do not move {branch}")
    try:
        payload = json.loads(body)
    except ValueError:
        return Verdict(400, "not a JSON push event (content type must be application/json)")
    ref = payload.get("ref") if isinstance(payload, dict) else None
    if not isinstance(ref, str):
        return Verdict(400, "a push event without a ref")
    if ref != f"refs/heads/{branch}":
        return Verdict(202, f"ignored: push to {ref}, the agent follows refs/heads/{branch}")
    after = payload.get("after")
    return Verdict(202, f"fetching {branch}", fetch=True,
                   revision=after if isinstance(after, str) and after else None)


#: each forge's delivery id header: the trace of a request's log lines
DELIVERY_HEADERS = ("X-GitHub-Delivery", "X-Gitlab-Event-UUID", "X-Forgejo-Delivery",
                    "X-Gitea-Delivery")


def delivery_of(headers: Mapping[str, str]) -> str | None:
    """The forge's id of this delivery (shown in its delivery log), if it sends one. Pure."""
    for name in DELIVERY_HEADERS:
        if found := headers.get(name):
            return str(found)[:64]
    return None


def _app(config: WebhookConfig, branch: str, nudge: asyncio.Event) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        """One request; its log lines carry the delivery's id as their trace."""
        with log_context(trace=delivery_of(request.headers) or new_trace()):
            return await handle_one(request)

    async def handle_one(request: web.Request) -> web.Response:
        peer = request.remote or "?"
        if request.content_length is not None and request.content_length > MAX_BODY:
            log.warning("webhook from %s refused: body of %d bytes (at most %d)",
                        peer, request.content_length, MAX_BODY)
            return web.json_response({"error": f"body larger than {MAX_BODY} bytes"},
                                     status=413)
        sender = forge_of(request.headers)
        if sender is None:
            return web.json_response({"error": "no X-GitHub-Event, X-Gitlab-Event or "
                                      "X-Gitea-Event header: not a forge's webhook"},
                                     status=400)
        forge, event = sender
        try:
            body = await request.read()  # the app's client_max_size bounds it: 413
        except web.HTTPRequestEntityTooLarge:
            log.warning("webhook from %s refused: body over %d bytes", peer, MAX_BODY)
            return web.json_response({"error": f"body larger than {MAX_BODY} bytes"},
                                     status=413)
        if not authentic(forge, request.headers, body, config.secret):
            log.warning("webhook from %s (%s) refused: wrong or missing signature",
                        peer, forge)
            return web.json_response({"error": "wrong or missing signature"}, status=401)
        verdict = judge(forge, event, body, branch)
        if verdict.fetch:
            log.info("webhook from %s (%s): push to %s, fetching now", peer, forge, branch,
                     extra={"revision": verdict.revision} if verdict.revision else None)
            nudge.set()
        else:
            log.debug("webhook from %s (%s): %s", peer, forge, verdict.reason)
        key = "error" if verdict.status >= 400 else "status"
        return web.json_response({key: verdict.reason}, status=verdict.status)

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post(PATH, handle)
    return app


def split_addr(addr: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as a host and a port; ValueError if not."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"not HOST:PORT: {addr!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


async def start(config: WebhookConfig, branch: str,
                nudge: asyncio.Event) -> list[asyncio.Task[None]]:
    """Start the receiver when ``config.addr`` is set (a port in use raises here, at the
    agent's start); the task returned serves until cancelled, then closes the server.
    No address: no task."""
    if not config.addr:
        return []
    host, port = split_addr(config.addr)
    runner = web.AppRunner(_app(config, branch, nudge), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:  # address in use, not ours: one line from the CLI, not a trace
        await runner.cleanup()
        raise VinculumError(f"--webhook-addr {config.addr}: {exc.strerror or exc}") from exc
    except BaseException:
        await runner.cleanup()
        raise
    for sock in runner.addresses:
        h, p = sock[0], sock[1]
        log.info("webhook receiver on http://%s:%d%s (branch %s)",
                 f"[{h}]" if ":" in h else h, p, PATH, branch)

    async def serve() -> None:
        try:
            await asyncio.Event().wait()  # until cancelled with the agent's other tasks
        finally:
            await runner.cleanup()

    return [asyncio.create_task(serve(), name="webhooks")]
