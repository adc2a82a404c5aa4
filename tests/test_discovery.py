"""The agent's ping listens until the answers stop (issue 15 §4 and the leaf-site heal race).

Against a real nats-server: in-process hosts (the real :class:`hostagent.host.Host`) and,
for timing, plain responders on the ping subject that answer late or in a trickle. Before,
a ping stopped at the number of hosts the agent already knew (after a heal it knew the first
edge host back and missed the second, then placed a duplicate of the replica the second
one still ran) or after a fixed 0.5 s (at 4,000 hosts the first ping found 1,553).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from hostagent.host import Host, HostConfig
from lattice.localnats import NatsServer
from lattice.natsutil import NatsOptions, connect
from lattice.protocol import Subjects
from reconciler import discovery
from reconciler.agent import Agent
from reconciler.config import AgentConfig
from reconciler.observed import ObservedState
from tests.hostproc import ping
from tests.lattice_e2e import in_process_hosts, init_gitops


@pytest.fixture
async def hosts(nats_server: NatsServer, lattice_id: str) -> AsyncIterator[list[Host]]:
    async with in_process_hosts(nats_server.url, lattice_id, ("edge",) * 3) as made:
        yield made


async def test_a_full_ping_hears_hosts_beyond_those_known(
        nc: Client, lattice_id: str, hosts: list[Host]) -> None:
    """The agent knows one host of three (the first back after a heal): a full ping
    brings the other two, and says new hosts answered."""
    observed = ObservedState()
    observed.reset((await ping(nc, lattice_id, expect=3))[:1])
    assert len(observed) == 1
    new = await discovery.ping(nc, Subjects(lattice_id), observed, replace=False, full=True)
    assert new and len(observed) == 3


async def _trickle(nc: Client, subject: str, n: int, gap: float) -> None:
    """Answer each ping on ``subject`` with ``n`` answers, ``gap`` seconds apart."""
    async def answer(msg: Msg) -> None:
        async def later() -> None:
            for i in range(n):
                await asyncio.sleep(gap)  # the answers' pace is what is tested
                await nc.publish(msg.reply, f"answer {i}".encode())
        asyncio.get_running_loop().create_task(later())
    await nc.subscribe(subject, cb=answer)


async def test_answers_are_gathered_until_they_stop(nc: Client, lattice_id: str) -> None:
    """Ten answers 0.1 s apart (1 s in all, twice the old fixed window) are all heard; the
    gather ends about ``quiet`` after the last."""
    subject = Subjects(lattice_id).ping
    await _trickle(nc, subject, 10, 0.1)
    w = discovery.PingWindow(first=2.0, quiet=0.4, window=20.0)
    t0 = time.monotonic()
    got = await discovery.gather(nc, subject, b"{}", window=w)
    took = time.monotonic() - t0
    assert got == [f"answer {i}".encode() for i in range(10)]
    assert took < 1.0 + w.quiet + 5.0  # generous: a loaded 2-core machine


async def test_a_gather_is_bounded_by_its_window(nc: Client, lattice_id: str) -> None:
    """Answers that never stop: the gather ends at its window all the same."""
    subject = Subjects(lattice_id).ping
    await _trickle(nc, subject, 10_000, 0.02)
    t0 = time.monotonic()
    got = await discovery.gather(nc, subject, b"{}",
                                 window=discovery.PingWindow(quiet=1.0, window=0.8))
    took = time.monotonic() - t0
    assert got and 0.8 <= took < 0.8 + 3.0


async def test_known_hosts_answered_ends_a_resync_ping_early(
        nc: Client, lattice_id: str) -> None:
    """A resync ping among 2 known hosts ends ``settle`` after the second answer, not a
    ``quiet`` later: a converged lattice's resync does not wait for nobody."""
    subject = Subjects(lattice_id).ping
    await _trickle(nc, subject, 2, 0.01)
    w = discovery.PingWindow(first=5.0, quiet=5.0, settle=0.02, window=20.0)
    t0 = time.monotonic()
    got = await discovery.gather(nc, subject, b"{}", expect=2, window=w)
    assert len(got) == 2 and time.monotonic() - t0 < 4.0


