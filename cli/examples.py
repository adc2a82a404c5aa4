"""The example actors of ``latticectl up``: compiled, signed with the demo seeds, pushed.

``examples/actors/<name>.wat`` is compiled by ``wasmtime.wat2wasm`` and signed with the
DEMO-ONLY seeds in ``examples/actors/keys/`` (``account.nk`` and ``<name>.nk``), so the
actor ids the example manifests name are the same on every machine. The capabilities
claimed are read from a ``;; capabilities: a, b`` comment line in the .wat when there is
one, else from :data:`DEMO_CAPABILITIES`. :class:`cli.localstack.LocalStack` calls
:func:`push_examples` after nats-server is up and before hosts and the agent start, and
starts the hosts with :func:`host_runtime_args`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import click
import wasmtime

from lattice.claims import Claims, sign_module
from lattice.gantry import Gantry, IssuerMismatch
from lattice.natsutil import NatsOptions, connect

log = logging.getLogger(__name__)

EXAMPLE_ACTORS = Path(__file__).resolve().parent.parent / "examples" / "actors"
#: Capabilities claimed by the example actors whose .wat does not say.
DEMO_CAPABILITIES: dict[str, tuple[str, ...]] = {
    "echo": ("wascc:messaging",),
    "counter": ("wascc:messaging", "wascc:keyvalue"),
}
_CAPS_LINE = re.compile(r"^\s*;;\s*capabilities:\s*(.*)$", re.MULTILINE)


@dataclass(frozen=True)
class ExampleActor:
    name: str
    wasm: bytes  #: signed
    claims: Claims


def host_runtime_args() -> list[str]:
    """``--runtime wasm`` when ``lattice-host`` has that option (the WebAssembly runtime of
    issue 6), else nothing: hosts started by ``up`` run the example actors for real as soon
    as the runtime exists, and keep the default runtime before."""
    from hostagent.main import main as host_command

    for param in host_command.params:
        if param.name != "runtime":
            continue
        choices = param.type.choices if isinstance(param.type, click.Choice) else ("wasm",)
        return ["--runtime", "wasm"] if "wasm" in choices else []
    return []


def capabilities_of(name: str, wat: str) -> tuple[str, ...]:
    """The capabilities an example claims: its ``;; capabilities:`` line, else the demo
    table. Pure."""
    m = _CAPS_LINE.search(wat)
    if m:
        return tuple(c.strip() for c in m.group(1).split(",") if c.strip())
    return DEMO_CAPABILITIES.get(name, ())


def build_examples(directory: Path = EXAMPLE_ACTORS) -> list[ExampleActor]:
    """Every ``*.wat`` in ``directory`` that has a seed in ``keys/``, compiled and signed
    (no expiry). A .wat without a seed is skipped with a warning."""
    keys = directory / "keys"
    out: list[ExampleActor] = []
    if not (keys / "account.nk").is_file():
        return out
    account = (keys / "account.nk").read_bytes()
    for wat_path in sorted(directory.glob("*.wat")):
        name = wat_path.stem
        seed = keys / f"{name}.nk"
        if not seed.is_file():
            log.warning("example actor %s has no seed %s; not signed", wat_path, seed)
            continue
        wat = wat_path.read_text()
        wasm = bytes(wasmtime.wat2wasm(wat))
        signed, claims = sign_module(wasm, account_seed=account, module_seed=seed.read_bytes(),
                                     name=name, capabilities=capabilities_of(name, wat))
        out.append(ExampleActor(name, signed, claims))
    return out


async def _push(url: str | NatsOptions, lattice: str, actors: list[ExampleActor]) -> None:
    nc = await connect(url, initial_timeout=10.0)
    try:
        gantry = Gantry(nc, lattice)
        for actor in actors:
            try:
                await gantry.push(actor.wasm)
            except IssuerMismatch as exc:  # an admin replaced it on purpose: keep theirs
                log.warning("example actor %s not pushed: %s", actor.name, exc.message)
    finally:
        await nc.close()


def push_examples(url: str | NatsOptions, lattice: str, directory: Path = EXAMPLE_ACTORS, *,
                  timeout: float = 30.0) -> list[ExampleActor]:
    """Build the example actors and push them to the lattice's registry."""
    actors = build_examples(directory)
    if actors:
        asyncio.run(asyncio.wait_for(_push(url, lattice, actors), timeout))
        log.info("pushed example actors %s", ", ".join(a.name for a in actors))
    return actors
