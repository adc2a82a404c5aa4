"""StatusWriter: notes on commits and the lattice/status branch, locally and to a remote.

Driven with given reports (the reconciler's role), against real repositories.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import git
import pytest

from gitsync.errors import PushError
from gitsync.source import GitSource
from gitsync.status import PUSH_BACKOFF, StatusWriter, read_note, read_status
from gitsync.statusformat import REMOTE_STATUS_REF, STATUS_REF, fetch_status, report_files
from lattice.clock import ManualClock
from lattice.protocol import utcnow
from lattice.status import (
    BindingSetStatus,
    Condition,
    Count,
    DeploymentStatus,
    EntityCount,
    HostStatus,
    Phase,
    Placement,
    RevisionNote,
    StatusReport,
    SyncSummary,
)
from tests.gitrepo import (
    all_objects,
    clone,
    commit_files,
    count_commits,
    deployment,
    file_url,
    index_state,
    init_repo,
    ls_tree,
    make_remote,
    tip,
)
from tests.helpers import eventually_sync


def note(sha: str, phase: Phase = Phase.SYNCED, *, errors: list[str] | None = None,
         ready: int = 1) -> RevisionNote:
    now = utcnow()
    return RevisionNote(revision=sha, phase=phase, first_seen=now, updated=now,
                        errors=errors or [],
                        entities=[EntityCount(kind="Deployment", name="a", phase=phase,
                                              ready=ready, desired=1)])


def report(sha: str, *, ready: int = 1, hosts: int = 1, deployments: tuple[str, ...] = ("a",),
           spec: dict[str, object] | None = None) -> StatusReport:
    now = utcnow()
    return StatusReport(
        summary=SyncSummary(branch="main", attempted_revision=sha, applied_revision=sha,
                            phase=Phase.SYNCED if ready else Phase.PROGRESSING, updated=now,
                            deployments=len(deployments), hosts=hosts),
        deployments={d: DeploymentStatus(name=d, revision=sha, spec=spec or {},
                                         actors=Count(ready=ready, desired=1))
                     for d in deployments},
        bindingsets={"b": BindingSetStatus(name="b", bindings=Count(ready=0, desired=0))},
        hosts={f"N{i}": HostStatus(host_id=f"N{i}", name=f"h{i}", last_seen=now)
               for i in range(hosts)},
    )


@pytest.fixture
def local(tmp_path: Path) -> Iterator[tuple[git.Repo, GitSource, StatusWriter]]:
    repo = init_repo(tmp_path / "r")
    commit_files(repo, {"a.yaml": deployment("a")})
    source = GitSource.open(str(tmp_path / "r"), data_dir=tmp_path / "d")
    writer = StatusWriter(source)
    yield repo, source, writer
    writer.close()


def test_note_written_read_back_and_updated(local: tuple[git.Repo, GitSource, StatusWriter],
                                            ) -> None:
    repo, source, writer = local
    sha = source.head()
    assert read_note(repo, sha) is None
    first = note(sha, Phase.PROGRESSING, ready=0)
    writer.note(sha, first)
    assert read_note(repo, sha) == first
    assert read_note(str(repo.working_tree_dir), sha) == first
    second = note(sha, Phase.SYNCED)
    writer.note(sha, second)  # a replacement keeps when the revision was first seen
    assert read_note(repo, sha) == second.model_copy(update={"first_seen": first.first_seen})
    shown = repo.git.log("-1", "--notes=lattice", "--format=%N")
    assert "phase: Synced" in shown  # humans can read it with plain git


def test_a_note_does_not_wait_for_a_status_commit_in_progress(
        local: tuple[git.Repo, GitSource, StatusWriter]) -> None:
    """The note says Synced: it must not queue behind a status commit of a thousand files
    (which holds the status branch's lock for as long as that takes)."""
    repo, source, writer = local
    sha = source.head()
    done = threading.Event()
    with writer._status_lock:  # a status commit in progress
        worker = threading.Thread(target=lambda: (writer.note(sha, note(sha, Phase.SYNCED)),
                                                  done.set()), daemon=True)
        worker.start()
        assert done.wait(10.0), "the note waited for the status branch"
    worker.join(10.0)
    assert read_note(repo, sha) is not None and read_note(repo, sha).phase is Phase.SYNCED  # type: ignore[union-attr]


def test_invalid_note_carries_its_errors(local: tuple[git.Repo, GitSource, StatusWriter]) -> None:
    repo, source, writer = local
    bad = commit_files(repo, {"a.yaml": "kind: Nope\n"})
    ev = source.evaluate(bad)
    assert ev.desired is None
    writer.note(bad, note(bad, Phase.INVALID, errors=ev.errors))
    got = read_note(repo, bad)
    assert got is not None and got.phase is Phase.INVALID
    assert got.errors == ev.errors and got.errors[0].startswith("a.yaml:1: kind: ")


def test_status_branch_round_trip_and_working_tree_untouched(
        local: tuple[git.Repo, GitSource, StatusWriter]) -> None:
    repo, source, writer = local
    (Path(str(repo.working_tree_dir)) / "a.yaml").write_text("dirty, unstaged")
    before = index_state(repo)
    head_before = repo.head.commit.hexsha
    rep = report(source.head(), hosts=2)
    writer.publish(rep)
    writer.flush()
    assert read_status(repo) == rep
    files = ls_tree(repo, STATUS_REF)
    assert sorted(files) == ["bindingsets/b.yaml", "deployments/a.yaml", "hosts/N0.yaml",
                             "hosts/N1.yaml", "status.yaml"]
    assert "phase: Synced" in files["status.yaml"]
    status_commit = repo.commit(STATUS_REF)
    assert status_commit.parents == ()  # an orphan branch
    assert str(status_commit.author.name) == "vinculum"
    assert index_state(repo) == before and repo.head.commit.hexsha == head_before
    assert repo.active_branch.name == "main"


def test_only_changed_content_makes_commits(
        local: tuple[git.Repo, GitSource, StatusWriter]) -> None:
    repo, source, writer = local
    sha = source.head()
    writer.publish(report(sha))
    writer.flush()
    assert count_commits(repo, STATUS_REF) == 1
    later = report(sha)  # same content, newer clock fields
    assert later.summary.updated != read_status(repo).summary.updated  # type: ignore[union-attr]
    writer.publish(later)
    writer.flush()
    assert count_commits(repo, STATUS_REF) == 1
    writer.publish(report(sha, deployments=()))  # a deployment went away: its file too
    writer.flush()
    assert count_commits(repo, STATUS_REF) == 2
    assert "deployments/a.yaml" not in ls_tree(repo, STATUS_REF)


def test_discarded_status_is_never_committed(
        local: tuple[git.Repo, GitSource, StatusWriter]) -> None:
    """An agent that lost its lease drops what it queued as leader."""
    repo, source, writer = local
    sha = source.head()
    writer.publish(report(sha))
    writer.flush()
    writer.publish(report(sha, ready=0))  # within the coalescing second: still pending
    writer.discard()
    writer.flush()
    writer.close()
    assert count_commits(repo, STATUS_REF) == 1
    st = read_status(repo)
    assert st is not None and st.deployments["a"].actors.ready == 1


def test_burst_of_fifty_updates_in_200ms_makes_two_commits(tmp_path: Path) -> None:
    """The first change is committed at once; the rest of a burst waits out min_interval
    (1 s on the writer's clock) and makes one commit, of the last report."""
    repo = init_repo(tmp_path / "r")
    commit_files(repo, {"a.yaml": deployment("a")})
    source = GitSource.open(str(tmp_path / "r"), data_dir=tmp_path / "d")
    clock = ManualClock()
    writer = StatusWriter(source, clock=clock)
    try:
        sha = source.head()
        first = report(sha, ready=0, hosts=9)
        writer.publish(first)
        eventually_sync(lambda: read_status(repo) == first, timeout=10,
                        message="the first change committed at once")
        for i in range(49):  # 4 ms apart on the writer's clock
            clock.advance(0.004)
            writer.publish(report(sha, ready=i % 2, hosts=1 + i % 7))
        last = report(sha, ready=1, hosts=3)
        writer.publish(last)
        writer.wake()
        assert writer.commits == 1 and read_status(repo) == first  # 0.196 s: not yet due
        clock.advance(1.0 - 0.196)
        writer.wake()
        eventually_sync(lambda: read_status(repo) == last, timeout=10,
                        message="the last report committed when min_interval passed")
        assert writer.commits == count_commits(repo, STATUS_REF) == 2
    finally:
        writer.close()


def test_restart_does_not_commit_unchanged_status(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "r")
    commit_files(repo, {"a.yaml": deployment("a")})
    source = GitSource.open(str(tmp_path / "r"), data_dir=tmp_path / "d")
    rep = report(source.head())
    w1 = StatusWriter(source)
    w1.publish(rep)
    w1.close()
    w2 = StatusWriter(source)
    w2.publish(rep.model_copy(update={"summary": rep.summary.model_copy(
        update={"updated": utcnow() + timedelta(seconds=5)})}))
    w2.close()
    assert count_commits(repo, STATUS_REF) == 1


def test_works_without_any_git_identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = init_repo(tmp_path / "r")
    sha = commit_files(repo, {"a.yaml": deployment("a")})
    with repo.config_writer() as cw:
        cw.remove_section("user")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    source = GitSource.open(str(tmp_path / "r"), data_dir=tmp_path / "d")
    writer = StatusWriter(source)
    writer.note(sha, note(sha))
    writer.publish(report(sha))
    writer.close()
    assert read_note(repo, sha) is not None and read_status(repo) is not None


def test_no_resolved_secret_anywhere_in_the_repository(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    marker = "s3cr3t-" + os.urandom(6).hex()
    monkeypatch.setenv("VINCULUM_TEST_SECRET", marker)
    bare, work = make_remote(tmp_path)
    bindings = ("kind: BindingSet\nmetadata: {name: b}\nspec:\n  bindings:\n"
                "    - capability_id: wascc:messaging\n"
                "      actor: MB2ZQB6ROOMAYBO4ZCTFYWN7YIVBWA3MTKZYAQKJMTIHE2ELLRW2E3ZW\n"
                "      values:\n        TOKEN: ${VINCULUM_TEST_SECRET}\n"
                "        OTHER: ${VINCULUM_TEST_SECRET:fallback}\n")
    commit_files(work, {"bindingsets/b.yaml": bindings})
    work.git.push("-q")
    source = GitSource.open(file_url(bare), data_dir=tmp_path / "data")
    ev = source.evaluate(source.head())
    assert ev.desired is not None
    spec = ev.desired.bindingsets["b"].model_dump(mode="json")
    writer = StatusWriter(source)
    writer.note(ev.revision, note(ev.revision))
    rep = report(ev.revision)
    writer.publish(rep.model_copy(update={"bindingsets": {"b": BindingSetStatus(
        name="b", spec=spec, bindings=Count(ready=1, desired=1))}}))
    writer.close()
    for path in (bare, Path(source.repo.git_dir)):
        blob = all_objects(path)
        assert b"${VINCULUM_TEST_SECRET}" in blob  # the template is there...
        assert marker.encode() not in blob  # ...the value never is
    assert tip(bare, STATUS_REF) is not None


def test_remote_pushes_notes_and_status_and_merges_with_other_writers(tmp_path: Path) -> None:
    bare, work = make_remote(tmp_path)
    a = GitSource.open(file_url(bare), data_dir=tmp_path / "agent-a")
    b = GitSource.open(file_url(bare), data_dir=tmp_path / "agent-b")
    first = a.head()
    second = commit_files(work, {"b.yaml": deployment("b")})
    work.git.push("-q")
    b.fetch()
    wa, wb = StatusWriter(a), StatusWriter(b)
    na = note(first)
    wa.note(first, na)
    wa.publish(report(first))
    wa.flush()
    wb.note(second, note(second))  # b's notes ref does not know a's note: push must merge
    wb.publish(report(second, hosts=3))  # and its status must land on top of a's
    wb.flush()
    wa.close()
    wb.close()
    checker = clone(bare, tmp_path / "checker")
    assert fetch_status(checker)
    assert read_note(checker, first) == na
    assert read_note(checker, second) is not None
    got = read_status(checker, ref=REMOTE_STATUS_REF)
    assert got is not None and got.summary.applied_revision == second
    assert count_commits(checker, REMOTE_STATUS_REF) == 2


def test_remote_push_keeps_trying_in_the_background(tmp_path: Path) -> None:
    bare, _work = make_remote(tmp_path)
    source = GitSource.open(file_url(bare), data_dir=tmp_path / "d")
    sha = source.head()
    hook = bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'remote: busy, try later' >&2\nexit 1\n")
    hook.chmod(0o755)
    writer = StatusWriter(source)
    writer.note(sha, note(sha))  # push refused: not a race, retried later
    hook.unlink()
    eventually_sync(lambda: tip(bare, "refs/notes/lattice") is not None, timeout=15,
                    message="note pushed once the remote accepts")
    writer.close()
    assert subprocess.run(["git", f"--git-dir={bare}", "notes", "--ref=lattice", "show", sha],
                          capture_output=True).returncode == 0


def test_a_refused_notes_push_neither_stops_the_status_push_nor_local_commits(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The remote's hook refuses refs/notes/lattice and takes anything else: the status
    branch reaches it, the note's failure is logged with its ref and recorded, and status
    commits go on while the note's push backs off."""
    bare, _work = make_remote(tmp_path)
    hook = bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\nwhile read old new ref; do\n"
                    "  if [ \"$ref\" = refs/notes/lattice ]; then\n"
                    "    echo 'no notes here' >&2; exit 1\n  fi\ndone\nexit 0\n")
    hook.chmod(0o755)
    source = GitSource.open(file_url(bare), data_dir=tmp_path / "d")
    sha = source.head()
    caplog.set_level(logging.WARNING, logger="gitsync.status")
    clock = ManualClock()
    writer = StatusWriter(source, clock=clock)

    def notes_push_failures() -> int:
        return sum("push refs/notes/lattice failed" in r.getMessage() for r in caplog.records)

    try:
        writer.note(sha, note(sha))
        writer.publish(report(sha))
        for _ in range(4):  # four refusals in a row (five, if the background thread tried
            with pytest.raises(PushError, match="refs/notes/lattice"):  # first)
                writer.flush()
        refusals = notes_push_failures()
        assert refusals in (4, 5)
        backoff = PUSH_BACKOFF.delay(refusals - 1)  # the note's next try: 8 s (or 16 s) away
        assert backoff == 2.0 ** (refusals - 1)
        assert tip(bare, STATUS_REF) == tip(source.repo, STATUS_REF) is not None
        assert tip(bare, "refs/notes/lattice") is None
        assert list(writer.push_errors) == ["refs/notes/lattice"]
        assert "no notes here" in writer.push_errors["refs/notes/lattice"]
        assert any("push refs/notes/lattice failed" in r.getMessage() and "no notes here"
                   in r.getMessage() for r in caplog.records)
        later = report(sha, hosts=2)
        writer.publish(later)  # committed and pushed after min_interval, not after 8 s
        clock.advance(1.0)
        writer.wake()
        eventually_sync(lambda: read_status(source.repo, ref=STATUS_REF) == later
                        and tip(bare, STATUS_REF) == tip(source.repo, STATUS_REF),
                        timeout=10, message="status committed and pushed despite the notes")
        assert count_commits(source.repo, STATUS_REF) == 2
        assert notes_push_failures() == refusals  # the note's push waits its own backoff
        clock.advance(backoff - 1.0 - 1 / 1024)
        writer.wake()
        assert notes_push_failures() == refusals
        clock.advance(1 / 1024)
        writer.wake()
        eventually_sync(lambda: notes_push_failures() == refusals + 1, timeout=10,
                        message="the note's push tried again when its backoff passed")
    finally:
        hook.unlink()
        writer.close()
    assert tip(bare, "refs/notes/lattice") is not None and writer.push_errors == {}


def test_sub_millisecond_jitter_makes_no_commit_and_a_read_back_renders_the_same(
        local: tuple[git.Repo, GitSource, StatusWriter]) -> None:
    """One instant reaches the agent as readings microseconds apart (a host's ack, its
    event): every status time has millisecond precision, so such jitter changes no byte,
    and a report read back from the branch renders to exactly what the branch holds."""
    repo, source, writer = local
    sha = source.head()

    def at(us: int) -> StatusReport:
        t = datetime(2026, 1, 1, 0, 0, 26, us, tzinfo=UTC)
        rep = report(sha)
        dep = rep.deployments["a"].model_copy(update={
            "created": t,
            "conditions": [Condition.ready().model_copy(update={"last_transition": t})],
            "placements": [Placement(entity="M", kind="actor", host_id="N0", since=t)]})
        return rep.model_copy(update={"deployments": {"a": dep}})

    writer.publish(at(13539))
    writer.flush()
    stored = {path: text.encode() for path, text in ls_tree(repo, STATUS_REF).items()}
    assert "since: '2026-01-01T00:00:26.013000Z'" in stored["deployments/a.yaml"].decode()
    back = read_status(repo)
    assert back is not None and report_files(back) == stored  # byte-identical
    for again in (back, at(13001), at(13999)):
        writer.publish(again)
        writer.flush()
    restarted = StatusWriter(source)
    restarted.publish(at(13700))
    restarted.close()
    assert count_commits(repo, STATUS_REF) == 1
    writer.publish(at(14000))  # a millisecond is a change
    writer.flush()
    assert count_commits(repo, STATUS_REF) == 2
