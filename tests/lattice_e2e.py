"""The end-to-end lattice of the agent's tests: a real nats-server, real host processes,
a real git repository, agent processes; the ``lat`` fixture and what tests ask of it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import git
import pytest
import yaml
from nats.aio.client import Client

from gitsync.status import read_note, read_status
from lattice.localnats import NatsServer
from lattice.natsutil import connect, scatter_gather
from lattice.protocol import HostInventory, PingRequest, Subjects, encode
from lattice.status import Phase, StatusReport
from tests.agentproc import AgentProcess, spawn_agent
from tests.helpers import eventually
from tests.hostproc import HostPool

HEARTBEAT = 0.5


@dataclass
class Lattice:
    url: str
    lattice: str
    nc: Client
    repo: git.Repo
    pool: HostPool
    tmp: Path

    async def inventories(self) -> dict[str, HostInventory]:
        msgs = await scatter_gather(self.nc, Subjects(self.lattice).ping,
                                    encode(PingRequest()), timeout=0.4,
                                    max_replies=sum(h.alive() for h in self.pool.hosts))
        invs = [HostInventory.model_validate_json(m.data) for m in msgs]
        return {i.host_id: i for i in invs}

    def commit(self, files: dict[str, dict | None], message: str) -> str:
        root = Path(self.repo.working_tree_dir or ".")
        for rel, doc in files.items():
            p = root / rel
            if doc is None:
                self.repo.index.remove([rel], working_tree=True)
                continue
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(yaml.safe_dump(doc, sort_keys=False))
            self.repo.index.add([rel])
        return self.repo.index.commit(message).hexsha

    def agent(self, name: str = "a", **kw: object) -> AgentProcess:
        return spawn_agent(repo=self.repo.working_tree_dir or "", nats_url=self.url,
                           lattice=self.lattice, data_dir=self.tmp / f"agent-{name}",
                           **kw)  # type: ignore[arg-type]

    async def note_phase(self, sha: str, phase: Phase) -> bool:
        note = await asyncio.to_thread(read_note, self.repo, sha)
        return note is not None and note.phase == phase

    async def status_of(self, sha: str, phase: Phase, timeout: float = 15) -> StatusReport:
        """The status branch once it reports ``sha`` applied in ``phase`` (the branch is
        written at most once a second, so it may trail the note)."""
        async def check() -> StatusReport | None:
            st = await asyncio.to_thread(read_status, self.repo)
            ok = (st is not None and st.summary.applied_revision == sha
                  and st.summary.phase == phase)
            return st if ok else None
        return await eventually(check, timeout=timeout,
                                message=f"status branch: {sha[:8]} {phase}")


def where(invs: dict[str, HostInventory], *, actor: str | None = None,
          provider: str | None = None) -> list[str]:
    """Names of the hosts running ``actor`` (one per instance) or ``provider``."""
    out = []
    for inv in invs.values():
        if actor:
            out += [inv.name for a in inv.actors if a.actor_id == actor]
        if provider:
            out += [inv.name for p in inv.providers if p.capability_id == provider]
    return sorted(out)


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[git.Repo]:
    r = git.Repo.init(tmp_path / "gitops", initial_branch="main")
    with r.config_writer() as cw:
        cw.set_value("user", "name", "test")
        cw.set_value("user", "email", "test@localhost")
    (tmp_path / "gitops" / "README.md").write_text("gitops\n")
    r.index.add(["README.md"])
    r.index.commit("init")
    yield r
    r.close()


@pytest.fixture
async def lat(nats_server: NatsServer, repo: git.Repo, tmp_path: Path,
              lattice_id: str) -> AsyncIterator[Lattice]:
    nc = await connect(nats_server.url)
    pool = HostPool(nats_server.url, lattice_id, log_dir=tmp_path / "hosts", heartbeat=HEARTBEAT)
    try:
        yield Lattice(nats_server.url, lattice_id, nc, repo, pool, tmp_path)
    finally:
        from tests import agentproc

        agentproc.stop_all()
        pool.stop()
        await nc.close()


async def three_hosts(lat: Lattice) -> None:
    lat.pool.spawn(labels={"leds": "12"}, name="pi")
    lat.pool.spawn(labels={"zone": "a"}, name="vm1")
    lat.pool.spawn(labels={"zone": "b"}, name="vm2")
    await eventually(lambda: count_hosts(lat, 3), timeout=20, message="3 hosts answer ping")


async def count_hosts(lat: Lattice, n: int) -> bool:
    return len(await lat.inventories()) >= n
