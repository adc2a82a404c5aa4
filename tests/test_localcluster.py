"""A local NATS cluster and leaf nodes (lattice.localcluster, lattice.localleaf) on real
nats-server processes: routes carry messages, replicated JetStream survives a kill -9,
operator mode works across servers, and a leaf site answers requests from the hub.

Two clusters of three are shared by the module (one open, one in operator mode); the test
that kills a server restarts it and waits for the cluster to form again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import nats.errors
import nats.js.errors
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from lattice import gantry, policy
from lattice.auth import keys
from lattice.auth.store import AuthStore
from lattice.localcluster import NatsCluster, monitor_json, replicas_for, stable_port
from lattice.localleaf import LeafRemote, LeafServer
from lattice.localnats import NatsServer
from lattice.natsutil import Deadline, NatsOptions, connect, connected_server

LATTICE = "lc1"
DOMAIN = "hub"  #: the hub's JetStream domain, how clients on a leaf reach its JetStream


@dataclass
class Secure:
    cluster: NatsCluster
    store: AuthStore


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    """Three routed servers in open mode, each with a leafnode listener."""
    c = NatsCluster(3, tmp_path_factory.mktemp("cluster"), leafnodes=True,
                    jetstream_domain=DOMAIN)
    c.start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secure]:
    """Three routed servers in operator mode (each its own resolver dir)."""
    store = AuthStore(tmp_path_factory.mktemp("auth"), LATTICE).initialise()
    c = NatsCluster(3, tmp_path_factory.mktemp("secure"), config_text=store.server_config,
                    leafnodes=True, jetstream_domain=DOMAIN)
    c.start()
    try:
        yield Secure(c, store)
    finally:
        c.stop()


async def _until_delivered(pub: Client, sub: Client, subject: str, *,
                           timeout: float = 10.0) -> bytes:
    """Publish on ``pub`` until a subscriber on ``sub`` receives one message (interest
    crosses routes and leaf links asynchronously); its payload."""
    got: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_msg(msg: Msg) -> None:
        await got.put(msg.data)

    s = await sub.subscribe(subject, cb=on_msg)
    await sub.flush()
    deadline = Deadline(timeout)
    try:
        n = 0
        while not deadline.expired:
            n += 1
            await pub.publish(subject, f"hello {n}".encode())
            try:
                return await asyncio.wait_for(got.get(), 0.1)
            except TimeoutError:
                continue
        raise AssertionError(f"nothing published on {subject} arrived within {timeout}s")
    finally:
        await s.unsubscribe()


async def _until_answered(requester: Client, responder: Client, subject: str, *,
                          timeout: float = 10.0) -> bytes:
    """Serve ``subject`` on ``responder``; request it from ``requester`` until answered."""

    async def echo(msg: Msg) -> None:
        await msg.respond(b"echo " + msg.data)

    s = await responder.subscribe(subject, cb=echo)
    await responder.flush()
    deadline = Deadline(timeout)
    try:
        while not deadline.expired:
            try:
                reply = await requester.request(subject, b"hi", timeout=0.25)
                return reply.data
            except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
                continue
        raise AssertionError(f"no answer on {subject} within {timeout}s")
    finally:
        await s.unsubscribe()


_TRANSIENT = (nats.errors.Error, nats.js.errors.Error, policy.PolicyUnavailable)


async def _eventually(attempt: Callable[[], Awaitable[None]], *, timeout: float = 15.0,
                      failures: list[str] | None = None) -> float:
    """Run ``attempt`` until it does not fail with a NATS error, within ``timeout``;
    seconds it took. A replicated stream has no leader for a moment after it is created
    or its leader dies, and its subject interest crosses the routes asynchronously: its
    first writes then fail with "no responders" or time out."""
    began = time.monotonic()
    deadline = Deadline(timeout)
    while True:
        try:
            await attempt()
            return time.monotonic() - began
        except _TRANSIENT as exc:
            if failures is not None:
                failures.append(type(exc).__name__)
            if deadline.expired:
                raise
            await asyncio.sleep(0.05)  # poll interval of a bounded loop


async def _leaf_uses_hub_jetstream(on_hub: Client, on_leaf: Client, bucket: str) -> None:
    """A KV bucket and an object store made on the hub are read from the leaf, by the
    hub's JetStream domain (plain ``$JS.API`` does not cross the leaf link; nor, measured,
    does a publish to a stream's subject: writes stay on the hub)."""
    hub_js = on_hub.jetstream(domain=DOMAIN)
    kv = await hub_js.create_key_value(bucket=bucket)
    obj = await hub_js.create_object_store(f"{bucket}_obj")

    async def write() -> None:
        await kv.put("k", b"from hub")
        await obj.put("blob", b"y" * 300_000)

    await _eventually(write)
    leaf_js = on_leaf.jetstream(domain=DOMAIN, timeout=1.0)
    seen: list[bytes | None] = []

    async def read() -> None:
        seen.append((await (await leaf_js.key_value(bucket)).get("k")).value)
        seen.append((await (await leaf_js.object_store(f"{bucket}_obj")).get("blob")).data)

    await _eventually(read)
    assert seen[-2:] == [b"from hub", b"y" * 300_000]
    with pytest.raises(nats.errors.Error):  # no domain: the leaf has no JetStream
        await on_leaf.jetstream(timeout=0.5).key_value(bucket)


