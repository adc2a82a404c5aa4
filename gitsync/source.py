"""A git repository as the source of desired state.

:meth:`GitSource.open` takes a local path or a remote URL:

* a **local repository** (a directory that is a git repository, bare or not) is used in
  place and read-only as far as the user's work goes: the agent never touches its working
  tree or index; it only adds the notes ref and the ``lattice/status`` branch, with
  plumbing. The branch defaults to the one HEAD points at.
* a **remote URL** (``file://``, ``ssh://``, ``git@host:path``, ``https://``) is mirrored
  into ``<data_dir>/mirrors/`` as a bare repository; :meth:`GitSource.fetch` force-updates
  ``refs/remotes/origin/<branch>`` (so force-pushes and resets are simply followed). The
  branch defaults to the remote's default branch (``ls-remote --symref``).

:meth:`GitSource.evaluate` turns the tree at a commit into a
:class:`~lattice.manifests.DesiredState` through :mod:`lattice.manifest_loader`; results are
cached by the id of the manifests subtree, so a commit that did not change them costs one
tree lookup; a commit that changed some files re-reads and re-parses only those (parses are
cached by blob id, listed with their sizes by one ``git ls-tree -l``; a file over the size
limit is refused from that size, never read). :mod:`gitsync.watch` decides *when*
to look; the reconciler decides what to do with an :class:`Evaluation`.

Every fetch replaces :attr:`GitSource.health` (a :class:`~gitsync.health.SourceHealth`:
the last error, the last good fetch, the start of a failure streak); a failed fetch leaves
the mirror's refs as they were, so the last fetched head stays in force, and the first good
fetch after a streak logs the recovery at INFO.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import git

from gitsync.errors import FetchError, GitCommandError, NoHeadError, SourceError
from gitsync.gitcmd import cat_blobs, resolve, run_git
from gitsync.health import SourceHealth, redact, utcnow
from gitsync.verify import CommitVerifier, Verdict
from lattice.manifest_loader import (
    ParsedFile,
    combine,
    file_size_issue,
    is_manifest_file,
    normalize_base,
    parse_file,
)
from lattice.manifests import DesiredState
from lattice.status import Reason

log = logging.getLogger(__name__)

REMOTE = "origin"
CACHE_SIZE = 128
FETCH_TIMEOUT = 120.0
_SCP_LIKE = re.compile(r"^[\w.+-]+@[\w.-]+:")
_MODE_SYMLINK_TEXT = "120000"


@dataclass(frozen=True)
class Evaluation:
    """The verdict on one commit: its desired state, or the reasons it has none."""

    revision: str
    desired: DesiredState | None
    errors: list[str]
    tree: str = ""
    #: why ``desired`` is None (a :class:`~lattice.status.Reason`); meaningless when valid
    reason: str = Reason.VALIDATION_FAILED
    #: the signature policy's verdict on the commit, when one was applied
    signature: Verdict | None = None

    @property
    def valid(self) -> bool:
        return self.desired is not None


def is_url(location: str) -> bool:
    """True for ``scheme://...`` and scp-like ``user@host:path`` locations."""
    return "://" in location or bool(_SCP_LIKE.match(location))


