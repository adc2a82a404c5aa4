"""A secured lattice, enforced by a real nats-server in operator mode (issue 11).

Credentials come from :class:`lattice.auth.store.AuthStore`; hosts and the agent are real
processes. What is checked is what the server refuses: anonymous clients, one host acting
on another's subjects or in its name, host credentials on the lease or the registry, one
lattice seeing another, and a revoked host.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import git
import nats
import nats.errors
import pytest
import yaml
from nats.aio.client import Client
from nats.aio.msg import Msg

from hostagent.host import server_barrier
from lattice.auth.server import push_account_jwt
from lattice.auth.store import AuthStore, Issued
from lattice.gantry import Gantry
from lattice.localnats import NatsServer
from lattice.natsutil import NatsOptions, connect, scatter_gather
from lattice.protocol import (
    CommandOp,
    EventType,
    HostInventory,
    HostStopped,
    PingRequest,
    StartActorCommand,
    Subjects,
    decode_event,
    encode,
    make_event,
)
from tests.agentproc import spawn_agent
from tests.helpers import eventually, serving
from tests.hostproc import HostPool
from tests.lattice_e2e import ACTOR, init_gitops

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

LATTICE = "sec"


class Secured:
    """A server in operator mode and the keys of lattice ``sec``."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.store = AuthStore(tmp / "state", LATTICE).initialise()
        self.conf = tmp / "server.conf"
        self.conf.write_text(self.store.server_config(tmp / "jwt"))
        self.server = NatsServer(data_dir=tmp / "nats", extra_args=["-c", str(self.conf)])

    def issue(self, role: str, name: str) -> Issued:
        return self.store.issue(role, name)  # type: ignore[arg-type]

    async def client(self, issued: Issued) -> Client:
        """A client with ``issued``'s credentials, as the project's processes connect."""
        return await connect(NatsOptions(url=self.server.url, creds_file=str(issued.path)),
                             initial_timeout=5)

    async def raw_host(self, issued: Issued, errors: list[Exception]) -> Client:
        """A bare nats-py client with a host's credentials that collects the server's
        asynchronous errors (permissions violations) in ``errors``."""
        async def on_error(exc: Exception) -> None:
            errors.append(exc)

        return await nats.connect(self.server.url, user_credentials=str(issued.path),
                                  error_cb=on_error, allow_reconnect=False,
                                  connect_timeout=2, inbox_prefix=f"_INBOX.{issued.host_id}")


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[Secured]:
    sec = Secured(tmp_path)
    with serving(sec.server):
        yield sec


@pytest.fixture
async def admin(secured: Secured) -> AsyncIterator[Client]:
    nc = await secured.client(secured.issue("admin", "admin"))
    try:
        yield nc
    finally:
        await nc.close()


async def ping(nc: Client, lattice: str = LATTICE, expect: int | None = None
               ) -> dict[str, HostInventory]:
    msgs = await scatter_gather(nc, Subjects(lattice).ping, encode(PingRequest()),
                                timeout=0.5, max_replies=expect)
    invs = [HostInventory.model_validate_json(m.data) for m in msgs]
    return {i.host_id: i for i in invs}


def violations(errors: list[Exception]) -> str:
    return " | ".join(str(e) for e in errors)


async def test_anonymous_and_unknown_clients_are_refused(secured: Secured) -> None:
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(secured.server.url, allow_reconnect=False, connect_timeout=2)
    # credentials of another operator's account are refused too
    stranger = AuthStore(secured.tmp / "other", LATTICE).initialise().issue("admin", "admin")
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(secured.server.url, user_credentials=str(stranger.path),
                           allow_reconnect=False, connect_timeout=2)


