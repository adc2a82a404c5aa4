"""``latticectl dashboard``: serve the read-only web dashboard until Ctrl-C.

It reads what the other read-only commands read (the repository of ``--repo`` with its
status branch, and the lattice through the NATS flags or a running ``up``), binds to
loopback unless told otherwise, prints the URL as its first line, and opens the browser
unless ``--no-browser``. Binding to another address says so in a warning: the pages show
the lattice's layout to whoever reaches them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import socket
import webbrowser

import click
from aiohttp import web

from cli.dashboard.picture import Picture
from cli.dashboard.server import DEFAULT_GROUP, Dashboard, serving
from cli.output import warn
from cli.settings import CliError, Settings
from cli.view import open_view

log = logging.getLogger(__name__)

DEFAULT_ADDR = "127.0.0.1:8470"


def parse_addr(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as a host and a port. Pure."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise click.BadParameter(f"{text!r} is not HOST:PORT (e.g. {DEFAULT_ADDR})")
    host = host.removeprefix("[").removesuffix("]")
    value = int(port)
    if value > 65535:
        raise click.BadParameter(f"port {value} is out of range")
    return host, value


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str, port: int) -> frozenset[str]:
    """The ``Host`` headers a loopback server answers (empty: any, for other addresses,
    whose names we cannot know). Pure."""
    if not is_loopback(host):
        return frozenset()
    names = {"localhost", "127.0.0.1", "[::1]", host if ":" not in host else f"[{host}]"}
    return frozenset(f"{n}:{port}" for n in names)


async def serve(settings: Settings, host: str, port: int, *, group_by: str,
                open_browser: bool) -> None:
    nats = settings.nats() if settings.nats_url else None
    picture = Picture(lambda: open_view(settings), nats, settings.lattice)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    port = sock.getsockname()[1]
    try:
        await picture.in_git(lambda view: view.location)  # no repository: say so now
    except BaseException:
        sock.close()
        picture.close()
        raise
    dashboard = Dashboard(picture, group_by=group_by,
                          allowed_hosts=allowed_hosts(host, port))
    async with serving(dashboard, lambda runner: web.SockSite(runner, sock)):
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{port}/"
        click.echo(f"Dashboard: {url}")
        click.echo("Read-only; Ctrl-C stops it.", err=True)
        if open_browser:
            with contextlib.suppress(webbrowser.Error):
                webbrowser.open(url)
        await stop.wait()


@click.command("dashboard")
@click.option("--addr", default=DEFAULT_ADDR, show_default=True, metavar="HOST:PORT",
              help="Where to listen; port 0 picks a free one. Loopback unless you say "
                   "otherwise.")
@click.option("--no-browser", is_flag=True, help="Do not open a browser; print the URL.")
@click.option("--group-by", default=DEFAULT_GROUP, show_default=True, metavar="LABEL",
              help="The host label the lattice picture groups hosts by.")
@click.pass_obj
def dashboard_cmd(settings: Settings, addr: str, no_browser: bool, group_by: str) -> None:
    """Serve a read-only web dashboard of the lattice and its status branch.

    The overview lists every deployment and binding set with its phase, the lattice page
    draws the hosts with what they run, a deployment's page shows its placements,
    conditions and history; they update live (server-sent events).

    \b
    Examples:
      latticectl dashboard
      latticectl dashboard --no-browser --addr 127.0.0.1:0
      latticectl dashboard --group-by region
    """
    host, port = parse_addr(addr)
    if not is_loopback(host):
        warn(f"listening on {host}: anyone who reaches it sees the lattice's layout (the "
             "dashboard is read-only and has no login)")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings, host, port, group_by=group_by,
                          open_browser=not no_browser))


COMMANDS: list[click.Command] = [dashboard_cmd]
