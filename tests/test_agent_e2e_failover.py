"""End to end, failures: a host killed, the agent killed mid-reconcile, the leader killed,
the agent stopped by a signal. Real nats-server, host and agent processes, git repo; the
clocks start at the kill and stop at the event or lease entry that answers it.
"""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime

import pytest

from gitsync.status import read_note, read_status
from lattice.protocol import CloudEvent, EventType
from lattice.status import Phase
from tests.agentproc import AgentProcess
from tests.helpers import eventually
from tests.lattice_e2e import (
    ACTOR,
    HEARTBEAT_TIMEOUT,
    EventLog,
    Lattice,
    lat,
    repo,
    settled,
    three_hosts,
    where,
)

__all__ = ["lat", "repo"]  # fixtures

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


async def test_heals_when_the_actor_host_is_killed(lat: Lattice) -> None:
    """Within heartbeat-timeout + 1 s of the kill the actor runs on another host, and the
    status returns to Synced."""
    await three_hosts(lat)
    sha = lat.commit({"deployments/d.yaml": {
        "kind": "Deployment", "metadata": {"name": "heal"},
        "spec": {"actors": [{"id": ACTOR, "affinity_rules": ["zone"]}]}}}, "deploy")
    lat.agent()
    await eventually(lambda: lat.note_phase(sha, Phase.SYNCED), timeout=30, message="Synced")
    invs = await settled(lat)
    [victim] = where(invs, actor=ACTOR)
    victim_id = next(hid for hid, inv in invs.items() if inv.name == victim)
    host = next(h for h in lat.pool.hosts if h.name == victim)
    loop = asyncio.get_running_loop()
    async with EventLog(lat.nc, lat.lattice) as events:
        killed, killed_wall = loop.time(), datetime.now(UTC)
        host.kill()
        healed, started = await events.first(EventType.ACTOR_STARTED, since=killed,
                                             actor_id=ACTOR)
    host.wait()
    assert started.data["host_id"] != victim_id
    print(f"heal {healed - killed:.2f}s after the kill")
    assert healed - killed < HEARTBEAT_TIMEOUT + 1.0, (
        f"actor restarted {healed - killed:.2f}s after the kill")
    [name] = where(await settled(lat), actor=ACTOR)
    assert name != victim

    async def synced_again() -> bool:
        st = await asyncio.to_thread(read_status, lat.repo)
        if st is None or st.summary.updated is None or st.summary.updated < killed_wall:
            return False
        dep = st.deployments.get("heal")
        return (st.summary.applied_revision, st.summary.phase, st.summary.hosts) == (
            sha, Phase.SYNCED, 2) and dep is not None and str(dep.actors) == "1/1" and [
            p.host_name for p in dep.placements if p.kind == "actor"] == [name]

    await eventually(synced_again, timeout=15, message="status branch Synced after the heal")
    await eventually(lambda: lat.note_phase(sha, Phase.SYNCED), timeout=15,
                     message="note Synced after the heal")


