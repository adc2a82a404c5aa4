"""``latticectl push`` and ``latticectl get actors``: the lattice's registry of modules.

Both talk to :class:`lattice.gantry.Gantry` on the NATS of ``--nats-url`` (or the
environment, the context, the state of ``up``: :mod:`cli.settings`) and the lattice of
``--lattice``. ``push`` verifies the module here first, so a bad signature is reported
before anything is sent; it refuses, before pushing any, a module whose actor id another
account holds in the registry (``--force`` replaces it: an admin's decision), and warns
when the lattice's trust policy does not trust a pushed module's account, saying how to.
``get actors`` is attached to the ``get`` group by :mod:`cli.get_cmd`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click

from cli.actor_cmd import read_module
from cli.output import emit, list_document, output_option, short, table
from cli.reach import on_lattice
from cli.settings import CliError, Settings
from lattice.claims import Claims, ClaimsError, verify_module
from lattice.errors import VinculumError
from lattice.gantry import ActorRecord, Gantry, IssuerMismatch
from lattice.natsutil import NatsOptions, connect
from lattice.policy import read_trusted, set_trusted

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


def trust_by_default(url: str | NatsOptions, lattice: str, issuers: Iterable[str], *,
                     timeout: float = 30.0) -> list[str] | None:
    """Make ``issuers`` the lattice's trust policy when it has none, and return them; a
    policy already there (an empty one included) is left alone: None. ``latticectl up``
    calls it with the account it signs the example actors with, so the lattice it starts
    runs only what it signed until ``latticectl trust`` says otherwise."""
    wanted = sorted(set(issuers))

    async def run() -> list[str] | None:
        nc = await connect(url, initial_timeout=10.0)
        try:
            current, _ = await read_trusted(nc, lattice)
            if current is not None:
                return None
            await set_trusted(nc, lattice, wanted, revision=0)
            return wanted
        finally:
            await nc.close()

    return asyncio.run(asyncio.wait_for(run(), timeout))


@dataclass
class PushOutcome:
    """What ``push`` did: the modules pushed (with the account each replaced, if another),
    the first refusal, and the lattice's trust policy (None: none, or unreadable)."""

    pushed: list[tuple[Claims, str | None]] = field(default_factory=list)
    refused: str = ""
    policy: frozenset[str] | None = None
    policy_problem: str = ""


def trust_hint(lattice: str, claims: Claims) -> str:
    """The warning for a module whose account the lattice's policy leaves out. Pure."""
    return (f"warning: lattice {lattice} does not trust account {claims.issuer}, which "
            f"signed {claims.name} ({claims.subject}): hosts will refuse to start it; "
            f"trust it with `latticectl trust add {claims.issuer}`")


@click.command("push")
@click.argument("modules", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True,
              help="Replace a module whose actor id belongs to another account.")
@click.pass_obj
def push_cmd(settings: Settings, modules: tuple[str, ...], force: bool) -> None:
    """Verify signed MODULES and upload them to the lattice's registry (gantry), each under
    its actor id; prints one line per module. A module of the same id from the same
    account is replaced; one from another account is refused (nothing is pushed) unless
    --force: an actor id belongs to the account that pushed it first. Warns when the
    lattice's trust policy does not trust a module's account.

    \b
    Examples:
      latticectl push echo.signed.wasm
      latticectl --nats-url nats://10.0.0.5:4222 --lattice lab push *.signed.wasm
      latticectl push --force counter.resigned.wasm   # the id moves to its new account
    """
    blobs: list[tuple[str, bytes, Claims]] = []
    for path in modules:
        wasm = read_module(path)
        try:
            claims = verify_module(wasm)
        except ClaimsError as exc:
            raise CliError(f"{path}: {exc.message}; nothing was pushed") from None
        blobs.append((path, wasm, claims))

    async def push_all(g: Gantry) -> PushOutcome:
        out = PushOutcome()
        bound = {c.subject: await g.bound_issuer(c.subject) for _, _, c in blobs}
        for path, _, claims in blobs:
            was = bound[claims.subject]
            if was is not None and was != claims.issuer and not force:
                why = IssuerMismatch(claims.subject, was, claims.issuer).message
                out.refused = f"{path}: {why}; nothing was pushed"
                return out
        for _, wasm, claims in blobs:
            was = bound[claims.subject]
            await g.push(wasm, force=force)
            out.pushed.append((claims, was if was not in (None, claims.issuer) else None))
        try:
            out.policy, _ = await read_trusted(g.nc, settings.lattice)
        except VinculumError as exc:
            out.policy_problem = exc.message
        return out

    outcome = with_gantry(settings, push_all)
    if outcome.refused:
        raise CliError(outcome.refused)
    for (path, wasm, _), (claims, replaced) in zip(blobs, outcome.pushed, strict=True):
        click.echo(f"pushed {claims.subject} ({claims.name}, {len(wasm)} bytes) from {path}")
        if replaced:
            click.echo(f"replaced the module of account {replaced}: actor {claims.subject} "
                       f"now belongs to account {claims.issuer} (--force)", err=True)
    if outcome.policy_problem:
        click.echo(f"warning: cannot check the lattice's trust policy: "
                   f"{outcome.policy_problem}", err=True)
    warned: set[str] = set()
    for claims, _ in outcome.pushed:
        if outcome.policy is not None and claims.issuer not in outcome.policy \
                and claims.subject not in warned:
            warned.add(claims.subject)
            click.echo(trust_hint(settings.lattice, claims), err=True)


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