async def test_one_host_can_neither_command_nor_speak_for_another(
        secured: Secured, admin: Client) -> None:
    h0, h1 = secured.issue("host", "host-0"), secured.issue("host", "host-1")
    with HostPool(secured.server.url, LATTICE, log_dir=secured.tmp / "hosts") as pool:
        host0 = pool.spawn(labels={}, name="host-0", extra_args=["--creds", str(h0.path)])
        invs = await eventually(lambda: _one_host(admin), timeout=20,
                                message=lambda: f"host-0 answers a ping\n{host0.log()[-2000:]}")
        assert list(invs) == [h0.host_id]  # its id is the one its credentials fix

        errors: list[Exception] = []
        rogue = await secured.raw_host(h1, errors)
        subjects = Subjects(LATTICE)
        try:
            seen: list[Msg] = []
            sub = await rogue.subscribe(subjects.host_commands(h0.host_id),
                                        cb=collect(seen))
            start = StartActorCommand(actor_id=ACTOR, annotations={})
            await rogue.publish(subjects.host_command(h0.host_id, CommandOp.ACTOR_START),
                                encode(start), reply=f"_INBOX.{h1.host_id}.x")
            forged = make_event(EventType.HOST_STOPPED, h0.host_id,
                                HostStopped(host_id=h0.host_id, reason="forged"))
            await rogue.publish(subjects.event(EventType.HOST_STOPPED, h0.host_id),
                                encode(forged))
            await rogue.publish(subjects.event(EventType.HOST_HEARTBEAT, h0.host_id),
                                encode(forged))
            # on its own subject the server lets it through; receivers drop the forgery
            on_own = subjects.event(EventType.HOST_STOPPED, h1.host_id)
            got: list[object] = []
            watch = await admin.subscribe(subjects.events, cb=collect(
                got, lambda m: decode_event(m.data, m.subject)))
            await server_barrier(admin)
            await rogue.publish(on_own, encode(forged))
            await server_barrier(rogue)
            await eventually(lambda: len(errors) >= 4, timeout=5,
                             message=f"four violations: {violations(errors)}")
            await server_barrier(admin)
            await watch.unsubscribe()
            await sub.unsubscribe()
        finally:
            await rogue.close()
        said = violations(errors).lower()
        h0_id = h0.host_id.lower()
        assert f'subscription to "lattice.sec.ctl.host.{h0_id}.>"' in said
        assert f'publish to "lattice.sec.ctl.host.{h0_id}.actor.start"' in said
        assert f'publish to "lattice.sec.evt.{h0_id}.host_stopped"' in said
        assert f'publish to "lattice.sec.evt.{h0_id}.host_heartbeat"' in said
        assert seen == []
        assert got == [None]  # it arrived, and decode_event refused it
        # nothing started on host-0, and it is still there
        after = await ping(admin, expect=1)
        assert list(after) == [h0.host_id] and after[h0.host_id].actors == []
        assert host0.alive()


async def test_host_credentials_cannot_take_the_lease_or_write_the_registry(
        secured: Secured, admin: Client) -> None:
    gantry = Gantry(admin, LATTICE)
    assert await gantry.list() == []  # the admin made the bucket
    lease = Subjects(LATTICE).lease_bucket
    agent = await secured.client(secured.issue("agent", "agent"))
    host = await secured.client(secured.issue("host", "host-0"))
    try:
        kv = await agent.jetstream().create_key_value(bucket=lease, ttl=5, history=1)
        await kv.create("leader", b"agent")
        js = host.jetstream(timeout=1.0)
        with pytest.raises((nats.errors.TimeoutError, TimeoutError)):
            await js.key_value(lease)
        with pytest.raises((nats.errors.TimeoutError, TimeoutError)):
            await js.publish(f"$KV.{lease}.leader", b"host", timeout=1.0)
        store = await js.object_store(f"gantry_{LATTICE}")  # reading is allowed
        with pytest.raises((nats.errors.TimeoutError, TimeoutError)):
            await store.put("evil", b"\0asm")
        assert (await kv.get("leader")).value == b"agent"
        assert await gantry.list() == []
    finally:
        await agent.close()
        await host.close()


async def test_two_lattices_on_one_server_see_nothing_of_each_other(
        secured: Secured, admin: Client) -> None:
    other = AuthStore(secured.tmp / "state", "other").initialise()  # same operator
    await push_account_jwt(secured.server.url, str(other.system_creds), other.account_jwt())
    theirs = await connect(NatsOptions(url=secured.server.url,
                                       creds_file=str(other.issue("admin", "admin").path)))
    ours: list[str] = []
    mine: list[str] = []
    try:
        await admin.subscribe(">", cb=collect(ours, lambda m: m.subject))
        await server_barrier(admin)
        await theirs.subscribe(">", cb=collect(mine, lambda m: m.subject))
        for subject in ("lattice.other.ctl.ping", "lattice.sec.ctl.ping", "demo.echo"):
            await theirs.publish(subject, b"x")
        await eventually(lambda: len(mine) >= 3, timeout=5, message="their own traffic")
        await server_barrier(admin)
        assert [s for s in ours if not s.startswith("_INBOX")] == []
    finally:
        await theirs.close()


