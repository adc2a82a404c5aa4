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

from cli.localstack import StackState
from cli.output import emit, list_document, output_option, table
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


@click.command("servers")
@output_option()
@click.pass_obj
def get_servers(settings: Settings, output: str | None) -> None:
    """List the nats-servers `latticectl up` started, with live counts from each one's
    monitoring endpoint.

    Columns: NAME, URL, CLIENTS, ROUTES, LEAFS; -o wide adds ROLE (hub or leaf), PID,
    MONITOR and LEAFNODE-URL (where `up --leaf-of` joins).

    \b
    Examples:
      latticectl get servers
      latticectl --state-dir /tmp/site get servers -o wide
    """
    state = StackState.load(settings.state_dir)
    if state is None:
        raise CliError(f"no lattice is up in {settings.state_dir}: `get servers` lists what "
                       "`latticectl up --detach` recorded there (see --state-dir)")
    servers = state.servers or [{"name": "nats-server", "client_url": state.nats_url}]
    live = [monitor_json(str(s["monitor_url"]), "/varz") if s.get("monitor_url") else None
            for s in servers]
    if output in ("yaml", "json"):
        emit(list_document([server_document(s, v) for s, v in zip(servers, live, strict=True)]),
             output)
        return
    if output == "name":
        for s in servers:
            click.echo(f"server/{s.get('name')}")
        return
    wide = output == "wide"
    rows = [server_row(s, v, wide=wide) for s, v in zip(servers, live, strict=True)]
    for line in table((*SERVER_HEADERS, *SERVER_WIDE) if wide else SERVER_HEADERS, rows):
        click.echo(line)
