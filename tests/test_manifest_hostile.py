"""Hostile manifests cost nothing: alias bombs, recursive aliases, bad bytes, broken YAML
and names that would change a NATS subject or escape a folder.

Pure and fast: the loader, the name rules of :mod:`lattice.names`, the wire models and a
host's command handler in process (no NATS, no git). Nothing here is a timed assertion:
the alias tests assert on what the code does (which node walks happen, what is
constructed), with a generous wall-clock guard only against a regression to minutes.
"""

from __future__ import annotations

import string
import time
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from hostagent.commands import CommandHandler
from hostagent.state import HostState
from hostagent.workload import MemoryRuntime
from lattice import yaml_guard
from lattice.ids import random_host_id
from lattice.manifest_loader import MAX_ALIAS_NODES, MAX_ALIASES, load_sources, parse_file
from lattice.names import (
    CAPABILITY_RULE,
    NAME_RULE,
    TOKEN_RULE,
    binding_name_problem,
    capability_id_problem,
    metadata_name_problem,
    vendor_id_problem,
)
from lattice.protocol import (
    AuctionRequest,
    CommandOp,
    DeleteBindingCommand,
    PutBindingCommand,
    StartActorCommand,
    StartProviderCommand,
    StopProviderCommand,
)
from tests.gitrepo import ACTOR, deployment

GUARD_S = 10.0  # a regression guard, not a benchmark (the bomb took 18 to 107 s before)


def bomb(levels: int = 9, fan: int = 9) -> str:
    """A Deployment whose annotations hold a "billion laughs": ``levels`` anchors, each a
    list of ``fan`` aliases of the one before (``fan ** levels`` strings once expanded)."""
    lines = ["kind: Deployment", "metadata:", "  name: bomb", "  annotations:",
             '    l0: &l0 "lol"']
    for i in range(1, levels + 1):
        lines.append(f"    l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * fan) + "]")
    return "\n".join([*lines, "spec: {}"]) + "\n"


def only_error(text: str | bytes, path: str = "m.yaml") -> str:
    [err] = load_sources([(path, text)]).error_lines()
    return err


# ---------------------------------------------------------------- aliases

def test_the_alias_bomb_is_refused_at_the_line_of_the_alias_without_expanding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    constructed: list[Any] = []
    real = yaml_guard.Loader.construct_document
    monkeypatch.setattr(yaml_guard.Loader, "construct_document",
                        lambda self, node: constructed.append(node) or real(self, node))
    walked: list[yaml.Node] = []
    children = yaml_guard._children
    monkeypatch.setattr(yaml_guard, "_children",
                        lambda node, loc: walked.append(node) or children(node, loc))
    text = bomb()
    start = time.monotonic()
    found, errors, _ = parse_file("deployments/bomb.yaml", text)
    assert time.monotonic() - start < GUARD_S
    assert found == [] and constructed == [], "nothing of the bomb is constructed"
    [err] = [str(e) for e in errors]
    # l1..l4 repeat 9 + 90 + 819 + 7380 nodes; the first *l4 of l5 crosses 10,000
    assert err == ("deployments/bomb.yaml:10: metadata.annotations.l5[0]: YAML aliases "
                   f"would repeat more than {MAX_ALIAS_NODES} nodes in one document (an "
                   "alias bomb?); write the values out")
    assert len(walked) == len({id(n) for n in walked}), "every node walked once"
    assert len(walked) < 100, "the walk stops at the nodes written, not their expansion"


def test_a_deeper_bomb_costs_the_same_walk() -> None:
    start = time.monotonic()
    err = only_error(bomb(levels=40, fan=40))
    assert time.monotonic() - start < GUARD_S
    assert "repeat more than" in err and err.startswith("m.yaml:8: metadata.annotations.l3[")


def test_other_documents_and_files_are_not_held_up_by_a_bomb() -> None:
    result = load_sources([("a.yaml", bomb() + "---\n" + deployment("after")),
                           ("b.yaml", deployment("other"))])
    assert sorted(m.name for m in result.manifests) == ["after", "other"]
    [err] = result.error_lines()
    assert err.startswith("a.yaml:10: ") and "alias bomb" in err
    assert result.desired() is None  # the commit as a whole is invalid


