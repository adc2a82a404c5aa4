"""Manifest models (lattice/manifests.py): what an operator may write, the messages a
mistake gets, and the derived values the planner and the hosts read (limits annotation,
provider keys). The YAML side (file, line, field in errors) is in test_manifest_loader."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from lattice.ids import random_actor_id
from lattice.manifests import (
    ActorLimits,
    ActorSpec,
    BindingSet,
    Deployment,
    DesiredState,
    ProviderKey,
    ProviderSpec,
    first_repeated,
)

ACTOR = random_actor_id()


def deployment(spec: dict[str, object]) -> Deployment:
    return Deployment.model_validate({"metadata": {"name": "d"}, "spec": spec})


def bindings(spec: list[dict[str, object]]) -> BindingSet:
    return BindingSet.model_validate({"metadata": {"name": "b"}, "spec": {"bindings": spec}})


def only_error(exc: pytest.ExceptionInfo[ValidationError]) -> str:
    [err] = exc.value.errors()
    return str(err["msg"])


# ------------------------------------------------------------------ limits
@pytest.mark.parametrize(
    ("limits", "text"),
    [
        ({"memory_mib": 32, "cpu_ms_per_call": 500}, "cpu_ms_per_call=500,memory_mib=32"),
        ({"memory_mib": 32}, "memory_mib=32"),
        ({"cpu_ms_per_call": 7}, "cpu_ms_per_call=7"),
        ({}, ""),
    ],
)
def test_limits_annotation_names_the_fields_set_in_order(limits: dict[str, int],
                                                          text: str) -> None:
    lim = ActorLimits.model_validate(limits)
    assert lim.annotation() == text
    assert ActorLimits.from_annotation(text) == lim


def test_an_actor_without_limits_carries_no_annotation() -> None:
    assert ActorSpec(id=ACTOR).limits_annotation is None
    assert ActorSpec(id=ACTOR, limits=ActorLimits()).limits_annotation is None
    spec = ActorSpec(id=ACTOR, limits=ActorLimits(memory_mib=64))
    assert spec.limits_annotation == "memory_mib=64"


@pytest.mark.parametrize(
    ("text", "part"),
    [
        ("memory_mib", "memory_mib"),
        ("memory=32", "memory=32"),
        ("memory_mib=lots", "memory_mib=lots"),
        ("memory_mib=-1", "memory_mib=-1"),
        ("cpu_ms_per_call=5,memory_mib=", "memory_mib="),
        ("=5", "=5"),
    ],
)
def test_a_bad_limits_annotation_names_the_part(text: str, part: str) -> None:
    with pytest.raises(ValueError) as info:
        ActorLimits.from_annotation(text)
    assert str(info.value) == (f"limits annotation {text!r}: {part!r} is not "
                               "memory_mib=N or cpu_ms_per_call=N")


def test_limits_annotation_ignores_empty_parts_but_checks_bounds() -> None:
    assert ActorLimits.from_annotation(",memory_mib=8,") == ActorLimits(memory_mib=8)
    with pytest.raises(ValidationError):
        ActorLimits.from_annotation("memory_mib=999999")


# ------------------------------------------------------------------ providers
def test_provider_key_reads_back_its_parts_and_prints_for_people() -> None:
    spec = ProviderSpec(id="wascc:messaging", vendor_id="nats")
    key = spec.key
    assert key == ProviderKey("wascc:messaging", "default", "nats")
    assert (key.capability_id, key.binding_name, key.vendor_id) == (
        "wascc:messaging", "default", "nats")
    assert str(key) == "wascc:messaging/default (nats)"
    assert key != ProviderKey("wascc:messaging", "default", "other")


# ------------------------------------------------------------------ validation
def test_affinity_rules_are_checked_with_the_selector_message() -> None:
    with pytest.raises(ValidationError) as info:
        deployment({"actors": [{"id": ACTOR, "affinity_rules": ["zone=eu", "!a=b"]}]})
    assert only_error(info) == ("Value error, invalid affinity rule '!a=b': "
                                "'!' negates a bare key only; use key!=value")
    ok = deployment({"actors": [{"id": ACTOR, "affinity_rules": ["zone=eu", "!gpu"]}]})
    assert ok.spec.actors[0].affinity_rules == ["zone=eu", "!gpu"]


def test_an_actor_listed_twice_is_refused_with_the_fix() -> None:
    with pytest.raises(ValidationError) as info:
        deployment({"actors": [{"id": ACTOR}, {"id": ACTOR, "replicas": 2}]})
    assert only_error(info) == f"Value error, actor {ACTOR} listed twice; use replicas instead"


def test_a_provider_listed_twice_is_refused_but_two_binding_names_are_two_providers() -> None:
    nats = {"id": "wascc:messaging", "vendor_id": "nats"}
    with pytest.raises(ValidationError) as info:
        deployment({"providers": [nats, {**nats, "vendor_id": "other"}]})
    assert only_error(info) == (
        "Value error, provider wascc:messaging binding 'default' listed twice")
    two = deployment({"providers": [nats, {**nats, "binding_name": "backup"}]})
    assert [p.binding_name for p in two.spec.providers] == ["default", "backup"]


def test_a_binding_listed_twice_is_refused() -> None:
    b = {"capability_id": "wascc:messaging", "actor": ACTOR}
    with pytest.raises(ValidationError) as info:
        bindings([b, {**b, "values": {"X": "1"}}])
    assert only_error(info) == (
        f"Value error, binding of actor {ACTOR} to wascc:messaging 'default' listed twice")
    assert len(bindings([b, {**b, "binding": "other"}]).spec.bindings) == 2


def test_binding_values_become_strings_as_written() -> None:
    """YAML scalars: ints and floats as text, booleans as the lowercase YAML words."""
    bs = bindings([{"capability_id": "wascc:http_server", "actor": ACTOR,
                    "values": {"PORT": 8080, "RATIO": 0.5, "TLS": True, "DEBUG": False,
                               "NAME": "${NAME:web}"}}])
    assert bs.spec.bindings[0].values == {"PORT": "8080", "RATIO": "0.5", "TLS": "true",
                                          "DEBUG": "false", "NAME": "${NAME:web}"}


def test_binding_values_that_are_not_scalars_are_errors() -> None:
    with pytest.raises(ValidationError):
        bindings([{"capability_id": "wascc:http_server", "actor": ACTOR,
                   "values": {"PORTS": [1, 2]}}])
    with pytest.raises(ValidationError):
        bindings([{"capability_id": "wascc:http_server", "actor": ACTOR, "values": "PORT=1"}])


def test_a_bad_actor_id_is_refused() -> None:
    with pytest.raises(ValidationError):
        ActorSpec(id="not-an-actor")


def test_unknown_fields_are_errors_and_models_are_frozen() -> None:
    with pytest.raises(ValidationError) as info:
        deployment({"actors": [{"id": ACTOR, "replica": 2}]})
    assert info.value.errors()[0]["loc"] == ("spec", "actors", 0, "replica")
    spec = ActorSpec(id=ACTOR)
    with pytest.raises(ValidationError):
        spec.replicas = 3


def test_desired_state_is_empty_only_without_deployments_and_binding_sets() -> None:
    assert DesiredState().empty
    assert not DesiredState(deployments={"d": deployment({})}).empty
    assert not DesiredState(bindingsets={"b": bindings([])}).empty


# ------------------------------------------------------------------ uniqueness checks
@given(st.lists(st.integers(min_value=0, max_value=6), max_size=30))
@settings(max_examples=300, deadline=None)
def test_first_repeated_names_what_the_quadratic_check_named(items: list[int]) -> None:
    """The linear check names the same item as ``list.count`` in a loop did: the first
    item, in list order, that occurs more than once."""
    assert first_repeated(items) == next((x for x in items if items.count(x) > 1), None)


def test_uniqueness_messages_name_the_first_repeated_entry() -> None:
    other = random_actor_id()
    with pytest.raises(ValidationError) as exc:
        deployment({"actors": [{"id": other}, {"id": ACTOR}, {"id": ACTOR}, {"id": other}]})
    assert f"actor {other} listed twice" in only_error(exc)
    with pytest.raises(ValidationError) as exc:
        bindings([{"capability_id": "wascc:kv", "actor": ACTOR},
                  {"capability_id": "wascc:http", "actor": ACTOR},
                  {"capability_id": "wascc:http", "actor": ACTOR}])
    assert f"binding of actor {ACTOR} to wascc:http 'default' listed twice" in only_error(exc)
