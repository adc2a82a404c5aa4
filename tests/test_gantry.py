"""Gantry against a real nats-server: push verifies and stores, fetch and list read back."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
import wasmtime
from nats.aio.client import Client

from lattice.claims import ClaimsError, encode_seed, sign_module
from lattice.gantry import Gantry, ModuleNotFound, bucket_name

ACCOUNT = encode_seed(hashlib.sha256(b"gantry account").digest(), "A")


def module(name: str, *, size: int = 1, caps: tuple[str, ...] = ("wascc:messaging",),
           expires: int | None = None) -> bytes:
    wat = f'(module (memory (export "memory") {size}) (data (i32.const 0) "{name}"))'
    seed = encode_seed(hashlib.sha256(name.encode()).digest(), "M")
    signed, _ = sign_module(wasmtime.wat2wasm(wat), account_seed=ACCOUNT, module_seed=seed,
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
