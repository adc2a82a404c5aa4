"""kubectl's JSONPath templates and paths, over jsonpath-ng expressions.

``latticectl get -o jsonpath=TEMPLATE``, ``-o custom-columns=HEADER:PATH,...`` and
``--sort-by=PATH`` address the documents ``-o json`` prints, the way kubectl does. kubectl's
templates are not plain JSONPath: they are text with ``{...}`` actions in it, and their
paths start with a dot relative to the current object. This module parses that syntax and
hands each path to jsonpath-ng (``jsonpath_ng.ext``, which has filters), converted:

* a template: literal text; ``{PATH}``; ``{"text"}`` (with ``\\n``, ``\\t``, ``\\"`` and
  ``\\\\`` escapes); ``{range PATH}...{end}`` (the body once per match, its paths relative
  to that match). The matches of one ``{PATH}`` are joined by a space; strings print as
  they are, anything else as compact JSON; a path that matches nothing prints nothing
  (kubectl's default, ``--allow-missing-template-keys``).
* a path: ``.a.b``, ``.items[*]``, ``.items[0]``, ``.items[-1:]``, ``..name`` (recursive),
  ``.labels.app\\.kubernetes\\.io/name`` (an escaped dot is part of the key; so are ``-``
  and ``/``), ``['key']``, and filters ``[?(@.status.phase=="Synced")]``; a leading
  ``$`` or ``@`` is accepted and means the current object. Not supported: kubectl's
  ``{.items[*]['a','b']}`` unions of keys and ``{else}``.

jsonpath-ng is imported on the first parse, so commands that print no path do not pay
for it. Pure: parsing raises :class:`TemplateError` (a usage error at the command line); rendering
never fails. :mod:`cli.listing` consumes :func:`parse_template` and :func:`parse_path`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # jsonpath-ng is imported when a path is first parsed (tens of ms)
    from jsonpath_ng import JSONPath

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


class TemplateError(ValueError):
    """A template or path that cannot be parsed; the message says where and why."""


@dataclass(frozen=True)
class Path:
    """A kubectl path, compiled to a jsonpath-ng expression."""

    text: str  #: as the user wrote it
    expr: JSONPath

    def find(self, data: Any) -> list[Any]:
        """Every value the path matches in ``data`` (empty when none). Pure."""
        return [m.value for m in self.expr.find(data)]


def to_jsonpath(path: str) -> str:
    """kubectl's ``.a.b[0]`` form as a jsonpath-ng expression ``$['a']['b'][0]``: names
    become quoted keys (so ``-``, ``/`` and escaped dots are plain characters), brackets
    and filters are kept. Pure."""
    text = path.strip()
    if text[:1] in ("$", "@"):
        text = text[1:]
    out = ["$"]
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "[":
            end = _closing(text, i)
            out.append(text[i:end + 1])
            i = end + 1
        elif ch == ".":
            recursive = text.startswith("..", i)
            i += 2 if recursive else 1
            name, i = _name(text, i)
            if recursive:
                out.append("..")
            if name == "*":
                out.append("[*]" if not recursive else "*")
            elif name:
                out.append(_quoted(name))
            elif recursive:
                raise TemplateError(f"{path!r}: '..' wants a name after it")
            elif text != "." and not text.startswith("[", i):
                raise TemplateError(f"{path!r}: an empty key at {i}")
        elif i == 0:  # `name.x` without the leading dot: kubectl accepts it too
            name, i = _name(text, i)
            out.append(_quoted(name))
        else:
            raise TemplateError(f"{path!r}: unexpected {ch!r} at {i + 1}")
    return "".join(out)


def _name(text: str, i: int) -> tuple[str, int]:
    """A key from ``i`` up to the next unescaped ``.`` or ``[``; ``\\.`` is a dot."""
    chars = []
    while i < len(text) and text[i] not in ".[":
        if text[i] == "\\" and i + 1 < len(text):
            i += 1
        chars.append(text[i])
        i += 1
    return "".join(chars), i


def _quoted(name: str) -> str:
    return "['" + name.replace("\\", "\\\\").replace("'", "\\'") + "']"


def _closing(text: str, start: int) -> int:
    """The index of the ``]`` that closes the ``[`` at ``start`` (quotes and nesting
    respected)."""
    depth, quote = 0, ""
    for i in range(start, len(text)):
        ch = text[i]
        if quote:
            if ch == quote and text[i - 1] != "\\":
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth == 0:
                return i
    raise TemplateError(f"{text!r}: '[' at {start + 1} is never closed")


def parse_path(path: str) -> Path:
    """Compile one kubectl path (``{.a.b}`` braces allowed, as in custom-columns).

    >>> parse_path(".metadata.name").find({"metadata": {"name": "d"}})
    ['d']
    """
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1].strip()
    if not text:
        raise TemplateError("an empty path; write one like .metadata.name")
    from jsonpath_ng.exceptions import JsonPathParserError
    from jsonpath_ng.ext.parser import parse as jsonpath_parse

    try:
        return Path(path, jsonpath_parse(to_jsonpath(text)))
    except (JsonPathParserError, ValueError, AttributeError, TypeError) as exc:
        if isinstance(exc, TemplateError):
            raise
        raise TemplateError(f"{path!r}: {exc}") from None


# ---------------------------------------------------------------- templates

@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Field:
    path: Path


@dataclass(frozen=True)
class Range:
    path: Path
    body: tuple[Node, ...]


Node = Text | Field | Range


@dataclass(frozen=True)
class Template:
    """A parsed kubectl JSONPath template."""

    source: str
    nodes: tuple[Node, ...]

    def render(self, data: Any) -> str:
        """The template's text over ``data``. Pure.

        >>> parse_template('{range .items[*]}{.n}{"\\\\n"}{end}').render({"items": [{"n": 1}]})
        '1\\n'
        """
        return _render(self.nodes, data)


def _render(nodes: Sequence[Node], data: Any) -> str:
    out: list[str] = []
    for node in nodes:
        match node:
            case Text(text):
                out.append(text)
            case Field(path):
                out.append(" ".join(value_text(v) for v in path.find(data)))
            case Range(path, body):
                out.extend(_render(body, item) for item in path.find(data))
    return "".join(out)


def value_text(value: Any) -> str:
    """How one matched value prints: strings as they are, the rest as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def parse_template(source: str) -> Template:
    """Parse a kubectl JSONPath template; :class:`TemplateError` says what is wrong.

    A template without braces is taken as one path (kubectl does the same).
    """
    if "{" not in source:
        source = "{" + source + "}"
    stack: list[tuple[Path | None, list[Node]]] = [(None, [])]
    i = 0
    while i < len(source):
        start = source.find("{", i)
        if start < 0:
            stack[-1][1].append(Text(source[i:]))
            break
        if start > i:
            stack[-1][1].append(Text(source[i:start]))
        end = _action_end(source, start)
        action = source[start + 1:end].strip()
        i = end + 1
        if action.startswith('"'):
            stack[-1][1].append(Text(_literal(action, source)))
        elif action == "end":
            if len(stack) == 1:
                raise TemplateError(f"{source!r}: {{end}} without {{range}}")
            path, body = stack.pop()
            assert path is not None
            stack[-1][1].append(Range(path, tuple(body)))
        elif action.startswith("range ") or action == "range":
            stack.append((parse_path(action[len("range"):]), []))
        else:
            stack[-1][1].append(Field(parse_path(action)))
    if len(stack) != 1:
        raise TemplateError(f"{source!r}: {{range}} without {{end}}")
    return Template(source, tuple(stack[0][1]))


def _action_end(source: str, start: int) -> int:
    """The ``}`` that closes the action opened at ``start`` (not one inside quotes)."""
    quote = ""
    i = start + 1
    while i < len(source):
        ch = source[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "}":
            return i
        i += 1
    raise TemplateError(f"{source!r}: '{{' at {start + 1} is never closed")


def _literal(action: str, source: str) -> str:
    """The text of a ``"..."`` action, escapes resolved."""
    if len(action) < 2 or not action.endswith('"'):
        raise TemplateError(f"{source!r}: unterminated string {action}")
    body, out, i = action[1:-1], [], 0
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            out.append(_ESCAPES.get(body[i + 1], body[i + 1]))
            i += 2
        else:
            out.append(body[i])
            i += 1
    return "".join(out)
