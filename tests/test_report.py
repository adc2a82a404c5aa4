"""The report of one pass (reconciler/report.py): the revision's verdict and the status
branch's content, from an assessment. Pure, so plain examples."""

from __future__ import annotations

from datetime import UTC, datetime

from lattice.status import (
    BindingSetStatus,
    Condition,
    Count,
    DeploymentStatus,
    Phase,
    Reason,
)
from reconciler.report import outcome, status_report
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
