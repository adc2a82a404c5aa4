"""The dashboard's view models: the status report, the hosts and the events as the pages
show them. Pure: no I/O, the clock passed in.

Every phase is shown as a word with a colour (:func:`phase_class`), never a colour alone;
every deployment has one colour (:func:`owner_colour`) wherever its actors and providers
appear in the lattice picture, with its name beside it.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlencode

import yaml

from cli.output import age, short
from lattice.protocol import ANN_NAME, CloudEvent, HostInventory, is_managed
from lattice.status import (
    BindingSetStatus,
    CommitSignature,
    DeploymentStatus,
    Phase,
    Placement,
    StatusReport,
    find_condition,
)
from reconciler.matching import OWNER_SEPARATOR

Entity = DeploymentStatus | BindingSetStatus

#: How many characters of an actor's id a box shows (the whole id is in its title).
ACTOR_CHARS = 12
#: Owner colours in static/dashboard.css.
HUES = 36


def phase_class(phase: str) -> str:
    """The CSS class of a phase badge: ``phase-synced``, ``phase-degraded``... Pure."""
    return "phase-" + (phase.lower() or "unknown")


def owner_colour(name: str) -> str:
    """The CSS class of one owner's colour, ``hue-0`` .. ``hue-35`` (static/dashboard.css:
    light backgrounds that dark text passes WCAG AA on), the same on every page and run (a
    hash of the name). Pure."""
    return f"hue-{zlib.crc32(name.encode()) % HUES}"


@dataclass(frozen=True)
class EntityRow:
    """One row of the overview's deployments or binding sets table."""

    kind: str  #: ``deployment`` or ``bindingset``
    name: str
    phase: str
    ready: str  #: ``ready/desired`` over all its actors and providers (or bindings)
    detail: str  #: ``actors 2/2, providers 1/1`` (or ``bindings 3/3``)
    revision: str
    age: str
    message: str
    colour: str

    @property
    def href(self) -> str:
        return f"/{self.kind}s/{self.name}"


def entity_row(e: Entity, now: datetime) -> EntityRow:
    """The overview row of one deployment or binding set. Pure."""
    if isinstance(e, DeploymentStatus):
        kind = "deployment"
        ready = e.actors.ready + e.providers.ready
        desired = e.actors.desired + e.providers.desired
        detail = f"actors {e.actors}, providers {e.providers}"
    else:
        kind = "bindingset"
        ready, desired = e.bindings.ready, e.bindings.desired
        detail = f"bindings {e.bindings}"
    cond = find_condition(e.conditions, "Ready")
    return EntityRow(kind, e.name, str(e.phase), f"{ready}/{desired}", detail,
                     short(e.revision), age(e.created, now), cond.message if cond else "",
                     owner_colour(e.name))


def entity_rows(entities: Mapping[str, Entity], now: datetime) -> list[EntityRow]:
    """Rows sorted by name. Pure."""
    return [entity_row(entities[n], now) for n in sorted(entities)]


#: The overview's order: what needs attention first.
SEVERITY = {Phase.INVALID.value: 0, Phase.DEGRADED.value: 1, Phase.PROGRESSING.value: 2,
            Phase.SUPERSEDED.value: 3, Phase.SYNCED.value: 4}
#: Rows of a table on one overview page: ``curl /`` names every deployment of a lattice
#: up to this size.
PAGE_SIZE = 1000
#: Rows of one chunk of a table: the chunks past the first are laid out only when they
#: scroll into view (CSS ``content-visibility``), so a long page paints as fast as a short.
CHUNK = 50


@dataclass(frozen=True)
class Filter:
    """What the overview shows: a name substring, one phase, a page (from 1)."""

    text: str = ""
    phase: str = ""
    page: int = 1

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> Filter:
        """From a URL's query; what does not fit is ignored. Pure."""
        phase = query.get("phase", "")
        try:
            page = max(1, min(int(query.get("page", "1")), 100_000))
        except ValueError:
            page = 1
        return cls(query.get("q", "")[:100], phase if phase in SEVERITY else "", page)

    def query(self, **change: object) -> str:
        """This filter as a query string (``q=..&phase=..&page=..``, defaults left out),
        with ``change`` applied. Pure."""
        values = {"q": self.text, "phase": self.phase, "page": self.page, **change}
        return urlencode({k: v for k, v in values.items()
                          if v and not (k == "page" and v == 1)})

    @property
    def active(self) -> bool:
        return bool(self.text or self.phase)


