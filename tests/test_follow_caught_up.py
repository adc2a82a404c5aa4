"""A new leader acts only once the branch's head is evaluated (:meth:`Follow.caught_up`):
a follower's watch may not have looked for a while (a remote is fetched every interval),
and a pass on an older revision would undo what the last leader applied. Real git
repositories: a local one, and a bare "remote" with a clone."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gitsync.source import GitSource
from reconciler import follow as follow_module
from reconciler.follow import Follow
from tests.gitrepo import commit_files, deployment, file_url, init_repo, make_remote


async def test_local_source_is_caught_up_once_its_head_is_evaluated(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "r")
    first = commit_files(repo, {"a.yaml": deployment("a")})
    source = GitSource.open(str(tmp_path / "r"), data_dir=tmp_path / "d")
    follow = Follow()
    assert not await follow.caught_up(source)  # nothing evaluated yet
    follow.seen(first)
    assert await follow.caught_up(source)
    second = commit_files(repo, {"a.yaml": deployment("a", replicas=2)})
    assert not await follow.caught_up(source)  # the watch has not yielded it yet
    follow.seen(second)
    assert await follow.caught_up(source)


async def test_remote_source_is_fetched_before_the_answer(tmp_path: Path) -> None:
    bare, work = make_remote(tmp_path)
    source = GitSource.open(file_url(bare), data_dir=tmp_path / "d")
    follow = Follow()
    follow.seen(work.head.commit.hexsha)
    assert await follow.caught_up(source)
    newer = commit_files(work, {"b.yaml": deployment("b")})
    work.git.push("-q")
    assert not await follow.caught_up(source)  # seen only by fetching now
    assert source.head() == newer
    follow.seen(newer)
    assert await follow.caught_up(source)


async def test_a_failing_fetch_counts_as_caught_up(tmp_path: Path) -> None:
    """The last fetched head is the best there is; the source condition reports the
    failing fetch, and the agent must not stand still for it."""
    bare, work = make_remote(tmp_path)
    source = GitSource.open(file_url(bare), data_dir=tmp_path / "d")
    follow = Follow()
    follow.seen(work.head.commit.hexsha)
    bare.rename(tmp_path / "gone.git")
    assert await follow.caught_up(source)


async def test_a_fetch_slower_than_the_bound_counts_as_caught_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A git server that hangs must not keep a new leader idle for the fetch's own 120 s
    timeout: past :data:`CATCH_UP_FETCH_S` it acts on the last fetched head, and says so."""
    bare, work = make_remote(tmp_path)
    source = GitSource.open(file_url(bare), data_dir=tmp_path / "d")
    follow = Follow()
    follow.seen(work.head.commit.hexsha)
    commit_files(work, {"b.yaml": deployment("b")})
    work.git.push("-q")  # newer, but the fetch is given no time to bring it
    monkeypatch.setattr(follow_module, "CATCH_UP_FETCH_S", 1e-9)
    with caplog.at_level(logging.WARNING):
        assert await follow.caught_up(source)
    assert "acting on the last fetched head" in caplog.text
