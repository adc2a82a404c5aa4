"""The status report of one pass, from its assessment. Pure: no I/O, no clock but ``now``.

The agent (:mod:`reconciler.agent`) assesses the lattice (:mod:`reconciler.assess`) and
hands the result here for the three things it writes: the revision's phase and message
(a pass with nothing left to do is still ``Degraded`` when an entity waits on something no
action can fix), the per-entity counts that decide whether the note on the revision
changes, and the :class:`~lattice.status.StatusReport` the status writer publishes.
:class:`ReportInputs` is what a report is computed from, so an unchanged pass is skipped.
:func:`carried_over` is where an agent that starts or takes over the lease picks up the
times its predecessor wrote, so a restart does not make every deployment new.
:func:`source_condition` is the summary's ``SourceReady`` condition, from the git source's
health (:mod:`gitsync.health`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from gitsync.health import SourceHealth
from lattice.manifests import DesiredState
from lattice.protocol import HostInventory
from lattice.status import (
    BindingSetStatus,
    Condition,
    DeploymentStatus,
    HostStatus,
    Phase,
    Reason,
    StatusReport,
    SyncSummary,
)
from reconciler.memo import same_objects
from reconciler.planner import unmanaged

#: (kind, name, phase, ready, desired) per entity, as the note on a revision lists them
Counts = tuple[tuple[str, str, Phase, int, int], ...]


@dataclass(frozen=True)
class ReportInputs:
    """Everything a status report is computed from. When a pass sees the same inputs as
    the last report (a converged lattice on a resync), the report would come out the same
    but for its clocks, so it is not computed again. Host inventories are compared by
    identity (:class:`~reconciler.observed.ObservedState` keeps the object while a host
    says nothing new) and held here, so an id cannot be reused by another object."""

    desired: DesiredState
    hosts: tuple[HostInventory, ...]
    rest: tuple[object, ...]

    def same_as(self, other: ReportInputs | None) -> bool:
        return (other is not None and other.desired is self.desired
                and other.rest == self.rest and same_objects(other.hosts, self.hosts))


@dataclass(frozen=True)
class Outcome:
    """The verdict on the applied revision after a pass."""

    phase: Phase
    message: str
    problems: list[str]
    counts: Counts


def carried_over(previous: StatusReport | None,
                 stored: StatusReport | None) -> StatusReport | None:
    """The report to assess the next pass against (the ``previous`` of
    :func:`reconciler.assess.assess`) for an agent that is about to write status for the
    first time as leader: ``stored``, read back from the status branch, is what the
    lattice's history says (each entity's ``created``, its Ready condition's
    ``last_transition``), so its entities win over this agent's own ``previous`` ones;
    an entity only this agent knows keeps its times. Pure."""
    if stored is None or previous is None:
        return stored if previous is None else previous
    return previous.model_copy(update={
        "deployments": {**previous.deployments, **stored.deployments},
        "bindingsets": {**previous.bindingsets, **stored.bindingsets},
    })


def source_condition(health: SourceHealth, previous: StatusReport | None) -> Condition:
    """The ``SourceReady`` condition of the summary: ``health``'s, with the
    ``last_transition`` of ``previous``'s when its status is the same (kstatus: the time
    moves only when the status does, so neither a restart nor a new leader moves it). Its
    content changes only when the source's state does, never per fetch attempt: put it in
    :class:`ReportInputs` and a failure streak makes one status commit. Pure."""
    cond = health.condition()
    before = previous.summary.source_ready if previous is not None else None
    if (before is not None and before.status == cond.status
            and before.last_transition is not None):
        cond = cond.model_copy(update={"last_transition": before.last_transition})
    return cond


def outcome(phase: Phase, deps: Mapping[str, DeploymentStatus],
            bss: Mapping[str, BindingSetStatus], problems: Sequence[str]) -> Outcome:
    """The revision's phase, message and counts, from the plan's verdict ``phase`` and the
    executor's ``problems`` (unplaced and failed actions). Pure."""
    found = sorted(set(problems))
    if phase is Phase.SYNCED:  # nothing to do, yet an entity may wait on the impossible
        entities: list[DeploymentStatus | BindingSetStatus] = [*deps.values(), *bss.values()]
        stuck = [c.message for e in entities
                 if e.phase is Phase.DEGRADED for c in e.conditions[:1]]
        if stuck:
            phase, found = Phase.DEGRADED, sorted(set(stuck))
    message = {
        Phase.SYNCED: "observed matches desired",
        Phase.PROGRESSING: "waiting for the lattice to confirm changes",
        Phase.DEGRADED: found[0] if found else "some entities cannot be placed",
    }.get(phase, "")
    counts = tuple(
        [("Deployment", n, d.phase, d.actors.ready + d.providers.ready,
          d.actors.desired + d.providers.desired) for n, d in sorted(deps.items())]
        + [("BindingSet", n, b.phase, b.bindings.ready, b.bindings.desired)
           for n, b in sorted(bss.items())]
    )
    return Outcome(phase, message, found, counts)


def status_report(
    out: Outcome, *, branch: str, applied: str, refused: tuple[str, list[str]] | None,
    deps: dict[str, DeploymentStatus], bss: dict[str, BindingSetStatus],
    hosts: Mapping[str, HostInventory], now: datetime,
    refused_reason: str = Reason.VALIDATION_FAILED,
    source: Condition | None = None,
) -> StatusReport:
    """The status branch's content: the summary (``Invalid`` while the newest revision,
    ``refused`` as (sha, errors), does not validate or is not trusted, ``refused_reason``
    says which, and ``applied`` stays in force; ``source``, the ``SourceReady`` condition
    of :func:`source_condition`, among its conditions), every entity and every observed
    host. The phase stays about the applied revision: a failing source leaves it in force.
    Pure."""
    summary = SyncSummary(
        branch=branch,
        attempted_revision=refused[0] if refused else applied,
        applied_revision=applied,
        phase=Phase.INVALID if refused else out.phase,
        reason=refused_reason if refused else "",
        message=(f"revision {refused[0][:8]} refused; {applied[:8]} stays in force"
                 if refused else out.message),
        errors=refused[1] if refused else out.problems,
        updated=now,
        deployments=len(deps), bindingsets=len(bss), hosts=len(hosts),
        unmanaged=unmanaged(hosts),
        conditions=[source] if source is not None else [],
    )
    host_files = {
        hid: HostStatus(host_id=hid, name=inv.name, labels=inv.labels,
                        started_at=inv.started_at, last_seen=now,
                        actors=len(inv.actors), providers=len(inv.providers),
                        bindings=len(inv.bindings))
        for hid, inv in hosts.items()
    }
    return StatusReport(summary=summary, deployments=deps, bindingsets=bss, hosts=host_files)
