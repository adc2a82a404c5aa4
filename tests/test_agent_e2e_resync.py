"""End to end: drift that no event announces is repaired by the periodic resync alone.

The agent wakes on events and on heartbeats that show an inventory shrinking, so a hand
stop is normally repaired by its ``actor_stopped`` event (test_agent_e2e.py). Here the
host's NATS user may not publish ``actor_stopped`` or heartbeats (a real nats-server with
permissions, not a mock): the stop reaches nobody, and only the resync's ping shows it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import git
import pytest

from lattice.localnats import NatsServer
from lattice.natsutil import connect
from lattice.protocol import CommandOp, EventType, StopActorCommand
from lattice.status import Phase
from tests import agentproc
from tests.helpers import eventually
from tests.hostproc import HostPool, command
from tests.lattice_e2e import ACTOR, HEARTBEAT, EventLog, Lattice, count_hosts, repo, where

__all__ = ["repo"]  # fixtures

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

NATS_CONF = """
authorization {
  users = [
    {user: admin, password: admin}
    {user: quiet, password: quiet,
     permissions: {publish: {deny: ["lattice.*.evt.*.actor_stopped",
                                    "lattice.*.evt.*.host_heartbeat"]}}}
  ]
}
"""


@pytest.fixture
async def quiet_lat(repo: git.Repo, tmp_path: Path, lattice_id: str) -> AsyncIterator[Lattice]:
    """A lattice whose hosts cannot announce stops or send heartbeats."""
    conf = tmp_path / "nats.conf"
    conf.write_text(NATS_CONF)
    srv = NatsServer(data_dir=tmp_path / "nats", extra_args=["-c", str(conf)]).start()
    admin = f"nats://admin:admin@{srv.host}:{srv.port}"
    nc = await connect(admin)
    pool = HostPool(f"nats://quiet:quiet@{srv.host}:{srv.port}", lattice_id,
                    log_dir=tmp_path / "hosts", heartbeat=HEARTBEAT)
    try:
        yield Lattice(admin, lattice_id, nc, repo, pool, tmp_path)
    finally:
        agentproc.stop_all()
        pool.stop()
        await nc.close()
        srv.stop()


async def test_the_periodic_resync_alone_repairs_unannounced_drift(quiet_lat: Lattice) -> None:
    lat = quiet_lat
    # heartbeats are denied anyway; a long interval keeps the agent from expiring the host
    lat.pool.spawn(labels={"zone": "quiet"}, name="quiet", extra_args=["--heartbeat", "600"])
    await eventually(lambda: count_hosts(lat, 1), timeout=20, message="the host answers")
    resync = 2.0
    sha = lat.commit({"deployments/d.yaml": {
        "kind": "Deployment", "metadata": {"name": "drift"},
        "spec": {"actors": [{"id": ACTOR, "affinity_rules": ["zone=quiet"]}]}}}, "deploy")
    agent = lat.agent(resync=resync)
    await eventually(lambda: lat.note_phase(sha, Phase.SYNCED), timeout=30,
                     message=lambda: f"Synced\n{agent.log()[-2000:]}")
    [(host_id, inv)] = (await lat.inventories()).items()
    [inst] = inv.actors
    loop = asyncio.get_running_loop()
    async with EventLog(lat.nc, lat.lattice) as events:
        stopped = loop.time()
        ack = await command(lat.nc, lat.lattice, host_id, CommandOp.ACTOR_STOP,
                            StopActorCommand(actor_id=ACTOR, instance_id=inst.instance_id))
        assert ack.accepted and ack.changed, ack
        repaired, started = await events.first(EventType.ACTOR_STARTED, since=stopped,
                                               actor_id=ACTOR, timeout=resync + 10)
        # nobody heard of the stop: not the agent, not this full-rights subscriber
        assert events.of(EventType.ACTOR_STOPPED) == []
        assert events.of(EventType.HOST_HEARTBEAT) == []
    print(f"repaired {repaired - stopped:.2f}s after the unannounced stop (resync {resync}s)")
    assert repaired - stopped < resync + 1.5, f"repaired after {repaired - stopped:.2f}s"
    assert started.data["instance_id"] != inst.instance_id
    now = await lat.inventories()
    assert where(now, actor=ACTOR) == ["quiet"]
    assert [a.instance_id for a in now[host_id].actors] == [started.data["instance_id"]]
    await eventually(lambda: lat.note_phase(sha, Phase.SYNCED), timeout=15, message="Synced")
