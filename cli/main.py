"""The ``latticectl`` group: global options and command registration.

Every command receives the resolved :class:`cli.settings.Settings` as ``ctx.obj``; the
NATS flags are :mod:`lattice.natsflags`', the same as the agent's and the host's. Domain
errors are :class:`cli.settings.CliError` (one line, exit 2), and :func:`as_cli_error` is
where every other exception a command lets through becomes one: our own errors
(:class:`lattice.errors.VinculumError`) and an unreachable NATS included, so commands
raise them as they are and do not convert them one by one. With ``--debug`` the
traceback, with the exception the line hides (its cause), is printed on stderr before the
line.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from typing import Any

import click
import nats.errors

from cli.reach import unreachable
from cli.settings import CliError, Settings
from gitsync.errors import InvalidManifestsError
from lattice.errors import VinculumError
from lattice.natsflags import NatsFlags, nats_options


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
            settings = ctx.obj if isinstance(ctx.obj, Settings) else None
            raise as_cli_error(exc, settings, debug=_debug(ctx)) from None


def as_cli_error(exc: Exception, settings: Settings | None, *, debug: bool = False
                 ) -> CliError:
    """The one line an exception a command let through becomes: the one place where
    latticectl turns errors into :class:`CliError` (exit 2).

    * an error of ours (:class:`~lattice.errors.VinculumError`): its message; the lines of
      an :class:`~gitsync.errors.InvalidManifestsError` are printed first;
    * a request nobody answers (``NoRespondersError``): says who was asked;
    * NATS that cannot be reached (``ConnectionError``, a timeout, any other nats-py
      error): ``cannot reach NATS at URL (why); is the lattice up?``;
    * a file that cannot be read or written: ``PATH: why``;
    * anything else: its type and message, and a hint at ``--debug``.
    """
    settings = settings or Settings()
    if isinstance(exc, InvalidManifestsError):
        for line in exc.errors:
            click.echo(line, err=True)
    if isinstance(exc, VinculumError):
        return CliError(exc.message)
    if isinstance(exc, nats.errors.NoRespondersError):
        return CliError(f"nothing on NATS at {settings.nats_url} answered (no responders); is the "
                        "lattice up? (`latticectl get hosts`)")
    if isinstance(exc, ConnectionError | TimeoutError | nats.errors.Error):
        return unreachable(settings, exc)
    if isinstance(exc, OSError) and exc.filename is not None:
        return CliError(f"{exc.filename}: {exc.strerror or type(exc).__name__}")
    hint = "" if debug else " (rerun with --debug for details)"
    return CliError(f"{type(exc).__name__}: {exc}{hint}")


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
@nats_options(env_prefix="LATTICECTL", default_url=None)
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
    nats: NatsFlags,
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
        repo=repo, nats=nats, lattice=lattice, context=context_name, state_dir=state_dir,
        debug=debug,
    )


def _register() -> None:
    """Attach each family of commands to the group (imports kept here, in one place)."""
    from cli import (
        actor_cmd,
        apply_cmd,
        convert_cmd,
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
                   actor_cmd, gantry_cmd, trust_cmd, host_cmd, request_cmd, convert_cmd):
        for command in family.COMMANDS:
            cli.add_command(command)


_register()


def main() -> None:
    cli(prog_name="latticectl")


if __name__ == "__main__":
    main()
