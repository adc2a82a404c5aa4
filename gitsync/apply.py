"""``latticectl apply`` and ``delete``: validate, commit, push, retry on a race.

The commit is built with plumbing on top of the branch tip (objects and a tree from the
tip's tree plus our files; never from the user's index), so nothing else the user staged
is ever committed. The flow, for a clone with a remote:

1. read the local branch, fetch the remote branch; the base is the remote tip (the local
   branch must not hold unpushed commits: we would push them too);
2. plan on the base tree: each entity goes to its canonical path
   (``deployments/<name>.yaml``, ``bindingsets/<name>.yaml`` under the manifests path), or
   replaces the single-document file where it already lives; an entity equal to what is
   there is ``unchanged``. Refuse when the user has local changes to those files;
3. commit, push without force. Rejected because the branch moved: fetch, plan again on the
   new tip, retry (up to :data:`MAX_ATTEMPTS`, jittered backoff);
4. fast-forward the user's branch and checkout to the pushed commit.

Without a remote (or ``push=False``) the branch is moved by compare-and-swap instead, and
the checkout updated for the changed paths. A URL as ``repo_path`` is cloned (bare) into a
temporary directory first. Input validation (file, line, field) happens before any of this:
see :func:`load_inputs`.
"""

from __future__ import annotations

import difflib
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import git

from gitsync.errors import ApplyError, GitCommandError, InvalidManifestsError, PushError
from gitsync.gitcmd import StrPath, commit_tree, resolve, run_git, update_ref, update_tree
from gitsync.source import is_url, manifest_files
from lattice.backoff import Backoff
from lattice.manifest_loader import (
    LoadResult,
    canonical_path,
    load_sources,
    normalize_base,
    to_yaml,
)
from lattice.manifests import Manifest

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 6  # the first try and 5 retries
Changes = dict[str, bytes | None]


@dataclass(frozen=True)
class EntityChange:
    """What happens to one entity: created, configured, unchanged, deleted, not found."""

    kind: str
    name: str
    path: str
    action: str

    def __str__(self) -> str:
        return f"{self.kind.lower()}/{self.name} {self.action}"


@dataclass
class ApplyResult:
    """The outcome: per-entity changes, the commit made (if any) and where it went."""

    branch: str
    changes: list[EntityChange] = field(default_factory=list)
    commit: str | None = None
    pushed: bool = False
    remote: str | None = None
    attempts: int = 0
    dry_run: bool = False
    diff: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(c.action in ("created", "configured", "deleted") for c in self.changes)


def load_inputs(sources: Sequence[tuple[str, str | bytes]]) -> list[Manifest]:
    """Validate every input document; raise :class:`InvalidManifestsError` listing all
    errors (``file:line: field: message``) when any is invalid or none is given."""
    result = load_sources(sources)
    if result.errors:
        raise InvalidManifestsError(result.error_lines())
    if not result.manifests:
        raise InvalidManifestsError(["(input):1: (document): no manifests found"])
    return [m.manifest for m in result.manifests]


def apply_manifests(
    repo_path: StrPath,
    documents: Sequence[Manifest],
    *,
    message: str | None = None,
    dry_run: bool = False,
    manifests_path: str = "",
    push: bool = True,
) -> ApplyResult:
    """Write ``documents`` to their canonical paths, commit and push (see module doc)."""
    base = _base(manifests_path)

    def plan(existing: _Tree) -> tuple[Changes, list[EntityChange]]:
        changes: Changes = {}
        out: list[EntityChange] = []
        for doc in documents:
            kind, name = doc.kind, doc.metadata.name
            target = canonical_path(kind, name, base)
            found = existing.loaded.find(kind, name)
            if found is not None and found.manifest == doc:
                out.append(EntityChange(kind, name, found.path, "unchanged"))
                continue
            if found is not None:
                target = found.path
                _only_document(existing, found.path, kind, name)
            else:
                others = [m.ref for m in existing.loaded.manifests if m.path == target]
                if others:
                    raise ApplyError(f"{target} already holds {', '.join(others)}; "
                                     f"move that entity before applying {kind} {name}")
            changes[target] = to_yaml(doc).encode()
            out.append(EntityChange(kind, name, target,
                                    "configured" if found is not None else "created"))
        _check_result(existing, changes, base)
        return changes, out

    return _transaction(repo_path, plan, verb="apply", message=message, dry_run=dry_run,
                        base=base, push=push)


def delete_manifests(
    repo_path: StrPath,
    targets: Sequence[tuple[str, str]],
    *,
    message: str | None = None,
    dry_run: bool = False,
    manifests_path: str = "",
    push: bool = True,
) -> ApplyResult:
    """Remove the files defining each ``(kind, name)``, commit and push."""
    base = _base(manifests_path)

    def plan(existing: _Tree) -> tuple[Changes, list[EntityChange]]:
        changes: Changes = {}
        out: list[EntityChange] = []
        for kind, name in targets:
            found = existing.loaded.find(kind, name)
            if found is None:
                out.append(EntityChange(kind, name, "", "not found"))
                continue
            _only_document(existing, found.path, kind, name)
            changes[found.path] = None
            out.append(EntityChange(kind, name, found.path, "deleted"))
        return changes, out

    return _transaction(repo_path, plan, verb="delete", message=message, dry_run=dry_run,
                        base=base, push=push)


