"""``latticectl apply``, ``delete`` and ``sync``: change desired state in git, nudge the agent.

``apply -f FILE|DIR|-`` validates every document first (errors name file, line and field;
nothing is written if one is invalid), then :func:`gitsync.apply.apply_manifests` commits
each entity at its canonical path and pushes. ``delete`` commits removals. After a commit
(and on ``sync``) a :class:`~lattice.protocol.SyncNudge` is published on the lattice when
a NATS URL is configured, so the agent fetches at once instead of at its next interval.
``--wait`` (apply and delete) then waits for the agent's verdict on the new commit
(:mod:`cli.agentcall`): Synced is exit 0, Degraded, Invalid or ``--timeout`` exit 1.
``sync`` sends the nudge as a request and exits 1 when no agent acknowledges it.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from cli.settings import CliError, Settings
from gitsync.apply import ApplyResult, apply_manifests, delete_manifests, load_inputs
from hostagent.host import server_barrier
from lattice.durations import DURATION
from lattice.errors import VinculumError
from lattice.manifest_loader import SUFFIXES
from lattice.natsutil import connect
from lattice.protocol import Subjects, SyncNudge, encode

KINDS = {
    "deployment": "Deployment", "deployments": "Deployment", "deploy": "Deployment",
    "bindingset": "BindingSet", "bindingsets": "BindingSet", "bindings": "BindingSet",
    "bs": "BindingSet",
}

F = TypeVar("F", bound=Callable[..., Any])


def _options(f: F) -> F:
    """The options apply and delete share."""
    f = click.option("--no-push", is_flag=True, help="Commit only; do not push.")(f)
    f = click.option("--path", "manifests_path", default="", envvar="LATTICECTL_MANIFESTS_PATH",
                     help="Manifests folder inside the repository (default: its root).")(f)
    f = click.option("-m", "--message", help="Commit message (default: names what changed).")(f)
    return click.option("--dry-run", is_flag=True,
                        help="Print what would be committed; write nothing.")(f)


def read_inputs(filenames: tuple[str, ...]) -> list[tuple[str, bytes]]:
    """The content of each ``-f`` argument: a file, every manifest in a directory, or
    standard input for ``-``."""
    sources: list[tuple[str, bytes]] = []
    for name in filenames:
        if name == "-":
            sources.append(("<stdin>", sys.stdin.buffer.read()))
            continue
        path = Path(name)
        if path.is_dir():
            found = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix in SUFFIXES
                           and not any(p.startswith(".") for p in f.relative_to(path).parts))
            if not found:
                raise CliError(f"{name}: no *.yaml or *.yml files in this directory")
            sources.extend((str(f), f.read_bytes()) for f in found)
        elif path.is_file():
            sources.append((name, path.read_bytes()))
        else:
            raise CliError(f"{name}: no such file or directory")
    return sources


def _validated(filenames: tuple[str, ...]) -> list[tuple[str, bytes]]:
    if not filenames:
        raise CliError("nothing to do: pass -f FILE, -f DIR or -f -")
    return read_inputs(filenames)


def _wait_option(f: F) -> F:
    f = click.option("--timeout", type=DURATION, default="60s", show_default=True,
                     help="With --wait: give up (exit 1) after this long.")(f)
    return click.option("--wait", is_flag=True,
                        help="Wait until the agent has the new commit Synced (exit 1 on "
                             "Degraded, Invalid or --timeout).")(f)


def _wait(result: ApplyResult, settings: Settings, timeout: float) -> None:
    """``--wait``: the agent's verdict on the commit just made (on HEAD when nothing
    changed), exit 1 unless Synced."""
    from cli.agentcall import wait_for_revision
    from cli.reconcile_cmd import head_of, report_wait

    if result.dry_run or (result.commit is not None and not result.pushed
                          and result.remote is not None):
        raise CliError("--wait needs a commit the agent can see: not with --dry-run or "
                       "--no-push")
    revision = result.commit or head_of(settings)[1]
    report_wait(wait_for_revision(settings, revision, timeout=timeout), timeout)


def _report(result: ApplyResult, settings: Settings, verb: str) -> None:
    for change in result.changes:
        click.echo(str(change))
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    if result.dry_run:
        if result.diff:
            click.echo(f"(dry run) would commit on {result.branch}:")
            click.echo(result.diff, nl=False)
        else:
            click.echo("(dry run) nothing to commit")
        return
    if result.commit is None:
        return
    where = f", pushed to {result.remote}" if result.pushed else ""
    click.echo(f"committed {result.commit[:12]} on {result.branch}{where}")
    if settings.nats_url:
        try:
            publish_nudge(settings, reason=f"latticectl {verb}", revision=result.commit)
        except (OSError, ConnectionError, TimeoutError, VinculumError) as exc:
            click.echo(f"warning: could not nudge the agent ({exc}); it will see the "
                       "commit at its next fetch", err=True)


def publish_nudge(settings: Settings, *, reason: str, revision: str | None = None) -> None:
    """Publish a :class:`SyncNudge` on the lattice's nudge subject."""
    nats = settings.nats()

    async def go() -> None:
        nc = await connect(nats, initial_timeout=2.0)
        try:
            await nc.publish(Subjects(settings.lattice).nudge,
                             encode(SyncNudge(reason=reason, revision=revision)))
            # a round trip through the server, not nc.flush(timeout=): a flush that times
            # out leaves nats-py's reader a cancelled future that kills it when the PONG comes
            await server_barrier(nc, timeout=2)
        finally:
            await nc.close()

    asyncio.run(go())


