"""latticectl status and history: phases, exit codes, stale HEADs, notes per commit."""

from __future__ import annotations

import json
from pathlib import Path

import git
import pytest

from lattice.status import Phase
from tests.cliutil import (
    UNPLACED,
    gitops_repo,
    latticectl,
    note,
    report,
    run,
    write_status,
)
from tests.gitrepo import commit_files, deployment, init_repo


@pytest.fixture
def repo(tmp_path: Path, env: dict[str, str]) -> git.Repo:
    repo = gitops_repo(tmp_path)
    env["LATTICECTL_REPO"] = str(repo.working_tree_dir)
    return repo


def field(text: str, name: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in text.splitlines()
                if line.startswith(name + ":"))


def test_synced_exits_zero(repo: git.Repo, env: dict[str, str], tmp_path: Path) -> None:
    sha = repo.head.commit.hexsha
    write_status(repo, tmp_path / "agent", report(sha), {sha: note(sha)})
    result = run(env, "status")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert field(out, "Branch") == "main"
    assert field(out, "HEAD") == f"{sha[:12]}  (evaluated)"
    assert field(out, "Evaluated").startswith(sha[:12])
    assert field(out, "Phase") == "Synced"
    assert " ago (" in field(out, "Updated")
    assert field(out, "Entities") == "1 deployment, 1 binding set, 2 hosts"  # not "1 ...s"
    doc = json.loads(run(env, "status", "-o", "json").stdout)
    assert doc["synced"] is True and doc["headEvaluated"] is True and doc["head"] == sha
    assert doc["summary"]["phase"] == "Synced"


@pytest.mark.parametrize("phase", [Phase.DEGRADED, Phase.PROGRESSING])
def test_not_synced_exits_one(repo: git.Repo, env: dict[str, str], tmp_path: Path,
                              phase: Phase) -> None:
    sha = repo.head.commit.hexsha
    write_status(repo, tmp_path / "agent", report(sha, phase=phase, errors=[UNPLACED]),
                 {sha: note(sha, phase)})
    result = run(env, "status")
    assert result.exit_code == 1, result.output
    assert field(result.stdout, "Phase") == str(phase)
    assert f"  - {UNPLACED}" in result.stdout.splitlines()
    assert json.loads(run(env, "status", "-o", "json").stdout)["synced"] is False


def test_invalid_head_exits_one_with_its_errors(repo: git.Repo, env: dict[str, str],
                                                tmp_path: Path) -> None:
    good = repo.head.commit.hexsha
    bad = commit_files(repo, {"deployments/x.yaml": "kind: Deployment\n"}, "broken")
    problem = "deployments/x.yaml:1: metadata: Field required"
    st = report(good, attempted=bad, errors=[problem])  # the agent refused `bad`
    st = st.model_copy(update={"summary": st.summary.model_copy(update={"phase": Phase.INVALID})})
    write_status(repo, tmp_path / "agent", st, {bad: note(bad, Phase.INVALID, errors=[problem])})
    result = run(env, "status")
    assert result.exit_code == 1, result.output
    assert field(result.stdout, "Phase") == "Invalid"
    assert field(result.stdout, "Applied").startswith(good[:12])
    assert f"  - {problem}" in result.stdout.splitlines()


def test_unevaluated_head_exits_one(repo: git.Repo, env: dict[str, str],
                                    tmp_path: Path) -> None:
    sha = repo.head.commit.hexsha
    write_status(repo, tmp_path / "agent", report(sha), {sha: note(sha)})
    new = commit_files(repo, {"deployments/b.yaml": deployment("b")}, "more")
    result = run(env, "status")
    assert result.exit_code == 1, result.output
    assert field(result.stdout, "HEAD") == f"{new[:12]}  (not yet evaluated)"
    # noted already, while the status branch catches up: the note's phase decides
    write_status(repo, tmp_path / "agent", None, {new: note(new)})
    caught = run(env, "status")
    assert caught.exit_code == 0, caught.output
    assert "catching up" in field(caught.stdout, "HEAD")


def test_errors_exit_two(tmp_path: Path, env: dict[str, str]) -> None:
    repo = gitops_repo(tmp_path)
    none = run(env, "--repo", str(repo.working_tree_dir), "status")
    assert none.exit_code == 2
    assert "no status yet: is the agent running on this repository?" in none.stderr
    gone = run(env, "--repo", str(tmp_path / "nowhere"), "status")
    assert gone.exit_code == 2 and "Traceback" not in gone.output


def test_wait_returns_when_synced_or_gives_up(repo: git.Repo, env: dict[str, str],
                                              tmp_path: Path) -> None:
    sha = repo.head.commit.hexsha
    write_status(repo, tmp_path / "agent", report(sha, phase=Phase.DEGRADED))
    gave_up = run(env, "status", "--wait", "--timeout", "0.5")
    assert gave_up.exit_code == 1 and field(gave_up.stdout, "Phase") == "Degraded"
    out = tmp_path / "wait.out"
    proc = latticectl("status", "--wait", "--timeout", "60", env=env, out=out)
    try:
        write_status(repo, tmp_path / "agent", report(sha), {sha: note(sha)})
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, out.read_text()
    assert field(out.read_text(), "Phase") == "Synced"


# ---------------------------------------------------------------- history

def test_history_shows_each_commit_with_its_note(repo: git.Repo, env: dict[str, str],
                                                 tmp_path: Path) -> None:
    first = repo.head.commit.hexsha
    skipped = commit_files(repo, {"deployments/b.yaml": deployment("b")}, "add b")
    last = commit_files(repo, {"deployments/c.yaml": deployment("c")}, "add c")
    write_status(repo, tmp_path / "agent", report(last, phase=Phase.DEGRADED),
                 {first: note(first), last: note(last, Phase.DEGRADED, ready=2)})
    result = run(env, "history")
    assert result.exit_code == 0, result.output
    table = [line.split() for line in result.stdout.splitlines()]
    assert table[0] == ["REVISION", "AGE", "PHASE", "READY", "SIGNATURE", "AUTHOR", "MESSAGE"]
    assert [(r[0], r[2], r[3], r[4]) for r in table[1:]] == [
        (last[:12], "Degraded", "2/3", "unsigned"), (skipped[:12], "-", "-", "unsigned"),
        (first[:12], "Synced", "3/3", "unsigned")]
    assert table[1][-2:] == ["add", "c"]
    assert "the agent has not seen the commit (yet)" in result.stderr
    limited = run(env, "history", "--limit", "1", "-o", "json")
    [only] = json.loads(limited.stdout)
    assert only["revision"] == last and only["note"]["phase"] == "Degraded"
    assert only["subject"] == "add c"


def test_history_errors(tmp_path: Path, env: dict[str, str]) -> None:
    empty = init_repo(tmp_path / "empty")
    result = run(env, "--repo", str(empty.working_tree_dir), "history")
    assert result.exit_code == 2
    assert "branch main has no commits" in result.stderr
    gone = run(env, "--repo", str(tmp_path / "nowhere"), "history")
    assert gone.exit_code == 2 and "no such directory" in gone.stderr


def test_history_before_any_agent_warns(tmp_path: Path, env: dict[str, str]) -> None:
    repo = gitops_repo(tmp_path)
    result = run(env, "--repo", str(repo.working_tree_dir), "history")
    assert result.exit_code == 0
    assert "no status yet" in result.stderr
