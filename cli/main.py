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

import functools
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import click

from cli.settings import CliError, Settings
from lattice.natsflags import NatsFlags, nats_options

#: Every command: name -> (module, short help). ``--help`` lists them from here and
#: imports no command module; a command's module is imported only when it runs (click's
#: lazy group), so ``latticectl --version`` and ``--help`` answer in well under 100 ms.
#: tests/test_cli_lazy.py checks the table against each module's ``COMMANDS``.
COMMAND_TABLE: dict[str, tuple[str, str]] = {
    "actor": ("cli.actor_cmd", "Sign WebAssembly actor modules and inspect their claims."),
    "apply": ("cli.apply_cmd", "Commit manifests to the repository and push them."),
    "completion": ("cli.completion_cmd", "Print the shell completion script for bash, zsh or "
                   "fish."),
    "config": ("cli.config_cmd", "Show and switch the contexts of the latticectl config "
               "file."),
    "convert": ("cli.convert_cmd", "Print wadm OAM Applications (core.oam.dev/v1beta1) as "
                "native manifests."),
    "dashboard": ("cli.dashboard_cmd", "Serve a read-only web dashboard of the lattice "
                  "and its status branch."),
    "delete": ("cli.apply_cmd", "Commit the removal of entities: `delete deployment NAME...` "
               "or `delete -f FILE`."),
    "describe": ("cli.describe_cmd", "Show one deployment or binding set in detail."),
    "diff": ("cli.diff_cmd", "Show what `apply -f FILE` would change in git and in the "
             "lattice."),
    "down": ("cli.up_cmd", "Stop the lattice that `latticectl up --detach` started."),
    "events": ("cli.events_cmd", "Print lattice events as they happen."),
    "explain": ("cli.explain_cmd", "Describe the fields of a manifest kind."),
    "get": ("cli.get_cmd", "Display deployments, binding sets or hosts: desired next to "
            "observed."),
    "history": ("cli.status_cmd", "List the commits of the followed branch with their sync "
                "phase."),
    "host": ("cli.host_cmd", "Credentials for hosts of a secured lattice: issue and revoke."),
    "logs": ("cli.logs_cmd", "Print the logs of the agent and hosts that `up` started."),
    "push": ("cli.gantry_cmd", "Verify signed MODULES and upload them to the lattice's "
             "registry."),
    "reconcile": ("cli.reconcile_cmd", "Nudge the agent and wait until it has evaluated "
                  "HEAD."),
    "request": ("cli.request_cmd", "Send BODY to SUBJECT and print the reply."),
    "resume": ("cli.suspend_cmd", "Commit the end of a suspension: the agent manages the "
               "deployment again."),
    "rollback": ("cli.rollback_cmd", "Commit a revert of the desired state to an earlier "
                 "revision."),
    "status": ("cli.status_cmd", "Show the branch HEAD, the last revision the agent "
               "evaluated, its phase."),
    "suspend": ("cli.suspend_cmd", "Commit a suspension: the agent leaves the deployment as "
                "it is."),
    "sync": ("cli.apply_cmd", "Ask the agent to fetch its repository now (no wait: see "
             "`reconcile`)."),
    "trust": ("cli.trust_cmd", "Which accounts' actors every host of the lattice runs."),
    "up": ("cli.up_cmd", "Start a local lattice: nats-server, HOSTS hosts and the agent."),
    "version": ("cli.version_cmd", "Print the versions of latticectl and of the running "
                "agent."),
}


class Group(click.Group):
    """A click group that turns unexpected exceptions into one line, and shows the
    traceback first with --debug; its commands are loaded lazily from
    :data:`COMMAND_TABLE`."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*(n for n, (m, _) in COMMAND_TABLE.items() if _installed(m)),
                       *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        entry = COMMAND_TABLE.get(cmd_name)
        if entry is None or not _installed(entry[0]):
            return None
        module = importlib.import_module(entry[0])
        for command in module.COMMANDS:
            self.commands.setdefault(str(command.name), command)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of ``--help`` from the table: no command module imported."""
        rows = [(name, COMMAND_TABLE[name][1] if name in COMMAND_TABLE
                 else self.commands[name].get_short_help_str())
                for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

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


@functools.cache
def _installed(module: str) -> bool:
    """True when ``module`` can be imported (found, not imported: --help stays fast)."""
    return importlib.util.find_spec(module) is not None


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
    import nats.errors  # imported on the way out: nats-py is slow to import

    from cli.reach import unreachable
    from gitsync.errors import InvalidManifestsError
    from lattice.errors import VinculumError

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


def package_version() -> str:
    """vinculum's version, read from its installed metadata: the ``Version:`` line of
    ``vinculum-*.dist-info/METADATA`` on sys.path (importlib.metadata itself takes ~40 ms
    to import, more than the rest of ``--version``), else importlib.metadata's answer."""
    for entry in sys.path:
        try:
            found = sorted(Path(entry or ".").glob("vinculum-*.dist-info/METADATA"))
        except OSError:
            continue
        for meta in found:
            with meta.open(encoding="utf-8") as f:
                for line in f:
                    if line.startswith("Version:"):
                        return line.split(":", 1)[1].strip()
                    if not line.strip():
                        break
    import importlib.metadata

    try:
        return importlib.metadata.version("vinculum")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _print_version(ctx: click.Context) -> None:
    """``--version``: as click's version option prints it, without importlib.metadata."""
    if ctx.resilient_parsing:
        return
    click.echo(f"{ctx.find_root().info_name}, version {package_version()}")
    ctx.exit()


def _debug(ctx: click.Context) -> bool:
    """--debug, from the parsed flag: it holds even when Settings could not be built."""
    return bool(ctx.params.get("debug"))


def _print_traceback(exc: BaseException) -> None:
    """The traceback of ``exc`` on stderr, with the exception it was raised from even when
    that was hidden (``raise ... from None``): the cause is what --debug is for."""
    import traceback

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
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=lambda ctx, _param, value: _print_version(ctx) if value else None,
              help="Show the version and exit.")
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
    import logging

    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    ctx.obj = Settings.resolve(
        repo=repo, nats=nats, lattice=lattice, context=context_name, state_dir=state_dir,
        debug=debug,
    )


def main() -> None:
    cli(prog_name="latticectl")


if __name__ == "__main__":
    main()
