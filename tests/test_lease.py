"""The leader lease in a real JetStream key-value bucket: one leader, takeover, release;
only the leader writes status."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from gitsync.status import StatusWriter
from lattice.clock import ManualClock
from lattice.localnats import NatsServer
from lattice.manifests import DesiredState
from lattice.natsutil import NatsOptions, connect
from lattice.protocol import Subjects, utcnow
from lattice.status import Phase, StatusReport
from reconciler import agent as agent_module
from reconciler.agent import Agent
from reconciler.config import AgentConfig
from reconciler.executor import Executor
from reconciler.lease import Lease, LeaseTTLError
from reconciler.lease_thread import LeaseThread
from reconciler.revision import Revision
from tests.helpers import eventually
from tests.lattice_e2e import init_gitops

TTL = 1.5


async def test_only_one_holds_and_release_hands_over(nats_server: NatsServer) -> None:
    subjects = Subjects("lease1")
    nc1, nc2 = await connect(nats_server.url), await connect(nats_server.url)
    a = Lease(nc1, subjects, holder="a", ttl=TTL)
    b = Lease(nc2, subjects, holder="b", ttl=TTL)
    try:
        assert await a.step() is True
        assert await b.step() is False
        assert await a.step() is True  # renewal is a compare-and-set on our revision
        assert await b.step() is False
        await a.release()
        assert not a.is_leader
        assert await b.step() is True
        assert await a.step() is False
    finally:
        await nc1.close()
        await nc2.close()


async def test_the_hold_lapses_on_the_lease_clock_unless_renewed(
        nats_server: NatsServer) -> None:
    """The holder counts ``ttl`` from when it sent the request the server accepted: past
    that, on its clock, it no longer acts as leader (the server may have handed the lease
    on), though no answer came; a renewal holds it again for ``ttl``."""
    subjects = Subjects("lease-clock")
    nc1, nc2 = await connect(nats_server.url), await connect(nats_server.url)
    clock = ManualClock()
    a = Lease(nc1, subjects, holder="a", ttl=TTL, clock=clock)
    b = Lease(nc2, subjects, holder="b", ttl=TTL, clock=clock)
    tick = 1 / 1024
    try:
        assert a.expires_in() == 0.0 and not a.is_leader
        assert await a.step() and a.expires_in() == TTL
        clock.advance(TTL - tick)
        assert a.is_leader and a.expires_in() == tick
        clock.advance(tick)
        assert not a.is_leader and a.expires_in() == 0.0  # lapsed, without a word from NATS
        assert await a.step() and a.expires_in() == TTL  # renewed: its revision still holds
        assert not await b.step() and not b.is_leader  # the server still has a's entry
        await a.release()
        assert not a.is_leader and a.expires_in() == 0.0
        assert await b.step() and b.expires_in() == TTL
    finally:
        await nc1.close()
        await nc2.close()


async def test_a_released_lease_is_taken_at_once_by_a_watching_follower(
        nats_server: NatsServer) -> None:
    """With a 30 s TTL a follower campaigns every 10 s; a graceful hand-over must not
    wait for that tick: the follower watches the key and campaigns when it is deleted."""
    subjects = Subjects("lease-watch")
    nc1, nc2 = await connect(nats_server.url), await connect(nats_server.url)
    a = Lease(nc1, subjects, holder="a", ttl=30.0)
    b = Lease(nc2, subjects, holder="b", ttl=30.0)
    stop_a, stop_b = asyncio.Event(), asyncio.Event()
    task_a = asyncio.create_task(a.run(stop_a))
    task_b: asyncio.Task[None] | None = None
    try:
        await eventually(lambda: a.is_leader, timeout=5, message="a leads")
        task_b = asyncio.create_task(b.run(stop_b))
        await eventually(lambda: b._kv is not None, timeout=5, message="b campaigned once")
        assert not b.is_leader
        stop_a.set()  # a stops and releases
        released = time.monotonic()
        await asyncio.wait_for(task_a, 5)
        await eventually(lambda: b.is_leader, timeout=5, interval=0.01,
                         message="b takes the released lease")
        took = time.monotonic() - released
        assert took < 2.0, f"hand-over took {took:.2f}s (the next campaign tick is 10 s)"
    finally:
        stop_a.set()
        stop_b.set()
        if task_b is not None:
            await asyncio.wait_for(task_b, 5)
        await asyncio.gather(task_a, return_exceptions=True)
        await nc1.close()
        await nc2.close()


async def test_takeover_within_two_ttl_when_leader_dies(nats_server: NatsServer) -> None:
    subjects = Subjects("lease2")
    nc1, nc2 = await connect(nats_server.url), await connect(nats_server.url)
    a = Lease(nc1, subjects, holder="a", ttl=TTL)
    b = Lease(nc2, subjects, holder="b", ttl=TTL)
    stop_a, stop_b = asyncio.Event(), asyncio.Event()
    task_a = asyncio.create_task(a.run(stop_a))
    await eventually(lambda: a.is_leader, timeout=5, message="a leads")
    task_b = asyncio.create_task(b.run(stop_b))
    try:
        assert await b.step() is False  # a renews: b cannot take it
        # a dies without releasing: its connection goes, its renewals stop
        await nc1.close()
        died = time.monotonic()
        task_a.cancel()
        await eventually(lambda: b.is_leader, timeout=2 * TTL + 2, interval=0.05,
                         message="b takes over")
        assert time.monotonic() - died <= 2 * TTL + 0.5
    finally:
        stop_b.set()
        await asyncio.gather(task_a, task_b, return_exceptions=True)
        await nc2.close()


# ---------------------------------------------------------------- the bucket's TTL


async def test_an_existing_bucket_takes_the_configured_ttl(nats_server: NatsServer) -> None:
    """A bucket made by an agent run with --lease-ttl 30s, then agents with TTL: takeover
    within 2 x TTL, not 30 s."""
    subjects = Subjects("lease5")
    nc0 = await connect(nats_server.url)
    first = Lease(nc0, subjects, holder="first", ttl=30.0)
    assert await first.step()
    await first.release()
    await nc0.close()
    nc1, nc2 = await connect(nats_server.url), await connect(nats_server.url)
    a = Lease(nc1, subjects, holder="a", ttl=TTL)
    b = Lease(nc2, subjects, holder="b", ttl=TTL)
    try:
        assert await a.step()
        info = await nc2.jetstream().stream_info(f"KV_{subjects.lease_bucket}")
        assert info.config.max_age == TTL
        assert not await b.step()
        await nc1.close()  # a dies holding the lease
        died = time.monotonic()
        await eventually(b.step, timeout=2 * TTL + 5, interval=TTL / 3, message="b takes over")
        assert time.monotonic() - died <= 2 * TTL + 0.5
    finally:
        await nc2.close()


async def test_a_bucket_ttl_that_cannot_be_updated_is_refused(tmp_path: Path) -> None:
    conf = tmp_path / "auth.conf"
    conf.write_text("""authorization { users = [
      {user: admin, password: admin}
      {user: agent, password: agent,
       permissions: {publish: {allow: [">"], deny: ["$JS.API.STREAM.UPDATE.>"]}}}
    ] }
    """)
    srv = NatsServer(data_dir=tmp_path / "nats", extra_args=["-c", str(conf)]).start()
    subjects = Subjects("lease6")
    url = srv.url.replace("nats://", "nats://{0}:{0}@")
    admin, agent = await connect(url.format("admin")), await connect(url.format("agent"))
    try:
        assert await Lease(admin, subjects, holder="admin", ttl=30.0).step()
        lease = Lease(agent, subjects, holder="agent", ttl=TTL)
        with pytest.raises(LeaseTTLError) as err:
            await lease.step()
        assert "TTL of 30s, but --lease-ttl is 1.5s" in str(err.value)
        assert not lease.is_leader
    finally:
        await admin.close()
        await agent.close()
        srv.stop()


# ---------------------------------------------------------------- only the leader writes


def _repo(tmp: Path) -> Path:
    init_gitops(tmp).close()
    return tmp / "gitops"


async def test_the_agent_flushes_status_before_it_releases_the_lease(
    nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flushed_as_leader: list[bool] = []
    agent = Agent(AgentConfig(repo=str(_repo(tmp_path)), nats=NatsOptions(url=nats_server.url),
                              data_dir=tmp_path / "data", lattice="lease3", lease_ttl=TTL))

    class Writer(StatusWriter):
        def flush(self) -> None:
            flushed_as_leader.append(agent.lease is not None and agent.lease.is_leader)
            super().flush()

    monkeypatch.setattr(agent_module, "StatusWriter", Writer)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        await eventually(lambda: agent.reconciles and agent.last_report, timeout=20,
                         message="the agent leads and reports")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert flushed_as_leader and all(flushed_as_leader), flushed_as_leader
    assert agent.lease is not None and not agent.lease.is_leader  # released afterwards


async def test_a_follower_publishes_no_status(nats_server: NatsServer, tmp_path: Path) -> None:
    published: list[object] = []

    class Writer:  # records what the agent would write to git
        def publish(self, report: StatusReport, **kw: object) -> None:
            published.append(report)

        def note(self, sha: str, note: object) -> None:
            published.append(note)

    subjects = Subjects("lease4")
    nc1, nc2 = await connect(nats_server.url), await connect(nats_server.url)
    try:
        leader = Lease(nc1, subjects, holder="leader", ttl=TTL)
        assert await leader.step()
        agent = Agent(AgentConfig(repo="unused", nats=NatsOptions(url=nats_server.url),
                                  data_dir=tmp_path, lattice="lease4", lease_ttl=TTL))
        agent.lease = Lease(nc2, subjects, holder="follower", ttl=TTL)
        assert not await agent.lease.step()
        agent.executor = Executor(nc2, subjects, agent.observed)
        agent.writer = Writer()  # type: ignore[assignment]
        agent.applied = Revision(sha="0" * 40, first_seen=utcnow())
        await agent._report(DesiredState(revision="0" * 40), Phase.SYNCED)
        assert agent.last_report is not None  # assessed, so a takeover starts from it
        assert published == []
        agent.lease = leader  # the same pass on the leader: note and status branch
        await agent._report(DesiredState(revision="0" * 40), Phase.SYNCED)
        assert [type(p).__name__ for p in published] == ["RevisionNote", "StatusReport"]
    finally:
        await nc1.close()
        await nc2.close()


async def test_a_renewal_whose_answer_was_lost_keeps_the_lease(nats_server: NatsServer
                                                                ) -> None:
    """The key moved on while still naming us (our renewal landed, its answer did not
    reach us): the holder stays leader and renews from the key's revision, while another
    candidate still cannot take it. Before, it dropped the lease until the key expired."""
    subjects = Subjects("lease-lost-answer")
    nc1, nc2 = await connect(nats_server.url), await connect(nats_server.url)
    a = Lease(nc1, subjects, holder="a", ttl=6.0)
    b = Lease(nc2, subjects, holder="b", ttl=6.0)
    try:
        assert await a.step() is True
        kv = await a._bucket()
        await kv.put("leader", a._value())  # a renewal that landed, its answer lost
        assert await a.step() is True  # refused on the stale revision, adopted the key's
        assert await a.step() is True  # and renews from it
        assert await b.step() is False
        assert a.is_leader and a.changed.is_set()  # set once, on the first acquisition
    finally:
        await nc1.close()
        await nc2.close()


async def test_a_renewal_that_gets_no_answer_is_retried_before_the_hold_lapses(
        nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A renewal whose answer never comes (a cluster re-electing the bucket's stream
    leader as a partition heals): the attempt is given up after ``ttl / 3`` and retried
    ``ttl / 12`` later, so the hold never lapses. Before, the attempt waited JetStream's
    5 s timeout and the next came ``ttl / 3`` after that: the lease lapsed (CI, the
    partition test at its heal)."""
    ttl = 3.0
    nc = await connect(nats_server.url)
    a = Lease(nc, Subjects("lease-no-answer"), holder="a", ttl=ttl)
    stop = asyncio.Event()
    try:
        assert await a.step()
        kv = await a._bucket()
        real, calls = kv.update, []

        async def update(*args: object, **kwargs: object) -> int:
            calls.append(time.monotonic())
            if len(calls) == 1:
                await asyncio.Event().wait()  # this answer never comes
            return await real(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(kv, "update", update)
        running = asyncio.create_task(a.run(stop))
        lapsed = []
        end = time.monotonic() + 2 * ttl
        while time.monotonic() < end:  # sampling, not synchronisation
            if not a.is_leader:
                lapsed.append(time.monotonic())
            await asyncio.sleep(0.05)
        stop.set()
        await running
        assert not lapsed, f"the hold lapsed {lapsed[0] - (end - 2 * ttl):.2f} s in"
        assert len(calls) >= 3, calls  # the hung one, its retry, the next renewal
        assert calls[1] - calls[0] < ttl / 3 + ttl / 12 + 1.0, calls
    finally:
        stop.set()
        await nc.close()


async def test_the_lease_thread_renews_while_the_agents_loop_is_blocked(
        nats_server: NatsServer) -> None:
    """The agent's loop busy for longer than the TTL (10,000 acks and events to read, under
    load): a lease renewed from that loop lapsed mid-pass (bench_scale at 10,000 hosts).
    The lease thread renews on its own loop and connection: still the leader after the
    block, and a rival cannot take the key meanwhile."""
    subjects = Subjects("lease-thread")
    opts = NatsOptions(url=nats_server.url)
    held = LeaseThread(opts, subjects, holder="busy", ttl=1.5)
    rival_nc = await connect(nats_server.url)
    try:
        assert await held.start()
        time.sleep(4.0)  # the agent's loop blocked: 2.7 TTLs without a turn
        assert held.is_leader
        assert not await Lease(rival_nc, subjects, holder="rival", ttl=1.5).step()
    finally:
        await held.stop()
        await rival_nc.close()
    assert not held.is_leader  # released
