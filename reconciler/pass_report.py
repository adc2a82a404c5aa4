"""One pass's status: what the agent reports, and whether there is anything new to report.

Pure but for the ``now`` it is given. The agent gathers a :class:`PassView` at the end of a
pass (or before its commands, to show the gap); :func:`report_inputs` is the cheap digest
that says whether anything changed since the last report (clocks aside), and
:func:`make_report` assesses and renders the status document and the revision's verdict.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from lattice.manifests import DesiredState
from lattice.protocol import HostInventory
from lattice.status import Condition, Phase, StatusReport
from reconciler.assess import assess
from reconciler.matching import Matcher
from reconciler.report import Outcome, ReportInputs, outcome, status_report
from reconciler.revision import Revision
from reconciler.suspend import mark_suspended, suspended_names


def _version() -> str:
    try:
        return importlib.metadata.version("vinculum")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


#: this agent's version: in its status summary and in its answer to a nudge request
AGENT_VERSION = _version()


@dataclass(frozen=True, kw_only=True)
class PassView:
    """What a pass has to report on: desired and observed state, the executor's memory of
    what failed, the revisions in play, the source's condition."""

    desired: DesiredState
    snap: Mapping[str, HostInventory]
    phase: Phase
    note: bool
    rev: Revision
    refused: Revision | None
    leader: bool | None
    unplaced: Mapping[str, str]
    failures: Mapping[str, str]
    crashes: Mapping[str, tuple[int, str]]
    source: Condition | None
    branch: str


def report_inputs(v: PassView) -> ReportInputs:
    """Everything the report is made of, for :meth:`ReportInputs.same_as`."""
    refused = v.refused
    return ReportInputs(v.desired, tuple(v.snap.values()), (
        v.phase, v.note, v.rev.sha, v.rev.phase, v.rev.counts,
        (refused.sha, tuple(refused.errors), refused.reason) if refused else None,
        v.leader, tuple(v.snap),
        tuple(sorted(v.unplaced.items())), tuple(sorted(v.failures.items())),
        tuple(sorted(v.crashes.items())), v.source))


def make_report(v: PassView, *, previous: StatusReport | None, matcher: Matcher,
                now: datetime) -> tuple[StatusReport, Outcome]:
    """The status document of this pass and the applied revision's verdict."""
    deps, bss = assess(v.desired, v.snap, unplaced=v.unplaced, failures=v.failures, now=now,
                       previous=previous, crashes=v.crashes, matcher=matcher)
    deps, judged = mark_suspended(deps, suspended_names(v.desired))
    out = outcome(v.phase, judged, bss, [*v.unplaced.values(), *v.failures.values()])
    refused = v.refused
    report = status_report(
        out, branch=v.branch, applied=v.rev.sha,
        refused=(refused.sha, refused.errors) if refused else None,
        refused_reason=refused.reason if refused else "",
        deps=deps, bss=bss, hosts=v.snap, now=now, source=v.source)
    report = report.model_copy(update={"summary": report.summary.model_copy(
        update={"agent_version": AGENT_VERSION})})
    return report, out
