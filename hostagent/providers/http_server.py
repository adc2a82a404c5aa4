"""``wascc:http_server`` / ``http``: an HTTP listener per bound actor, as waSCC had.

Each binding opens one aiohttp server on the host's event loop, on ``ADDRESS:PORT``
(``PORT`` required; ``ADDRESS`` an IP address, ``127.0.0.1`` unless given: a listener is
reachable from the machine only, and one on any other address is logged). Every request
becomes a ``HandleRequest`` call to the bound actor (through the provider context's
``call_actor``: a local instance, or one on another host) with a waSCC
:class:`~hostagent.wascc_codec.http.Request`, and the actor's
:class:`~hostagent.wascc_codec.http.Response` becomes the HTTP response: its status code,
its ``status`` as the reason phrase when printable, its headers (one value each; framing
headers are aiohttp's) and its body. The record shapes and how waSCC's own provider
filled them are in :mod:`hostagent.wascc_codec.http`.

Bounds, per binding (binding values, whole numbers, defaults in :data:`MAX_BODY`,
:data:`MAX_IN_FLIGHT` and :data:`TIMEOUT_MS`): a body over ``MAX_BODY`` bytes is answered
``413``; beyond ``MAX_IN_FLIGHT`` requests in flight, ``503`` at once; a request the actor
has not answered within ``TIMEOUT_MS`` (reading its body included), ``504``. Header lines
are aiohttp's bounds made explicit (:data:`HANDLER_ARGS`: 8190-byte lines, 128 headers),
answered ``400``. An actor that fails answers ``500`` ``Failed to handle request``, a
Response that does not decode or cannot be sent (a bad header, a status outside
200-599) ``500`` ``Malformed response from actor``, as waSCC's provider did; each is
logged with the reason, which the HTTP client never sees.

A port that cannot be had (in use, not permitted) refuses the binding, saying which;
a new binding for the same actor opens its new listener before closing the old one (or
keeps the socket when only the bounds change). Unbinding closes the listener, giving
requests in flight :data:`SHUTDOWN_GRACE_S`; stopping the provider closes them all.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from hostagent.providers.base import ProviderContext, ProviderError
from hostagent.providers.quota import Quota, read_quota
from hostagent.wascc_codec import CodecError, deserialize, serialize
from hostagent.wascc_codec.http import OP_HANDLE_REQUEST, Request, Response

log = logging.getLogger(__name__)

MAX_BODY = Quota("MAX_BODY", 1024 * 1024, "bytes")
MAX_IN_FLIGHT = Quota("MAX_IN_FLIGHT", 128, "requests")
TIMEOUT_MS = Quota("TIMEOUT_MS", 10_000, "ms")
DEFAULT_ADDRESS = "127.0.0.1"


class _ClientFaults(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's server log: a request it could not parse (the client's doing: too many
    headers, a bad line) at DEBUG without a traceback, so no client fills the host's log;
    anything else as aiohttp logs it."""

    def exception(self, msg: object, *args: object, exc_info: Any = True,
                  **kwargs: Any) -> None:
        if isinstance(exc_info, HttpProcessingError):
            self.logger.debug("http_server: " + str(msg) + ": %s", *args, exc_info)
        else:
            self.logger.error(msg, *args, exc_info=exc_info, **kwargs)


#: aiohttp's bounds on the request head, explicit (its defaults differ across versions)
HANDLER_ARGS: dict[str, Any] = {"max_line_size": 8190, "max_field_size": 8190,
                                "max_headers": 128, "logger": _ClientFaults(log, {})}
SHUTDOWN_GRACE_S = 2.0
FAILED = "Failed to handle request"  # waSCC's words
MALFORMED = "Malformed response from actor"  # idem
#: framing and connection headers: aiohttp writes its own
_HOP_BY_HOP = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive",
                         "upgrade", "te", "trailer", "proxy-connection"})
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 9110 field name
_PRINTABLE = re.compile(r"^[\t\x20-\x7e]*$")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


