"""Gantry against a real nats-server: push verifies and stores, fetch and list read back;
an actor id stays with the account that pushed it first (unless forced); a fetch refuses an
oversized object from its metadata without downloading it, and an object whose chunks
disagree with its metadata (issue 12, items 5 and 6); every network wait of a fetch is
bounded, ending in TransientError, and the metadata read is retried (issue 14)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json

import pytest
import wasmtime
from nats.aio.client import Client
from nats.js.object_store import OBJ_META_PRE_TEMPLATE

from lattice.claims import ClaimsError, encode_seed, public_key, sign_module
from lattice.errors import TransientError
from lattice.gantry import (
    BadObject,
    Gantry,
    IssuerMismatch,
    ModuleNotFound,
    ModuleTooLarge,
    bucket_name,
    download_timeout,
    fetch_timeout,
)
from lattice.localnats import NatsServer
from lattice.natsutil import connect

ACCOUNT = encode_seed(hashlib.sha256(b"gantry account").digest(), "A")
INTRUDER = encode_seed(hashlib.sha256(b"gantry intruder").digest(), "A")


def module(name: str, *, size: int = 1, caps: tuple[str, ...] = ("wascc:messaging",),
           expires: int | None = None, account: bytes = ACCOUNT) -> bytes:
    wat = f'(module (memory (export "memory") {size}) (data (i32.const 0) "{name}"))'
    seed = encode_seed(hashlib.sha256(name.encode()).digest(), "M")
    signed, _ = sign_module(wasmtime.wat2wasm(wat), account_seed=account, module_seed=seed,
                            name=name, capabilities=caps, expires=expires)
    return signed


def test_bucket_name() -> None:
    assert bucket_name("default") == "gantry_default"
    assert bucket_name("lab.1 x") == "gantry_lab_1_x"


async def test_push_fetch_list(nc: Client, lattice_id: str) -> None:
    gantry = Gantry(nc, lattice_id)
    assert await gantry.list() == []
    echo = module("echo")
    counter = module("counter", caps=("wascc:keyvalue", "wascc:messaging"))
    c_echo = await gantry.push(echo)
    c_counter = await gantry.push(counter)
    assert await gantry.fetch(c_echo.subject) == echo
    # A second client (a host) sees the same registry.
    assert await Gantry(nc, lattice_id).fetch(c_counter.subject) == counter
    records = await gantry.list()
    assert [(r.name, r.id, r.size) for r in records] == [
        ("counter", c_counter.subject, len(counter)), ("echo", c_echo.subject, len(echo))]
    assert records[0].capabilities == ("wascc:keyvalue", "wascc:messaging")
    assert records[1].module_hash == c_echo.module_hash
    assert records[1].issuer == c_echo.issuer
    # Pushing the same id again replaces the module.
    echo2 = module("echo", size=2)
    await gantry.push(echo2)
    assert await gantry.fetch(c_echo.subject) == echo2
    assert len(await gantry.list()) == 2
    await gantry.delete(c_echo.subject)
    with pytest.raises(ModuleNotFound, match="not in the registry"):
        await gantry.fetch(c_echo.subject)
    assert [r.name for r in await gantry.list()] == ["counter"]


async def test_lattices_are_separate(nc: Client, lattice_id: str) -> None:
    claims = await Gantry(nc, lattice_id).push(module("echo"))
    with pytest.raises(ModuleNotFound):
        await Gantry(nc, lattice_id + "-other").fetch(claims.subject)


async def test_push_refuses_what_does_not_verify(nc: Client, lattice_id: str) -> None:
    gantry = Gantry(nc, lattice_id, max_size=4096)
    with pytest.raises(ClaimsError, match="not signed"):
        await gantry.push(wasmtime.wat2wasm("(module)"))
    with pytest.raises(ClaimsError, match="expired"):
        await gantry.push(module("old", expires=1))
    with pytest.raises(ClaimsError, match="over the limit"):
        await gantry.push(module("big" * 2000))
    assert await gantry.list() == []


async def test_large_module_in_chunks(nc: Client, lattice_id: str) -> None:
    wat = '(module (memory 1) (data (i32.const 0) "' + "x" * 300_000 + '"))'
    seed = encode_seed(hashlib.sha256(b"large").digest(), "M")
    big, claims = sign_module(wasmtime.wat2wasm(wat), account_seed=ACCOUNT,
                              module_seed=seed, name="large", capabilities=[])
    gantry = Gantry(nc, lattice_id)
    await gantry.push(big)
    assert await gantry.fetch(claims.subject) == big


async def test_first_pushes_race_to_create_the_bucket(nc: Client, lattice_id: str) -> None:
    modules = [module(f"racer{i}") for i in range(4)]
    pushed = await asyncio.gather(*(Gantry(nc, lattice_id).push(m) for m in modules))
    assert sorted(r.id for r in await Gantry(nc, lattice_id).list()) == sorted(
        c.subject for c in pushed)


async def test_a_fetched_module_is_kept_by_digest_until_it_changes(
        nc: Client, lattice_id: str) -> None:
    """A host's second start of an actor costs a metadata request, not a download; a
    module pushed again under the same id (new bytes, new digest) is downloaded."""
    pusher, host = Gantry(nc, lattice_id), Gantry(nc, lattice_id)
    first = module("keeper", size=1)
    claims = await pusher.push(first)
    assert await host.fetch(claims.subject) == first and host.cache_hits == 0
    assert await host.fetch(claims.subject) == first and host.cache_hits == 1
    second = module("keeper", size=2)  # same module key, so the same actor id
    assert (await pusher.push(second)).subject == claims.subject and second != first
    assert await host.fetch(claims.subject) == second and host.cache_hits == 1
    assert await host.fetch(claims.subject) == second and host.cache_hits == 2
    await pusher.delete(claims.subject)
    with pytest.raises(ModuleNotFound):
        await host.fetch(claims.subject)  # never served from what it kept


async def test_what_is_kept_is_bounded_oldest_out(nc: Client, lattice_id: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import lattice.gantry as gantry_module

    g = Gantry(nc, lattice_id)
    a, b = await g.push(module("one")), await g.push(module("two"))
    monkeypatch.setattr(gantry_module, "CACHE_BYTES", len(module("two")) + 1)
    await g.fetch(a.subject)
    await g.fetch(b.subject)  # over the bound: "one" goes, "two" stays
    await g.fetch(b.subject)
    await g.fetch(a.subject)
    assert g.cache_hits == 1


async def test_an_actor_id_stays_with_the_account_that_pushed_it_first(
        nc: Client, lattice_id: str) -> None:
    gantry = Gantry(nc, lattice_id)
    ours = await gantry.push(module("counter"))
    theirs = module("counter", size=2, account=INTRUDER)  # same actor id, another account
    with pytest.raises(IssuerMismatch) as refused:
        await gantry.push(theirs)
    intruder = public_key(INTRUDER, "A")
    assert refused.value.bound == ours.issuer and refused.value.issuer == intruder
    assert ours.issuer in refused.value.message and intruder in refused.value.message
    assert "--force" in refused.value.message
    assert await gantry.fetch(ours.subject) == module("counter")  # untouched
    await gantry.push(module("counter", size=3))  # the same account may replace it
    # an admin forces the change: the id now belongs to the other account
    forced = await gantry.push(theirs, force=True)
    assert await gantry.fetch(forced.subject) == theirs
    assert await gantry.bound_issuer(forced.subject) == intruder
    assert [r.issuer for r in await gantry.list()] == [intruder]
    with pytest.raises(IssuerMismatch):
        await gantry.push(module("counter"))
    # a deleted module binds nothing
    await gantry.delete(forced.subject)
    assert await gantry.bound_issuer(forced.subject) is None
    assert (await gantry.push(module("counter"))).issuer == ours.issuer


async def _fresh(url: str) -> Client:
    """A connection of its own, so its byte counters see only what one Gantry reads."""
    return await connect(url)


async def test_an_oversized_module_is_refused_without_downloading_it(
        nats_server: NatsServer, nc: Client, lattice_id: str) -> None:
    """Written straight into the bucket (as a hostile pusher would, bypassing push): the
    fetch reads the size from the object's metadata and downloads nothing."""
    store = await Gantry(nc, lattice_id)._object_store()
    big = b"\0" * (2 * 1024 * 1024)
    await store.put("MBIG", big)
    host_nc = await _fresh(nats_server.url)
    try:
        host = Gantry(host_nc, lattice_id, max_size=1024 * 1024)
        await host._object_store()
        before = host_nc.stats["in_bytes"]
        with pytest.raises(ModuleTooLarge, match=r"has 2097152 bytes, over the limit of "
                                                 r"1048576; it was not downloaded"):
            await host.fetch("MBIG")
        received = host_nc.stats["in_bytes"] - before
        assert host.downloaded_bytes == 0 and received < 4096, received  # metadata only
        # the same object under a larger limit is downloaded, in full
        assert await Gantry(host_nc, lattice_id).fetch("MBIG") == big
        assert host_nc.stats["in_bytes"] - before > len(big)
    finally:
        await host_nc.close()


