"""The local nats-server launcher and the scatter/gather helper, against a real server."""

from __future__ import annotations

import asyncio
import time

from nats.aio.client import Client
from nats.aio.msg import Msg

from lattice.localnats import NatsServer, free_port, wait_for_port
from lattice.natsutil import connect, scatter_gather


async def test_scatter_gather_ends_on_last_reply(nc: Client) -> None:
    async def responder(msg: Msg) -> None:
        await msg.respond(b"hi")

    for _ in range(3):
        await nc.subscribe("probe", cb=responder)
    t0 = time.monotonic()
    replies = await scatter_gather(nc, "probe", b"", timeout=5.0, max_replies=3)
    assert len(replies) == 3
    assert time.monotonic() - t0 < 2.0  # ended on the third reply, not at the deadline


async def test_scatter_gather_deadline_when_nobody_answers(nc: Client) -> None:
    replies = await scatter_gather(nc, "nobody", b"", timeout=0.2, max_replies=1)
    assert replies == []


def test_server_stops_and_restarts_on_same_port(nats_server: NatsServer) -> None:
    port, pid = nats_server.port, nats_server.pid
    nats_server.restart()
    assert nats_server.port == port and nats_server.pid != pid
    assert wait_for_port("127.0.0.1", port, timeout=5)
    nats_server.stop()
    assert nats_server.pid is None
    assert not wait_for_port("127.0.0.1", port, timeout=0.3)


async def test_jetstream_enabled(nc: Client) -> None:
    js = nc.jetstream()
    kv = await js.create_key_value(bucket="probe")
    await kv.put("k", b"v")
    assert (await kv.get("k")).value == b"v"
    await asyncio.sleep(0)


async def test_connect_gives_up_after_initial_timeout() -> None:
    """Nobody listens: the first connection fails with a clear error, not a hang."""
    url = f"nats://127.0.0.1:{free_port()}"
    started = time.monotonic()
    try:
        await connect(url, initial_timeout=0.5)
    except ConnectionError as exc:
        assert url in str(exc)
    else:
        raise AssertionError("connected to a port nobody listens on")
    assert time.monotonic() - started < 5


def test_what_the_server_said_outlives_the_socket_reset_after_it() -> None:
    """A refused login is followed by a reset; the reason shown is the refusal."""
    from nats.errors import AuthorizationError

    from lattice.natsutil import _most_telling, _remember

    refused = AuthorizationError()
    kept: list[Exception] = []
    for exc in [ConnectionResetError(), refused, *[ConnectionResetError()] * 40]:
        kept = _remember(kept, exc)
    assert len(kept) == 2 and kept[0] is refused
    assert _most_telling([refused, ConnectionResetError(104, "reset")]) == str(refused)
    reset = ConnectionResetError(104, "reset by peer")
    assert _most_telling([reset]) == "[Errno 104] reset by peer"
    assert _most_telling([]) == ""
