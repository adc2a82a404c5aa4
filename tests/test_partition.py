"""Network faults made with network namespaces (issue 15 §3): a partition of a 3-server
cluster, and a leaf-node site cut off from its hub and reconnected.

Two namespaces joined by one veth pair (:class:`tests.clusterutil.NetnsPair`, addresses
10.213.0.1 and 10.213.0.2 that exist only inside them); the link is cut by bringing one
end down and healed by bringing it up. Every server, host and agent is a real process
started inside a namespace with ``ip netns exec``; the test reaches each side through a
thread that joined its namespace (:class:`tests.clusterutil.NetnsLoop`). Servers ping
every second (``ping_max: 2``), so a cut route or leaf link is dropped within ~3 s and
dialled again every second, as a real outage would be.

Skipped, saying why, where ``ip netns add`` is not allowed (no root / CAP_SYS_ADMIN).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client

from gitsync.status import read_status
from lattice.localcluster import poll_until
from lattice.natsutil import connect
from lattice.protocol import EventType, HostInventory
from lattice.status import Phase
from tests.agentproc import AgentProcess
from tests.clusterutil import (
    Ledger,
    NetnsLoop,
    NetnsPair,
    NsServer,
    census,
    exact,
    instances_of,
    inventories,
    netns_unavailable,
    server_config,
    spawn_agent_in,
    spawn_host_in,
    stop_processes,
    wait_formed,
)
from tests.helpers import eventually
from tests.hostproc import HostProcess
from tests.lattice_e2e import (
    ACTOR,
    OTHER_ACTOR,
    EventLog,
    commit_deployment,
    init_gitops,
    note_at_phase,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

A_ADDR, B_ADDR = NetnsPair.ADDR


@pytest.fixture
def pair(request: pytest.FixtureRequest) -> Iterator[NetnsPair]:
    why = netns_unavailable()
    if why:
        pytest.skip(f"network namespaces unavailable: {why}")
    tag = "p" if "partition" in request.node.name else "l"
    p = NetnsPair(tag).create()
    try:
        yield p
    finally:
        p.delete()
        assert p.exists() == [], "a namespace of the test is left behind"


class World:
    """The processes and side loops of one test, stopped by pid at the end."""

    def __init__(self, tmp: Path, lattice: str) -> None:
        self.tmp = tmp
        self.lattice = lattice
        self.servers: list[NsServer] = []
        self.hosts: list[HostProcess] = []
        self.agents: list[AgentProcess] = []
        self.loops: list[NetnsLoop] = []
        self.repo = init_gitops(tmp)

    def server(self, name: str, ns: str, port: int, config: str) -> NsServer:
        srv = NsServer(name, ns, port, self.tmp / name, config)
        self.servers.append(srv)
        return srv.start()

    def host(self, ns: str, url: str, name: str, **kw: object) -> HostProcess:
        h = spawn_host_in(ns, url, self.lattice, name=name, log_dir=self.tmp / "hosts",
                          **kw)  # type: ignore[arg-type]
        self.hosts.append(h)
        return h

    def agent(self, ns: str, url: str, *extra: str) -> AgentProcess:
        a = spawn_agent_in(ns, repo=str(self.repo.working_tree_dir), url=url,
                           lattice=self.lattice, data_dir=self.tmp / "agent", extra=extra)
        self.agents.append(a)
        return a

    def side(self, ns: str) -> NetnsLoop:
        loop = NetnsLoop(ns).start()
        self.loops.append(loop)
        return loop

    def commit(self, doc: dict[str, object], message: str) -> str:
        return commit_deployment(self.repo, doc, message)

    async def note_phase(self, sha: str, phase: Phase) -> bool:
        return await note_at_phase(self.repo, sha, phase)

    def close(self) -> None:
        stop_processes([*self.agents, *self.hosts])
        for s in reversed(self.servers):
            s.stop()
        for loop in self.loops:
            loop.stop()
        self.repo.close()


@pytest.fixture
def world(tmp_path: Path, lattice_id: str, pair: NetnsPair) -> Iterator[World]:
    w = World(tmp_path, lattice_id)
    try:
        yield w
    finally:
        w.close()


class Client_:
    """A NATS client of the lattice living on a side's loop (every call runs there)."""

    def __init__(self, side: NetnsLoop, url: str, lattice: str) -> None:
        self.side, self.url, self.lattice = side, url, lattice
        self.nc: Client | None = None

    async def open(self) -> Client_:
        self.nc = await self.side.run(lambda: connect(self.url))
        return self

    async def invs(self, n: int, timeout: float = 0.5) -> dict[str, HostInventory]:
        assert self.nc is not None
        nc = self.nc
        return await self.side.run(lambda: inventories(nc, self.lattice, n, timeout))

    async def close(self) -> None:
        if self.nc is not None:
            nc = self.nc
            await self.side.run(nc.close)


