"""kubectl's `get` habits through the real CLI against a real status branch: `get all`,
`get deploy,bs`, `get TYPE/NAME`, `-l`, `--sort-by`, `--no-headers`, `-o jsonpath=`,
`-o custom-columns=`, and their exit codes (0; 1 not found; 2 usage)."""

from __future__ import annotations

import json
from pathlib import Path

import git
import pytest
import yaml

from lattice.status import BindingSetStatus, Count, DeploymentStatus, StatusReport
from tests.cliutil import gitops_repo, report, run, write_status


def labelled(sha: str) -> StatusReport:
    """The Synced report, the deployment labelled app=web,tier=edge, a second deployment
    `api` (app=api, 0/2 actors) and the binding set labelled app=web."""
    base = report(sha)
    web = base.deployments["amazing-deployment"].model_copy(
        update={"labels": {"app": "web", "tier": "edge"}})
    api = DeploymentStatus(name="api", revision=sha, labels={"app": "api"},
                           actors=Count(ready=0, desired=2), created=web.created)
    bs = base.bindingsets["amazing-bindings"].model_copy(update={"labels": {"app": "web"}})
    assert isinstance(bs, BindingSetStatus)
    return base.model_copy(update={"deployments": {"amazing-deployment": web, "api": api},
                                   "bindingsets": {bs.name: bs}})


@pytest.fixture
def repo(tmp_path: Path, env: dict[str, str]) -> git.Repo:
    r = gitops_repo(tmp_path)
    write_status(r, tmp_path / "agent", labelled(r.head.commit.hexsha))
    env["LATTICECTL_REPO"] = str(r.working_tree_dir)
    return r


def names(text: str) -> list[str]:
    return [line.split()[0] for line in text.splitlines()[1:] if line.strip()]


def test_selector(repo: git.Repo, env: dict[str, str]) -> None:
    web = run(env, "get", "deploy", "-l", "app=web")
    assert web.exit_code == 0, web.output
    assert names(web.stdout) == ["amazing-deployment"]
    both = run(env, "get", "deploy", "--selector", "app in (web,api)")
    assert names(both.stdout) == ["amazing-deployment", "api"]
    assert names(run(env, "get", "deploy", "-l", "app,!tier").stdout) == ["api"]
    assert names(run(env, "get", "deploy", "-l", "tier notin (edge)").stdout) == ["api"]
    none = run(env, "get", "deploy", "-l", "app=nope")
    assert none.exit_code == 0 and none.stdout == ""
    assert none.stderr == "No deployments found.\n"
    bad = run(env, "get", "deploy", "-l", "app in web")
    assert bad.exit_code == 2 and "invalid requirement 'app in web'" in bad.stderr
    both_ways = run(env, "get", "deploy", "api", "-l", "app=api")
    assert both_ways.exit_code == 2 and "cannot be combined" in both_ways.stderr


def test_all_and_comma_lists(repo: git.Repo, env: dict[str, str]) -> None:
    every = run(env, "get", "all")  # no NATS configured: hosts from the status branch
    assert every.exit_code == 0, every.output
    blocks = every.stdout.split("\n\n")
    assert [b.split()[0] for b in blocks] == ["NAME", "NAME", "NAME"]
    assert names(blocks[0]) == ["deployment/amazing-deployment", "deployment/api"]
    assert names(blocks[1]) == ["bindingset/amazing-bindings"]
    assert names(blocks[2]) == ["host/pi", "host/vm1"]
    assert "hosts from the status branch" in every.stderr
    listed = run(env, "get", "deploy,bs", "-o", "name", "-l", "app=web")
    assert listed.stdout == "deployment/amazing-deployment\nbindingset/amazing-bindings\n"
    doc = json.loads(run(env, "get", "bs,deploy", "-o", "json").stdout)
    assert doc["kind"] == "List"
    assert [(i["kind"], i["metadata"]["name"]) for i in doc["items"]] == [
        ("BindingSet", "amazing-bindings"), ("Deployment", "amazing-deployment"),
        ("Deployment", "api")]
    unknown = run(env, "get", "deploy,pods")
    assert unknown.exit_code == 2 and "unknown resource type 'pods'" in unknown.stderr


