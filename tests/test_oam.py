"""wadm's OAM Applications as input: conversion, refusals at file:line, the loader, the CLI.

Pure and fast except the git test (a real repository, no NATS). ``tests/oam/echo.yaml`` is
an Application in the shape of wadm's own examples (an echo actor with spreadscaler weights
80/20, daemonscalers, linkdefs), written for these tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from gitsync.source import GitSource
from lattice.manifest_loader import load_directory, load_sources, parse_file
from lattice.manifests import BindingSet, Deployment
from lattice.oam import IMAGE_ANNOTATION, is_application
from tests.cliutil import clean_env, run
from tests.gitrepo import ACTOR, DEPLOYMENT, OTHER_ACTOR, commit_files, init_repo

ECHO = Path(__file__).parent / "oam" / "echo.yaml"

EXPECTED_DEPLOYMENT = Deployment.model_validate({
    "metadata": {"name": "echo", "annotations": {
        "version": "v0.0.1", "description": "This is my app",
        IMAGE_ANNOTATION + "echo": "wasmcloud.azurecr.io/echo:0.3.8",
        IMAGE_ANNOTATION + "httpserver": "wasmcloud.azurecr.io/httpserver:0.17.0",
        IMAGE_ANNOTATION + "keyvalue": "wasmcloud.azurecr.io/kvredis:0.21.0"}},
    "spec": {
        "actors": [
            {"id": ACTOR, "replicas": 10, "spread": [
                {"name": "eastcoast", "weight": 80, "requirements": ["zone=us-east-1"]},
                {"name": "westcoast", "weight": 20, "requirements": ["zone=us-west-1"]}]},
            {"id": OTHER_ACTOR, "daemon": True, "affinity_rules": ["edge=true"]}],
        "providers": [
            {"id": "wasmcloud:httpserver", "binding_name": "default", "vendor_id": "wasmcloud",
             "daemon": True, "affinity_rules": ["role=gateway"]},
            {"id": "wasmcloud:keyvalue", "binding_name": "cache", "vendor_id": "redis",
             "affinity_rules": ["disk=ssd"]}]}})

EXPECTED_BINDINGS = BindingSet.model_validate({
    "metadata": {"name": "echo",
                 "annotations": {"version": "v0.0.1", "description": "This is my app"}},
    "spec": {"bindings": [
        {"capability_id": "wasmcloud:httpserver", "binding": "default", "actor": ACTOR,
         "vendor_id": "wasmcloud", "values": {"address": "0.0.0.0:8080"}},
        {"capability_id": "wasmcloud:keyvalue", "binding": "cache", "actor": ACTOR,
         "vendor_id": "redis", "values": {"URL": "${REDIS_URL:redis://127.0.0.1:6379}"}}]}})

# Components start on line 7 of every small Application below.
HEADER = """apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: shop
spec:
  components:
"""
WEB = f"""    - name: web
      type: actor
      properties:
        id: {ACTOR}
"""
HTTP = """    - name: http
      type: capability
      properties:
        contract: wasmcloud:httpserver
        vendor_id: wasmcloud
"""


def convert_text(text: str, path: str = "app.yaml") -> tuple[list[Deployment | BindingSet],
                                                             list[str]]:
    result = load_sources([(path, text)])
    return [m.manifest for m in result.manifests], result.error_lines()


def test_wadm_echo_example_converts_to_the_expected_native_manifests() -> None:
    manifests, errors = convert_text(ECHO.read_text(), "apps/echo.yaml")
    assert errors == []
    assert manifests == [EXPECTED_DEPLOYMENT, EXPECTED_BINDINGS]
    spread = EXPECTED_DEPLOYMENT.spec.actors[0].spread
    assert [(s.name, s.weight) for s in spread] == [("eastcoast", 80), ("westcoast", 20)]


def test_single_spread_is_affinity_rules_default_weight_and_no_scaler_keeps_defaults() -> None:
    text = HEADER + WEB + """      traits:
        - type: spreadscaler
          properties:
            replicas: 3
            spread:
              - name: lights
                requirements: {leds: "12", zone: a}