def test_more_than_the_allowed_aliases_is_refused_at_the_first_one_too_many() -> None:
    values = "\n".join(f"        V{i}: *v" for i in range(MAX_ALIASES + 1))
    text = ("kind: BindingSet\nmetadata: {name: b}\nspec:\n  bindings:\n"
            f"    - capability_id: wascc:http\n      actor: {ACTOR}\n      values:\n"
            f"        V: &v x\n{values}\n")
    err = only_error(text)
    line = 9 + MAX_ALIASES  # the (MAX_ALIASES + 1)-th alias
    assert err == (f"m.yaml:{line}: spec.bindings[0].values.V{MAX_ALIASES}: more than "
                   f"{MAX_ALIASES} YAML aliases in one document; write the values out")
    fewer = text.replace(f"        V{MAX_ALIASES}: *v\n", "")
    assert load_sources([("m.yaml", fewer)]).ok


def test_a_recursive_alias_is_refused() -> None:
    err = only_error("kind: Deployment\nmetadata: &m\n  name: a\n  labels: *m\nspec: {}\n")
    assert err.startswith("m.yaml:4: metadata.labels: recursive YAML alias")


def test_modest_anchors_and_merge_keys_still_work() -> None:
    text = f"""\
kind: Deployment
metadata: {{name: a}}
spec:
  actors:
    - {{id: {ACTOR}, affinity_rules: &rules ["leds=12", "!battery"]}}
  providers:
    - &messaging {{id: wascc:messaging, vendor_id: nats, affinity_rules: *rules}}
    - <<: *messaging
      id: wascc:keyvalue
      vendor_id: memory
"""
    result = load_sources([("m.yaml", text)])
    assert result.ok, result.error_lines()
    [m] = result.manifests
    assert m.manifest.spec.providers[1].affinity_rules == ["leds=12", "!battery"]
    assert [(p.id, p.vendor_id) for p in m.manifest.spec.providers] == [
        ("wascc:messaging", "nats"), ("wascc:keyvalue", "memory")]


def test_a_duplicate_key_in_a_shared_mapping_is_reported_once() -> None:
    text = ("kind: Deployment\nmetadata:\n  name: a\n  labels: &l {x: '1', x: '2'}\n"
            "  annotations: *l\nspec: {}\n")
    assert load_sources([("m.yaml", text)]).error_lines() == [
        "m.yaml:4: metadata.labels.x: duplicate key (first written on line 4)"]


# ---------------------------------------------------------------- bytes and syntax

@pytest.mark.parametrize(("content", "line", "fragment"), [
    (b"kind: Deployment\nmetadata:\n  name: \xff\n", 3, "byte 0xff"),
    (b"\xfe\n", 1, "byte 0xfe"),
    (b"kind: Deployment\n\n\n# caf\xc3\n", 4, "byte 0xc3"),
])
def test_non_utf8_points_at_the_line_of_the_bad_byte(content: bytes, line: int,
                                                     fragment: str) -> None:
    err = only_error(content)
    assert err.startswith(f"m.yaml:{line}: (document): not UTF-8 text: "), err
    assert fragment in err


@pytest.mark.parametrize(("text", "line", "fragment"), [
    # bad indentation: the over-indented key
    ("kind: Deployment\nmetadata:\n  name: a\n   labels: {}\nspec: {}\n", 4,
     "mapping values are not allowed"),
    ("kind: Deployment\nmetadata:\n  name: a\n labels: x\nspec: {}\n", 4,
     "did not find expected key"),
    # an unclosed quote: where it opened, not the end of the file
    ('kind: Deployment\nmetadata:\n  name: "a\nspec: {}\nother: 1\n', 3,
     "while scanning a quoted scalar"),
    ("kind: Deployment\nmetadata:\n  name: 'a\nspec: {}\n", 3, "quoted scalar"),
    # a tab used as indentation
    ("kind: Deployment\nmetadata:\n\tname: a\nspec: {}\n", 3, "a tab: YAML indents with spaces"),
    # an unclosed bracket at the end: the last line written
    ("kind: Deployment\nmetadata: {name: a}\nspec:\n  actors: [\n\n\n", 4, "flow node"),
    # the other line the parser names is in the message
    ("kind: Deployment\nmetadata: {name: a\nspec: {}\n", 3, "flow mapping (line 2)"),
    ("a: &x 1\nb: &x 2\n", 2, "duplicate anchor; first occurrence (line 1)"),
])
def test_yaml_syntax_errors_point_at_the_line_of_the_fault(text: str, line: int,
                                                           fragment: str) -> None:
    err = only_error(text)
    assert err.startswith(f"m.yaml:{line}: (document): not valid YAML: "), err
    assert fragment in err, err


