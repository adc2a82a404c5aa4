"""The report of one pass (reconciler/report.py): the revision's verdict and the status
branch's content, from an assessment. Pure, so plain examples; and, against a real
repository, the times a new agent carries over from the status branch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from gitsync.source import GitSource
from gitsync.status import StatusWriter, read_note, read_status
from gitsync.statusformat import STATUS_REF
from lattice.status import (
    BindingSetStatus,
    Condition,
    Count,
    DeploymentStatus,
    Phase,
    Reason,
    RevisionNote,
    StatusReport,
    SyncSummary,
)
from reconciler.assess import assess
from reconciler.report import carried_over, outcome, status_report
from tests.gitrepo import commit_files, count_commits, init_repo
from tests.gitrepo import deployment as git_deployment
from tests.planner_strategies import host, lattice, provider_inst

NOW = datetime(2026, 1, 1, tzinfo=UTC)
STUCK = "no host satisfies leds=12: 3 hosts declined: label leds missing"


def _dep(name: str, phase: Phase, ready: int, desired: int, why: str = "") -> DeploymentStatus:
    cond = (Condition(type="Ready", status=False, reason=Reason.UNPLACEABLE, message=why)
            if why else Condition.ready())
    return DeploymentStatus(name=name, phase=phase, actors=Count(ready=ready, desired=desired),
                            providers=Count(ready=1, desired=1), conditions=[cond])


def test_synced_with_nothing_stuck_is_synced_with_counts_per_entity() -> None:
    deps = {"b": _dep("b", Phase.SYNCED, 2, 2), "a": _dep("a", Phase.SYNCED, 1, 1)}
    bss = {"s": BindingSetStatus(name="s", phase=Phase.SYNCED,
                                 bindings=Count(ready=2, desired=2))}
    out = outcome(Phase.SYNCED, deps, bss, [])
    assert (out.phase, out.message, out.problems) == (
        Phase.SYNCED, "observed matches desired", [])
    assert out.counts == (("Deployment", "a", Phase.SYNCED, 2, 2),
                          ("Deployment", "b", Phase.SYNCED, 3, 3),
                          ("BindingSet", "s", Phase.SYNCED, 2, 2))


def test_nothing_to_do_yet_an_entity_waits_on_the_impossible_is_degraded() -> None:
    deps = {"a": _dep("a", Phase.DEGRADED, 0, 1, STUCK), "b": _dep("b", Phase.SYNCED, 1, 1)}
    out = outcome(Phase.SYNCED, deps, {}, [])
    assert (out.phase, out.message, out.problems) == (Phase.DEGRADED, STUCK, [STUCK])


def test_the_executors_problems_are_sorted_once_each_and_the_first_is_the_message() -> None:
    out = outcome(Phase.DEGRADED, {}, {}, ["b: refused", "a: no host", "b: refused"])
    assert out.problems == ["a: no host", "b: refused"] and out.message == "a: no host"
    assert outcome(Phase.PROGRESSING, {}, {}, []).message == (
        "waiting for the lattice to confirm changes")


def test_a_refused_revision_reads_invalid_while_the_applied_one_stays() -> None:
    observed = lattice(host("H0", providers=[provider_inst("wascc:messaging", "hand")]))
    out = outcome(Phase.SYNCED, {}, {}, [])
    applied, bad = "a" * 40, "b" * 40
    report = status_report(out, branch="main", applied=applied,
                           refused=(bad, ["d.yaml:3: spec.actors: bad id"]),
                           deps={}, bss={}, hosts=observed, now=NOW)
    s = report.summary
    assert (s.phase, s.attempted_revision, s.applied_revision) == (Phase.INVALID, bad, applied)
    assert s.message == "revision bbbbbbbb refused; aaaaaaaa stays in force"
    assert s.errors == ["d.yaml:3: spec.actors: bad id"] and s.hosts == 1
    assert [u.entity for u in s.unmanaged] == ["wascc:messaging/default"]
    assert report.hosts["H0"].providers == 1 and report.hosts["H0"].last_seen == NOW
    fine = status_report(out, branch="main", applied=applied, refused=None, deps={}, bss={},
                         hosts=observed, now=NOW).summary
    assert (fine.phase, fine.attempted_revision, fine.errors) == (Phase.SYNCED, applied, [])


# ---------------------------------------------------------------- a restart or a hand-over


def _created(report: StatusReport | None, name: str) -> datetime | None:
    return report.deployments[name].created if report else None


def test_the_status_branchs_entities_win_and_one_only_this_agent_knows_is_kept() -> None:
    old, new = NOW, NOW + timedelta(minutes=10)
    mine = StatusReport(summary=SyncSummary(), deployments={
        "a": DeploymentStatus(name="a", created=new),
        "mine": DeploymentStatus(name="mine", created=new)})
    stored = StatusReport(summary=SyncSummary(), deployments={
        "a": DeploymentStatus(name="a", created=old)})
    both = carried_over(mine, stored)
    assert (_created(both, "a"), _created(both, "mine")) == (old, new)
    assert carried_over(None, stored) is stored and carried_over(mine, None) is mine
    assert carried_over(None, None) is None


def test_a_new_agent_keeps_the_times_its_predecessor_wrote(tmp_path: Path) -> None:
    """The agent before a restart (or the leader before a hand-over) wrote status at T0; a
    fresh writer on the same repository reports the same state ten minutes later: created,
    the Ready condition's last transition and the note's first_seen stay T0, and nothing
    is committed, since nothing changed."""
    repo = init_repo(tmp_path / "r")
    sha = commit_files(repo, {"a.yaml": git_deployment("a")})
    source = GitSource.open(str(tmp_path / "r"), data_dir=tmp_path / "d")
    desired = source.evaluate(sha).desired
    assert desired is not None
    observed = lattice(host("H0"))
    t0, t1 = NOW, NOW + timedelta(minutes=10)

    def one_pass(writer: StatusWriter | None, now: datetime,
                 previous: StatusReport | None) -> StatusReport:
        deps, bss = assess(desired, observed, unplaced={}, failures={}, now=now,
                           previous=previous)
        out = outcome(Phase.PROGRESSING, deps, bss, [])
        rep = status_report(out, branch="main", applied=sha, refused=None, deps=deps,
                            bss=bss, hosts=observed, now=now)
        if writer is not None:
            writer.publish(rep)
            writer.note(sha, RevisionNote(revision=sha, phase=out.phase, first_seen=now,
                                          updated=now))
        return rep

    before = StatusWriter(source)
    one_pass(before, t0, None)
    before.close()
    after = StatusWriter(source)  # a new agent's
    assert _created(one_pass(None, t1, None), "a") == t1  # without reading back: AGE 0
    rep = one_pass(after, t1, carried_over(None, after.read_back()))
    after.close()
    dep = rep.deployments["a"]
    assert (dep.created, dep.conditions[0].last_transition) == (t0, t0)
    got = read_status(repo)
    assert got is not None and got.deployments["a"] == dep
    note = read_note(repo, sha)
    assert note is not None and (note.first_seen, note.updated) == (t0, t1)
    assert count_commits(repo, STATUS_REF) == 1  # the same content: no commit
