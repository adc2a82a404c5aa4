"""A host's connection closing, seen in milliseconds: the server's connect advisories.

nats-server publishes on its system account, for every client of an account, an advisory
when the client connects (``$SYS.ACCOUNT.<account>.CONNECT``,
``io.nats.server.advisory.v1.client_connect``) and when its connection closes
(``.DISCONNECT``, ``client_disconnect``) -- also when the process was ``kill -9``ed, since
the kernel closes its socket. This module reads them for the agent:

* :class:`ClientConnect` / :class:`ClientDisconnect`: typed records of the fields we use
  (unknown fields ignored), parsed by :func:`parse_advisory`, which refuses more than
  64 KiB and returns None, with a debug log, for anything malformed -- it never raises.
* :func:`subscribe_advisories`: the subscription, on a connection made with the
  ``monitor`` credentials (:meth:`lattice.auth.store.AuthStore.issue_monitor`).
* :class:`GoneDetector`: pure logic, with an injected clock: a host whose connection closed
  and that did not connect again, to any server, within ``grace`` seconds is gone. The
  agent (``reconciler/observed.py``) feeds it and runs a timer on :meth:`next_deadline`;
  heartbeats stay as the fallback for a hung host and an open lattice.

In a cluster the monitor sees the advisories of every server (they travel the routes,
~1.5 ms measured), but a server killed with -9 sends no DISCONNECT for its clients: a host
that reconnects elsewhere shows only a CONNECT, and one that died with its server is found
by heartbeats alone.

Why a system-account user rather than an import: an account JWT can import the system
account's ``$SYS.ACCOUNT.*.>`` stream export (``account_token_position`` 3 binds each
importer to its own key; tried on nats-server 2.15: the lattice's users then see their
account's advisories, another account's import of them gets nothing), so a
lattice-account user could read them without a system-account credential. We chose the
``monitor`` user instead: it needs no export in the system account's JWT nor an import in
every lattice account's JWT (both re-signed and pushed on every change), its reach is
exactly two subjects written in one place (:func:`lattice.auth.roles.monitor`) and
enforced by the server, and an import would put the advisories (every user key, client
name and IP of the account) inside the lattice's own namespace, where the admin role and
any future wide grant would see them too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Literal

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from lattice.auth.keys import AuthKeyError, Credentials, claims_of, host_id_of
from lattice.auth.roles import advisory_subjects
from lattice.clock import Clock, monotonic

log = logging.getLogger(__name__)

#: Largest advisory we read; a real one is ~5 KiB (it carries the user's JWT).
MAX_ADVISORY_BYTES = 64 * 1024
#: Connections remembered per host; a host holds one, a few more cover reconnect races.
MAX_CONNECTIONS_PER_HOST = 8
#: Hosts reported gone whose newest connection start is remembered.
MAX_TOMBSTONES = 4096
_HOST_TAG = "vinculum-role:host"
_ROLE_TAG = "vinculum-role:"


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ServerInfo(_Record):
    """The server that saw the event."""

    id: str = Field(max_length=128)
    name: str = Field(default="", max_length=256)


class ClientInfo(_Record):
    """The client the event is about; ``user`` is its user public key (operator mode)."""

    id: int  #: the server's client id, unique per server
    start: datetime  #: when the connection was accepted (the server's wall clock)
    acc: str = Field(default="", max_length=128)
    user: str = Field(default="", max_length=128)
    name: str = Field(default="", max_length=1024)
    host: str = Field(default="", max_length=256)
    stop: datetime | None = None
    tags: tuple[str, ...] = ()

    @property
    def host_id(self) -> str | None:
        """The host id of a host's user key; None for a user whose JWT names another
        role (agent, apps, admin, monitor) or a key that is not a user key. Pure."""
        roles = [t for t in self.tags if t.startswith(_ROLE_TAG)]
        if roles and _HOST_TAG not in roles:
            return None
        if not self.user.startswith("U"):
            return None
        try:
            return host_id_of(self.user)
        except AuthKeyError:
            return None


class ClientConnect(_Record):
    """``io.nats.server.advisory.v1.client_connect``."""

    type: Literal["io.nats.server.advisory.v1.client_connect"]
    server: ServerInfo
    client: ClientInfo


class ClientDisconnect(_Record):
    """``io.nats.server.advisory.v1.client_disconnect``."""

    type: Literal["io.nats.server.advisory.v1.client_disconnect"]
    server: ServerInfo
    client: ClientInfo
    reason: str = Field(default="", max_length=1024)


ClientEvent = ClientConnect | ClientDisconnect
_EVENT: TypeAdapter[ClientEvent] = TypeAdapter(
    Annotated[ClientEvent, Field(discriminator="type")])


def parse_advisory(data: bytes) -> ClientEvent | None:
    """The advisory in ``data``, or None (logged at debug) when it is too large or not a
    client connect/disconnect advisory. Never raises. Pure but for the log."""
    if len(data) > MAX_ADVISORY_BYTES:
        log.debug("advisory of %d bytes refused (limit %d)", len(data), MAX_ADVISORY_BYTES)
        return None
    try:
        return _EVENT.validate_json(data)
    except (ValidationError, ValueError) as exc:
        log.debug("malformed advisory dropped: %s", str(exc)[:200])
        return None


def account_of(creds: Credentials) -> str:
    """The public key of the account that issued ``creds`` (the ``iss`` of its JWT): with
    the agent's own credentials, the lattice account whose advisories to watch (the
    monitor's credentials name the system account instead). Pure."""
    issuer = claims_of(creds.jwt).get("iss")
    if not isinstance(issuer, str) or not issuer.startswith("A"):
        raise AuthKeyError("credentials whose JWT names no issuing account")
    return issuer