@dataclass(frozen=True)
class ListenerConfig:
    """What a binding's values ask of its listener."""

    address: str
    port: int
    max_body: int
    max_in_flight: int
    timeout_ms: int

    @classmethod
    def of(cls, values: Mapping[str, str]) -> ListenerConfig:
        """From a binding's values; ProviderError naming a bad one (never its value).
        Pure."""
        raw_port = values.get("PORT", "").strip()
        if not raw_port.isdigit() or not 1 <= int(raw_port) <= 65535:
            raise ProviderError("http_server binding needs a PORT value: a whole number "
                                "from 1 to 65535")
        address = values.get("ADDRESS", "").strip() or DEFAULT_ADDRESS
        try:
            address = str(ipaddress.ip_address(address))
        except ValueError:
            raise ProviderError("binding value ADDRESS must be an IP address (default "
                                f"{DEFAULT_ADDRESS})") from None
        return cls(address, int(raw_port), read_quota(values, MAX_BODY),
                   read_quota(values, MAX_IN_FLIGHT), read_quota(values, TIMEOUT_MS))

    @property
    def endpoint(self) -> str:
        """``address:port``, an IPv6 address in brackets."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"

    @property
    def loopback(self) -> bool:
        return ipaddress.ip_address(self.address).is_loopback


def request_target(request: web.BaseRequest) -> tuple[str, str]:
    """The path and query string as the client sent them: not decoded, not normalised
    (actix's ``uri().path()`` and ``query_string()``); an absolute-form target (a proxy's
    ``http://host/p?q``) gives its path and query."""
    target = request.raw_path
    if not target.startswith("/"):
        url = request.rel_url
        return url.raw_path, url.raw_query_string
    path, _, query = target.partition("?")
    return path, query.partition("#")[0]


def request_record(method: str, path: str, query_string: str,
                   raw_headers: Iterable[tuple[bytes, bytes]], body: bytes) -> Request:
    """The waSCC Request of an HTTP request: header names in lower case, a repeated
    header's values joined with ``", "`` (``"; "`` for cookies), values read as UTF-8
    (an invalid byte replaced). Pure."""
    header: dict[str, str] = {}
    for raw_name, raw_value in raw_headers:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("utf-8", errors="replace")
        if name in header:
            header[name] += ("; " if name == "cookie" else ", ") + value
        else:
            header[name] = value
    return Request(method=method, path=path, query_string=query_string, header=header,
                   body=body)


class Unsendable(ValueError):
    """An actor's Response that decodes but cannot be sent as HTTP."""


def http_response(response: Response) -> web.Response:
    """The HTTP response for an actor's Response; Unsendable when it cannot be sent
    as it is (a status outside 200-599, a header name that is no token, a value with a
    control character). Pure but for building the aiohttp object."""
    if not 200 <= response.status_code <= 599:
        raise Unsendable(f"status code {response.status_code} is outside 200-599")
    headers: list[tuple[str, str]] = []
    for name, value in response.header.items():
        if not _TOKEN.match(name):
            raise Unsendable(f"header name {name!r:.60} is not a token")
        if _CONTROL.search(value):
            raise Unsendable(f"header {name} has a control character")
        if name.lower() not in _HOP_BY_HOP:
            headers.append((name, value))
    reason = response.status if response.status and _PRINTABLE.match(response.status) else None
    # a body without a Content-Type goes as application/octet-stream (aiohttp; RFC 9110 8.3)
    return web.Response(status=response.status_code, reason=reason, body=response.body,
                        headers=headers)


def _text(status: int, text: str, **headers: str) -> web.Response:
    return web.Response(status=status, text=text + "\n", headers=headers)


class _Listener:
    """One actor's HTTP server: its config (replaceable), runner and requests in flight."""

    def __init__(self, ctx: ProviderContext, actor_id: str, config: ListenerConfig) -> None:
        self.ctx = ctx
        self.actor_id = actor_id
        self.config = config
        self.in_flight = 0
        app = web.Application(handler_args=HANDLER_ARGS)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_GRACE_S)

    async def open(self) -> None:
        """Listen; ProviderError saying why not (the port in use, not permitted)."""
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.config.address, self.config.port)
        try:
            await site.start()
        except OSError as exc:
            await self.runner.cleanup()
            why = ("the port is already in use" if exc.errno == errno.EADDRINUSE
                   else exc.strerror or type(exc).__name__)
            raise ProviderError(f"http_server cannot listen on {self.config.endpoint}: "
                                f"{why}") from None

    async def close(self) -> None:
        await self.runner.cleanup()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        config = self.config
        if request.content_length is not None and request.content_length > config.max_body:
            return self._too_large(config)
        if self.in_flight >= config.max_in_flight:
            return _text(503, f"busy: {config.max_in_flight} requests in flight, the limit "
                              "(binding value MAX_IN_FLIGHT)", **{"Retry-After": "1"})
        self.in_flight += 1
        try:
            async with asyncio.timeout(config.timeout_ms / 1000):
                return await self._serve(request, config)
        except TimeoutError:
            log.warning("http_server %s: actor %s did not answer %s %s within %d ms",
                        self.ctx.binding_name, self.actor_id, request.method,
                        request.rel_url.raw_path, config.timeout_ms)
            return _text(504, f"the actor did not answer within {config.timeout_ms} ms")
        finally:
            self.in_flight -= 1

    async def _serve(self, request: web.Request, config: ListenerConfig) -> web.StreamResponse:
        body = await _read_body(request, config.max_body)
        if body is None:
            return self._too_large(config)
        path, query = request_target(request)
        record = request_record(request.method, path, query, request.raw_headers, body)
        try:
            reply = await self.ctx.call_actor(self.actor_id, OP_HANDLE_REQUEST,
                                              serialize(record))
        except Exception as exc:
            log.warning("http_server %s: actor %s failed on %s %s: %s", self.ctx.binding_name,
                        self.actor_id, request.method, path, exc)
            return _text(500, FAILED)
        try:
            return http_response(deserialize(Response, reply))
        except (CodecError, Unsendable) as exc:
            log.warning("http_server %s: actor %s answered %s %s with a malformed response: "
                        "%s", self.ctx.binding_name, self.actor_id, request.method,
                        path, exc)
            return _text(500, MALFORMED)

    @staticmethod
    def _too_large(config: ListenerConfig) -> web.Response:
        return _text(413, f"the request body is over {config.max_body} bytes, the limit "
                          "(binding value MAX_BODY)", Connection="close")


