"""The ``git`` binary and the object database, at the plumbing level.

:func:`run_git` runs one git command with a fixed environment (no prompts, C locale so
messages can be matched, an explicit identity when asked) and wraps failures in
:class:`~gitsync.errors.GitCommandError`. The object helpers write blobs and trees straight
into the object database through GitPython (no index, no working tree) and build a new
tree from a base tree plus changed paths; :class:`BlobBatch` streams many blobs into one
``git fast-import`` and :func:`tree_from_ids` builds a tree from blob ids already stored;
:func:`update_ref` is a compare-and-swap. The
status writer and the apply helper are built on these; nothing here knows about manifests.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import subprocess
import time
from collections.abc import Mapping, Sequence

import git
from git.objects.fun import tree_to_stream
from gitdb.base import IStream  # type: ignore[import-untyped]
from gitdb.db.loose import LooseObjectDB  # type: ignore[import-untyped]

from gitsync.errors import GitCommandError

log = logging.getLogger(__name__)

ZERO_SHA = "0" * 40
EMPTY_TREE = bytes.fromhex("4b825dc642cb6eb9a060e54bf8d69288fbee4904")
MODE_FILE = 0o100644
MODE_TREE = 0o040000
#: The identity of commits the agent makes (status branch, notes).
AGENT_IDENTITY = ("vinculum", "vinculum@localhost")

_BASE_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_ASKPASS": "",
    "SSH_ASKPASS": "",
    "LC_ALL": "C",
    "LANGUAGE": "C",
}


#: Environment that keeps the user's and the machine's git config out of a command
#: (``~/.gitconfig``, ``$XDG_CONFIG_HOME/git/config``, ``/etc/gitconfig``): for decisions
#: that must not depend on who runs the agent, such as whether a signature is trusted.
ISOLATED_ENV = {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def identity_env(name: str, email: str) -> dict[str, str]:
    """Environment that makes git author and commit as ``name <email>``."""
    return {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email,
            "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email}


StrPath = str | os.PathLike[str]


def run_git(
    *args: str,
    git_dir: StrPath | None = None,
    cwd: StrPath | None = None,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    config: Mapping[str, str] | None = None,
    timeout: float = 120.0,
) -> str:
    """Run ``git args...`` and return its stdout (stripped of the final newline).

    ``git_dir`` pins ``--git-dir`` so the command never sees a working tree or index;
    ``config`` is passed as ``-c key=value`` (over every config file, for this call only).
    """
    cmd = ["git"]
    if git_dir is not None:
        cmd.append(f"--git-dir={os.fspath(git_dir)}")
    for key, value in (config or {}).items():
        cmd += ["-c", f"{key}={value}"]
    cmd.extend(args)
    full_env = {**os.environ, **_BASE_ENV, **(env or {})}
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=cwd, input=input, capture_output=True, env=full_env,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise GitCommandError(list(args), -1, f"timed out after {timeout}s") from exc
    except OSError as exc:
        raise GitCommandError(list(args), -1, f"cannot run git: {exc}") from exc
    log.debug("git %s -> %d in %.1f ms", " ".join(args[:3]), proc.returncode,
              (time.monotonic() - start) * 1000)
    if proc.returncode != 0:
        raise GitCommandError(list(args), proc.returncode,
                              proc.stderr.decode(errors="replace") or
                              proc.stdout.decode(errors="replace"))
    return proc.stdout.decode(errors="replace").rstrip("\n")


#: how many bytes of blobs one ``git cat-file --batch`` call reads at most (its output is
#: held in memory; more blobs are read by more calls)
BATCH_BYTES = 32 << 20


def cat_blobs(git_dir: StrPath, blobs: Sequence[tuple[str, int]], *,
              timeout: float = 120.0) -> list[bytes]:
    """The contents of ``blobs`` (id, size as ``git ls-tree -l`` gave it), in order, read
    by one ``git cat-file --batch`` per :data:`BATCH_BYTES` instead of one object read per
    blob. :class:`GitCommandError` when git fails or an object is missing or not a blob."""
    out: list[bytes] = []
    start = 0
    while start < len(blobs):
        end, total = start, 0
        while end < len(blobs) and (end == start or total + blobs[end][1] <= BATCH_BYTES):
            total += blobs[end][1]
            end += 1
        out.extend(_cat_batch(git_dir, [b for b, _size in blobs[start:end]], timeout))
        start = end
    return out


def _cat_batch(git_dir: StrPath, ids: Sequence[str], timeout: float) -> list[bytes]:
    args = ["cat-file", "--batch", "--buffer"]  # one write at the end, not one per object
    cmd = ["git", f"--git-dir={os.fspath(git_dir)}", *args]
    try:
        proc = subprocess.run(cmd, input="".join(f"{i}\n" for i in ids).encode(),
                              capture_output=True, env={**os.environ, **_BASE_ENV},
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise GitCommandError(args, -1, f"timed out after {timeout}s") from exc
    except OSError as exc:
        raise GitCommandError(args, -1, f"cannot run git: {exc}") from exc
    if proc.returncode != 0:
        raise GitCommandError(args, proc.returncode, proc.stderr.decode(errors="replace"))
    data, pos, out = proc.stdout, 0, []
    for want in ids:  # "<id> blob <size>\n<content>\n" per object
        eol = data.find(b"\n", pos)
        header = data[pos:eol].split() if eol >= 0 else []
        if len(header) != 3 or header[0].decode() != want or header[1] != b"blob":
            raise GitCommandError(args, 0, f"cat-file --batch: {want}: unexpected "
                                           f"{data[pos:eol if eol >= 0 else pos + 80]!r}")
        size = int(header[2])
        out.append(data[eol + 1:eol + 1 + size])
        pos = eol + 1 + size + 1
    return out


def resolve(repo: git.Repo, ref: str) -> str | None:
    """The sha a ref points to (loose or packed, read without running git), or None."""
    try:
        return str(git.SymbolicReference.dereference_recursive(repo, ref))
    except (ValueError, OSError):
        return None


def update_ref(git_dir: StrPath, ref: str, new: str | None, old: str | None,
               *, message: str = "vinculum") -> None:
    """Compare-and-swap ``ref`` from ``old`` (None: must not exist) to ``new`` (None:
    delete). Raises :class:`GitCommandError` (a race) when the ref is not at ``old``."""
    if new is None:
        run_git("update-ref", "-m", message, "-d", ref, old or "", git_dir=git_dir)
    else:
        run_git("update-ref", "-m", message, ref, new, old or ZERO_SHA, git_dir=git_dir)


def write_blob(repo: git.Repo, data: bytes) -> bytes:
    """Store ``data`` as a blob; returns its binary sha. Written in-process as a loose
    object by gitdb (GitPython's own object store), not by one ``git hash-object``
    process per blob: a status commit of 1,000 files is 1,000 file writes, not forks."""
    header = b"blob %d\0" % len(data)
    binsha = hashlib.sha1(header + data, usedforsecurity=False).digest()
    hexsha = binsha.hex()
    if os.path.exists(os.path.join(repo.odb.root_path(), hexsha[:2], hexsha[2:])):
        return binsha  # already stored loose (unchanged status files cost a stat)
    return _store(repo, b"blob", data)


def _store(repo: git.Repo, kind: bytes, data: bytes) -> bytes:
    istream = LooseObjectDB.store(repo.odb, IStream(kind, len(data), io.BytesIO(data)))
    return bytes(istream.binsha)


def _write_tree_entries(repo: git.Repo, entries: Sequence[tuple[bytes, int, str]]) -> bytes:
    ordered = sorted(entries, key=lambda e: e[2] + "/" if e[1] == MODE_TREE else e[2])
    buf = io.BytesIO()
    tree_to_stream(ordered, buf.write)
    return _store(repo, b"tree", buf.getvalue())


def update_tree(
    repo: git.Repo, base: git.Tree | None, changes: Mapping[str, bytes | None]
) -> str:
    """A new tree: ``base`` with each path of ``changes`` set to its content, or removed
    when the content is None. Untouched subtrees are reused as they are. Returns the
    tree's hex sha (the empty tree when nothing is left)."""
    return _update(repo, base, {tuple(p.split("/")): c for p, c in changes.items()}).hex()


def _update(repo: git.Repo, base: git.Tree | None,
            changes: Mapping[tuple[str, ...], bytes | None]) -> bytes:
    entries: dict[str, tuple[bytes, int]] = {}
    subtrees: dict[str, git.Tree] = {}
    if base is not None:
        for item in base:
            entries[item.name] = (item.binsha, item.mode)
            if item.type == "tree":
                subtrees[item.name] = item
    nested: dict[str, dict[tuple[str, ...], bytes | None]] = {}
    for parts, content in changes.items():
        if len(parts) == 1:
            if content is None:
                entries.pop(parts[0], None)
            else:
                entries[parts[0]] = (write_blob(repo, content), MODE_FILE)
        else:
            nested.setdefault(parts[0], {})[parts[1:]] = content
    for name, sub in nested.items():
        if all(c is None for c in sub.values()) and name not in subtrees:
            continue
        binsha = _update(repo, subtrees.get(name), sub)
        if binsha == EMPTY_TREE:
            entries.pop(name, None)
        else:
            entries[name] = (binsha, MODE_TREE)
    return _write_tree_entries(repo, [(sha, mode, name) for name, (sha, mode) in entries.items()])


def blob_id(data: bytes) -> bytes:
    """The binary sha git gives ``data`` as a blob (nothing is written)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).digest()


class BlobBatch:
    """Blobs written by one ``git fast-import`` (started at the first :meth:`add`, a pack
    or a few loose objects when closed) instead of one loose-object file each; the bytes
    stream to the process as they are added, nothing is held. Use as a context manager:
    the objects exist once it exits without an error."""

    def __init__(self, git_dir: StrPath, *, timeout: float = 300.0) -> None:
        self.git_dir = git_dir
        self.timeout = timeout
        self.written = 0
        self._proc: subprocess.Popen[bytes] | None = None

    def add(self, data: bytes) -> bytes:
        """Write ``data`` as a blob; returns its binary sha."""
        if self._proc is None:
            self._proc = subprocess.Popen(
                ["git", f"--git-dir={os.fspath(self.git_dir)}", "fast-import", "--quiet"],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                env={**os.environ, **_BASE_ENV})
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(b"blob\ndata %d\n" % len(data))
            self._proc.stdin.write(data)
            self._proc.stdin.write(b"\n")
        except BrokenPipeError:
            self.close()  # raises with git's message
            raise
        self.written += 1
        return blob_id(data)

    def close(self) -> None:
        """Finish the batch; :class:`GitCommandError` when git failed."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        args = ["fast-import"]
        try:
            _out, err = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired as exc:
            proc.kill()
            proc.wait()
            raise GitCommandError(args, -1, f"timed out after {self.timeout}s") from exc
        except BrokenPipeError:
            err = proc.stderr.read() if proc.stderr else b""
            proc.wait()
        if proc.returncode != 0:
            raise GitCommandError(args, proc.returncode, err.decode(errors="replace"))

    def __enter__(self) -> BlobBatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def tree_from_ids(repo: git.Repo, ids: Mapping[str, bytes]) -> str:
    """A tree holding exactly the blobs ``ids`` (path → binary sha, all already stored);
    its trees written in-process, no blob touched. Returns its hex sha."""
    nested: dict[str, dict[str, bytes]] = {}
    entries: list[tuple[bytes, int, str]] = []
    for path, binsha in ids.items():
        head, sep, rest = path.partition("/")
        if sep:
            nested.setdefault(head, {})[rest] = binsha
        else:
            entries.append((binsha, MODE_FILE, path))
    for name, sub in nested.items():
        entries.append((bytes.fromhex(tree_from_ids(repo, sub)), MODE_TREE, name))
    return _write_tree_entries(repo, entries).hex()


def tree_blob_ids(git_dir: StrPath, rev: str) -> dict[str, bytes]:
    """Every file of ``rev``'s tree: path → binary blob sha (one ``git ls-tree``)."""
    out: dict[str, bytes] = {}
    for record in run_git("ls-tree", "-r", "-z", rev, git_dir=git_dir).split("\0"):
        meta, _, path = record.partition("\t")
        fields = meta.split()
        if len(fields) == 3 and fields[1] == "blob":
            out[path] = bytes.fromhex(fields[2])
    return out


def tree_from_files(repo: git.Repo, files: Mapping[str, bytes]) -> str:
    """A tree holding exactly ``files`` (path → content); returns its hex sha."""
    return update_tree(repo, None, dict(files))


def commit_tree(
    git_dir: StrPath, tree: str, parents: Sequence[str], message: str,
    *, identity: tuple[str, str] | None = None,
) -> str:
    """Write a commit object (no ref moves). ``identity`` None uses git's own config (the
    user's commits, signed with ``-S`` when :func:`signs_commits`: ``commit-tree``, unlike
    ``commit``, never reads ``commit.gpgsign`` itself); with an identity (the agent's own
    commits) no signing is attempted."""
    sign = ["--no-gpg-sign"] if identity else ["-S"] if signs_commits(git_dir) else []
    args = ["commit-tree", tree, *sign]
    for p in parents:
        args += ["-p", p]
    env = identity_env(*identity) if identity else None
    return run_git(*args, git_dir=git_dir, input=message.encode(), env=env)


def signs_commits(git_dir: StrPath) -> bool:
    """True when the user's git config (repository, global or system) asks for signed
    commits: ``commit.gpgsign``, which ``git commit`` honours and ``commit-tree`` does not."""
    try:
        return run_git("config", "--type=bool", "--get", "commit.gpgsign",
                       git_dir=git_dir) == "true"
    except GitCommandError:  # unset (exit 1) or not a boolean: git commit would not sign
        return False


def tree_of(repo: git.Repo, commit: str) -> str:
    return str(repo.commit(commit).tree.hexsha)


def read_blob(repo: git.Repo, tree: git.Tree, path: str) -> bytes | None:
    """Content of ``path`` inside ``tree``, or None when absent or not a file."""
    try:
        item = tree / path
    except KeyError:
        return None
    if item.type != "blob":
        return None
    return bytes(item.data_stream.read())
