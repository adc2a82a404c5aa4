"""YAML files to manifest models, with the file, line and field path in every error.

Pure functions, no I/O except :func:`load_directory`. The git side (:mod:`gitsync.source`)
hands in the files of a commit; ``latticectl apply`` hands in the files it was given; both
get back a :class:`LoadResult` whose errors read ``file:line: field: message``, e.g.
``deployments/a.yaml:7: spec.actors[0].id: 'MADJKE....' has 20 characters, not 56; ...``.

Each file may hold many YAML documents. Documents are composed into nodes first (so every
field keeps the line it was written on), then constructed and validated by the pydantic
models of :mod:`lattice.manifests`. Two entities with the same kind and name are an error
naming both places. Duplicate keys inside one mapping are errors too (YAML would silently
keep the last one). Nothing here resolves ``${VAR}`` templates: they stay text. A wadm
OAM ``Application`` document (``core.oam.dev/v1beta1``) is converted into native entities
by :mod:`lattice.oam`, its errors at the lines of the OAM source.

Hostile input costs little: a file over :data:`MAX_FILE_BYTES` is refused before it is
decoded (callers holding only a size, such as :mod:`gitsync.source`, ask
:func:`file_size_issue` without reading the file); YAML aliases are counted on the
composed node graph before anything is constructed, so a "billion laughs" document is
refused after one walk over the nodes actually written (:mod:`lattice.yaml_guard`, which
also finds duplicate keys and the line of a YAML syntax error). Every walk of a node graph
keeps a visited set, so a node shared through aliases is walked once. At most
:data:`MAX_ERRORS_PER_FILE` errors are reported per file, each with file, line and field,
then one line counting the rest (:func:`cap_errors`).
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from lattice import oam
from lattice.manifests import KINDS, BindingSet, Deployment, DesiredState, Manifest, SourceRef
from lattice.yaml_guard import (
    MAX_ALIAS_NODES,
    MAX_ALIASES,
    Loader,
    ManifestIssue,
    alias_issue,
    at_alias,
    construct_plain,
    duplicate_keys,
    format_loc,
    node_at,
    node_line,
    utf8_size,
    yaml_issue,
)

#: File name endings that hold manifests.
SUFFIXES = (".yaml", ".yml")
#: Files bigger than this are refused rather than parsed.
MAX_FILE_BYTES = 1 << 20
#: Errors reported per file; the rest are counted in one last line for that file.
MAX_ERRORS_PER_FILE = 20


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
    return LoadResult(tuple(unique), tuple(cap_errors(errors)), documents)


def cap_errors(errors: Sequence[ManifestIssue],
               limit: int = MAX_ERRORS_PER_FILE) -> list[ManifestIssue]:
    """``errors`` with at most ``limit`` per file, in their order; a file with more gets
    one line after its last shown error, at the line of the first left out: ``... and N
    more errors in this file``. Pure: a file of 10,000 mistakes does not flood the
    status, the commit note or the terminal."""
    shown: dict[str, int] = {}
    left_out: dict[str, tuple[int, ManifestIssue]] = {}  # path -> (count, first left out)
    out: list[ManifestIssue] = []
    slot: dict[str, int] = {}  # path -> where its summary goes in ``out``
    for issue in errors:
        n = shown.get(issue.path, 0)
        if n < limit:
            shown[issue.path] = n + 1
            out.append(issue)
            continue
        count, first = left_out.get(issue.path, (0, issue))
        if not count:
            slot[issue.path] = len(out)
            out.append(issue)  # replaced by the summary below
        left_out[issue.path] = (count + 1, first)
    for path, (count, first) in left_out.items():
        out[slot[path]] = ManifestIssue(
            path, first.line, "", f"... and {count} more error{'s' if count > 1 else ''} "
                                  f"in this file (the first {limit} are shown)")
    return out


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
                              else utf8_size(content))
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
    loader = Loader(text)
    may_alias = "*" in text
    document = -1  # index of the document in the stream, empty ones included
    try:
        while loader.check_node():
            node = loader.get_node()
            document += 1
            if node is None:
                continue
            # an alias is written '*name': without a '*' in the file there is none
            aliases = alias_issue(node, path) if may_alias else None
            if aliases is not None:
                errors.append(at_alias(aliases, text, document))
                count += 1
                continue
            # before constructing: merge keys (<<) rewrite the node while it is constructed
            dups = duplicate_keys(node, path, shared=may_alias)
            if dups:
                errors.extend(dups)
                count += 1
                continue
            data = _construct(loader, node, may_alias)
            if data is None:
                continue
            index = count
            count += 1
            found, problems = validate_entities(data, node, path)
            errors.extend(problems)
            name_line = node_line(node_at(node, ("metadata", "name")))
            manifests.extend(LoadedManifest(m, path, node_line(node), index, name_line)
                             for m in found)
    except yaml.MarkedYAMLError as exc:
        errors.append(yaml_issue(path, text, exc))
    except yaml.YAMLError as exc:
        errors.append(ManifestIssue(path, 1, "", f"not valid YAML: {exc}"))
    finally:
        loader.dispose()
    return manifests, errors, count


def _construct(loader: yaml.SafeLoader, node: yaml.Node, may_alias: bool) -> Any:
    """The document's Python value: :func:`construct_plain` for a manifest written
    plainly (no alias in the file), PyYAML's constructor for anything else."""
    if not may_alias:
        try:
            data = construct_plain(loader, node)
        except LookupError:
            pass
        else:
            loader.constructed_objects = {}  # as construct_document leaves it
            return data
    return loader.construct_document(node)


