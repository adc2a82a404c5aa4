"""``latticectl get``: deployments, binding sets and hosts, desired next to observed.

Deployments and binding sets come from the agent's ``lattice/status`` branch (fetched
first when the repository has a remote: see :mod:`cli.view`; a warning line on stderr
when the agent cannot fetch its source: :func:`cli.view.source_warning`); hosts come live
from the lattice by ping, or from the status branch when NATS cannot be reached
(:mod:`cli.hosts`).
``-w`` keeps the
table live: the status branch is polled every :data:`WATCH_INTERVAL` seconds and a row is
printed for each entity whose status changed, as ``kubectl get -w`` does. Tables and the
``-o yaml|json`` documents are built by :mod:`cli.output`; docs/cli.md lists the columns
and the document schema.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import click

from cli.gantry_cmd import get_actors
from cli.hosts import hosts_of, print_hosts, select_hosts
from cli.output import (
    NONE,
    Entity,
    age,
    emit,
    entity_document,
    list_document,
    output_option,
    placed_hosts,
    ready_message,
    row_line,
    short,
    table,
    warn,
    widths,
)
from cli.servers_cmd import get_servers
from cli.settings import CliError, Settings
from cli.view import NO_STATUS, RepoView, complete_names, open_view, source_warning
from lattice.status import StatusReport

#: Seconds between two looks at the status branch under ``--watch``.
WATCH_INTERVAL = 0.5
#: Seconds between two fetches from the remote under ``--watch``.
WATCH_FETCH_INTERVAL = 2.0


class AliasGroup(click.Group):
    """A group whose commands also answer to aliases (``deploy``, ``bs``...)."""

    def __init__(self, *args: Any, aliases: dict[str, str] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.aliases = aliases or {}

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, self.aliases.get(cmd_name, cmd_name))


@dataclass(frozen=True)
class Kind:
    """How one kind of entity is found in a report and shown as a row."""

    kind: str
    singular: str
    headers: tuple[str, ...]
    entities: Callable[[StatusReport], dict[str, Entity]]
    counts: Callable[[Any], tuple[str, ...]]

    def row(self, e: Entity, *, wide: bool, now: datetime) -> list[str]:
        cells = [e.name, short(e.revision), *self.counts(e), str(e.phase), age(e.created, now)]
        if wide:
            cells += [placed_hosts(e.placements), ready_message(e.conditions) or NONE]
        return cells

    def all_headers(self, wide: bool) -> tuple[str, ...]:
        return (*self.headers, "HOSTS", "MESSAGE") if wide else self.headers


DEPLOYMENTS = Kind(
    "Deployment", "deployment", ("NAME", "REVISION", "ACTORS", "PROVIDERS", "STATUS", "AGE"),
    lambda r: dict(r.deployments),
    lambda d: (str(d.actors), str(d.providers)),
)
BINDINGSETS = Kind(
    "BindingSet", "bindingset", ("NAME", "REVISION", "BINDINGS", "STATUS", "AGE"),
    lambda r: dict(r.bindingsets),
    lambda b: (str(b.bindings),),
)


def select(kind: Kind, report: StatusReport, names: Sequence[str]) -> list[Entity]:
    """The named entities (all, sorted, without names); unknown names are an error."""
    found = kind.entities(report)
    if not names:
        return [found[n] for n in sorted(found)]
    missing = [n for n in names if n not in found]
    if missing:
        known = ", ".join(sorted(found)) or "none"
        raise CliError(f"{kind.singular} {', '.join(repr(m) for m in missing)} not found in "
                       f"the status (known: {known}); check the name, or `latticectl status` "
                       "to see whether the agent evaluated your last commit")
    return [found[n] for n in names]


def print_entities(kind: Kind, entities: Sequence[Entity], output: str | None, *,
                   single: bool) -> list[int]:
    """Print ``entities`` in ``output``; the column widths of the table, when one."""
    if output in ("yaml", "json"):
        docs = [entity_document(e) for e in entities]
        emit(docs[0] if single and len(docs) == 1 else list_document(docs), output)
        return []
    if output == "name":
        for e in entities:
            click.echo(f"{kind.singular}/{e.name}")
        return []
    if not entities:
        click.echo(f"No {kind.singular}s found.", err=True)
    wide = output == "wide"
    now = datetime.now(UTC)
    headers = kind.all_headers(wide)
    rows = [kind.row(e, wide=wide, now=now) for e in entities]
    for line in table(headers, rows):
        click.echo(line)
    return widths(headers, rows)


def _show(settings: Settings, kind: Kind, names: tuple[str, ...], output: str | None,
          watch: bool) -> None:
    with open_view(settings) as view:
        report = view.status()
        if report is None and not watch:
            view.require_status()
        entities: list[Entity] = []
        column_widths: list[int] = []
        if report is not None:
            for problem in (source_warning(report), view.freshness(report).warning(report)):
                if problem:
                    warn(problem)
            entities = select(kind, report, names)
            column_widths = print_entities(kind, entities, output,
                                           single=len(names) == 1 and not watch)
        else:
            warn(f"{NO_STATUS} Waiting for the first status commit (Ctrl-C stops).")
        if watch:
            _watch(view, kind, names, output, report, entities, column_widths)


def _watch(view: RepoView, kind: Kind, names: tuple[str, ...], output: str | None,
           report: StatusReport | None, entities: list[Entity],
           column_widths: list[int]) -> None:
    """Print a row (or document) for every entity whose status changes, until Ctrl-C."""
    wide = output == "wide"
    seen = {e.name: _fingerprint(kind, e, output) for e in entities}
    last: dict[str, Entity] = {e.name: e for e in entities}
    tips = view.status_tips()
    last_fetch = time.monotonic()
    last_warning: str | None = None
    headers_done = bool(column_widths) or output in ("yaml", "json", "name")
    try:
        while True:
            time.sleep(WATCH_INTERVAL)
            if view.remote is not None and time.monotonic() - last_fetch >= WATCH_FETCH_INTERVAL:
                last_fetch = time.monotonic()
                view.refresh(branch=report.summary.branch if report else None)
            now_tips = view.status_tips()
            if now_tips == tips:
                continue
            tips = now_tips
            report = view.status()
            if report is None:
                continue
            stale = view.freshness(report).warning(report)
            if stale and stale != last_warning:
                warn(stale)
            last_warning = stale
            found = kind.entities(report)
            wanted = names or tuple(sorted(set(found) | set(last)))
            changed: list[tuple[Entity, bool]] = []
            for name in wanted:
                entity = found.get(name)
                if entity is None:
                    if name in last:  # deleted since the last look
                        changed.append((last.pop(name), True))
                        seen.pop(name, None)
                    continue
                fp = _fingerprint(kind, entity, output)
                if seen.get(name) != fp:
                    seen[name] = fp
                    last[name] = entity
                    changed.append((entity, False))
            if not headers_done and changed and output not in ("yaml", "json", "name"):
                headers = kind.all_headers(wide)
                column_widths = widths(headers, [_row(kind, e, wide, gone)
                                                 for e, gone in changed])
                click.echo(row_line(column_widths, headers))
                headers_done = True
            for entity, gone in changed:
                _print_change(kind, entity, gone, output, column_widths)
    except KeyboardInterrupt:
        return


def _fingerprint(kind: Kind, e: Entity, output: str | None) -> tuple[str, ...]:
    """What a watcher considers a change: the row without its AGE for a table (a change
    the row does not show prints no row), the whole entity for documents."""
    if output in ("yaml", "json"):
        return (e.model_dump_json(),)
    row = kind.row(e, wide=output == "wide", now=datetime.now(UTC))
    del row[len(kind.headers) - 1]
    return tuple(row)


def _row(kind: Kind, e: Entity, wide: bool, gone: bool) -> list[str]:
    row = kind.row(e, wide=wide, now=datetime.now(UTC))
    if gone:
        row[kind.headers.index("STATUS")] = "Deleted"
    return row


def _print_change(kind: Kind, e: Entity, gone: bool, output: str | None,
                  column_widths: list[int]) -> None:
    if output in ("yaml", "json"):
        doc = entity_document(e)
        if gone:
            doc["status"]["phase"] = "Deleted"
        if output == "yaml":
            click.echo("---")
        emit(doc, output)
    elif output == "name":
        click.echo(f"{kind.singular}/{e.name}")
    else:
        click.echo(row_line(column_widths, _row(kind, e, output == "wide", gone)))


# ---------------------------------------------------------------- commands

@click.group("get", cls=AliasGroup, aliases={
    "deployment": "deployments", "deploy": "deployments",
    "bindingset": "bindingsets", "bindings": "bindingsets", "bs": "bindingsets",
    "host": "hosts", "actor": "actors",
})
def get_group() -> None:
    """Display deployments, binding sets or hosts: desired next to observed; or the actor
    modules in the registry.

    Aliases: deployment/deploy, bindingset/bindings/bs, host, actor.

    \b
    Examples:
      latticectl get deployments              # table from the lattice/status branch
      latticectl get deploy amazing-deployment -o yaml
      latticectl get bs -o wide               # adds HOSTS and MESSAGE
      latticectl get deployments -w           # a new row whenever a status changes
      latticectl get hosts                    # live by ping, else from the status branch
      latticectl get actors                   # modules in the registry (gantry)
    """


def _watch_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("-w", "--watch", is_flag=True,
                        help="After the table, print a row for every status change "
                             "(Ctrl-C stops).")(f)


@get_group.command("deployments")
@click.argument("names", nargs=-1, shell_complete=complete_names("deployments"))
@output_option()
@_watch_option
@click.pass_obj
def get_deployments(settings: Settings, names: tuple[str, ...], output: str | None,
                    watch: bool) -> None:
    """List deployments (or the named ones) with READY counts from the status branch.

    Columns: NAME, REVISION, ACTORS ready/desired, PROVIDERS ready/desired, STATUS, AGE;
    -o wide adds HOSTS and MESSAGE.

    \b
    Examples:
      latticectl get deployments
      latticectl get deployment amazing-deployment -o json | jq .status.phase
      latticectl get deploy -w
    """
    _show(settings, DEPLOYMENTS, names, output, watch)


@get_group.command("bindingsets")
@click.argument("names", nargs=-1, shell_complete=complete_names("bindingsets"))
@output_option()
@_watch_option
@click.pass_obj
def get_bindingsets(settings: Settings, names: tuple[str, ...], output: str | None,
                    watch: bool) -> None:
    """List binding sets (or the named ones) with applied/desired binding counts.

    Columns: NAME, REVISION, BINDINGS applied/desired, STATUS, AGE; -o wide adds HOSTS
    and MESSAGE.

    \b
    Examples:
      latticectl get bindingsets
      latticectl get bs amazing-bindings -o yaml
    """
    _show(settings, BINDINGSETS, names, output, watch)


@get_group.command("hosts")
@click.argument("names", nargs=-1, shell_complete=complete_names("hosts"))
@output_option()
@click.pass_obj
def get_hosts(settings: Settings, names: tuple[str, ...], output: str | None) -> None:
    """List the lattice's hosts: live by ping when NATS is reachable, else from the status
    branch (with a warning saying how old that is).

    Columns: NAME, ID, LABELS, UPTIME, ACTORS, PROVIDERS; -o wide adds BINDINGS,
    LAST-SEEN and SERVER (the NATS server each host is connected to). NAMES may be host
    names or (prefixes of) host ids.

    \b
    Examples:
      latticectl get hosts
      latticectl --nats-url nats://10.0.0.5:4222 get hosts -o wide
      latticectl get host pi -o json
    """
    hosts, source, servers = hosts_of(settings)
    print_hosts(select_hosts(hosts, names), source, output, single=len(names) == 1,
                servers=servers)


get_group.add_command(get_actors)
get_group.add_command(get_servers)

COMMANDS: list[click.Command] = [get_group]
