"""The hosts of ``latticectl get hosts``: live from the lattice, else from the status branch.

:func:`hosts_of` pings the lattice (:func:`cli.reach.live_hosts`) and, when NATS cannot be
reached, falls back to the hosts the agent last wrote to the status branch
(:mod:`cli.view`), saying so on stderr. Both sources become :class:`lattice.status.HostStatus`
rows, selected by name or id (:func:`select_hosts`) and printed by :func:`print_hosts`
through :mod:`cli.output`. :mod:`cli.get_cmd` holds the command.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from cli.listing import Resource, Section
from cli.output import NotFound, age, host_document, labels_text, short, warn
from cli.reach import live_hosts
from cli.settings import CliError, Settings
from cli.view import NO_STATUS, open_view
from lattice.protocol import HostInventory
from lattice.status import HostStatus

HOST_HEADERS = ("NAME", "ID", "LABELS", "UPTIME", "ACTORS", "PROVIDERS")
HOST_WIDE = ("BINDINGS", "LAST-SEEN", "SERVER")


def host_from_inventory(inv: HostInventory, now: datetime) -> HostStatus:
    """A pinged host in the form the status branch keeps (one schema for both sources)."""
    return HostStatus(host_id=inv.host_id, name=inv.name, labels=inv.labels,
                      started_at=inv.started_at, last_seen=now, actors=len(inv.actors),
                      providers=len(inv.providers), bindings=len(inv.bindings))


def select_hosts(hosts: Sequence[HostStatus], names: Sequence[str]) -> list[HostStatus]:
    """Hosts by name or id (a prefix of the id will do); all, sorted, without names."""
    ordered = sorted(hosts, key=lambda h: (h.name, h.host_id))
    if not names:
        return ordered
    out: list[HostStatus] = []
    for n in names:
        match = [h for h in ordered if n in (h.name, h.host_id) or h.host_id.startswith(n)]
        if not match:
            known = ", ".join(h.name for h in ordered) or "none"
            raise NotFound(f"host {n!r} not found (known: {known})")
        out.extend(h for h in match if h not in out)
    return out


def hosts_of(settings: Settings) -> tuple[list[HostStatus], str, dict[str, str]]:
    """The hosts, where they come from: ``lattice`` (a ping) or ``status-branch`` (when
    NATS cannot be reached, with a warning saying how old they are), and the NATS server
    each pinged host is connected to (host id -> server name; empty from the branch)."""
    live = live_hosts(settings)
    now = datetime.now(UTC)
    if not isinstance(live, str):
        servers = {i.host_id: i.server for i in live if i.server}
        return [host_from_inventory(i, now) for i in live], "lattice", servers
    try:
        with open_view(settings) as view:
            report = view.status()
    except CliError as exc:
        raise CliError(f"{live}, and the status branch cannot be read: {exc.message}") from None
    if report is None:
        raise CliError(f"{live}, and {NO_STATUS}")
    warn(f"{live}: hosts from the status branch, as of {age(report.summary.updated, now)} ago")
    return list(report.hosts.values()), "status-branch", {}


def host_section(hosts: Sequence[HostStatus], source: str, *, wide: bool,
                 servers: Mapping[str, str] | None = None,
                 now: datetime | None = None) -> Section:
    """``hosts`` as ``get`` lists them; ``-o wide`` shows each one's server from
    ``servers`` (host id -> server name; ``-`` when unknown). Pure but for the clock."""
    now = now or datetime.now(UTC)
    items = []
    for h in hosts:
        uptime = age(h.started_at, h.last_seen if source == "lattice" else now)
        row: list[object] = [h.name, short(h.host_id), labels_text(h.labels), uptime,
                             h.actors, h.providers]
        if wide:
            row += [h.bindings, age(h.last_seen, now), (servers or {}).get(h.host_id, "-")]
        items.append(Resource("host", h.name, host_document(h, source=source), row,
                              h.labels))
    return Section("host", (*HOST_HEADERS, *HOST_WIDE) if wide else HOST_HEADERS, items)
