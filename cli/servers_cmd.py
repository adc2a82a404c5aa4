"""``latticectl get servers``: the nats-servers of a local lattice and what each one serves.

The servers come from the ``state.json`` that ``latticectl up`` wrote (one, a ``--cluster``
of N, or a ``--leaf-of`` site's leaf node); the counts are read live from each server's
HTTP monitoring endpoint (``/varz``): client connections, routes to the other servers of
the cluster, leaf-node connections. A server that does not answer is shown ``down``.
:mod:`cli.get_cmd` registers the command under ``get``; which server each host is on is
``get hosts -o wide`` (:mod:`cli.hosts`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click

from cli.listing import Listing, Resource, Section, listing_options
from cli.localstack import StackState
from cli.settings import CliError, Settings
from lattice.localcluster import monitor_json

SERVER_HEADERS = ("NAME", "URL", "CLIENTS", "ROUTES", "LEAFS")
SERVER_WIDE = ("ROLE", "PID", "MONITOR", "LEAFNODE-URL")


def server_row(server: Mapping[str, Any], varz: Mapping[str, Any] | None, *,
               wide: bool) -> list[object]:
    """One line of the table from the recorded server and its ``/varz`` (None: it did
    not answer). Pure."""
    if varz is None:
        counts: list[object] = ["down", "-", "-"]
    else:
        counts = [varz.get("connections", 0), varz.get("routes", 0), varz.get("leafnodes", 0)]
    row: list[object] = [server.get("name", "?"), server.get("client_url", "?"), *counts]
    if wide:
        row += [server.get("role", "hub"), server.get("pid", "-"),
                server.get("monitor_url", "-"), server.get("leafnode_url") or "-"]
    return row


def server_document(server: Mapping[str, Any], varz: Mapping[str, Any] | None
                    ) -> dict[str, Any]:
    """The machine-readable form of one server (``-o json|yaml``). Pure."""
    live = None if varz is None else {k: varz.get(k) for k in (
        "server_id", "version", "connections", "routes", "leafnodes", "uptime")}
    return {"kind": "Server", "metadata": {"name": server.get("name")},
            "spec": dict(server), "status": {"up": varz is not None, **(live or {})}}


def server_section(settings: Settings, *, wide: bool) -> Section:
    """The servers ``latticectl up`` recorded in the state dir, each asked for its
    ``/varz``; a :class:`CliError` when no lattice is up there."""
    state = StackState.load(settings.state_dir)
    if state is None:
        raise CliError(f"no lattice is up in {settings.state_dir}: `get servers` lists what "
                       "`latticectl up --detach` recorded there (see --state-dir)")
    servers = state.servers or [{"name": "nats-server", "client_url": state.nats_url}]
    items = []
    for s in servers:
        varz = monitor_json(str(s["monitor_url"]), "/varz") if s.get("monitor_url") else None
        items.append(Resource("server", str(s.get("name")), server_document(s, varz),
                              server_row(s, varz, wide=wide)))
    return Section("server", (*SERVER_HEADERS, *SERVER_WIDE) if wide else SERVER_HEADERS,
                   items)


@click.command("servers")
@listing_options
@click.pass_obj
def get_servers(settings: Settings, listing: Listing) -> None:
    """List the nats-servers `latticectl up` started, with live counts from each one's
    monitoring endpoint.

    Columns: NAME, URL, CLIENTS, ROUTES, LEAFS; -o wide adds ROLE (hub or leaf), PID,
    MONITOR and LEAFNODE-URL (where `up --leaf-of` joins). Servers have no labels, so
    -l selects none of them.

    \b
    Examples:
      latticectl get servers
      latticectl --state-dir /tmp/site get servers -o wide
      latticectl get servers -o jsonpath='{.items[*].spec.client_url}'
    """
    listing.print([server_section(settings, wide=listing.wide)], single=False)
