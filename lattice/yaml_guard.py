"""Checks on composed YAML before anything is constructed, and where a fault lies.

Pure functions over PyYAML nodes, used by :mod:`lattice.manifest_loader`: the line of a
node and the node at a field path (every error names ``file:line: field``); duplicate
keys (YAML would keep the last one silently); YAML aliases counted on the node graph, so a
"billion laughs" document is refused after one walk over the nodes actually written
(:data:`MAX_ALIASES`, :data:`MAX_ALIAS_NODES`); and a YAML syntax error placed at the line
of the fault. Every walk keeps a visited set: a node shared through aliases is walked once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import yaml

#: YAML aliases (``*name``) one document may use.
MAX_ALIASES = 100
#: Nodes the aliases of one document may repeat, counted as if expanded.
MAX_ALIAS_NODES = 10_000

Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, order=True)
class ManifestIssue:
    """One validation error: where (file, line, field path) and what is wrong."""

    path: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.field or '(document)'}: {self.message}"


def format_loc(loc: Sequence[int | str]) -> str:
    """``('spec', 'actors', 0, 'id')`` → ``spec.actors[0].id``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def node_line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def node_at(node: yaml.Node, loc: Sequence[int | str]) -> yaml.Node:
    """The deepest node along ``loc``; for a mapping key, the key itself (its line is
    where the field is written)."""
    current = node
    for i, part in enumerate(loc):
        if isinstance(current, yaml.MappingNode):
            match = next((kv for kv in current.value
                          if isinstance(kv[0], yaml.ScalarNode) and kv[0].value == str(part)),
                         None)
            if match is None:
                return current
            current = match[0] if i == len(loc) - 1 else match[1]
        elif isinstance(current, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(current.value):
                return current
            current = current.value[part]
        else:
            return current
    return current


def _any_duplicate_key(node: yaml.Node, shared: bool) -> bool:
    """Whether some mapping under ``node`` has a scalar key written twice (``<<`` aside):
    one walk without field paths, so a document without duplicates (nearly all) costs a
    set per mapping. With ``shared`` (the text may hold aliases) nodes shared through
    aliases are walked once; without, no node is reached twice."""
    stack = [node]
    seen: set[int] = set()
    while stack:
        current = stack.pop()
        if shared:
            if id(current) in seen:
                continue
            seen.add(id(current))
        if isinstance(current, yaml.MappingNode):
            keys = [k.value for k, _v in current.value
                    if isinstance(k, yaml.ScalarNode) and k.value != "<<"]
            if len(set(keys)) != len(keys):
                return True
            for k, v in current.value:
                stack.append(k)
                stack.append(v)
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)
    return False


def duplicate_keys(node: yaml.Node, path: str, *, shared: bool = True
                   ) -> list[ManifestIssue]:
    """Mapping keys written twice (YAML keeps the last silently; we refuse). A node shared
    through aliases is walked once (reported at the first path that reaches it);
    ``shared=False`` says the text holds no alias (no ``*``), so none is."""
    if not _any_duplicate_key(node, shared):
        return []
    issues: list[ManifestIssue] = []
    stack: list[tuple[yaml.Node, tuple[int | str, ...]]] = [(node, ())]
    seen: set[int] = set()
    while stack:
        current, loc = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, yaml.MappingNode):
            first: dict[str, int] = {}
            for key, _value in current.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.value in first and key.value != "<<":
                        issues.append(ManifestIssue(
                            path, node_line(key), format_loc((*loc, key.value)),
                            f"duplicate key (first written on line {first[key.value]})"))
                    first.setdefault(key.value, node_line(key))
        stack.extend(reversed(_children(current, loc)))  # popped in document order
    return sorted(issues)


# ---------------------------------------------------------------- hostile input

def utf8_size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


@dataclass(frozen=True)
class AliasIssue:
    """Why a document's aliases are refused: the issue, and which alias (0-based, in
    document order) crossed the line, to find the line it is written on."""

    issue: ManifestIssue
    alias: int


def _children(node: yaml.Node, loc: tuple[int | str, ...],
              ) -> list[tuple[yaml.Node, tuple[int | str, ...]]]:
    """The child nodes of ``node`` in document order (keys before their values), each with
    its field path."""
    if isinstance(node, yaml.MappingNode):
        out: list[tuple[yaml.Node, tuple[int | str, ...]]] = []
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else "?"
            out += [(key, (*loc, name)), (value, (*loc, name))]
        return out
    if isinstance(node, yaml.SequenceNode):
        return [(item, (*loc, i)) for i, item in enumerate(node.value)]
    return []


