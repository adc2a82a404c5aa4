"""latticectl diff: the git diff apply would commit, the lattice actions it would cause,
and kubectl diff's exit codes (0 no change, 1 changes, 2 errors); nothing is written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import git
import pytest

from cli.diff_cmd import lattice_summary, pending_note
from lattice.localnats import NatsServer
from tests.cliutil import CAUSE, gitops_repo, run
from tests.gitrepo import DEPLOYMENT, ELIDED_ACTOR, OTHER_ACTOR, deployment, index_state
from tests.helpers import eventually_sync
from tests.hostproc import HostPool


@pytest.fixture
def repo(tmp_path: Path, env: dict[str, str]) -> git.Repo:
    repo = gitops_repo(tmp_path)
    env["LATTICECTL_REPO"] = str(repo.working_tree_dir)
    return repo


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def test_no_change_exits_zero(repo: git.Repo, env: dict[str, str], tmp_path: Path) -> None:
    result = run(env, "diff", "-f", write(tmp_path / "in" / "d.yaml", DEPLOYMENT))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""


def test_changes_exit_one_and_write_nothing(repo: git.Repo, env: dict[str, str],
                                           tmp_path: Path) -> None:
    before = (repo.head.commit.hexsha, index_state(repo))
    scaled = DEPLOYMENT.replace("    - id: MB2", "    - replicas: 2\n      id: MB2")
    f = write(tmp_path / "in" / "d.yaml", scaled + "---\n" + deployment("fresh", OTHER_ACTOR))
    result = run(env, "diff", "-f", f)
    assert result.exit_code == 1, result.output
    out = result.stdout.splitlines()
    assert "--- a/deployments/amazing-deployment.yaml" in out
    assert "+++ b/deployments/amazing-deployment.yaml" in out
    assert any(line.startswith("+") and "replicas: 2" in line for line in out)
    assert "--- /dev/null" in out and "+++ b/deployments/fresh.yaml" in out
    assert "lattice not checked: no NATS URL configured" in result.stderr
    assert (repo.head.commit.hexsha, index_state(repo)) == before


def test_errors_exit_two(repo: git.Repo, env: dict[str, str], tmp_path: Path) -> None:
    missing = run(env, "diff", "-f", str(tmp_path / "nope.yaml"))
    assert missing.exit_code == 2 and "no such file" in missing.stderr
    bad = run(env, "diff", "-f", write(tmp_path / "bad.yaml", deployment("x", ELIDED_ACTOR)))
    assert bad.exit_code == 2
    assert "bad.yaml:" in bad.stderr and "nothing written" in bad.stderr
    nothing = run(env, "diff")
    assert nothing.exit_code == 2 and "pass -f FILE" in nothing.stderr
    (tmp_path / "plain").mkdir()
    no_repo = run(env, "--repo", str(tmp_path / "plain"), "diff", "-f",
                  write(tmp_path / "ok.yaml", deployment("x")))
    assert no_repo.exit_code == 2 and "not in a git repository" in no_repo.stderr
    assert "Traceback" not in no_repo.output


def test_lattice_actions_the_change_causes(repo: git.Repo, env: dict[str, str],
                                           tmp_path: Path, nats_server: NatsServer,
                                           lattice_id: str) -> None:
    f = write(tmp_path / "in" / "x.yaml",
              deployment("x", OTHER_ACTOR, replicas=2).replace(
                  "    - id:", "    - affinity_rules: [leds=12]\n      id:"))
    args = ("--nats-url", nats_server.url, "--lattice", lattice_id)
    with HostPool(nats_server.url, lattice_id, log_dir=tmp_path / "hosts") as pool:
        pool.spawn(labels={"leds": "12"}, name="pi")
        pool.spawn(labels={"zone": "a"}, name="vm1")
        eventually_sync(lambda: len(json.loads(run(env, *args, "get", "hosts", "-o", "json")
                                               .stdout)["items"]) == 2,
                        timeout=20, message="two hosts")
        result = run(env, *args, "diff", "-f", f)
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert "+++ b/deployments/x.yaml" in lines
    start = lines.index("lattice (2 hosts): 2 actions")
    assert lines[start + 1:] == [
        f"+ start actor {OTHER_ACTOR} (replica {r} of x) on a host matching leds=12: "
        f"replica {r} of deployment x is not running" for r in (0, 1)]
    # amazing-deployment is not running either, but that is not this change's doing
    assert "actions are planned regardless of this change" in result.stderr


@pytest.mark.parametrize(("hosts", "actions", "line"), [
    (1, 1, "lattice (1 host): 1 action"),
    (3, 2, "lattice (3 hosts): 2 actions"),
    (0, 0, "lattice (0 hosts): no change"),
])
def test_lattice_summary_in_the_singular_and_plural(hosts: int, actions: int,
                                                    line: str) -> None:
    assert lattice_summary(hosts, actions) == line


def test_pending_note_in_the_singular_and_plural() -> None:
    assert pending_note(1).startswith("note: 1 action is planned regardless")
    assert pending_note(2).startswith("note: 2 actions are planned regardless")


def test_unreachable_nats_still_diffs_git(repo: git.Repo, env: dict[str, str],
                                         tmp_path: Path) -> None:
    result = run(env, "--nats-url", "nats://127.0.0.1:1", "diff", "-f",
                 write(tmp_path / "x.yaml", deployment("x")))
    assert result.exit_code == 1, result.output
    assert "+++ b/deployments/x.yaml" in result.stdout
    [line] = [x for x in result.stderr.splitlines() if "lattice not checked" in x]
    assert re.fullmatch(r"warning: lattice not checked: cannot reach NATS at "
                        r"nats://127\.0\.0\.1:1 " + CAUSE, line), line
