"""``latticectl events``: the lattice's events, live, with type and host filters.

Subscribes to every event of the lattice (``lattice.<id>.evt.>``) and prints each one with
:func:`cli.up_cmd.format_event` (or as one CloudEvent JSON per line with ``-o json``).
Without ``-f`` it prints what arrives within ``--for`` seconds and exits; with ``-f`` it
follows until Ctrl-C. Heartbeats are left out unless asked for by ``--type``. The lattice
keeps no history of its events (core NATS), so "recent" means "seen while listening";
the status branch's history is what ``describe`` shows for the past.
:func:`listen` is shared with ``describe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import Callable

import click

from cli.output import warn
from cli.reach import connect_quickly, ping_quickly
from cli.settings import Settings
from cli.up_cmd import format_event
from hostagent.host import server_barrier
from lattice.durations import Duration
from lattice.natsutil import NatsOptions
from lattice.protocol import CloudEvent, EventType, Subjects, decode_event

EVENT_TYPES = [t.value for t in EventType]


async def listen(url: str | NatsOptions, lattice: str,
                 on_event: Callable[[CloudEvent], None], *,
                 seconds: float | None) -> None:
    """Call ``on_event`` for every event of ``lattice`` for ``seconds`` (None: until
    SIGINT/SIGTERM). Raises ConnectionError within :data:`NATS_TIMEOUT` seconds when NATS
    cannot be reached."""
    nc = await connect_quickly(url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if seconds is None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
                loop.add_signal_handler(sig, stop.set)  # only possible in the main thread

    async def on_msg(msg: object) -> None:
        ev = decode_event(msg.data, msg.subject)  # type: ignore[attr-defined]
        if ev is not None:
            on_event(ev)

    try:
        await nc.subscribe(Subjects(lattice).events, cb=on_msg)
        await server_barrier(nc)
        if seconds is None:
            await stop.wait()
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), seconds)
    finally:
        if seconds is None:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
                    loop.remove_signal_handler(sig)
        await nc.close()


def event_host(ev: CloudEvent) -> str:
    """The id of the host an event is about."""
    return str(ev.data.get("host_id") or ev.source)


class HostFilter:
    """Matches events of one host given by name, id or id prefix; names are learnt from a
    ping at start and from host events as they pass."""

    def __init__(self, wanted: str, names: dict[str, str]) -> None:
        self.wanted = wanted
        self.names = dict(names)  # host id -> name

    def __call__(self, ev: CloudEvent) -> bool:
        host_id = event_host(ev)
        if ev.event_type in (EventType.HOST_STARTED, EventType.HOST_HEARTBEAT):
            name = ev.data.get("name")
            if isinstance(name, str):
                self.names[host_id] = name
        return self._matches(host_id)

    def _matches(self, host_id: str) -> bool:
        return (host_id == self.wanted or host_id.startswith(self.wanted)
                or self.names.get(host_id) == self.wanted)

    def matches_a_known_host(self) -> bool:
        """Whether a host seen so far (the ping at start) is the one wanted."""
        return any(self._matches(host_id) for host_id in self.names)


@click.command("events")
@click.option("-f", "--follow", is_flag=True, help="Keep printing events until Ctrl-C.")
@click.option("--for", "seconds", type=Duration(minimum=0.1), default=2.0,
              show_default=True, help="Without -f: listen this long (2s, 500ms), then exit.")
@click.option("--type", "types", multiple=True, type=click.Choice(EVENT_TYPES),
              metavar="TYPE", help="Only events of this type (repeatable): "
              + ", ".join(EVENT_TYPES) + ".")
@click.option("--host", "host", metavar="NAME_OR_ID", help="Only events of this host.")
@click.option("-o", "--output", type=click.Choice(["json"]), default=None,
              help="json: one CloudEvent per line (default: one readable line each).")
@click.pass_obj
def events_cmd(settings: Settings, follow: bool, seconds: float, types: tuple[str, ...],
               host: str | None, output: str | None) -> None:
    """Print lattice events as they happen (host_heartbeat only when asked by --type).

    \b
    Examples:
      latticectl events                        # what happens in the next 2 seconds
      latticectl events -f                     # follow until Ctrl-C
      latticectl events -f --type actor_started --type actor_stopped
      latticectl events --for 10 --host pi -o json | jq .data
    """
    nats = settings.nats()
    wanted = {EventType(t) for t in types} or (set(EventType) - {EventType.HOST_HEARTBEAT})
    host_filter: HostFilter | None = None
    try:
        if host is not None:
            known = asyncio.run(ping_quickly(nats, settings.lattice, timeout=0.5))
            host_filter = HostFilter(host, {i.host_id: i.name for i in known})
            if not host_filter.matches_a_known_host():  # it may start later: keep going
                warn(f"no host named {host!r} (or with that id) answered a ping; "
                     "listening for its events anyway")

        def on_event(ev: CloudEvent) -> None:
            if host_filter is not None and not host_filter(ev):
                return
            if ev.event_type not in wanted:
                return
            if output == "json":
                click.echo(json.dumps(ev.model_dump(mode="json")))
            else:
                click.echo(format_event(ev))

        asyncio.run(listen(nats, settings.lattice, on_event,
                           seconds=None if follow else seconds))
    except KeyboardInterrupt:
        return


COMMANDS: list[click.Command] = [events_cmd]
