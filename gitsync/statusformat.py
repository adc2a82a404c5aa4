"""The status format in git: where things live, how they are written and read back.

Shared by the writer (:mod:`gitsync.status`) and the readers (``latticectl get``,
``describe``, tests). docs/status-format.md is the human description of the same:

* a note under :data:`NOTES_REF` on each evaluated commit: a YAML
  :class:`~lattice.status.RevisionNote`;
* the orphan branch :data:`STATUS_BRANCH`: ``status.yaml`` (a
  :class:`~lattice.status.SyncSummary`), ``deployments/<name>.yaml``,
  ``bindingsets/<name>.yaml`` and ``hosts/<host_id>.yaml``.

Everything is YAML of the pydantic models in :mod:`lattice.status` (``model_dump`` in JSON
mode: timestamps are ISO 8601 strings). Reading accepts a repository path or a
``git.Repo`` and prefers whichever of the local branch and its remote-tracking copy is newer.

Rendering is memoised per distinct content (:func:`to_yaml`); a host's file, whose
``last_seen`` is the report's clock, is its clock-free rendering with that one line put
in, so a lattice of 10,000 hosts renders no host file again while its hosts say nothing
new, and the memo does not fill with files of past clocks. A deployment's or binding
set's file is made the same way from its revision-free rendering and its ``revision``
line (:func:`revised_yaml`): a new commit moves every revision, and renders nothing else.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import git
import yaml
from pydantic import BaseModel, ValidationError

from gitsync import yamlfast
from gitsync.errors import GitCommandError
from gitsync.gitcmd import cat_blobs, resolve, run_git
from lattice.status import (
    BindingSetStatus,
    DeploymentStatus,
    HostStatus,
    RevisionNote,
    StatusReport,
    SyncSummary,
    canonical_time,
)
from lattice.yaml_guard import construct_plain

log = logging.getLogger(__name__)

NOTES_REF = "refs/notes/lattice"
#: Where the remote's notes are fetched to (never over our own ref: see DESIGN.md); it has
#: to live under refs/notes/ for `git notes --ref` to find it.
REMOTE_NOTES_REF = "refs/notes/remotes/origin/lattice"
STATUS_BRANCH = "lattice/status"
STATUS_REF = f"refs/heads/{STATUS_BRANCH}"
REMOTE_STATUS_REF = f"refs/remotes/origin/{STATUS_BRANCH}"
SUMMARY_FILE = "status.yaml"
FOLDERS: dict[str, type[DeploymentStatus] | type[BindingSetStatus] | type[HostStatus]] = {
    "deployments": DeploymentStatus, "bindingsets": BindingSetStatus, "hosts": HostStatus,
}

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


_Dumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


#: (model type, digest of the model's JSON) -> its YAML: a digest, not the JSON itself, as
#: the key, so 10,000 deployments and 10,000 hosts do not hold their JSON twice
_YAML_CACHE: dict[tuple[type[BaseModel], bytes], bytes] = {}
_YAML_CACHE_MAX = 50_000


def to_yaml(model: BaseModel) -> bytes:
    """Stable YAML of a model (field order as declared); libyaml's emitter when PyYAML
    has it. Memoised by the model's JSON (pydantic-core makes that in microseconds, while
    PyYAML's representer takes a millisecond), so a status report in which one entity
    changed renders one file, not all of them."""
    key = (type(model), hashlib.blake2b(model.model_dump_json().encode(),
                                        digest_size=16).digest())
    out = _YAML_CACHE.get(key)
    if out is None:
        data = model.model_dump(mode="json")
        out = yamlfast.dump(data)  # PyYAML's bytes, ~10x faster; None: PyYAML's own
        if out is None:
            out = yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                            allow_unicode=True).encode()
        if len(_YAML_CACHE) >= _YAML_CACHE_MAX:
            _YAML_CACHE.clear()
        _YAML_CACHE[key] = out
    return out


def file_name(key: str) -> str:
    """A safe file name for an entity or host key."""
    return _UNSAFE.sub("_", key).lstrip(".") or "_"


def report_files(report: StatusReport) -> dict[str, bytes]:
    """Every file of the status branch for ``report``: path → content."""
    return dict(iter_report_files(report))


def iter_report_files(report: StatusReport) -> Iterator[tuple[str, bytes]]:
    """:func:`report_files` one file at a time (the writer streams them to git)."""
    yield SUMMARY_FILE, to_yaml(report.summary)
    for name, dep in report.deployments.items():
        yield f"deployments/{file_name(name)}.yaml", revised_yaml(dep)
    for name, bs in report.bindingsets.items():
        yield f"bindingsets/{file_name(name)}.yaml", revised_yaml(bs)
    for host_id, host in report.hosts.items():
        yield f"hosts/{file_name(host_id)}.yaml", host_yaml(host)


def file_digests(report: StatusReport) -> dict[str, bytes]:
    """path → a digest of its content, for every file of ``report``: what the writer
    compares reports by without holding their bytes."""
    return {path: hashlib.blake2b(data, digest_size=16).digest()
            for path, data in iter_report_files(report)}


_UNSEEN = b"\nlast_seen: null\n"
_last_stamp: tuple[object, bytes] | None = None  # last_seen -> its YAML line (one report)


def host_yaml(host: HostStatus) -> bytes:
    """``to_yaml(host)``, made from the memoised rendering of ``host`` without its
    ``last_seen`` (the report's clock: new on every report) and that one line."""
    global _last_stamp
    if host.last_seen is None:
        return to_yaml(host)
    base = to_yaml(host.model_copy(update={"last_seen": None}))
    stamp = _last_stamp[1] if _last_stamp and _last_stamp[0] == host.last_seen else None
    if stamp is None:
        value = host.model_dump(mode="json", include={"last_seen"})
        stamp = b"\n" + yaml.dump(value, Dumper=_Dumper, default_flow_style=False,
                                  allow_unicode=True).encode()
        _last_stamp = (host.last_seen, stamp)
    return base.replace(_UNSEEN, stamp, 1)


_UNREVISED = b"\nrevision: ''\n"
_last_revision: tuple[str, bytes] | None = None  # revision -> its YAML line (one report)


def revised_yaml(model: DeploymentStatus | BindingSetStatus) -> bytes:
    """``to_yaml(model)``, made from the memoised rendering of ``model`` without its
    ``revision`` and that one line: a new commit changes every deployment's revision and
    nothing else of most, so their files are not rendered again."""
    global _last_revision
    if not model.revision:
        return to_yaml(model)
    base = to_yaml(model.model_copy(update={"revision": ""}))
    if base.count(_UNREVISED) != 1:
        return to_yaml(model)
    line = (_last_revision[1] if _last_revision and _last_revision[0] == model.revision
            else None)
    if line is None:
        line = b"\n" + yaml.dump({"revision": model.revision}, Dumper=_Dumper,
                                  default_flow_style=False, allow_unicode=True).encode()
        _last_revision = (model.revision, line)
    return base.replace(_UNREVISED, line, 1)


def without_clock(report: StatusReport) -> StatusReport:
    """``report`` minus the fields that change on every pass (``summary.updated``, hosts'
    ``last_seen``): what decides whether the status branch needs a commit."""
    return report.model_copy(update={
        "summary": report.summary.model_copy(update={"updated": None}),
        "hosts": {k: h.model_copy(update={"last_seen": None})
                  for k, h in report.hosts.items()},
    })


def render_note(note: RevisionNote) -> bytes:
    return to_yaml(note)


def parse_note(data: bytes | str) -> RevisionNote | None:
    try:
        return RevisionNote.model_validate(yaml.load(data, Loader=_Loader))
    except (yaml.YAMLError, ValidationError) as exc:
        log.warning("unreadable note: %s", exc)
        return None


def _as_repo(repo: git.Repo | str | Path) -> tuple[git.Repo, bool]:
    if isinstance(repo, git.Repo):
        return repo, False
    return git.Repo(repo), True


def _newest(repo: git.Repo, refs: list[str]) -> str | None:
    best: tuple[int, str] | None = None
    for ref in refs:
        sha = resolve(repo, ref)
        if sha is None:
            continue
        when = int(repo.commit(sha).committed_date)
        if best is None or when > best[0]:
            best = (when, sha)
    return best[1] if best else None


def read_status(repo: git.Repo | str | Path, *, ref: str | None = None,
                cache: ParseCache | None = None) -> StatusReport | None:
    """The report on the status branch (newest of local and remote-tracking), or None."""
    r, owned = _as_repo(repo)
    try:
        sha = resolve(r, ref) if ref else _newest(r, [STATUS_REF, REMOTE_STATUS_REF])
        if sha is None:
            return None
        if cache is not None:
            return _report_listed(r, sha, cache)
        return report_from_tree(r.commit(sha).tree)
    finally:
        if owned:
            r.close()


#: Parsed status files, for readers that read the branch again and again (``latticectl
#: dashboard``): ``b:<folder>/<blob id>`` -> (model, its ``n:`` key), and
#: ``n:<folder>/<digest of the file without its revision/last_seen>`` -> model.
ParseCache = dict[str, Any]
#: A status file larger than this is skipped by the listed reader (the agent writes a few
#: KiB a file).
MAX_STATUS_FILE = 4 * 1024 * 1024


def report_from_tree(tree: git.Tree) -> StatusReport | None:
    """Parse the files of a status tree back into a :class:`StatusReport`."""
    try:
        summary = SyncSummary.model_validate(_load(tree / SUMMARY_FILE))
    except KeyError:
        return None
    parts: dict[str, dict[str, Any]] = {k: {} for k in FOLDERS}
    for folder, model in FOLDERS.items():
        try:
            sub = tree / folder
        except KeyError:
            continue
        for blob in sub.blobs:
            try:
                item = model.model_validate(_load(blob))
            except (ValidationError, yaml.YAMLError) as exc:
                log.warning("status branch: skipping %s: %s", blob.path, exc)
                continue
            parts[folder][item.host_id if isinstance(item, HostStatus) else item.name] = item
    return StatusReport(summary=summary, deployments=parts["deployments"],
                        bindingsets=parts["bindingsets"], hosts=parts["hosts"])


def _report_listed(repo: git.Repo, sha: str, cache: ParseCache) -> StatusReport | None:
    """:func:`report_from_tree` for a reader that reads the branch again and again: one
    ``git ls-tree``, one ``git cat-file --batch`` for the files not in ``cache``, plain
    documents built without PyYAML's generic constructor, and a file that differs from
    one parsed before only in its top-level ``revision`` or ``last_seen`` (a new commit
    rewrites every deployment's file for the first, hosts move the second) is not parsed
    again. ``cache`` keeps this commit's files afterwards."""
    git_dir = repo.common_dir
    listed: list[tuple[str, str, str, int]] = []  # folder ("" for the summary), path, id, size
    for record in run_git("ls-tree", "-r", "-l", "-z", sha, git_dir=git_dir).split("\0"):
        meta, _, path = record.partition("\t")
        fields = meta.split()
        if len(fields) != 4 or fields[1] != "blob":
            continue
        folder = path.rpartition("/")[0]
        if (path == SUMMARY_FILE or folder in FOLDERS) and fields[3].isdigit():
            if int(fields[3]) > MAX_STATUS_FILE:
                log.warning("status branch: skipping %s: %s bytes", path, fields[3])
                continue
            listed.append((folder, path, fields[2], int(fields[3])))
    wanted = [(oid, size) for folder, path, oid, size in listed
              if path == SUMMARY_FILE or f"b:{folder}/{oid}" not in cache]
    blobs = dict(zip((oid for oid, _ in wanted), cat_blobs(git_dir, wanted), strict=True))
    seen = dict(cache)
    cache.clear()
    summary: SyncSummary | None = None
    parts: dict[str, dict[str, Any]] = {k: {} for k in FOLDERS}
    for folder, path, oid, _ in listed:
        if path == SUMMARY_FILE:
            summary = SyncSummary.model_validate(_load_bytes(blobs[oid]))
            continue
        known = seen.get(f"b:{folder}/{oid}")
        if known is not None:  # the same blob: its model, and its volatile-free key kept
            item, key = known
            cache[key] = item
        else:
            try:
                item, key = _parse_again(folder, blobs[oid], seen, cache)
            except (ValidationError, yaml.YAMLError) as exc:
                log.warning("status branch: skipping %s: %s", path, exc)
                continue
        cache[f"b:{folder}/{oid}"] = (item, key)
        parts[folder][item.host_id if isinstance(item, HostStatus) else item.name] = item
    if summary is None:
        return None
    return StatusReport(summary=summary, deployments=parts["deployments"],
                        bindingsets=parts["bindingsets"], hosts=parts["hosts"])


#: The top-level fields that change without the rest of a file changing.
_VOLATILE = re.compile(rb"^(revision|last_seen): (.*)$", re.MULTILINE)


def _parse_again(folder: str, data: bytes, seen: ParseCache, cache: ParseCache
                 ) -> tuple[Any, str]:
    """One status file's model and its key without the volatile fields; the model from
    ``seen`` with those fields replaced when a file equal but for them was parsed
    before."""
    volatile: dict[str, bytes] = {}

    def blank(m: re.Match[bytes]) -> bytes:
        volatile[m.group(1).decode()] = m.group(2)
        return m.group(1) + b": ~"

    key = f"n:{folder}/{hashlib.sha1(_VOLATILE.sub(blank, data)).hexdigest()}"
    known = seen.get(key)
    update = {k: _scalar(k, v) for k, v in volatile.items()}
    if known is None or any(v is _UNKNOWN for v in update.values()):
        item = FOLDERS[folder].model_validate(_load_bytes(data))
    else:
        item = known.model_copy(update=update)
    cache[key] = item
    return item, key


_UNKNOWN = object()


def _scalar(key: str, raw: bytes) -> Any:
    """A volatile field's value as the writer writes it (``revision``: a sha or empty;
    ``last_seen``: an ISO time; maybe quoted), read without a YAML parser;
    :data:`_UNKNOWN` for anything else (the caller parses the whole file)."""
    text = raw.decode().strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
        if "'" in text or '"' in text or "\\" in text:
            return _UNKNOWN
    if key == "revision":
        return text if text == "" or _SHA_TEXT.match(text) else _UNKNOWN
    try:
        return canonical_time(datetime.fromisoformat(text))
    except ValueError:
        return _UNKNOWN


_SHA_TEXT = re.compile(r"^[0-9a-f]{4,64}$")


def _load_bytes(data: bytes) -> Any:
    """A status file's value: plain documents (what the writer writes) built directly,
    anything else (an alias, a tag) by PyYAML's constructor."""
    loader = _Loader(data)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if b"*" not in data:  # no alias: the plain constructor cannot be made to expand
            with contextlib.suppress(LookupError):
                return construct_plain(loader, node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _load(blob: Any) -> Any:
    return yaml.load(blob.data_stream.read(), Loader=_Loader)


def read_note(repo: git.Repo | str | Path, sha: str) -> RevisionNote | None:
    """The note on commit ``sha`` (local notes first, then the fetched remote ones)."""
    r, owned = _as_repo(repo)
    try:
        for ref in (NOTES_REF, REMOTE_NOTES_REF):
            if resolve(r, ref) is None:
                continue
            try:
                text = run_git("notes", f"--ref={ref}", "show", sha, git_dir=r.common_dir)
            except GitCommandError:
                continue
            return parse_note(text)
        return None
    finally:
        if owned:
            r.close()


def fetch_status(repo: git.Repo | str | Path, *, remote: str = "origin") -> bool:
    """Fetch the remote's status branch and notes into tracking refs (for readers in a
    clone). Returns False when the remote has neither."""
    r, owned = _as_repo(repo)
    got = False
    try:
        for src, dst in ((STATUS_REF, REMOTE_STATUS_REF), (NOTES_REF, REMOTE_NOTES_REF)):
            try:
                run_git("fetch", "--no-tags", "--quiet", remote, f"+{src}:{dst}",
                        git_dir=r.common_dir)
                got = True
            except GitCommandError as exc:
                log.debug("fetch %s: %s", src, exc.message)
        return got
    finally:
        if owned:
            r.close()
