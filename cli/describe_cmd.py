"""``latticectl describe``: one deployment or binding set in full, for a human.

Everything :mod:`cli.get_cmd` shows in a row, plus the spec, where each entity runs (host,
since when), why what is unplaced could not be placed (the hosts' decline reasons), the
conditions, the entity's recent history (the status-branch commits that changed it) and
the lattice events about it seen while listening for ``--events-for`` seconds (skipped,
with a note, when NATS is not configured or not reachable).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import click
import yaml

from cli.events_cmd import listen
from cli.get_cmd import BINDINGSETS, DEPLOYMENTS, AliasGroup, Kind, select
from cli.output import (
    NONE,
    Entity,
    age,
    annotations_of,
    kind_of,
    labels_of,
    labels_text,
    short,
    spec_of,
    table,
    warn,
)
from cli.reach import cannot_reach
from cli.settings import Settings
from cli.up_cmd import format_event
from cli.view import RepoView, complete_names, open_view
from lattice.durations import DURATION
from lattice.errors import VinculumError
from lattice.protocol import ANN_KIND, ANN_NAME, CloudEvent, EventType
from lattice.status import BindingSetStatus, DeploymentStatus
from reconciler.matching import OWNER_SEPARATOR

#: How many status-branch commits of an entity ``describe`` shows.
HISTORY = 10
INDENT = "  "


def _field(label: str, value: object) -> str:
    return f"{label + ':':<14}{value}"


def _when(t: datetime | None, now: datetime) -> str:
    return f"{t:%Y-%m-%dT%H:%M:%SZ} ({age(t, now)} ago)" if t else "<unknown>"


def header_lines(e: Entity, now: datetime) -> list[str]:
    lines = [
        _field("Name", e.name),
        _field("Kind", kind_of(e)),
        _field("Labels", labels_text(labels_of(e))),
        _field("Annotations", labels_text(annotations_of(e))),
        _field("Revision", e.revision or "-"),
        _field("Status", e.phase),
        _field("Created", _when(e.created, now)),
    ]
    if isinstance(e, DeploymentStatus):
        lines += [_field("Actors", f"{e.actors} ready"),
                  _field("Providers", f"{e.providers} ready")]
    elif isinstance(e, BindingSetStatus):
        lines.append(_field("Bindings", f"{e.bindings} applied"))
    return lines


def spec_lines(e: Entity) -> list[str]:
    spec = spec_of(e)
    if not spec:
        return ["Spec:", f"{INDENT}{NONE}"]
    text = yaml.safe_dump(spec, sort_keys=False, default_flow_style=False).rstrip("\n")
    return ["Spec:", *(INDENT + line for line in text.splitlines())]


def placement_lines(e: Entity, now: datetime) -> list[str]:
    placed = [p for p in e.placements if p.host_id]
    unplaced = [p for p in e.placements if not p.host_id]
    out = ["Placements:"]
    if placed:
        rows = [[p.kind, p.entity, p.host_name or short(p.host_id), age(p.since, now),
                 p.message] for p in placed]
        out += [INDENT + line for line in table(
            ("KIND", "ENTITY", "HOST", "SINCE", "MESSAGE"), rows)]
    else:
        out.append(f"{INDENT}{NONE}")
    if unplaced:
        out.append("Unplaced:")
        out += [f"{INDENT}{p.kind} {p.entity}: {p.message or 'not placed yet'}"
                for p in unplaced]
    return out


def condition_lines(e: Entity, now: datetime) -> list[str]:
    if not e.conditions:
        return ["Conditions:", f"{INDENT}{NONE}"]
    rows = [[c.type, str(c.status), c.reason, age(c.last_transition, now)
             if c.last_transition else "-", c.message] for c in e.conditions]
    return ["Conditions:", *(INDENT + line for line in table(
        ("TYPE", "STATUS", "REASON", "AGE", "MESSAGE"), rows))]


def history_lines(view: RepoView, kind: Kind, e: Entity, now: datetime) -> list[str]:
    """The status-branch commits that changed this entity, newest first."""
    folder = "deployments" if kind is DEPLOYMENTS else "bindingsets"
    rows = []
    for c, old in view.entity_history(folder, e.name, limit=HISTORY):
        if old is None:
            rows.append([age(c.time, now), "-", "Deleted", "", ""])
            continue
        counts = " ".join(f"{h.lower()} {v}" for h, v in
                          zip(kind.headers[2:-2], kind.counts(old), strict=True))
        message = next((x.message for x in old.conditions if x.type == "Ready"), "")
        rows.append([age(c.time, now), short(old.revision), str(old.phase), counts, message])
    if not rows:
        return ["History:", f"{INDENT}{NONE}"]
    return ["History:", *(INDENT + line for line in table(
        ("AGE", "REVISION", "STATUS", "READY", "MESSAGE"), rows))]


def concerns(ev: CloudEvent, kind: str, name: str) -> bool:
    """True when the event is about something the agent started for ``kind``/``name``
    (a shared provider names all its owner deployments)."""
    ann = ev.data.get("annotations")
    if not isinstance(ann, dict) or ann.get(ANN_KIND) != kind:
        return False
    return name in str(ann.get(ANN_NAME, "")).split(OWNER_SEPARATOR)


def event_lines(settings: Settings, e: Entity, seconds: float) -> list[str]:
    if seconds <= 0:
        return []
    if not settings.nats_url:
        return ["Events:", f"{INDENT}(not shown: no NATS URL configured; pass --nats-url)"]
    seen: list[CloudEvent] = []
    kind = kind_of(e)

    def on_event(ev: CloudEvent) -> None:
        if ev.event_type is not EventType.HOST_HEARTBEAT and concerns(ev, kind, e.name):
            seen.append(ev)

    try:  # the full options (credentials, CA), as every other command connects
        asyncio.run(listen(settings.nats(), settings.lattice, on_event, seconds=seconds))
    except (OSError, ConnectionError, TimeoutError, VinculumError) as exc:
        return ["Events:", f"{INDENT}(not shown: {cannot_reach(settings.nats_url, exc)})"]
    if not seen:
        return [f"Events (live, {seconds:g}s):", f"{INDENT}{NONE}"]
    return [f"Events (live, {seconds:g}s):", *(INDENT + format_event(ev) for ev in seen)]


def describe_entity(settings: Settings, kind: Kind, name: str, events_for: float) -> None:
    with open_view(settings) as view:
        report = view.require_status()
        stale = view.freshness(report).warning(report)
        if stale:
            warn(stale)
        [entity] = select(kind, report, [name])
        now = datetime.now(UTC)
        lines = [*header_lines(entity, now), *spec_lines(entity),
                 *placement_lines(entity, now), *condition_lines(entity, now),
                 *history_lines(view, kind, entity, now)]
    for line in lines:
        click.echo(line)
    for line in event_lines(settings, entity, events_for):
        click.echo(line)


@click.group("describe", cls=AliasGroup, aliases={
    "deployments": "deployment", "deploy": "deployment",
    "bindingsets": "bindingset", "bindings": "bindingset", "bs": "bindingset",
})
def describe_group() -> None:
    """Show one deployment or binding set in detail: spec, placements, conditions,
    history, and the events about it seen live while listening for --events-for seconds
    (the lattice keeps no past events; the history is the status branch's).

    \b
    Examples:
      latticectl describe deployment amazing-deployment
      latticectl describe bs amazing-bindings --events-for 0
    """


def _events_option(f: click.decorators.FC) -> click.decorators.FC:
    return click.option("--events-for", type=DURATION, default=1.0,
                        show_default=True, metavar="DURATION",
                        help="Listen to the lattice this long and show the events "
                             "about it seen live meanwhile; none from before (0: skip).")(f)


@describe_group.command("deployment")
@click.argument("name", shell_complete=complete_names("deployments"))
@_events_option
@click.pass_obj
def describe_deployment(settings: Settings, name: str, events_for: float) -> None:
    """Describe the deployment NAME.

    \b
    Examples:
      latticectl describe deployment amazing-deployment
      latticectl describe deploy counter --events-for 5    # listen longer for events
    """
    describe_entity(settings, DEPLOYMENTS, name, events_for)


@describe_group.command("bindingset")
@click.argument("name", shell_complete=complete_names("bindingsets"))
@_events_option
@click.pass_obj
def describe_bindingset(settings: Settings, name: str, events_for: float) -> None:
    """Describe the binding set NAME.

    \b
    Examples:
      latticectl describe bindingset amazing-bindings
      latticectl describe bs counter-bindings --events-for 0   # skip the events
    """
    describe_entity(settings, BINDINGSETS, name, events_for)


COMMANDS: list[click.Command] = [describe_group]
