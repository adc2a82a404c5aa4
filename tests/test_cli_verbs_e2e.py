"""Issue 17's verbs against one real lattice (``latticectl up --detach``: nats-server, two
hosts, the agent on a seeded repository; shared by the whole module to keep time down):
``version`` asks the agent, ``apply --wait`` and ``delete --wait`` wait for its verdict
(Synced exits 0, Degraded 1), ``reconcile`` reports the revision, ``suspend`` keeps a
deployment's instances through a commit that would change them and ``resume`` hands it
back, ``rollback`` restores an earlier desired state, and after ``down`` the repository is
still found. ``reconcile`` and ``sync`` with NATS but no agent exit 1.

The tests run in file order and build on each other's commits.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import git
import pytest
from click.testing import Result

from cli.reach import ping_hosts
from gitsync.statusformat import read_status
from lattice.localnats import NatsServer
from lattice.natsutil import NatsOptions
from lattice.protocol import ANN_NAME
from tests.cliutil import clean_env, gitops_repo, run

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

COUNTER = "MCIW2DU4NT4OHMJOH7PFZLBJRJ54J7R3PIHD5FTS3FVCMHU7HQN6BPY2"


def counter_yaml(replicas: int) -> str:
    return f"""apiVersion: vinculum.io/v1
kind: Deployment
metadata:
  name: counter
  labels:
    app: counter
spec:
  actors:
    - id: {COUNTER}
      replicas: {replicas}
  providers:
    - id: wascc:messaging
      binding_name: default
      vendor_id: nats
    - id: wascc:keyvalue
      binding_name: default
      vendor_id: memory
"""


UNPLACEABLE = f"""apiVersion: vinculum.io/v1
kind: Deployment
metadata:
  name: nowhere
spec:
  actors:
    - id: {COUNTER}
      affinity_rules: ["gpu=yes"]
