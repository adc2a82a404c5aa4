"""SourceReady: a git source whose fetches fail says so, keeps the last good desired state,
and recovers, logging it; the condition in status moves only when the source's state does.

The remote is a bare repository in a temporary directory reached by a ``file://`` URL; it
is made unreachable by renaming it away and brought back by renaming it back. Real git,
real status writer; no mocks, and every wait is a deadline poll.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gitsync.errors import FetchError
from gitsync.health import SourceHealth, redact
from gitsync.source import GitSource
from gitsync.status import StatusWriter, read_status
from gitsync.statusformat import STATUS_REF, without_clock
from gitsync.watch import watch_heads
from lattice.status import SOURCE_READY, Phase, Reason, RevisionNote, StatusReport
from reconciler.report import Outcome, source_condition, status_report
from tests.cliutil import gitops_repo, note, report, run, write_status
from tests.gitrepo import commit_files, count_commits, deployment, file_url, init_repo, make_remote
from tests.helpers import eventually

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
GONE = "does not appear to be a git repository"


def test_redact_hides_credentials_in_urls_and_per_attempt_timings() -> None:
    text = ("fetch https://bob:s3cret@git.example/x.git main: fatal: unable to access "
            "'https://ghp_TOKEN@git.example/x.git/': Failed to connect to git.example "
            "port 443 after 2001 ms: Connection refused")
    out = redact(text)
    assert "s3cret" not in out and "ghp_TOKEN" not in out and "bob" not in out
    assert "https://***@git.example/x.git" in out and "2001" not in out
    assert redact("git@github.com:org/repo.git") == "git@github.com:org/repo.git"


def test_health_condition_moves_only_with_the_state() -> None:
    ok = SourceHealth(location="file:///r.git").succeeded(T0)
    assert ok.condition().status and ok.condition().reason == Reason.SUCCEEDED
    assert ok.succeeded(T0 + timedelta(seconds=30)).condition() == ok.condition()
    first = ok.failed("fetch: fatal: gone", T0 + timedelta(seconds=60))
    tenth = first
    for i in range(9):
        tenth = tenth.failed("fetch: fatal: gone", T0 + timedelta(seconds=90 + 30 * i))
    cond = tenth.condition()
    assert (cond.type, cond.status, cond.reason) == (SOURCE_READY, False, Reason.FETCH_FAILED)
    assert cond == first.condition(), "a failure streak shows one condition"
    assert cond.message == "fetch: fatal: gone; last good fetch at 2026-03-01T12:00:00.123Z"
    assert cond.last_transition == datetime(2026, 3, 1, 12, 1, 0, 123000, tzinfo=UTC)
    assert tenth.failures == 10
    back = tenth.succeeded(T0 + timedelta(seconds=400))
    assert back.ok and back.condition().last_transition == T0.replace(
        microsecond=123000) + timedelta(seconds=400)
    assert tenth.describe_recovery(T0 + timedelta(seconds=400)) == (
        "source recovered after 10 failures (down 340.0 s)")
    never = SourceHealth().failed("boom", T0)
    assert never.condition().message == "boom; no good fetch since the agent started"


def test_failed_fetch_keeps_the_head_records_the_error_and_recovery_is_logged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bare, work = make_remote(tmp_path)
    src = GitSource.open(file_url(bare), data_dir=tmp_path / "d")
    first = src.head()
    good = src.health
    assert good.ok and good.last_good is not None and good.condition().status
    away = bare.with_name("away.git")
    bare.rename(away)
    for _ in range(3):
        with pytest.raises(FetchError, match=GONE):
            src.fetch()
    h = src.health
    assert (h.ok, h.failures, h.last_good) == (False, 3, good.last_good)
    assert GONE in h.error and h.failing_since is not None
    cond = h.condition()
    assert not cond.status and GONE in cond.message
    assert cond.message.endswith(f"last good fetch at {good.last_good:%Y-%m-%dT%H:%M:%S.}"
                                 f"{good.last_good.microsecond // 1000:03d}Z")
    assert src.head() == first, "the last good head stays in force"
    away.rename(bare)
    second = commit_files(work, {"b.yaml": deployment("b")})
    work.git.push("-q")
    with caplog.at_level(logging.INFO, logger="gitsync.source"):
        src.fetch()
    assert src.head() == second and src.health.ok and src.health.error == ""
    assert any("source recovered after 3 failures (down " in r.getMessage()
               and r.levelno == logging.INFO for r in caplog.records), caplog.text
    src.close()


async def test_watcher_survives_a_failure_streak_and_reports_health_changes_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The watcher fetches every 0.1 s; with the remote gone it keeps running, yields no
    head, and calls on_health once for the whole streak, then once on recovery."""
    caplog.set_level(logging.INFO, logger="gitsync.source")
    bare, work = make_remote(tmp_path)
    src = GitSource.open(file_url(bare), data_dir=tmp_path / "d")
    stop = asyncio.Event()
    heads: list[str] = []
    changes: list[tuple[SourceHealth, float]] = []

    async def run() -> None:
        async for sha in watch_heads(src, interval=0.1, stop=stop,
                                     on_health=lambda h: changes.append((h, time.monotonic()))):
            heads.append(sha)

    task = asyncio.create_task(run())
    try:
        first = work.head.commit.hexsha
        await eventually(lambda: heads == [first], message="first head yielded")
        away = bare.with_name("away.git")
        gone_at = time.monotonic()
        bare.rename(away)
        await eventually(lambda: changes, message="on_health called on failure")
        flip = changes[0][1] - gone_at
        await eventually(lambda: src.health.failures >= 8, message="8 failed fetches")
        assert not task.done(), "a failed fetch does not stop the watcher"
        assert [h.ok for h, _ in changes] == [False], "one call for the whole streak"
        assert GONE in changes[0][0].error and heads == [first]
        streak = src.health.failures
        away.rename(bare)
        second = await asyncio.to_thread(commit_files, work, {"b.yaml": deployment("b")})
        await asyncio.to_thread(work.git.push, "-q")
        await eventually(lambda: heads[-1:] == [second], message="new head after recovery")
        assert [h.ok for h, _ in changes] == [False, True]
        assert "source recovered after" in caplog.text
        print(f"\nSourceReady flipped {flip * 1000:.0f} ms after the remote went away "
              f"(interval 0.1 s); {streak} failed fetches, 1 on_health call")
        assert flip < 5.0
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        src.close()


