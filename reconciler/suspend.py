"""Suspended deployments (Flux's ``suspend``): what the agent leaves as it is.

A Deployment annotated ``vinculum.io/suspended: "true"`` (:func:`gitsync.edits.
is_suspended`) is neither started nor stopped: :func:`acting_on` hands the planner the
desired state without it *and* the observed lattice without the instances it owns, so its
running instances are not strays to stop (the planner only stops what it sees owned and
not desired) and nothing is started for it. A provider shared with a deployment that is
not suspended stays visible (that one still needs it). :func:`mark_suspended` adds the
``Suspended`` condition to its status and keeps it out of the revision's verdict. Pure;
used by :mod:`reconciler.agent` around :func:`reconciler.planner.plan` and the report.
"""

from __future__ import annotations

from collections.abc import Mapping

from gitsync.edits import SUSPENDED, is_suspended
from lattice.manifests import DesiredState
from lattice.protocol import ANN_KIND, ANN_NAME, HostInventory
from lattice.status import Condition, DeploymentStatus
from reconciler.rulesets import KIND_DEPLOYMENT, OWNER_SEPARATOR

#: the condition type (and reason) on a suspended deployment's status
SUSPENDED_CONDITION = "Suspended"


def suspended_names(desired: DesiredState) -> frozenset[str]:
    """The deployments of ``desired`` that are suspended. Pure."""
    return frozenset(n for n, d in desired.deployments.items() if is_suspended(d))


def _owned_only_by(annotations: Mapping[str, str], names: frozenset[str]) -> bool:
    if annotations.get(ANN_KIND) != KIND_DEPLOYMENT:
        return False
    owners = [o for o in annotations.get(ANN_NAME, "").split(OWNER_SEPARATOR) if o]
    return bool(owners) and all(o in names for o in owners)


def acting_on(desired: DesiredState, observed: Mapping[str, HostInventory]
              ) -> tuple[DesiredState, Mapping[str, HostInventory]]:
    """``desired`` without its suspended deployments, and ``observed`` without the
    instances only they own: what the planner may act on. The inputs as they are when
    nothing is suspended. Pure."""
    names = suspended_names(desired)
    if not names:
        return desired, observed
    kept = desired.model_copy(update={"deployments": {
        n: d for n, d in desired.deployments.items() if n not in names}})
    hidden = {hid: inv.model_copy(update={
        "actors": [a for a in inv.actors if not _owned_only_by(a.annotations, names)],
        "providers": [p for p in inv.providers if not _owned_only_by(p.annotations, names)],
    }) for hid, inv in observed.items()}
    return kept, hidden


def mark_suspended(deps: Mapping[str, DeploymentStatus], names: frozenset[str]
                   ) -> tuple[dict[str, DeploymentStatus], dict[str, DeploymentStatus]]:
    """(every status, with the ``Suspended`` condition first on the suspended ones; the
    statuses that decide the revision's verdict: the others). Pure."""
    cond = Condition(type=SUSPENDED_CONDITION, status=True, reason=SUSPENDED_CONDITION,
                     message=f'{SUSPENDED}: "true": the agent starts and stops nothing of '
                             "it until `latticectl resume`")
    marked = {n: d.model_copy(update={"conditions": [cond, *d.conditions]})
              if n in names else d for n, d in deps.items()}
    return marked, {n: d for n, d in deps.items() if n not in names}