async def _read_body(request: web.Request, limit: int) -> bytes | None:
    """The request's body, or None once it passes ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class HttpServer:
    """Listeners per bound actor, each request a ``HandleRequest`` call."""

    capability_id: ClassVar[str] = "wascc:http_server"
    vendor_id: ClassVar[str] = "http"

    def __init__(self, ctx: ProviderContext) -> None:
        self.ctx = ctx
        self._listeners: dict[str, _Listener] = {}

    async def start(self) -> None:
        """Nothing to acquire: each binding opens its own listener."""

    async def stop(self) -> None:
        for actor_id in list(self._listeners):
            await self.unbind(actor_id)

    async def bind(self, actor_id: str, values: Mapping[str, str]) -> None:
        config = ListenerConfig.of(values)
        old = self._listeners.get(actor_id)
        if old is not None and (old.config.address, old.config.port) == (config.address,
                                                                         config.port):
            old.config = config  # the same socket, new bounds
            return
        listener = _Listener(self.ctx, actor_id, config)
        await listener.open()  # before closing the old one: a refusal keeps what works
        self._listeners[actor_id] = listener
        if old is not None:
            await old.close()
        if config.loopback:
            log.info("http_server %s: actor %s listens on http://%s/", self.ctx.binding_name,
                     actor_id, config.endpoint)
        else:
            log.warning("http_server %s: actor %s listens on http://%s/, not a loopback "
                        "address: reachable from other machines", self.ctx.binding_name,
                        actor_id, config.endpoint)

    async def unbind(self, actor_id: str) -> None:
        listener = self._listeners.pop(actor_id, None)
        if listener is None:
            return
        try:
            await listener.close()
        except Exception as exc:
            log.warning("http_server %s: closing the listener of actor %s failed: %s",
                        self.ctx.binding_name, actor_id, exc)
        log.info("http_server %s: actor %s no longer listens on %s", self.ctx.binding_name,
                 actor_id, listener.config.endpoint)

    def host_call(self, actor_id: str, operation: str, payload: bytes) -> bytes:
        raise ProviderError("http_server has no operations an actor may call (it only "
                            "delivers HandleRequest)")

    def state(self) -> dict[str, str]:
        listening = ",".join(sorted(lst.config.endpoint for lst in self._listeners.values()))
        return {"bound": str(len(self._listeners)), "listening": listening}
