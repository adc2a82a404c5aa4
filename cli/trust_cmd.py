"""``latticectl trust``: the accounts whose actors every host of the lattice may run.

Edits the lattice-wide policy of :mod:`lattice.policy` (a JetStream key-value entry) on the
NATS of ``--nats-url`` and the lattice of ``--lattice``. Hosts read it at every actor
start; ``lattice-host --trusted-issuer`` narrows it further on one host. No policy means
any account whose signature verifies (waSCC's default).
"""

from __future__ import annotations

import click
from nats.aio.client import Client

from cli.output import emit, output_option
from cli.reach import on_lattice
from cli.settings import Settings
from lattice.policy import bucket_name, parse_issuers, read_trusted, set_trusted


def _issuers(keys: tuple[str, ...]) -> list[str]:
    try:
        return parse_issuers(list(keys))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="ACCOUNT") from None


def _edit(settings: Settings, change: str, keys: list[str]) -> list[str] | None:
    """Apply ``change`` (add, remove, reset) to the policy; the new list (None: no
    policy). Removing the last account leaves an empty list, which trusts nobody: only
    ``reset`` opens the lattice to every verified account again."""

    async def run(nc: Client) -> list[str] | None:
        current, revision = await read_trusted(nc, settings.lattice)
        have = set(current or ())
        result: list[str] | None
        if change == "reset":
            result = None
        elif change == "add":
            result = sorted(have | set(keys))
        else:
            result = sorted(have - set(keys))
        if result != (sorted(have) if current is not None else None):
            await set_trusted(nc, settings.lattice, result, revision=revision)
        return result

    return on_lattice(settings, run, what="the trust policy")


def _say(settings: Settings, result: list[str] | None) -> None:
    if result is None:
        click.echo(f"no lattice-wide policy on lattice {settings.lattice}: hosts run actors "
                   "of any account whose signature verifies")
    elif not result:
        click.echo(f"lattice {settings.lattice} trusts no account: no actor will start "
                   "(`latticectl trust add`, or `latticectl trust reset` to trust any)")
    else:
        click.echo(f"lattice {settings.lattice} trusts {len(result)} account(s)")


@click.group("trust")
def trust_group() -> None:
    """Which accounts' actors every host of the lattice runs.

    \b
    Examples:
      latticectl trust list
      latticectl trust add ADRF...Q7      # the ISSUER that `actor inspect` prints
      latticectl trust remove ADRF...Q7
      latticectl trust reset              # any account whose signature verifies
    """


@trust_group.command("list")
@output_option(formats=("yaml", "json"))
@click.pass_obj
def list_cmd(settings: Settings, output: str | None) -> None:
    """Print the trusted accounts, one per line (none: every verified account).

    \b
    Examples:
      latticectl trust list
      latticectl trust list -o json | jq -r '.issuers[]'
    """
    current, _ = on_lattice(settings, lambda nc: read_trusted(nc, settings.lattice),
                            what="the trust policy")
    if output:
        emit({"lattice": settings.lattice, "bucket": bucket_name(settings.lattice),
              "issuers": sorted(current) if current is not None else None}, output)
        return
    if not current:
        _say(settings, None if current is None else [])
        return
    for key in sorted(current):
        click.echo(key)


@trust_group.command("add")
@click.argument("accounts", nargs=-1, required=True)
@click.pass_obj
def add_cmd(settings: Settings, accounts: tuple[str, ...]) -> None:
    """Trust ACCOUNTS (public keys, A...): hosts then start only actors signed by a
    trusted account.

    \b
    Examples:
      latticectl trust add ADRF...Q7      # the ISSUER that `actor inspect` prints
      latticectl trust add "$(latticectl actor inspect echo.wasm -o json | jq -r .issuer)"
    """
    _say(settings, _edit(settings, "add", _issuers(accounts)))


@trust_group.command("remove")
@click.argument("accounts", nargs=-1, required=True)
@click.pass_obj
def remove_cmd(settings: Settings, accounts: tuple[str, ...]) -> None:
    """Stop trusting ACCOUNTS. Running actors are left alone: it applies to the next
    start. Removing the last one trusts nobody (see reset).

    \b
    Examples:
      latticectl trust remove ADRF...Q7
      latticectl trust remove ADRF...Q7 ACBX...2M
    """
    _say(settings, _edit(settings, "remove", _issuers(accounts)))


@trust_group.command("reset")
@click.pass_obj
def reset_cmd(settings: Settings) -> None:
    """Remove the policy: hosts run actors of any account whose signature verifies.

    \b
    Examples:
      latticectl trust reset
      latticectl --lattice staging trust reset
    """
    _say(settings, _edit(settings, "reset", []))


COMMANDS = [trust_group]