async def test_a_revoked_host_is_cut_off_at_once_and_its_work_moves(
        secured: Secured, admin: Client) -> None:
    repo = init_gitops(secured.tmp / "repo")
    hosts = {name: secured.issue("host", name) for name in ("host-0", "host-1")}
    agent_creds = secured.issue("agent", "agent")
    with HostPool(secured.server.url, LATTICE, log_dir=secured.tmp / "hosts") as pool:
        procs = {name: pool.spawn(labels={}, name=name,
                                  extra_args=["--creds", str(issued.path)])
                 for name, issued in hosts.items()}
        await eventually(lambda: _hosts(admin, 2), timeout=20, message="two hosts answer")
        _commit(repo, {"kind": "Deployment", "metadata": {"name": "d"},
                             "spec": {"actors": [{"id": ACTOR}]}})
        agent = spawn_agent(repo=repo.working_tree_dir or "", nats_url=secured.server.url,
                            lattice=LATTICE, data_dir=secured.tmp / "agent",
                            extra_args=["--creds", str(agent_creds.path)])
        invs = await eventually(lambda: _running(admin, 2), timeout=30,
                                message=lambda: f"the actor runs\n{agent.log()[-3000:]}")
        [where] = [h for h, i in invs.items() if i.actors]
        victim = next(n for n, i in hosts.items() if i.host_id == where)
        survivor = next(n for n in hosts if n != victim)

        # a second connection with the victim's credentials times the cut-off
        cut = asyncio.Event()

        async def on_disconnect() -> None:
            cut.set()

        spy = await nats.connect(secured.server.url, user_credentials=str(hosts[victim].path),
                                 allow_reconnect=False, disconnected_cb=on_disconnect,
                                 inbox_prefix=f"_INBOX.{hosts[victim].host_id}")
        t0 = time.monotonic()
        token = secured.store.revoke(hosts[victim].user_public_key, at=int(time.time()))
        await push_account_jwt(secured.server.url, str(secured.store.system_creds), token)
        await asyncio.wait_for(cut.wait(), 5.0)
        assert time.monotonic() - t0 < 1.0
        await spy.close()
        code = await asyncio.to_thread(procs[victim].wait, 10.0)
        assert code == 1 and "revoked" in procs[victim].log(), procs[victim].log()[-2000:]
        moved = await eventually(lambda: _running(admin, 1), timeout=30,
                                 message=lambda: f"the actor moved\n{agent.log()[-3000:]}")
        assert [h for h, i in moved.items() if i.actors] == [hosts[survivor].host_id]
        with pytest.raises(nats.errors.Error, match="Authorization Violation"):
            await nats.connect(secured.server.url, user_credentials=str(hosts[victim].path),
                               allow_reconnect=False, connect_timeout=2)
        assert procs[survivor].alive()
    # the revocation is in the resolver's store: a restarted server still refuses it
    secured.server.restart()
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(secured.server.url, user_credentials=str(hosts[victim].path),
                           allow_reconnect=False, connect_timeout=2)


def collect(into: list[Any], what: Callable[[Msg], Any] = lambda m: m
            ) -> Callable[[Msg], Awaitable[None]]:
    """A subscription callback that appends ``what(msg)`` to ``into``."""
    async def cb(msg: Msg) -> None:
        into.append(what(msg))
    return cb


async def _one_host(nc: Client) -> dict[str, HostInventory] | None:
    invs = await ping(nc, expect=1)
    return invs or None


async def _hosts(nc: Client, n: int) -> dict[str, HostInventory] | None:
    invs = await ping(nc, expect=n)
    return invs if len(invs) >= n else None


async def _running(nc: Client, n: int) -> dict[str, HostInventory] | None:
    """Inventories once exactly ``n`` hosts answer and one of them runs the actor."""
    invs = await ping(nc, expect=n)
    ok = len(invs) == n and sum(len(i.actors) for i in invs.values()) == 1
    return invs if ok else None


def _commit(repo: git.Repo, doc: dict[str, object]) -> str:
    root = Path(repo.working_tree_dir or ".")
    (root / "deployments").mkdir(exist_ok=True)
    (root / "deployments" / "d.yaml").write_text(yaml.safe_dump(doc))
    repo.index.add(["deployments/d.yaml"])
    return repo.index.commit("deploy").hexsha



async def test_a_host_of_a_lattice_with_a_long_id_connects(tmp_path: Path) -> None:
    """A host's JWT carries its allow-lists, which name the lattice id many times: with a
    long id it outgrows nats-server's default 4 KB control line (a CONNECT refused as
    'maximum control line exceeded', the host retrying until it gave up)."""
    lattice_id = "production-eu-west-1-" + "x" * 20
    store = AuthStore(tmp_path / "state", lattice_id).initialise()
    conf = tmp_path / "server.conf"
    conf.write_text(store.server_config(tmp_path / "jwt"))
    host = store.issue("host", "host-0")
    assert len(host.path.read_text()) > 4096  # the case the default limit refused
    with NatsServer(data_dir=tmp_path / "nats", extra_args=["-c", str(conf)]) as server:
        nc = await connect(NatsOptions(url=server.url, creds_file=str(host.path)),
                           initial_timeout=5)
        try:
            assert nc.is_connected
        finally:
            await nc.close()