""" + HTTP
    (dep,), errors = convert_text(text)
    assert errors == []
    assert isinstance(dep, Deployment)
    actor = dep.spec.actors[0]
    assert (actor.replicas, actor.affinity_rules, actor.spread) == (3, ["leds=12", "zone=a"], [])
    provider = dep.spec.providers[0]
    assert (provider.daemon, provider.affinity_rules, provider.binding_name) == (
        False, [], "default")
    # no linkdef: no BindingSet; no labels or annotations: none invented
    assert dep.metadata.annotations == {} and "labels" not in dep.model_dump(exclude_unset=True)[
        "metadata"]


def test_spread_weight_defaults_to_wadms_100() -> None:
    text = HEADER + WEB + """      traits:
        - type: spreadscaler
          properties:
            replicas: 4
            spread:
              - {name: a, requirements: {zone: a}}
              - {name: b, weight: 300, requirements: {zone: b}}
"""
    (dep,), errors = convert_text(text)
    assert errors == [] and isinstance(dep, Deployment)
    assert [s.weight for s in dep.spec.actors[0].spread] == [100, 300]


REFUSALS = [
    # (components after the header, line, field, fragment of the reason)
    ("    - name: web\n      type: actor\n      properties:\n        image: reg/web:1\n",
     9, "spec.components[0].properties",
     "referenced only by its image 'reg/web:1'; vinculum identifies an actor by its public "
     "key: add properties.id"),
    (WEB + "    - name: http\n      type: capability\n      properties:\n"
     "        contract: wasmcloud:httpserver\n",
     13, "spec.components[1].properties", "no vendor_id"),
    (WEB + "      traits:\n        - type: autoscaler\n", 12,
     "spec.components[0].traits[0].type",
     "trait type 'autoscaler' has no equivalent in vinculum; known traits: spreadscaler"),
    (WEB + "      traits:\n        - type: link\n          properties: {target: http}\n" + HTTP,
     12, "spec.components[0].traits[0].type", "interface links between components"),
    (WEB + "      traits:\n        - type: spreadscaler\n          properties: {replicas: 2}\n"
     "        - type: daemonscaler\n", 14, "spec.components[0].traits[1].type",
     "a second scaler on component 'web' (traits[0] scales it already)"),
    (HTTP + "        config: {port: 8080}\n", 12, "spec.components[0].properties.config",
     "provider configuration has no equivalent"),
    (WEB + "      traits:\n        - type: linkdef\n          properties:\n"
     "            target: nosuch\n", 14, "spec.components[0].traits[0].properties.target",
     "no component named 'nosuch'"),
    (WEB + "      traits:\n        - type: linkdef\n          properties: {target: web}\n",
     13, "spec.components[0].traits[0].properties.target", "links between actors"),
    (HTTP + "      traits:\n        - type: linkdef\n          properties: {target: http}\n",
     13, "spec.components[0].traits[0].type", "put it on the actor"),
    (WEB + "      traits:\n        - type: daemonscaler\n          properties: {replicas: 2}\n",
     13, "spec.components[0].traits[0].properties.replicas", "per host has no equivalent"),
    (WEB + "      traits:\n        - type: daemonscaler\n          properties:\n"
     "            spread: [{name: a, requirements: {x: '1'}}, {name: b}]\n",
     14, "spec.components[0].traits[0].properties.spread", "any of several spreads"),
    (HTTP + "      traits:\n        - type: spreadscaler\n          properties: {instances: 3}\n",
     14, "spec.components[0].traits[0].properties.instances",
     "has no equivalent for a capability"),
    (HTTP + "      traits:\n        - type: spreadscaler\n          properties:\n"
     "            spread: [{name: a}, {name: b}]\n",
     15, "spec.components[0].traits[0].properties.spread", "several spreads"),
    (WEB + "      traits:\n        - type: spreadscaler\n"
     "          properties: {replicas: 2, instances: 2}\n",
     13, "spec.components[0].traits[0].properties.instances", "the same field"),
    ("    - name: db\n      type: database\n", 8, "spec.components[0].type",
     "component type 'database' has no equivalent"),
    (HTTP.replace("contract:", "contrct:"), 10, "spec.components[0].properties.contrct",
     "unknown field 'contrct' (did you mean 'contract'?)"),
    (WEB + WEB.replace(f"id: {ACTOR}", f"id: {OTHER_ACTOR}"), 11, "spec.components[1].name",
     "component 'web' is defined twice"),
    (WEB + "      scopes: []\n", 11, "spec.components[0].scopes", "unknown field 'scopes'"),
    # errors of the native models, at the line of the OAM field they came from
    (WEB.replace(ACTOR, ACTOR[:-1] + "A"), 10, "spec.components[0].properties.id",
     "fails its checksum (a typo?)"),
    (WEB + "      traits:\n        - type: spreadscaler\n          properties:\n"
     "            spread:\n              - {name: a, requirements: {zone: a}}\n"
     "              - {name: Bad_Name, requirements: {zone: b}}\n",
     16, "spec.components[0].traits[0].properties.spread[1].name",
     "(as spec.actors[0].spread[1].name of the converted Deployment 'shop')"),
    (HTTP.replace("wasmcloud:httpserver", "wasmcloud.x:http"), 10,
     "spec.components[0].properties.contract", "has '.'"),
    (WEB + "      traits:\n        - type: linkdef\n          properties:\n"
     "            target: http\n            values: {a: [1, 2]}\n" + HTTP,
     15, "spec.components[0].traits[0].properties.values.a", "BindingSet 'shop'"),
]


@pytest.mark.parametrize(("components", "line", "field", "fragment"), REFUSALS)
def test_what_has_no_equivalent_is_refused_at_file_line_and_field(
        components: str, line: int, field: str, fragment: str) -> None:
    manifests, errors = convert_text(HEADER + components, "apps/shop.yaml")
    assert manifests == []
    prefix = f"apps/shop.yaml:{line}: {field}: "
    assert any(e.startswith(prefix) and fragment in e for e in errors), errors


@pytest.mark.parametrize(("text", "line", "field", "fragment"), [
    (HEADER.replace("v1beta1", "v1alpha1") + WEB, 1, "apiVersion",
     "must be core.oam.dev/v1beta1"),
    (HEADER.replace("Application", "Component") + WEB, 2, "kind", "must be kind Application"),
    ("apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata: {name: x}\nspec: {}\n",
     4, "spec", "needs spec.components"),
    (HEADER.replace("spec:", "status: {}\nspec:") + WEB, 5, "status", "unknown field 'status'"),
    (HEADER.replace("name: shop", "name: Shop_1") + WEB, 4, "metadata.name",
     "'Shop_1' has 'S': use lower-case letters"),
    (HEADER.replace("name: shop", "name: shop\n  annotations: {x: [1]}") + WEB, 5,
     "metadata.annotations.x", "expected text, got list"),
])
def test_document_level_refusals(text: str, line: int, field: str, fragment: str) -> None:
    manifests, errors = convert_text(text)
    assert manifests == []
    assert any(e.startswith(f"app.yaml:{line}: {field}: ") and fragment in e
               for e in errors), errors


def test_every_refusal_of_a_document_is_reported_at_once() -> None:
    text = HEADER + """    - name: web
      type: actor
      properties: {image: reg/web:1}
      traits:
        - type: autoscaler
    - name: http
      type: capability
      properties: {contract: "wasmcloud:httpserver", config: [x]}
