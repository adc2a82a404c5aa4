"""Connecting to NATS, and the scatter/gather request the control protocol is built on.

:func:`connect` takes one URL or a comma-separated list of the servers of a cluster
(:func:`server_urls`; the first is tried first, so callers spread clients by the order),
reconnects forever (to whichever of them answers; see
:func:`connected_server` for which one), and passes credentials (creds file, nkey seed,
user/password, token) and TLS options through to nats-py. :func:`scatter_gather` publishes
one request with a private inbox and collects replies until it has ``max_replies``, a
``done`` predicate says so, or the deadline passes: this is what makes an auction end as
soon as the last known host has answered instead of waiting a fixed window.

JetStream: a lattice's hub runs with a JetStream domain (``NatsOptions.js_domain``), the
only way clients of a leaf node reach the hub's JetStream (plain ``$JS.API`` does not cross
a leaf link). :func:`connect` remembers the options' domain and the replicas of the buckets
the client creates (``js_replicas``) with the connection; :func:`jetstream` and
:func:`js_replicas` give them back, so the code that uses JetStream (lease, gantry, policy)
needs only the connection.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.client import JetStreamContext

from lattice.auth.keys import Credentials, inbox_of


@dataclass(frozen=True, kw_only=True)
class NatsOptions:
    """How to reach NATS; every field but ``url`` is optional. ``url`` may list several
    servers of one cluster, comma-separated."""

    url: str = "nats://127.0.0.1:4222"
    name: str | None = None
    creds_file: str | None = None
    nkey_seed_file: str | None = None
    user: str | None = None
    password: str | None = None
    token: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    #: JetStream domain of the hub (``latticectl up`` runs it as ``vinculum``); None:
    #: the plain ``$JS.API`` of the server connected to (which a leaf node does not pass on)
    js_domain: str | None = None
    #: replicas of a JetStream bucket this client creates (``replicas_for(cluster size)``)
    js_replicas: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def tls_context(self) -> ssl.SSLContext | None:
        if not (self.tls_ca or self.tls_cert):
            return None
        ctx = ssl.create_default_context(cafile=self.tls_ca)
        if self.tls_cert:
            ctx.load_cert_chain(self.tls_cert, self.tls_key)
        return ctx


async def connect(
    options: NatsOptions | str,
    *,
    connect_timeout: float = 2.0,
    reconnect_wait: float = 0.25,
    initial_timeout: float = 10.0,
    on_reconnect: Callable[[], Awaitable[None]] | None = None,
    on_disconnect: Callable[[], Awaitable[None]] | None = None,
    on_closed: Callable[[], Awaitable[None]] | None = None,
) -> Client:
    """Connect with reconnect forever once connected; the first connection is retried
    until ``initial_timeout`` seconds have passed (the server may still be starting).

    >>> nc = await connect("nats://127.0.0.1:4222")   # doctest: +SKIP
    >>> await nc.drain()                              # doctest: +SKIP
    """
    opts = NatsOptions(url=options) if isinstance(options, str) else options
    kwargs: dict[str, Any] = {
        "servers": server_urls(opts.url),
        # the first URL is the preferred server (``latticectl up`` spreads its hosts
        # that way); the others are where to go when it fails
        "dont_randomize": True,
        "name": opts.name,
        "connect_timeout": connect_timeout,
        "reconnect_time_wait": reconnect_wait,
        "max_reconnect_attempts": -1,
        "allow_reconnect": True,
        "ping_interval": 5,
        "max_outstanding_pings": 2,
    }
    if opts.creds_file:
        kwargs["user_credentials"] = opts.creds_file
        inbox = creds_inbox(opts.creds_file)
        if inbox:
            kwargs["inbox_prefix"] = inbox
    if opts.nkey_seed_file:
        kwargs["nkeys_seed"] = opts.nkey_seed_file
    if opts.user:
        kwargs["user"] = opts.user
        kwargs["password"] = opts.password
    if opts.token:
        kwargs["token"] = opts.token
    tls = opts.tls_context()
    if tls is not None:
        kwargs["tls"] = tls
    if on_reconnect is not None:
        kwargs["reconnected_cb"] = on_reconnect
    if on_disconnect is not None:
        kwargs["disconnected_cb"] = on_disconnect
    if on_closed is not None:  # nats-py gave up: the server refused us (e.g. revoked)
        kwargs["closed_cb"] = on_closed

    errors: list[Exception] = []

    async def _quiet(exc: Exception) -> None:  # nats-py logs loudly otherwise
        errors[:] = _remember(errors, exc)

    kwargs["error_cb"] = _quiet
    kwargs.update(opts.extra)
    deadline = Deadline(initial_timeout)
    while True:
        try:
            # nats-py retries a first connection forever when reconnects are unlimited:
            # bound each attempt by what is left of the deadline.
            nc = await asyncio.wait_for(nats.connect(**kwargs),
                                        timeout=max(deadline.remaining, 0.05))
            _JS_SETTINGS[nc] = (opts.js_domain, opts.js_replicas)
            return nc
        except (OSError, nats.errors.NoServersError, TimeoutError) as exc:
            if deadline.expired:
                why = str(exc) or f"no answer within {initial_timeout:g}s"
                told = _most_telling(errors)
                if told:
                    why = f"{why}; last error: {told}"
                raise ConnectionError(f"cannot reach NATS at {opts.url}: {why}") from exc
            await asyncio.sleep(min(reconnect_wait, deadline.remaining))


#: connection -> (JetStream domain, replicas), as :func:`connect` was given them
_JS_SETTINGS: weakref.WeakKeyDictionary[Client, tuple[str | None, int]] = (
    weakref.WeakKeyDictionary())


def jetstream(nc: Client, **kwargs: Any) -> JetStreamContext:
    """``nc.jetstream(...)`` in the JetStream domain of the options ``nc`` was connected
    with (see :class:`NatsOptions`), so the same code works on a hub and on a leaf node."""
    domain = _JS_SETTINGS.get(nc, (None, 1))[0]
    if domain and "domain" not in kwargs:
        kwargs["domain"] = domain
    return nc.jetstream(**kwargs)


def js_replicas(nc: Client) -> int:
    """Replicas of a bucket that ``nc`` creates, from the options it was connected with."""
    return _JS_SETTINGS.get(nc, (None, 1))[1]


def server_urls(url: str) -> list[str]:
    """The server URLs of a comma-separated list (one URL is a list of one; an empty
    string is left for nats-py to refuse). Pure."""
    urls = [u.strip() for u in url.split(",") if u.strip()]
    return urls or [url]


@dataclass(frozen=True)
class ConnectedServer:
    """The server a client is connected to right now (it changes on reconnect)."""

    name: str
    url: str


def connected_server(nc: Client) -> ConnectedServer | None:
    """Name and URL of the server ``nc`` is connected to, None while disconnected.
    nats-py keeps the server's INFO (with ``server_name``) only in a private field."""
    where = nc.connected_url
    if where is None or not nc.is_connected:
        return None
    info: dict[str, Any] = getattr(nc, "_server_info", {}) or {}
    name = str(info.get("server_name") or info.get("server_id") or "")
    return ConnectedServer(name=name, url=where.geturl())


