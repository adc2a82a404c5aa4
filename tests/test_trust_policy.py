"""The lattice-wide trust policy: ``latticectl trust`` edits it in JetStream, and every
host reads it at each actor start (real nats-server, real runtime, signed modules); the
account that signed waSCC's own actors is trusted the same way as the demo account."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from nats.aio.client import Client

from hostagent.wasm.runtime import WasmRuntime
from hostagent.workload import RuntimeFailure
from lattice.claims import public_key
from lattice.gantry import Gantry
from lattice.localnats import NatsServer
from lattice.natsutil import connect
from lattice.policy import KEY, bucket_name, parse_issuers, read_trusted, set_trusted
from lattice.protocol import ActorInstance, new_id, utcnow
from tests.cliutil import clean_env, run
from tests.wasmutil import seed, signed

OURS = public_key(seed("account", "A"), "A")  # the account tests.wasmutil signs with
OTHER = public_key(seed("someone else", "A"), "A")
THIRD = public_key(seed("a third one", "A"), "A")


def actor(actor_id: str) -> ActorInstance:
    return ActorInstance(actor_id=actor_id, instance_id=new_id(), started_at=utcnow())


def test_parse_issuers_checks_sorts_and_dedupes() -> None:
    assert parse_issuers([OTHER, OURS, OTHER]) == sorted({OURS, OTHER})
    with pytest.raises(ValueError, match=r"not a valid A\.\.\. public key"):
        parse_issuers([OURS, "M" + OURS[1:]])
    assert bucket_name("lab.1") == "vinculum_policy_lab_1"


def test_latticectl_trust_edits_the_policy(nats_server: NatsServer, tmp_path: Path) -> None:
    env = {**clean_env(tmp_path), "LATTICECTL_NATS_URL": nats_server.url,
           "LATTICECTL_LATTICE": "trusty"}
    none = run(env, "trust", "list")
    assert none.exit_code == 0 and "no lattice-wide policy" in none.output
    bad = run(env, "trust", "add", "Anot-a-key")
    assert bad.exit_code == 2 and "ACCOUNT" in bad.output and "Anot-a-key" in bad.output
    added = run(env, "trust", "add", OTHER, OURS)
    assert added.exit_code == 0 and "trusts 2 account(s)" in added.output, added.output
    assert run(env, "trust", "list").output.split() == sorted([OURS, OTHER])
    assert run(env, "trust", "add", OURS).exit_code == 0  # idempotent
    as_json = run(env, "trust", "list", "-o", "json")
    assert '"issuers": [' in as_json.output and "vinculum_policy_trusty" in as_json.output
    run(env, "trust", "remove", OTHER)
    assert run(env, "trust", "list").output.split() == [OURS]
    emptied = run(env, "trust", "remove", OURS)
    assert "trusts no account" in emptied.output  # fail closed, not open
    assert "trusts no account" in run(env, "trust", "list").output
    reset = run(env, "trust", "reset")
    assert reset.exit_code == 0 and "no lattice-wide policy" in reset.output
    assert "no lattice-wide policy" in run(env, "trust", "list").output


async def test_hosts_start_only_actors_of_trusted_accounts(nc: Client, lattice_id: str
                                                           ) -> None:
    wasm, claims = signed("echo", ("wascc:messaging",), key="policy")
    await Gantry(nc, lattice_id).push(wasm)
    assert claims.issuer == OURS
    rt = WasmRuntime(nc, lattice_id)
    try:
        await set_trusted(nc, lattice_id, [OTHER], revision=0)
        with pytest.raises(RuntimeFailure, match=f"{OURS}, which the lattice does not trust"):
            await rt.start_actor(actor(claims.subject))
        assert not rt.workers
        _, revision = await read_trusted(nc, lattice_id)
        await set_trusted(nc, lattice_id, [OTHER, OURS], revision=revision)
        await rt.start_actor(actor(claims.subject))  # the next start reads the new policy
        assert len(rt.workers) == 1
        _, revision = await read_trusted(nc, lattice_id)
        await set_trusted(nc, lattice_id, [], revision=revision)  # trusts nobody
        with pytest.raises(RuntimeFailure, match="does not trust"):
            await rt.start_actor(actor(claims.subject))
        assert len(rt.workers) == 1  # what runs is left alone
        _, revision = await read_trusted(nc, lattice_id)
        await set_trusted(nc, lattice_id, None, revision=revision)  # no policy: any
        await rt.start_actor(actor(claims.subject))
        assert len(rt.workers) == 2
    finally:
        await rt.close()


async def test_a_stale_revision_or_a_corrupt_policy_is_refused(nc: Client, lattice_id: str
                                                               ) -> None:
    from lattice.policy import PolicyError, PolicyUnavailable

    await set_trusted(nc, lattice_id, [OURS], revision=0)
    _, revision = await read_trusted(nc, lattice_id)
    await set_trusted(nc, lattice_id, [OURS, OTHER], revision=revision)
    with pytest.raises(PolicyUnavailable, match="changed meanwhile"):
        await set_trusted(nc, lattice_id, [THIRD], revision=revision)  # lost update
    kv = await nc.jetstream().key_value(bucket_name(lattice_id))
    await kv.put(KEY, b"issuers: [not json]")
    with pytest.raises(PolicyError, match=f"{bucket_name(lattice_id)}/{KEY}"):
        await read_trusted(nc, lattice_id)
    wasm, claims = signed("echo", ("wascc:messaging",), key="policy")
    await Gantry(nc, lattice_id).push(wasm)
    rt = WasmRuntime(nc, lattice_id)
    try:
        with pytest.raises(RuntimeFailure, match="cannot check the lattice's trust policy"):
            await rt.start_actor(actor(claims.subject))
    finally:
        await rt.close()


WASCC = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "wascc"
WASCC_ISSUER = "AAGRUXXTGSP4C27RWPTMCHCJF56JD53EQPA2R7RPC5VI4E274KPRMMJ5"
WASCC_ECHO = "MB4OLDIC3TCZ4Q4TGGOVAZC43VXFE2JQVRAXQMQFXUCREOOFEKOKZTY2"
DEMO = public_key((Path(__file__).resolve().parents[1] / "examples" / "actors" / "keys"
                   / "account.nk").read_bytes(), "A")


async def start_on_a_host(url: str, lattice: str, actor_id: str) -> str | None:
    """Start ``actor_id`` on a fresh wasm runtime, as a host does: None when it runs, else
    the refusal."""
    nc = await connect(url)
    rt = WasmRuntime(nc, lattice)
    try:
        await rt.start_actor(actor(actor_id))
    except RuntimeFailure as exc:
        return exc.message
    else:
        assert [w.claims.issuer for w in rt.workers.values()] == [WASCC_ISSUER]
        return None
    finally:
        await rt.close()
        await nc.close()


def test_trust_add_of_the_wascc_issuer_admits_wasccs_own_actor(nats_server: NatsServer,
                                                               tmp_path: Path) -> None:
    echo = WASCC / "echo.wasm"
    if not echo.is_file():
        pytest.skip(f"waSCC's signed actors are not here ({echo} is absent; they are test "
                    "data kept outside the project, see issue 13)")
    lattice = "wascc"
    env = {**clean_env(tmp_path), "LATTICECTL_NATS_URL": nats_server.url,
           "LATTICECTL_LATTICE": lattice}
    assert run(env, "trust", "add", DEMO).exit_code == 0  # the policy `up` leaves
    pushed = run(env, "push", str(echo))
    assert pushed.exit_code == 0, pushed.output
    assert pushed.stdout.startswith(f"pushed {WASCC_ECHO} (Echo Actor")
    assert f"does not trust account {WASCC_ISSUER}" in pushed.stderr
    assert f"trust it with `latticectl trust add {WASCC_ISSUER}`" in pushed.stderr
    refused = asyncio.run(start_on_a_host(nats_server.url, lattice, WASCC_ECHO))
    assert refused is not None and f"{WASCC_ISSUER}, which the lattice does not trust" in (
        refused)

    added = run(env, "trust", "add", WASCC_ISSUER)
    assert added.exit_code == 0 and "trusts 2 account(s)" in added.output, added.output
    assert run(env, "trust", "list").output.split() == sorted([DEMO, WASCC_ISSUER])
    assert asyncio.run(start_on_a_host(nats_server.url, lattice, WASCC_ECHO)) is None
    again = run(env, "push", str(echo))  # trusted now: pushed without a warning
    assert again.exit_code == 0 and again.stderr == "", again.output
