"""Where latticectl's read-only commands get their facts: the repository and the lattice.

:func:`open_view` opens the repository of ``--repo`` (a path, searched upwards, or a URL
cloned bare into a temporary directory) as a :class:`RepoView`. When the repository has an
``origin`` remote, :meth:`RepoView.refresh` fetches the agent's status branch, its notes
and the followed branch first, into remote-tracking refs
(``refs/remotes/origin/lattice/status``, ``refs/notes/remotes/origin/lattice``,
``refs/remotes/origin/<branch>``): never over the local ``lattice/status`` or
``refs/notes/lattice``, which an agent may be writing in this very repository.
:func:`gitsync.status.read_status` then reads the newer of the local and fetched copies.

A note attests only a revision the agent evaluated, so :meth:`RepoView.freshness` compares
the branch HEAD with what the status talks about, and callers say so rather than showing
stale status silently; :func:`source_warning` says when the agent cannot fetch the
repository (its ``SourceReady`` condition is False), so the status shown is that of the
last revision it could fetch. What the lattice says live comes from :mod:`cli.reach`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import click
import git
import yaml

from cli.output import short, warn
from cli.settings import CliError, Settings
from gitsync.errors import GitCommandError
from gitsync.gitcmd import resolve, run_git
from gitsync.source import is_url
from gitsync.status import read_note, read_status
from gitsync.statusformat import (
    NOTES_REF,
    REMOTE_NOTES_REF,
    REMOTE_STATUS_REF,
    STATUS_BRANCH,
    STATUS_REF,
    file_name,
)
from lattice.status import (
    BindingSetStatus,
    DeploymentStatus,
    RevisionNote,
    StatusReport,
    time_text,
)

REMOTE = "origin"
#: Seconds a fetch may take before latticectl shows the local copy instead.
FETCH_TIMEOUT = 20.0
NO_STATUS = "no status yet: is the agent running on this repository?"


@dataclass(frozen=True)
class Freshness:
    """How the branch HEAD relates to the revision a status talks about."""

    branch: str
    head: str | None
    evaluated: bool  #: the agent evaluated HEAD (or HEAD is behind what it evaluated)
    note: RevisionNote | None  #: the note on HEAD, when there is one

    def warning(self, report: StatusReport) -> str | None:
        """The line to print on stderr when the status is not about HEAD, else None."""
        if self.evaluated or self.head is None:
            return None
        return (f"status is for {short(report.summary.attempted_revision)}, branch HEAD is "
                f"{short(self.head)}: not yet evaluated")


def source_warning(report: StatusReport) -> str | None:
    """The line to print on stderr when the agent's source is not ready (its fetches
    fail), else None. Pure."""
    cond = report.summary.source_ready
    if cond is None or cond.status:
        return None
    since = f" since {time_text(cond.last_transition)}" if cond.last_transition else ""
    return (f"source not ready{since}: {cond.message}; showing status of "
            f"{short(report.summary.applied_revision)}")


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    time: datetime
    author: str
    subject: str


class RepoView:
    """A repository as latticectl reads it (status branch, notes, the followed branch)."""

    def __init__(self, repo: git.Repo, location: str, *, temporary: bool = False) -> None:
        self.repo = repo
        self.location = location
        self.temporary = temporary  # a bare clone of a URL: fetch straight into our refs
        self.git_dir = Path(repo.common_dir)
        self.remote = REMOTE if REMOTE in [r.name for r in repo.remotes] else None
        self._remote_refs: dict[str, str] | None = None
        self._warned: set[str] = set()

    def _warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            warn(message)

    # ------------------------------------------------------------------ fetching
    def refresh(self, *, branch: str | None = None) -> None:
        """Fetch the status branch, notes and ``branch`` from ``origin`` (when there is
        one); a failure is a warning on stderr, and the local copy is shown."""
        if self.remote is None:
            return
        try:
            listing = run_git("ls-remote", self.remote, git_dir=self.git_dir,
                              timeout=FETCH_TIMEOUT)
        except GitCommandError as exc:
            self._warn_once(f"could not fetch from {self.remote} ({exc.message}); "
                            "showing the local copy")
            return
        self._remote_refs = {ref: sha for sha, _, ref in
                             (line.partition("\t") for line in listing.splitlines())}
        self._fetch([STATUS_REF, NOTES_REF])
        self.fetch_branch(branch or self.current_branch())

    def fetch_branch(self, branch: str | None) -> None:
        if self.remote is not None and branch:
            self._fetch([f"refs/heads/{branch}"])

    def _fetch(self, refs: list[str]) -> None:
        remote_refs = self._remote_refs or {}
        specs = [f"+{ref}:{self._local_copy(ref)}" for ref in refs
                 if ref in remote_refs and resolve(self.repo, self._local_copy(ref))
                 != remote_refs[ref]]
        if not specs or self.remote is None:
            return
        try:
            run_git("fetch", "--no-tags", "--quiet", "--update-head-ok", self.remote, *specs,
                    git_dir=self.git_dir, timeout=FETCH_TIMEOUT)
        except GitCommandError as exc:
            self._warn_once(f"could not fetch from {self.remote} ({exc.message}); "
                            "showing the local copy")

    def _local_copy(self, ref: str) -> str:
        if self.temporary:
            return ref
        if ref == STATUS_REF:
            return REMOTE_STATUS_REF
        if ref == NOTES_REF:
            return REMOTE_NOTES_REF
        return f"refs/remotes/{self.remote}/{ref.removeprefix('refs/heads/')}"

    # ------------------------------------------------------------------ status
    def status(self) -> StatusReport | None:
        return read_status(self.repo)

    def require_status(self) -> StatusReport:
        report = self.status()
        if report is None:
            raise CliError(f"{NO_STATUS} (no {STATUS_BRANCH} branch in {self.location})")
        return report

    def status_tips(self) -> tuple[str | None, str | None]:
        """The local and fetched status tips: a change means a new status commit."""
        return resolve(self.repo, STATUS_REF), resolve(self.repo, REMOTE_STATUS_REF)

    def status_tip(self) -> str | None:
        """The newer (by commit time) of the local and fetched status tips."""
        tips = [t for t in self.status_tips() if t]
        if not tips:
            return None
        return max(tips, key=lambda t: int(self.repo.commit(t).committed_date))

    def note(self, sha: str) -> RevisionNote | None:
        return read_note(self.repo, sha)

    # ------------------------------------------------------------------ the branch
    def current_branch(self) -> str | None:
        try:
            return str(self.repo.head.reference.name)
        except TypeError:
            return None

    def branch_of(self, report: StatusReport | None) -> str:
        branch = (report.summary.branch if report else "") or self.current_branch()
        if not branch:
            raise CliError(f"{self.location}: HEAD is detached and no status names the "
                           "branch; check out the branch the agent follows")
        return branch

    def head(self, branch: str) -> str | None:
        """The tip of ``branch``: the fetched remote one when there is one, else local."""
        tracking = resolve(self.repo, f"refs/remotes/{self.remote}/{branch}") \
            if self.remote and not self.temporary else None
        return tracking or resolve(self.repo, f"refs/heads/{branch}")

    def freshness(self, report: StatusReport) -> Freshness:
        """Whether the agent has evaluated the branch HEAD (see the module doc)."""
        branch = self.branch_of(report)
        head = self.head(branch)
        attempted = report.summary.attempted_revision
        if head is None or head == attempted:
            return Freshness(branch, head, True, None)
        if self.is_ancestor(head, attempted):  # we see an older HEAD than the agent did
            return Freshness(branch, head, True, None)
        note = self.note(head)  # evaluated, and the status branch has not caught up yet
        return Freshness(branch, head, note is not None, note)

    def is_ancestor(self, old: str, new: str) -> bool:
        if not new:
            return False
        try:
            run_git("merge-base", "--is-ancestor", old, new, git_dir=self.git_dir)
            return True
        except GitCommandError:
            return False

    def log(self, rev: str, *, limit: int, path: str | None = None) -> list[CommitInfo]:
        """Commits reachable from ``rev``, newest first (touching ``path``, if given)."""
        args = ["log", f"--max-count={limit}", "--format=%H%x00%ct%x00%an%x00%s", rev]
        if path:
            args += ["--", path]
        try:
            out = run_git(*args, git_dir=self.git_dir)
        except GitCommandError as exc:
            raise CliError(f"{self.location}: cannot read the history of {rev}: "
                           f"{exc.message}") from None
        commits = []
        for line in out.splitlines():
            sha, ts, author, subject = line.split("\0", 3)
            commits.append(CommitInfo(sha, datetime.fromtimestamp(int(ts), UTC), author,
                                      subject))
        return commits

    def entity_history(self, folder: str, name: str, *, limit: int
                       ) -> list[tuple[CommitInfo, DeploymentStatus | BindingSetStatus | None]]:
        """The status-branch commits that changed one entity (``folder``: ``deployments``
        or ``bindingsets``), newest first, each with the entity as it stood there (None:
        the commit deleted it); a file that does not parse is left out."""
        tip = self.status_tip()
        path = f"{folder}/{file_name(name)}.yaml"
        model = DeploymentStatus if folder == "deployments" else BindingSetStatus
        out: list[tuple[CommitInfo, DeploymentStatus | BindingSetStatus | None]] = []
        for c in self.log(tip, limit=limit, path=path) if tip else []:
            blob = self.show(c.sha, path)
            if blob is None:
                out.append((c, None))
                continue
            try:
                out.append((c, model.model_validate(yaml.safe_load(blob))))
            except (ValueError, yaml.YAMLError):
                continue
        return out

    def show(self, sha: str, path: str) -> bytes | None:
        try:
            return bytes(self.repo.commit(sha).tree[path].data_stream.read())
        except (KeyError, ValueError):
            return None


@contextmanager
def open_view(settings: Settings, *, fetch: bool = True) -> Iterator[RepoView]:
    """The repository of ``--repo`` (or the current directory), fetched when it has a
    remote. Raises :class:`CliError` when there is no repository there."""
    location = settings.repo_path()
    if is_url(location) and not Path(location).is_dir():
        with tempfile.TemporaryDirectory(prefix="latticectl-") as tmp:
            try:
                run_git("clone", "--bare", "--quiet", "--no-tags", location, f"{tmp}/repo.git",
                        timeout=FETCH_TIMEOUT * 3)
            except GitCommandError as exc:
                raise CliError(f"cannot clone {location}: {exc.message}") from None
            view = RepoView(git.Repo(f"{tmp}/repo.git"), location, temporary=True)
            try:
                if fetch:
                    view.refresh()
                yield view
            finally:
                view.repo.close()
        return
    if not os.path.isdir(location):
        raise CliError(f"{location}: no such directory; pass --repo (a path or URL)")
    try:
        repo = git.Repo(location, search_parent_directories=True)
    except git.InvalidGitRepositoryError:
        raise CliError(f"{location} is not in a git repository; pass --repo, set "
                       "LATTICECTL_REPO, or cd into the repository") from None
    view = RepoView(repo, location)
    try:
        if fetch:
            view.refresh()
        yield view
    finally:
        repo.close()


# ---------------------------------------------------------------- shell completion

Completer = Callable[[click.Context, click.Parameter, str], list[str]]


def complete_names(folder: str) -> Completer:
    """Shell completion of entity (or host) names from the status branch of ``--repo``;
    never fails (no repository, no status: no suggestions)."""

    def complete(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
        root = ctx.find_root()
        location = root.params.get("repo") or os.environ.get("LATTICECTL_REPO") or os.getcwd()
        try:
            repo = git.Repo(location, search_parent_directories=True)
        except Exception:
            return []
        try:
            report = read_status(repo)
        except Exception:
            return []
        finally:
            repo.close()
        if report is None:
            return []
        names: list[str] = {
            "deployments": list(report.deployments),
            "bindingsets": list(report.bindingsets),
            "hosts": [h.name for h in report.hosts.values()],
        }.get(folder, [])
        return sorted(n for n in set(names) if n.startswith(incomplete))

    return complete