"""
    _, errors = convert_text(text)
    assert [e.split(": ")[0] for e in errors] == ["app.yaml:9", "app.yaml:11", "app.yaml:14",
                                                  "app.yaml:14"]


def test_a_misspelt_kind_is_told_about_application() -> None:
    _, errors = convert_text("kind: Applicaton\nmetadata: {name: x}\n")
    assert errors == ["app.yaml:1: kind: unknown kind 'Applicaton'; expected one of "
                      "Deployment, BindingSet or wadm's Application (apiVersion "
                      "core.oam.dev/v1beta1) (did you mean 'Application'?)"]


def test_native_documents_are_not_mistaken_for_oam() -> None:
    assert not is_application(yaml.safe_load(DEPLOYMENT))
    assert is_application({"kind": "Application"})
    assert is_application({"apiVersion": "core.oam.dev/v1alpha2", "kind": "Component"})


def test_hostile_limits_apply_to_oam_files() -> None:
    laughs = HEADER + "    - &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"    - &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(5))
    _, errors = convert_text(laughs)
    assert len(errors) == 1 and "YAML aliases would repeat more than" in errors[0]
    _, problems, _ = parse_file("big.yaml", HEADER + "#" * (1 << 20))
    assert len(problems) == 1
    assert str(problems[0]).startswith("big.yaml:1: (document): file is ")


def test_a_directory_with_an_application_loads_into_desired_state(tmp_path: Path) -> None:
    (tmp_path / "apps").mkdir()
    (tmp_path / "apps" / "echo.yaml").write_text(ECHO.read_text())
    (tmp_path / "deployments").mkdir()
    (tmp_path / "deployments" / "amazing.yaml").write_text(DEPLOYMENT)
    desired = load_directory(tmp_path).desired("r1")
    assert desired is not None
    assert desired.deployments["echo"] == EXPECTED_DEPLOYMENT
    assert desired.bindingsets["echo"] == EXPECTED_BINDINGS
    assert "amazing-deployment" in desired.deployments
    assert desired.sources["Deployment/echo"].path == "apps/echo.yaml"
    assert desired.sources["BindingSet/echo"].line == 4  # the document, after the comments


def test_a_commit_with_an_application_is_the_agents_desired_state(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "r")
    sha = commit_files(repo, {"apps/echo.yaml": ECHO.read_text()})
    ev = GitSource.open(str(tmp_path / "r"), data_dir=tmp_path / "d").evaluate(sha)
    assert ev.errors == [] and ev.desired is not None
    assert ev.desired.deployments == {"echo": EXPECTED_DEPLOYMENT}
    assert ev.desired.bindingsets == {"echo": EXPECTED_BINDINGS}
    # the same name as a native Deployment elsewhere: both places named
    bad = commit_files(repo, {"deployments/echo.yaml": DEPLOYMENT.replace(
        "amazing-deployment", "echo")})
    ev = GitSource.open(str(tmp_path / "r"), data_dir=tmp_path / "d").evaluate(bad)
    assert ev.desired is None
    assert any("Deployment 'echo' is defined twice" in e and "apps/echo.yaml" in e
               for e in ev.errors), ev.errors


def test_latticectl_convert_output_reloads_as_the_same_native_manifests(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    out = run(env, "convert", "-f", str(ECHO))
    assert out.exit_code == 0, out.output
    result = load_sources([("converted.yaml", out.stdout)])
    assert result.error_lines() == []
    assert [m.manifest for m in result.manifests] == [EXPECTED_DEPLOYMENT, EXPECTED_BINDINGS]
    assert "core.oam.dev" not in out.stdout and out.stdout.count("\n---\n") == 1
    as_json = run(env, "convert", "-f", "-", "-o", "json", stdin=ECHO.read_text())
    assert as_json.exit_code == 0, as_json.output
    listed = json.loads(as_json.stdout)
    assert listed["kind"] == "List"
    assert [Deployment.model_validate(listed["items"][0]),
            BindingSet.model_validate(listed["items"][1])] == [EXPECTED_DEPLOYMENT,
                                                               EXPECTED_BINDINGS]


def test_latticectl_convert_refusals_name_file_line_and_exit_2(tmp_path: Path) -> None:
    app = tmp_path / "app.yaml"
    app.write_text(HEADER + "    - name: web\n      type: actor\n      properties:\n"
                   "        image: reg/web:1\n")
    out = run(clean_env(tmp_path), "convert", "-f", str(app))
    assert out.exit_code == 2
    assert f"{app}:9: spec.components[0].properties: actor 'web' is referenced only by its " \
           "image" in out.output
    assert run(clean_env(tmp_path), "convert").exit_code == 2
