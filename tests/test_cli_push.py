"""latticectl push against a real nats-server (issue 12, item 6): an actor id stays with
the account that pushed it first (another account's module is refused, nothing pushed,
unless --force), a module whose account the lattice's policy leaves out is pushed with a
warning saying how to trust it, and `up` trusts the account it signs with by default."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from pathlib import Path

import wasmtime

from cli.gantry_cmd import trust_by_default
from cli.localstack import LocalStack
from lattice.claims import encode_seed, public_key, sign_module
from lattice.gantry import Gantry
from lattice.localnats import NatsServer
from lattice.natsutil import connect
from lattice.policy import read_trusted, set_trusted
from tests.cliutil import run

KEYS = Path(__file__).resolve().parent.parent / "examples" / "actors" / "keys"
WAT = '(module (memory (export "memory") 1) (data (i32.const 0) "{text}"))'
OURS = encode_seed(hashlib.sha256(b"push ours").digest(), "A")
THEIRS = encode_seed(hashlib.sha256(b"push theirs").digest(), "A")


def signed(tmp: Path, name: str, account: bytes, text: str = "hello") -> Path:
    """``name`` signed by ``account`` (the same module seed for every account: one id)."""
    seed = encode_seed(hashlib.sha256(name.encode()).digest(), "M")
    wasm, _ = sign_module(wasmtime.wat2wasm(WAT.format(text=text)), account_seed=account,
                          module_seed=seed, name=name, capabilities=["wascc:messaging"])
    path = tmp / f"{name}-{public_key(account, 'A')[:6]}-{text}.wasm"
    path.write_bytes(wasm)
    return path


def test_a_push_of_another_accounts_actor_id_is_refused_unless_forced(
        nats_server: NatsServer, lattice_id: str, env: dict[str, str],
        tmp_path: Path) -> None:
    nats = ("--nats-url", nats_server.url, "--lattice", lattice_id)
    ours, theirs = public_key(OURS, "A"), public_key(THEIRS, "A")
    first = run(env, *nats, "push", str(signed(tmp_path, "counter", OURS)))
    assert first.exit_code == 0, first.output
    assert first.stderr == ""  # no policy: nothing to warn about
    again = run(env, *nats, "push", str(signed(tmp_path, "counter", OURS, "v2")))
    assert again.exit_code == 0, again.output  # the same account replaces its module

    echo = signed(tmp_path, "echo", OURS)
    pwned = signed(tmp_path, "counter", THEIRS, "PWNED")
    refused = run(env, *nats, "push", str(echo), str(pwned))
    assert refused.exit_code == 2, refused.output
    assert ours in refused.stderr and theirs in refused.stderr
    assert "--force" in refused.stderr and "nothing was pushed" in refused.stderr
    listed = run(env, *nats, "get", "actors", "-o", "json")
    assert '"echo"' not in listed.stdout  # not even the module before the refused one
    assert f'"issuer": "{ours}"' in listed.stdout

    forced = run(env, *nats, "push", "--force", str(pwned))
    assert forced.exit_code == 0, forced.output
    assert forced.stdout.startswith("pushed M")
    assert f"replaced the module of account {ours}" in forced.stderr
    assert theirs in forced.stderr
    assert b"PWNED" in asyncio.run(_fetch_all(nats_server.url, lattice_id))


async def _fetch_all(url: str, lattice: str) -> bytes:
    nc = await connect(url)
    try:
        gantry = Gantry(nc, lattice)
        return b"".join([await gantry.fetch(r.id) for r in await gantry.list()])
    finally:
        await nc.close()


def test_push_warns_when_the_lattice_does_not_trust_the_modules_account(
        nats_server: NatsServer, lattice_id: str, env: dict[str, str],
        tmp_path: Path) -> None:
    nats = ("--nats-url", nats_server.url, "--lattice", lattice_id)
    ours, theirs = public_key(OURS, "A"), public_key(THEIRS, "A")
    assert run(env, *nats, "trust", "add", ours).exit_code == 0
    trusted = run(env, *nats, "push", str(signed(tmp_path, "echo", OURS)))
    assert trusted.exit_code == 0 and trusted.stderr == "", trusted.output
    untrusted = run(env, *nats, "push", str(signed(tmp_path, "other", THEIRS)))
    assert untrusted.exit_code == 0, untrusted.output  # pushed all the same
    assert untrusted.stdout.startswith("pushed M")
    assert f"lattice {lattice_id} does not trust account {theirs}" in untrusted.stderr
    assert f"latticectl trust add {theirs}" in untrusted.stderr


def test_trust_by_default_sets_a_policy_only_where_there_is_none(
        nats_server: NatsServer, lattice_id: str) -> None:
    ours, theirs = public_key(OURS, "A"), public_key(THEIRS, "A")
    assert trust_by_default(nats_server.url, lattice_id, [ours, ours]) == [ours]
    assert trust_by_default(nats_server.url, lattice_id, [theirs]) is None

    async def emptied() -> frozenset[str] | None:
        nc = await connect(nats_server.url)
        try:
            current, revision = await read_trusted(nc, lattice_id)
            assert current == frozenset({ours})
            await set_trusted(nc, lattice_id, [], revision=revision)  # trusts nobody
            return (await read_trusted(nc, lattice_id))[0]
        finally:
            await nc.close()

    assert asyncio.run(emptied()) == frozenset()
    assert trust_by_default(nats_server.url, lattice_id, [theirs]) is None  # left alone


def test_up_trusts_the_account_it_signs_with(tmp_path: Path) -> None:
    actors = tmp_path / "actors"
    shutil.copytree(KEYS, actors / "keys")
    (actors / "echo.wat").write_text(WAT.format(text="hello"))
    stack = LocalStack(state_dir=tmp_path / "state", lattice="demo", hosts=0, host_labels={},
                       repo=str(tmp_path), with_agent=False, actors_dir=actors)
    state = stack.start(detach=False)
    try:
        async def policy() -> frozenset[str] | None:
            nc = await connect(state.nats())
            try:
                return (await read_trusted(nc, "demo"))[0]
            finally:
                await nc.close()

        demo = public_key((KEYS / "account.nk").read_bytes(), "A")
        assert asyncio.run(policy()) == frozenset({demo})
    finally:
        stack.stop()
