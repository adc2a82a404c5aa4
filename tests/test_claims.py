"""Signed claims of actor modules: sign, read, verify, and every way verification fails."""

from __future__ import annotations

import base64
import hashlib
import json
import os

import nacl.signing
import nkeys
import pytest
import wasmtime
from hypothesis import given
from hypothesis import strategies as st

from lattice.claims import (
    ClaimsError,
    custom_section,
    decode_seed,
    encode_seed,
    leb128_decode,
    leb128_encode,
    module_hash,
    public_key,
    read_claims,
    sections,
    sign_module,
    strip_section,
    verify_module,
)
from lattice.ids import actor_id_problem

WAT = """(module (memory (export "memory") 1)
  (func (export "__guest_call") (param i32 i32) (result i32) i32.const 1))"""
MODULE = wasmtime.wat2wasm(WAT)
ACCOUNT = encode_seed(hashlib.sha256(b"test account").digest(), "A")
MODULE_SEED = encode_seed(hashlib.sha256(b"test module").digest(), "M")
NOW = 1_800_000_000


def sign(wasm: bytes = MODULE, **kw: object) -> bytes:
    args: dict[str, object] = {"account_seed": ACCOUNT, "module_seed": MODULE_SEED,
                               "name": "echo", "capabilities": ["wascc:messaging"],
                               "issued_at": NOW, **kw}
    signed, _ = sign_module(wasm, **args)  # type: ignore[arg-type]
    return signed


def test_round_trip() -> None:
    signed, claims = sign_module(MODULE, account_seed=ACCOUNT, module_seed=MODULE_SEED,
                                 name="echo", capabilities=["wascc:messaging",
                                                            "wascc:keyvalue"],
                                 expires=NOW + 60, version="1.0")
    assert verify_module(signed, now=NOW) == claims == read_claims(signed)
    assert claims.subject == public_key(MODULE_SEED, "M")
    assert actor_id_problem(claims.subject) is None
    assert claims.issuer.startswith("A")
    assert claims.issuer == nkeys.from_seed(ACCOUNT).public_key.decode()  # nkeys agrees
    assert claims.capabilities == ("wascc:messaging", "wascc:keyvalue")
    assert claims.module_hash == hashlib.sha256(MODULE).hexdigest().upper()
    assert claims.expires == NOW + 60 and claims.version == "1.0"
    wasmtime.Module(wasmtime.Engine(), signed)  # still a valid module
    assert strip_section(signed) == MODULE


def test_jwt_format() -> None:
    [section] = [s for s in sections(sign()) if s.name == "jwt"]
    head, body, sig = section.payload.decode().split(".")
    pad = "=="
    assert json.loads(base64.urlsafe_b64decode(head + pad)) == {"typ": "jwt",
                                                                "alg": "ed25519-nkey"}
    claims = json.loads(base64.urlsafe_b64decode(body + pad))
    assert set(claims) == {"iat", "iss", "sub", "jti", "wascap"}
    assert claims["wascap"] == {"name": "echo", "caps": ["wascc:messaging"],
                                "hash": module_hash(MODULE)}
    assert len(base64.urlsafe_b64decode(sig + pad)) == 64


def test_resigning_replaces_the_section() -> None:
    twice = sign(sign(), name="again")
    assert [s.name for s in sections(twice)].count("jwt") == 1
    assert verify_module(twice, now=NOW).name == "again"


