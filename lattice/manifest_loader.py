"""YAML files to manifest models, with the file, line and field path in every error.

Pure functions, no I/O except :func:`load_directory`. The git side (:mod:`gitsync.source`)
hands in the files of a commit; ``latticectl apply`` hands in the files it was given; both
get back a :class:`LoadResult` whose errors read ``file:line: field: message``, e.g.
``deployments/a.yaml:7: spec.actors[0].id: 'MADJKE....' has 20 characters, not 56; ...``.

Each file may hold many YAML documents. Documents are composed into nodes first (so every
field keeps the line it was written on), then constructed and validated by the pydantic
models of :mod:`lattice.manifests`. Two entities with the same kind and name are an error
naming both places. Duplicate keys inside one mapping are errors too (YAML would silently
keep the last one). Nothing here resolves ``${VAR}`` templates: they stay text.

Hostile input costs little: a file over :data:`MAX_FILE_BYTES` is refused before it is
decoded (callers holding only a size, such as :mod:`gitsync.source`, ask
:func:`file_size_issue` without reading the file); YAML aliases are counted on the
composed node graph before anything is constructed, so a "billion laughs" document is
refused after one walk over the nodes actually written (:data:`MAX_ALIASES`,
:data:`MAX_ALIAS_NODES`). Every walk of a node graph keeps a visited set, so a node
shared through aliases is walked once.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from lattice.manifests import KINDS, BindingSet, Deployment, DesiredState, Manifest, SourceRef

#: File name endings that hold manifests.
SUFFIXES = (".yaml", ".yml")
#: Files bigger than this are refused rather than parsed.
MAX_FILE_BYTES = 1 << 20
#: YAML aliases (``*name``) one document may use.
MAX_ALIASES = 100
#: Nodes the aliases of one document may repeat, counted as if expanded.
MAX_ALIAS_NODES = 10_000

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, order=True)
class ManifestIssue:
    """One validation error: where (file, line, field path) and what is wrong."""

    path: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.field or '(document)'}: {self.message}"


@dataclass(frozen=True)
class LoadedManifest:
    """A valid entity and where it was written (file, first line, document index)."""

    manifest: Manifest
    path: str
    line: int
    document: int = 0
    name_line: int = 0

    @property
    def kind(self) -> str:
        return self.manifest.kind

    @property
    def name(self) -> str:
        return self.manifest.metadata.name

    @property
    def ref(self) -> str:
        """``Kind/name``, the key of :attr:`DesiredState.sources`."""
        return f"{self.kind}/{self.name}"


@dataclass(frozen=True)
class LoadResult:
    """Every valid entity of a set of files, every error, and documents per file."""

    manifests: tuple[LoadedManifest, ...] = ()
    errors: tuple[ManifestIssue, ...] = ()
    documents: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    def error_lines(self) -> list[str]:
        return [str(e) for e in self.errors]

    def find(self, kind: str, name: str) -> LoadedManifest | None:
        for m in self.manifests:
            if m.kind == kind and m.name == name:
                return m
        return None

    def desired(self, revision: str = "") -> DesiredState | None:
        """The :class:`DesiredState` of these files, or None when any error was found."""
        if self.errors:
            return None
        deployments: dict[str, Deployment] = {}
        bindingsets: dict[str, BindingSet] = {}
        sources: dict[str, SourceRef] = {}
        for m in self.manifests:
            if isinstance(m.manifest, Deployment):
                deployments[m.name] = m.manifest
            else:
                bindingsets[m.name] = m.manifest
            sources[m.ref] = SourceRef(path=m.path, line=m.line)
        return DesiredState(revision=revision, deployments=deployments,
                            bindingsets=bindingsets, sources=sources)


# ---------------------------------------------------------------- paths

def normalize_base(path: str) -> str:
    """``path`` as a clean relative POSIX directory ('' for the whole tree)."""
    parts = [p for p in PurePosixPath(path.replace("\\", "/")).parts if p not in ("", ".", "/")]
    if any(p == ".." for p in parts):
        raise ValueError(f"manifests path {path!r} must stay inside the repository")
    return "/".join(parts)


def is_manifest_file(relpath: str, base: str = "") -> bool:
    """True for ``*.yaml``/``*.yml`` under ``base``, outside hidden directories."""
    base = normalize_base(base)
    if base and not relpath.startswith(base + "/"):
        return False
    rest = relpath[len(base) + 1:] if base else relpath
    parts = rest.split("/")
    if any(p.startswith(".") for p in parts):
        return False
    return relpath.endswith(SUFFIXES)


def canonical_path(kind: str, name: str, base: str = "") -> str:
    """Where ``latticectl apply`` writes an entity: ``deployments/<name>.yaml`` and so on."""
    folder = {"Deployment": "deployments", "BindingSet": "bindingsets"}[kind]
    base = normalize_base(base)
    return f"{base}/{folder}/{name}.yaml" if base else f"{folder}/{name}.yaml"


def to_yaml(manifest: Manifest) -> str:
    """Canonical YAML of one entity: ``apiVersion`` and ``kind`` first, then the fields
    that were written (defaults the author left out stay out)."""
    body = manifest.model_dump(mode="json", exclude_unset=True, exclude={"apiVersion", "kind"})
    doc = {"apiVersion": manifest.apiVersion, "kind": manifest.kind, **body}
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True)


# ---------------------------------------------------------------- loading

#: What :func:`parse_file` makes of one file: valid entities, errors, document count.
ParsedFile = tuple[list[LoadedManifest], list[ManifestIssue], int]


def load_sources(sources: Iterable[tuple[str, str | bytes]]) -> LoadResult:
    """Parse and validate ``(path, content)`` pairs; check kind+name is unique overall."""
    return combine((path, parse_file(path, content)) for path, content in sources)


def combine(parsed: Iterable[tuple[str, ParsedFile]]) -> LoadResult:
    """Files parsed one by one (:func:`parse_file`, perhaps cached by content) into one
    result, in path order, checking that kind+name is unique overall."""
    manifests: list[LoadedManifest] = []
    errors: list[ManifestIssue] = []
    documents: dict[str, int] = {}
    for path, (found, problems, count) in sorted(parsed, key=lambda s: s[0]):
        manifests.extend(found)
        errors.extend(problems)
        documents[path] = count
    seen: dict[tuple[str, str], LoadedManifest] = {}
    unique: list[LoadedManifest] = []
    for m in manifests:
        first = seen.get((m.kind, m.name))
        if first is not None:
            errors.append(ManifestIssue(
                m.path, m.name_line or m.line, "metadata.name",
                f"{m.kind} {m.name!r} is defined twice: here and at "
                f"{first.path}:{first.name_line or first.line}"))
            continue
        seen[(m.kind, m.name)] = m
        unique.append(m)
    return LoadResult(tuple(unique), tuple(errors), documents)


def load_directory(root: Path, *, path: str = "") -> LoadResult:
    """Load every manifest file under ``root/path`` (paths in errors are relative to root).
    A file over :data:`MAX_FILE_BYTES` is refused from its size, never read."""
    base = normalize_base(path)
    top = root / base if base else root
    parsed: list[tuple[str, ParsedFile]] = []
    files = [top] if top.is_file() else sorted(top.rglob("*"))
    for f in files:
        rel = f.relative_to(root).as_posix()
        if f is top or (f.is_file() and is_manifest_file(rel, base)):
            too_big = file_size_issue(rel, f.stat().st_size)
            parsed.append((rel, ([], [too_big], 0) if too_big else parse_file(rel, f.read_bytes())))
    return combine(parsed)


def file_size_issue(path: str, size: int) -> ManifestIssue | None:
    """The refusal of a file of ``size`` bytes over :data:`MAX_FILE_BYTES`, or None.
    Pure; callers that know a size before reading (a git blob, a stat) ask this first."""
    if size <= MAX_FILE_BYTES:
        return None
    return ManifestIssue(path, 1, "", f"file is {size} bytes, over the {MAX_FILE_BYTES}-byte "
                                      "limit")


def parse_file(path: str, content: str | bytes) -> ParsedFile:
    """Every document of one file: the valid entities, the errors, the document count."""
    too_big = file_size_issue(path, len(content) if isinstance(content, bytes)
                              else _utf8_size(content))
    if too_big:
        return [], [too_big], 0
    if isinstance(content, bytes):
        try:
            text = content.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = content.count(b"\n", 0, exc.start) + 1
            return [], [ManifestIssue(path, line, "", f"not UTF-8 text: {exc.reason} "
                                      f"(byte 0x{content[exc.start]:02x})")], 0
    else:
        text = content
    manifests: list[LoadedManifest] = []
    errors: list[ManifestIssue] = []
    count = 0
    loader = _Loader(text)
    document = -1  # index of the document in the stream, empty ones included
    try:
        while loader.check_node():
            node = loader.get_node()
            document += 1
            if node is None:
                continue
            aliases = _alias_issue(node, path)
            if aliases is not None:
                errors.append(_at_alias(aliases, text, document))
                count += 1
                continue
            # before constructing: merge keys (<<) rewrite the node while it is constructed
            dups = _duplicate_keys(node, path)
            if dups:
                errors.extend(dups)
                count += 1
                continue
            data = loader.construct_document(node)
            if data is None:
                continue
            index = count
            count += 1
            result = validate_document(data, node, path)
            if isinstance(result, list):
                errors.extend(result)
            else:
                name_line = _line(_node_at(node, ("metadata", "name")))
                manifests.append(LoadedManifest(result, path, _line(node), index, name_line))
    except yaml.MarkedYAMLError as exc:
        errors.append(yaml_issue(path, text, exc))
    except yaml.YAMLError as exc:
        errors.append(ManifestIssue(path, 1, "", f"not valid YAML: {exc}"))
    finally:
        loader.dispose()
    return manifests, errors, count


def validate_document(data: Any, node: yaml.Node, path: str) -> Manifest | list[ManifestIssue]:
    """One constructed document to a model, or the list of its errors."""
    if not isinstance(data, dict):
        return [ManifestIssue(path, _line(node), "",
                              f"expected a mapping with kind, metadata and spec, "
                              f"got {type(data).__name__}")]
    kind = data.get("kind")
    if kind is None:
        return [ManifestIssue(path, _line(node), "kind",
                              f"missing; expected one of {', '.join(KINDS)}")]
    model = KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        hint = _did_you_mean(str(kind), list(KINDS))
        return [ManifestIssue(path, _line(_node_at(node, ("kind",))), "kind",
                              f"unknown kind {kind!r}; expected one of "
                              f"{', '.join(KINDS)}{hint}")]
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        return [_issue(path, node, model, err) for err in exc.errors()]


# ---------------------------------------------------------------- error details

def format_loc(loc: Sequence[int | str]) -> str:
    """``('spec', 'actors', 0, 'id')`` → ``spec.actors[0].id``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _issue(path: str, node: yaml.Node, model: type[BaseModel], err: Any) -> ManifestIssue:
    loc = tuple(err.get("loc", ()))
    kind = err.get("type", "")
    msg = str(err.get("msg", "invalid"))
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if kind == "missing":
        msg = "required field is missing"
    elif kind == "extra_forbidden" and loc:
        known = _fields_at(model, loc[:-1])
        msg = f"unknown field {loc[-1]!r}"
        if known:
            msg += f"{_did_you_mean(str(loc[-1]), known)}; known fields: {', '.join(known)}"
    return ManifestIssue(path, _line(_node_at(node, loc)), format_loc(loc), msg)