@contextlib.asynccontextmanager
async def events_on(side: NetnsLoop, c: Client_) -> AsyncIterator[EventLog]:
    """An :class:`EventLog` of ``c``'s connection, living on its side's loop (arrival
    times are ``time.monotonic()``, the same clock on every loop)."""
    assert c.nc is not None
    log = EventLog(c.nc, c.lattice)
    await side.run(log.__aenter__)
    try:
        yield log
    finally:
        await side.run(lambda: log.__aexit__(None, None, None))


def host_id(invs: dict[str, HostInventory], name: str) -> str:
    [hid] = [h for h, i in invs.items() if i.name == name]
    return hid


def deployment(name: str, want: dict[str, int],
               rules: dict[str, list[str]] | None = None) -> dict[str, object]:
    return {"kind": "Deployment", "metadata": {"name": name},
            "spec": {"actors": [{"id": a, "replicas": n,
                                 "affinity_rules": (rules or {}).get(a, [])}
                                for a, n in want.items()]}}


# ---------------------------------------------------------------- the partition


async def test_partition_minority_work_is_replaced_and_resolved_on_heal(
        world: World, pair: NetnsPair) -> None:
    """n0 and host hA in namespace a; n1, n2, hosts hB1, hB2 and the agent in b; the
    deployment runs one replica on each host. Cut: the majority replaces hA's replica
    while hA keeps running it. Heal: the two instances of that replica are one again
    (the earliest, hA's, is kept) within 2 s, and no other instance was touched."""
    a, b = pair.a, pair.b
    names = ["n0", "n1", "n2"]
    routes = [f"{A_ADDR}:6222", f"{B_ADDR}:6223", f"{B_ADDR}:6224"]
    for i, ns in enumerate([a, b, b]):
        world.server(names[i], ns, 4222 + i, server_config(
            names[i], port=4222 + i, monitor=8222 + i, cluster=routes[i],
            routes=[r for j, r in enumerate(routes) if j != i],
            store=world.tmp / names[i] / "js"))
    side_a, side_b = world.side(a), world.side(b)
    monitors = [f"http://{A_ADDR}:8222", "http://127.0.0.1:8223", "http://127.0.0.1:8224"]
    formed = await side_b.call(lambda: poll_until(lambda: wait_formed(monitors, names),
                                                  timeout=40, what="cluster across the link"))
    print(f"cluster across namespaces formed in {formed:.2f}s")
    url_b = "nats://127.0.0.1:4223,nats://127.0.0.1:4224"
    url_b2 = "nats://127.0.0.1:4224,nats://127.0.0.1:4223"
    world.host(a, "nats://127.0.0.1:4222", "hA")
    world.host(b, url_b, "hB1")
    world.host(b, url_b2, "hB2")
    cb = await Client_(side_b, url_b, world.lattice).open()
    ca = await Client_(side_a, "nats://127.0.0.1:4222", world.lattice).open()
    try:
        await eventually(lambda: _count(cb, 3), timeout=40, message="3 hosts answer in b")
        agent = world.agent(b, url_b, "--replicas", "3")
        want = {ACTOR: 3}
        sha = world.commit(deployment("part", want), "deploy")
        await eventually(lambda: world.note_phase(sha, Phase.SYNCED), timeout=60,
                         message=lambda: f"Synced\n{agent.log()[-3000:]}")
        invs = await cb.invs(3)
        assert exact(census(invs, "part"), want) is None, census(invs, "part")
        ha = host_id(invs, "hA")
        [orig_a] = [x.instance_id for x in invs[ha].actors]  # spread: one per host
        before = instances_of(invs)

        async with events_on(side_b, cb) as events:
            cut = time.monotonic()
            pair.cut()

            async def replaced() -> dict[str, HostInventory] | None:
                got = await cb.invs(2)
                return got if ha not in got and exact(census(got, "part"), want) is None \
                    else None

            during: dict[str, HostInventory] = await eventually(
                replaced, timeout=30, message="majority replaced hA")
            took = time.monotonic() - cut
            [replacement] = set(instances_of(during)) - set(before)
            # the minority keeps what it runs, unaware
            minority = await ca.invs(1)
            assert [x.instance_id for x in minority[ha].actors] == [orig_a]
            assert {i for i, h in before.items() if h != ha} <= set(instances_of(during))

            # a real partition: hold the cut until the majority has dropped its routes
            # to n0 (pings every 1 s, 2 unanswered), so the heal has to dial them again
            await side_b.call(lambda: poll_until(
                lambda: _no_route_to("n0", monitors[1:]), timeout=30, what="routes dropped"))
            cut_for = time.monotonic() - cut
            healed, heal_wall = time.monotonic(), time.time()
            pair.heal()

            async def resolved() -> dict[str, HostInventory] | None:
                got = await cb.invs(3, timeout=0.2)
                return got if len(got) == 3 and exact(census(got, "part"), want) is None \
                    else None

            after: dict[str, HostInventory] = await eventually(resolved, timeout=30, interval=0.02,
                                     message="one instance per replica")
            done = time.monotonic()
            back = [t for t, e in events.seen if t > healed and e.source == ha]
            stops = events.of(EventType.ACTOR_STOPPED, since=healed)
        visible = f"{back[0] - healed:.2f}s" if back else "n/a (no event of hA seen first)"
        stopped = stops[0][0] - healed if stops else float("inf")
        print(f"cut -> replacement running on the majority: {took:.2f}s; cut held "
              f"{cut_for:.2f}s (until the routes to n0 were dropped); heal -> hA heard "
              f"on the majority: {visible}; heal -> duplicate stopped: {stopped:.2f}s; "
              f"heal -> census exact: {done - healed:.2f}s")
        # nothing owned lost: every original instance runs where it ran; the replacement,
        # the later of the two instances of hA's replica, is the one stopped
        assert instances_of(after) == before
        assert [e.data["instance_id"] for _, e in stops] == [replacement]
        ledger = Ledger.read(h.log() for h in world.hosts)
        assert set(ledger.started) == set(before) | {replacement}
        assert set(ledger.stopped) == {replacement}
        assert stopped < 2.0, (f"over-replication resolved {stopped:.2f}s after the heal\n"
                               f"{agent.log()[-3000:]}")

        async def synced_again() -> bool:
            st = await asyncio.to_thread(read_status, world.repo)
            return (st is not None and st.summary.updated is not None
                    and st.summary.updated.timestamp() > heal_wall
                    and st.summary.phase == Phase.SYNCED and st.summary.hosts == 3)

        await eventually(synced_again, timeout=30, message="status Synced, 3 hosts, after heal")
    finally:
        await ca.close()
        await cb.close()


