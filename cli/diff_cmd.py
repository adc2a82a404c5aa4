"""``latticectl diff -f FILE``: what applying FILE would change, without writing anything.

Two parts, both on stdout:

* **git**: the unified diff of the files ``apply`` would commit, from the apply helper's own
  dry run (:func:`gitsync.apply.apply_manifests` with ``dry_run=True``: same canonical
  paths, same base — the remote's tip when the branch has one);
* **lattice**, when NATS is reachable: the pure planner (:func:`reconciler.planner.plan`)
  run on the desired state after the change against the hosts' inventories from a ping,
  minus what it would plan anyway before the change: the starts, stops and (re)bindings
  this change causes, each with its reason.

Exit status as ``kubectl diff``: 0 no change, 1 changes, 2 (>1) errors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import click

from cli.apply_cmd import read_inputs
from cli.output import plural, short, warn
from cli.reach import live_hosts
from cli.settings import CliError, Settings
from cli.view import RepoView, open_view
from gitsync.apply import ApplyResult, apply_manifests, load_inputs
from gitsync.source import manifest_files
from lattice.manifest_loader import load_sources, normalize_base
from lattice.manifests import BindingSet, Deployment, DesiredState, Manifest
from lattice.protocol import HostInventory
from reconciler.actions import (
    Action,
    DeleteBinding,
    PutBinding,
    StartActor,
    StartProvider,
    StopActor,
    StopProvider,
)
from reconciler.matching import Matcher
from reconciler.planner import plan


def desired_states(view: RepoView, documents: Sequence[Manifest],
                   base: str) -> tuple[DesiredState, DesiredState]:
    """The desired state at the branch tip, and the same with ``documents`` applied.
    Entities of the tip that do not validate are left out of both."""
    branch = view.current_branch() or view.branch_of(view.status())
    tip = view.head(branch)
    files = manifest_files(view.repo.commit(tip).tree, base) if tip else {}
    loaded = load_sources(files.items())
    deployments = {m.name: m.manifest for m in loaded.manifests
                   if isinstance(m.manifest, Deployment)}
    bindingsets = {m.name: m.manifest for m in loaded.manifests
                   if isinstance(m.manifest, BindingSet)}
    before = DesiredState(deployments=deployments, bindingsets=bindingsets)
    for doc in documents:
        if isinstance(doc, Deployment):
            deployments[doc.metadata.name] = doc
        else:
            bindingsets[doc.metadata.name] = doc
    return before, DesiredState(deployments=deployments, bindingsets=bindingsets)


def describe_action(action: Action, names: Mapping[str, str]) -> str:
    """One line for a planned action: ``+`` start, ``~`` bind, ``-`` stop. Pure."""

    def host(host_id: str) -> str:
        return names.get(host_id) or short(host_id)

    def where(rules: tuple[str, ...]) -> str:
        return f"a host matching {','.join(rules)}" if rules else "any host"

    match action:
        case StartActor():
            return (f"+ start actor {action.actor_id} (replica {action.replica} of "
                    f"{action.deployment}) on {where(action.constraints)}: {action.reason}")
        case StartProvider():
            return (f"+ start provider {action.capability_id}/{action.binding_name} "
                    f"({action.vendor_id}) on {where(action.constraints)}: {action.reason}")
        case PutBinding():
            return (f"~ bind {action.actor_id} -> {action.capability_id}/"
                    f"{action.binding_name} on host {host(action.host_id)}: {action.reason}")
        case StopActor():
            return (f"- stop actor {action.actor_id} ({short(action.instance_id)}) on host "
                    f"{host(action.host_id)}: {action.reason}")
        case StopProvider():
            return (f"- stop provider {action.capability_id}/{action.binding_name} on host "
                    f"{host(action.host_id)}: {action.reason}")
        case DeleteBinding():
            return (f"- unbind {action.actor_id} -> {action.capability_id}/"
                    f"{action.binding_name} on host {host(action.host_id)}: {action.reason}")


def lattice_changes(before: DesiredState, after: DesiredState,
                    hosts: Sequence[HostInventory]) -> tuple[list[Action], int]:
    """The actions the change causes (planned after, not before), and how many are
    planned regardless of it. Pure."""
    observed = {h.host_id: h for h in hosts}
    matcher = Matcher()  # both plans read the same hosts: index them once
    pending = plan(before, observed, matcher=matcher)
    already = set(pending)
    return ([a for a in plan(after, observed, matcher=matcher) if a not in already],
            len(pending))


def _git_diff(settings: Settings, documents: Sequence[Manifest], base: str) -> ApplyResult:
    return apply_manifests(settings.repo_path(), documents, dry_run=True, manifests_path=base)


@click.command("diff")
@click.option("-f", "--filename", "filenames", multiple=True, metavar="FILE|DIR|-",
              help="Manifests to compare with the repository (repeatable).")
@click.option("--path", "manifests_path", default="", envvar="LATTICECTL_MANIFESTS_PATH",
              help="Manifests folder inside the repository (default: its root).")
@click.pass_obj
def diff_cmd(settings: Settings, filenames: tuple[str, ...], manifests_path: str) -> None:
    """Show what `apply -f FILE` would change in git and in the lattice; write nothing.

    Exit status: 0 no change, 1 changes, 2 errors (as kubectl diff).

    \b
    Examples:
      latticectl diff -f deploy.yaml
      latticectl diff -f manifests/ && echo "nothing to apply"
      kustomize build . | latticectl diff -f -
    """
    if not filenames:
        raise CliError("nothing to compare: pass -f FILE, -f DIR or -f -")
    documents = load_inputs(read_inputs(filenames))
    try:
        base = normalize_base(manifests_path)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    result = _git_diff(settings, documents, base)
    if result.diff:
        click.echo(result.diff, nl=False)
    live = live_hosts(settings) if result.changed else []
    if isinstance(live, str):
        warn(f"lattice not checked: {live}")
    elif result.changed:
        with open_view(settings) as view:
            before, after = desired_states(view, documents, base)
        actions, pending = lattice_changes(before, after, live)
        names = {h.host_id: h.name for h in live}
        click.echo(lattice_summary(len(live), len(actions)))
        for action in actions:
            click.echo(describe_action(action, names))
        if pending:
            click.echo(pending_note(pending), err=True)
    if result.changed:
        raise click.exceptions.Exit(1)


def lattice_summary(hosts: int, actions: int) -> str:
    """``lattice (3 hosts): 2 actions``, the line above the actions. Pure."""
    return (f"lattice ({plural(hosts, 'host')}): "
            + (plural(actions, "action") if actions else "no change"))


def pending_note(pending: int) -> str:
    """Why more is planned than this change asks for. Pure."""
    return (f"note: {plural(pending, 'action')} {'is' if pending == 1 else 'are'} planned "
            "regardless of this change (the agent is converging, or something cannot be "
            "placed)")


COMMANDS: list[click.Command] = [diff_cmd]