def test_replicas_for_sizes() -> None:
    assert [replicas_for(n) for n in (1, 2, 3, 5)] == [1, 2, 3, 3]


async def test_three_servers_route_messages(cluster: NatsCluster) -> None:
    names = [s.name for s in cluster.servers]
    assert len(set(names)) == 3
    assert cluster.formed_in is not None and cluster.formed_in < 30
    routez = monitor_json(cluster.monitor_url(1), "/routez")
    assert routez is not None
    assert {r["remote_name"] for r in routez["routes"]} == {names[0], names[2]}
    a = await connect(cluster.urls[0])
    b = await connect(cluster.urls[2])
    try:
        where_a, where_b = connected_server(a), connected_server(b)
        assert where_a is not None and where_a.name == names[0]
        assert where_b is not None and where_b.name == names[2]
        assert (await _until_delivered(b, a, "cluster.hello")).startswith(b"hello ")
    finally:
        await a.close()
        await b.close()


async def test_replicated_buckets_survive_a_killed_server(cluster: NatsCluster) -> None:
    r = replicas_for(cluster.size)
    nc = await connect(NatsOptions(url=cluster.url))
    try:
        js = nc.jetstream()
        kv = await js.create_key_value(bucket="r3_kv", replicas=r)
        g = gantry.Gantry(nc, LATTICE, replicas=r)
        assert await g.bound_issuer("no-such-actor") is None  # creates the bucket
        fast = nc.jetstream(timeout=1.0)  # a request lost with its server fails soon
        obj = await fast.object_store(gantry.bucket_name(LATTICE))
        issuer = keys.new_key("account").public_key

        async def write_all() -> None:
            await kv.put("k", b"before")
            await obj.put("blob", b"x" * 100_000)
            if (await policy.read_trusted(nc, LATTICE))[0] is None:  # a retry may find it
                await policy.set_trusted(nc, LATTICE, [issuer], revision=0, replicas=r)

        settled = await _eventually(write_all)
        print(f"\nR3 buckets created; first writes went through after {settled:.2f}s")
        for stream in ("KV_r3_kv", f"OBJ_{gantry.bucket_name(LATTICE)}",
                       f"KV_{policy.bucket_name(LATTICE)}"):
            info = await js.stream_info(stream)
            assert info.config.num_replicas == 3, stream

        kv = await fast.key_value("r3_kv")
        where = connected_server(nc)
        assert where is not None
        victim = [s.name for s in cluster.servers].index(where.name)
        cluster.kill(victim)

        async def read_and_write() -> None:
            await kv.put("k", b"after")
            assert (await kv.get("k")).value == b"after"
            assert (await obj.get("blob")).data == b"x" * 100_000
            trusted, _ = await policy.read_trusted(nc, LATTICE)
            assert trusted == frozenset({issuer})

        failures: list[str] = []
        recovered = await _eventually(read_and_write, timeout=25.0, failures=failures)
        now = connected_server(nc)
        assert now is not None and now.name != where.name
        print(f"\nkill -9 {where.name}: KV+object store usable again after {recovered:.2f}s"
              f" ({len(failures)} failed tries: {sorted(set(failures))})")
    finally:
        await nc.close()

    reformed = cluster.restart(victim)
    print(f"restart {where.name}: cluster formed again after {reformed:.2f}s")
    assert cluster.running() == [0, 1, 2]
    # the restarted server catches up: a client on it alone reads what was written
    late = await connect(cluster.urls[victim])
    try:
        kv2 = await late.jetstream(timeout=1.0).key_value("r3_kv")

        async def caught_up() -> None:
            entry = await kv2.get("k")
            if entry.value != b"after":
                raise nats.errors.Error(f"restarted server still has {entry.value!r}")

        print(f"restarted server caught up after {await _eventually(caught_up):.2f}s")
    finally:
        await late.close()