def test_type_slash_name(repo: git.Repo, env: dict[str, str]) -> None:
    one = run(env, "get", "deployment/api", "-o", "yaml")
    assert one.exit_code == 0, one.output
    assert yaml.safe_load(one.stdout)["metadata"] == {"name": "api", "labels": {"app": "api"}}
    table = run(env, "get", "deploy/api", "bs/amazing-bindings", "host/pi")
    assert names(table.stdout.split("\n\n")[0]) == ["deployment/api"]
    assert "host/pi" in table.stdout
    missing = run(env, "get", "deploy/nope")
    assert missing.exit_code == 1 and "deployment 'nope' not found" in missing.stderr
    mixed = run(env, "get", "deploy/api", "bs")
    assert mixed.exit_code == 2


def test_sort_by_and_no_headers(repo: git.Repo, env: dict[str, str]) -> None:
    by_ready = run(env, "get", "deploy", "--sort-by", ".status.actors.ready", "--no-headers")
    assert by_ready.exit_code == 0, by_ready.output
    assert [line.split()[0] for line in by_ready.stdout.splitlines()] == [
        "api", "amazing-deployment"]
    by_name = run(env, "get", "deploy", "--sort-by={.metadata.name}", "-o", "name")
    assert by_name.stdout == "deployment/amazing-deployment\ndeployment/api\n"
    bad = run(env, "get", "deploy", "--sort-by", ".items[0")
    assert bad.exit_code == 2 and "never closed" in bad.stderr


def test_jsonpath(repo: git.Repo, env: dict[str, str]) -> None:
    out = run(env, "get", "deploy", "-o", "jsonpath={.items[*].metadata.name}")
    assert out.exit_code == 0, out.output
    assert out.stdout == "amazing-deployment api"  # as kubectl: no newline added
    ranged = run(env, "get", "deploy", "-o",
                 'jsonpath={range .items[*]}{.metadata.name}{"\\t"}{.status.phase}{"\\n"}{end}')
    assert ranged.stdout == "amazing-deployment\tSynced\napi\tProgressing\n"
    single = run(env, "get", "deployment", "api", "-o", "jsonpath={.metadata.labels.app}")
    assert single.stdout == "api"
    filtered = run(env, "get", "deploy", "-o",
                   'jsonpath={.items[?(@.status.phase=="Synced")].metadata.name}')
    assert filtered.stdout == "amazing-deployment"
    bad = run(env, "get", "deploy", "-o", "jsonpath={range .items[*]}")
    assert bad.exit_code == 2 and "{range} without {end}" in bad.stderr
    plain = run(env, "get", "deploy", "-o", "table")
    assert plain.exit_code == 2 and "jsonpath=TEMPLATE" in plain.stderr


def test_custom_columns(repo: git.Repo, env: dict[str, str]) -> None:
    out = run(env, "get", "deploy", "-o",
              "custom-columns=NAME:.metadata.name,READY:.status.actors.ready,"
              "TIER:.metadata.labels.tier")
    assert out.exit_code == 0, out.output
    assert [line.split() for line in out.stdout.splitlines()] == [
        ["NAME", "READY", "TIER"], ["amazing-deployment", "1", "edge"],
        ["api", "0", "<none>"]]
    hosts = run(env, "get", "hosts", "--no-headers", "-o", "custom-columns=N:.name,Z:.labels.zone")
    assert [line.split() for line in hosts.stdout.splitlines()] == [
        ["pi", "<none>"], ["vm1", "a"]]
    bad = run(env, "get", "deploy", "-o", "custom-columns=NAME")
    assert bad.exit_code == 2 and "expected HEADER:PATH" in bad.stderr
