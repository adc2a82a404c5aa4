"""latticectl get deployments / bindingsets: the status branch as tables and documents,
remote fetching, stale-HEAD warnings, -w, and the one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import git
import pytest
import yaml

from lattice.status import Phase
from tests.cliutil import (
    gitops_repo,
    interrupt,
    latticectl,
    note,
    report,
    run,
    write_status,
)
from tests.gitrepo import clone, commit_files, deployment, file_url, make_remote, tip
from tests.helpers import eventually_sync


@pytest.fixture
def synced(tmp_path: Path, env: dict[str, str]) -> tuple[git.Repo, str]:
    """A repository whose HEAD the agent evaluated and found Synced; env points at it."""
    repo = gitops_repo(tmp_path)
    sha = repo.head.commit.hexsha
    write_status(repo, tmp_path / "agent", report(sha), {sha: note(sha)})
    env["LATTICECTL_REPO"] = str(repo.working_tree_dir)
    return repo, sha


def rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.strip()]


def test_table_of_deployments(synced: tuple[git.Repo, str], env: dict[str, str]) -> None:
    _, sha = synced
    for alias in ("deployments", "deployment", "deploy"):
        result = run(env, "get", alias)
        assert result.exit_code == 0, result.output
        assert rows(result.stdout) == [
            ["NAME", "REVISION", "ACTORS", "PROVIDERS", "STATUS", "AGE"],
            ["amazing-deployment", sha[:12], "1/1", "2/2", "Synced", "5m"],
        ]
        assert result.stderr == ""


def test_table_of_bindingsets(synced: tuple[git.Repo, str], env: dict[str, str]) -> None:
    _, sha = synced
    for alias in ("bindingsets", "bindingset", "bindings", "bs"):
        result = run(env, "get", alias)
        assert result.exit_code == 0, result.output
        assert rows(result.stdout) == [
            ["NAME", "REVISION", "BINDINGS", "STATUS", "AGE"],
            ["amazing-bindings", sha[:12], "1/1", "Synced", "5m"],
        ]


def test_wide_adds_hosts_and_message(synced: tuple[git.Repo, str], env: dict[str, str]) -> None:
    result = run(env, "get", "deployments", "-o", "wide")
    assert result.exit_code == 0, result.output
    header, row = result.stdout.splitlines()
    assert header.split() == ["NAME", "REVISION", "ACTORS", "PROVIDERS", "STATUS", "AGE",
                              "HOSTS", "MESSAGE"]
    assert row.split()[6] == "pi,vm1"
    assert row.endswith("observed matches desired")


def test_yaml_of_one_and_json_of_many(synced: tuple[git.Repo, str], env: dict[str, str]) -> None:
    _, sha = synced
    one = run(env, "get", "deployment", "amazing-deployment", "-o", "yaml")
    assert one.exit_code == 0, one.output
    doc = yaml.safe_load(one.stdout)
    assert doc["kind"] == "Deployment" and doc["metadata"]["name"] == "amazing-deployment"
    assert doc["spec"]["providers"][1]["affinity_rules"] == ["leds=12"]
    assert doc["status"]["revision"] == sha
    assert doc["status"]["actors"] == {"ready": 1, "desired": 1}
    assert doc["status"]["providers"] == {"ready": 2, "desired": 2}
    assert {p["host_name"] for p in doc["status"]["placements"]} == {"pi", "vm1"}
    many = run(env, "get", "bs", "-o", "json")
    assert many.exit_code == 0, many.output
    listed = json.loads(many.stdout)
    assert listed["kind"] == "List"
    assert [i["metadata"]["name"] for i in listed["items"]] == ["amazing-bindings"]
    assert listed["items"][0]["status"]["bindings"] == {"ready": 1, "desired": 1}
    names = run(env, "get", "deploy", "-o", "name")
    assert names.stdout == "deployment/amazing-deployment\n"


def test_unknown_name_is_one_line(synced: tuple[git.Repo, str], env: dict[str, str]) -> None:
    result = run(env, "get", "deployment", "nope")
    assert result.exit_code == 1  # kubectl: NotFound exits 1, a usage error 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert "deployment 'nope' not found" in line and "amazing-deployment" in line


def test_no_status_branch_yet(tmp_path: Path, env: dict[str, str]) -> None:
    repo = gitops_repo(tmp_path)
    result = run(env, "--repo", str(repo.working_tree_dir), "get", "deployments")
    assert result.exit_code == 2
    assert "no status yet: is the agent running on this repository?" in result.stderr
    assert "Traceback" not in result.output


def test_missing_repository(tmp_path: Path, env: dict[str, str]) -> None:
    gone = run(env, "--repo", str(tmp_path / "nowhere"), "get", "deployments")
    assert gone.exit_code == 2
    assert "no such directory" in gone.stderr and "Traceback" not in gone.output
    (tmp_path / "plain").mkdir()
    plain = run(env, "--repo", str(tmp_path / "plain"), "get", "deployments")
    assert plain.exit_code == 2
    assert "is not in a git repository" in plain.stderr


def test_a_newer_head_is_called_not_yet_evaluated(synced: tuple[git.Repo, str],
                                                  env: dict[str, str], tmp_path: Path) -> None:
    repo, sha = synced
    new = commit_files(repo, {"deployments/other.yaml": deployment("other")}, "more")
    result = run(env, "get", "deployments")
    assert result.exit_code == 0
    assert "amazing-deployment" in result.stdout
    assert (f"status is for {sha[:12]}, branch HEAD is {new[:12]}: not yet evaluated"
            in result.stderr)
    # once the agent noted the new HEAD, the status is not called stale any more
    write_status(repo, tmp_path / "agent", None, {new: note(new, Phase.PROGRESSING)})
    again = run(env, "get", "deployments")
    assert "not yet evaluated" not in again.stderr


def test_a_clone_fetches_status_from_its_remote(tmp_path: Path, env: dict[str, str]) -> None:
    bare, work = make_remote(tmp_path)
    sha = work.head.commit.hexsha
    write_status(bare, tmp_path / "agent", report(sha), {sha: note(sha)})  # the agent's side
    result = run(env, "--repo", str(work.working_tree_dir), "get", "deployments")
    assert result.exit_code == 0, result.output
    assert rows(result.stdout)[1][:5] == ["amazing-deployment", sha[:12], "1/1", "2/2",
                                          "Synced"]
    # fetched into tracking refs: the clone's own lattice/status and notes stay untouched
    assert tip(work, "refs/heads/lattice/status") is None
    assert tip(work, "refs/remotes/origin/lattice/status") is not None
    # and by URL, through a temporary clone
    by_url = run(env, "--repo", file_url(bare), "get", "bs")
    assert by_url.exit_code == 0, by_url.output
    assert "amazing-bindings" in by_url.stdout


def test_an_unreachable_remote_is_a_warning(tmp_path: Path, env: dict[str, str]) -> None:
    bare, work = make_remote(tmp_path)
    sha = work.head.commit.hexsha
    write_status(bare, tmp_path / "agent", report(sha))
    other = clone(bare, tmp_path / "other")
    assert run(env, "--repo", str(other.working_tree_dir), "get", "deploy").exit_code == 0
    other.git.remote("set-url", "origin", str(tmp_path / "gone.git"))
    result = run(env, "--repo", str(other.working_tree_dir), "get", "deploy")
    assert result.exit_code == 0, result.output
    assert "warning: could not fetch from origin" in result.stderr
    assert "amazing-deployment" in result.stdout  # the copy fetched before


def test_watch_prints_a_row_per_change_until_ctrl_c(synced: tuple[git.Repo, str],
                                                    env: dict[str, str],
                                                    tmp_path: Path) -> None:
    repo, sha = synced
    out = tmp_path / "watch.out"
    proc = latticectl("get", "deployments", "-w", env=env, out=out)
    try:
        eventually_sync(lambda: "amazing-deployment" in out.read_text(), timeout=20,
                        message="the first table")
        write_status(repo, tmp_path / "agent", report(sha, phase=Phase.DEGRADED))

        def degraded_row() -> list[str] | None:
            found = [r for r in rows(out.read_text()) if "Degraded" in r]
            return found[0] if found else None

        row = eventually_sync(degraded_row, timeout=20, message="a row for the change")
        assert row[:5] == ["amazing-deployment", sha[:12], "1/1", "1/2", "Degraded"]
        write_status(repo, tmp_path / "agent", report(sha))
        eventually_sync(lambda: rows(out.read_text())[-1][4] == "Synced", timeout=20,
                        message="a row for the recovery")
    finally:
        code = interrupt(proc)
    assert code == 0, out.read_text()
    text = out.read_text()
    assert text.count("NAME") == 1  # one header, then rows
    assert "Traceback" not in text
