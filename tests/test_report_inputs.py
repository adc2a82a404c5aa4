"""The agent skips a status report whose inputs are those of the last one (a converged
lattice on a resync); any change of input, even a new object saying the same, recomputes."""

from __future__ import annotations

from datetime import UTC, datetime

from lattice.manifests import DesiredState
from lattice.protocol import HostInventory
from reconciler.report import ReportInputs

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def host(hid: str) -> HostInventory:
    return HostInventory(host_id=hid, name=hid, started_at=T0)


def test_same_objects_and_values_are_the_same_inputs() -> None:
    desired, a, b = DesiredState(revision="r1"), host("A"), host("B")
    first = ReportInputs(desired, (a, b), ("Synced", True, (("k", "v"),)))
    assert first.same_as(ReportInputs(desired, (a, b), ("Synced", True, (("k", "v"),))))
    assert not first.same_as(None)


def test_any_difference_recomputes() -> None:
    desired, a, b = DesiredState(revision="r1"), host("A"), host("B")
    first = ReportInputs(desired, (a, b), ("Synced",))
    assert not first.same_as(ReportInputs(desired, (a, host("B")), ("Synced",)))  # new object
    assert not first.same_as(ReportInputs(desired, (a,), ("Synced",)))  # a host left
    assert not first.same_as(ReportInputs(desired, (a, b), ("Degraded",)))
    assert not first.same_as(ReportInputs(DesiredState(revision="r1"), (a, b), ("Synced",)))
