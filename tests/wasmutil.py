"""Test helpers for WebAssembly actors: compile the example and bad .wat files, sign them
with throwaway keys (or the demo seeds), push them to gantry."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import wasmtime

from lattice.claims import Claims, encode_seed, sign_module

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "actors"
BAD = Path(__file__).resolve().parent / "wasm"


def wat(name: str) -> bytes:
    """``examples/actors/<name>.wat`` or ``tests/wasm/<name>.wat``, compiled."""
    path = EXAMPLES / f"{name}.wat"
    if not path.exists():
        path = BAD / f"{name}.wat"
    return bytes(wasmtime.wat2wasm(path.read_text()))


def seed(label: str, role: str) -> bytes:
    """A deterministic test seed (not the demo ones)."""
    return encode_seed(hashlib.sha256(f"vinculum test {label}".encode()).digest(), role)


def signed(name: str, capabilities: Sequence[str], *, key: str | None = None
           ) -> tuple[bytes, Claims]:
    """The module ``name`` signed with test keys, claiming ``capabilities``."""
    return sign_module(wat(name), account_seed=seed("account", "A"),
                       module_seed=seed(key or name, "M"), name=name,
                       capabilities=capabilities)