async def test_agent_killed_mid_reconcile_never_duplicates(lat: Lattice) -> None:
    """kill -9 the agent the moment the first replica starts; its successor completes the
    deployment without starting anything twice.

    The kill comes from this process, on the event: on a loaded machine it can come after
    the first agent has finished and noted Synced, and then nothing was tested. So such an
    attempt is followed by another that scales the deployment up by ``STEP`` with a new
    first agent (at most ``ATTEMPTS``); the counts below hold across attempts."""
    step, attempts = 6, 3
    await three_hosts(lat)
    victims: list[AgentProcess] = []

    def kill_on_first_start(ev: CloudEvent) -> None:
        if ev.event_type is EventType.ACTOR_STARTED:
            for agent in victims:
                agent.proc.send_signal(signal.SIGKILL)  # at once, in the event callback
            victims.clear()

    replicas, too_late = 0, 0
    async with EventLog(lat.nc, lat.lattice) as events:
        events.on_event.append(kill_on_first_start)
        for attempt in range(attempts):
            replicas += step
            sha = lat.commit({"deployments/d.yaml": {
                "kind": "Deployment", "metadata": {"name": "many"},
                "spec": {"actors": [{"id": ACTOR, "replicas": replicas}],
                         "providers": [{"id": "wascc:messaging", "vendor_id": "nats"}]}}},
                f"deploy {replicas}")
            since = asyncio.get_running_loop().time()
            first = lat.agent(f"one{attempt}")
            victims.append(first)
            await events.first(EventType.ACTOR_STARTED, actor_id=ACTOR, since=since,
                               timeout=30)
            assert first.kill() == -signal.SIGKILL
            at_kill = len(events.of(EventType.ACTOR_STARTED, since=since))
            note = await asyncio.to_thread(read_note, lat.repo, sha)
            if note is None or note.phase is not Phase.SYNCED:
                break  # killed mid-pass: the case under test
            too_late += 1  # the first agent had finished: scale up and try again
        # the pass had not ended: the first agent never noted the revision Synced
        assert note is None or note.phase is not Phase.SYNCED, (too_late, note)
        second = lat.agent("two")
        await eventually(lambda: lat.note_phase(sha, Phase.SYNCED), timeout=30,
                         message=lambda: f"Synced after the restart\n{second.log()[-2000:]}")
        invs = await settled(lat)
        started = events.of(EventType.ACTOR_STARTED, actor_id=ACTOR)
        print(f"{at_kill} of {step} new replicas had started at the kill "
              f"({too_late} attempts too late)")
        assert len(started) == replicas, [e.data for _, e in started]
        assert events.of(EventType.ACTOR_STOPPED) == []
        assert len(events.of(EventType.PROVIDER_STARTED)) == 1
    assert sorted(e.data["instance_id"] for _, e in started) == sorted(
        a.instance_id for i in invs.values() for a in i.actors if a.actor_id == ACTOR)
    assert len(where(invs, actor=ACTOR)) == replicas
    assert len(where(invs, provider="wascc:messaging")) == 1
    # spread: replicas over 3 hosts means no host has more than a third
    names = where(invs, actor=ACTOR)
    assert max(names.count(n) for n in set(names)) == replicas // 3


async def _holder_is(lat: Lattice, holder: str | None) -> bool:
    return await lat.lease_holder() == holder


