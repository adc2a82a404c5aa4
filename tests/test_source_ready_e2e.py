"""SourceReady end to end: a real ``vinculum`` process on a ``file://`` remote whose bare
repository is renamed away and back, a real nats-server.

While the remote is gone the agent keeps running and keeps fetching every 0.2 s, its
status branch (in its mirror: pushes fail too) turns ``SourceReady`` False with git's error
in one commit for the whole streak, and nothing else moves; when the remote is back one
more commit turns it True and the log says ``source recovered after N failures``. The
repository holds no manifests, so the lattice needs no host and nothing else can change
the status while we count commits.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import git
import pytest

from gitsync.source import mirror_dir
from gitsync.status import read_status
from gitsync.statusformat import STATUS_REF
from lattice.localnats import NatsServer
from lattice.status import Condition
from tests.agentproc import AgentProcess, spawn_agent
from tests.gitrepo import count_commits, file_url, make_remote, tip
from tests.helpers import eventually

GONE = "does not appear to be a git repository"
INTERVAL = 0.2
STREAK = 10  # failed fetches to see before counting commits


@pytest.fixture
def agent(nats_server: NatsServer, tmp_path: Path,
          lattice_id: str) -> Iterator[tuple[Path, Path, AgentProcess]]:
    bare, _work = make_remote(tmp_path, {"README.md": "no manifests yet\n"})
    data = tmp_path / "agent"
    proc = spawn_agent(repo=file_url(bare), nats_url=nats_server.url, lattice=lattice_id,
                       data_dir=data, interval=INTERVAL, resync=0.5)
    try:
        yield bare, mirror_dir(data, file_url(bare)), proc
    finally:
        code = proc.stop()
        assert code == 0, proc.log()


def _source(mirror: Path) -> Condition | None:
    try:  # the agent may still be creating its mirror
        if tip(mirror, STATUS_REF) is None:
            return None
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return None
    report = read_status(mirror, ref=STATUS_REF)
    return report.summary.source_ready if report is not None else None


def _when(mirror: Path, status: bool) -> Condition | None:
    """The SourceReady condition once its status is ``status``, else None."""
    cond = _source(mirror)
    return cond if cond is not None and cond.status is status else None


def _commits(mirror: Path) -> int:
    repo = git.Repo(mirror)
    try:
        return count_commits(repo, STATUS_REF)
    finally:
        repo.close()


async def test_a_failing_source_is_one_status_commit_and_its_recovery_another(
        agent: tuple[Path, Path, AgentProcess]) -> None:
    bare, mirror, proc = agent
    ready = await eventually(lambda: _when(mirror, True), timeout=30,
                             message="SourceReady True in status")
    assert ready.reason == "Succeeded"
    before = _commits(mirror)
    away = bare.with_name("away.git")
    gone_at = time.monotonic()
    bare.rename(away)
    failed = await eventually(lambda: _when(mirror, False), timeout=20,
                              message="SourceReady False in status")
    flip = time.monotonic() - gone_at
    assert failed.reason == "FetchFailed" and GONE in failed.message
    assert "last good fetch at " in failed.message and failed.last_transition is not None
    await eventually(lambda: proc.log().count("retrying at the next tick") >= STREAK,
                     timeout=30, message=f"{STREAK} failed fetches")
    during = _commits(mirror) - before
    attempts = proc.log().count("retrying at the next tick")
    assert during == 1, f"{during} status commits during {attempts} failed fetches"
    assert proc.alive(), "a failing source does not stop the agent"
    away.rename(bare)
    await eventually(lambda: _when(mirror, True), timeout=20,
                     message="SourceReady True again")
    assert "source recovered after " in proc.log()
    assert _commits(mirror) - before == 2
    print(f"\nSourceReady False {flip:.2f} s after the remote went away (interval "
          f"{INTERVAL} s); {during} status commit during {attempts} failed fetches")