def validate_entities(data: Any, node: yaml.Node, path: str,
                      ) -> tuple[list[Manifest], list[ManifestIssue]]:
    """One constructed document to its entities, or its errors: a native document is one
    entity; a wadm OAM ``Application`` converts to a Deployment and perhaps a BindingSet
    (:func:`lattice.oam.convert`, errors at the lines of the OAM fields)."""
    if oam.is_application(data):
        return oam.convert(data, node, path)
    result = validate_document(data, node, path)
    return ([], result) if isinstance(result, list) else ([result], [])


def validate_document(data: Any, node: yaml.Node, path: str) -> Manifest | list[ManifestIssue]:
    """One constructed document to a model, or the list of its errors."""
    if not isinstance(data, dict):
        return [ManifestIssue(path, node_line(node), "",
                              f"expected a mapping with kind, metadata and spec, "
                              f"got {type(data).__name__}")]
    kind = data.get("kind")
    if kind is None:
        return [ManifestIssue(path, node_line(node), "kind",
                              f"missing; expected one of {', '.join(KINDS)}")]
    model = KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        hint = _did_you_mean(str(kind), [*KINDS, oam.APPLICATION])
        return [ManifestIssue(path, node_line(node_at(node, ("kind",))), "kind",
                              f"unknown kind {kind!r}; expected one of "
                              f"{', '.join(KINDS)} or wadm's Application (apiVersion "
                              f"{oam.OAM_API_VERSION}){hint}")]
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        return [_issue(path, node, model, err) for err in exc.errors()]


# ---------------------------------------------------------------- error details

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
    return ManifestIssue(path, node_line(node_at(node, loc)), format_loc(loc), msg)


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


__all__ = [
    "MAX_ALIASES", "MAX_ALIAS_NODES", "MAX_ERRORS_PER_FILE", "MAX_FILE_BYTES", "SUFFIXES",
    "LoadResult", "LoadedManifest", "ManifestIssue", "canonical_path", "cap_errors",
    "combine", "file_size_issue", "format_loc", "is_manifest_file", "load_directory",
    "load_sources", "normalize_base", "parse_file", "to_yaml", "validate_document",
    "validate_entities", "yaml_issue",
]
