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
from cli.hosts import host_section, hosts_of, select_hosts
from cli.listing import Listing, Resource, Section, listing_options, split_output
from cli.output import (
    NONE,
    Entity,
    NotFound,
    age,
    emit,
    entity_document,
    labels_of,
    placed_hosts,
    ready_message,
    row_line,
    short,
    warn,
    widths,
)
from cli.selector import LabelQuery
from cli.servers_cmd import get_servers
from cli.settings import Settings
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


class GetGroup(AliasGroup):
    """``get``'s group: a first word that is ``all``, a comma list of kinds or a
    ``TYPE/NAME`` goes, with the words after it, to :mod:`cli.get_all`."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        from cli.get_all import get_resources, is_resource_list

        if is_resource_list(cmd_name):
            return get_resources
        return super().get_command(ctx, cmd_name)

    def resolve_command(self, ctx: click.Context, args: list[str]
                        ) -> tuple[str | None, click.Command | None, list[str]]:
        from cli.get_all import get_resources, is_resource_list

        if args and is_resource_list(args[0]):  # the word is the command's first argument
            return args[0], get_resources, args
        return super().resolve_command(ctx, args)


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

    def resource(self, e: Entity, *, wide: bool, now: datetime) -> Resource:
        return Resource(self.singular, e.name, entity_document(e),
                        list(self.row(e, wide=wide, now=now)), labels_of(e))

    def section(self, entities: Sequence[Entity], *, wide: bool, now: datetime) -> Section:
        return Section(self.singular, self.all_headers(wide),
                       [self.resource(e, wide=wide, now=now) for e in entities])


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


def select(kind: Kind, report: StatusReport, names: Sequence[str],
           query: LabelQuery | None = None) -> list[Entity]:
    """The named entities (all, sorted, without names), whose labels match ``query``;
    unknown names are an error (exit 1, as kubectl's NotFound)."""
    found = kind.entities(report)
    if not names:
        return [found[n] for n in sorted(found)
                if query is None or query.matches(labels_of(found[n]))]
    missing = [n for n in names if n not in found]
    if missing:
        known = ", ".join(sorted(found)) or "none"
        raise NotFound(f"{kind.singular} {', '.join(repr(m) for m in missing)} not found in "
                       f"the status (known: {known}); check the name, or `latticectl status` "
                       "to see whether the agent evaluated your last commit")
    return [found[n] for n in names]


def print_entities(kind: Kind, entities: Sequence[Entity], listing: Listing, *,
                   single: bool) -> list[int]:
    """Print ``entities`` as ``listing`` says; the column widths of the table, when one
    (``-w`` lines its rows up with them)."""
    section = kind.section(entities, wide=listing.wide, now=datetime.now(UTC))
    listing.print([section], single=single, empty=f"No {kind.singular}s found.")
    if split_output(listing.output)[0] not in (None, "wide"):
        return []
    headers = [""] * len(section.headers) if listing.no_headers else section.headers
    return widths(headers, [r.cells for r in listing.arrange(section).items])


def _show(settings: Settings, kind: Kind, names: tuple[str, ...], listing: Listing,
          watch: bool) -> None:
    if names and listing.selector is not None:
        raise click.UsageError("a name and -l/--selector cannot be combined: name the "
                               "resources or select them by label")
    fmt, _ = split_output(listing.output)
    if watch and fmt in ("jsonpath", "custom-columns"):
        raise click.UsageError("-w prints tables, wide, yaml, json or name; not " + str(fmt))
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
            entities = select(kind, report, names, listing.selector)
            column_widths = print_entities(kind, entities, listing,
                                           single=len(names) == 1 and not watch)
        else:
            warn(f"{NO_STATUS} Waiting for the first status commit (Ctrl-C stops).")
        if watch:
            _watch(view, kind, names, listing, report, entities, column_widths)


def _watch(view: RepoView, kind: Kind, names: tuple[str, ...], listing: Listing,
           report: StatusReport | None, entities: list[Entity],
           column_widths: list[int]) -> None:
    """Print a row (or document) for every entity whose status changes, until Ctrl-C."""
    output = listing.output
    wide = output == "wide"
    seen = {e.name: _fingerprint(kind, e, output) for e in entities}
    last: dict[str, Entity] = {e.name: e for e in entities}
    tips = view.status_tips()
    last_fetch = time.monotonic()
    last_warning: str | None = None
    headers_done = (bool(column_widths) or listing.no_headers
                    or output in ("yaml", "json", "name"))
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
            found = {e.name: e for e in select(kind, report, (), listing.selector)}
            wanted = names or tuple(sorted(set(found) | set(last)))
            changed: list[tuple[Entity, bool]] = []
            for name in wanted:
                entity = found.get(name)
                if entity is None:
                    if name in last:  # deleted (or no longer selected) since the last look
                        changed.append((last.pop(name), True))
                        seen.pop(name, None)
                    continue
                fp = _fingerprint(kind, entity, output)
                if seen.get(name) != fp:
                    seen[name] = fp
                    last[name] = entity
                    changed.append((entity, False))
            if not column_widths and changed and output not in ("yaml", "json", "name"):
                headers = kind.all_headers(wide)
                column_widths = widths(headers, [_row(kind, e, wide, gone)
                                                 for e, gone in changed])
                if not headers_done:
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

@click.group("get", cls=GetGroup, aliases={
    "deployment": "deployments", "deploy": "deployments",
    "bindingset": "bindingsets", "bindings": "bindingsets", "bs": "bindingsets",
    "host": "hosts", "actor": "actors", "server": "servers",
})
def get_group() -> None:
    """Display deployments, binding sets or hosts: desired next to observed; or the actor
    modules in the registry, or the nats-servers `latticectl up` started.

    Aliases: deployment/deploy, bindingset/bindings/bs, host, actor, server. As kubectl:
    `get all` (deployments, binding sets, hosts), `get deploy,bs` (a comma list of kinds),
    `get deployment/NAME host/NAME` (TYPE/NAME words); -l selects by label, --sort-by,
    --no-headers, -o jsonpath=... and -o custom-columns=... work on every list.

    \b
    Examples:
      latticectl get deployments              # table from the lattice/status branch
      latticectl get deploy amazing-deployment -o yaml
      latticectl get bs -o wide               # adds HOSTS and MESSAGE
      latticectl get deployments -w           # a new row whenever a status changes
      latticectl get hosts                    # live by ping, else from the status branch
      latticectl get all -l app=web           # every kind, selected by label
      latticectl get deploy,bs -o name
      latticectl get deployment/web -o jsonpath='{.status.phase}'
      latticectl get actors                   # modules in the registry (gantry)
    """


def _watch_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("-w", "--watch", is_flag=True,
                        help="After the table, print a row for every status change "
                             "(Ctrl-C stops).")(f)


@get_group.command("deployments")
@click.argument("names", nargs=-1, shell_complete=complete_names("deployments"))
@_watch_option
@listing_options
@click.pass_obj
def get_deployments(settings: Settings, names: tuple[str, ...], listing: Listing,
                    watch: bool) -> None:
    """List deployments (or the named ones) with READY counts from the status branch.

    Columns: NAME, REVISION, ACTORS ready/desired, PROVIDERS ready/desired, STATUS, AGE;
    -o wide adds HOSTS and MESSAGE.

    \b
    Examples:
      latticectl get deployments
      latticectl get deployment amazing-deployment -o json | jq .status.phase
      latticectl get deploy -l app=web --sort-by=.status.actors.ready
      latticectl get deploy -o jsonpath='{.items[*].metadata.name}'
      latticectl get deploy -o custom-columns=NAME:.metadata.name,PHASE:.status.phase
      latticectl get deploy -w
    """
    _show(settings, DEPLOYMENTS, names, listing, watch)


@get_group.command("bindingsets")
@click.argument("names", nargs=-1, shell_complete=complete_names("bindingsets"))
@_watch_option
@listing_options
@click.pass_obj
def get_bindingsets(settings: Settings, names: tuple[str, ...], listing: Listing,
                    watch: bool) -> None:
    """List binding sets (or the named ones) with applied/desired binding counts.

    Columns: NAME, REVISION, BINDINGS applied/desired, STATUS, AGE; -o wide adds HOSTS
    and MESSAGE.

    \b
    Examples:
      latticectl get bindingsets
      latticectl get bs amazing-bindings -o yaml
      latticectl get bs -l 'app in (web,api)' --no-headers
    """
    _show(settings, BINDINGSETS, names, listing, watch)


@get_group.command("hosts")
@click.argument("names", nargs=-1, shell_complete=complete_names("hosts"))
@listing_options
@click.pass_obj
def get_hosts(settings: Settings, names: tuple[str, ...], listing: Listing) -> None:
    """List the lattice's hosts: live by ping when NATS is reachable, else from the status
    branch (with a warning saying how old that is).

    Columns: NAME, ID, LABELS, UPTIME, ACTORS, PROVIDERS; -o wide adds BINDINGS,
    LAST-SEEN and SERVER (the NATS server each host is connected to). NAMES may be host
    names or (prefixes of) host ids. -l selects by the hosts' labels (the built-in
    hostcore.* ones included); paths address the -o json document of a host, whose
    fields are at the top (.name, .labels.zone).

    \b
    Examples:
      latticectl get hosts
      latticectl --nats-url nats://10.0.0.5:4222 get hosts -o wide
      latticectl get host pi -o json
      latticectl get hosts -l zone=eu --sort-by=.started_at
    """
    if names and listing.selector is not None:
        raise click.UsageError("a name and -l/--selector cannot be combined: name the "
                               "hosts or select them by label")
    hosts, source, servers = hosts_of(settings)
    section = host_section(select_hosts(hosts, names), source, wide=listing.wide,
                           servers=servers)
    listing.print([section], single=len(names) == 1, empty="No hosts found.")


get_group.add_command(get_actors)
get_group.add_command(get_servers)

COMMANDS: list[click.Command] = [get_group]