async def _forge_meta(nc: Client, lattice_id: str, name: str, **changes: object) -> None:
    """Rewrite an object's metadata as a hostile writer of the bucket could."""
    bucket = bucket_name(lattice_id)
    store = await Gantry(nc, lattice_id)._object_store()
    info = (await store.get_info(name)).as_dict()
    info.update(changes)
    subject = OBJ_META_PRE_TEMPLATE.format(
        bucket=bucket, obj=base64.urlsafe_b64encode(name.encode()).decode())
    await nc.jetstream().publish(subject, json.dumps(info).encode(),
                                 headers={"Nats-Rollup": "sub"})


async def test_chunks_that_disagree_with_the_metadata_are_refused(
        nc: Client, lattice_id: str) -> None:
    store = await Gantry(nc, lattice_id)._object_store()
    real = bytes(range(256)) * 4096  # 1 MiB: eight chunks of 128 KiB
    await store.put("MLIES", real)
    await _forge_meta(nc, lattice_id, "MLIES", size=1000)  # "small enough"
    host = Gantry(nc, lattice_id)
    with pytest.raises(BadObject, match="more bytes than the 1000 its metadata says"):
        await host.fetch("MLIES")
    assert host.downloaded_bytes <= 1000 + 128 * 1024  # stopped at the first chunk over
    await store.put("MLIES", real)
    await _forge_meta(nc, lattice_id, "MLIES", size=2 * len(real))
    with pytest.raises(BadObject, match=f"has {len(real)} bytes, its metadata says"):
        await host.fetch("MLIES")
    await store.put("MLIES", real)
    await _forge_meta(nc, lattice_id, "MLIES",
                      digest="SHA-256=" + base64.urlsafe_b64encode(b"\0" * 32).decode())
    with pytest.raises(BadObject, match="do not match the digest"):
        await host.fetch("MLIES")