@click.command("apply")
@click.option("-f", "--filename", "filenames", multiple=True, metavar="FILE|DIR|-",
              help="Manifests to apply (repeatable).")
@_options
@_wait_option
@click.pass_obj
def apply_cmd(settings: Settings, filenames: tuple[str, ...], dry_run: bool,
              message: str | None, manifests_path: str, no_push: bool, wait: bool,
              timeout: float) -> None:
    """Commit manifests to the repository and push them.

    Each entity is written to deployments/<name>.yaml or bindingsets/<name>.yaml; applying
    the same content again reports `unchanged` and makes no commit.

    \b
    Examples:
      latticectl apply -f deploy.yaml             # validate, commit, push, nudge the agent
      latticectl apply -f deploy.yaml --wait      # ... and wait until it is Synced
      latticectl apply -f manifests/ --dry-run    # print the diff; write nothing
      kustomize build . | latticectl apply -f - -m "counter: 2 replicas"
    """
    documents = load_inputs(_validated(filenames))
    result = apply_manifests(settings.repo_path(), documents, message=message,
                             dry_run=dry_run, manifests_path=manifests_path, push=not no_push)
    _report(result, settings, "apply")
    if wait:
        _wait(result, settings, timeout)


@click.command("delete")
@click.argument("kind", required=False, metavar="[deployment|bindingset]")
@click.argument("names", nargs=-1)
@click.option("-f", "--filename", "filenames", multiple=True, metavar="FILE|DIR|-",
              help="Delete the entities defined in these manifests.")
@click.option("--ignore-not-found", is_flag=True, help="Succeed when an entity is absent.")
@_options
@_wait_option
@click.pass_obj
def delete_cmd(settings: Settings, kind: str | None, names: tuple[str, ...],
               filenames: tuple[str, ...], ignore_not_found: bool, dry_run: bool,
               message: str | None, manifests_path: str, no_push: bool, wait: bool,
               timeout: float) -> None:
    """Commit the removal of entities: `delete deployment NAME...` or `delete -f FILE`.

    \b
    Examples:
      latticectl delete deployment counter
      latticectl delete deployment counter --wait   # until its instances are gone
      latticectl delete bs counter-bindings --ignore-not-found --no-push
      latticectl delete -f deploy.yaml --dry-run
    """
    targets: list[tuple[str, str]] = []
    if kind is not None:
        canonical = KINDS.get(kind.lower())
        if canonical is None:
            raise CliError(f"unknown kind {kind!r}; use deployment or bindingset")
        if not names:
            raise CliError(f"which {kind}? pass one or more names")
        targets += [(canonical, n) for n in names]
    if filenames:
        targets += [(m.kind, m.metadata.name) for m in load_inputs(read_inputs(filenames))]
    if not targets:
        raise CliError("nothing to delete: pass `deployment NAME`, `bindingset NAME` or -f")
    result = delete_manifests(settings.repo_path(), targets, message=message,
                              dry_run=dry_run, manifests_path=manifests_path, push=not no_push)
    _report(result, settings, "delete")
    missing = [f"{c.kind.lower()}/{c.name}" for c in result.changes if c.action == "not found"]
    if missing and not ignore_not_found:
        raise CliError(f"not found: {', '.join(missing)}")
    if wait:
        _wait(result, settings, timeout)


@click.command("sync")
@click.option("--reason", default="latticectl sync", help="Recorded in the agent's log.")
@click.option("--timeout", type=DURATION, default="2s", show_default=True,
              help="How long to wait for the agent to acknowledge the nudge.")
@click.pass_obj
def sync_cmd(settings: Settings, reason: str, timeout: float) -> None:
    """Ask the agent to fetch its repository now; do not wait for the result.

    Exit status 1 when no agent acknowledges the nudge within --timeout (`reconcile`
    also waits for the agent's verdict on HEAD).

    \b
    Examples:
      latticectl sync
      git push && latticectl sync --reason "pushed by hand"
    """
    from cli.agentcall import ask_agent
    from cli.reconcile_cmd import no_agent

    settings.require_nats()  # unreachable NATS: one line, from cli.main
    if ask_agent(settings, reason=reason, timeout=timeout) is None:
        raise no_agent(settings, timeout)
    click.echo(f"nudged the agent of lattice {settings.lattice}")


COMMANDS: list[click.Command] = [apply_cmd, delete_cmd, sync_cmd]
