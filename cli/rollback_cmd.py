"""``latticectl rollback REVISION``: a new commit that restores the desired state (the
manifests path) to what it was at REVISION, a commit of ``latticectl history``.

A revert, not a reset: the branch moves forward, the agent evaluates the new commit like
any other (:func:`gitsync.edits.rollback_manifests`). ``--dry-run`` prints the diff and
writes nothing; ``--wait`` waits for the agent's verdict as ``apply --wait`` does.
"""

from __future__ import annotations

import click

from cli.apply_cmd import _options, _report, _wait, _wait_option
from cli.settings import Settings
from gitsync.edits import rollback_manifests


@click.command("rollback")
@click.argument("revision")
@_options
@_wait_option
@click.pass_obj
def rollback_cmd(settings: Settings, revision: str, dry_run: bool, message: str | None,
                 manifests_path: str, no_push: bool, wait: bool, timeout: float) -> None:
    """Commit a revert of the desired state to an earlier REVISION (see `history`).

    Files of the manifests path that differ from REVISION get its content back; files
    added since are removed; nothing outside the manifests path changes. Nothing to do
    when the desired state is already REVISION's.

    \b
    Examples:
      latticectl history
      latticectl rollback 3f2a9c1 --dry-run     # the diff the commit would make
      latticectl rollback 3f2a9c1 --wait        # commit, push, wait until Synced
    """
    result = rollback_manifests(settings.repo_path(), revision, message=message,
                                dry_run=dry_run, manifests_path=manifests_path,
                                push=not no_push)
    if not result.dry_run and result.commit is None:
        click.echo(f"the desired state is already that of {revision}: nothing to commit")
    _report(result, settings, "rollback")
    if wait:
        _wait(result, settings, timeout)


COMMANDS: list[click.Command] = [rollback_cmd]
