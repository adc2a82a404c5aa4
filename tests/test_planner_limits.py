"""Per-deployment actor limits: carried to hosts in an annotation, and a change of limits
replaces the running instances (make-before-break), as any other change of identity."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from lattice.manifest_loader import load_sources
from lattice.manifests import ActorLimits, ActorSpec
from lattice.protocol import ANN_LIMITS, identity_annotations
from reconciler import actions as A
from reconciler.planner import plan
from tests.planner_strategies import ACTORS, actor_inst, deployment, host, lattice, owned, state

A0 = ACTORS[0]
LIMITS = "cpu_ms_per_call=500,memory_mib=32"


def limited(memory_mib: int | None = 32, cpu: int | None = 500) -> ActorSpec:
    return ActorSpec(id=A0, limits=ActorLimits(memory_mib=memory_mib, cpu_ms_per_call=cpu))


def rep(limits: str | None = None, replica: int = 0) -> dict[str, str]:
    ann = owned("Deployment", "alpha", "r1", replica=replica)
    if limits is not None:
        ann[ANN_LIMITS] = limits
    return ann


def test_the_annotation_round_trips_and_names_only_what_is_set() -> None:
    assert ActorLimits(memory_mib=32, cpu_ms_per_call=500).annotation() == LIMITS
    assert ActorLimits(memory_mib=8).annotation() == "memory_mib=8"
    assert ActorLimits.from_annotation(LIMITS) == ActorLimits(memory_mib=32,
                                                              cpu_ms_per_call=500)
    with pytest.raises(ValueError, match="'gpu=1' is not memory_mib=N"):
        ActorLimits.from_annotation("gpu=1")
    with pytest.raises(ValidationError):
        ActorLimits.from_annotation("memory_mib=999999")


def test_a_start_carries_the_limits_in_its_annotations_sorted_by_key() -> None:
    [start] = plan(state(deployment("alpha", [limited()])), lattice(host("H0")))
    assert isinstance(start, A.StartActor)
    keys = [k for k, _ in start.annotations]
    assert keys == sorted(keys) and dict(start.annotations)[ANN_LIMITS] == LIMITS
    assert ANN_LIMITS in identity_annotations(dict(start.annotations))


def test_without_limits_nothing_changes() -> None:
    [start] = plan(state(deployment("alpha", [ActorSpec(id=A0)])), lattice(host("H0")))
    assert isinstance(start, A.StartActor) and ANN_LIMITS not in dict(start.annotations)
    running = lattice(host("H0", actors=[actor_inst(A0, "i0", rep())]))
    assert plan(state(deployment("alpha", [ActorSpec(id=A0)])), running) == []


@pytest.mark.parametrize(("running", "spec", "why"), [
    (None, limited(), "limits changed from the host's defaults to " + LIMITS),
    (LIMITS, ActorSpec(id=A0), f"limits changed from {LIMITS} to the host's defaults"),
    (LIMITS, limited(memory_mib=64), f"limits changed from {LIMITS} to "
                                     "cpu_ms_per_call=500,memory_mib=64"),
])
def test_new_limits_replace_the_instance(running: str | None, spec: ActorSpec,
                                         why: str) -> None:
    observed = lattice(host("H0", actors=[actor_inst(A0, "i0", rep(running))]))
    actions = plan(state(deployment("alpha", [spec])), observed)
    starts = [a for a in actions if isinstance(a, A.StartActor)]
    stops = [a for a in actions if isinstance(a, A.StopActor)]
    assert [dict(s.annotations).get(ANN_LIMITS) for s in starts] == [spec.limits_annotation]
    assert [(s.instance_id, s.reason) for s in stops] == [("i0", why)]


def test_the_replacement_wins_over_the_old_instance_while_both_run() -> None:
    old = actor_inst(A0, "old", rep(None), at=0)
    new = actor_inst(A0, "new", rep(LIMITS), at=5)  # started later, with the new limits
    actions = plan(state(deployment("alpha", [limited()])), lattice(host("H0", actors=[old, new])))
    assert [(type(a).__name__, getattr(a, "instance_id", "")) for a in actions] == [
        ("StopActor", "old")]


def test_limits_are_validated_with_file_and_line() -> None:
    text = f"""kind: Deployment
metadata:
  name: alpha
spec:
  actors:
    - id: {A0}
      limits:
        memory_mib: 0
        cpu_ms: 5
"""
    errors = load_sources([("deployments/a.yaml", text)]).error_lines()
    assert "deployments/a.yaml:8: spec.actors[0].limits.memory_mib: Input should be " \
           "greater than or equal to 1" in errors
    assert any(e.startswith("deployments/a.yaml:9: spec.actors[0].limits.cpu_ms: unknown "
                            "field 'cpu_ms'") for e in errors), errors
