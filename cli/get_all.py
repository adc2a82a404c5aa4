"""``latticectl get all``, ``get deploy,bs`` and ``get deployment/NAME``: several kinds at once.

kubectl's forms of naming what to get, beside ``get KIND [NAME...]`` (:mod:`cli.get_cmd`):
``all`` (deployments, binding sets and hosts), a comma list of kinds (``deploy,bs,hosts``,
``servers`` too), and ``TYPE/NAME`` tokens (``deployment/web bs/web-bindings host/pi``).
:class:`cli.get_cmd.GetGroup` routes a first word with a comma or a slash, or ``all``,
to :data:`get_resources`, which gathers a :class:`~cli.listing.Section` per kind and prints
them through :class:`~cli.listing.Listing`: a table per kind with ``kind/name`` in NAME
when more than one kind is shown, one ``List`` for ``-o yaml|json|jsonpath``. Kinds are
gathered in the order asked; deployments and binding sets from the status branch (read
once), hosts live by ping (else from the branch), servers from ``latticectl up``'s state.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import click

from cli.get_cmd import BINDINGSETS, DEPLOYMENTS, select
from cli.hosts import host_section, hosts_of, select_hosts
from cli.listing import Listing, Section, listing_options
from cli.output import NotFound, warn
from cli.servers_cmd import server_section
from cli.settings import Settings
from cli.view import open_view, source_warning
from lattice.status import StatusReport

#: Every word that names a kind in a list or a TYPE/NAME, -> the kind's plural.
KIND_WORDS = {
    "deployments": "deployments", "deployment": "deployments", "deploy": "deployments",
    "bindingsets": "bindingsets", "bindingset": "bindingsets", "bindings": "bindingsets",
    "bs": "bindingsets",
    "hosts": "hosts", "host": "hosts",
    "servers": "servers", "server": "servers",
}
#: What ``all`` means, as kubectl's ``all`` category (servers are local, not the lattice's).
ALL = ("deployments", "bindingsets", "hosts")


def is_resource_list(word: str) -> bool:
    """Whether ``get WORD`` is one of this module's forms rather than a kind."""
    return word == "all" or "," in word or "/" in word


def _kind(word: str) -> str:
    kind = KIND_WORDS.get(word.strip().lower())
    if kind is None:
        raise click.UsageError(f"unknown resource type {word!r}; one of deployments "
                               "(deploy), bindingsets (bs), hosts, servers, or all")
    return kind


def parse_resources(words: Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
    """(kind, names) per kind asked for, in order, kinds once; no names: every one.

    >>> parse_resources(["deploy,bs"])
    [('deployments', ()), ('bindingsets', ())]
    >>> parse_resources(["deployment/web", "host/pi", "deploy/api"])
    [('deployments', ('web', 'api')), ('hosts', ('pi',))]

    Pure; a :class:`click.UsageError` for an unknown kind, or for names after a list of
    kinds (``get deploy,bs web``: say ``deploy/web`` instead)."""
    if "/" in words[0]:
        named: dict[str, list[str]] = {}
        for word in words:
            kind, slash, name = word.partition("/")
            if not slash or not name:
                raise click.UsageError(f"{word!r}: mix no TYPE/NAME with other forms; write "
                                       "every resource as TYPE/NAME")
            names = named.setdefault(_kind(kind), [])
            if name not in names:
                names.append(name)
        return [(k, tuple(v)) for k, v in named.items()]
    if len(words) > 1:
        raise click.UsageError(f"names after {words[0]!r}: name each resource as TYPE/NAME "
                               f"(e.g. deployment/{words[1]})")
    kinds: list[str] = []
    for word in words[0].split(","):
        for kind in ALL if word.strip() == "all" else (_kind(word),):
            if kind not in kinds:
                kinds.append(kind)
    return [(k, ()) for k in kinds]


def gather(settings: Settings, asked: Sequence[tuple[str, tuple[str, ...]]], *,
           wide: bool) -> list[Section]:
    """A section per kind of ``asked`` (unknown names are :class:`NotFound`)."""
    report: StatusReport | None = None
    if any(k in ("deployments", "bindingsets") for k, _ in asked):
        with open_view(settings) as view:
            report = view.require_status()
            for problem in (source_warning(report), view.freshness(report).warning(report)):
                if problem:
                    warn(problem)
    now = datetime.now(UTC)
    sections = []
    for kind, names in asked:
        if kind in ("deployments", "bindingsets"):
            assert report is not None
            entity_kind = DEPLOYMENTS if kind == "deployments" else BINDINGSETS
            sections.append(entity_kind.section(select(entity_kind, report, names),
                                                wide=wide, now=now))
        elif kind == "hosts":
            hosts, source, servers = hosts_of(settings)
            sections.append(host_section(select_hosts(hosts, names), source, wide=wide,
                                         servers=servers, now=now))
        else:
            section = server_section(settings, wide=wide)
            missing = [n for n in names if n not in {r.name for r in section.items}]
            if missing:
                known = ", ".join(r.name for r in section.items) or "none"
                raise NotFound(f"server {', '.join(map(repr, missing))} not found "
                               f"(known: {known})")
            if names:
                section = Section(section.kind, section.headers,
                                  [r for r in section.items if r.name in names])
            sections.append(section)
    return sections


@click.command("resources")
@click.argument("resources", nargs=-1, required=True)
@listing_options
@click.pass_obj
def get_resources(settings: Settings, resources: tuple[str, ...], listing: Listing) -> None:
    """List several kinds at once: `all`, a comma list of kinds, or TYPE/NAME words.

    \b
    Examples:
      latticectl get all
      latticectl get deploy,bs -l app=web
      latticectl get deployment/web bs/web-bindings -o yaml
    """
    asked = parse_resources(resources)
    named = [n for _, names in asked for n in names]
    if named and listing.selector is not None:
        raise click.UsageError("a name and -l/--selector cannot be combined: name the "
                               "resources or select them by label")
    sections = gather(settings, asked, wide=listing.wide)
    listing.print(sections, single=len(resources) == 1 and len(named) == 1,
                  prefix=len(asked) > 1)
