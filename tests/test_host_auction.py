"""Auctions against a real nats-server: three in-process hosts with different labels bid
or decline with a reason, for every selector form and for providers already running."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client

from hostagent.host import Host, HostConfig
from lattice.ids import random_actor_id
from lattice.localnats import NatsServer
from lattice.natsutil import connect
from lattice.protocol import AuctionRequest, CommandOp, StartProviderCommand, Subjects
from tests.hostproc import auction, command, ping

LABELS = {"twelve": {"leds": "12", "zone": "a"}, "eight": {"leds": "8"}, "none": {"zone": "b"}}


@pytest.fixture
async def hosts(nats_server: NatsServer, lattice_id: str) -> AsyncIterator[dict[str, Host]]:
    conn = await connect(nats_server.url)
    made = {
        name: Host(conn, HostConfig(name=name, labels=labels, lattice=lattice_id, heartbeat_s=30))
        for name, labels in LABELS.items()
    }
    for h in made.values():
        await h.start()
    try:
        yield made
    finally:
        for h in made.values():
            await h.stop()
        await conn.close()


def actor_auction(*constraints: str) -> AuctionRequest:
    return AuctionRequest(kind="actor", actor_id=random_actor_id(), constraints=list(constraints))


@pytest.mark.parametrize(
    ("constraints", "bidders", "declines"),
    [
        (["leds=12"], {"twelve"},
         {"eight": "label leds=8, wants 12", "none": "label leds missing"}),
        (["leds"], {"twelve", "eight"}, {"none": "label leds missing"}),
        (["!leds"], {"none"},
         {"twelve": "label leds present, wants it absent",
          "eight": "label leds present, wants it absent"}),
        (["leds!=12"], {"eight", "none"}, {"twelve": "label leds=12, wants anything else"}),
        (["leds", "zone=a"], {"twelve"},
         {"eight": "label zone missing", "none": "label leds missing; label zone=b, wants a"}),
        (["hostcore.os"], set(), {n: "label hostcore.os missing" for n in LABELS}),
        ([], set(LABELS), {}),
    ],
)
async def test_only_matching_hosts_bid(
    nc: Client, lattice_id: str, hosts: dict[str, Host], constraints: list[str],
    bidders: set[str], declines: dict[str, str],
) -> None:
    request = actor_auction(*constraints)
    replies = await auction(nc, lattice_id, request, expect=3)
    by_name = {h.config.name: replies[h.host_id] for h in hosts.values()}
    assert {n for n, r in by_name.items() if r.bid} == bidders
    assert {n: r.reason for n, r in by_name.items() if not r.bid} == declines
    for name, reply in by_name.items():
        assert reply.auction_id == request.auction_id
        assert reply.labels == LABELS[name] and reply.load == 0


async def test_invalid_constraint_is_declined_by_name(
    nc: Client, lattice_id: str, hosts: dict[str, Host]
) -> None:
    replies = await auction(nc, lattice_id, actor_auction("leds=12", "!leds=3"), expect=3)
    assert len(replies) == 3
    for reply in replies.values():
        assert not reply.bid and reply.reason.startswith("invalid constraint '!leds=3'")


async def test_host_already_running_the_provider_declines_it(
    nc: Client, lattice_id: str, hosts: dict[str, Host]
) -> None:
    twelve = hosts["twelve"]
    start = StartProviderCommand(capability_id="iot:ledcontroller", vendor_id="wascc")
    assert (await command(nc, lattice_id, twelve.host_id, CommandOp.PROVIDER_START, start)).changed
    request = AuctionRequest(kind="provider", capability_id="iot:ledcontroller",
                             vendor_id="wascc", constraints=["leds"])
    replies = await auction(nc, lattice_id, request, expect=3)
    assert not replies[twelve.host_id].bid
    assert replies[twelve.host_id].reason == "already runs provider iot:ledcontroller/default"
    assert replies[twelve.host_id].load == 1
    assert replies[hosts["eight"].host_id].bid
    # another binding name of the same capability is a different provider
    other = request.model_copy(update={"binding_name": "backup"})
    assert (await auction(nc, lattice_id, other, expect=3))[twelve.host_id].bid


async def test_malformed_auctions_are_dropped_not_fatal(
    nc: Client, lattice_id: str, hosts: dict[str, Host]
) -> None:
    subjects = Subjects(lattice_id)
    for garbage in (b"", b"{", b'{"kind": "robot"}', b"[]"):
        await nc.publish(subjects.auction("actor"), garbage, reply=nc.new_inbox())
    wrong_kind = AuctionRequest(kind="provider", capability_id="a:b")
    replies = await auction(nc, lattice_id, wrong_kind.model_copy(update={"kind": "actor"}),
                            expect=3)
    assert all(not r.bid for r in replies.values())
    assert len(await ping(nc, lattice_id, expect=3, timeout=5)) == 3
