"""The ``leaf-system`` link of a leaf site lets through what it must and nothing more.

A secured hub (one nats-server with a leafnode listener) and a leaf joined to it with the
two remotes ``latticectl up --leaf-of`` configures (lattice account in the ``leaf`` role,
system account in the ``leaf-system`` role), real processes on loopback:

* an account JWT pushed on the hub reaches the leaf (a second lattice's account, then
  usable by clients of the leaf);
* the connect advisories of the lattice's account cross from the site to a system user on
  the hub; those of another account on the same leaf do not (the advisories arrive in
  order over the one link, so the lattice's arriving first-after proves the other's was
  held back);
* an account JWT pushed on the *leaf* (a revocation) is taken by the leaf but does not
  reach the hub: a hub client it revokes keeps its connection, while one revoked on the
  hub right after is cut.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from lattice.auth.keys import account_jwt
from lattice.auth.server import push_account_jwt
from lattice.auth.store import AuthStore, Issued
from lattice.localcluster import stable_port
from lattice.localleaf import LeafRemote, LeafServer
from lattice.localnats import NatsServer

pytestmark = [pytest.mark.timeout(60)]

LATTICE, OTHER = "sitelink", "elsewhere"


@dataclass
class Site:
    store: AuthStore
    other: AuthStore  #: a second lattice (account) under the same operator
    hub: NatsServer
    leaf: LeafServer


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    store = AuthStore(tmp_path / "keys", LATTICE).initialise()
    other = AuthStore(tmp_path / "keys", OTHER).initialise()
    hub = NatsServer(data_dir=tmp_path / "hub", config_text=store.server_config(tmp_path / "hj"),
                     leafnode_port=stable_port("127.0.0.1"), jetstream_domain="vinculum")
    link = store.issue("leaf", "leaf-link")
    system_link = store.issue("leaf-system", "leaf-system-link")
    assert hub.leafnode_url is not None
    urls = (hub.leafnode_url,)
    leaf = LeafServer([LeafRemote(urls, str(link.path), store.account.public_key),
                       LeafRemote(urls, str(system_link.path),
                                  store.system_account.public_key)],
                      tmp_path / "leaf", config_text=store.server_config)
    hub.start()
    try:
        leaf.start()
        try:
            yield Site(store, other, hub, leaf)
        finally:
            leaf.stop()
    finally:
        hub.stop()


async def _client(url: str, issued: Issued | Path) -> Client:
    path = issued.path if isinstance(issued, Issued) else issued
    return await nats.connect(url, user_credentials=str(path), allow_reconnect=False,
                              connect_timeout=5)


async def _closed_within(nc: Client, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not nc.is_closed and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return nc.is_closed


async def test_updates_in_lattice_advisories_out_nothing_else(site: Site) -> None:
    # a second account pushed on the hub reaches the leaf: its users may connect there
    await push_account_jwt(site.hub.url, str(site.store.system_creds),
                           site.other.account_jwt())
    other_user = site.other.issue("admin", "other-admin")
    deadline = time.monotonic() + 5
    while True:
        try:
            stranger = await _client(site.leaf.url, other_user)
            break
        except (nats.errors.Error, OSError):
            if time.monotonic() > deadline:
                raise AssertionError("the account pushed on the hub never reached the leaf"
                                     ) from None
            await asyncio.sleep(0.1)
    await stranger.close()

    watcher = await _client(site.hub.url, site.store.system_creds)
    seen: asyncio.Queue[str] = asyncio.Queue()

    async def on_connect(msg: Msg) -> None:
        await seen.put(msg.subject.split(".")[2])

    await watcher.subscribe("$SYS.ACCOUNT.*.CONNECT", cb=on_connect)
    await watcher.flush()
    lattice_key = site.store.account.public_key
    try:
        # interest reaches the leaf asynchronously: connect lattice clients until one's
        # advisory arrives
        deadline = time.monotonic() + 5
        while True:
            probe = await _client(site.leaf.url, site.store.issue("admin", "probe"))
            await probe.close()
            try:
                assert await asyncio.wait_for(seen.get(), 0.5) == lattice_key
                break
            except TimeoutError:
                assert time.monotonic() < deadline, "no lattice advisory crossed the link"
        while not seen.empty():
            seen.get_nowait()
        stranger = await _client(site.leaf.url, other_user)
        await stranger.close()
        mine = await _client(site.leaf.url, site.store.issue("admin", "mine"))
        await mine.close()
        assert await asyncio.wait_for(seen.get(), 5) == lattice_key
        assert seen.empty(), "another account's advisory crossed the link"
    finally:
        await watcher.close()


async def test_the_site_cannot_push_account_updates_into_the_hub(site: Site) -> None:
    spared_user = site.store.issue("admin", "spared")
    cut_user = site.store.issue("admin", "cut")
    spared = await _client(site.hub.url, spared_user)
    cut = await _client(site.hub.url, cut_user)
    try:
        at = int(time.time())
        from_site = site.store.revoke(spared_user.user_public_key, at=at)
        await push_account_jwt(site.leaf.url, str(site.store.system_creds), from_site)
        # the leaf took it: the revoked user is refused there
        with pytest.raises((nats.errors.Error, OSError)):
            await (await _client(site.leaf.url, spared_user)).close()
        # on the hub, an account JWT that revokes only the other user
        from_hub = account_jwt(site.store.operator, site.store.account, name=LATTICE,
                               revocations={cut_user.user_public_key: at})
        await push_account_jwt(site.hub.url, str(site.store.system_creds), from_hub)
        assert await _closed_within(cut, 5), "the hub did not apply its own update"
        # the site's push went over the link first; the hub never applied it
        assert not spared.is_closed
        await spared.flush(timeout=2)
    finally:
        for nc in (spared, cut):
            if not nc.is_closed:
                await nc.close()
