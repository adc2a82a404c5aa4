"""GitSource: opening local and remote repositories, heads, evaluation and its cache.

Real repositories in temporary directories; a bare repository plays the remote.
"""

from __future__ import annotations

from pathlib import Path

import git
import pytest

from gitsync.errors import FetchError, NoHeadError, SourceError
from gitsync.source import GitSource, is_url, mirror_dir
from tests.gitrepo import (
    ACTOR,
    DEPLOYMENT,
    ELIDED_ACTOR,
    commit_files,
    deployment,
    file_url,
    force_push,
    index_state,
    init_repo,
    make_remote,
)


def test_local_repository_in_place_with_the_head_branch(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "r", branch="trunk")
    sha = commit_files(repo, {"deployments/a.yaml": DEPLOYMENT,
                              ".github/workflows/ci.yml": "on: push\n",  # hidden: skipped
                              "docs/readme.md": "not a manifest"})
    src = GitSource.open(str(tmp_path / "r"), data_dir=tmp_path / "data")
    assert (src.is_remote, src.branch, src.head()) == (False, "trunk", sha)
    assert src.repo.working_tree_dir == str(tmp_path / "r")
    assert not (tmp_path / "data").exists()  # nothing mirrored for a local repository
    ev = src.evaluate(sha)
    assert ev.valid and ev.errors == [] and ev.revision == sha
    assert ev.desired is not None and ev.desired.revision == sha
    assert ev.desired.deployments["amazing-deployment"].spec.actors[0].id == ACTOR
    assert ev.desired.sources["Deployment/amazing-deployment"].path == "deployments/a.yaml"
    src.fetch()  # a no-op for a local repository
    src.close()


def test_evaluation_never_touches_working_tree_or_index(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "r")
    sha = commit_files(repo, {"a.yaml": deployment("a")})
    (tmp_path / "r" / "a.yaml").write_text("edited, not staged")
    (tmp_path / "r" / "new.yaml").write_text(deployment("n"))
    repo.git.add("new.yaml")
    before = index_state(repo)
    src = GitSource.open(str(tmp_path / "r"), data_dir=tmp_path / "d")
    ev = src.evaluate(sha)
    assert ev.desired is not None and set(ev.desired.deployments) == {"a"}
    assert index_state(repo) == before


def test_invalid_commit_gives_errors_with_file_line_field(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "r")
    sha = commit_files(repo, {"d/x.yaml": DEPLOYMENT.replace(ACTOR, ELIDED_ACTOR)})
    ev = GitSource.open(str(tmp_path / "r"), data_dir=tmp_path / "d").evaluate(sha)
    assert ev.desired is None and not ev.valid
    assert ev.errors[0].startswith("d/x.yaml:8: spec.actors[0].id: ")


def test_cache_by_tree_id(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "r")
    first = commit_files(repo, {"apps/a.yaml": deployment("a"), "README.md": "hi"})
    src = GitSource.open(str(tmp_path / "r"), path="apps", data_dir=tmp_path / "d")
    a = src.evaluate(first)
    assert src.evaluations == 1
    assert src.evaluate(first) == a and src.evaluations == 1
    second = commit_files(repo, {"README.md": "only the readme changed"})
    b = src.evaluate(second)
    assert src.evaluations == 1, "an unchanged manifests tree is not parsed again"
    assert b.revision == second and b.desired is not None and b.desired.revision == second
    assert b.tree == a.tree
    commit_files(repo, {"apps/b.yaml": deployment("b")})
    assert src.evaluate(src.head()).desired is not None and src.evaluations == 2


def test_only_changed_files_are_parsed_again(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "r")
    files = {f"apps/d{i}.yaml": deployment(f"d{i}") for i in range(20)}
    commit_files(repo, {**files, ".hidden/x.yaml": deployment("hidden"), "apps/n.txt": "x"})
    src = GitSource.open(str(tmp_path / "r"), path="apps", data_dir=tmp_path / "d")
    first = src.evaluate(src.head())
    assert first.desired is not None and len(first.desired.deployments) == 20
    assert src.files_parsed == 20
    commit_files(repo, {"apps/d3.yaml": deployment("d3", replicas=2), "apps/d4.yaml": None})
    second = src.evaluate(src.head())
    assert src.files_parsed == 21, "one changed file read and parsed, the rest from cache"
    assert second.desired is not None and "d4" not in second.desired.deployments
    assert second.desired.deployments["d3"].spec.actors[0].replicas == 2
    assert second.desired.sources["Deployment/d5"].path == "apps/d5.yaml"
    commit_files(repo, {"apps/d7.yaml": "kind: Deployment\nmetadata: {name: [}\n"})
    bad = src.evaluate(src.head())
    assert bad.desired is None and bad.errors[0].startswith("apps/d7.yaml:")