# ---------------------------------------------------------------- planning helpers

@dataclass(frozen=True)
class _Tree:
    """The manifests of the base commit: raw files and what they parse to."""

    files: dict[str, bytes]
    loaded: LoadResult


def _base(manifests_path: str) -> str:
    try:
        return normalize_base(manifests_path)
    except ValueError as exc:
        raise ApplyError(str(exc)) from None


def _read_tree(tree: git.Tree | None, base: str) -> _Tree:
    files = manifest_files(tree, base)
    return _Tree(files, load_sources(files.items()))


def _only_document(existing: _Tree, path: str, kind: str, name: str) -> None:
    if existing.loaded.documents.get(path, 0) > 1:
        raise ApplyError(f"{kind} {name} is defined in {path} together with other "
                         "documents; split that file (one entity per file) first")


def _check_result(existing: _Tree, changes: Changes, base: str) -> None:
    """Refuse when the files we write would not load cleanly next to the others."""
    after = {p: c for p, c in {**existing.files, **changes}.items() if c is not None}
    result = load_sources(after.items())
    bad = [str(e) for e in result.errors if e.path in changes]
    if bad:
        raise InvalidManifestsError(bad)


def _diff(existing: _Tree, changes: Changes) -> str:
    out: list[str] = []
    for path in sorted(changes):
        old = existing.files.get(path, b"").decode(errors="replace").splitlines(keepends=True)
        new = (changes[path] or b"").decode().splitlines(keepends=True)
        out.extend(difflib.unified_diff(old, new, f"a/{path}" if old else "/dev/null",
                                        f"b/{path}" if new else "/dev/null"))
    return "".join(out)


def _message(verb: str, changes: list[EntityChange], message: str | None) -> str:
    done = [str(c) for c in changes
            if c.action in ("created", "configured", "deleted", "suspended", "resumed")]
    body = "\n".join(f"- {line}" for line in done)
    subject = message or f"latticectl {verb}: " + ", ".join(done)
    return f"{subject}\n\n{body}\n"


# ---------------------------------------------------------------- the transaction

Plan = Callable[[_Tree], tuple[Changes, list[EntityChange]]]


def _transaction(repo_path: StrPath, plan: Plan, *, verb: str, message: str | None,
                 dry_run: bool, base: str, push: bool) -> ApplyResult:
    with _open(repo_path) as repo:
        try:
            branch = repo.head.reference.name
        except TypeError:
            raise ApplyError(f"{repo_path}: HEAD is detached; check out a branch") from None
        remote = _remote_of(repo, branch) if push else None
        try:
            return _attempts(repo, branch, remote, plan, verb=verb, message=message,
                             dry_run=dry_run, base=base)
        except GitCommandError as exc:
            raise ApplyError(exc.message) from exc


def _attempts(repo: git.Repo, branch: str, remote: str | None, plan: Plan, *, verb: str,
              message: str | None, dry_run: bool, base: str) -> ApplyResult:
    git_dir = Path(repo.common_dir)
    ref = f"refs/heads/{branch}"
    tracking = f"refs/remotes/{remote}/{branch}"
    result = ApplyResult(branch=branch, remote=remote, dry_run=dry_run)
    for attempt in range(MAX_ATTEMPTS):
        result.attempts = attempt + 1
        local = resolve(repo, ref)
        tip = local
        if remote is not None:
            try:
                tip = _fetch(git_dir, remote, branch, tracking, repo) or local
            except GitCommandError as exc:
                if not exc.is_race:
                    raise
                RACE_BACKOFF.sleep(attempt)
                continue
            if local is not None and tip != local and not _is_ancestor(git_dir, local, tip):
                raise ApplyError(f"branch {branch} has commits that are not on {remote}/"
                                 f"{branch}; push or drop them, then apply again")
        existing = _read_tree(repo.commit(tip).tree if tip else None, base)
        changes, result.changes = plan(existing)
        if not changes:
            return result
        if not repo.bare:
            _refuse_local_changes(repo, sorted(changes))
        if dry_run:
            result.diff = _diff(existing, changes)
            return result
        tree = update_tree(repo, repo.commit(tip).tree if tip else None, changes)
        try:  # signed when the user's git config says commit.gpgsign, as `git commit` is
            commit = commit_tree(git_dir, tree, [tip] if tip else [],
                                 _message(verb, result.changes, message))
        except GitCommandError as exc:  # no identity, or the signing key or gpg.format
            if _no_identity(exc.stderr):
                raise ApplyError(
                    "cannot commit: git has no user identity; set one with "
                    "`git config user.name \"Your Name\"; git config user.email "
                    "you@example.com` (add --global for every repository)") from exc
            raise ApplyError(f"cannot commit: {exc.message}; when signing, check "
                             "user.signingkey and gpg.format in your git config") from exc
        try:
            if remote is not None:
                run_git("push", "--quiet", remote, f"{commit}:{ref}", git_dir=git_dir)
            else:
                update_ref(git_dir, ref, commit, tip, message=f"latticectl {verb}")
        except GitCommandError as exc:
            if not exc.is_race:
                raise
            log.info("%s: %s moved (attempt %d); retrying on the new tip", verb, branch,
                     attempt + 1)
            RACE_BACKOFF.sleep(attempt)
            continue
        result.commit = commit
        result.pushed = remote is not None
        _catch_up(repo, ref, tip if remote is None else resolve(repo, ref), commit,
                  sorted(changes), result)
        return result
    raise PushError(f"{verb}: {branch} kept moving; gave up after {MAX_ATTEMPTS} attempts")