async def test_two_agents_one_acts_then_the_other_takes_over(lat: Lattice) -> None:
    """The follower issues no command and writes no status while the leader lives, and
    holds the lease within 2 x TTL of the leader's kill -9."""
    ttl = 2.0
    await three_hosts(lat)
    a = lat.agent("a", lease_ttl=ttl)
    b = lat.agent("b", lease_ttl=ttl)
    holders = await eventually(lambda: (a.holder(), b.holder()) if a.holder() and b.holder()
                               else None, timeout=30, message="both agents up")
    holder = await eventually(lat.lease_holder, timeout=10, message="a lease holder")
    assert holder in holders, (holder, holders)
    leader, follower = (a, b) if holder == holders[0] else (b, a)
    sha = lat.commit({"deployments/d.yaml": {
        "kind": "Deployment", "metadata": {"name": "ha"},
        "spec": {"actors": [{"id": ACTOR, "replicas": 2}]}}}, "deploy")
    await eventually(lambda: lat.note_phase(sha, Phase.SYNCED), timeout=30, message="Synced")
    created = (await lat.status_of(sha, Phase.SYNCED)).deployments["ha"].created
    assert await lat.lease_holder() == leader.holder()
    assert leader.commands_sent() >= 2, leader.log()[-2000:]
    assert follower.commands_sent() == 0, follower.log()[-2000:]
    # every status commit so far is one the leader logged; the follower logged none
    commits = lat.repo.git.rev_list("lattice/status").split()
    assert commits
    await eventually(lambda: all(f"status branch: {c[:12]}" in leader.log() for c in commits),
                     timeout=10, message="the leader made every status commit")
    assert follower.first_line("status branch:") is None, follower.log()[-2000:]
    assert follower.first_line("lease acquired") is None

    loop = asyncio.get_running_loop()
    killed = loop.time()
    leader.kill()
    await eventually(lambda: _holder_is(lat, follower.holder()), timeout=4 * ttl,
                     message=lambda: f"follower holds the lease\n{follower.log()[-2000:]}")
    takeover = loop.time() - killed
    print(f"takeover {takeover:.2f}s after the leader's kill (TTL {ttl}s)")
    assert takeover < 2 * ttl, f"took over {takeover:.2f}s after the kill"
    sha2 = lat.commit({"deployments/d.yaml": {
        "kind": "Deployment", "metadata": {"name": "ha"},
        "spec": {"actors": [{"id": ACTOR, "replicas": 3}]}}}, "scale")
    await eventually(lambda: lat.note_phase(sha2, Phase.SYNCED), timeout=30,
                     message=lambda: f"follower took over\n{follower.log()[-2000:]}")
    assert follower.commands_sent() >= 1
    assert len(where(await lat.inventories(), actor=ACTOR)) == 3
    after = await lat.status_of(sha2, Phase.SYNCED)
    # the new leader read the branch back: the deployment is as old as before the kill
    assert created is not None and after.deployments["ha"].created == created
    # the follower's first command and first status commit come after it won the lease
    acquired = follower.first_line("lease acquired")
    assert acquired is not None
    for needle in (" on host ", "status branch:"):
        first = follower.first_line(needle)
        assert first is not None and first > acquired, (needle, first, acquired)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_signal_exits_zero_and_releases_the_lease(lat: Lattice, sig: int) -> None:
    """Graceful shutdown on SIGTERM or SIGINT: exit 0, lease deleted, so a successor
    takes over at once, well before the TTL."""
    await three_hosts(lat)
    # Unreleased, the lease would expire a TTL after the last renewal (every TTL/3), so
    # no sooner than 2/3 TTL after the signal; the successor campaigns every TTL/3.
    ttl = 12.0
    a = lat.agent("a", lease_ttl=ttl)
    sha = lat.commit({"deployments/d.yaml": {
        "kind": "Deployment", "metadata": {"name": "bye"},
        "spec": {"actors": [{"id": ACTOR}]}}}, "deploy")
    await eventually(lambda: lat.note_phase(sha, Phase.SYNCED), timeout=30, message="Synced")
    b = lat.agent("b", lease_ttl=ttl)
    await eventually(b.holder, timeout=30, message="successor up")
    assert await lat.lease_holder() == a.holder()
    loop = asyncio.get_running_loop()
    stopped = loop.time()
    assert await asyncio.to_thread(a.stop, 10.0, sig=sig) == 0, a.log()[-2000:]
    assert await lat.lease_holder() in (None, b.holder())  # deleted, not left to expire
    await eventually(lambda: _holder_is(lat, b.holder()), timeout=ttl,
                     message=lambda: f"successor holds the lease\n{b.log()[-2000:]}")
    takeover = loop.time() - stopped
    print(f"takeover {takeover:.2f}s after {signal.Signals(sig).name} (TTL {ttl}s)")
    assert takeover < ttl / 2, f"took over {takeover:.2f}s after the signal"
    sha2 = lat.commit({"deployments/d.yaml": {
        "kind": "Deployment", "metadata": {"name": "bye"},
        "spec": {"actors": [{"id": ACTOR, "replicas": 2}]}}}, "scale")
    await eventually(lambda: lat.note_phase(sha2, Phase.SYNCED), timeout=20,
                     message=lambda: f"successor acted\n{b.log()[-2000:]}")
    assert loop.time() - stopped < ttl
    assert b.commands_sent() >= 1
