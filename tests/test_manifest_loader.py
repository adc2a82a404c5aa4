"""Manifest loading: YAML to models, and errors that name file, line and field.

Pure and fast: no git, no NATS. Table tests for the error cases, hypothesis for the round
trip and for "the line in the error is the line of the field".
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from lattice.ids import encode_module_key
from lattice.manifest_loader import (
    MAX_ERRORS_PER_FILE,
    ManifestIssue,
    canonical_path,
    cap_errors,
    format_loc,
    is_manifest_file,
    load_directory,
    load_sources,
    normalize_base,
    parse_file,
    to_yaml,
)
from lattice.manifests import BindingSet, Deployment
from tests.gitrepo import ACTOR, BINDINGS, DEPLOYMENT, ELIDED_ACTOR, OTHER_ACTOR, deployment


def errors_of(text: str, path: str = "m.yaml") -> list[str]:
    return load_sources([(path, text)]).error_lines()


def test_feature_request_documents_parse_to_the_expected_model() -> None:
    result = load_sources([("deployments/d.yaml", DEPLOYMENT), ("b.yaml", BINDINGS)])
    assert result.ok, result.error_lines()
    desired = result.desired("abc123")
    assert desired is not None and desired.revision == "abc123"
    dep = desired.deployments["amazing-deployment"]
    assert dep.apiVersion == "vinculum.io/v1"
    assert dep.metadata.labels == {"app": "amazesauce-the-sequel"}
    assert [(a.id, a.replicas, a.affinity_rules) for a in dep.spec.actors] == [(ACTOR, 1, [])]
    assert [(p.id, p.binding_name, p.vendor_id, p.affinity_rules)
            for p in dep.spec.providers] == [
        ("wascc:messaging", "default", "nats", []),
        ("iot:ledcontroller", "default", "wascc", ["leds=12"]),
    ]
    [binding] = desired.bindingsets["amazing-bindings"].spec.bindings
    assert (binding.capability_id, binding.binding, binding.actor, binding.vendor_id) == (
        "wascc:messaging", "default", ACTOR, "nats")
    assert binding.values == {"SUBSCRIPTION": "foo.bar.baz", "VALUE4": "${ENV_VAL4:FOURTYTWO}"}
    assert desired.sources["Deployment/amazing-deployment"].path == "deployments/d.yaml"
    assert desired.sources["BindingSet/amazing-bindings"].line == 1


def test_elided_actor_id_names_file_line_field_and_what_valid_looks_like() -> None:
    [err] = errors_of(DEPLOYMENT.replace(ACTOR, ELIDED_ACTOR), "deployments/amazing.yaml")
    assert err.startswith("deployments/amazing.yaml:8: spec.actors[0].id: ")
    assert "56" in err and "starting with 'M'" in err and ACTOR in err


@pytest.mark.parametrize(("text", "line", "field", "fragment"), [
    ("kind: Deployment\nmetadata: {name: a}\nspec:\n  actors:\n    - id: " + ACTOR
     + "\n      replica: 2\n", 6, "spec.actors[0].replica", "did you mean 'replicas'"),
    ("kind: Deploymnt\nmetadata: {name: a}\n", 1, "kind", "did you mean 'Deployment'"),
    ("metadata: {name: a}\nspec: {}\n", 1, "kind", "missing"),
    ("kind: Deployment\nspec: {}\n", 1, "metadata", "required"),
    ("kind: Deployment\nmetadata: {name: Bad_Name}\nspec: {}\n", 2, "metadata.name",
     "use lower-case letters, digits and '-'"),
    ("kind: Deployment\nmetadata:\n  name: a\nspec:\n  providers:\n    - id: wascc\n"
     "      vendor_id: nats\n", 6, "spec.providers[0].id", "namespace:name"),
    ("kind: Deployment\nmetadata:\n  name: a\nspec:\n  providers:\n    - id: a:b\n",
     6, "spec.providers[0].vendor_id", "required"),
    ("kind: Deployment\nmetadata:\n  name: a\nspec:\n  actors:\n    - id: " + ACTOR
     + "\n      affinity_rules: ['=b']\n", 7, "spec.actors[0].affinity_rules", "'=b'"),
    ("kind: Deployment\nmetadata:\n  name: a\nspec:\n  actors:\n    - id: " + ACTOR
     + "\n      replicas: -1\n", 7, "spec.actors[0].replicas", "greater than or equal"),
    ("apiVersion: v2\nkind: Deployment\nmetadata: {name: a}\nspec: {}\n", 1, "apiVersion",
     "vinculum.io/v1"),
    ("kind: BindingSet\nmetadata: {name: b}\nspec:\n  bindings:\n    - capability_id: a:b\n"
     "      actor: " + OTHER_ACTOR[:-1] + "A\n", 6, "spec.bindings[0].actor", "checksum"),
    ("kind: BindingSet\nmetadata: {name: b}\nspec:\n  bindings:\n    - capability_id: a:b\n"
     "      actor: " + ACTOR + "\n      values: {A: [1, 2]}\n", 7, "spec.bindings[0].values.A",
     "string"),
    ("kind: Deployment\nmetadata:\n  name: a\n  name: b\nspec: {}\n", 4, "metadata.name",
     "duplicate key"),
    ("kind: Deployment\nmetadata: {name: a}\nspec:\n  actors: [\n", 4, "(document)",
     "not valid YAML"),
    ("- just\n- a list\n", 1, "(document)", "expected a mapping"),
    ("kind: Deployment\nmetadata: {name: a}\nspec:\n  actors:\n    - id: " + ACTOR
     + "\n    - id: " + ACTOR + "\n", 3, "spec", "listed twice"),
])
def test_errors_name_the_line_and_field(text: str, line: int, field: str, fragment: str) -> None:
    errs = errors_of(text)
    assert errs, "expected an error"
    assert errs[0].startswith(f"m.yaml:{line}: {field}: "), errs
    assert fragment in errs[0], errs


def test_many_documents_per_file_and_many_files() -> None:
    text = "---\n" + deployment("one") + "---\n# nothing here\n---\n" + deployment("two")
    result = load_sources([("a.yaml", text), ("b/c.yml", BINDINGS)])
    assert result.ok, result.error_lines()
    assert [m.ref for m in result.manifests] == [
        "Deployment/one", "Deployment/two", "BindingSet/amazing-bindings"]
    assert result.documents == {"a.yaml": 2, "b/c.yml": 1}
    assert [m.line for m in result.manifests][:2] == [2, 11]


def test_an_invalid_document_does_not_hide_the_valid_ones_but_fails_the_state() -> None:
    text = deployment("one") + "---\n" + deployment("two", ELIDED_ACTOR)
    result = load_sources([("a.yaml", text)])
    assert [m.name for m in result.manifests] == ["one"]
    assert result.desired() is None
    assert result.error_lines()[0].startswith("a.yaml:13: spec.actors[0].id:")


def test_same_kind_and_name_in_two_files_names_both() -> None:
    result = load_sources([("x/b.yaml", deployment("dup")), ("a.yaml", deployment("dup"))])
    [err] = result.error_lines()
    assert err.startswith("x/b.yaml:3: metadata.name: ")
    assert "a.yaml:3" in err and "twice" in err


def test_same_name_different_kinds_is_fine() -> None:
    bs = "kind: BindingSet\nmetadata: {name: dup}\nspec: {}\n"
    assert load_sources([("a.yaml", deployment("dup")), ("b.yaml", bs)]).ok


def test_values_stay_templates_and_scalars_become_strings() -> None:
    text = ("kind: BindingSet\nmetadata: {name: b}\nspec:\n  bindings:\n"
            "    - capability_id: wascc:http\n      actor: " + ACTOR + "\n      values:\n"
            "        PORT: 8080\n        TLS: false\n        RATIO: 0.5\n"
            "        SECRET: ${API_TOKEN}\n")
    desired = load_sources([("b.yaml", text)]).desired()
    assert desired is not None
    assert desired.bindingsets["b"].spec.bindings[0].values == {
        "PORT": "8080", "TLS": "false", "RATIO": "0.5", "SECRET": "${API_TOKEN}"}


def test_bytes_that_are_not_utf8_or_too_big() -> None:
    assert "not UTF-8" in load_sources([("a.yaml", b"\xff\xfe\x00kind")]).error_lines()[0]
    big = b"# " + b"x" * (1 << 20)
    assert load_sources([("a.yaml", big)]).error_lines() == [
        "a.yaml:1: (document): file is 1048578 bytes, over the 1048576-byte limit"]


def test_empty_input_is_an_empty_valid_state() -> None:
    desired = load_sources([("a.yaml", ""), ("b.yaml", "---\n---\n")]).desired()
    assert desired is not None and desired.empty


def test_paths_default_whole_tree_yaml_and_yml_not_hidden(tmp_path: Path) -> None:
    files = {"a.yaml": deployment("a"), "sub/b.yml": deployment("b"),
             "sub/readme.md": "not yaml", ".github/ci.yaml": "on: push\n",
             "other/c.yaml": deployment("c")}
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    assert sorted(m.name for m in load_directory(tmp_path).manifests) == ["a", "b", "c"]
    only = load_directory(tmp_path, path="sub")
    assert [(m.name, m.path) for m in only.manifests] == [("b", "sub/b.yml")]


@pytest.mark.parametrize(("rel", "base", "expected"), [
    ("a.yaml", "", True), ("a.yml", "", True), ("a.json", "", False),
    ("x/.hidden/a.yaml", "", False), ("apps/a.yaml", "apps", True),
    ("apps2/a.yaml", "apps", False), ("apps/x/a.yaml", "./apps/", True),
])
def test_is_manifest_file(rel: str, base: str, expected: bool) -> None:
    assert is_manifest_file(rel, base) is expected


def test_normalize_base_and_canonical_paths() -> None:
    assert normalize_base("./a//b/") == "a/b"
    assert normalize_base("") == normalize_base(".") == ""
    with pytest.raises(ValueError):
        normalize_base("../elsewhere")
    assert canonical_path("Deployment", "x") == "deployments/x.yaml"
    assert canonical_path("BindingSet", "y", "apps") == "apps/bindingsets/y.yaml"


def test_format_loc() -> None:
    assert format_loc(("spec", "actors", 0, "id")) == "spec.actors[0].id"
    assert format_loc(()) == ""


def test_to_yaml_is_canonical_and_round_trips() -> None:
    [m] = load_sources([("d.yaml", DEPLOYMENT)]).manifests
    text = to_yaml(m.manifest)
    assert text.startswith("apiVersion: vinculum.io/v1\nkind: Deployment\n")
    assert "replicas" not in text  # defaults the author left out stay out
    [again] = load_sources([("d.yaml", text)]).manifests
    assert again.manifest == m.manifest and to_yaml(again.manifest) == text


def test_parse_file_counts_documents() -> None:
    found, errors, count = parse_file("a.yaml", deployment("a") + "---\nkind: Nope\n")
    assert (len(found), len(errors), count) == (1, 1, 2)


# ---------------------------------------------------------------- properties

names = st.from_regex(r"^[a-z][a-z0-9-]{0,20}[a-z0-9]$", fullmatch=True)
actor_ids = st.binary(min_size=32, max_size=32).map(encode_module_key)
labels = st.dictionaries(st.from_regex(r"^[a-z]{1,8}$", fullmatch=True),
                         st.from_regex(r"^[a-z0-9]{0,8}$", fullmatch=True), max_size=3)


@st.composite
def deployments(draw: st.DrawFn) -> Deployment:
    actors = draw(st.lists(actor_ids, max_size=4, unique=True))
    return Deployment.model_validate({
        "kind": "Deployment",
        "metadata": {"name": draw(names), "labels": draw(labels)},
        "spec": {"actors": [{"id": a, "replicas": draw(st.integers(0, 5)),
                             "affinity_rules": [f"{k}={v}" for k, v in draw(labels).items()]}
                            for a in actors]},
    })


@settings(max_examples=60, deadline=None)
@given(deployments())
def test_round_trip_through_yaml(dep: Deployment) -> None:
    [m] = load_sources([("d.yaml", to_yaml(dep))]).manifests
    assert m.manifest == dep


@settings(max_examples=60, deadline=None)
@given(st.lists(actor_ids, min_size=1, max_size=6, unique=True), st.data())
def test_the_error_line_is_the_line_of_the_bad_field(actors: list[str],
                                                     data: st.DataObject) -> None:
    bad = data.draw(st.integers(0, len(actors) - 1))
    doc = {"kind": "Deployment", "metadata": {"name": "p"},
           "spec": {"actors": [{"id": a} for a in actors]}}
    doc["spec"]["actors"][bad]["replicass"] = 1  # type: ignore[index]
    text = yaml.safe_dump(doc, sort_keys=False)
    [err] = errors_of(text)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "replicass" in ln)
    assert err.startswith(f"m.yaml:{line}: spec.actors[{bad}].replicass: unknown field")


@settings(max_examples=40, deadline=None)
@given(st.lists(names, min_size=2, max_size=6))
def test_duplicates_are_found_whatever_the_file_order(file_names: list[str]) -> None:
    sources = [(f"{n}-{i}.yaml", deployment("same")) for i, n in enumerate(file_names)]
    result = load_sources(sources)
    assert len(result.manifests) == 1
    assert len(result.errors) == len(file_names) - 1
    assert all("defined twice" in e for e in result.error_lines())


def test_bindingset_model_is_used_for_binding_sets() -> None:
    """`kind: BindingSet` is read with the BindingSet model: its fields are taken (and
    defaulted), a Deployment's are refused where they stand, and the other way round."""
    result = load_sources([("b.yaml", BINDINGS)])
    assert result.ok, result.error_lines()
    [m] = result.manifests
    assert (m.kind, m.name, m.path, m.line) == ("BindingSet", "amazing-bindings", "b.yaml", 1)
    bs = m.manifest
    assert isinstance(bs, BindingSet)
    assert bs.metadata.labels == {"app": "amazesauce-the-sequel"}
    [b] = bs.spec.bindings  # `bindings`: a field only a BindingSet's spec has
    assert (b.capability_id, b.binding, b.actor, b.vendor_id) == (
        "wascc:messaging", "default", ACTOR, "nats")
    assert b.values == {"SUBSCRIPTION": "foo.bar.baz", "VALUE4": "${ENV_VAL4:FOURTYTWO}"}
    desired = result.desired("abc123")
    assert desired is not None and set(desired.bindingsets) == {"amazing-bindings"}
    assert desired.deployments == {}
    # a Deployment's `actors` in a BindingSet's spec: refused, with the file and line
    assert errors_of(BINDINGS.replace("spec:\n", "spec:\n  actors: []\n"), "b.yaml") == [
        "b.yaml:7: spec.actors: unknown field 'actors'; known fields: bindings"]
    # and `bindings` in a Deployment's spec likewise
    text = DEPLOYMENT.replace("spec:\n", "spec:\n  bindings: []\n")
    line = text.splitlines().index("  bindings: []") + 1
    assert errors_of(text, "d.yaml") == [
        f"d.yaml:{line}: spec.bindings: unknown field 'bindings'; known fields: actors, "
        "providers, rebalance"]