@dataclass(frozen=True)
class Table:
    """One page of rows, and what it was cut from."""

    rows: tuple[EntityRow, ...]
    total: int  #: rows before the filter
    matched: int  #: rows the filter kept
    first: int  #: 1-based index of the first row shown (0 when none)
    page: int
    pages: int
    counts: tuple[tuple[str, int], ...]  #: rows per phase, before the filter

    @property
    def chunks(self) -> list[tuple[EntityRow, ...]]:
        """The rows in runs of :data:`CHUNK`."""
        return [self.rows[i:i + CHUNK] for i in range(0, len(self.rows), CHUNK)]


def table(rows: Sequence[EntityRow], f: Filter, size: int = PAGE_SIZE) -> Table:
    """Rows kept by ``f``, what needs attention first (then by name), cut to ``f.page``.
    Pure."""
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.phase] = counts.get(r.phase, 0) + 1
    text = f.text.lower()
    kept = [r for r in rows if (not f.phase or r.phase == f.phase)
            and (not text or text in r.name.lower())]
    kept.sort(key=lambda r: (SEVERITY.get(r.phase, 5), r.name))
    pages = max(1, -(-len(kept) // size))
    page = min(f.page, pages)
    start = (page - 1) * size
    shown = tuple(kept[start:start + size])
    order = sorted(counts, key=lambda p: SEVERITY.get(p, 5))
    return Table(shown, len(rows), len(kept), start + 1 if shown else 0, page, pages,
                 tuple((p, counts[p]) for p in order))


@dataclass(frozen=True)
class SourceView:
    """The repository side of the overview: what HEAD is and what the agent made of it."""

    branch: str
    head: str  #: short sha of the branch HEAD, ``-`` when unknown
    head_subject: str
    evaluated: str  #: short sha of the revision the agent evaluated last
    evaluated_phase: str
    applied: str
    in_sync: bool  #: the agent has evaluated HEAD
    signature: str  #: ``good (signer)``, ``unsigned``..., or ``not verified``
    source_ready: bool
    source_message: str
    updated: str  #: how long ago the agent wrote the status
    agent_version: str
    message: str
    errors: tuple[str, ...] = ()


def source_view(report: StatusReport | None, *, branch: str, head: str | None,
                head_subject: str, evaluated: bool, signature: CommitSignature | None,
                now: datetime) -> SourceView:
    """The source panel. ``signature`` is the verdict in the agent's note on the revision
    it evaluated (None: commits are not verified, or the note is not read yet). Pure."""
    sig = "not verified"
    if signature is not None:
        s = signature
        sig = f"{s.state.value} ({s.signer})" if s.signer else s.state.value
    if report is None:
        return SourceView(branch, short(head), head_subject, "-", "", "-", False, sig, True,
                          "", "-", "", "no status yet: is the agent running?")
    summary = report.summary
    cond = summary.source_ready
    return SourceView(
        branch=branch, head=short(head), head_subject=head_subject,
        evaluated=short(summary.attempted_revision), evaluated_phase=str(summary.phase),
        applied=short(summary.applied_revision), in_sync=evaluated, signature=sig,
        source_ready=cond is None or cond.status,
        source_message=cond.message if cond is not None else "",
        updated=age(summary.updated, now) if summary.updated else "-",
        agent_version=summary.agent_version, message=summary.message,
        errors=tuple(summary.errors[:20]))


# ---------------------------------------------------------------- the lattice picture

@dataclass(frozen=True)
class EntityBox:
    """One actor instance or provider in a host's box."""

    kind: str  #: ``actor`` or ``provider``
    ref: str  #: the actor id, or ``capability_id/binding_name``
    label: str
    owners: tuple[str, ...]  #: the deployments that own it; empty when unmanaged
    colour: str | None

    @property
    def owner(self) -> str:
        return " ".join(self.owners)

    @property
    def managed(self) -> bool:
        return bool(self.owners)


@dataclass(frozen=True)
class HostSeen:
    """A host as the dashboard last heard from it."""

    inventory: HostInventory
    answering: bool
    last_seen: datetime


@dataclass(frozen=True)
class HostBox:
    host_id: str
    name: str
    labels: tuple[tuple[str, str], ...]
    state: str  #: ``up`` or ``gone``
    last_seen: str
    server: str
    entities: tuple[EntityBox, ...]


@dataclass(frozen=True)
class Group:
    value: str  #: the label's value; empty for hosts without the label
    hosts: tuple[HostBox, ...] = field(default_factory=tuple)


def _owners(annotations: dict[str, str]) -> tuple[str, ...]:
    if not is_managed(annotations):
        return ()
    return tuple(n for n in annotations.get(ANN_NAME, "").split(OWNER_SEPARATOR) if n)


def _box(kind: str, ref: str, label: str, annotations: dict[str, str]) -> EntityBox:
    owners = _owners(annotations)
    return EntityBox(kind, ref, label, owners, owner_colour(owners[0]) if owners else None)


def host_box(seen: HostSeen, now: datetime) -> HostBox:
    """One host's box: its actors (one per instance) and providers. Pure."""
    inv = seen.inventory
    actors = [_box("actor", a.actor_id, a.actor_id[:ACTOR_CHARS], a.annotations)
              for a in sorted(inv.actors, key=lambda a: (a.actor_id, a.instance_id))]
    providers = [_box("provider", f"{p.capability_id}/{p.binding_name}",
                      f"{p.capability_id} ({p.binding_name})", p.annotations)
                 for p in sorted(inv.providers, key=lambda p: (p.capability_id,
                                                                p.binding_name))]
    labels = tuple(sorted((k, v) for k, v in inv.labels.items()
                          if not k.startswith("hostcore.")))
    return HostBox(inv.host_id, inv.name, labels, "up" if seen.answering else "gone",
                   age(seen.last_seen, now), inv.server or "", (*actors, *providers))


def picture(hosts: Iterable[HostSeen], group_by: str, now: datetime) -> list[Group]:
    """Hosts grouped by the value of their label ``group_by`` (groups sorted, hosts
    without the label last; hosts by name). Pure."""
    groups: dict[str, list[HostBox]] = {}
    for seen in hosts:
        value = seen.inventory.labels.get(group_by, "") if group_by else ""
        groups.setdefault(value, []).append(host_box(seen, now))
    order = sorted(groups, key=lambda v: (v == "", v))
    return [Group(v, tuple(sorted(groups[v], key=lambda h: (h.name, h.host_id))))
            for v in order]


def label_keys(hosts: Iterable[HostSeen]) -> list[str]:
    """Every label key the hosts carry (the ``group by`` choices). Pure."""
    return sorted({k for h in hosts for k in h.inventory.labels
                   if not k.startswith("hostcore.")})


# ---------------------------------------------------------------- one entity's page

@dataclass(frozen=True)
class PlacementRow:
    kind: str
    entity: str
    host_id: str
    host: str
    since: str
    reason: str


def placement_rows(placements: Sequence[Placement], now: datetime) -> list[PlacementRow]:
    """Placed first (by host), then the unplaced with why. Pure."""
    rows = [PlacementRow(p.kind, p.entity, p.host_id or "", p.host_name or short(p.host_id),
                         age(p.since, now) if p.since else "-",
                         p.message or ("placed" if p.host_id else "not placed yet"))
            for p in placements]
    return sorted(rows, key=lambda r: (not r.host_id, r.host, r.kind, r.entity))


def manifest_yaml(e: Entity) -> str:
    """The entity's spec (with its labels) as YAML, the way it was written. Pure."""
    doc: dict[str, object] = {}
    if e.labels:
        doc["labels"] = dict(e.labels)
    if e.annotations:
        doc["annotations"] = dict(e.annotations)
    doc["spec"] = e.spec
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)


@dataclass(frozen=True)
class HistoryRow:
    """One status-branch commit that changed an entity."""

    when: str
    revision: str  #: the full sha of the manifests' revision
    phase: str
    ready: str
    message: str
    author: str
    previous: str  #: the older revision, for the diff link; empty for the oldest


def with_previous(rows: Sequence[HistoryRow]) -> list[HistoryRow]:
    """Rows (newest first) with each one's ``previous``: the next older different
    revision. Pure."""
    out = []
    for i, row in enumerate(rows):
        older = next((r.revision for r in rows[i + 1:] if r.revision != row.revision), "")
        out.append(HistoryRow(row.when, row.revision, row.phase, row.ready, row.message,
                              row.author, older))
    return out


# ---------------------------------------------------------------- events

@dataclass(frozen=True)
class EventRow:
    time: str
    type: str
    host: str
    what: str
    reason: str


def event_row(ev: CloudEvent) -> EventRow:
    """One line of the live feed. Pure."""
    d = ev.data
    et = ev.event_type
    kind = et.value if et else ev.type
    what = d.get("actor_id", "")[:ACTOR_CHARS] if "actor_id" in d else ""
    if "capability_id" in d:
        cap = f"{d.get('capability_id')}/{d.get('binding_name', 'default')}"
        what = f"{what} -> {cap}" if what else cap
    host = str(d.get("name") or str(d.get("host_id", ev.source))[:ACTOR_CHARS])
    return EventRow(f"{ev.time:%H:%M:%S}", kind, host, what, str(d.get("reason") or ""))


PHASES = tuple(p.value for p in Phase)
