"""Real git repositories for tests: working repos, bare "remotes", commits, pushes.

Everything runs the real git binary in temporary directories; nothing is mocked. Tests act
as the user here (porcelain commands are fine); the code under test uses plumbing. The
sample manifests are the feature request's two documents with valid actor ids.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

import git
import pytest

ACTOR = "MB2ZQB6ROOMAYBO4ZCTFYWN7YIVBWA3MTKZYAQKJMTIHE2ELLRW2E3ZW"
OTHER_ACTOR = "MCNVNZX3P6JHF72ZMJKMVWNCMFPLCIDPL2FMUGMDW35M4K6YFS56M7CJ"
ELIDED_ACTOR = "MADJKE....DASKJ2334Z"

DEPLOYMENT = f"""\
kind: Deployment
metadata:
  name: amazing-deployment
  labels:
    app: amazesauce-the-sequel
spec:
  actors:
    - id: {ACTOR}
  providers:
    - id: wascc:messaging
      binding_name: default
      vendor_id: nats
      affinity_rules: []
    - id: iot:ledcontroller
      binding_name: default
      vendor_id: wascc
      affinity_rules: ["leds=12"]
"""

BINDINGS = f"""\
kind: BindingSet
metadata:
  name: amazing-bindings
  labels:
    app: amazesauce-the-sequel
spec:
  bindings:
    - capability_id: wascc:messaging
      binding: default
      actor: {ACTOR}
      vendor_id: nats
      values:
        SUBSCRIPTION: foo.bar.baz
        VALUE4: ${{ENV_VAL4:FOURTYTWO}}
"""


def deployment(name: str, actor: str = ACTOR, *, replicas: int | None = None) -> str:
    """A small Deployment document."""
    extra = f"\n      replicas: {replicas}" if replicas is not None else ""
    return (f"kind: Deployment\nmetadata:\n  name: {name}\nspec:\n  actors:\n"
            f"    - id: {actor}{extra}\n")


#: The identity :func:`init_repo` and :func:`clone` give their repositories, as environment
#: variables for a repository they did not make (``apply`` clones a URL into a temp dir).
IDENTITY_ENV = {"GIT_AUTHOR_NAME": "Test User", "GIT_AUTHOR_EMAIL": "test@example.com",
                "GIT_COMMITTER_NAME": "Test User", "GIT_COMMITTER_EMAIL": "test@example.com"}


def use_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Give every git command of this test the test identity, whatever the machine has."""
    for key, value in IDENTITY_ENV.items():
        monkeypatch.setenv(key, value)


def no_identity(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """A machine whose git knows no user: no global or system config, no identity in the
    environment, and no guessing one from the host name (``user.useConfigOnly``)."""
    for key in IDENTITY_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "user.useConfigOnly")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "true")


def _configure(repo: git.Repo) -> None:
    with repo.config_writer() as cw:
        cw.set_value("user", "name", "Test User")
        cw.set_value("user", "email", "test@example.com")
        cw.set_value("commit", "gpgsign", "false")


def init_repo(path: Path, *, branch: str = "main", bare: bool = False) -> git.Repo:
    """A new repository at ``path`` with a test identity, HEAD on ``branch``."""
    path.mkdir(parents=True, exist_ok=True)
    args = ["git", "init", "-q", f"--initial-branch={branch}"] + (["--bare"] if bare else [])
    subprocess.run([*args, str(path)], check=True)
    repo = git.Repo(path)
    _configure(repo)
    return repo


def commit_files(repo: git.Repo, files: Mapping[str, str | None], message: str = "change",
                 ) -> str:
    """Write (or, for None, delete) files in the working tree, commit them; return the sha."""
    root = Path(str(repo.working_tree_dir))
    for rel, content in files.items():
        f = root / rel
        if content is None:
            if f.exists():
                repo.git.rm("-q", "--", rel)
            continue
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(content)
        repo.git.add("--", rel)
    repo.git.commit("-q", "--allow-empty", "-m", message)
    return repo.head.commit.hexsha


def make_remote(tmp: Path, files: Mapping[str, str | None] | None = None, *,
                branch: str = "main") -> tuple[Path, git.Repo]:
    """A bare "remote" at ``tmp/remote.git`` and a working clone at ``tmp/work`` with one
    commit (``files``, default the two sample manifests) pushed."""
    bare = tmp / "remote.git"
    init_repo(bare, branch=branch, bare=True)
    work = clone(bare, tmp / "work")
    commit_files(work, files if files is not None else
                 {"deployments/amazing-deployment.yaml": DEPLOYMENT,
                  "bindingsets/amazing-bindings.yaml": BINDINGS}, "initial manifests")
    work.git.push("-q", "origin", f"HEAD:refs/heads/{branch}")
    work.git.branch("-q", f"--set-upstream-to=origin/{branch}")
    return bare, work


def clone(source: Path | str, dest: Path) -> git.Repo:
    """A working clone with the test identity."""
    subprocess.run(["git", "clone", "-q", str(source), str(dest)], check=True,
                   capture_output=True)
    repo = git.Repo(dest)
    _configure(repo)
    return repo


def file_url(path: Path) -> str:
    return path.resolve().as_uri()


def force_push(repo: git.Repo, sha: str, branch: str = "main") -> None:
    repo.git.push("-q", "--force", "origin", f"{sha}:refs/heads/{branch}")


def all_objects(repo_path: Path) -> bytes:
    """The content of every object in the repository (loose and packed), concatenated."""
    out = subprocess.run(
        ["git", f"--git-dir={git.Repo(repo_path).common_dir}", "cat-file",
         "--batch-all-objects", "--batch", "--unordered"],
        check=True, capture_output=True)
    return out.stdout


def ls_tree(repo: git.Repo, ref: str) -> dict[str, str]:
    """path → content of every file at ``ref``."""
    tree = repo.commit(ref).tree
    return {str(b.path): b.data_stream.read().decode() for b in tree.traverse()
            if isinstance(b, git.Blob)}


def count_commits(repo: git.Repo, ref: str) -> int:
    return int(repo.git.rev_list("--count", ref))


def tip(repo: git.Repo | Path, ref: str) -> str | None:
    r = repo if isinstance(repo, git.Repo) else git.Repo(repo)
    try:
        return str(r.git.rev_parse("--verify", "-q", ref))
    except git.GitCommandError:
        return None


def index_state(repo: git.Repo) -> tuple[bytes, str]:
    """The raw index file and ``git status`` output: to prove nothing touched them."""
    index = Path(repo.git_dir) / "index"
    raw = index.read_bytes() if index.exists() else b""
    status = subprocess.run(
        ["git", "--no-optional-locks", "status", "--porcelain", "--untracked-files=all"],
        cwd=repo.working_tree_dir, check=True, capture_output=True, text=True).stdout
    return raw, status
