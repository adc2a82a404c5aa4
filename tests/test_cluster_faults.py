"""Faults of the engine itself on a 3-server NATS cluster (issue 15 §3): a server killed
with -9 in the middle of a reconcile, and the server of the leader agent killed.

Real processes throughout: three routed nats-servers on loopback (JetStream on all, the
lease bucket R3 from the agents' ``--replicas 3``), ``lattice-host --runtime memory``
processes spread over the servers (host i prefers server i mod 3 and knows them all), two
``vinculum`` agents on one git repository. What is checked is what can be observed from
outside: inventories by ping (exactly one instance per desired replica), events
(started minus stopped), the status branch and notes, the lease key in JetStream, and each
agent's log (when it believed it led, and when it sent commands and status commits:
:func:`tests.clusterutil.leadership_problems`).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats.errors
import nats.js.errors
import pytest
from nats.aio.client import Client

from gitsync.status import read_status
from lattice.localcluster import NatsCluster
from lattice.natsutil import connect
from lattice.protocol import CloudEvent, EventType, Subjects
from lattice.status import Phase
from tests import agentproc
from tests.agentproc import AgentProcess, spawn_agent
from tests.clusterutil import (
    Ledger,
    census,
    exact,
    late_acks,
    leadership,
    leadership_problems,
    rotated,
    server_of,
)
from tests.helpers import eventually
from tests.hostproc import HostPool, spawn_host
from tests.lattice_e2e import (
    ACTOR,
    HEARTBEAT,
    OTHER_ACTOR,
    EventLog,
    Lattice,
    count_hosts,
    init_gitops,
    settled,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

LEASE_TTL = 6.0  #: the agent's default: longer than a lease stream's Raft election


@pytest.fixture
async def clat(tmp_path: Path, lattice_id: str) -> AsyncIterator[tuple[Lattice, NatsCluster]]:
    cluster = NatsCluster(3, tmp_path / "cluster")
    await asyncio.to_thread(cluster.start)
    repo = init_gitops(tmp_path)
    pool = HostPool(cluster.url, lattice_id, log_dir=tmp_path / "hosts", heartbeat=HEARTBEAT)
    nc = await connect(cluster.url)
    try:
        yield Lattice(cluster.url, lattice_id, nc, repo, pool, tmp_path), cluster
    finally:
        agentproc.stop_all()
        pool.stop()
        await nc.close()
        cluster.stop()
        repo.close()


def spread_hosts(lat: Lattice, cluster: NatsCluster, n: int) -> None:
    for i in range(n):
        lat.pool.hosts.append(spawn_host(rotated(cluster.urls, i), lat.lattice, labels={},
                                         name=f"h{i}", heartbeat=HEARTBEAT,
                                         log_dir=lat.pool.log_dir))


def agent_on(lat: Lattice, cluster: NatsCluster, name: str, server: int) -> AgentProcess:
    """An agent preferring ``server`` (it knows every server), lease bucket R3, the
    default resync (30 s: once a second it hits the lost wake-up of
    ``tests/test_agent_wakeups.py`` within a few runs)."""
    return spawn_agent(repo=str(lat.repo.working_tree_dir or ""),
                       nats_url=rotated(cluster.urls, server), lattice=lat.lattice,
                       data_dir=lat.tmp / f"agent-{name}", lease_ttl=LEASE_TTL, resync=30.0,
                       extra_args=["--replicas", "3"])


async def two_agents(lat: Lattice, cluster: NatsCluster) -> tuple[AgentProcess, AgentProcess]:
    """Agent a on server 0, the leader; then agent b on server 1, a follower."""
    a = agent_on(lat, cluster, "a", 0)
    await eventually(lambda: a.holder(), timeout=30, message="agent a up")
    await eventually(lambda: _holder_is(lat, a.holder()), timeout=30,
                     message=lambda: f"a leads\n{a.log()[-2000:]}")
    b = agent_on(lat, cluster, "b", 1)
    await eventually(lambda: b.holder(), timeout=30, message="agent b up")
    return a, b


async def _holder_is(lat: Lattice, holder: str | None) -> bool:
    return await holder_or_none(lat) == holder


async def holder_or_none(lat: Lattice, nc: Client | None = None) -> str | None:
    """The lease holder read through ``nc`` (default: the lattice's client), or None
    also while the lease stream elects a leader."""
    async def read() -> Any:
        kv = await (nc or lat.nc).jetstream().key_value(Subjects(lat.lattice).lease_bucket)
        return await kv.get("leader")

    try:
        entry = await asyncio.wait_for(read(), 1.0)
    except (TimeoutError, nats.errors.Error, nats.js.errors.Error):
        return None
    holder = json.loads(entry.value).get("holder") if entry.value else None
    return str(holder) if holder else None


async def lease_stream_led_by(lat: Lattice, cluster: NatsCluster, server: int) -> int:
    """Ask the lease stream's leader to step down until server ``server`` leads it (a
    new leader is elected at random: at most 12 tries); how many step-downs it took."""
    stream = f"KV_{Subjects(lat.lattice).lease_bucket}"
    for tries in range(12):
        if await lease_leader_server(lat, cluster) == server:
            return tries
        before = await lease_leader_server(lat, cluster)
        await lat.nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", b"", timeout=5)

        async def moved(before: int = before) -> bool:
            try:
                return await lease_leader_server(lat, cluster) != before
            except (AssertionError, nats.errors.Error, nats.js.errors.Error):
                return False

        await eventually(moved, timeout=20, message="a new lease stream leader")
    raise AssertionError(f"server {server} never led the lease stream in 12 step-downs")


async def one_leader(lat: Lattice, agents: dict[str, AgentProcess]) -> str | None:
    """The name of the one agent whose log says it leads, if the lease key names it too
    (the key may still name a leader that lost it until the entry expires)."""
    leading = [v.name for v in leadership(agents) if v.leads]
    if len(leading) != 1:
        return None
    return leading[0] if await holder_or_none(lat) == agents[leading[0]].holder() else None


def deployment(name: str, want: dict[str, int]) -> dict[str, object]:
    return {"kind": "Deployment", "metadata": {"name": name},
            "spec": {"actors": [{"id": a, "replicas": n} for a, n in want.items()]}}


async def synced_after(lat: Lattice, sha: str, since: datetime, name: str,
                       want: dict[str, int], hosts: int) -> bool:
    """The status branch, written after ``since``, says ``sha`` is Synced with ``name``'s
    actors all ready on ``hosts`` hosts."""
    st = await asyncio.to_thread(read_status, lat.repo)
    if st is None or st.summary.updated is None or st.summary.updated < since:
        return False
    dep = st.deployments.get(name)
    total = sum(want.values())
    return (st.summary.applied_revision, st.summary.phase, st.summary.hosts) == (
        sha, Phase.SYNCED, hosts) and dep is not None and str(dep.actors) == f"{total}/{total}"


async def lease_leader_server(lat: Lattice, cluster: NatsCluster) -> int:
    """Index of the server leading the lease bucket's stream."""
    js = lat.nc.jetstream()
    info = await js.stream_info(f"KV_{Subjects(lat.lattice).lease_bucket}")
    assert info.config.num_replicas == 3, info.config
    leader = info.cluster.leader if info.cluster else None
    names = [m.server_name for m in cluster.members]
    assert leader in names, (leader, names)
    return names.index(leader)


