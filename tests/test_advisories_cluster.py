"""lattice/advisories.py on a two-server operator-mode cluster: a monitor on one server
sees the advisories of the other through the routes; a host whose server is killed moves
to the other server and is not gone; killed itself, it is."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from lattice.advisories import (
    ClientConnect,
    ClientDisconnect,
    ClientEvent,
    GoneDetector,
    subscribe_advisories,
)
from lattice.auth.store import AuthStore
from lattice.clock import ManualClock
from lattice.localnats import NatsServer, free_port
from tests.helpers import eventually
from tests.test_advisories import reap, spawn_host


class Cluster:
    """Two routed servers in operator mode with lattice ``adv``'s keys."""

    def __init__(self, tmp: Path) -> None:
        self.store = AuthStore(tmp / "state", "adv").initialise()
        routes = [free_port() for _ in range(2)]
        urls = ", ".join(f"nats-route://127.0.0.1:{p}" for p in routes)
        self.servers: list[NatsServer] = []
        for i, port in enumerate(routes):
            conf = tmp / f"server-{i}.conf"
            conf.write_text(self.store.server_config(tmp / f"jwt-{i}") + (
                f"cluster {{ name: adv, listen: \"127.0.0.1:{port}\", routes: [{urls}] }}\n"))
            self.servers.append(NatsServer(data_dir=tmp / f"nats-{i}",
                                           extra_args=["-c", str(conf)]))


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        for srv in c.servers:
            srv.start()
        yield c
    finally:
        for srv in c.servers:  # each by its own pid
            srv.stop(kill=True)


async def test_a_host_that_moves_off_a_killed_server_is_not_gone_but_a_killed_host_is(
        cluster: Cluster) -> None:
    a, b = cluster.servers
    nc = await nats.connect(a.url, user_credentials=str(cluster.store.issue_monitor().path),
                            allow_reconnect=False)
    arrivals: list[tuple[float, ClientEvent]] = []
    clock = ManualClock()
    detector = GoneDetector(0.25, clock=clock)

    def on_event(event: ClientEvent) -> None:
        arrivals.append((time.monotonic(), event))
        detector.observe(event)

    await subscribe_advisories(nc, cluster.store.account.public_key, on_event)
    await nc.flush()
    probe = cluster.store.issue("agent", "probe")

    deadline = time.monotonic() + 20  # poll until a client of b is seen from a
    while not any(e.client.name == "probe" for _, e in arrivals):
        assert time.monotonic() < deadline, "no routes between a and b within 20 s"
        pc = await nats.connect(b.url, user_credentials=str(probe.path), name="probe")
        await pc.close()
        await asyncio.sleep(0.1)

    host = cluster.store.issue("host", "host-0")
    proc = spawn_host([b.url, a.url], host)
    try:
        def on(server: NatsServer, kind: type[ClientEvent]) -> float | None:
            return next((t for t, e in arrivals if isinstance(e, kind)
                         and e.client.host_id == host.host_id
                         and e.server.name == f"vinculum-{server.port}"), None)
        await eventually(lambda: on(b, ClientConnect), timeout=30, message="host on b")

        killed_at = time.monotonic()
        b.stop(kill=True)
        moved = await eventually(lambda: on(a, ClientConnect), timeout=10,
                                 message="the host reconnected to a")
        print(f"server kill -> host's CONNECT on the other server: "
              f"{(moved - killed_at) * 1000:.1f} ms")
        assert on(b, ClientDisconnect) is None  # a killed server says nothing
        clock.advance(60)
        assert detector.due() == [] and detector.pending() == set()

        killed_at = time.monotonic()
        os.kill(proc.pid, signal.SIGKILL)
        down = await eventually(lambda: on(a, ClientDisconnect), timeout=10,
                                message="the host's DISCONNECT")
        print(f"host kill -> DISCONNECT: {(down - killed_at) * 1000:.1f} ms")
        assert detector.pending() == {host.host_id}
        clock.advance(0.25)
        assert detector.due() == [host.host_id]
    finally:
        reap([proc])
        await nc.close()
