"""Failure detection in under a second (issue 15): the agent's advisory watcher.

Pure parts first (:meth:`ObservedState.lost`, :class:`reconciler.liveness.Liveness`
without monitor credentials), then real processes: an operator-mode nats-server (and a
3-server cluster), ``lattice-host`` processes with issued host credentials and
heartbeats of 10 s -- so a host missed by the advisories would be dropped only after 30 s
-- and a ``vinculum`` process with ``--monitor-creds``. A host killed with -9 has its
actor replaced in well under the heartbeat timeout; a host whose server is killed moves
to another server and keeps its actor, and nothing is started twice.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import git
import pytest
from nats.aio.client import Client

from gitsync.status import read_status
from lattice.auth.store import AuthStore, Issued
from lattice.clock import ManualClock
from lattice.localcluster import NatsCluster, monitor_json
from lattice.localnats import NatsServer
from lattice.natsutil import NatsOptions, connect, scatter_gather
from lattice.protocol import (
    EventType,
    HostInventory,
    PingRequest,
    Subjects,
    encode,
    make_event,
)
from lattice.status import Phase
from reconciler.config import AgentConfig
from reconciler.errors import ReconcilerError
from reconciler.liveness import Liveness
from reconciler.observed import Change, ObservedState
from tests.agentproc import AgentProcess, spawn_agent
from tests.helpers import eventually
from tests.hostproc import HostPool
from tests.lattice_e2e import ACTOR, EventLog, commit_deployment, init_gitops, note_at_phase

LATTICE = "live"
#: long enough that only the advisories can explain a replacement within seconds
HEARTBEAT = 10.0
#: a regression guard on the kill -> replacement time, not the benchmark
HEAL_LIMIT = 3.0


# ---------------------------------------------------------------- pure parts

def inventory(host_id: str, heartbeat: float = 10.0) -> HostInventory:
    return HostInventory(host_id=host_id, name=host_id, heartbeat_s=heartbeat,
                         started_at=datetime.now(UTC))


def test_a_lost_host_leaves_at_once_and_a_heartbeat_brings_it_back() -> None:
    o = ObservedState(clock=ManualClock())
    o.reset([inventory("h1"), inventory("h2")])
    v = o.version
    assert o.lost("h1") is Change.HOST_LEFT
    assert o.host_ids == ["h2"] and o.version == v + 1
    assert o.lost("h1") is Change.NONE and o.lost("never-seen") is Change.NONE
    assert o.version == v + 1
    # the check on the advisory: a host declared gone that is alive comes back
    back = make_event(EventType.HOST_HEARTBEAT, "h1", inventory("h1"))
    assert o.apply_event(back) is Change.HOST_JOINED
    assert o.host_ids == ["h1", "h2"]


def config(tmp: Path, **kw: object) -> AgentConfig:
    return AgentConfig(repo=str(tmp), nats=NatsOptions(**kw.pop("nats", {})),  # type: ignore[arg-type]
                       data_dir=tmp, **kw)  # type: ignore[arg-type]


async def test_without_monitor_credentials_it_does_nothing_but_say_so(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    gone: list[str] = []
    live = Liveness(config(tmp_path), on_gone=gone.append)
    caplog.set_level("INFO", logger="reconciler.liveness")
    await live.start()
    await live.run(asyncio.Event())  # returns at once: nothing to watch
    assert not live.enabled and gone == []
    assert [r.getMessage() for r in caplog.records] == [
        "lost hosts: heartbeats only (no --monitor-creds)"]


def test_monitor_credentials_without_the_agents_own_are_refused(tmp_path: Path) -> None:
    store = AuthStore(tmp_path / "state", LATTICE).initialise()
    monitor = store.issue_monitor()
    with pytest.raises(ReconcilerError, match="needs the agent's own --creds"):
        Liveness(config(tmp_path, monitor_creds=str(monitor.path)), on_gone=print)
    # with them, the account watched is the lattice's, not the monitor's system account
    agent = store.issue("agent", "agent")
    live = Liveness(config(tmp_path, monitor_creds=str(monitor.path),
                           nats={"creds_file": str(agent.path)}), on_gone=print)
    assert live.account == store.account.public_key != store.system_account.public_key


# ---------------------------------------------------------------- real processes

@dataclass
class Secure:
    """Keys of lattice ``live``, the URL(s) of its server(s), a repo and its processes."""

    store: AuthStore
    url: str
    tmp: Path
    repo: git.Repo
    pool: HostPool
    admin: Issued

    def creds(self, role: str, name: str) -> Issued:
        return self.store.issue(role, name)  # type: ignore[arg-type]

    def hosts(self, n: int = 3) -> dict[str, Issued]:
        issued = {f"host-{i}": self.creds("host", f"host-{i}") for i in range(n)}
        for name, i in issued.items():
            self.pool.spawn(labels={}, name=name, extra_args=["--creds", str(i.path)])
        return issued

    def agent(self, *extra: str) -> AgentProcess:
        return spawn_agent(
            repo=self.repo.working_tree_dir or "", nats_url=self.url, lattice=LATTICE,
            data_dir=self.tmp / "agent", resync=30.0,
            extra_args=["--creds", str(self.creds("agent", "agent").path),
                        "--monitor-creds", str(self.store.issue_monitor().path),
                        "--gone-grace", "250ms", *extra])

    def commit(self, doc: dict[str, object], message: str) -> str:
        return commit_deployment(self.repo, doc, message)

    async def note_phase(self, sha: str, phase: Phase) -> bool:
        return await note_at_phase(self.repo, sha, phase)


def deployment(replicas: int = 1) -> dict[str, object]:
    return {"kind": "Deployment", "metadata": {"name": "live"},
            "spec": {"actors": [{"id": ACTOR, "replicas": replicas}]}}


async def inventories(nc: Client, n: int) -> dict[str, HostInventory]:
    msgs = await scatter_gather(nc, Subjects(LATTICE).ping,  # type: ignore[arg-type]
                                encode(PingRequest()), timeout=0.5, max_replies=n)
    invs = [HostInventory.model_validate_json(m.data) for m in msgs]
    return {i.host_id: i for i in invs}


def secure_parts(tmp: Path) -> tuple[AuthStore, git.Repo]:
    return AuthStore(tmp / "state", LATTICE).initialise(), init_gitops(tmp / "repo")


@pytest.fixture
def single(tmp_path: Path) -> Iterator[Secure]:
    store, repo = secure_parts(tmp_path)
    conf = tmp_path / "server.conf"
    conf.write_text(store.server_config(tmp_path / "jwt"))
    server = NatsServer(data_dir=tmp_path / "nats", extra_args=["-c", str(conf)])
    server.start()
    pool = HostPool(server.url, LATTICE, log_dir=tmp_path / "hosts", heartbeat=HEARTBEAT)
    try:
        yield Secure(store, server.url, tmp_path, repo, pool, store.issue("admin", "admin"))
    finally:
        from tests import agentproc

        agentproc.stop_all()
        pool.stop()
        server.stop()
        repo.close()


@dataclass
class Clustered:
    lat: Secure
    cluster: NatsCluster


@pytest.fixture
def clustered(tmp_path: Path) -> Iterator[Clustered]:
    store, repo = secure_parts(tmp_path)
    cluster = NatsCluster(3, tmp_path / "cluster", config_text=store.server_config)
    cluster.start()
    pool = HostPool(cluster.url, LATTICE, log_dir=tmp_path / "hosts", heartbeat=HEARTBEAT)
    try:
        yield Clustered(Secure(store, cluster.url, tmp_path, repo, pool,
                               store.issue("admin", "admin")), cluster)
    finally:
        from tests import agentproc

        agentproc.stop_all()
        pool.stop()
        cluster.stop()
        repo.close()


@pytest.mark.e2e
@pytest.mark.timeout(180)
async def test_a_killed_host_is_replaced_from_the_advisory_not_the_heartbeats(
        single: Secure) -> None:
    lat = single
    nc = await connect(NatsOptions(url=lat.url, creds_file=str(lat.admin.path)))
    try:
        issued = lat.hosts(3)
        await eventually(lambda: _count(nc, 3), timeout=30, message="3 hosts answer")
        sha = lat.commit(deployment(), "deploy")
        agent = lat.agent()
        await eventually(lambda: lat.note_phase(sha, Phase.SYNCED), timeout=40,
                         message=lambda: f"Synced\n{agent.log()[-3000:]}")
        assert "lost hosts: server advisories (grace 250 ms)" in agent.log()
        invs = await inventories(nc, 3)
        [victim_id] = [h for h, i in invs.items() if i.actors]
        victim = next(n for n, i in issued.items() if i.host_id == victim_id)
        proc = next(h for h in lat.pool.hosts if h.name == victim)
        loop = asyncio.get_running_loop()
        async with EventLog(nc, LATTICE) as events:
            killed, killed_wall = loop.time(), datetime.now(UTC)
            proc.kill()
            healed, started = await events.first(EventType.ACTOR_STARTED, since=killed,
                                                 actor_id=ACTOR, timeout=HEARTBEAT)
            took = healed - killed
            print(f"kill -9 -> replacement actor_started: {took * 1000:.0f} ms")
            assert started.data["host_id"] != victim_id
            assert took < HEAL_LIMIT, f"replaced {took:.2f}s after the kill"
            assert proc.wait() < 0
            assert f"host {victim_id} closed its connection" in agent.log()

            async def synced_again() -> bool:
                st = await asyncio.to_thread(read_status, lat.repo)
                if st is None or st.summary.updated is None or st.summary.updated < killed_wall:
                    return False
                dep = st.deployments.get("live")
                return (st.summary.phase, st.summary.hosts) == (Phase.SYNCED, 2) and (
                    dep is not None and str(dep.actors) == "1/1")

            await eventually(synced_again, timeout=15, message="status Synced, 1/1 on 2 hosts")
            invs = await inventories(nc, 2)
            assert [h for h, i in invs.items() if i.actors] == [started.data["host_id"]]
            assert len(events.of(EventType.ACTOR_STARTED, since=killed)) == 1
    finally:
        await nc.close()


def _server_of(cluster: NatsCluster, conn_name: str) -> int | None:
    """Index of the running server holding a client connection named ``conn_name``."""
    for i in cluster.running():
        connz = monitor_json(cluster.monitor_url(i), "/connz?limit=1024") or {}
        if any(c.get("name") == conn_name for c in connz.get("connections") or []):
            return i
    return None


def _on_a_server(cluster: NatsCluster, conn_name: str) -> list[int]:
    """[index] of the server holding ``conn_name``, or [] (for :func:`eventually`)."""
    i = _server_of(cluster, conn_name)
    return [] if i is None else [i]


@pytest.mark.e2e
@pytest.mark.timeout(240)
async def test_a_host_whose_server_dies_moves_and_is_not_declared_gone(
        clustered: Clustered) -> None:
    lat, cluster = clustered.lat, clustered.cluster
    nc = await connect(NatsOptions(url=lat.url, creds_file=str(lat.admin.path)))
    try:
        issued = lat.hosts(3)
        await eventually(lambda: _count(nc, 3), timeout=30, message="3 hosts answer")
        sha = lat.commit(deployment(), "deploy")
        agent = lat.agent("--replicas", "3")
        await eventually(lambda: lat.note_phase(sha, Phase.SYNCED), timeout=60,
                         message=lambda: f"Synced\n{agent.log()[-3000:]}")
        invs = await inventories(nc, 3)
        [victim_id] = [h for h, i in invs.items() if i.actors]
        [instance] = invs[victim_id].actors
        victim = next(n for n, i in issued.items() if i.host_id == victim_id)
        conn = f"lattice-host {victim}"
        [home] = await eventually(lambda: _on_a_server(cluster, conn), timeout=10,
                                  message=f"{conn} on a server")
        agent_home = _server_of(cluster, "vinculum-monitor")
        print(f"victim on server {home}, the agent's monitor on {agent_home}")
        loop = asyncio.get_running_loop()
        # the events are heard on a server that stays up (core NATS does not replay what
        # was published while a client reconnected)
        watcher = await connect(NatsOptions(url=cluster.urls[(home + 1) % len(cluster.urls)],
                                            creds_file=str(lat.admin.path)))
        async with EventLog(watcher, LATTICE) as events:
            killed = loop.time()
            await asyncio.to_thread(cluster.kill, home)
            [moved] = await eventually(lambda: _on_a_server(cluster, conn), timeout=15,
                                       message=f"{conn} reconnected to another server")
            print(f"server kill -> host on server {moved}: "
                  f"{(loop.time() - killed) * 1000:.0f} ms")
            assert moved != home
            # a new commit makes the agent plan again with what it observes now: had it
            # dropped the victim, replica 0 would be started a second time
            sha2 = lat.commit(deployment(2), "scale")
            await eventually(lambda: lat.note_phase(sha2, Phase.SYNCED), timeout=60,
                             message=lambda: f"Synced after the move\n{agent.log()[-3000:]}")
            invs = await eventually(lambda: _all(nc, 3), timeout=15,
                                    message="all 3 hosts answer after the move")
            assert instance in invs[victim_id].actors  # still runs, where it ran
            assert sum(len(i.actors) for i in invs.values()) == 2
            started = events.of(EventType.ACTOR_STARTED, since=killed)
            assert [e.data["host_id"] != victim_id for _, e in started] == [True], [
                e.data for _, e in started]  # the new replica, on another host; no other
            assert "closed its connection" not in agent.log(), agent.log()[-3000:]
            assert "missed 3 heartbeats" not in agent.log()
        await watcher.close()
    finally:
        await nc.close()


async def _count(nc: Client, n: int) -> bool:
    return len(await inventories(nc, n)) >= n


async def _all(nc: Client, n: int) -> dict[str, HostInventory] | None:
    invs = await inventories(nc, n)
    return invs if len(invs) == n else None


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_bench_failover_smallest(tmp_path: Path) -> None:
    """bench/bench_failover.py at one round (the figures are not judged here: a loaded
    machine is no place for latency targets; bench/RESULTS.md is)."""
    from tests.test_bench_smoke import run_bench

    text = run_bench("bench_failover.py", tmp_path, "-n", "1")
    assert "failover: kill -9 of the actor's host → replacement answers, one server" in text
    found = re.search(r"^- rounds: 1; kill → replacement answers p50 ([\d.]+) ms", text, re.M)
    assert found and float(found[1]) > 0, text
    for step in ("DISCONNECT advisory here", "agent: host gone", "actor.start command",
                 "actor_started event", "replacement answers"):
        assert re.search(rf"^  - {step}: \d+ / \d+ / \d+ \(n=1\)$", text, re.M), (step, text)
