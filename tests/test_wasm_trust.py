"""A host that trusts only some accounts runs only their actors (``--trusted-issuer``)."""

from __future__ import annotations

import pytest
from nats.aio.client import Client

from hostagent.wasm.runtime import WasmRuntime
from hostagent.workload import RuntimeFailure
from lattice.claims import public_key
from lattice.gantry import Gantry
from lattice.protocol import ActorInstance, new_id, utcnow
from tests.wasmutil import seed, signed


def actor(actor_id: str) -> ActorInstance:
    return ActorInstance(actor_id=actor_id, instance_id=new_id(), started_at=utcnow())


async def test_only_trusted_issuers_run(nc: Client, lattice_id: str) -> None:
    wasm, claims = signed("echo", ("wascc:messaging",), key="trust")
    await Gantry(nc, lattice_id).push(wasm)
    ours = public_key(seed("account", "A"), "A")
    assert claims.issuer == ours
    other = public_key(seed("someone else", "A"), "A")
    strict = WasmRuntime(nc, lattice_id, trusted_issuers=[other])
    trusting = WasmRuntime(nc, lattice_id, trusted_issuers=[other, ours])
    try:
        with pytest.raises(RuntimeFailure, match="does not trust"):
            await strict.start_actor(actor(claims.subject))
        assert not strict.workers
        await trusting.start_actor(actor(claims.subject))
        assert len(trusting.workers) == 1
    finally:
        await strict.close()
        await trusting.close()


def test_the_host_command_line_takes_issuers() -> None:
    from click.testing import CliRunner

    from hostagent.main import main

    out = CliRunner().invoke(main, ["--help"])
    assert "--trusted-issuer" in out.output