async def test_a_server_killed_mid_reconcile_loses_nothing(
        clat: tuple[Lattice, NatsCluster]) -> None:
    """kill -9 of the server leading the lease stream, at the first actor_started of a
    18-replica deployment over 6 hosts on 3 servers: afterwards exactly one instance per
    replica, started minus stopped is 18, one lease holder and never two agents leading,
    the deployment Synced again."""
    lat, cluster = clat
    spread_hosts(lat, cluster, 6)
    await eventually(lambda: count_hosts(lat, 6), timeout=40, message="6 hosts answer")
    a, b = await two_agents(lat, cluster)
    victim = await lease_leader_server(lat, cluster)
    pid = cluster.members[victim].pid
    assert pid is not None
    want = {ACTOR: 12, OTHER_ACTOR: 6}
    loop = asyncio.get_running_loop()
    killed: list[tuple[float, datetime, datetime]] = []

    def kill_on_first_start(ev: CloudEvent) -> None:
        if ev.event_type is EventType.ACTOR_STARTED and not killed:
            os.kill(pid, signal.SIGKILL)  # at once, in the event callback
            killed.append((loop.time(), datetime.now(UTC), datetime.now()))

    # the observer is on a server that stays up: core NATS events are not replayed
    watcher = await connect(rotated(cluster.urls, victim + 1))
    async with EventLog(watcher, lat.lattice) as events:
        events.on_event.append(kill_on_first_start)
        sha = lat.commit({"deployments/d.yaml": deployment("faults", want)}, "deploy")
        await eventually(lambda: killed, timeout=40,
                         message=lambda: f"a first actor_started\n{a.log()[-2000:]}")
        await asyncio.to_thread(cluster.kill, victim)  # reaps it
        at, wall, local = killed[0]
        await eventually(lambda: synced_after(lat, sha, wall, "faults", want, 6), timeout=90,
                         message=lambda: f"Synced again\n{a.log()[-2500:]}\n---\n{b.log()[-2500:]}")
        synced = loop.time() - at
        invs = await settled(lat)
        assert len(invs) == 6
        slots = census(invs, "faults")
        assert exact(slots, want) is None, (exact(slots, want), slots)
        # the hosts' own logs are the ledger: events published to the dying server are lost
        ledger = Ledger.read(h.log() for h in lat.pool.hosts)
        after_kill = ledger.started_since(local)
        seen = len(events.of(EventType.ACTOR_STARTED))
        print(f"killed server {victim} (lease stream leader) at the first actor_started; "
              f"{len(after_kill)} starts after the kill; Synced {synced:.1f}s after it; "
              f"{len(ledger.started)} started, {len(ledger.stopped)} stopped (transient "
              f"duplicates); {seen} actor_started events reached a client on a live server")
        running = {i for ids in slots.values() for i in ids}
        assert len(ledger.started) - len(ledger.stopped) == sum(want.values())
        assert running == set(ledger.started) - set(ledger.stopped)
    await watcher.close()
    agents = {"a": a, "b": b}
    leader: str = await eventually(lambda: one_leader(lat, agents), timeout=30,
                              message="one agent leads and holds the lease key")
    views = leadership(agents)
    assert leadership_problems(views) == [], views
    print(f"leader now {leader}; intervals {[(v.name, v.spans()) for v in views]}; "
          f"acks logged after the lease lapsed: {late_acks(views)}")
    # acks of the hosts on the dead server may be lost (the host started, the agent saw it
    # by ping): the log's commands are fewer than the starts, but not none
    assert sum(len(v.commands) for v in views) >= 1