def test_manifests_path_missing_is_invalid_not_empty(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "r")
    sha = commit_files(repo, {"a.yaml": deployment("a")})
    ev = GitSource.open(str(tmp_path / "r"), path="nope", data_dir=tmp_path / "d").evaluate(sha)
    assert ev.desired is None and "does not exist" in ev.errors[0]


def test_open_refuses_what_it_cannot_follow(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such directory"):
        GitSource.open(str(tmp_path / "missing"), data_dir=tmp_path)
    (tmp_path / "plain").mkdir()
    with pytest.raises(SourceError, match="not a git repository"):
        GitSource.open(str(tmp_path / "plain"), data_dir=tmp_path)
    repo = init_repo(tmp_path / "r")
    sha = commit_files(repo, {"a.yaml": deployment("a")})
    repo.git.checkout("-q", sha)
    with pytest.raises(SourceError, match="detached"):
        GitSource.open(str(tmp_path / "r"), data_dir=tmp_path)
    assert GitSource.open(str(tmp_path / "r"), branch="main", data_dir=tmp_path).head() == sha
    with pytest.raises(SourceError, match="inside the repository"):
        GitSource.open(str(tmp_path / "r"), path="../x", data_dir=tmp_path)


def test_empty_repository_has_no_head_yet(tmp_path: Path) -> None:
    init_repo(tmp_path / "r")
    src = GitSource.open(str(tmp_path / "r"), data_dir=tmp_path / "d")
    with pytest.raises(NoHeadError):
        src.head()


def test_remote_is_mirrored_with_its_default_branch(tmp_path: Path) -> None:
    bare, work = make_remote(tmp_path, branch="trunk")
    data = tmp_path / "data"
    src = GitSource.open(file_url(bare), data_dir=data)
    assert (src.is_remote, src.branch) == (True, "trunk")
    assert src.head() == work.head.commit.hexsha
    assert Path(src.repo.git_dir) == mirror_dir(data, file_url(bare))
    assert src.repo.bare
    assert src.evaluate(src.head()).valid
    src.close()
    again = GitSource.open(file_url(bare), data_dir=data)  # reuses the mirror
    assert again.head() == work.head.commit.hexsha


def test_remote_fetch_follows_new_commits_and_force_pushes(tmp_path: Path) -> None:
    bare, work = make_remote(tmp_path)
    src = GitSource.open(file_url(bare), data_dir=tmp_path / "data")
    first = src.head()
    second = commit_files(work, {"deployments/b.yaml": deployment("b")})
    work.git.push("-q")
    assert src.head() == first  # not fetched yet
    src.fetch()
    assert src.head() == second
    desired = src.evaluate(second).desired
    assert desired is not None and "b" in desired.deployments
    force_push(work, first)
    src.fetch()
    assert src.head() == first
    desired = src.evaluate(first).desired
    assert desired is not None and "b" not in desired.deployments


def test_remote_branch_option_and_fetch_failure(tmp_path: Path) -> None:
    bare, work = make_remote(tmp_path)
    work.git.checkout("-q", "-b", "staging")
    staged = commit_files(work, {"deployments/s.yaml": deployment("s")})
    work.git.push("-q", "origin", "staging")
    src = GitSource.open(file_url(bare), branch="staging", data_dir=tmp_path / "data")
    assert (src.branch, src.head()) == ("staging", staged)
    with pytest.raises(SourceError, match="cannot fetch branch nope"):
        GitSource.open(file_url(bare), branch="nope", data_dir=tmp_path / "data2")
    work.git.push("-q", "origin", "--delete", "staging")
    with pytest.raises(FetchError):
        src.fetch()
    assert src.head() == staged  # the last fetched head stays in force


def test_unreachable_remote(tmp_path: Path) -> None:
    with pytest.raises(SourceError):
        GitSource.open(file_url(tmp_path / "nothing.git"), data_dir=tmp_path / "d")


def test_is_url() -> None:
    assert is_url("file:///srv/repo.git") and is_url("https://h/x.git")
    assert is_url("git@github.com:org/repo.git")
    assert not is_url("/srv/repo") and not is_url("relative/dir")


def test_worktree_uses_the_common_dir(tmp_path: Path) -> None:
    """Opened from a linked worktree, the source follows the worktree's branch in the
    common dir's refs: commits there (from either checkout) are seen, main's are not, and
    evaluation reads that branch's manifests."""
    repo = init_repo(tmp_path / "r")
    sha = commit_files(repo, {"a.yaml": deployment("a")})
    repo.git.worktree("add", "-q", "-b", "side", str(tmp_path / "wt"))
    src = GitSource.open(str(tmp_path / "wt"), data_dir=tmp_path / "d")
    assert src.branch == "side" and src.head() == sha
    assert src.git_dir == Path(repo.git_dir)
    assert not (tmp_path / "d").exists()  # local: nothing mirrored
    main_sha = commit_files(repo, {"m.yaml": deployment("m")})  # main moves on
    assert src.head() == sha
    side_sha = commit_files(git.Repo(tmp_path / "wt"), {"b.yaml": deployment("b"),
                                                         "a.yaml": None})
    assert src.head() == side_sha
    ev = src.evaluate(side_sha)
    assert ev.valid and ev.errors == [] and ev.desired is not None
    assert set(ev.desired.deployments) == {"b"}
    assert ev.desired.sources["Deployment/b"].path == "b.yaml"
    # the branch ref lives in the common dir: moved from the main checkout, it is followed
    repo.git.update_ref("refs/heads/side", main_sha)
    assert src.head() == main_sha
    ev = src.evaluate(src.head())
    assert ev.desired is not None and set(ev.desired.deployments) == {"a", "m"}
    src.close()


def test_manifest_files_takes_what_evaluation_takes(tmp_path: Path) -> None:
    """apply and diff read files as the agent does: YAML under the base, no hidden
    directories, no symlinks."""
    from gitsync.source import manifest_files

    repo = init_repo(tmp_path / "r")
    root = Path(str(repo.working_tree_dir))
    commit_files(repo, {"apps/a.yaml": deployment("a"), "apps/.hidden/b.yaml": deployment("b"),
                        "apps/notes.txt": "x", "other/c.yml": deployment("c")})
    (root / "apps" / "link.yaml").symlink_to("a.yaml")
    repo.git.add("--", "apps/link.yaml")
    repo.git.commit("-q", "-m", "a symlink")
    tree = repo.head.commit.tree
    assert manifest_files(tree, "apps") == {"apps/a.yaml": deployment("a").encode()}
    assert sorted(manifest_files(tree, "")) == ["apps/a.yaml", "other/c.yml"]
    assert manifest_files(None, "") == {}


def test_a_file_over_the_size_limit_is_refused_from_its_blob_size_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 50 MB file in a commit costs no memory: ``git ls-tree -l`` gives its size, the
    refusal names it, the blob is never streamed; the other files are still read."""
    import tracemalloc

    from gitsync.source import manifest_files
    from lattice.manifest_loader import MAX_FILE_BYTES

    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    size = 50 * 1024 * 1024
    repo = init_repo(tmp_path / "r")
    root = Path(str(repo.working_tree_dir))
    (root / "apps").mkdir()
    with open(root / "apps" / "big.yaml", "wb") as f:
        f.truncate(size)  # sparse: 50 MB of zero bytes, never held in memory here
    repo.git.add("--", "apps/big.yaml")
    sha = commit_files(repo, {"apps/a.yaml": deployment("a")}, "a 50 MB file")
    src = GitSource.open(str(root), data_dir=tmp_path / "d")
    tracemalloc.start()
    try:
        ev = src.evaluate(sha)
        files = manifest_files(repo.commit(sha).tree, "apps")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert ev.desired is None
    assert ev.errors == [
        f"apps/big.yaml:1: (document): file is {size} bytes, over the {MAX_FILE_BYTES}-byte "
        "limit"]
    assert src.files_parsed == 2  # both files had a verdict; one of them without a read
    assert files == {"apps/a.yaml": deployment("a").encode()}  # left out, unread
    assert peak < 8 * 1024 * 1024, f"peak {peak} bytes: the 50 MB blob was read"
    src.close()


def test_load_directory_refuses_a_big_file_from_its_size(tmp_path: Path) -> None:
    import tracemalloc

    from lattice.manifest_loader import MAX_FILE_BYTES, load_directory

    (tmp_path / "a.yaml").write_text(deployment("a"))
    with open(tmp_path / "big.yaml", "wb") as f:
        f.truncate(MAX_FILE_BYTES * 50)
    tracemalloc.start()
    try:
        result = load_directory(tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.error_lines() == [
        f"big.yaml:1: (document): file is {MAX_FILE_BYTES * 50} bytes, over the "
        f"{MAX_FILE_BYTES}-byte limit"]
    assert [m.name for m in result.manifests] == ["a"]
    assert peak < 8 * 1024 * 1024
    assert load_directory(tmp_path, path="big.yaml").error_lines() == result.error_lines()


def test_a_urls_credentials_never_reach_its_location(tmp_path: Path) -> None:
    """``GitSource.location`` is what logs and messages show (the watch logs it on every
    new head): a token in the repository URL is redacted there, and in its repr."""
    repo = git.Repo.init(tmp_path / "r")
    source = GitSource(location="https://x-access-token:s3cr3t@git.example.invalid/o/r.git",
                       repo=repo, branch="main", path="", is_remote=True)
    assert "s3cr3t" not in source.location and "s3cr3t" not in repr(source)
    assert source.location == "https://***@git.example.invalid/o/r.git"
