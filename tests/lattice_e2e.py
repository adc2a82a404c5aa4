"""The end-to-end lattice of the agent's tests: a real nats-server, real host processes,
a real git repository, agent processes; the ``lat`` fixture and what tests ask of it."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import git
import pytest
import yaml
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NotFoundError

from gitsync.status import read_note, read_status
from hostagent.host import Host, HostConfig, server_barrier
from lattice.localnats import NatsServer
from lattice.natsutil import connect, scatter_gather
from lattice.protocol import (
    CloudEvent,
    EventType,
    HostInventory,
    PingRequest,
    Subjects,
    decode_event,
    encode,
)
from lattice.status import Phase, StatusReport
from tests.agentproc import AgentProcess, spawn_agent
from tests.helpers import eventually
from tests.hostproc import HostPool

HEARTBEAT = 0.5
#: what the agent allows a silent host before dropping it (reconciler.observed)
HEARTBEAT_TIMEOUT = 3 * HEARTBEAT
ACTOR = "MB2ZQB6ROOMAYBO4ZCTFYWN7YIVBWA3MTKZYAQKJMTIHE2ELLRW2E3ZW"
OTHER_ACTOR = "MCNVNZX3P6JHF72ZMJKMVWNCMFPLCIDPL2FMUGMDW35M4K6YFS56M7CJ"


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

    async def lease_holder(self) -> str | None:
        """Who holds the agents' leader lease now (the KV entry), or None."""
        js = self.nc.jetstream()
        try:
            kv = await js.key_value(Subjects(self.lattice).lease_bucket)
            entry = await kv.get("leader")
        except (BucketNotFoundError, KeyNotFoundError, NotFoundError):
            return None
        holder = json.loads(entry.value).get("holder") if entry.value else None
        return str(holder) if holder else None

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


@dataclass
class EventLog:
    """Every event of a lattice with the loop time it arrived here, for clocks that start
    and stop on events (hostproc's EventRecorder keeps no times); ``async with``.
    ``on_event`` callbacks run as each event arrives (e.g. to kill a process at once)."""

    nc: Client
    lattice: str
    seen: list[tuple[float, CloudEvent]] = field(default_factory=list)
    on_event: list[Callable[[CloudEvent], None]] = field(default_factory=list)
    _sub: Subscription | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def __aenter__(self) -> EventLog:
        loop = asyncio.get_running_loop()

        async def on_msg(msg: Msg) -> None:
            ev = decode_event(msg.data, msg.subject)
            if ev is None:
                return
            self.seen.append((loop.time(), ev))
            for cb in self.on_event:
                cb(ev)
            self._changed.set()

        self._sub = await self.nc.subscribe(Subjects(self.lattice).events, cb=on_msg)
        await server_barrier(self.nc)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._sub is not None and not self.nc.is_closed:
            await self._sub.unsubscribe()

    def of(self, event_type: EventType, *, since: float = float("-inf"),
           **data: str) -> list[tuple[float, CloudEvent]]:
        """(arrival, event) of ``event_type`` arrived after ``since`` whose data has the
        given fields (``host_id=..., actor_id=...``)."""
        return [(t, e) for t, e in self.seen
                if t > since and e.event_type is event_type
                and all(e.data.get(k) == v for k, v in data.items())]

    def count(self, *types: EventType, since: float = float("-inf")) -> dict[str, int]:
        """How many events of each of ``types`` (all types if none) arrived after ``since``."""
        out: dict[str, int] = {}
        for t, e in self.seen:
            if t > since and e.event_type is not None and (not types or e.event_type in types):
                out[e.event_type.value] = out.get(e.event_type.value, 0) + 1
        return out

    async def first(self, event_type: EventType, *, since: float = float("-inf"),
                    timeout: float = 15, **data: str) -> tuple[float, CloudEvent]:
        """The first matching event after ``since``, waiting up to ``timeout`` for it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not (found := self.of(event_type, since=since, **data)):
            if loop.time() >= deadline:
                raise AssertionError(f"no {event_type.value} {data} within {timeout}s; saw "
                                     f"{[e.event_type for _, e in self.seen[-20:]]}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), deadline - loop.time())
        return found[0]


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


def init_gitops(tmp: Path) -> git.Repo:
    """A GitOps repository at ``tmp/gitops`` with one commit (a README) on main."""
    r = git.Repo.init(tmp / "gitops", initial_branch="main")
    with r.config_writer() as cw:
        cw.set_value("user", "name", "test")
        cw.set_value("user", "email", "test@localhost")
    (tmp / "gitops" / "README.md").write_text("gitops\n")
    r.index.add(["README.md"])
    r.index.commit("init")
    return r


def commit_deployment(repo: git.Repo, doc: dict[str, object], message: str) -> str:
    """Write ``doc`` to ``deployments/d.yaml`` in ``repo``, commit it; the commit's sha."""
    root = Path(repo.working_tree_dir or ".")
    (root / "deployments").mkdir(exist_ok=True)
    (root / "deployments" / "d.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    repo.index.add(["deployments/d.yaml"])
    return repo.index.commit(message).hexsha


async def note_at_phase(repo: git.Repo, sha: str, phase: Phase) -> bool:
    """Whether the status note on ``sha`` says ``phase``."""
    note = await asyncio.to_thread(read_note, repo, sha)
    return note is not None and note.phase == phase


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[git.Repo]:
    r = init_gitops(tmp_path)
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


async def settled(lat: Lattice) -> dict[str, HostInventory]:
    """Inventories once every live host answered a ping. NATS keeps one connection's
    messages in order, so every event a host published before answering has reached
    :class:`EventLog` by then: counting events after this is exact."""
    async def all_answer() -> dict[str, HostInventory] | None:
        invs = await lat.inventories()
        return invs if len(invs) == sum(h.alive() for h in lat.pool.hosts) else None
    return await eventually(all_answer, timeout=10, message="every live host answers")


@contextlib.asynccontextmanager
async def in_process_hosts(url: str, lattice: str, zones: tuple[str, ...]
                           ) -> AsyncIterator[list[Host]]:
    """Real :class:`Host` objects in this process, one per zone (named h0, h1, ...,
    labelled ``zone``), sharing one connection; stopped on exit."""
    conn = await connect(url)
    made = [Host(conn, HostConfig(name=f"h{i}", labels={"zone": zone}, lattice=lattice,
                                  heartbeat_s=30)) for i, zone in enumerate(zones)]
    try:
        for h in made:
            await h.start()
        yield made
    finally:
        for h in made:
            with contextlib.suppress(Exception):  # a test may have stopped it already
                await h.stop()
        await conn.close()