# ---------------------------------------------------------------- bounded waits (issue 14)

async def test_a_server_stopped_mid_download_fails_within_the_bound(
        nats_server: NatsServer, lattice_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server dies after the first chunk of a 16 MiB object has arrived: the fetch
    raises TransientError once no chunk has come for CHUNK_TIMEOUT_S (it hung before)."""
    from nats.aio.subscription import Subscription

    import lattice.gantry as gantry_module

    monkeypatch.setattr(gantry_module, "CHUNK_TIMEOUT_S", 1.0)
    nc = await _fresh(nats_server.url)
    try:
        big = bytes(range(256)) * (64 * 1024)  # 16 MiB: 128 chunks of 128 KiB
        await (await Gantry(nc, lattice_id)._object_store()).put("MSTALL", big)
        next_msg = Subscription.next_msg
        got: list[int] = []

        async def first_chunk_then_stop(sub: Subscription, timeout: float = 1.0) -> object:
            msg = await next_msg(sub, timeout=timeout)
            got.append(len(msg.data))
            if len(got) == 1:
                nats_server.stop(kill=True)
            return msg

        monkeypatch.setattr(Subscription, "next_msg", first_chunk_then_stop)
        host = Gantry(nc, lattice_id)
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(TransientError, match=r"download of MSTALL stalled: no chunk "
                                                 r"within 1s \(\d+ of 16777216 bytes\)"):
            await host.fetch("MSTALL")
        took = loop.time() - start
        assert 0 < host.downloaded_bytes < len(big)
        assert took < download_timeout(len(big)), took
    finally:
        with contextlib.suppress(ConnectionError):  # the server is gone
            await nc.close()


async def test_metadata_reads_are_bounded_and_retried(
        nats_server: NatsServer, lattice_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the server down, every metadata attempt ends within META_TIMEOUT_S and the
    fetch raises TransientError after META_ATTEMPTS; a server that comes back while the
    fetch retries is read from (the metadata read changes nothing: safe to repeat)."""
    import lattice.gantry as gantry_module

    monkeypatch.setattr(gantry_module, "META_TIMEOUT_S", 0.5)
    nc = await _fresh(nats_server.url)
    try:
        wasm = module("restarted")
        claims = await Gantry(nc, lattice_id).push(wasm)
        host = Gantry(nc, lattice_id)
        nats_server.stop(kill=True)
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(TransientError, match=r"no answer reading the metadata of "
                                                 rf"{claims.subject} \(3 attempts of 0.5s"):
            await host.fetch(claims.subject)
        took = loop.time() - start
        assert 3 * 0.5 <= took < fetch_timeout(0), took
        retried = asyncio.ensure_future(host.fetch(claims.subject))
        await asyncio.to_thread(nats_server.start)  # same port and store: a restart
        assert await asyncio.wait_for(retried, fetch_timeout(0)) == wasm
    finally:
        with contextlib.suppress(ConnectionError):
            await nc.close()
