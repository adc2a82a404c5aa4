"""latticectl describe shows why each instance is where it is (issue 16): the spread share
with its actual and target counts, the daemon's rule, and an unplaced share by name."""

from __future__ import annotations

from pathlib import Path

import git
import pytest

from lattice.status import Placement
from tests.cliutil import gitops_repo, report, run, write_status
from tests.gitrepo import ACTOR
from tests.test_cli_describe import section

HOST_A = "N" + "A" * 55
WEST = "spread west: no host satisfies zone=b: 3 hosts declined: label zone is a, not b"


@pytest.fixture
def repo(tmp_path: Path, env: dict[str, str]) -> git.Repo:
    repo = gitops_repo(tmp_path)
    env["LATTICECTL_REPO"] = str(repo.working_tree_dir)
    return repo


def test_describe_names_the_share_and_the_daemon_rule(repo: git.Repo, env: dict[str, str],
                                                      tmp_path: Path) -> None:
    sha = repo.head.commit.hexsha
    base = report(sha)
    dep = base.deployments["amazing-deployment"]
    placed = dep.placements[0]
    placements = [
        placed.model_copy(update={"message": "replica east-0; spread east: 1/1 (target 1)"}),
        Placement(entity=ACTOR, kind="actor", message=WEST),
        Placement(entity="wascc:messaging/default", kind="provider", host_id=HOST_A,
                  host_name="edge1", since=placed.since,
                  message="vendor nats; daemon on every host with edge"),
    ]
    dep = dep.model_copy(update={"placements": placements})
    write_status(repo, tmp_path / "agent", base.model_copy(
        update={"deployments": {dep.name: dep}}))
    result = run(env, "describe", "deployment", "amazing-deployment")
    assert result.exit_code == 0, result.output
    rows = section(result.stdout, "Placements:")
    assert any(r.endswith("replica east-0; spread east: 1/1 (target 1)") for r in rows), rows
    assert any(r.endswith("vendor nats; daemon on every host with edge") for r in rows), rows
    assert section(result.stdout, "Unplaced:") == [f"actor {ACTOR}: {WEST}"]
