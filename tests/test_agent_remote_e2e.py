"""The real agent on a remote repository, end to end: a bare git "remote", a real
nats-server, host processes and a ``vinculum`` process that mirrors the remote.

What the git-side tests check on the pieces, checked here on the whole: a push is seen at
once on ``vinculum sync`` and on ``latticectl sync`` (the interval is 5 minutes, so nothing
else could have fetched it), a force-push of an older commit makes that commit's tree the
desired state again, an invalid commit leaves the last good state running, and a secret
resolved on a host never reaches any object of the remote nor the agent's log.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import git
import pytest

from gitsync.status import read_note
from lattice.localnats import NatsServer
from lattice.natsutil import connect
from lattice.status import Phase
from tests.agentproc import AgentProcess, spawn_agent
from tests.cliutil import clean_env, run
from tests.gitrepo import (
    ACTOR,
    OTHER_ACTOR,
    all_objects,
    commit_files,
    deployment,
    file_url,
    force_push,
    make_remote,
)
from tests.helpers import eventually
from tests.lattice_e2e import HEARTBEAT, Lattice, where

MARKER = "s3cr3t-marker-7f1c2e"  # what a host resolves ${ENV_VAL4:...} to


@dataclass
class Remote:
    lat: Lattice
    bare: Path
    work: git.Repo
    agent: AgentProcess

    def push(self, files: dict[str, str | None], message: str) -> str:
        sha = commit_files(self.work, files, message)
        self.work.git.push("-q", "origin", "HEAD:refs/heads/main")
        return sha

    async def note(self, sha: str, phase: Phase, timeout: float = 20.0) -> None:
        bare = git.Repo(self.bare)

        def check() -> bool:
            note = read_note(bare, sha)
            return note is not None and note.phase == phase
        try:
            await eventually(check, timeout=timeout,
                             message=f"note on {sha[:8]} in the remote says {phase}")
        finally:
            bare.close()


@pytest.fixture
async def remote(nats_server: NatsServer, tmp_path: Path,
                 lattice_id: str) -> AsyncIterator[Remote]:
    from tests import agentproc
    from tests.hostproc import HostPool

    bare, work = make_remote(tmp_path)
    nc = await connect(nats_server.url)
    pool = HostPool(nats_server.url, lattice_id, log_dir=tmp_path / "hosts", heartbeat=HEARTBEAT)
    lat = Lattice(nats_server.url, lattice_id, nc, git.Repo(bare), pool, tmp_path)
    try:
        for name, labels in (("pi", {"leds": "12"}), ("vm1", {}), ("vm2", {})):
            pool.spawn(labels=labels, name=name, env={"ENV_VAL4": MARKER})
        await eventually(lambda: _count(lat, 3), timeout=20, message="3 hosts answer ping")
        agent = spawn_agent(repo=file_url(bare), nats_url=nats_server.url, lattice=lattice_id,
                            data_dir=tmp_path / "agent", interval=300.0, resync=30.0)
        yield Remote(lat, bare, work, agent)
    finally:
        agentproc.stop_all()
        pool.stop()
        lat.repo.close()
        await nc.close()


async def _count(lat: Lattice, n: int) -> bool:
    return len(await lat.inventories()) >= n


async def _runs(lat: Lattice, actor: str, n: int) -> bool:
    return len(where(await lat.inventories(), actor=actor)) == n


def _vinculum_sync(lat: Lattice) -> None:
    out = subprocess.run([sys.executable, "-m", "reconciler.main", "--nats-url", lat.url,
                          "--lattice", lat.lattice, "sync"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


async def test_pushes_are_seen_on_sync_and_a_force_push_goes_back(remote: Remote) -> None:
    first = remote.work.head.commit.hexsha
    await remote.note(first, Phase.SYNCED, timeout=30)
    assert await _runs(remote.lat, ACTOR, 1)

    # vinculum sync: the agent fetches now (its interval is 5 minutes)
    second = remote.push({"deployments/extra.yaml": deployment("extra", OTHER_ACTOR)},
                         "add extra")
    started = time.monotonic()
    _vinculum_sync(remote.lat)
    await remote.note(second, Phase.SYNCED)
    await eventually(lambda: _runs(remote.lat, OTHER_ACTOR, 1), timeout=10,
                     message="extra's actor runs")
    assert time.monotonic() - started < 20

    # latticectl sync, the operator's form of the same nudge
    third = remote.push({"deployments/extra.yaml": deployment("extra", OTHER_ACTOR,
                                                              replicas=2)}, "two extras")
    env = clean_env(remote.lat.tmp)
    res = await asyncio.to_thread(run, env, "--nats-url", remote.lat.url,
                                  "--lattice", remote.lat.lattice, "sync")
    assert res.exit_code == 0, res.output
    await remote.note(third, Phase.SYNCED)
    await eventually(lambda: _runs(remote.lat, OTHER_ACTOR, 2), timeout=10,
                     message="two replicas of extra's actor")

    # force-push the first commit back: its tree is the desired state again
    force_push(remote.work, first)
    _vinculum_sync(remote.lat)
    await eventually(lambda: _runs(remote.lat, OTHER_ACTOR, 0), timeout=15,
                     message="extra's actors stopped after the force-push")
    assert await _runs(remote.lat, ACTOR, 1)


async def test_invalid_push_keeps_the_last_good_state_running(remote: Remote) -> None:
    good = remote.work.head.commit.hexsha
    await remote.note(good, Phase.SYNCED, timeout=30)
    before = {i.name: sorted(a.instance_id for a in i.actors)
              for i in (await remote.lat.inventories()).values()}

    bad = remote.push({"deployments/amazing-deployment.yaml":
                       "kind: Deployment\nmetadata:\n  name: amazing-deployment\n"
                       "spec:\n  actors:\n    - id: MADJKE....DASKJ2334Z\n"}, "elided id")
    _vinculum_sync(remote.lat)
    await remote.note(bad, Phase.INVALID)
    bare = git.Repo(remote.bare)
    try:
        note = read_note(bare, bad)
    finally:
        bare.close()
    assert note is not None
    text = " ".join(note.errors)
    assert "deployments/amazing-deployment.yaml:6" in text and "actors" in text, text
    after = {i.name: sorted(a.instance_id for a in i.actors)
             for i in (await remote.lat.inventories()).values()}
    assert after == before  # nothing was torn down or restarted


async def test_a_secret_resolved_on_a_host_never_reaches_the_remote(remote: Remote) -> None:
    sha = remote.work.head.commit.hexsha
    await remote.note(sha, Phase.SYNCED, timeout=30)
    # the binding was put (the hosts resolved the template from their environment)
    await remote.lat.status_of(sha, Phase.SYNCED, timeout=20)
    blob = all_objects(remote.bare)
    assert b"${ENV_VAL4:FOURTYTWO}" in blob  # the template is there, so the grep can see
    assert MARKER.encode() not in blob
    assert MARKER not in remote.agent.log()