class GitSource:
    """One repository and branch; thread-safe (one lock around git access)."""

    def __init__(self, *, location: str, repo: git.Repo, branch: str, path: str,
                 is_remote: bool) -> None:
        #: where it comes from, for messages and logs: a URL's user and password redacted
        self.location = redact(location)
        self.repo = repo
        self.branch = branch
        self.path = normalize_base(path)
        self.is_remote = is_remote
        self._lock = threading.RLock()
        self._cache: OrderedDict[str, tuple[DesiredState | None, list[str]]] = OrderedDict()
        self.evaluations = 0  #: how many trees were actually parsed (cache misses)
        self.files_parsed = 0  #: how many files were read and parsed (blob cache misses)
        self._parsed: dict[tuple[str, str], ParsedFile] = {}  # (path, blob id) of the last tree
        #: how the fetches go; replaced (never mutated) after each one, so readers in other
        #: threads see a consistent record
        self.health = SourceHealth(location=redact(location))

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, location: str, *, branch: str | None = None, path: str = "",
             data_dir: Path) -> GitSource:
        """Open a local repository in place or mirror a remote one into ``data_dir``."""
        try:
            base = normalize_base(path)
        except ValueError as exc:
            raise SourceError(str(exc)) from None
        local = Path(location).expanduser()
        if not is_url(location) or local.is_dir():
            return cls._open_local(location, local, branch, base)
        return cls._open_remote(location, branch, base, data_dir)

    @classmethod
    def _open_local(cls, location: str, local: Path, branch: str | None,
                    path: str) -> GitSource:
        if not local.is_dir():
            raise SourceError(f"{location}: no such directory (and not a URL)")
        try:
            repo = git.Repo(local)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            raise SourceError(f"{location}: not a git repository") from None
        if branch is None:
            try:
                branch = repo.head.reference.name
            except TypeError:
                repo.close()
                raise SourceError(
                    f"{location}: HEAD is detached; pass the branch to follow") from None
        log.info("source %s: local repository, branch %s, path %r", location, branch, path)
        return cls(location=location, repo=repo, branch=branch, path=path, is_remote=False)

    @classmethod
    def _open_remote(cls, url: str, branch: str | None, path: str,
                     data_dir: Path) -> GitSource:
        mirror = mirror_dir(data_dir, url)
        if not (mirror / "HEAD").is_file():
            mirror.parent.mkdir(parents=True, exist_ok=True)
            run_git("init", "--bare", "-q", str(mirror))
            run_git("remote", "add", REMOTE, url, git_dir=mirror)
        elif run_git("config", "--get", f"remote.{REMOTE}.url", git_dir=mirror) != url:
            run_git("remote", "set-url", REMOTE, url, git_dir=mirror)
        if branch is None:
            branch = default_branch(mirror)
        repo = git.Repo(mirror)
        log.info("source %s: mirrored in %s, branch %s, path %r", redact(url), mirror, branch,
                 path)
        src = cls(location=url, repo=repo, branch=branch, path=path, is_remote=True)
        try:
            src.fetch()
        except FetchError as exc:
            if resolve(repo, src.ref) is None:
                repo.close()
                raise SourceError(f"cannot fetch branch {branch} of {url}: {exc.message}") \
                    from exc
            log.warning("source %s: fetch failed, using the mirror as it is: %s", redact(url),
                        exc.message)
        return src

    # ------------------------------------------------------------------ refs
    @property
    def ref(self) -> str:
        """The ref whose tip is the desired revision."""
        if self.is_remote:
            return f"refs/remotes/{REMOTE}/{self.branch}"
        return f"refs/heads/{self.branch}"

    @property
    def git_dir(self) -> Path:
        """The directory holding refs and objects (the common dir of a worktree)."""
        return Path(self.repo.common_dir).resolve()

    def fetch(self) -> None:
        """Bring the mirror's branch to the remote's tip (forced: history may be rewritten)
        and record the outcome in :attr:`health`. A no-op for a local repository. Raises
        :class:`FetchError` (its message redacted) when git fails; the refs stay as they
        were."""
        if not self.is_remote:
            return
        spec = f"+refs/heads/{self.branch}:{self.ref}"
        with self._lock:
            try:
                run_git("fetch", "--no-tags", "--quiet", REMOTE, spec, git_dir=self.git_dir,
                        timeout=FETCH_TIMEOUT)
            except GitCommandError as exc:
                err = FetchError(redact(f"fetch {self.location} {self.branch}: {exc.message}"))
                self.health = self.health.failed(err.message, utcnow())
                raise err from exc
            before, now = self.health, utcnow()
            self.health = before.succeeded(now)
        if not before.ok:
            log.info("%s: %s", self.health.location, before.describe_recovery(now))

    def head(self) -> str:
        """The sha at the tip of the branch (read from the refs, no git process)."""
        sha = resolve(self.repo, self.ref)
        if sha is None:
            raise NoHeadError(f"{self.location}: branch {self.branch} has no commit yet",
                              delay=1.0)
        return sha

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, sha: str, *, verify: CommitVerifier | None = None) -> Evaluation:
        """Manifests at ``sha`` to a desired state (or errors); cached by tree id. With
        ``verify``, a commit whose signature it does not trust is Invalid with reason
        ``UntrustedCommit`` before a single manifest of it is read."""
        with self._lock:
            try:
                commit = self.repo.commit(sha)
                root = commit.tree
            except (ValueError, git.BadName, git.BadObject) as exc:
                raise SourceError(f"{self.location}: no commit {sha}: {exc}") from None
            verdict = None if verify is None else verify.verify(self.git_dir, sha)
            if verdict is not None and not verdict.trusted:
                return Evaluation(revision=sha, desired=None, errors=[verdict.describe()],
                                  reason=Reason.UNTRUSTED_COMMIT, signature=verdict)
            if self.path:
                try:
                    tree = root / self.path
                except KeyError:
                    msg = f"{self.path}:1: (path): manifests path does not exist at {sha[:12]}"
                    return Evaluation(revision=sha, desired=None, errors=[msg],
                                      signature=verdict)
                if tree.type != "tree":
                    msg = f"{self.path}:1: (path): manifests path is not a directory"
                    return Evaluation(revision=sha, desired=None, errors=[msg],
                                      signature=verdict)
            else:
                tree = root
            key = str(tree.hexsha)
            cached = self._cache.get(key)
            if cached is None:
                cached = self._load(tree)
                self._cache[key] = cached
                while len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
            else:
                self._cache.move_to_end(key)
        desired, errors = cached
        if desired is not None:
            desired = desired.model_copy(update={"revision": sha})
        return Evaluation(revision=sha, desired=desired, errors=list(errors), tree=key,
                          signature=verdict)

    def _load(self, tree: git.Tree) -> tuple[DesiredState | None, list[str]]:
        self.evaluations += 1
        blobs = manifest_blobs(self.git_dir, str(tree.hexsha), normalize_base(self.path))
        parsed: dict[tuple[str, str], ParsedFile] = {}
        unread: list[BlobEntry] = []
        misses = 0
        for path, blob, size in blobs:
            key = (path, blob)
            got = self._parsed.get(key)
            if got is None:
                misses += 1
                too_big = file_size_issue(path, size)  # refused from ls-tree's size, unread
                if too_big is None:
                    unread.append(BlobEntry(path, blob, size))
                    continue
                got = ([], [too_big], 0)
            parsed[key] = got
        # the files to parse, read by one git process (not one object read per file)
        contents = cat_blobs(self.git_dir, [(e.blob, e.size) for e in unread])
        for entry, content in zip(unread, contents, strict=True):
            parsed[(entry.path, entry.blob)] = parse_file(entry.path, content)
        self._parsed = parsed  # keep only the newest tree's files: bounded by its size
        self.files_parsed += misses
        result = combine((path, got) for (path, _blob), got in parsed.items())
        log.debug("source %s: tree %s: %d files (%d parsed), %d entities, %d errors",
                  self.location, tree.hexsha[:12], len(blobs), misses,
                  len(result.manifests), len(result.errors))
        return result.desired(), result.error_lines()

    def close(self) -> None:
        with self._lock:
            self.repo.close()

    def __repr__(self) -> str:
        kind = "remote" if self.is_remote else "local"
        return f"GitSource({self.location!r}, {kind}, branch={self.branch!r})"


