"""watch_heads: a local repository's refs watched with watchfiles; a remote fetched on an
interval and on a nudge. Every wait is a deadline poll, never a sleep."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import git
import pytest

from gitsync.source import GitSource
from gitsync.watch import watch_heads
from tests.gitrepo import commit_files, deployment, file_url, force_push, init_repo, make_remote
from tests.helpers import eventually


@dataclass
class Watcher:
    """Runs watch_heads in a task and records (sha, monotonic time) of each yield."""

    source: GitSource
    interval: float = 30.0
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    nudge: asyncio.Event = field(default_factory=asyncio.Event)
    seen: list[tuple[str, float]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async for sha in watch_heads(self.source, interval=self.interval, stop=self.stop,
                                     nudge=self.nudge):
            self.seen.append((sha, time.monotonic()))

    def start(self) -> Watcher:
        self.task = asyncio.create_task(self._run())
        return self

    @property
    def heads(self) -> list[str]:
        return [s for s, _ in self.seen]

    async def saw(self, sha: str, timeout: float = 10.0) -> float:
        """Wait until ``sha`` is the last head yielded; return when it was seen."""
        await eventually(lambda: self.heads and self.heads[-1] == sha, timeout=timeout,
                         interval=0.005, message=f"head {sha[:8]} yielded")
        return self.seen[-1][1]

    async def close(self) -> None:
        self.stop.set()
        assert self.task is not None
        await asyncio.wait_for(self.task, 10)


@pytest.fixture
async def local(tmp_path: Path) -> AsyncIterator[tuple[git.Repo, Watcher]]:
    repo = init_repo(tmp_path / "r")
    commit_files(repo, {"a.yaml": deployment("a")})
    w = Watcher(GitSource.open(str(tmp_path / "r"), data_dir=tmp_path / "d")).start()
    yield repo, w
    await w.close()


async def test_local_yields_current_head_then_each_new_commit_quickly(
        local: tuple[git.Repo, Watcher]) -> None:
    repo, w = local
    await w.saw(repo.head.commit.hexsha)
    latencies = []
    for i in range(5):
        t0 = time.monotonic()
        sha = await asyncio.to_thread(commit_files, repo, {"a.yaml": deployment("a", replicas=i)})
        latencies.append(await w.saw(sha) - t0)
    # The 100 ms target is measured by bench/bench_commit_to_note.py; on a loaded CI
    # machine we insist on 5x that: watching, not the 30 s polling, saw it.
    assert sorted(latencies)[2] < 0.5, latencies  # from before `git commit` runs
    assert len(w.heads) == len(set(w.heads)) == 6


async def test_local_branch_reset_and_packed_refs(local: tuple[git.Repo, Watcher],
                                                  tmp_path: Path) -> None:
    repo, w = local
    first = repo.head.commit.hexsha
    second = await asyncio.to_thread(commit_files, repo, {"b.yaml": deployment("b")})
    await w.saw(second)
    repo.git.reset("-q", "--hard", first)  # history rewritten: the tip goes back
    await w.saw(first)
    repo.git.pack_refs("--all")  # the branch now lives only in packed-refs
    assert not (Path(repo.git_dir) / "refs/heads/main").exists()
    packed = Path(repo.git_dir) / "packed-refs"
    text = packed.read_text().replace(first, second)
    tmp = packed.with_name("packed-refs.new")
    tmp.write_text(text)
    os.replace(tmp, packed)  # what git does: write aside, rename over
    await w.saw(second)


async def test_busy_consumer_gets_only_the_newest_head(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "r")
    commit_files(repo, {"a.yaml": deployment("a")})
    source = GitSource.open(str(tmp_path / "r"), data_dir=tmp_path / "d")
    stop = asyncio.Event()
    yielded: list[str] = []
    shas: list[str] = []
    async for sha in watch_heads(source, stop=stop):
        yielded.append(sha)
        if len(yielded) == 1:  # busy: three commits land before we ask for more
            shas = [commit_files(repo, {"a.yaml": deployment("a", replicas=i)})
                    for i in range(3)]
        else:
            stop.set()
    assert yielded[1:] == [shas[-1]], "skipped commits are not queued"


async def test_remote_nudge_fetches_at_once(tmp_path: Path) -> None:
    bare, work = make_remote(tmp_path)
    w = Watcher(GitSource.open(file_url(bare), data_dir=tmp_path / "d"), interval=300).start()
    try:
        first = work.head.commit.hexsha
        await w.saw(first)
        second = commit_files(work, {"b.yaml": deployment("b")})
        work.git.push("-q")
        w.nudge.set()
        await w.saw(second, timeout=10)
        force_push(work, first)  # an older commit force-pushed: desired follows it
        w.nudge.set()
        await w.saw(first, timeout=10)
        assert w.heads == [first, second, first]
    finally:
        await w.close()


async def test_remote_interval_fetch_without_nudge(tmp_path: Path) -> None:
    bare, work = make_remote(tmp_path)
    w = Watcher(GitSource.open(file_url(bare), data_dir=tmp_path / "d"), interval=0.2).start()
    try:
        first = work.head.commit.hexsha
        await w.saw(first)
        second = commit_files(work, {"b.yaml": deployment("b")})
        await asyncio.to_thread(work.git.push, "-q")
        await w.saw(second, timeout=10)
        assert w.heads == [first, second]  # each head once, however many fetches ran
    finally:
        await w.close()


async def test_local_bare_repository_sees_pushes(tmp_path: Path) -> None:
    bare, work = make_remote(tmp_path)
    w = Watcher(GitSource.open(str(bare), data_dir=tmp_path / "d")).start()
    try:
        assert not w.source.is_remote
        await w.saw(work.head.commit.hexsha)
        second = commit_files(work, {"b.yaml": deployment("b")})
        await asyncio.to_thread(work.git.push, "-q")
        await w.saw(second)
    finally:
        await w.close()


async def test_empty_repository_yields_once_the_first_commit_lands(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "r")
    w = Watcher(GitSource.open(str(tmp_path / "r"), data_dir=tmp_path / "d")).start()
    try:
        sha = await asyncio.to_thread(commit_files, repo, {"a.yaml": deployment("a")})
        await w.saw(sha)
        assert w.heads == [sha]  # nothing was yielded while the branch had no commit
    finally:
        await w.close()


async def test_stop_ends_the_stream_and_its_watchers(tmp_path: Path) -> None:
    """Setting ``stop`` while the stream waits for a change ends it at once (not at the
    next poll, 300 s away) and takes the file-watcher tasks it started with it."""
    repo = init_repo(tmp_path / "r")
    commit_files(repo, {"a.yaml": deployment("a")})
    before = asyncio.all_tasks()
    w = Watcher(GitSource.open(str(tmp_path / "r"), data_dir=tmp_path / "d"),
                interval=300).start()
    await w.saw(repo.head.commit.hexsha)
    assert w.task is not None
    helpers = asyncio.all_tasks() - before - {w.task, asyncio.current_task()}
    assert helpers, "a local repository is watched by tasks of its own"
    assert not w.task.done()  # waiting for the next change
    w.stop.set()
    await asyncio.wait_for(w.task, 5)  # raises TimeoutError if stop does not wake it
    assert w.task.exception() is None
    assert [t.get_name() for t in helpers if not t.done()] == []
    assert w.heads == [repo.head.commit.hexsha]


async def test_a_commit_made_while_the_first_head_is_read_is_seen(tmp_path: Path) -> None:
    """The file watchers are armed before the first head is read: a commit landing just
    after that read (made here inside it) wakes the stream, not the 300 s poll. Before,
    the read could run before inotify was armed, and a new leader acted on the old head."""
    repo = init_repo(tmp_path / "r")
    first = commit_files(repo, {"a.yaml": deployment("a")})
    source = GitSource.open(str(tmp_path / "r"), data_dir=tmp_path / "d")
    read_head = source.head
    landed: list[str] = []

    def head_then_commit() -> str:
        sha = read_head()
        if not landed:
            landed.append(commit_files(repo, {"a.yaml": deployment("a", replicas=2)}))
        return sha

    source.head = head_then_commit  # type: ignore[method-assign]
    w = Watcher(source, interval=300).start()
    try:
        await eventually(lambda: landed, timeout=10, message="the first head read")
        await w.saw(landed[0], timeout=10)  # (not first, then it: it may be gone already)
        assert w.heads == [first, landed[0]]
    finally:
        await w.close()
