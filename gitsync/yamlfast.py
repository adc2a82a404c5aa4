"""The status files' YAML, written without PyYAML's representer: the same bytes, faster.

``yaml.dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)`` spends
~0.5 ms on a deployment's status document, almost all of it in PyYAML's Python
representer and serializer (libyaml only emits); at 10,000 deployments that was 5-6 s of
CPU for every report whose deployments all changed (Progressing, then Synced), held on
the agent's GIL against the loop that sends the commands (bench/RESULTS.md, py-spy at
10k). :func:`dump` writes the block style of that call for the documents the status
branch holds (mappings, lists, strings, ints, bools, None), and decides each string's
style with PyYAML's own parts: its resolver (would the string read back as another type?)
and its emitter's analysis (may it be plain, or single-quoted?), and folds a long string
at the width as its emitter does. Whatever it is not sure to write exactly as PyYAML
would (a float, a list in a list, a multi-line or double-quoted string, a long key)
makes it return None, and the caller uses PyYAML. Pure (its style cache aside).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import yaml
from yaml.emitter import Emitter
from yaml.resolver import Resolver

_STR_TAG = "tag:yaml.org,2002:str"
_RESOLVER = Resolver()
_ANALYSER = Emitter(io.StringIO(), allow_unicode=True)
#: PyYAML's default line width: a plain or quoted scalar is folded at a space past it
_WIDTH = 80
#: PyYAML writes a longer mapping key in its explicit ``? key`` form
_MAX_SIMPLE_KEY = 128
#: (string, is a key) -> its style ('' plain, "'" single-quoted), None: PyYAML's other ways.
#: Emptied when full: its gain is the strings every document repeats (keys, phases, kinds),
#: and at 100,000 entries the unique ones (timestamps, messages) held the writer's RSS
#: 50 MB higher (bench_status_writer, N = 10,000); at 16,384, 5 MB
_STYLES: dict[tuple[str, bool], str | None] = {}
_STYLES_MAX = 16_384


class _Unsure(Exception):
    """Raised inside :func:`dump` to fall back to PyYAML."""


def dump(data: Mapping[str, Any]) -> bytes | None:
    """PyYAML's block-style YAML of ``data`` (see the module doc), or None when this
    writer is not sure to produce exactly those bytes."""
    if not data:
        return None
    out: list[str] = []
    try:
        _mapping(data, 0, out, None)
    except _Unsure:
        return None
    return "".join(out).encode()


def _mapping(data: Mapping[Any, Any], indent: int, out: list[str], lead: str | None) -> None:
    """Entries with their keys at column ``indent``; the first one after ``lead`` (a list
    item's dash) when given."""
    pad = " " * indent
    for i, (key, value) in enumerate(data.items()):
        if not isinstance(key, str):
            raise _Unsure
        style = _style(key, is_key=True)
        k = _quoted(key) if style == "'" else key
        if style is None or len(k) >= _MAX_SIMPLE_KEY:
            raise _Unsure  # (a key is never folded)
        head = f"{lead if i == 0 and lead is not None else pad}{k}:"
        if isinstance(value, Mapping):
            if value:
                out.append(head + "\n")
                _mapping(value, indent + 2, out, None)
            else:
                out.append(head + " {}\n")
        elif isinstance(value, list | tuple):
            if value:
                out.append(head + "\n")
                _sequence(value, indent, out)  # PyYAML does not indent a mapping's list
            else:
                out.append(head + " []\n")
        else:
            out.append(f"{head} {_value(value, indent + len(k) + 2, indent + 2)}\n")


def _sequence(items: Sequence[Any], indent: int, out: list[str]) -> None:
    dash = " " * indent + "- "
    for item in items:
        if isinstance(item, Mapping):
            if item:
                _mapping(item, indent + 2, out, dash)
            else:
                out.append(dash + "{}\n")
        elif isinstance(item, list | tuple):
            raise _Unsure  # a list in a list: not in status documents
        else:
            out.append(f"{dash}{_value(item, indent + 2, indent + 2)}\n")


def _value(value: object, column: int, indent: int) -> str:
    """A scalar written from ``column``; a folded string goes on at ``indent``."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        style = _style(value, is_key=False)
        if style is None:
            raise _Unsure  # double-quoted or multi-line
        text = _quoted(value) if style == "'" else value
        if " " not in value or column + len(text) <= _WIDTH:
            return text  # nothing to fold: no space, or it ends within the width
        return _folded(value, style, column, indent)
    raise _Unsure  # floats (their repr rules), and anything else


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _folded(text: str, style: str, column: int, indent: int) -> str:
    """PyYAML's ``write_plain`` (style '') or ``write_single_quoted`` (style "'") of a
    one-line string: a single space after a word that ends past the width becomes a line
    break and ``indent`` spaces (in a quoted string, never its first or last space)."""
    quoted = style == "'"
    out = ["'"] if quoted else []
    col = column + (1 if quoted else 0)
    spaces = False
    start = end = 0
    n = len(text)
    while end <= n:
        ch = text[end] if end < n else None
        if spaces:
            if ch != " ":
                if (start + 1 == end and col > _WIDTH
                        and (not quoted or (start != 0 and end != n))):
                    out.append("\n" + " " * indent)
                    col = indent
                else:
                    out.append(text[start:end])
                    col += end - start
                start = end
        elif (ch is None or ch == " " or (quoted and ch == "'")) and start < end:
            out.append(text[start:end])
            col += end - start
            start = end
        if quoted and ch == "'":
            out.append("''")
            col += 2
            start = end + 1
        if ch is not None:
            spaces = ch == " "
        end += 1
    if quoted:
        out.append("'")
    return "".join(out)


def _style(text: str, *, is_key: bool) -> str | None:
    """PyYAML's ``choose_scalar_style`` for a string in block context, with its own
    resolver and analysis: '' (plain) when it reads back as a string and may be plain,
    "'" when it may be single-quoted, None otherwise (double-quoted, or multi-line)."""
    cache_key = (text, is_key)
    if cache_key in _STYLES:
        return _STYLES[cache_key]
    analysis = _ANALYSER.analyze_scalar(text)
    style: str | None = None
    if not analysis.multiline:
        implicit = _RESOLVER.resolve(  # type: ignore[no-untyped-call]
            yaml.ScalarNode, text, (True, False)) == _STR_TAG
        if implicit and not (is_key and analysis.empty) and analysis.allow_block_plain:
            style = ""
        elif analysis.allow_single_quoted:
            style = "'"
    if len(_STYLES) >= _STYLES_MAX:
        _STYLES.clear()
    _STYLES[cache_key] = style
    return style
