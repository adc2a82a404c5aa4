"""End to end (issue 16): placement follows hosts, with real processes.

Five labelled hosts (``--runtime memory``), a real nats-server, a real git repository and
the real agent with ``--rebalance-interval 1s``: a deployment with 2 replicas on
``zone=eu`` heals onto the remaining eu host when one is killed, and is rebalanced to one
replica per eu host within the interval + 2 s of an eu host's return (make-before-break:
one start, then one stop); a daemon provider follows an ``edge`` host joining and leaving.
Nothing is mocked; the tests wait on conditions with deadlines, never on sleeps.
"""

from __future__ import annotations

import asyncio

import pytest

from gitsync.status import read_status
from lattice.protocol import EventType
from lattice.status import DeploymentStatus, Phase
from tests.helpers import eventually
from tests.lattice_e2e import ACTOR, EventLog, Lattice, count_hosts, lat, repo, where

__all__ = ["lat", "repo"]  # fixtures

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

REBALANCE_INTERVAL = 1.0
DEPLOYMENT = {
    "kind": "Deployment",
    "metadata": {"name": "placed"},
    "spec": {
        "actors": [{"id": ACTOR, "replicas": 2, "affinity_rules": ["zone=eu"]}],
        "providers": [{"id": "wascc:messaging", "binding_name": "default",
                       "vendor_id": "nats", "daemon": True, "affinity_rules": ["edge"]}],
    },
}


async def five_hosts(lat: Lattice) -> None:
    for name, labels in (("eu1", {"zone": "eu"}), ("eu2", {"zone": "eu"}),
                         ("us1", {"zone": "us"}), ("us2", {"zone": "us"}),
                         ("edge1", {"zone": "ap", "edge": "true"})):
        lat.pool.spawn(labels=labels, name=name)
    await eventually(lambda: count_hosts(lat, 5), timeout=30, message="5 hosts answer ping")


async def placed(lat: Lattice, *, actors: list[str] | None = None,
                 providers: list[str] | None = None) -> bool:
    invs = await lat.inventories()
    return ((actors is None or where(invs, actor=ACTOR) == actors)
            and (providers is None or where(invs, provider="wascc:messaging") == providers))


async def test_replicas_heal_then_rebalance_and_a_daemon_follows_hosts(lat: Lattice) -> None:
    await five_hosts(lat)
    sha = lat.commit({"deployments/placed.yaml": DEPLOYMENT}, "deploy")
    agent = lat.agent(extra_args=["--rebalance-interval", f"{REBALANCE_INTERVAL:g}s"])
    await eventually(lambda: lat.note_phase(sha, Phase.SYNCED), timeout=30,
                     message=lambda: f"Synced\n{agent.log()[-3000:]}")
    await eventually(lambda: placed(lat, actors=["eu1", "eu2"], providers=["edge1"]),
                     timeout=10, message="one replica per eu host, the daemon on edge1")

    # kill an eu host: both replicas end up on the other one
    eu1 = next(h for h in lat.pool.hosts if h.name == "eu1")
    eu1.kill()
    await eventually(lambda: placed(lat, actors=["eu2", "eu2"]), timeout=20,
                     message=lambda: f"both replicas on eu2\n{agent.log()[-3000:]}")

    # an eu host returns: one replica moves there, make-before-break, within 1 s + 2 s
    loop = asyncio.get_running_loop()
    async with EventLog(lat.nc, lat.lattice) as events:
        lat.pool.spawn(labels={"zone": "eu"}, name="eu3")
        _, joined = await events.first(EventType.HOST_STARTED, timeout=30)
        returned = loop.time()
        await eventually(lambda: placed(lat, actors=["eu2", "eu3"]),
                         timeout=REBALANCE_INTERVAL + 2.0,
                         message=lambda: f"rebalanced to eu2 and eu3\n{agent.log()[-4000:]}")
        took = loop.time() - returned
        started = events.of(EventType.ACTOR_STARTED, since=returned)
        stopped = events.of(EventType.ACTOR_STOPPED, since=returned)
        assert len(started) == 1 and len(stopped) == 1, (started, stopped)
        assert started[0][1].data.get("host_id") == joined.data.get("host_id")
        assert started[0][0] <= stopped[0][0]  # the new one ran before the old one stopped
    assert took <= REBALANCE_INTERVAL + 2.0
    assert "rebalance placed" in agent.log()

    # a daemon provider follows an edge host joining, then leaving
    edge2 = lat.pool.spawn(labels={"zone": "us", "edge": "true"}, name="edge2")
    await eventually(lambda: placed(lat, providers=["edge1", "edge2"]), timeout=20,
                     message=lambda: f"the daemon provider on edge2 too\n{agent.log()[-3000:]}")
    edge2.stop()
    await eventually(lambda: placed(lat, actors=["eu2", "eu3"], providers=["edge1"]),
                     timeout=20, message="edge2 gone: the daemon on edge1 alone")

    async def one_daemon_left() -> DeploymentStatus | None:
        st = await asyncio.to_thread(read_status, lat.repo)
        dep = st.deployments.get("placed") if st is not None else None
        ok = dep is not None and (str(dep.actors), str(dep.providers)) == ("2/2", "1/1")
        return dep if ok and dep is not None and dep.phase == Phase.SYNCED else None

    dep = await eventually(one_daemon_left, timeout=20, message="status: 2/2 actors, 1/1 daemon")
    assert [p.message for p in dep.placements if p.kind == "provider"] == [
        "vendor nats; daemon on every host with edge"]


SPREAD = {
    "kind": "Deployment",
    "metadata": {"name": "weighted"},
    "spec": {"actors": [{"id": ACTOR, "replicas": 10, "spread": [
        {"name": "east", "weight": 80, "requirements": ["zone=us-east"]},
        {"name": "west", "weight": 20, "requirements": ["zone=us-west"]}]}]},
}


async def test_an_80_20_spread_of_10_runs_8_east_and_2_west(lat: Lattice) -> None:
    for name, zone in (("east1", "us-east"), ("east2", "us-east"), ("west1", "us-west")):
        lat.pool.spawn(labels={"zone": zone}, name=name)
    await eventually(lambda: count_hosts(lat, 3), timeout=30, message="3 hosts answer ping")
    sha = lat.commit({"deployments/weighted.yaml": SPREAD}, "spread")
    agent = lat.agent()
    await eventually(lambda: lat.note_phase(sha, Phase.SYNCED), timeout=30,
                     message=lambda: f"Synced\n{agent.log()[-3000:]}")
    invs = await lat.inventories()
    assert where(invs, actor=ACTOR) == ["east1"] * 4 + ["east2"] * 4 + ["west1"] * 2

    async def reported() -> DeploymentStatus | None:
        st = await asyncio.to_thread(read_status, lat.repo)
        dep = st.deployments.get("weighted") if st is not None else None
        return dep if dep is not None and dep.phase == Phase.SYNCED else None

    dep = await eventually(reported, timeout=20, message="status: weighted Synced")
    messages = sorted(p.message or "" for p in dep.placements)
    assert messages.count("replica east-0; spread east: 8/8 (target 8)") == 1
    assert sum(m.endswith("spread west: 2/2 (target 2)") for m in messages) == 2
