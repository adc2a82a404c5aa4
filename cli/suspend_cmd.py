"""``latticectl suspend deployment NAME`` / ``resume deployment NAME``: Flux's suspend.

Each is a commit (:func:`gitsync.edits.set_suspended`) that sets or removes the annotation
``vinculum.io/suspended: "true"`` in the deployment's ``metadata.annotations``. The agent
leaves a suspended deployment as it is: it starts and stops nothing of it (its running
instances stay, even when its spec changes), and its status says Suspended. ``resume``
hands it back to the agent, which then reconciles it with its spec.
"""

from __future__ import annotations

import click

from cli.apply_cmd import KINDS, _options, _report
from cli.settings import CliError, Settings
from gitsync.edits import set_suspended


def _run(settings: Settings, kind: str, names: tuple[str, ...], suspended: bool, *,
         dry_run: bool, message: str | None, manifests_path: str, no_push: bool) -> None:
    if KINDS.get(kind.lower()) != "Deployment":
        raise CliError(f"only deployments can be suspended, not {kind!r}")
    if not names:
        raise CliError("which deployment? pass one or more names")
    result = set_suspended(settings.repo_path(), names, suspended, message=message,
                           dry_run=dry_run, manifests_path=manifests_path, push=not no_push)
    _report(result, settings, "suspend" if suspended else "resume")
    missing = [f"deployment/{c.name}" for c in result.changes if c.action == "not found"]
    if missing:
        raise CliError(f"not found: {', '.join(missing)}")


@click.command("suspend")
@click.argument("kind", metavar="deployment")
@click.argument("names", nargs=-1, metavar="NAME...")
@_options
@click.pass_obj
def suspend_cmd(settings: Settings, kind: str, names: tuple[str, ...], dry_run: bool,
                message: str | None, manifests_path: str, no_push: bool) -> None:
    """Commit a suspension: the agent leaves the deployment as it is.

    Sets the annotation vinculum.io/suspended: "true"; the agent then starts and stops
    nothing of the deployment (its instances keep running) until `resume`.

    \b
    Examples:
      latticectl suspend deployment counter
      latticectl resume deployment counter
    """
    _run(settings, kind, names, True, dry_run=dry_run, message=message,
         manifests_path=manifests_path, no_push=no_push)


@click.command("resume")
@click.argument("kind", metavar="deployment")
@click.argument("names", nargs=-1, metavar="NAME...")
@_options
@click.pass_obj
def resume_cmd(settings: Settings, kind: str, names: tuple[str, ...], dry_run: bool,
               message: str | None, manifests_path: str, no_push: bool) -> None:
    """Commit the end of a suspension: the agent manages the deployment again.

    \b
    Examples:
      latticectl resume deployment counter
    """
    _run(settings, kind, names, False, dry_run=dry_run, message=message,
         manifests_path=manifests_path, no_push=no_push)


COMMANDS: list[click.Command] = [suspend_cmd, resume_cmd]