async def test_the_leader_agents_server_killed_lease_stays_single(
        clat: tuple[Lattice, NatsCluster]) -> None:
    """kill -9 of the server the leader agent is connected to: the agent reconnects to
    another, at no sampled moment do two agents lead (their logs, every 100 ms, and the
    lease key), and a commit made after the kill is Synced."""
    lat, cluster = clat
    spread_hosts(lat, cluster, 3)
    await eventually(lambda: count_hosts(lat, 3), timeout=40, message="3 hosts answer")
    a, b = await two_agents(lat, cluster)
    sha = lat.commit({"deployments/d.yaml": deployment("lead", {ACTOR: 2})}, "deploy")
    await eventually(lambda: lat.note_phase(sha, Phase.SYNCED), timeout=40, message="Synced")
    monitors = [cluster.monitor_url(i) for i in range(3)]
    assert server_of(monitors, "vinculum") == [0, 1]  # a on 0, b on 1
    assert await lat.lease_holder() == a.holder()
    before = {i for ids in census(await settled(lat), "lead").values() for i in ids}

    # the worst case: server 0 also leads the lease stream (its Raft group elects anew)
    stepdowns = await lease_stream_led_by(lat, cluster, 0)
    samples: list[list[str]] = []
    keys: list[str | None] = []
    done = asyncio.Event()
    watcher = await connect(rotated(cluster.urls, 2))  # on a server that stays up

    async def sample_logs() -> None:  # the agents' own view, every 50 ms
        while not done.is_set():
            now = datetime.now()
            samples.append([v.name for v in leadership({"a": a, "b": b}) if v.leading_at(now)])
            await asyncio.sleep(0.05)  # the sampling period, not a synchronisation

    async def sample_key() -> None:  # the lease key, as often as JetStream answers
        while not done.is_set():
            keys.append(await holder_or_none(lat, watcher))
            await asyncio.sleep(0.05)

    loop = asyncio.get_running_loop()
    samplers = [asyncio.create_task(sample_logs()), asyncio.create_task(sample_key())]
    try:
        async with EventLog(watcher, lat.lattice) as events:
            killed = loop.time()
            wall = datetime.now(UTC)
            await asyncio.to_thread(cluster.kill, 0)

            await eventually(lambda: len(_vinculum_conns(cluster)) == 2, timeout=20,
                             message="both agents connected to servers 1 and 2")
            moved = loop.time() - killed
            sha2 = lat.commit({"deployments/d.yaml": deployment("lead", {ACTOR: 3})},
                              "scale")
            await eventually(lambda: synced_after(lat, sha2, wall, "lead", {ACTOR: 3}, 3),
                             timeout=90,
                             message=lambda: f"Synced after the kill\n{a.log()[-2500:]}\n---\n"
                                     f"{b.log()[-2500:]}")
            synced = loop.time() - killed
            invs = await settled(lat)
            slots = census(invs, "lead")
            assert exact(slots, {ACTOR: 3}) is None, slots
            after = {i for ids in slots.values() for i in ids}
            assert before < after  # nothing restarted, one more
            assert len(events.of(EventType.ACTOR_STARTED, since=killed)) == 1
            assert events.of(EventType.ACTOR_STOPPED, since=killed) == []
            # sample on until one agent leads and the key names it
            leader: str = await eventually(lambda: one_leader(lat, {"a": a, "b": b}), timeout=30,
                                      message="one agent leads and holds the lease key")
    finally:
        done.set()
        await asyncio.gather(*samplers)
        await watcher.close()
    assert a.alive() and b.alive()
    views = leadership({"a": a, "b": b})
    assert leadership_problems(views) == [], views
    both = [s for s in samples if len(s) > 1]
    assert both == [], both
    assert len(samples) >= 20, "too few samples of the agents' logs"
    holders = set(keys) - {None}
    assert holders <= {a.holder(), b.holder()}, holders
    print(f"lease stream moved to server 0 in {stepdowns} step-downs; "
          f"agent reconnected {moved * 1000:.0f} ms after the kill; new commit Synced "
          f"{synced:.1f}s after it; {len(samples)} log samples ({sum(not s for s in samples)} "
          f"with no leader), {len(keys)} key samples ({keys.count(None)} unreadable), "
          f"holders seen {sorted(str(h) for h in holders)}, "
          f"leader now {leader}; intervals {[(v.name, v.spans()) for v in views]}; "
          f"acks logged after the lease lapsed: {late_acks(views)}")


def _vinculum_conns(cluster: NatsCluster) -> list[int]:
    """One entry per running server per agent connection on it."""
    from lattice.localcluster import monitor_json

    out = []
    for i in cluster.running():
        connz = monitor_json(cluster.monitor_url(i), "/connz?limit=1024") or {}
        out += [i for c in connz.get("connections") or [] if c.get("name") == "vinculum"]
    return out
