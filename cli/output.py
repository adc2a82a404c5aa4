"""Rendering for latticectl: tables, ages, and the stable ``-o yaml`` / ``-o json`` forms.

Pure functions, no I/O except :func:`emit` (which writes through ``click.echo``). The
``get``, ``describe``, ``status``, ``history`` and ``events`` commands build rows or
documents from :mod:`lattice.status` models and hand them here, so every command prints a
table, an age or a document the same way. The documents are what docs/cli.md promises to
scripts: ``{apiVersion, kind, metadata, spec, status}`` per entity, a ``List`` with
``items`` for the plural forms, as kubectl does.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
import yaml

from cli.settings import CliError
from lattice.manifests import API_VERSION
from lattice.status import BindingSetStatus, Condition, DeploymentStatus, HostStatus, Placement

#: Characters of a commit sha shown in tables (the same as `latticectl apply` prints).
SHORT_SHA = 12
#: Characters of a host id shown in tables.
SHORT_ID = 12
#: Columns are separated by this many spaces (kubectl's tabwriter padding).
PADDING = 3
#: What ``-o`` accepts on the commands that print entities.
OUTPUT_FORMATS = ("wide", "yaml", "json", "name")
NONE = "<none>"


class NotFound(CliError):
    """What was asked for does not exist: exit 1, as kubectl's NotFound (usage errors and
    other domain errors stay 2)."""

    exit_code = 1


def short(sha: str | None, width: int = SHORT_SHA) -> str:
    """A sha (or id) cut to ``width`` characters; ``-`` when empty."""
    return sha[:width] if sha else "-"


def age(when: datetime | None, now: datetime | None = None) -> str:
    """How long ago ``when`` was, the way kubectl prints AGE: ``5s``, ``3m``, ``2h``, ``4d``,
    ``3y``; ``<unknown>`` without a time. Pure."""
    if when is None:
        return "<unknown>"
    now = now or datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return duration((now - when).total_seconds())


def duration(seconds: float) -> str:
    """A duration in kubectl's short form (``45s``, ``12m``, ``5h``, ``3d``, ``2y``). Pure."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h"
    if s < 365 * 86400:
        return f"{s // 86400}d"
    return f"{s // (365 * 86400)}y"


def widths(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> list[int]:
    """The width of each column: its longest cell, header included. Pure."""
    out = [len(str(h)) for h in headers]
    for row in rows:
        out = [max(w, len(str(c))) for w, c in zip(out, row, strict=True)]
    return out


def row_line(column_widths: Sequence[int], row: Sequence[object]) -> str:
    """One row padded to the column widths, separated by :data:`PADDING` spaces. Pure."""
    return (" " * PADDING).join(
        str(c).ljust(w) for c, w in zip(row, column_widths, strict=True)).rstrip()


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """Left-aligned columns separated by :data:`PADDING` spaces, headers first; one string
    per line, trailing spaces stripped. Pure."""
    w = widths(headers, rows)
    return [row_line(w, headers), *(row_line(w, r) for r in rows)]


def labels_text(labels: Mapping[str, str]) -> str:
    """``k=v,k=v`` sorted, without the hosts' built-in ``hostcore.*`` labels."""
    shown = [f"{k}={v}" for k, v in sorted(labels.items()) if not k.startswith("hostcore.")]
    return ",".join(shown) or NONE


def ready_message(conditions: Sequence[Condition]) -> str:
    """The message of the Ready condition (else of the first one), for MESSAGE columns."""
    for c in conditions:
        if c.type == "Ready":
            return c.message
    return conditions[0].message if conditions else ""


def placed_hosts(placements: Sequence[Placement]) -> str:
    """Host names (or short ids) that run something of an entity, sorted, comma-joined."""
    names = {p.host_name or short(p.host_id, SHORT_ID) for p in placements if p.host_id}
    return ",".join(sorted(names)) or NONE


# ---------------------------------------------------------------- documents (-o yaml/json)

Entity = DeploymentStatus | BindingSetStatus


def kind_of(entity: Entity) -> str:
    return "Deployment" if isinstance(entity, DeploymentStatus) else "BindingSet"


def spec_of(entity: Entity) -> dict[str, Any]:
    """The desired spec recorded with an entity's status (the whole manifest's ``spec`` when
    the agent recorded the whole manifest)."""
    spec = entity.spec
    inner = spec.get("spec")
    if isinstance(inner, dict) and ("kind" in spec or "metadata" in spec):
        return inner
    return spec


def labels_of(entity: Entity) -> dict[str, str]:
    """The manifest's ``metadata.labels``: the status field the agent fills; from a status
    written before it had one, the ``metadata`` of a whole manifest recorded as ``spec``.
    Pure."""
    if entity.labels:
        return dict(entity.labels)
    return _legacy_metadata(entity, "labels")


def annotations_of(entity: Entity) -> dict[str, str]:
    """The manifest's ``metadata.annotations`` (see :func:`labels_of`). Pure."""
    if entity.annotations:
        return dict(entity.annotations)
    return _legacy_metadata(entity, "annotations")


def _legacy_metadata(entity: Entity, key: str) -> dict[str, str]:
    meta = entity.spec.get("metadata")
    found = meta.get(key) if isinstance(meta, dict) else None
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def entity_document(entity: Entity) -> dict[str, Any]:
    """One entity as scripts see it: ``{apiVersion, kind, metadata, spec, status}``, with
    the manifest's labels and annotations under ``metadata`` (when it has any). Pure."""
    metadata: dict[str, Any] = {"name": entity.name}
    labels, annotations = labels_of(entity), annotations_of(entity)
    if labels:
        metadata["labels"] = labels
    if annotations:
        metadata["annotations"] = annotations
    return {
        "apiVersion": API_VERSION,
        "kind": kind_of(entity),
        "metadata": metadata,
        "spec": spec_of(entity),
        "status": entity.model_dump(mode="json",
                                    exclude={"name", "spec", "labels", "annotations"}),
    }


def host_document(host: HostStatus, *, source: str) -> dict[str, Any]:
    """One host: the :class:`HostStatus` fields plus where they came from
    (``lattice`` for a live ping, ``status-branch`` otherwise)."""
    return {**host.model_dump(mode="json"), "source": source}


def list_document(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The plural form: ``{apiVersion, kind: List, items}``."""
    return {"apiVersion": API_VERSION, "kind": "List", "items": list(items)}


def render(data: Any, fmt: str) -> str:
    """``data`` as YAML (block style, keys in insertion order) or indented JSON. Pure."""
    if fmt == "json":
        return json.dumps(data, indent=2, ensure_ascii=False)
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False,
                          allow_unicode=True).rstrip("\n")


def emit(data: Any, fmt: str) -> None:
    """Print ``data`` in ``fmt`` (``yaml`` or ``json``) on stdout."""
    click.echo(render(data, fmt))


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """``1 host``, ``2 hosts``, ``0 hosts`` (``nouns`` when adding an s will not do). Pure."""
    return f"{n} {noun if n == 1 else nouns or noun + 's'}"


def warn(message: str) -> None:
    """One line on stderr, prefixed ``warning:`` (stdout stays parseable)."""
    click.echo(f"warning: {message}", err=True)


F = TypeVar("F", bound=Callable[..., Any])


def output_option(*, formats: Sequence[str] = OUTPUT_FORMATS) -> Callable[[F], F]:
    """The ``-o/--output`` option of the commands that print entities."""
    return click.option("-o", "--output", type=click.Choice(list(formats)), default=None,
                        help="Output format: " + ", ".join(formats) + " (default: a table).")
