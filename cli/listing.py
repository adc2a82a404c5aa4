"""Lists of resources as ``latticectl get`` prints them, in every ``-o`` form.

``get`` turns deployments, binding sets, hosts and servers into :class:`Resource` rows
(its kind, name, labels, the ``-o json`` document and the table cells), grouped by kind in
:class:`Section`\\ s; this module selects them by label (``-l``, :mod:`cli.selector`),
sorts them (``--sort-by``, a path of :mod:`cli.jsonpath`) and renders them as kubectl
does: a table per kind (a blank line between kinds, and ``kind/name`` in NAME when more
than one kind was asked for; ``--no-headers``), ``-o name``, ``-o yaml|json`` (the item
itself for one named resource, else a ``List``), ``-o jsonpath=TEMPLATE`` over that same
document, and ``-o custom-columns=HEADER:PATH,...`` (one table over the items).

Pure but for :class:`OutputParam`, which validates ``-o`` at parse time (a bad template
is a usage error, exit 2). :mod:`cli.get_cmd` consumes it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click

from cli.jsonpath import Path, TemplateError, parse_path, parse_template, value_text
from cli.output import NONE, OUTPUT_FORMATS, list_document, render, table
from cli.selector import LabelQuery

#: ``-o`` forms that take an argument after ``=``.
TEMPLATE_FORMATS = ("jsonpath", "custom-columns")


@dataclass(frozen=True)
class Resource:
    """One thing ``get`` prints: a deployment, a binding set, a host or a server."""

    kind: str  #: singular, lower case: ``deployment``, ``bindingset``, ``host``, ``server``
    name: str
    document: dict[str, Any]  #: what ``-o json`` prints for it
    cells: list[object]  #: its table row, NAME first
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Section:
    """The resources of one kind, with the headers of its table."""

    kind: str
    headers: tuple[str, ...]
    items: list[Resource]


@dataclass(frozen=True)
class Columns:
    """A parsed ``custom-columns`` spec: (header, path) per column."""

    columns: tuple[tuple[str, Path], ...]


def parse_columns(spec: str) -> Columns:
    """``NAME:.metadata.name,READY:.status.actors.ready`` -> :class:`Columns` (commas
    inside brackets or quotes belong to the path). Pure."""
    columns = []
    for part in _split_columns(spec):
        header, sep, path = part.partition(":")
        if not sep or not header.strip() or not path.strip():
            raise TemplateError(f"custom column {part!r}: expected HEADER:PATH, e.g. "
                                "NAME:.metadata.name")
        columns.append((header.strip(), parse_path(path)))
    return Columns(tuple(columns))


def _split_columns(spec: str) -> list[str]:
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(spec):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(spec[start:i])
            start = i + 1
    parts.append(spec[start:])
    return parts


def split_output(output: str | None) -> tuple[str | None, str]:
    """``jsonpath={.a}`` -> (``jsonpath``, ``{.a}``); ``yaml`` -> (``yaml``, ``""``)."""
    if output is None:
        return None, ""
    fmt, _, arg = output.partition("=")
    return fmt, arg


if TYPE_CHECKING:
    _StrParam = click.ParamType[str]
else:  # click < 8.2 has no generic ParamType
    _StrParam = click.ParamType


class OutputParam(_StrParam):
    """``-o`` of ``get``: the plain formats, or ``jsonpath=TEMPLATE`` or
    ``custom-columns=SPEC``, checked here so that a bad one is a usage error."""

    name = "format"

    def __init__(self, formats: Sequence[str] = OUTPUT_FORMATS) -> None:
        self.formats = tuple(formats)

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "[" + "|".join((*self.formats, "jsonpath=...", "custom-columns=...")) + "]"

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> str:
        text = str(value)
        fmt, arg = split_output(text)
        if fmt in self.formats and not arg:
            return text
        if fmt not in TEMPLATE_FORMATS:
            self.fail(f"{text!r} is not one of " + ", ".join(self.formats)
                      + ", jsonpath=TEMPLATE, custom-columns=SPEC", param, ctx)
        if not arg:
            self.fail(f"-o {fmt} wants an argument: -o {fmt}=...", param, ctx)
        try:
            parse_template(arg) if fmt == "jsonpath" else parse_columns(arg)
        except TemplateError as exc:
            self.fail(str(exc), param, ctx)
        return text


def output_option(*, formats: Sequence[str] = OUTPUT_FORMATS) -> Any:
    """``-o/--output`` of ``get``, with the template forms."""
    return click.option(
        "-o", "--output", type=OutputParam(formats), default=None,
        help="Output format: " + ", ".join(formats) + ", jsonpath=TEMPLATE (kubectl's "
             "{.items[*].metadata.name} templates) or custom-columns=HEADER:PATH,... "
             "(default: a table).")


def listing_options(f: Any) -> Any:
    """``-o``, ``-l``, ``--sort-by`` and ``--no-headers``, handed to the command as one
    ``listing`` argument (a :class:`Listing`)."""
    from cli.selector import SelectorParam

    @functools.wraps(f)
    def command(*args: Any, output: str | None, selector: LabelQuery | None,
                sort_by: str | None, no_headers: bool, **kwargs: Any) -> Any:
        return f(*args, listing=Listing(output, selector, sort_by, no_headers), **kwargs)

    command = click.option(
        "--no-headers", is_flag=True,
        help="Print tables (and custom columns) without their header line.")(command)
    command = click.option(
        "--sort-by", type=PathParam(), default=None, metavar="PATH",
        help="Sort by a path into each item's -o json document, e.g. .metadata.name or "
             ".status.actors.ready (numbers by value; items without it last).")(command)
    command = click.option(
        "-l", "--selector", type=SelectorParam(), default=None,
        help="Only resources whose labels match, kubectl's syntax: app=web,tier!=test, "
             "'zone in (a,b)', 'zone notin (c)', gpu, !gpu.")(command)
    return output_option()(command)


class PathParam(_StrParam):
    """A path of :mod:`cli.jsonpath` (``--sort-by``)."""

    name = "path"

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> str:
        try:
            parse_path(str(value))
        except TemplateError as exc:
            self.fail(str(exc), param, ctx)
        return str(value)


# ---------------------------------------------------------------- selecting and sorting

def select_labels(items: Sequence[Resource], query: LabelQuery | None) -> list[Resource]:
    """The items whose labels match ``query`` (all of them without one). Pure."""
    return [r for r in items if query is None or query.matches(r.labels)]


def sort_key(value: list[Any]) -> tuple[int, Any]:
    """Order of ``--sort-by``: numbers by value, then text, then anything else as JSON;
    an item the path finds nothing in goes last."""
    if not value:
        return (3, "")
    v = value[0]
    if isinstance(v, bool) or not isinstance(v, int | float):
        return (1, v) if isinstance(v, str) else (2, json.dumps(v, sort_keys=True))
    return (0, v)


def sort_items(items: Sequence[Resource], path: str | None) -> list[Resource]:
    """``items`` sorted by ``path`` (stable; unchanged without one). Pure."""
    if path is None:
        return list(items)
    compiled = parse_path(path)
    return sorted(items, key=lambda r: sort_key(compiled.find(r.document)))


# ---------------------------------------------------------------- rendering

@dataclass(frozen=True)
class Listing:
    """How ``get`` was asked to list: ``-o``, ``-l``, ``--sort-by``, ``--no-headers``."""

    output: str | None = None
    selector: LabelQuery | None = None
    sort_by: str | None = None
    no_headers: bool = False

    @property
    def wide(self) -> bool:
        return self.output == "wide"

    def arrange(self, section: Section) -> Section:
        """``section`` with only the items ``-l`` selects, in ``--sort-by`` order."""
        items = sort_items(select_labels(section.items, self.selector), self.sort_by)
        return Section(section.kind, section.headers, items)

    def print(self, sections: Sequence[Section], *, single: bool, prefix: bool = False,
              empty: str = "No resources found.") -> None:
        """Print ``sections`` (arranged) on stdout; ``empty`` on stderr when a table (or
        custom columns) would have no rows, as kubectl does."""
        arranged = [self.arrange(s) for s in sections]
        fmt, _ = split_output(self.output)
        if fmt in (None, "wide", "custom-columns") and not any(s.items for s in arranged):
            click.echo(empty, err=True)
        click.echo(render_sections(arranged, self.output, single=single, prefix=prefix,
                                   no_headers=self.no_headers), nl=False)



def render_sections(sections: Sequence[Section], output: str | None, *, single: bool = False,
                    prefix: bool = False, no_headers: bool = False) -> str:
    """The text ``get`` prints on stdout (with its final newline; empty for nothing).

    ``single``: one resource was named, so ``-o yaml|json|jsonpath`` address the item
    itself rather than a ``List``; ``prefix``: more than one kind was asked for, so NAME
    (and ``-o name``) say ``kind/name``. Pure."""
    items = [r for s in sections for r in s.items]
    fmt, arg = split_output(output)
    if fmt in ("yaml", "json", "jsonpath"):
        docs = [r.document for r in items]
        data = docs[0] if single and len(docs) == 1 else list_document(docs)
        if fmt == "jsonpath":
            return parse_template(arg).render(data)  # as kubectl: no newline added
        return render(data, fmt) + "\n"
    if fmt == "name":
        return "".join(f"{r.kind}/{r.name}\n" for r in items)
    if fmt == "custom-columns":
        columns = parse_columns(arg).columns
        found = [[",".join(value_text(v) for v in p.find(r.document)) or NONE
                  for _, p in columns] for r in items]
        return _lines([h for h, _ in columns], found, no_headers) if items else ""
    blocks = []
    for s in sections:
        if not s.items:
            continue
        rows: list[list[object]] = [
            [f"{r.kind}/{r.cells[0]}" if prefix else r.cells[0], *r.cells[1:]]
            for r in s.items]
        blocks.append(_lines(s.headers, rows, no_headers))
    return "\n".join(blocks)


def _lines(headers: Sequence[str], rows: Sequence[Sequence[object]], no_headers: bool) -> str:
    """A table's lines; without headers the columns are as wide as their cells only."""
    if no_headers:
        lines = table([""] * len(headers), rows)[1:]
    else:
        lines = table(headers, rows)
    return "".join(line + "\n" for line in lines)