def _report(sha: str, source: StatusReport | None, health: SourceHealth,
            now: datetime) -> StatusReport:
    out = Outcome(Phase.SYNCED, "observed matches desired", [], ())
    return status_report(out, branch="main", applied=sha, refused=None, deps={}, bss={},
                         hosts={}, now=now, source=source_condition(health, source))


def test_a_failure_streak_makes_one_status_commit(tmp_path: Path) -> None:
    """Twenty failed fetches, each followed by a status pass as the agent makes them: one
    commit for the flip to False, one for the recovery; the summary's other fields say
    the applied revision stays Synced."""
    bare, _work = make_remote(tmp_path)
    src = GitSource.open(file_url(bare), data_dir=tmp_path / "d")
    sha = src.head()
    repo = init_repo(tmp_path / "status")  # where the status goes: a local repository
    commit_files(repo, {"a.yaml": deployment("a")})
    local = GitSource.open(str(tmp_path / "status"), data_dir=tmp_path / "d2")
    writer = StatusWriter(local, min_interval=0.0)
    previous: StatusReport | None = None
    try:
        def one_pass() -> StatusReport:
            nonlocal previous
            previous = _report(sha, previous, src.health, datetime.now(UTC))
            writer.publish(previous, unclocked=without_clock(previous))
            writer.flush()
            return previous

        one_pass()
        assert count_commits(repo, STATUS_REF) == 1
        bare.rename(bare.with_name("away.git"))
        for _ in range(20):
            with pytest.raises(FetchError):
                src.fetch()
            rep = one_pass()
        assert count_commits(repo, STATUS_REF) == 2, "one commit for a streak of 20 fetches"
        cond = rep.summary.source_ready
        assert cond is not None and not cond.status and GONE in cond.message
        assert (rep.summary.phase, rep.summary.applied_revision) == (Phase.SYNCED, sha)
        stored = read_status(repo)
        assert stored is not None and stored.summary.source_ready == cond
        bare.with_name("away.git").rename(bare)
        src.fetch()
        rep = one_pass()
        cond = rep.summary.source_ready
        assert cond is not None and cond.status and count_commits(repo, STATUS_REF) == 3
    finally:
        writer.close()
        local.close()
        src.close()