def token_for(claims: dict[str, object], seed: bytes = ACCOUNT) -> bytes:
    """A JWT over ``claims`` signed with the account ``seed`` (built here, by hand)."""
    def b64(d: bytes) -> str:
        return base64.urlsafe_b64encode(d).rstrip(b"=").decode()
    head = b64(json.dumps({"typ": "jwt", "alg": "ed25519-nkey"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = nacl.signing.SigningKey(decode_seed(seed, "A")).sign(f"{head}.{body}".encode())
    return f"{head}.{body}.{b64(sig.signature)}".encode()


def test_lower_case_hash_is_accepted() -> None:
    claims = {"iat": NOW, "iss": public_key(ACCOUNT, "A"), "sub": public_key(MODULE_SEED, "M"),
              "jti": "x", "wascap": {"name": "x", "caps": [],
                                     "hash": hashlib.sha256(MODULE).hexdigest()}}
    signed = MODULE + custom_section("jwt", token_for(claims))
    assert verify_module(signed, now=NOW).name == "x"
    claims["wascap"] = {"name": "x", "caps": [], "hash": "00" * 32}
    with pytest.raises(ClaimsError, match="differs"):
        verify_module(MODULE + custom_section("jwt", token_for(claims)), now=NOW)


def test_tampered_module_fails_the_hash() -> None:
    other = wasmtime.wat2wasm(WAT.replace("i32.const 1", "i32.const 0"))
    [jwt] = [s for s in sections(sign()) if s.name == "jwt"]
    forged = other + custom_section("jwt", jwt.payload)
    with pytest.raises(ClaimsError, match="differs from the signed hash"):
        verify_module(forged, now=NOW)


def test_section_added_after_signing_fails_the_hash() -> None:
    with pytest.raises(ClaimsError, match="changed after signing"):
        verify_module(sign() + custom_section("name", b"\x00"), now=NOW)


def test_wrong_key_fails_the_signature() -> None:
    signed = sign()
    [jwt] = [s for s in sections(signed) if s.name == "jwt"]
    head, body, sig = jwt.payload.decode().split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    claims["iss"] = public_key(encode_seed(os.urandom(32), "A"), "A")  # another account
    body2 = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    forged = MODULE + custom_section("jwt", f"{head}.{body2}.{sig}".encode())
    with pytest.raises(ClaimsError, match="signature does not verify"):
        verify_module(forged, now=NOW)


@pytest.mark.parametrize("where", ["body", "signature"])
def test_flipped_byte_fails(where: str) -> None:
    signed = bytearray(sign())
    [jwt] = [s for s in sections(bytes(signed)) if s.name == "jwt"]
    token = jwt.payload.decode()
    dot = token.rfind(".")
    # A character well inside the claims (or the signature), changed to another.
    offset = dot // 2 if where == "body" else dot + 10
    pos = len(signed) - len(token) + offset
    signed[pos] = ord("A") if signed[pos] != ord("A") else ord("B")
    with pytest.raises(ClaimsError):
        verify_module(bytes(signed), now=NOW)


def test_expired_and_not_yet_valid() -> None:
    window = sign(not_before=NOW, expires=NOW + 10)
    verify_module(window, now=NOW)
    verify_module(window, now=NOW + 9.9)
    with pytest.raises(ClaimsError, match="expired at"):
        verify_module(window, now=NOW + 10)
    with pytest.raises(ClaimsError, match="not valid before"):
        verify_module(window, now=NOW - 1)


def test_oversize() -> None:
    signed = sign()
    verify_module(signed, now=NOW, max_size=len(signed))
    with pytest.raises(ClaimsError, match=f"{len(signed)} bytes, over the limit of 100"):
        verify_module(signed, now=NOW, max_size=100)


@pytest.mark.parametrize(("data", "message"), [
    (MODULE, "not signed"),
    (b"\x7fELF....", "not a WebAssembly module"),
    (MODULE + b"\x00\x7f", "runs past the end"),
    (MODULE + custom_section("jwt", b"a.b.c") + custom_section("jwt", b"a.b.c"),
     "2 'jwt' sections"),
    (MODULE + custom_section("jwt", b"not a jwt"), "1 parts"),
])
def test_malformed(data: bytes, message: str) -> None:
    with pytest.raises(ClaimsError, match=message):
        verify_module(data)


def test_seeds() -> None:
    raw = os.urandom(32)
    seed = encode_seed(raw, "M")
    assert seed.startswith(b"SM") and decode_seed(seed, "M") == raw
    assert decode_seed(seed + b"\n", "M") == raw
    assert decode_seed(raw, "M") == raw
    with pytest.raises(ClaimsError, match="not an module seed"):
        decode_seed(encode_seed(raw, "A"), "M")
    with pytest.raises(ClaimsError, match="checksum"):
        decode_seed(seed[:-3] + (b"A" if seed[-3:-2] != b"A" else b"B") + seed[-2:], "M")
    with pytest.raises(ClaimsError, match="capability"):
        sign(capabilities=["Not A Cap"])


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_leb128_round_trip(n: int) -> None:
    encoded = leb128_encode(n)
    assert leb128_decode(b"xx" + encoded, 2) == (n, 2 + len(encoded))


@given(st.lists(st.tuples(st.text(max_size=20), st.binary(max_size=300)), max_size=6))
def test_custom_sections_round_trip(items: list[tuple[str, bytes]]) -> None:
    wasm = MODULE + b"".join(custom_section(n, p) for n, p in items)
    found = [(s.name, s.payload) for s in sections(wasm) if s.id == 0]
    assert found == items
    kept = [(n, p) for n, p in items if n != "jwt"]
    assert [(s.name, s.payload) for s in sections(strip_section(wasm)) if s.id == 0] == kept