def _no_identity(stderr: str) -> bool:
    """True when git refused to commit because it knows no author or committer."""
    low = stderr.lower()
    return any(m in low for m in ("identity unknown", "please tell me who you are",
                                  "empty ident name", "unable to auto-detect email"))


def _fetch(git_dir: Path, remote: str, branch: str, tracking: str,
           repo: git.Repo) -> str | None:
    try:
        run_git("fetch", "--no-tags", "--quiet", remote, f"+refs/heads/{branch}:{tracking}",
                git_dir=git_dir)
    except GitCommandError as exc:
        if "couldn't find remote ref" in exc.stderr.lower():
            return None  # the remote branch does not exist yet: we create it
        raise
    return resolve(repo, tracking)


def _is_ancestor(git_dir: Path, old: str, new: str | None) -> bool:
    if new is None:
        return False
    try:
        run_git("merge-base", "--is-ancestor", old, new, git_dir=git_dir)
        return True
    except GitCommandError:
        return False


def _remote_of(repo: git.Repo, branch: str) -> str | None:
    """The branch's upstream remote, else ``origin`` when there is one, else None."""
    try:
        configured = run_git("config", "--get", f"branch.{branch}.remote",
                             git_dir=repo.common_dir)
    except GitCommandError:
        configured = ""
    names = [r.name for r in repo.remotes]
    if configured and configured in names:
        return configured
    return "origin" if "origin" in names else None


def _refuse_local_changes(repo: git.Repo, paths: list[str]) -> None:
    out = run_git("--no-optional-locks", "status", "--porcelain", "-z",
                  "--untracked-files=all", "--", *paths, cwd=repo.working_tree_dir)
    dirty = sorted({entry[3:] for entry in out.split("\0") if len(entry) > 3})
    if dirty:
        raise ApplyError(f"{', '.join(dirty)}: local changes (staged or not) to files "
                         "apply would write; commit, stash or discard them first")


def _catch_up(repo: git.Repo, ref: str, old: str | None, commit: str, paths: list[str],
              result: ApplyResult) -> None:
    """Move the user's branch and checkout to ``commit``; a failure is only a warning
    (the commit is in the repository either way)."""
    git_dir = Path(repo.common_dir)
    for attempt in range(3):
        try:
            if repo.bare:
                if old is None or _is_ancestor(git_dir, old, commit):
                    update_ref(git_dir, ref, commit, old, message="latticectl")
            elif result.pushed:
                run_git("merge", "--ff-only", "--quiet", commit, cwd=repo.working_tree_dir)
            elif old is not None:
                run_git("read-tree", "-m", "-u", old, commit, cwd=repo.working_tree_dir)
            else:
                run_git("checkout", commit, "--", *[p for p in paths],
                        cwd=repo.working_tree_dir)
            return
        except GitCommandError as exc:
            if exc.is_race and attempt < 2:
                RACE_BACKOFF.sleep(attempt)
                old = resolve(repo, ref) if repo.bare else old
                continue
            result.warnings.append(f"{commit[:12]} is committed, but the checkout was not "
                                   f"updated ({exc.message}); run `git pull --ff-only`")
            return


@contextmanager
def _open(repo_path: StrPath) -> Iterator[git.Repo]:
    """The repository at a path (searched upwards), or a temporary bare clone of a URL."""
    location = os.fspath(repo_path)
    if is_url(location) and not Path(location).is_dir():
        with tempfile.TemporaryDirectory(prefix="latticectl-") as tmp:
            try:
                run_git("clone", "--bare", "--quiet", location, f"{tmp}/repo.git")
            except GitCommandError as exc:
                raise ApplyError(f"cannot clone {location}: {exc.message}") from exc
            repo = git.Repo(f"{tmp}/repo.git")
            try:
                yield repo
            finally:
                repo.close()
        return
    try:
        repo = git.Repo(location, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise ApplyError(f"{location} is not in a git repository; pass --repo") from None
    try:
        yield repo
    finally:
        repo.close()


#: A push race with another applier: 0.1 s x 2^n x U(0.5, 1.5), capped at 2 s x U(0.5, 1.5),
#: so two racing appliers spread out.
RACE_BACKOFF = Backoff(base=0.15, max=3.0, jitter=2 / 3)
