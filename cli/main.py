"""The ``latticectl`` group: global options and command registration.

Every command receives the resolved :class:`cli.settings.Settings` as ``ctx.obj``. Domain
errors are :class:`cli.settings.CliError` (one line, exit 2); any other exception prints
one line too. With ``--debug`` the traceback, with the exception the line hides (its
cause), is printed on stderr before the line.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from typing import Any

import click

from cli.settings import CliError, Settings


class Group(click.Group):
    """A click group that turns unexpected exceptions into one line, and shows the
    traceback first with --debug."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.Abort):
            raise
        except click.ClickException as exc:
            if _debug(ctx):
                _print_traceback(exc)
            raise
        except KeyboardInterrupt:
            raise click.Abort() from None
        except BrokenPipeError:
            # the reader went away (`latticectl ... | head`): stop quietly, as kubectl does
            _silence_stdout()
            raise click.exceptions.Exit(0) from None
        except Exception as exc:
            if _debug(ctx):
                _print_traceback(exc)
                raise CliError(f"{type(exc).__name__}: {exc}") from None
            raise CliError(
                f"{type(exc).__name__}: {exc} (rerun with --debug for details)"
            ) from None


def _debug(ctx: click.Context) -> bool:
    """--debug, from the parsed flag: it holds even when Settings could not be built."""
    return bool(ctx.params.get("debug"))


def _print_traceback(exc: BaseException) -> None:
    """The traceback of ``exc`` on stderr, with the exception it was raised from even when
    that was hidden (``raise ... from None``): the cause is what --debug is for."""
    exc.__suppress_context__ = False
    click.echo("".join(traceback.format_exception(exc)).rstrip("\n"), err=True)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail too."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--repo", envvar="LATTICECTL_REPO", help="Git repository (path or URL).")
@click.option("--nats-url", envvar="LATTICECTL_NATS_URL", help="NATS server URL.")
@click.option("--nats-creds", envvar="LATTICECTL_NATS_CREDS",
              help="NATS credentials file (JWT and nkey seed).")
@click.option("--nats-user", envvar="LATTICECTL_NATS_USER",
              help="NATS user (password from LATTICECTL_NATS_PASSWORD).")
@click.option("--nats-tls-ca", envvar="LATTICECTL_NATS_TLS_CA", help="CA bundle for NATS TLS.")
@click.option("--lattice", envvar="LATTICECTL_LATTICE", help="Lattice id (default: default).")
@click.option("--context", "context_name", envvar="LATTICECTL_CONTEXT",
              help="Named context from ~/.config/latticectl/config.yaml.")
@click.option("--state-dir", envvar="LATTICECTL_STATE_DIR",
              help="Where `up --detach` keeps pids and the NATS URL.")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.version_option(package_name="vinculum")
@click.pass_context
def cli(
    ctx: click.Context,
    repo: str | None,
    nats_url: str | None,
    nats_creds: str | None,
    nats_user: str | None,
    nats_tls_ca: str | None,
    lattice: str | None,
    context_name: str | None,
    state_dir: str | None,
    debug: bool,
) -> None:
    """Operate a vinculum lattice: apply manifests to git, see desired next to observed.

    \b
    Examples:
      latticectl up                       # local NATS, 3 hosts, the agent on examples/repo
      latticectl apply -f deploy.yaml     # commit and push a Deployment
      latticectl get deployments          # READY counts from the status branch
    """
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    ctx.obj = Settings.resolve(
        repo=repo, nats_url=nats_url, lattice=lattice, context=context_name,
        state_dir=state_dir, debug=debug, nats_creds=nats_creds, nats_user=nats_user,
        nats_tls_ca=nats_tls_ca,
    )


def _register() -> None:
    """Attach each family of commands to the group (imports kept here, in one place)."""
    from cli import (
        actor_cmd,
        apply_cmd,
        describe_cmd,
        diff_cmd,
        events_cmd,
        gantry_cmd,
        get_cmd,
        host_cmd,
        request_cmd,
        status_cmd,
        trust_cmd,
        up_cmd,
    )

    for family in (up_cmd, apply_cmd, get_cmd, describe_cmd, diff_cmd, status_cmd, events_cmd,
                   actor_cmd, gantry_cmd, trust_cmd, host_cmd, request_cmd):
        for command in family.COMMANDS:
            cli.add_command(command)


_register()


def main() -> None:
    cli(prog_name="latticectl")


if __name__ == "__main__":
    main()
