"""The git half end to end: watch → evaluate → note, as the agent drives it.

A small follower plays the reconciler's part (keep the last valid desired state, note
every evaluated head) so the acceptance criteria of the git side are checked on their
own: a commit is seen and noted; an invalid commit leaves the last valid state in force
and is noted Invalid; a force-pushed older commit becomes the desired state.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import git

from gitsync.source import GitSource
from gitsync.status import StatusWriter, read_note
from gitsync.watch import watch_heads
from lattice.manifests import DesiredState
from lattice.protocol import utcnow
from lattice.status import Phase, RevisionNote
from tests.gitrepo import (
    ACTOR,
    ELIDED_ACTOR,
    commit_files,
    deployment,
    file_url,
    force_push,
    index_state,
    init_repo,
    make_remote,
)
from tests.helpers import eventually


@dataclass
class Follower:
    """The reconciler's use of gitsync, reduced to what these tests need."""

    source: GitSource
    interval: float = 30.0
    desired: DesiredState | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    nudge: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.writer = StatusWriter(self.source)

    async def run(self) -> None:
        async for sha in watch_heads(self.source, interval=self.interval, stop=self.stop,
                                     nudge=self.nudge):
            ev = await asyncio.to_thread(self.source.evaluate, sha)
            if ev.desired is not None:
                self.desired = ev.desired
            now = utcnow()
            phase = Phase.SYNCED if ev.desired is not None else Phase.INVALID
            note = RevisionNote(revision=sha, phase=phase, first_seen=now, updated=now,
                                errors=ev.errors)
            await asyncio.to_thread(self.writer.note, sha, note)

    def start(self) -> Follower:
        self.task = asyncio.create_task(self.run())
        return self

    async def close(self) -> None:
        self.stop.set()
        assert self.task is not None
        await asyncio.wait_for(self.task, 10)
        await asyncio.to_thread(self.writer.close)

    async def noted(self, repo: git.Repo | Path, sha: str, phase: Phase) -> RevisionNote:
        async def check() -> RevisionNote | None:
            n = await asyncio.to_thread(read_note, repo, sha)
            return n if n is not None and n.phase is phase else None
        return await eventually(check, timeout=10, interval=0.01,
                                message=f"{phase} note on {sha[:8]}")


async def test_commit_seen_parsed_noted_and_invalid_keeps_last_valid(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "r")
    valid = commit_files(repo, {"deployments/a.yaml": deployment("a")})
    f = Follower(GitSource.open(str(tmp_path / "r"), data_dir=tmp_path / "d")).start()
    try:
        await f.noted(repo, valid, Phase.SYNCED)
        assert f.desired is not None and f.desired.revision == valid
        bad = await asyncio.to_thread(commit_files, repo, {
            "deployments/a.yaml": deployment("a", ELIDED_ACTOR),
            "deployments/b.yaml": deployment("b")})
        note = await f.noted(repo, bad, Phase.INVALID)
        assert note.errors and note.errors[0].startswith("deployments/a.yaml:6: spec.actors[0].id")
        assert f.desired.revision == valid and set(f.desired.deployments) == {"a"}
        fixed = await asyncio.to_thread(commit_files, repo, {
            "deployments/a.yaml": deployment("a", ACTOR, replicas=2)})
        before = index_state(repo)
        await f.noted(repo, fixed, Phase.SYNCED)
        assert f.desired.revision == fixed and set(f.desired.deployments) == {"a", "b"}
        assert f.desired.deployments["a"].spec.actors[0].replicas == 2
        assert index_state(repo) == before  # the agent never touched index or tree
    finally:
        await f.close()


async def test_force_push_of_an_older_commit_is_followed(tmp_path: Path) -> None:
    bare, work = make_remote(tmp_path)
    f = Follower(GitSource.open(file_url(bare), data_dir=tmp_path / "d"), interval=300).start()
    try:
        first = work.head.commit.hexsha
        await f.noted(f.source.repo, first, Phase.SYNCED)
        newer = commit_files(work, {"deployments/b.yaml": deployment("b")})
        work.git.push("-q")
        f.nudge.set()
        await f.noted(f.source.repo, newer, Phase.SYNCED)
        assert f.desired is not None and "b" in f.desired.deployments
        force_push(work, first)
        f.nudge.set()
        await eventually(lambda: f.desired is not None and f.desired.revision == first,
                         timeout=10, message="desired state follows the force-push")
        assert "b" not in f.desired.deployments
        await asyncio.to_thread(f.writer.flush)
        assert await asyncio.to_thread(read_note, bare, newer) is not None  # pushed notes
    finally:
        await f.close()