"""


@dataclass
class Lattice:
    state_dir: Path
    env: dict[str, str]
    repo: Path
    nats: NatsOptions
    lattice: str

    def ctl(self, *args: str, stdin: str | None = None) -> Result:
        return run(self.env, "--state-dir", str(self.state_dir), *args, stdin=stdin)

    def instances(self, deployment: str) -> int:
        """Actor instances the lattice runs for ``deployment`` (its owner annotation)."""
        invs = asyncio.run(ping_hosts(self.nats, self.lattice, timeout=1.0))
        return sum(1 for inv in invs for a in inv.actors
                   if deployment in a.annotations.get(ANN_NAME, "").split(","))

    def head(self) -> str:
        return git.Repo(self.repo).head.commit.hexsha


@pytest.fixture(scope="module")
def lattice(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lattice]:
    tmp = tmp_path_factory.mktemp("verbs")
    env = clean_env(tmp)
    state_dir = tmp / "state"
    up = run(env, "--state-dir", str(state_dir), "--lattice", "verbs", "up", "--detach",
             "--hosts", "2", "--heartbeat", "500ms")
    assert up.exit_code == 0, up.output
    state = json.loads((state_dir / "state.json").read_text())
    nats = NatsOptions(url=state["nats_url"], creds_file=state["creds"]["admin"])
    lat = Lattice(state_dir, env, Path(state["repo"]), nats, "verbs")
    try:
        yield lat
    finally:
        down = run(env, "--state-dir", str(state_dir), "down")
        assert down.exit_code == 0, down.output


def test_version_asks_the_agent(lattice: Lattice) -> None:
    res = lattice.ctl("version")
    assert res.exit_code == 0, res.output
    client, agent = res.stdout.splitlines()
    assert client.startswith("latticectl: ")
    assert agent.endswith("(leader, over NATS)"), agent
    assert agent.split()[1] == client.split()[1]


def test_reconcile_reports_the_revision(lattice: Lattice) -> None:
    res = lattice.ctl("reconcile", "--timeout", "90s")
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[-1] == f"revision {lattice.head()[:12]} Synced"
    assert "(leader) nudged" in res.stdout
    summary = read_status(git.Repo(lattice.repo))
    assert summary is not None and summary.summary.agent_version  # and it says so in git
    sync = lattice.ctl("sync")
    assert sync.exit_code == 0 and "nudged the agent" in sync.output


def test_apply_wait_exits_0_when_synced_and_1_when_degraded(lattice: Lattice) -> None:
    res = lattice.ctl("apply", "-f", "-", "--wait", "--timeout", "90s",
                      stdin=counter_yaml(2))
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[-1] == f"revision {lattice.head()[:12]} Synced"
    assert lattice.instances("counter") == 2  # Synced means it runs
    bad = lattice.ctl("apply", "-f", "-", "--wait", "--timeout", "90s", stdin=UNPLACEABLE)
    assert bad.exit_code == 1, bad.output
    assert f"error: revision {lattice.head()[:12]} Degraded" in bad.stderr
    gone = lattice.ctl("delete", "deployment", "nowhere", "--wait", "--timeout", "90s")
    assert gone.exit_code == 0, gone.output
    assert gone.stdout.splitlines()[-1] == f"revision {lattice.head()[:12]} Synced"


def test_a_suspended_deployment_is_left_as_it_is(lattice: Lattice) -> None:
    res = lattice.ctl("suspend", "deployment", "counter")
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[0] == "deployment/counter suspended"
    text = (lattice.repo / "deployments" / "counter.yaml").read_text()
    assert "vinculum.io/suspended: 'true'" in text or 'vinculum.io/suspended: "true"' in text
    again = lattice.ctl("suspend", "deployment", "counter")
    assert again.exit_code == 0 and "deployment/counter unchanged" in again.stdout
    # a commit that would stop one of its two instances: nothing of it is touched
    one = counter_yaml(1).replace("  labels:", "  annotations:\n    vinculum.io/suspended: "
                                  "\"true\"\n  labels:")
    res = lattice.ctl("apply", "-f", "-", "--wait", "--timeout", "90s", stdin=one)
    assert res.exit_code == 0, res.output
    assert lattice.instances("counter") == 2
    report = read_status(git.Repo(lattice.repo))
    assert report is not None
    assert report.deployments["counter"].conditions[0].type == "Suspended"
    # resumed, the agent applies its spec: one instance
    res = lattice.ctl("resume", "deployment", "counter")
    assert res.exit_code == 0 and "deployment/counter resumed" in res.stdout
    assert "suspended" not in (lattice.repo / "deployments" / "counter.yaml").read_text()
    res = lattice.ctl("reconcile", "--timeout", "90s")
    assert res.exit_code == 0, res.output
    assert lattice.instances("counter") == 1


def test_rollback_restores_an_earlier_desired_state(lattice: Lattice) -> None:
    repo = git.Repo(lattice.repo)
    first = list(repo.iter_commits())[-1].hexsha  # the seed: counter without replicas
    dry = lattice.ctl("rollback", first[:10], "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert dry.stdout.startswith("deployment/counter configured")
    assert any(line.startswith("-") and line[1:].strip() == "replicas: 1"
               for line in dry.stdout.splitlines()), dry.stdout
    before = lattice.head()
    assert lattice.head() == before  # a dry run commits nothing
    res = lattice.ctl("rollback", first[:10], "--wait", "--timeout", "90s")
    assert res.exit_code == 0, res.output
    assert lattice.head() != before
    assert repo.head.commit.parents[0].hexsha == before  # a new commit, not a reset
    assert repo.git.diff(first, "HEAD", "--", "deployments", "bindingsets") == ""
    assert res.stdout.splitlines()[-1] == f"revision {lattice.head()[:12]} Synced"
    same = lattice.ctl("rollback", first[:10])
    assert same.exit_code == 0 and "nothing to commit" in same.stdout
    unknown = lattice.ctl("rollback", "0" * 40)
    assert unknown.exit_code == 2 and "no such revision" in unknown.output


def test_the_agent_log_has_no_watchfiles_chatter(lattice: Lattice) -> None:
    log = (lattice.state_dir / "logs" / "agent.log").read_text()
    assert "revision" in log  # it is the agent's log, and it logged
    assert "changes detected" not in log


def test_no_agent_is_exit_1(nats_server: NatsServer, tmp_path: Path) -> None:
    repo = gitops_repo(tmp_path)
    env = clean_env(tmp_path) | {"LATTICECTL_NATS_URL": nats_server.url,
                                 "LATTICECTL_REPO": str(repo.working_tree_dir)}
    for args in (["reconcile", "--timeout", "1s"], ["sync", "--timeout", "500ms"]):
        res = run(env, *args)
        assert res.exit_code == 1, res.output
        assert "no agent answered on lattice default" in res.output
    res = run(env, "version", "--timeout", "300ms")
    assert res.exit_code == 0
    assert "agent:      unknown (no agent answered on NATS" in res.stdout


def test_after_down_the_repository_is_still_found(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    state_dir = tmp_path / "state"
    up = run(env, "--state-dir", str(state_dir), "up", "--detach", "--hosts", "0",
             "--no-agent")
    assert up.exit_code == 0, up.output
    repo = json.loads((state_dir / "state.json").read_text())["repo"]
    down = run(env, "--state-dir", str(state_dir), "down")
    assert down.exit_code == 0, down.output
    assert not (state_dir / "state.json").exists()
    history = run(env, "--state-dir", str(state_dir), "history")
    assert history.exit_code == 0, history.output
    assert "Seed the lattice repository" in history.stdout
    assert json.loads((state_dir / "last.json").read_text())["repo"] == repo
