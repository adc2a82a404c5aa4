"""The status writer stores only the files that changed since its last status commit, in
one batch, and what it writes reads back as written."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import git
import pytest

from gitsync.gitcmd import BlobBatch, blob_id, tree_blob_ids
from gitsync.source import GitSource
from gitsync.status import StatusWriter
from gitsync.statusformat import STATUS_REF, read_status, report_files
from lattice.status import (
    BindingSetStatus,
    Count,
    DeploymentStatus,
    HostStatus,
    Phase,
    StatusReport,
    SyncSummary,
)
from tests.gitrepo import commit_files, count_commits, deployment, init_repo, ls_tree
from tests.helpers import eventually_sync

T = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def report(sha: str, n: int, *, bump: int = -1) -> StatusReport:
    return StatusReport(
        summary=SyncSummary(branch="main", attempted_revision=sha, applied_revision=sha,
                            phase=Phase.SYNCED, updated=T, deployments=n, hosts=n),
        deployments={f"d{i}": DeploymentStatus(name=f"d{i}", revision=sha,
                                               actors=Count(ready=2 if i == bump else 1,
                                                            desired=1))
                     for i in range(n)},
        bindingsets={"b": BindingSetStatus(name="b", bindings=Count(ready=0, desired=0))},
        hosts={f"N{i}": HostStatus(host_id=f"N{i}", name=f"h{i}", last_seen=T)
               for i in range(n)},
    )


def blobs(repo: git.Repo) -> set[str]:
    out = subprocess.run(["git", f"--git-dir={repo.common_dir}", "cat-file",
                          "--batch-all-objects", "--batch-check", "--unordered"],
                         check=True, capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.split()[1] == "blob"}


@pytest.fixture
def local(tmp_path: Path) -> Iterator[tuple[git.Repo, GitSource, StatusWriter]]:
    repo = init_repo(tmp_path / "r")
    commit_files(repo, {"a.yaml": deployment("a")})
    source = GitSource.open(str(tmp_path / "r"), data_dir=tmp_path / "d")
    writer = StatusWriter(source, min_interval=0.0)
    yield repo, source, writer
    writer.close()


def test_second_write_stores_only_the_changed_file_and_reads_back(
        local: tuple[git.Repo, GitSource, StatusWriter]) -> None:
    repo, source, writer = local
    sha = source.head()
    first = report(sha, 20)
    writer.publish(first)
    writer.flush()
    assert read_status(repo) == first
    before = blobs(repo)
    second = report(sha, 20, bump=7)
    writer.publish(second)
    writer.flush()
    new = blobs(repo) - before
    # the changed deployment's file; the summary is the same (its counts did not move)
    assert new == {blob_id(report_files(second)["deployments/d7.yaml"]).hex()}
    assert count_commits(repo, STATUS_REF) == 2
    assert read_status(repo) == second
    assert read_status(repo, cache={}) == second
    stored = {p: t.encode() for p, t in ls_tree(repo, STATUS_REF).items()}
    assert stored == report_files(second)  # byte-identical to the rendering


def test_a_branch_moved_by_another_writer_is_read_again(
        local: tuple[git.Repo, GitSource, StatusWriter], tmp_path: Path) -> None:
    repo, source, writer = local
    sha = source.head()
    writer.publish(report(sha, 3))
    writer.flush()
    other = StatusWriter(source, min_interval=0.0)
    other.publish(report(sha, 4))
    other.close()
    third = report(sha, 4, bump=1)
    writer.publish(third)
    writer.flush()
    assert read_status(repo) == third
    assert count_commits(repo, STATUS_REF) == 3
    ids = tree_blob_ids(repo.common_dir, STATUS_REF)
    assert set(ids) == set(report_files(third))


def test_blob_batch_writes_what_it_says(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "r")
    with BlobBatch(repo.common_dir) as batch:
        ids = [batch.add(b"x%d\n" % i) for i in range(150)]  # past fast-import's unpack limit
    assert batch.written == 150
    assert {i.hex() for i in ids} <= blobs(repo)
    assert repo.odb.stream(ids[3]).read() == b"x3\n"


@pytest.mark.parametrize("revision", ["a" * 40, "1" * 40, "1e10", "yes", "x: y", "'q'",
                                      "é", "0" * 39 + "e"])
def test_a_revision_put_in_renders_as_the_whole_file(revision: str) -> None:
    from gitsync.statusformat import revised_yaml, to_yaml
    dep = DeploymentStatus(name="d", revision=revision, labels={"revision": "r"},
                           spec={"revision": "s"}, actors=Count(ready=1, desired=1))
    bs = BindingSetStatus(name="b", revision=revision, bindings=Count(ready=0, desired=0))
    for model in (dep, bs):
        assert revised_yaml(model) == to_yaml(model)


def test_flush_waits_for_the_commit_the_background_thread_has_under_way(
        local: tuple[git.Repo, GitSource, StatusWriter]) -> None:
    # publish() wakes the writer's thread, which may take the report before flush() looks:
    # flush must still return only once that report is on the branch
    repo, source, writer = local
    sha = source.head()
    for i in range(5):
        r = report(sha, 30, bump=i)
        writer.publish(r)
        # the thread has taken it (flush alone nearly always gets there first)
        eventually_sync(lambda: writer._pending is None, timeout=10, message="not taken")
        writer.flush()
        assert read_status(repo) == r, f"write {i}"
    assert count_commits(repo, STATUS_REF) == 5
