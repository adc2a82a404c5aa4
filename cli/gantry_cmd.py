"""``latticectl push`` and ``latticectl get actors``: the lattice's registry of modules.

Both talk to :class:`lattice.gantry.Gantry` on the NATS of ``--nats-url`` (or the
environment, the context, the state of ``up``: :mod:`cli.settings`) and the lattice of
``--lattice``. ``push`` verifies the module here first, so a bad signature is reported
before anything is sent. ``get actors`` is attached to the ``get`` group by
:mod:`cli.get_cmd`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from cli.actor_cmd import read_module
from cli.output import emit, list_document, output_option, short, table
from cli.reach import on_lattice
from cli.settings import CliError, Settings
from lattice.claims import Claims, ClaimsError, verify_module
from lattice.gantry import ActorRecord, Gantry

T = TypeVar("T")


def with_gantry(settings: Settings, action: Callable[[Gantry], Awaitable[T]]) -> T:
    """Run ``action`` on the lattice's registry (:func:`cli.reach.on_lattice`)."""
    return on_lattice(settings, lambda nc: action(Gantry(nc, settings.lattice)),
                      what="the registry")


def size_text(n: int) -> str:
    """A byte count the way ls -h would print it (``578``, ``12K``, ``1.5M``). Pure."""
    if n < 1024:
        return str(n)
    if n < 1024 * 1024:
        return f"{n / 1024:.0f}K" if n >= 10 * 1024 else f"{n / 1024:.1f}K"
    return f"{n / 1024 / 1024:.1f}M"


def actor_document(r: ActorRecord) -> dict[str, Any]:
    """One registry entry in ``-o yaml|json`` (docs/cli.md)."""
    return {"id": r.id, "name": r.name, "capabilities": list(r.capabilities), "size": r.size,
            "module_hash": r.module_hash, "issuer": r.issuer}


@click.command("push")
@click.argument("modules", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.pass_obj
def push_cmd(settings: Settings, modules: tuple[str, ...]) -> None:
    """Verify signed MODULES and upload them to the lattice's registry (gantry), each under
    its actor id; prints one line per module. A module of the same id is replaced.

    \b
    Examples:
      latticectl push echo.signed.wasm
      latticectl --nats-url nats://10.0.0.5:4222 --lattice lab push *.signed.wasm
    """
    blobs: list[tuple[str, bytes]] = []
    for path in modules:
        wasm = read_module(path)
        try:
            verify_module(wasm)
        except ClaimsError as exc:
            raise CliError(f"{path}: {exc.message}; nothing was pushed") from None
        blobs.append((path, wasm))

    async def push_all(g: Gantry) -> list[Claims]:
        return [await g.push(wasm) for _, wasm in blobs]

    for (path, wasm), claims in zip(blobs, with_gantry(settings, push_all), strict=True):
        click.echo(f"pushed {claims.subject} ({claims.name}, {len(wasm)} bytes) from {path}")


@click.command("actors")
@click.argument("names", nargs=-1)
@output_option()
@click.pass_obj
def get_actors(settings: Settings, names: tuple[str, ...], output: str | None) -> None:
    """List the actor modules in the lattice's registry (gantry).

    Columns: ID (first 12 characters), NAME, CAPABILITIES, SIZE; -o wide adds HASH and
    ISSUER. NAMES may be actor names or (prefixes of) actor ids.

    \b
    Examples:
      latticectl get actors
      latticectl get actors echo -o json | jq -r '.items[0].id'
    """

    async def listing(g: Gantry) -> list[ActorRecord]:
        return await g.list()

    records = with_gantry(settings, listing)
    if names:
        records = [r for r in records
                   if any(n in (r.name, r.id) or r.id.startswith(n) for n in names)]
        if not records:
            raise CliError(f"no actor named {', '.join(names)} in the registry; "
                           "`latticectl get actors` lists them")
    if output in ("yaml", "json"):
        emit(list_document([actor_document(r) for r in records]), output)
        return
    if output == "name":
        for r in records:
            click.echo(f"actor/{r.id}")
        return
    if not records:
        click.echo("No actors in the registry (push one with `latticectl push`).", err=True)
        return
    wide = output == "wide"
    headers: tuple[str, ...] = ("ID", "NAME", "CAPABILITIES", "SIZE")
    rows = []
    for r in records:
        row = [short(r.id), r.name, ",".join(r.capabilities) or "<none>", size_text(r.size)]
        if wide:
            row += [r.module_hash[:16], short(r.issuer)]
        rows.append(row)
    for line in table((*headers, "HASH", "ISSUER") if wide else headers, rows):
        click.echo(line)


COMMANDS: list[click.Command] = [push_cmd]