async def test_a_host_joining_makes_the_next_ping_full(
        nats_server: NatsServer, nc: Client, lattice_id: str, tmp_path: Path) -> None:
    """A ``host_started`` the agent did not know (a host back after a heal) sets a full
    resync before the next pass: unplaced starts wait until every host was heard."""
    repo = init_gitops(tmp_path)
    agent = Agent(AgentConfig(repo=str(repo.working_tree_dir), data_dir=tmp_path / "data",
                              nats=NatsOptions(url=nats_server.url), lattice=lattice_id))
    await nc.subscribe(Subjects(lattice_id).events, cb=agent._on_event)
    conn = await connect(nats_server.url)
    host = Host(conn, HostConfig(name="back", labels={}, lattice=lattice_id, heartbeat_s=30))
    try:
        assert not agent.rejoined and not agent.resync_due
        await host.start()
        deadline = time.monotonic() + 10
        while not agent.rejoined and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # polls the condition, with a deadline
        assert agent.rejoined and agent.resync_due and len(agent.observed) == 1
    finally:
        await host.stop()
        await conn.close()


async def test_answers_the_lagging_loop_had_not_read_are_not_silence(
        nats_server: NatsServer, nc: Client, lattice_id: str) -> None:
    """On a loaded machine the agent's own loop lags: answers wait unread in its socket
    while the quiet runs out. Seen at 10,000 hosts under load: the first ping ended with 3
    hosts. The loop is blocked here (0.6 s, longer than the quiet of 0.2 s) while a responder on
    another thread and connection answers; the gather still counts every answer."""
    subject = Subjects(lattice_id).ping
    ready, done = threading.Event(), threading.Event()

    async def responder() -> None:
        conn = await connect(nats_server.url)

        async def answer(msg: Msg) -> None:
            await conn.publish(msg.reply, b"first")
            await conn.flush()
            await asyncio.sleep(0.2)  # while the gatherer's loop is blocked
            for i in range(LATE):  # 3 MB: more than the loop reads in one turn
                await conn.publish(msg.reply, f"late {i:05d} ".encode().ljust(1000, b"."))
            await conn.flush()
            done.set()

        await conn.subscribe(subject, cb=answer)
        await conn.flush()
        ready.set()
        await asyncio.to_thread(done.wait, 30)
        await conn.close()

    thread = threading.Thread(target=lambda: asyncio.run(responder()), daemon=True)
    thread.start()
    assert await asyncio.to_thread(ready.wait, 30)
    loop = asyncio.get_running_loop()

    async def lag(_msg: Msg) -> None:  # as the ping goes out: a lag of 0.6 s, 0.1 s later
        loop.call_later(0.1, time.sleep, 0.6)  # ("first" is in by then)

    await nc.subscribe(subject, cb=lag)
    w = discovery.PingWindow(first=5.0, quiet=0.2, window=20.0)
    got = await discovery.gather(nc, subject, b"{}", window=w)
    thread.join(30)
    assert got[0] == b"first" and len(got) == 1 + LATE, len(got)


LATE = 3000


def test_join_settle_waits_after_the_last_join_up_to_a_cap() -> None:
    now = [100.0]
    settle = discovery.JoinSettle(lambda: now[0], settle=1.0, cap=3.0)
    assert settle.hold() is None  # nobody joined: plan at once
    settle.joined()
    assert settle.hold() == 1.0
    now[0] = 100.6
    settle.joined()  # a second host 0.6 s later: wait 1 s after it
    assert settle.hold() == pytest.approx(1.0)
    for t in (101.4, 102.2, 102.9):  # joins keep coming: the cap ends the wait
        now[0] = t
        settle.joined()
    assert settle.hold() == pytest.approx(0.1)
    assert not settle.ended()  # still holding
    now[0] = 103.0
    assert settle.hold() is None
    assert settle.ended() and not settle.ended()  # once: the agent pings all, then places
    assert settle.hold() is None and not settle.ended()  # settled, no new burst: nothing
    now[0] = 103.5  # a join after the burst settled starts a new one
    settle.joined()
    assert settle.hold() == pytest.approx(1.0)


def test_while_settling_only_starts_by_auction_wait() -> None:
    from reconciler import actions as A

    now = [0.0]
    settle = discovery.JoinSettle(lambda: now[0], settle=1.0)
    start = A.StartActor(deployment="d", actor_id="M" + "A" * 55, replica=0, constraints=(),
                         annotations=(), avoid_hosts=(), reason="replica not running")
    stop = A.StopActor(host_id="N" + "B" * 55, actor_id="M" + "A" * 55, instance_id="i",
                       reason="one replica too many")
    assert settle.holding_back([start, stop]) == [start, stop]
    settle.joined()
    assert settle.holding_back([start, stop]) == [stop]  # the duplicate goes at once
    now[0] = 1.0
    assert settle.holding_back([start, stop]) == [start, stop]