async def subscribe_advisories(nc: Client, account: str,
                               on_event: Callable[[ClientEvent], None]
                               ) -> list[Subscription]:
    """Subscribe ``nc`` (a ``monitor`` user's connection) to the connect and disconnect
    advisories of ``account`` (the lattice account's public key); ``on_event`` gets each
    well-formed one. Unsubscribe the returned subscriptions to stop.

    >>> account = store.account.public_key                 # doctest: +SKIP
    >>> subs = await subscribe_advisories(nc, account, detector.observe)  # doctest: +SKIP
    """
    async def deliver(msg: Msg) -> None:
        event = parse_advisory(msg.data)
        if event is not None:
            on_event(event)

    return [await nc.subscribe(subject, cb=deliver, pending_msgs_limit=65536)
            for subject in advisory_subjects(account)]


# ---------------------------------------------------------------- the detector

@dataclass
class _Host:
    #: open connections: (server id, client id) -> start (epoch seconds)
    open: dict[tuple[str, int], float] = field(default_factory=dict)
    newest: float = float("-inf")  #: start of the newest connection seen, open or closed
    newest_server: str = ""
    gone_at: float | None = None  #: deadline (clock seconds) once every connection closed


class GoneDetector:
    """Which hosts lost their connection and did not come back within ``grace`` seconds.

    Pure logic over the advisories, time from ``clock``: feed it :meth:`connected` and
    :meth:`disconnected` (or whole events through :meth:`observe`), call :meth:`due` when
    :meth:`next_deadline` has passed. A host holds one connection with its credentials, so
    a connection that started later on another server supersedes the older ones there --
    a host whose server died (that server sends no DISCONNECT) and that reconnected
    elsewhere is not gone, and the dead server's events arriving after the new CONNECT
    (events of different servers are not ordered; those of one server are) are ignored.
    Start times come from the servers' wall clocks; they only order connections of one
    host. A host reported by :meth:`due` leaves a small tombstone (its newest start), so
    late events of its old connections do not bring it back. Consumers: the agent's
    observed state, which ignores host ids it does not know.
    """

    def __init__(self, grace: float = 0.25, *, clock: Clock = monotonic) -> None:
        if grace < 0:
            raise ValueError(f"grace must be >= 0, not {grace}")
        self.grace = grace
        self._clock = clock
        self._hosts: dict[str, _Host] = {}
        self._tombstones: dict[str, float] = {}  # insertion-ordered, bounded

    def _stale(self, host_id: str, start: float) -> bool:
        tomb = self._tombstones.get(host_id)
        if tomb is None:
            return False
        if start <= tomb:
            return True
        del self._tombstones[host_id]  # a newer connection: the host is back
        return False

    def connected(self, host_id: str, *, server: str, client_id: int, start: float) -> None:
        """A connection of ``host_id`` opened on ``server`` at ``start`` (epoch s)."""
        if self._stale(host_id, start):
            return
        host = self._hosts.setdefault(host_id, _Host())
        if start < host.newest and server != host.newest_server:
            return  # a late CONNECT: a newer connection elsewhere superseded it
        host.open = {key: s for key, s in host.open.items()
                     if key[0] == server or s >= start}
        host.open[(server, client_id)] = start
        if len(host.open) > MAX_CONNECTIONS_PER_HOST:
            del host.open[min(host.open, key=lambda k: host.open[k])]
        if start >= host.newest:
            host.newest, host.newest_server = start, server
        host.gone_at = None

    def disconnected(self, host_id: str, *, server: str, client_id: int,
                     start: float) -> None:
        """A connection of ``host_id`` on ``server`` closed; it is gone after the grace
        unless another of its connections is open or opens before then."""
        if self._stale(host_id, start):
            return
        host = self._hosts.setdefault(host_id, _Host())
        host.open.pop((server, client_id), None)
        if start > host.newest:
            host.newest, host.newest_server = start, server
        if host.open:
            return  # still connected somewhere (or this was an older connection)
        if host.gone_at is None:
            host.gone_at = self._clock() + self.grace

    def observe(self, event: ClientEvent) -> None:
        """Feed one advisory; events of users that are not hosts are ignored."""
        host_id = event.client.host_id
        if host_id is None:
            return
        feed = self.connected if isinstance(event, ClientConnect) else self.disconnected
        feed(host_id, server=event.server.id, client_id=event.client.id,
             start=event.client.start.timestamp())

    def due(self) -> list[str]:
        """Host ids gone by now (each reported once, then forgotten), oldest first."""
        now = self._clock()
        gone = sorted((h.gone_at, hid) for hid, h in self._hosts.items()
                      if h.gone_at is not None and h.gone_at <= now)
        for _, hid in gone:
            self._tombstones[hid] = self._hosts.pop(hid).newest
        while len(self._tombstones) > MAX_TOMBSTONES:
            del self._tombstones[next(iter(self._tombstones))]
        return [hid for _, hid in gone]

    def next_deadline(self) -> float | None:
        """The clock time at which the next host becomes due, or None."""
        return min((h.gone_at for h in self._hosts.values() if h.gone_at is not None),
                   default=None)

    def pending(self) -> set[str]:
        """Host ids whose connection closed, still within the grace."""
        return {hid for hid, h in self._hosts.items() if h.gone_at is not None}

    def forget(self, host_id: str) -> None:
        """Drop what is known of ``host_id`` (e.g. the agent dropped it otherwise)."""
        self._hosts.pop(host_id, None)
        self._tombstones.pop(host_id, None)
