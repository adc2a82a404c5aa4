"""A lost host found in milliseconds: the agent's watcher of the server's advisories.

nats-server tells its system account when a client's connection closes -- also when the
process was ``kill -9``ed, since the kernel closes its socket. :class:`Liveness` owns the
agent's second NATS connection, made with the ``monitor`` credentials
(``--monitor-creds``, :meth:`lattice.auth.store.AuthStore.issue_monitor`), its
subscription to the lattice account's connect/disconnect advisories
(:func:`lattice.advisories.subscribe_advisories`) and a
:class:`lattice.advisories.GoneDetector`, and runs the detector's timer: a host whose
connection closed and that did not connect again, to any server, within ``--gone-grace``
(250 ms) is reported to ``on_gone``. A host that merely moved to another server (its
server died, which sends no DISCONNECT) shows a CONNECT there and is not reported.

The agent (:mod:`reconciler.agent`) drops the host from its observed state
(:meth:`reconciler.observed.ObservedState.lost`) and wakes its loop; the executor forgets
flights on hosts that left. Heartbeats stay: they find a hung host (SIGSTOP), a host
whose server died with it, and every lost host of an open lattice without monitor
credentials (then this watcher does nothing but say so once); a host reported gone that
heartbeats or answers a ping again comes back as a new host.

The lattice account whose advisories to watch is the issuer of the agent's own
credentials (:func:`lattice.advisories.account_of`): monitor credentials without agent
credentials are refused at start, as is a monitor connection that fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sized

from nats.aio.client import Client
from nats.aio.subscription import Subscription

from lattice.advisories import (
    ClientConnect,
    ClientEvent,
    GoneDetector,
    account_of,
    subscribe_advisories,
)
from lattice.aio import wait_any
from lattice.auth.keys import AuthKeyError
from lattice.auth.store import read_credentials
from lattice.clock import Clock, monotonic
from lattice.natsutil import NatsOptions, connect
from reconciler.config import AgentConfig
from reconciler.errors import ReconcilerError

log = logging.getLogger(__name__)

HostCallback = Callable[[str], None]


class Liveness:
    """The advisory watcher: ``await start()``, then ``await run(stop)`` as a task.

    Without ``config.monitor_creds`` both return at once (heartbeats alone find a lost
    host). ``on_gone(host_id)`` is called once per host gone; ``on_connect(host_id)``,
    if given, on each connection a host opens. ``clock`` is the detector's; the timer
    waits in real time for the detector's next deadline.
    """

    def __init__(self, config: AgentConfig, *, on_gone: HostCallback,
                 on_connect: HostCallback | None = None, clock: Clock = monotonic) -> None:
        self.enabled = config.monitor_creds is not None
        self.detector = GoneDetector(config.gone_grace, clock=clock)
        self._config = config
        self._on_gone = on_gone
        self._on_connect = on_connect
        self._clock = clock
        self._changed = asyncio.Event()
        self._nc: Client | None = None
        self._subs: list[Subscription] = []
        self.account = self._account() if self.enabled else None

    def _account(self) -> str:
        creds = self._config.nats.creds_file
        if creds is None:
            raise ReconcilerError(
                "--monitor-creds needs the agent's own --creds: the lattice account whose "
                "advisories to watch is the one that issued them")
        try:
            return account_of(read_credentials(creds))
        except (OSError, AuthKeyError, ValueError) as exc:
            raise ReconcilerError(
                f"cannot tell the lattice account from {creds}: {exc}") from exc

    @property
    def mode(self) -> str:
        """How lost hosts are found, as logged at start."""
        if not self.enabled:
            return "heartbeats only (no --monitor-creds)"
        return (f"server advisories (grace {self.detector.grace * 1000:.0f} ms), "
                "heartbeats as fallback")

    async def start(self) -> None:
        """Connect with the monitor credentials to the agent's server(s) and subscribe;
        logs the mode once. Raises what the connection raises."""
        log.info("lost hosts: %s", self.mode)
        if not self.enabled or self.account is None:
            return
        options = NatsOptions(url=self._config.nats.url, name="vinculum-monitor",
                              creds_file=self._config.monitor_creds,
                              tls_ca=self._config.nats.tls_ca,
                              tls_cert=self._config.nats.tls_cert,
                              tls_key=self._config.nats.tls_key)
        self._nc = await connect(options)
        self._subs = await subscribe_advisories(self._nc, self.account, self._observe)
        await self._nc.flush()

    def _observe(self, event: ClientEvent) -> None:
        self.detector.observe(event)
        self._changed.set()
        host_id = event.client.host_id
        if self._on_connect is not None and host_id and isinstance(event, ClientConnect):
            self._on_connect(host_id)

    async def run(self, stop: asyncio.Event) -> None:
        """Report hosts as their grace ends, until ``stop``; closes the connection."""
        if self._nc is None:
            return
        try:
            while not stop.is_set():
                deadline = self.detector.next_deadline()
                timeout = None if deadline is None else max(0.0, deadline - self._clock())
                await wait_any(self._changed, stop, timeout=timeout)
                self._changed.clear()
                for host_id in self.detector.due():
                    log.warning("host %s closed its connection and did not come back "
                                "within %.0f ms: gone", host_id,
                                self.detector.grace * 1000)
                    self._on_gone(host_id)
        finally:
            await self.close()

    async def close(self) -> None:
        """Unsubscribe and close the monitor connection (idempotent)."""
        nc, self._nc = self._nc, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()


async def expire_loop(expire: Callable[[], Sized], on_expired: Callable[[], None],
                      stop: asyncio.Event, *, every: float = 0.25) -> None:
    """The heartbeats' side of liveness: every ``every`` seconds until ``stop``, drop the
    hosts silent too long (``expire``: :meth:`reconciler.observed.ObservedState.expire`,
    which returns them) and, when any went, call ``on_expired`` (the agent wakes its
    loop)."""
    while not stop.is_set():
        if len(expire()):
            on_expired()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
