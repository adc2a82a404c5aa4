"""Manifest labels end to end: a manifest's ``metadata.labels`` and ``annotations`` go from
git through the assessment into the status branch, and ``get -o yaml|json`` and
``describe`` show them (issue 17: they were dropped, and describe said ``<none>``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import yaml

from cli.describe_cmd import header_lines
from cli.output import annotations_of, entity_document, labels_of
from lattice.manifest_loader import load_sources
from lattice.status import DeploymentStatus
from reconciler.assess import Statuses, assess
from reconciler.report import outcome, status_report
from tests.cliutil import gitops_repo, run, write_status
from tests.gitrepo import BINDINGS, DEPLOYMENT

NOW = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
ANNOTATED = DEPLOYMENT.replace(
    "  labels:\n", "  annotations:\n    owner: team-leds\n  labels:\n    tier: edge\n", 1)


def assessed(revision: str = "r1") -> Statuses:
    """The assessment of :data:`ANNOTATED` and the BindingSet on an empty lattice."""
    loaded = load_sources([("deployments/d.yaml", ANNOTATED), ("bindingsets/b.yaml", BINDINGS)])
    desired = loaded.desired(revision)
    assert desired is not None, loaded.errors
    return assess(desired, {}, unplaced={}, failures={}, now=NOW)


def test_the_assessment_carries_labels_and_annotations() -> None:
    deps, bss = assessed()
    dep = deps["amazing-deployment"]
    assert dep.labels == {"app": "amazesauce-the-sequel", "tier": "edge"}
    assert dep.annotations == {"owner": "team-leds"}
    assert "metadata" not in dep.spec  # the spec stays the spec
    bs = bss["amazing-bindings"]
    assert bs.labels == {"app": "amazesauce-the-sequel"}
    assert bs.annotations == {}


def test_document_and_describe_show_them() -> None:
    dep = assessed()[0]["amazing-deployment"]
    doc = entity_document(dep)
    assert doc["metadata"] == {"name": "amazing-deployment",
                               "labels": {"app": "amazesauce-the-sequel", "tier": "edge"},
                               "annotations": {"owner": "team-leds"}}
    assert "labels" not in doc["status"] and "annotations" not in doc["status"]
    lines = header_lines(dep, NOW)
    assert "Labels:       app=amazesauce-the-sequel,tier=edge" in lines
    assert "Annotations:  owner=team-leds" in lines


def test_no_labels_no_metadata_keys() -> None:
    dep = DeploymentStatus(name="plain")
    assert entity_document(dep)["metadata"] == {"name": "plain"}
    assert "Labels:       <none>" in header_lines(dep, NOW)


def test_a_status_written_before_the_field_still_shows_labels() -> None:
    """An older agent recorded a whole manifest as ``spec``: its metadata is read."""
    old = DeploymentStatus(name="d", spec={"kind": "Deployment",
                                           "metadata": {"name": "d", "labels": {"a": "1"}},
                                           "spec": {"actors": []}})
    assert labels_of(old) == {"a": "1"} and annotations_of(old) == {}
    assert entity_document(old)["spec"] == {"actors": []}


def test_through_the_status_branch_and_the_cli(tmp_path: Path, env: dict[str, str]) -> None:
    """Assessment -> report -> the agent's status writer -> `get -o yaml|json`, `describe`."""
    repo = gitops_repo(tmp_path)
    sha = repo.head.commit.hexsha
    deps, bss = assessed(sha)
    out = outcome(deps["amazing-deployment"].phase, deps, bss, [])
    write_status(repo, tmp_path / "agent",
                 status_report(out, branch="main", applied=sha, refused=None, deps=deps,
                               bss=bss, hosts={}, now=NOW))
    env["LATTICECTL_REPO"] = str(repo.working_tree_dir)
    got = run(env, "get", "deploy", "amazing-deployment", "-o", "yaml")
    assert got.exit_code == 0, got.output
    meta = yaml.safe_load(got.stdout)["metadata"]
    assert meta["labels"] == {"app": "amazesauce-the-sequel", "tier": "edge"}
    assert meta["annotations"] == {"owner": "team-leds"}
    listed = json.loads(run(env, "get", "bs", "-o", "json").stdout)
    assert listed["items"][0]["metadata"]["labels"] == {"app": "amazesauce-the-sequel"}
    described = run(env, "describe", "deploy", "amazing-deployment", "--events-for", "0")
    assert described.exit_code == 0, described.output
    assert "Labels:       app=amazesauce-the-sequel,tier=edge" in described.stdout