def test_errors_are_capped_per_file_each_with_file_line_and_field() -> None:
    """A file with 30 bad actor ids reports the first MAX_ERRORS_PER_FILE, each at its
    own line and field, then one line counting the rest; another file's errors stand."""
    bad = "\n".join(f"    - id: bad{i}" for i in range(30))
    text = f"apiVersion: vinculum.io/v1\nkind: Deployment\nmetadata:\n  name: d\nspec:\n" \
           f"  actors:\n{bad}\n"
    result = load_sources([("many.yaml", text), ("one.yaml", "kind: Nope\n")])
    many = [e for e in result.errors if e.path == "many.yaml"]
    assert len(many) == MAX_ERRORS_PER_FILE + 1
    for i, issue in enumerate(many[:-1]):
        assert (issue.line, issue.field) == (7 + i, f"spec.actors[{i}].id")
    summary = many[-1]
    assert summary.line == 7 + MAX_ERRORS_PER_FILE  # the first left out
    assert str(summary) == (f"many.yaml:{7 + MAX_ERRORS_PER_FILE}: (document): ... and "
                            f"{30 - MAX_ERRORS_PER_FILE} more errors in this file (the first "
                            f"{MAX_ERRORS_PER_FILE} are shown)")
    assert [e.field for e in result.errors if e.path == "one.yaml"] == ["kind"]


@given(st.lists(st.sampled_from(["a.yaml", "b.yaml", "c.yaml"]), max_size=60),
       st.integers(min_value=1, max_value=5))
@settings(max_examples=200, deadline=None)
def test_cap_errors_keeps_each_files_first_errors_in_order(paths: list[str], limit: int
                                                           ) -> None:
    issues = [ManifestIssue(p, i + 1, "f", "m") for i, p in enumerate(paths)]
    capped = cap_errors(issues, limit)
    for path in set(paths):
        mine = [e for e in issues if e.path == path]
        got = [e for e in capped if e.path == path]
        assert got[:limit] == mine[:limit]
        if len(mine) > limit:
            assert len(got) == limit + 1
            assert got[-1].line == mine[limit].line
            assert f"and {len(mine) - limit} more error" in got[-1].message
        else:
            assert len(got) == len(mine)
    # files' errors keep their relative order
    assert [e for e in capped if "more error" not in e.message] == [
        e for e in issues if e in capped]