def alias_issue(root: yaml.Node, path: str) -> AliasIssue | None:
    """Refuse a document whose YAML aliases recurse, are more than :data:`MAX_ALIASES`, or
    would repeat more than :data:`MAX_ALIAS_NODES` nodes once expanded. Pure.

    One depth-first walk over the composed nodes, each visited once (a visited set by
    id): a child already visited is an alias use (the composer shares the anchored node),
    and adds the size of its expanded subtree, computed once per node when its walk
    ends. The walk visits children in document order, so the n-th use found is the n-th
    alias written; :func:`at_alias` finds its line. Cost: the nodes written, never the
    nodes an expansion would make.
    """
    size: dict[int, int] = {}  # id -> nodes of its expanded subtree (walk finished)
    on_path: set[int] = set()
    uses = repeated = 0
    # frames: node, its field path, its remaining children (reversed), its size so far
    frames: list[tuple[yaml.Node, tuple[int | str, ...], list[Any], list[int]]] = []

    def enter(node: yaml.Node, loc: tuple[int | str, ...]) -> None:
        on_path.add(id(node))
        frames.append((node, loc, _children(node, loc)[::-1], [1]))

    enter(root, ())
    while frames:
        node, _loc, todo, total = frames[-1]
        if not todo:
            frames.pop()
            on_path.discard(id(node))
            size[id(node)] = total[0]
            if frames:
                frames[-1][3][0] += total[0]
            continue
        child, loc = todo.pop()
        if id(child) in on_path:
            return AliasIssue(ManifestIssue(
                path, node_line(child), format_loc(loc),
                "recursive YAML alias (an anchor used inside itself); write the value out"),
                uses)
        if id(child) not in size:
            enter(child, loc)
            continue
        uses += 1
        repeated += size[id(child)]
        frames[-1][3][0] += size[id(child)]
        if uses > MAX_ALIASES:
            return AliasIssue(ManifestIssue(
                path, node_line(child), format_loc(loc),
                f"more than {MAX_ALIASES} YAML aliases in one document; write the values "
                "out"), uses - 1)
        if repeated > MAX_ALIAS_NODES:
            return AliasIssue(ManifestIssue(
                path, node_line(child), format_loc(loc),
                f"YAML aliases would repeat more than {MAX_ALIAS_NODES} nodes in one "
                f"document (an alias bomb?); write the values out"), uses - 1)
    return None


#: the tags a plain document holds (everything else goes through PyYAML's constructor)
_STR, _MAP, _SEQ = "tag:yaml.org,2002:str", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
#: deeper documents go through PyYAML's constructor (which does not recurse)
_PLAIN_DEPTH = 64


class _NotPlain(Exception):
    """The document holds something :func:`construct_plain` leaves to PyYAML."""


def construct_plain(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    """What ``loader.construct_document(node)`` gives, for a document of mappings with
    scalar keys, sequences and scalars, written without aliases, merge keys or deep
    nesting (a manifest): strings as written, other scalars by the loader's own
    constructors (ints, booleans, nulls, floats, timestamps: the same values). Raises
    :class:`LookupError` for anything else; the caller then asks the loader. The keys
    must have been checked for duplicates (:func:`duplicate_keys`). Pure."""
    try:
        return _plain(loader, node, 0)
    except _NotPlain:
        raise LookupError("not a plain document") from None


def _plain(loader: yaml.SafeLoader, node: yaml.Node, depth: int) -> Any:
    tag = node.tag
    if isinstance(node, yaml.ScalarNode):
        return node.value if tag == _STR else loader.construct_object(node)
    if depth > _PLAIN_DEPTH:
        raise _NotPlain
    if isinstance(node, yaml.MappingNode) and tag == _MAP:
        out: dict[Any, Any] = {}
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode) or k.value == "<<" or k.tag == \
                    "tag:yaml.org,2002:merge":
                raise _NotPlain
            out[_plain(loader, k, depth)] = _plain(loader, v, depth + 1)
        return out
    if isinstance(node, yaml.SequenceNode) and tag == _SEQ:
        return [_plain(loader, v, depth + 1) for v in node.value]
    raise _NotPlain


def at_alias(found: AliasIssue, text: str, document: int) -> ManifestIssue:
    """``found`` with the line where its alias is written (the walk knew only the line of
    the anchor): one pass over the parser's events up to that alias."""
    seen_docs = -1
    aliases = 0
    try:
        for event in yaml.parse(text, Loader=Loader):
            if isinstance(event, yaml.DocumentStartEvent):
                seen_docs += 1
            elif isinstance(event, yaml.AliasEvent) and seen_docs == document:
                if aliases == found.alias and event.start_mark is not None:
                    return replace(found.issue, line=int(event.start_mark.line) + 1)
                aliases += 1
            elif seen_docs > document:
                break
    except yaml.YAMLError:  # pragma: no cover - the text composed once already
        pass
    return found.issue


def yaml_issue(path: str, text: str, exc: yaml.MarkedYAMLError) -> ManifestIssue:
    """A YAML syntax error at the line of the fault. Pure.

    The parser's problem mark is where it gave up; when that is the end of the text (an
    unclosed quote or bracket), the fault is where the unclosed thing began (the context
    mark) or, failing that, the last line written. Another line the parser named is
    shown in the message. A tab where YAML wants indentation is said to be one."""
    problem, context = exc.problem_mark, exc.context_mark

    def line_of(mark: Any) -> int | None:  # None: no mark, or only blanks after it
        if mark is None or not text[mark.index:].strip():
            return None
        return int(mark.line) + 1

    # both at the end: the last line written is the one left open
    line = line_of(problem) or line_of(context) or text.rstrip().count("\n") + 1
    parts: list[str] = []
    for said, mark in ((exc.context, context), (exc.problem, problem)):
        if said:
            shown = line_of(mark)
            parts.append(said if shown in (None, line) else f"{said} (line {shown})")
    what = ": ".join(parts) or "invalid"
    if problem is not None and text[problem.index:problem.index + 1] == "\t":
        what += " (a tab: YAML indents with spaces)"
    return ManifestIssue(path, line, "", f"not valid YAML: {what}")