# ---------------------------------------------------------------- names

@pytest.mark.parametrize(("field", "value", "line", "loc", "rule"), [
    ("binding_name", ">", 7, "spec.providers[0].binding_name", "binding_name '>' has '>': "
     + TOKEN_RULE),
    ("binding_name", "*", 7, "spec.providers[0].binding_name", "binding_name '*' has '*': "
     + TOKEN_RULE),
    ("binding_name", "a.b", 7, "spec.providers[0].binding_name", TOKEN_RULE),
    ("binding_name", "a b", 7, "spec.providers[0].binding_name", TOKEN_RULE),
    ("binding_name", "", 7, "spec.providers[0].binding_name", "has 0 characters"),
    ("vendor_id", "../../x", 8, "spec.providers[0].vendor_id",
     "vendor_id '../../x' has '.': " + TOKEN_RULE),
    ("vendor_id", "a/b", 8, "spec.providers[0].vendor_id", TOKEN_RULE),
    ("id", "wascc.x:messaging", 6, "spec.providers[0].id", CAPABILITY_RULE),
    ("id", "wascc:>", 6, "spec.providers[0].id", "has '>'"),
    ("id", "a:b:c", 6, "spec.providers[0].id", "has 2 ':'"),
])
def test_hostile_names_in_a_deployment_are_refused_with_the_rule(
        field: str, value: str, line: int, loc: str, rule: str) -> None:
    provider = {"id": "wascc:messaging", "binding_name": "default", "vendor_id": "nats"}
    provider[field] = value
    text = ("kind: Deployment\nmetadata:\n  name: a\nspec:\n  providers:\n"
            + "".join(f"    {'-' if i == 0 else ' '} {k}: {v!r}\n"
                      for i, (k, v) in enumerate(provider.items())))
    err = only_error(text)
    assert err.startswith(f"m.yaml:{line}: {loc}: "), err
    assert rule in err


@pytest.mark.parametrize(("field", "value", "rule"), [
    ("binding", ">", TOKEN_RULE),
    ("vendor_id", "../x", TOKEN_RULE),
    ("capability_id", "a.b:c", CAPABILITY_RULE),
])
def test_hostile_names_in_a_binding_set_are_refused(field: str, value: str, rule: str) -> None:
    binding = {"capability_id": "wascc:messaging", "binding": "default", "actor": ACTOR,
               "vendor_id": "nats"}
    binding[field] = value
    text = ("kind: BindingSet\nmetadata: {name: b}\nspec:\n  bindings:\n"
            + "".join(f"    {'-' if i == 0 else ' '} {k}: {v!r}\n"
                      for i, (k, v) in enumerate(binding.items())))
    err = only_error(text)
    line = 5 + list(binding).index(field)
    assert err.startswith(f"m.yaml:{line}: spec.bindings[0].{field}: "), err
    assert rule in err


@pytest.mark.parametrize("name", ["Bad_Name", "a/b", "..", "-a", "a-", "x" * 64, "a.b"])
def test_metadata_names_are_dns_labels_so_they_are_safe_file_names(name: str) -> None:
    err = only_error(f"kind: Deployment\nmetadata:\n  name: {name!r}\nspec: {{}}\n")
    assert err.startswith("m.yaml:3: metadata.name: metadata.name "), err
    assert NAME_RULE in err


def test_a_long_bad_value_is_shortened_in_the_message() -> None:
    problem = binding_name_problem("x" * 10_000 + ">")
    assert problem is not None and len(problem) < 300 and "10001 characters" in problem


def test_every_existing_example_name_is_still_valid() -> None:
    for cap in ("wascc:messaging", "wascc:keyvalue", "iot:ledcontroller", "wascc:http",
                "acme:thermometer"):
        assert capability_id_problem(cap) is None
    for token in ("default", "backup", "nats", "wascc", "memory", "redis"):
        assert binding_name_problem(token) is None and vendor_id_problem(token) is None
    assert metadata_name_problem("amazing-deployment") is None