def _did_you_mean(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _fields_at(model: type[BaseModel], loc: Sequence[int | str]) -> list[str]:
    """Field names of the model found at ``loc`` inside ``model`` (for typo hints)."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, str) and isinstance(current, type) and issubclass(current, BaseModel):
            info = current.model_fields.get(part)
            if info is None:
                return []
            current = info.annotation
        elif isinstance(part, int):
            args = typing.get_args(current)
            if typing.get_origin(current) is not list or not args:
                return []
            current = args[0]
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = args[0] if len(args) == 1 else tp
    return tp


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _node_at(node: yaml.Node, loc: Sequence[int | str]) -> yaml.Node:
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


def _duplicate_keys(node: yaml.Node, path: str) -> list[ManifestIssue]:
    """Mapping keys written twice (YAML keeps the last silently; we refuse). A node shared
    through aliases is walked once (reported at the first path that reaches it)."""
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
                            path, _line(key), format_loc((*loc, key.value)),
                            f"duplicate key (first written on line {first[key.value]})"))
                    first.setdefault(key.value, _line(key))
        stack.extend(reversed(_children(current, loc)))  # popped in document order
    return sorted(issues)


# ---------------------------------------------------------------- hostile input

def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


@dataclass(frozen=True)
class _AliasIssue:
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


def _alias_issue(root: yaml.Node, path: str) -> _AliasIssue | None:
    """Refuse a document whose YAML aliases recurse, are more than :data:`MAX_ALIASES`, or
    would repeat more than :data:`MAX_ALIAS_NODES` nodes once expanded. Pure.

    One depth-first walk over the composed nodes, each visited once (a visited set by
    id): a child already visited is an alias use (the composer shares the anchored node),
    and adds the size of its expanded subtree, computed once per node when its walk
    ends. The walk visits children in document order, so the n-th use found is the n-th
    alias written; :func:`_at_alias` finds its line. Cost: the nodes written, never the
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
            return _AliasIssue(ManifestIssue(
                path, _line(child), format_loc(loc),
                "recursive YAML alias (an anchor used inside itself); write the value out"),
                uses)
        if id(child) not in size:
            enter(child, loc)
            continue
        uses += 1
        repeated += size[id(child)]
        frames[-1][3][0] += size[id(child)]
        if uses > MAX_ALIASES:
            return _AliasIssue(ManifestIssue(
                path, _line(child), format_loc(loc),
                f"more than {MAX_ALIASES} YAML aliases in one document; write the values "
                "out"), uses - 1)
        if repeated > MAX_ALIAS_NODES:
            return _AliasIssue(ManifestIssue(
                path, _line(child), format_loc(loc),
                f"YAML aliases would repeat more than {MAX_ALIAS_NODES} nodes in one "
                f"document (an alias bomb?); write the values out"), uses - 1)
    return None


def _at_alias(found: _AliasIssue, text: str, document: int) -> ManifestIssue:
    """``found`` with the line where its alias is written (the walk knew only the line of
    the anchor): one pass over the parser's events up to that alias."""
    seen_docs = -1
    aliases = 0
    try:
        for event in yaml.parse(text, Loader=_Loader):
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
