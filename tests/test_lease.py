"""The leader lease in a real JetStream key-value bucket: one leader, takeover, release."""

from __future__ import annotations

import asyncio
import time

from lattice.localnats import NatsServer
from lattice.natsutil import connect
from lattice.protocol import Subjects
from reconciler.lease import Lease
from tests.helpers import eventually

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