def test_the_condition_keeps_its_transition_time_across_a_restart() -> None:
    """kstatus: last_transition moves only when the status does; a new agent whose own
    health started later keeps the time the status branch holds."""
    before = _report("a" * 40, None, SourceHealth().succeeded(T0), T0)
    later = T0 + timedelta(minutes=10)
    after = _report("a" * 40, before, SourceHealth().succeeded(later), later)
    assert after.summary.source_ready == before.summary.source_ready
    failing = _report("a" * 40, after, SourceHealth().succeeded(T0).failed("x", later), later)
    cond = failing.summary.source_ready
    assert cond is not None and cond.last_transition == later.replace(microsecond=123000)


def test_a_note_can_carry_the_condition() -> None:
    cond = SourceHealth().failed("fetch: fatal: gone", T0).condition()
    note = RevisionNote(revision="a" * 40, phase=Phase.SYNCED, first_seen=T0, updated=T0,
                        conditions=[cond])
    assert RevisionNote.model_validate(note.model_dump(mode="json")) == note
    assert RevisionNote.model_validate(
        RevisionNote(revision="a" * 40, phase=Phase.SYNCED, first_seen=T0,
                     updated=T0).model_dump(mode="json")).conditions == []


# ---------------------------------------------------------------- latticectl

def _with_source(rep: StatusReport, health: SourceHealth) -> StatusReport:
    return rep.model_copy(update={"summary": rep.summary.model_copy(
        update={"conditions": [health.condition()]})})


def test_latticectl_status_and_get_say_the_source_is_not_ready(
        tmp_path: Path, env: dict[str, str]) -> None:
    repo = gitops_repo(tmp_path)
    env["LATTICECTL_REPO"] = str(repo.working_tree_dir)
    sha = repo.head.commit.hexsha
    ok = SourceHealth(location="https://***@git.example/x.git").succeeded(T0)
    write_status(repo, tmp_path / "agent", _with_source(report(sha), ok), {sha: note(sha)})
    fine = run(env, "status")
    assert fine.exit_code == 0, fine.output
    assert "Source:      Ready since 2026-03-01T12:00:00.123Z (Succeeded): fetches of " \
           "https://***@git.example/x.git succeed" in fine.stdout
    quiet = run(env, "get", "deployments")
    assert quiet.exit_code == 0 and quiet.stderr == ""

    failing = ok.failed("fetch https://***@git.example/x.git main: git fetch --no-tags "
                        "failed (128): fatal: Authentication failed", T0 + timedelta(hours=1))
    write_status(repo, tmp_path / "agent", _with_source(report(sha), failing))
    result = run(env, "status")
    assert result.exit_code == 1, result.output  # as for Degraded or Invalid
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("Source:"))
    assert line.startswith("Source:      NOT READY since 2026-03-01T13:00:00.123Z "
                           "(FetchFailed): fetch https://")
    assert line.endswith("fatal: Authentication failed; last good fetch at "
                         "2026-03-01T12:00:00.123Z")
    doc = json.loads(run(env, "status", "-o", "json").stdout)
    assert doc["sourceReady"] is False and doc["synced"] is True
    assert doc["summary"]["conditions"][0]["reason"] == "FetchFailed"
    got = run(env, "get", "deployments")
    assert got.exit_code == 0 and "amazing-deployment" in got.stdout
    [warning] = got.stderr.splitlines()
    assert warning == (
        "warning: source not ready since 2026-03-01T13:00:00.123Z: " + failing.error
        + "; last good fetch at 2026-03-01T12:00:00.123Z; showing status of " + sha[:12])