def _no_route_to(name: str, monitors: list[str]) -> str | None:
    """None once no server behind ``monitors`` has a route to ``name``."""
    from lattice.localcluster import monitor_json

    for url in monitors:
        routez = monitor_json(url, "/routez") or {}
        if any(r.get("remote_name") == name for r in routez.get("routes") or []):
            return f"{url} still routes to {name}"
    return None


async def _count(c: Client_, n: int) -> bool:
    return len(await c.invs(n)) >= n


# ---------------------------------------------------------------- a leaf site


async def test_leaf_site_cut_off_keeps_running_and_is_not_restarted(
        world: World, pair: NetnsPair) -> None:
    """A hub of 3 servers (namespace a: the agent and two zone=hub hosts) and a leaf
    node site (namespace b: its server and two zone=edge hosts). Cut: the edge hosts go on
    running the same instances; heal: the agent sees them again and is Synced without
    one actor_stopped or actor_started, every instance id as before."""
    hub, site = pair.a, pair.b
    names = ["n0", "n1", "n2"]
    routes = [f"127.0.0.1:{6222 + i}" for i in range(3)]
    for i in range(3):
        world.server(names[i], hub, 4222 + i, server_config(
            names[i], port=4222 + i, monitor=8222 + i, cluster=routes[i],
            routes=[r for j, r in enumerate(routes) if j != i], js_domain="vinculum",
            leaf_listen=f"0.0.0.0:{7422 + i}", store=world.tmp / names[i] / "js"))
    world.server("leaf", site, 4222, server_config(
        "leaf", port=4222, monitor=8222, jetstream=False,
        leaf_remotes=[f"{A_ADDR}:{7422 + i}" for i in range(3)], store=world.tmp / "leaf"))
    side_hub, side_site = world.side(hub), world.side(site)
    monitors = [f"http://127.0.0.1:{8222 + i}" for i in range(3)]
    await side_hub.call(lambda: poll_until(lambda: wait_formed(monitors, names), timeout=40,
                                           what="hub formed"))

    def leaf_up() -> str | None:
        from lattice.localcluster import monitor_json

        leafz = monitor_json("http://127.0.0.1:8222", "/leafz") or {}
        return None if leafz.get("leafnodes") else "no leaf link yet"

    await side_site.call(lambda: poll_until(leaf_up, timeout=30, what="leaf link"))
    hub_url = ",".join(f"nats://127.0.0.1:{4222 + i}" for i in range(3))
    edge = ["--js-domain", "vinculum"]
    world.host(hub, hub_url, "hub1", labels={"zone": "hub"})
    world.host(hub, hub_url, "hub2", labels={"zone": "hub"})
    world.host(site, "nats://127.0.0.1:4222", "edge1", labels={"zone": "edge"}, extra=edge)
    world.host(site, "nats://127.0.0.1:4222", "edge2", labels={"zone": "edge"}, extra=edge)
    ch = await Client_(side_hub, hub_url, world.lattice).open()
    cs = await Client_(side_site, "nats://127.0.0.1:4222", world.lattice).open()
    try:
        await eventually(lambda: _count(ch, 4), timeout=40, message="4 hosts answer on hub")
        agent = world.agent(hub, hub_url, "--replicas", "3", "--js-domain", "vinculum")
        want = {ACTOR: 2, OTHER_ACTOR: 2}
        rules = {ACTOR: ["zone=edge"], OTHER_ACTOR: ["zone=hub"]}
        sha = world.commit(deployment("site", want, rules), "deploy")
        await eventually(lambda: world.note_phase(sha, Phase.SYNCED), timeout=60,
                         message=lambda: f"Synced\n{agent.log()[-3000:]}")
        invs = await ch.invs(4)
        assert exact(census(invs, "site"), want) is None
        before = instances_of(invs)
        edge_ids = {h for h, i in invs.items() if i.labels.get("zone") == "edge"}
        on_edge = {i for i, h in before.items() if h in edge_ids}
        assert len(on_edge) == 2

        async with events_on(side_site, cs) as site_events:
            cut_wall = time.time()
            pair.cut()
            # the agent drops the edge hosts (their heartbeats stop): wait for it to say so
            await eventually(lambda: agent.log().count("considered gone") >= 2, timeout=30,
                             message=lambda: f"edge hosts dropped\n{agent.log()[-2000:]}")
            still = await cs.invs(2)
            assert set(instances_of(still)) == on_edge  # the site runs on, unchanged
            # the hub does not start edge replicas on hub hosts (affinity): nothing moves
            hub_now = await ch.invs(2)
            assert set(instances_of(hub_now)) == set(before) - on_edge
            healed = time.monotonic()
            pair.heal()

            async def synced_again() -> bool:
                st = await asyncio.to_thread(read_status, world.repo)
                return (st is not None and st.summary.updated is not None
                        and st.summary.updated.timestamp() > cut_wall
                        and st.summary.phase == Phase.SYNCED and st.summary.hosts == 4)

            await eventually(synced_again, timeout=60,
                             message=lambda: f"Synced after the heal\n{agent.log()[-3000:]}")
            back = time.monotonic() - healed
            after: dict[str, HostInventory] = await eventually(
                lambda: _all(ch, 4), timeout=20, message="4 hosts")
            churn = [e for _, e in site_events.seen if e.event_type in (
                EventType.ACTOR_STARTED, EventType.ACTOR_STOPPED)]
        print(f"leaf heal -> status Synced with 4 hosts: {back:.2f}s")
        assert churn == [], [e.data for e in churn]
        assert instances_of(after) == before
        ledger = Ledger.read(h.log() for h in world.hosts)
        assert set(ledger.started) == set(before) and ledger.stopped == {}
    finally:
        await cs.close()
        await ch.close()


async def _all(c: Client_, n: int) -> dict[str, HostInventory] | None:
    got = await c.invs(n)
    return got if len(got) == n else None