def manifest_files(tree: git.Tree | None, base: str) -> dict[str, bytes]:
    """path → content of every manifest file under ``base`` in ``tree`` (a root tree),
    chosen as :func:`manifest_blobs` chooses them. A file over the size limit is left out,
    never read (its entities do not validate; :meth:`GitSource.evaluate` reports it)."""
    if tree is None:
        return {}
    repo = tree.repo
    wanted: list[BlobEntry] = []
    for entry in manifest_blobs(Path(repo.git_dir), str(tree.hexsha), ""):
        if not is_manifest_file(entry.path, base):
            continue
        if file_size_issue(entry.path, entry.size) is not None:
            log.warning("%s: %d bytes, over the size limit: left out unread", entry.path,
                        entry.size)
            continue
        wanted.append(entry)
    contents = cat_blobs(repo.git_dir, [(e.blob, e.size) for e in wanted])
    return {e.path: content for e, content in zip(wanted, contents, strict=True)}


class BlobEntry(NamedTuple):
    """A manifest file of a tree: its path from the repository root, blob id, size."""

    path: str
    blob: str
    size: int


def manifest_blobs(git_dir: Path, tree: str, base: str) -> list[BlobEntry]:
    """Every manifest file in ``tree`` (the tree at ``base``), symlinks and submodules
    skipped, with its size: one ``git ls-tree -l`` call, no blob read."""
    out = run_git("ls-tree", "-r", "-l", "-z", tree, git_dir=git_dir)
    prefix = f"{base}/" if base else ""
    found: list[BlobEntry] = []
    for entry in out.split("\0"):
        if not entry:
            continue
        meta, _, rel = entry.partition("\t")
        mode, kind, blob, size = meta.split()  # size is right-aligned: split on runs
        path = prefix + rel
        if kind == "blob" and mode != _MODE_SYMLINK_TEXT and is_manifest_file(path, base):
            found.append(BlobEntry(path, blob, int(size)))
    return found


def mirror_dir(data_dir: Path, url: str) -> Path:
    """Where the mirror of ``url`` lives: readable name plus a hash of the whole URL."""
    tail = re.sub(r"[^A-Za-z0-9._-]+", "-", url.rstrip("/").rsplit("/", 1)[-1])[:40]
    digest = hashlib.sha256(url.encode()).hexdigest()[:12]
    return data_dir / "mirrors" / f"{tail.removesuffix('.git') or 'repo'}-{digest}.git"


def default_branch(git_dir: Path) -> str:
    """The remote's default branch, from ``ls-remote --symref origin HEAD``."""
    try:
        out = run_git("ls-remote", "--symref", REMOTE, "HEAD", git_dir=git_dir,
                      timeout=FETCH_TIMEOUT)
    except GitCommandError as exc:
        raise SourceError(f"cannot list the remote's branches: {exc.message}") from exc
    for line in out.splitlines():
        if line.startswith("ref: ") and line.endswith("\tHEAD"):
            return line[len("ref: "):-len("\tHEAD")].removeprefix("refs/heads/")
    raise SourceError("the remote has no default branch (empty?); pass the branch to follow")
