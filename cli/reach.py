"""How latticectl reaches the lattice: quickly, or with one line saying why it cannot.

:func:`connect_quickly` gives up within :data:`NATS_TIMEOUT` seconds (``lattice.natsutil``'s
``connect`` alone may wait much longer for a server that is not there); :func:`ping_hosts`
and :func:`live_hosts` gather the hosts' inventories through it (``get hosts``, ``diff``,
``events --host``, ``up``); :func:`on_lattice` runs one action on a fresh connection
(``trust``, ``push``, ``get actors``). :func:`unreachable` and :func:`cannot_reach` are the
one-line errors every command prints when NATS cannot be reached. The repository side is
:mod:`cli.view`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import TypeVar

from nats.aio.client import Client

from cli.settings import CliError, Settings
from lattice.errors import VinculumError
from lattice.natsutil import NatsOptions, connect, scatter_gather
from lattice.protocol import HostInventory, PingRequest, Subjects, decode, encode

T = TypeVar("T")

#: Seconds to wait for NATS before saying it is unreachable.
NATS_TIMEOUT = 2.0


async def connect_quickly(url: str | NatsOptions) -> Client:
    """A connection to NATS, or ConnectionError within :data:`NATS_TIMEOUT` seconds.

    (``lattice.natsutil.connect`` alone can wait forever for a server that is not there:
    nats-py retries the first connection without end when reconnects are unlimited.)
    """
    try:
        return await asyncio.wait_for(
            connect(url, connect_timeout=NATS_TIMEOUT, initial_timeout=NATS_TIMEOUT),
            NATS_TIMEOUT + 0.5)
    except TimeoutError:
        raise ConnectionError(f"no connection within {NATS_TIMEOUT:g}s") from None


async def ping_hosts(url: str | NatsOptions, lattice: str, *,
                     timeout: float = 1.0) -> list[HostInventory]:
    """Every host's inventory, gathered for ``timeout`` seconds after connecting (which
    fails with ConnectionError within :data:`NATS_TIMEOUT` seconds)."""
    nc = await connect_quickly(url)
    try:
        msgs = await scatter_gather(nc, Subjects(lattice).ping, encode(PingRequest()),
                                    timeout=timeout)
    finally:
        await nc.close()
    return [inv for m in msgs
            if (inv := decode(HostInventory, m.data, subject=m.subject)) is not None]


async def ping_quickly(url: str | NatsOptions, lattice: str, *,
                       timeout: float) -> list[HostInventory]:
    """:func:`ping_hosts`, bounded as a whole: ConnectionError when NATS is unreachable."""
    try:
        return await asyncio.wait_for(ping_hosts(url, lattice, timeout=timeout),
                                      NATS_TIMEOUT + timeout + 0.5)
    except TimeoutError:
        raise ConnectionError(f"no connection within {NATS_TIMEOUT:g}s") from None


def live_hosts(settings: Settings, *, timeout: float = 1.0) -> list[HostInventory] | str:
    """Every host's inventory from a ping, or why the lattice could not be asked."""
    if not settings.nats_url:
        return "no NATS URL configured"
    try:
        return asyncio.run(ping_quickly(settings.nats(), settings.lattice, timeout=timeout))
    except (OSError, ConnectionError, TimeoutError, VinculumError) as exc:
        return cannot_reach(settings.nats_url, exc)


#: Seconds a JetStream operation (registry, policy) may take once connected.
OPERATION_TIMEOUT = 30.0


def on_lattice(settings: Settings, action: Callable[[Client], Awaitable[T]], *,
               what: str) -> T:
    """Run ``action`` on a fresh NATS connection; a one-line error when ``what`` (e.g.
    "the registry") does not answer in time. NATS that cannot be reached and refusals (any
    :class:`~lattice.errors.VinculumError`) propagate: :func:`cli.main.as_cli_error` says
    them in one line."""
    url = settings.require_nats()

    async def run() -> T:
        nc: Client = await connect_quickly(settings.nats())
        try:
            return await asyncio.wait_for(action(nc), OPERATION_TIMEOUT)
        finally:
            await nc.close()

    try:
        return asyncio.run(run())
    except TimeoutError:
        raise CliError(f"{what} on {url} did not answer within {OPERATION_TIMEOUT:g}s"
                       ) from None


def unreachable(settings: Settings, exc: BaseException) -> CliError:
    """The one-line error for a lattice that cannot be reached."""
    return CliError(f"{cannot_reach(settings.nats_url, exc)}; is the lattice up? "
                    "(`latticectl up`, or pass --nats-url)")


def cannot_reach(url: str | None, exc: BaseException) -> str:
    """``cannot reach NATS at URL (why)``, the why said once: ``lattice.natsutil.connect``
    already starts its message with ``cannot reach NATS at URL:``. Pure."""
    why = exc.message if isinstance(exc, VinculumError) else str(exc)
    why = _SAID_ALREADY.sub("", why).strip() or type(exc).__name__
    return f"cannot reach NATS at {url} ({why})"


_SAID_ALREADY = re.compile(r"^cannot reach NATS at \S+?:\s")