def creds_inbox(path: str) -> str | None:
    """The inbox prefix the user JWT in a ``.creds`` file confines its holder to, if any:
    with a role of its own (lattice.auth.roles) a client must make its inboxes there."""
    try:
        creds = Credentials.parse(Path(path).read_text())
        return inbox_of(creds.jwt)
    except (OSError, ValueError):
        return None  # nats-py reports an unreadable or malformed file itself


def _remember(errors: list[Exception], exc: Exception) -> list[Exception]:
    """What is kept to explain a first connection that fails: the last thing the server
    said (it may be followed by any number of socket resets) and the latest error."""
    said = [e for e in errors if not isinstance(e, OSError | TimeoutError)][-1:]
    return [*said, exc]


def _most_telling(errors: list[Exception]) -> str:
    """The error that best explains a failed first connection: what the server said
    (``Authorization Violation``) beats the socket reset that follows it."""
    said = [e for e in errors if not isinstance(e, OSError | TimeoutError) and str(e).strip()]
    pick = said or [e for e in errors if str(e).strip()]
    return str(pick[-1]).strip() if pick else ""


_UNSAFE_IN_BUCKET = re.compile(r"[^A-Za-z0-9_-]")


def bucket_name(prefix: str, lattice_id: str) -> str:
    """A JetStream bucket of one lattice: ``<prefix>_<lattice id>``, with every character
    a bucket name may not hold replaced by ``_``. Pure."""
    return _UNSAFE_IN_BUCKET.sub("_", f"{prefix}_{lattice_id}")


async def scatter_gather(
    nc: Client,
    subject: str,
    payload: bytes,
    *,
    timeout: float,
    max_replies: int | None = None,
    done: Callable[[list[Msg]], bool] | None = None,
) -> list[Msg]:
    """Publish ``payload`` to ``subject`` and gather replies.

    Returns when ``max_replies`` have arrived, when ``done(replies)`` is true, or when
    ``timeout`` seconds have passed, whichever comes first.
    """
    replies: list[Msg] = []
    finished = asyncio.Event()
    inbox = nc.new_inbox()

    async def on_reply(msg: Msg) -> None:
        if msg.headers and msg.headers.get("Status") == "503":
            return  # the server's "no responders" notice, not a reply
        replies.append(msg)
        if (max_replies is not None and len(replies) >= max_replies) or (
            done is not None and done(replies)
        ):
            finished.set()

    sub = await nc.subscribe(inbox, cb=on_reply)
    try:
        await nc.publish(subject, payload, reply=inbox)
        if max_replies == 0:
            return replies
        try:
            await asyncio.wait_for(finished.wait(), timeout)
        except TimeoutError:
            pass
        return list(replies)
    finally:
        await sub.unsubscribe()


class Deadline:
    """A monotonic deadline, for bounded polling loops."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    @property
    def remaining(self) -> float:
        return max(0.0, self.end - time.monotonic())

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.end