async def test_operator_mode_across_servers(secure: Secure) -> None:
    one = secure.store.issue("apps", "apps-1")
    two = secure.store.issue("apps", "apps-2")
    urls = secure.cluster.urls
    a = await connect(NatsOptions(url=urls[0], creds_file=str(one.path)))
    b = await connect(NatsOptions(url=urls[2], creds_file=str(two.path)))
    try:
        assert (await _until_delivered(b, a, "app.hello")).startswith(b"hello ")
        assert await _until_answered(a, b, "app.echo") == b"echo hi"
    finally:
        await a.close()
        await b.close()
    with pytest.raises(ConnectionError):  # no credentials: refused by every server
        await connect(urls[1], initial_timeout=0.5)


async def test_leaf_answers_the_hub_open_mode(cluster: NatsCluster, tmp_path: Path) -> None:
    leaf = LeafServer([LeafRemote(tuple(cluster.leafnode_urls))], tmp_path / "leaf")
    leaf.start()
    try:
        print(f"\nleaf connected in {leaf.connected_in:.3f}s")
        on_leaf = await connect(leaf.url)
        on_hub = await connect(cluster.urls[1])
        try:
            where = connected_server(on_leaf)
            assert where is not None and where.name == leaf.name
            assert await _until_answered(on_hub, on_leaf, "site.echo") == b"echo hi"
            assert await _until_answered(on_leaf, on_hub, "hub.echo") == b"echo hi"
            await _leaf_uses_hub_jetstream(on_hub, on_leaf, "leaf_open")
        finally:
            await on_leaf.close()
            await on_hub.close()
    finally:
        leaf.stop()


async def test_leaf_answers_the_hub_operator_mode(secure: Secure, tmp_path: Path) -> None:
    store = secure.store
    link = store.issue("admin", "leaf-link", path=tmp_path / "leaf-link.creds")
    remote = LeafRemote(tuple(secure.cluster.leafnode_urls), credentials=str(link.path),
                        account=store.account.public_key)
    leaf = LeafServer([remote], tmp_path / "leaf", config_text=store.server_config)
    leaf.start()
    try:
        site = store.issue("apps", "site-app")
        hub = store.issue("apps", "hub-app")
        on_leaf = await connect(NatsOptions(url=leaf.url, creds_file=str(site.path)))
        on_hub = await connect(NatsOptions(url=secure.cluster.urls[0],
                                           creds_file=str(hub.path)))
        try:
            assert await _until_answered(on_hub, on_leaf, "site.echo") == b"echo hi"
            assert (await _until_delivered(on_leaf, on_hub, "site.news")).startswith(b"hello")
            admin = store.issue("admin", "site-admin")
            js_hub = await connect(NatsOptions(url=secure.cluster.urls[1],
                                               creds_file=str(admin.path)))
            js_leaf = await connect(NatsOptions(url=leaf.url, creds_file=str(admin.path)))
            try:
                await _leaf_uses_hub_jetstream(js_hub, js_leaf, "leaf_secure")
            finally:
                await js_hub.close()
                await js_leaf.close()
        finally:
            await on_leaf.close()
            await on_hub.close()
        with pytest.raises(ConnectionError):  # the leaf is in operator mode too
            await connect(leaf.url, initial_timeout=0.5)
    finally:
        leaf.stop()


async def test_leaf_of_a_single_server(tmp_path: Path) -> None:
    hub = NatsServer(data_dir=tmp_path / "hub", leafnode_port=stable_port(),
                     jetstream_domain=DOMAIN)
    hub.start()
    try:
        assert hub.leafnode_url is not None
        leaf = LeafServer([LeafRemote((hub.leafnode_url,))], tmp_path / "leaf")
        leaf.start()
        try:
            on_leaf = await connect(leaf.url)
            on_hub = await connect(hub.url)
            try:
                assert await _until_answered(on_hub, on_leaf, "site.echo") == b"echo hi"
                await _leaf_uses_hub_jetstream(on_hub, on_leaf, "leaf_single")
            finally:
                await on_leaf.close()
                await on_hub.close()
        finally:
            leaf.stop()
    finally:
        hub.stop()