TOKEN_CHARS = string.ascii_letters + string.digits + "-_"
tokens = st.text(TOKEN_CHARS, min_size=1, max_size=64)
outside = st.characters(blacklist_characters=TOKEN_CHARS, blacklist_categories=("Cs",))


@settings(max_examples=200, deadline=None)
@given(tokens)
def test_every_safe_token_is_accepted(token: str) -> None:
    assert binding_name_problem(token) is None and vendor_id_problem(token) is None
    assert StartProviderCommand(capability_id="wascc:messaging", binding_name=token,
                         vendor_id=token).binding_name == token


@settings(max_examples=200, deadline=None)
@given(st.text(TOKEN_CHARS, max_size=20), outside, st.text(TOKEN_CHARS, max_size=20))
def test_a_token_with_any_other_character_is_refused_naming_it(
        head: str, bad: str, tail: str) -> None:
    value = head + bad + tail
    problem = binding_name_problem(value)
    assert problem is not None and problem.endswith(TOKEN_RULE)
    assert f"has {bad!r}" in problem


@settings(max_examples=100, deadline=None)
@given(st.text(string.ascii_lowercase + string.digits + "-_", min_size=1, max_size=20),
       st.text(string.ascii_lowercase + string.digits + "-_", min_size=1, max_size=20))
def test_every_namespace_name_capability_is_accepted(ns: str, name: str) -> None:
    assert capability_id_problem(f"{ns}:{name}") is None
    assert capability_id_problem(f"{ns}.{name}:x") is not None  # '.' splits NATS tokens


# ---------------------------------------------------------------- the wire

@pytest.mark.parametrize("model", [
    lambda n: StartProviderCommand(capability_id="wascc:messaging", binding_name=n,
                                   vendor_id="nats"),
    lambda n: StopProviderCommand(capability_id="wascc:messaging", binding_name=n),
    lambda n: PutBindingCommand(actor_id=ACTOR, capability_id="wascc:messaging", binding_name=n),
    lambda n: DeleteBindingCommand(actor_id=ACTOR, capability_id="wascc:messaging", binding_name=n),
    lambda n: AuctionRequest(kind="provider", capability_id="wascc:messaging",
                             binding_name=n),
])
def test_command_models_refuse_what_manifests_refuse(model: Any) -> None:
    with pytest.raises(ValidationError, match="use letters"):
        model(">")
    with pytest.raises(ValidationError, match="namespace:name"):
        StartProviderCommand(capability_id="wascc.x:m", vendor_id="nats")
    with pytest.raises(ValidationError, match="vendor_id"):
        StartProviderCommand(capability_id="wascc:m", vendor_id="../../x")
    with pytest.raises(ValidationError, match="actor_id"):
        StartActorCommand(actor_id="M.>")


@pytest.mark.parametrize(("op", "body", "fragment"), [
    (CommandOp.PROVIDER_START, {"capability_id": "wascc:messaging", "binding_name": ">",
                                "vendor_id": "nats"}, "binding_name '>' has '>'"),
    (CommandOp.PROVIDER_START, {"capability_id": "wascc:messaging", "vendor_id": "../../x"},
     "vendor_id '../../x'"),
    (CommandOp.BINDING_PUT, {"actor_id": ACTOR, "capability_id": "wascc:*"},
     "capability_id 'wascc:*'"),
    (CommandOp.ACTOR_START, {"actor_id": "*"}, "actor_id '*'"),
])
async def test_a_host_refuses_a_hostile_name_arriving_on_the_wire(
        op: CommandOp, body: dict[str, str], fragment: str) -> None:
    import json

    runtime = MemoryRuntime()
    handler = CommandHandler(HostState(host_id=random_host_id(), name="h", labels={}),
                             runtime, environ={})
    outcome = await handler.handle(op, json.dumps({"op": op.value, **body}).encode())
    assert not outcome.ack.accepted and outcome.events == []
    assert fragment in outcome.ack.reason, outcome.ack.reason
    assert handler.state.providers == {} and handler.state.actors == {}
