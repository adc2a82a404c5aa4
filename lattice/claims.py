"""Signed claims of an actor module: a JWT in the module's ``jwt`` custom section.

Pure functions, no I/O: :mod:`lattice.gantry` verifies a module before storing it, hosts
verify it before running it, and ``latticectl actor sign|inspect`` (cli/actor_cmd.py)
writes and reads it. The format is waSCC's (docs/registry.md):

* the JWT header is ``{"typ":"jwt","alg":"ed25519-nkey"}`` (wascap, waSCC's signing
  tool, wrote ``"alg":"Ed25519"``: accepted, see :func:`lattice.auth.jwt.check_algorithm`);
  the claims carry ``iss`` (the account public key, prefix ``A``), ``sub`` (the module
  public key, prefix ``M``: the actor id), ``iat``, optional ``nbf``/``exp``, ``jti``, and
  ``wascap`` with ``hash`` (SHA-256 of the module without its ``jwt`` sections, upper-case
  hex when we sign, either case accepted), ``name``, ``caps`` and ``tags`` (lists of
  strings), ``rev`` (an integer) and ``ver`` (a string), each optional as in wascap's
  ``Actor`` claims, and wascap's ``prov`` (a bool, false for an actor), which is read and
  ignored;
* the signature is Ed25519 by the account key over ``header.claims`` (base64url, no
  padding), as NATS JWTs are;
* the token is the payload of a custom section (id 0) named ``jwt`` appended to the module.

Seeds are nkeys-encoded text: ``SA...`` for an account, ``SM...`` for a module (nkeys
itself knows no module prefix, so seeds are encoded and decoded here with its CRC-16).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import nacl.exceptions
import nacl.signing
import nkeys

from lattice.auth import jwt
from lattice.errors import PermanentError
from lattice.ids import (
    PREFIX_BYTE_MODULE,
    actor_id_problem,
    encode_public_key,
)
from lattice.names import capability_id_problem

SECTION_NAME = "jwt"
HEADER = {"typ": "jwt", "alg": "ed25519-nkey"}
#: The name of an actor whose claims have none (wascap's ``Actor.name`` is optional).
ANONYMOUS = "Anonymous"
_I32 = (-(2**31), 2**31 - 1)
#: Largest module accepted by default (bytes).
MAX_MODULE_SIZE = 16 * 1024 * 1024
_MAGIC = b"\x00asm\x01\x00\x00\x00"
_CUSTOM = 0
_ROLES = {"A": nkeys.PREFIX_BYTE_ACCOUNT, "M": PREFIX_BYTE_MODULE}


class ClaimsError(PermanentError):
    """A module whose claims are missing, malformed, or do not verify; says which, in words."""


@dataclass(frozen=True)
class Claims:
    """What a module's signed JWT says about it."""

    issuer: str  #: account public key (prefix A)
    subject: str  #: module public key = actor id (56 chars, prefix M)
    name: str
    capabilities: tuple[str, ...]
    module_hash: str  #: hex SHA-256 of the module bytes without the ``jwt`` custom section
    issued_at: int
    not_before: int | None
    expires: int | None
    version: str | None = None  #: ``wascap.ver``, a free version string
    tags: tuple[str, ...] = ()  #: ``wascap.tags``
    revision: int | None = None  #: ``wascap.rev``, an i32 (wascap: monotonically increasing)

    @property
    def actor_id(self) -> str:
        return self.subject


# ---------------------------------------------------------------- wasm sections

def leb128_encode(value: int) -> bytes:
    """Unsigned LEB128. Pure."""
    if value < 0:
        raise ValueError("LEB128 here is unsigned")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def leb128_decode(data: bytes, pos: int) -> tuple[int, int]:
    """An unsigned LEB128 (at most 5 bytes, a u32) at ``pos``: (value, next position)."""
    result = shift = 0
    for i in range(5):
        if pos + i >= len(data):
            raise ClaimsError("module truncated inside a LEB128 number")
        byte = data[pos + i]
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos + i + 1
        shift += 7
    raise ClaimsError("LEB128 number longer than 5 bytes")


@dataclass(frozen=True)
class Section:
    """One section of a module: its id, where it starts and ends in the module bytes, and
    for a custom section its name and payload (empty for the other sections: read them
    from the module bytes at ``start:end``)."""

    id: int
    start: int
    end: int
    name: str | None
    payload: bytes


def sections(wasm: bytes) -> Iterator[Section]:
    """The sections of a binary module, in order. Raises ClaimsError for bytes that are
    not a WebAssembly module or whose section sizes run past the end."""
    if not wasm.startswith(_MAGIC):
        raise ClaimsError("not a WebAssembly module (bad magic number or version)")
    pos = len(_MAGIC)
    while pos < len(wasm):
        start = pos
        sid = wasm[pos]
        size, body = leb128_decode(wasm, pos + 1)
        end = body + size
        if end > len(wasm):
            raise ClaimsError(f"section {sid} at byte {start} runs past the end of the module")
        name: str | None = None
        payload = b""
        if sid == _CUSTOM:
            nlen, npos = leb128_decode(wasm, body)
            if npos + nlen > end:
                raise ClaimsError(f"custom section at byte {start} has a name longer than it")
            try:
                name = wasm[npos:npos + nlen].decode()
            except UnicodeDecodeError:
                raise ClaimsError(f"custom section at byte {start}: name is not UTF-8") from None
            payload = wasm[npos + nlen:end]
        yield Section(sid, start, end, name, payload)
        pos = end


def custom_section(name: str, payload: bytes) -> bytes:
    """The bytes of a custom section ``name`` holding ``payload``. Pure."""
    encoded = name.encode()
    body = leb128_encode(len(encoded)) + encoded + payload
    return bytes([_CUSTOM]) + leb128_encode(len(body)) + body


def strip_section(wasm: bytes, name: str = SECTION_NAME) -> bytes:
    """The module without any custom section called ``name``. Pure."""
    out = bytearray(wasm[:len(_MAGIC)])
    for s in sections(wasm):
        if not (s.id == _CUSTOM and s.name == name):
            out += wasm[s.start:s.end]
    return bytes(out)


def module_hash(wasm: bytes) -> str:
    """Upper-case hex SHA-256 of the module without its ``jwt`` sections. Pure."""
    return hashlib.sha256(strip_section(wasm)).hexdigest().upper()


# ---------------------------------------------------------------- keys

def encode_seed(raw: bytes, role: str) -> bytes:
    """An nkeys seed (``SA...``/``SM...``) for a 32-byte Ed25519 seed. Pure."""
    if len(raw) != 32:
        raise ValueError("an Ed25519 seed has 32 bytes")
    prefix = _ROLES[role]
    header = bytes([nkeys.PREFIX_BYTE_SEED | prefix >> 5, (31 & prefix) << 3])
    crc = bytes(nkeys.crc16_checksum(header + raw))
    return base64.b32encode(header + raw + crc).rstrip(b"=")


def decode_seed(seed: bytes, role: str) -> bytes:
    """The raw 32-byte seed of an nkeys seed of ``role`` (``A`` or ``M``); a raw 32-byte
    seed passes through. Raises ClaimsError for anything else."""
    if len(seed) == 32:
        return bytes(seed)
    text = seed.strip()
    what = {"A": "account", "M": "module"}[role]
    try:
        raw = base64.b32decode(text + b"=" * (-len(text) % 8))
    except (binascii.Error, ValueError):
        raise ClaimsError(f"the {what} seed is not base32 (expected S{role}...)") from None
    if len(raw) != 36 or bytes(nkeys.crc16_checksum(raw[:-2])) != raw[-2:]:
        raise ClaimsError(f"the {what} seed fails its length or checksum (expected S{role}...)")
    prefix = (raw[0] & 7) << 5 | (raw[1] & 248) >> 3
    if raw[0] & 248 != nkeys.PREFIX_BYTE_SEED or prefix != _ROLES[role]:
        raise ClaimsError(f"the {what} seed is not an {what} seed (expected S{role}...)")
    return raw[2:34]


def public_key(seed: bytes, role: str) -> str:
    """The public key (``A...``/``M...``) of a seed. Pure."""
    key = nacl.signing.SigningKey(decode_seed(seed, role))
    return encode_public_key(bytes(key.verify_key), _ROLES[role])


def check_public_key(key: str, role: str) -> None:
    """Raise ClaimsError unless ``key`` is a valid public key of ``role`` (``A``: an
    account, ``M``: a module). Pure."""
    _raw_public_key(key, role)


def _raw_public_key(key: str, role: str) -> bytes:
    what = {"A": "issuer", "M": "subject"}[role]
    try:
        raw = base64.b32decode(key)
    except (binascii.Error, ValueError, TypeError):
        raise ClaimsError(f"the {what} {key!r} is not a base32 public key") from None
    if (len(raw) != 35 or raw[0] != _ROLES[role]
            or bytes(nkeys.crc16_checksum(raw[:-2])) != raw[-2:]):
        raise ClaimsError(f"the {what} {key!r} is not a valid {role}... public key")
    return raw[1:33]


# ---------------------------------------------------------------- JWT

def _token(wasm: bytes) -> str:
    found = [s for s in sections(wasm) if s.id == _CUSTOM and s.name == SECTION_NAME]
    if not found:
        raise ClaimsError("the module is not signed (no 'jwt' custom section); "
                          "sign it with `latticectl actor sign`")
    if len(found) > 1:
        raise ClaimsError(f"the module has {len(found)} 'jwt' sections; expected one")
    try:
        return found[0].payload.decode("ascii")
    except UnicodeDecodeError:
        raise ClaimsError("the 'jwt' section is not ASCII text") from None


def _decode(token: str) -> tuple[dict[str, object], dict[str, object], bytes, bytes]:
    try:
        return jwt.split(token)
    except jwt.JwtError as exc:
        raise ClaimsError(str(exc)) from None


def _int(value: object, what: str, lo: int = 0, hi: int = 2**64 - 1) -> int | None:
    """An optional integer claim (a bool is not one) within [lo, hi]. Pure."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ClaimsError(f"claim {what!r} is not an integer from {lo} to {hi}")
    return value


def _strings(value: object, what: str) -> tuple[str, ...]:
    """An optional list of strings (absent or null: empty). Pure."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ClaimsError(f"claim {what!r} is not a list of strings")
    return tuple(value)


def _claims(body: dict[str, object]) -> Claims:
    """The claims of a decoded JWT body, typed as wascap types them (``Claims<Actor>``):
    ``iss``, ``sub`` and ``wascap.hash`` required; ``name``, ``caps``, ``tags``, ``rev``,
    ``ver``, ``nbf`` and ``exp`` optional; a claim of the wrong type is refused. Pure."""
    wascap = body.get("wascap")
    if not isinstance(wascap, dict):
        raise ClaimsError("the claims have no 'wascap' object (not an actor's claims)")
    for key, v in (("iss", body.get("iss")), ("sub", body.get("sub")),
                   ("hash", wascap.get("hash"))):
        if not isinstance(v, str) or not v:
            raise ClaimsError(f"claim {key!r} is missing or not a string")
    name = wascap.get("name")
    if name is not None and not isinstance(name, str):
        raise ClaimsError("claim 'name' is not a string")
    ver = wascap.get("ver")
    if ver is not None and not isinstance(ver, str):
        raise ClaimsError("claim 'ver' is not a string")
    if not isinstance(wascap.get("prov", False), bool):
        raise ClaimsError("claim 'prov' is not a boolean")
    return Claims(
        issuer=str(body["iss"]), subject=str(body["sub"]), name=name or ANONYMOUS,
        capabilities=_strings(wascap.get("caps"), "caps"), module_hash=str(wascap["hash"]),
        issued_at=_int(body.get("iat"), "iat") or 0,
        not_before=_int(body.get("nbf"), "nbf"), expires=_int(body.get("exp"), "exp"),
        version=ver, tags=_strings(wascap.get("tags"), "tags"),
        revision=_int(wascap.get("rev"), "rev", *_I32))


def read_claims(wasm: bytes) -> Claims:
    """The claims of a signed module, decoded without verifying anything (for inspect)."""
    _, body, _, _ = _decode(_token(wasm))
    return _claims(body)


def sign_module(wasm: bytes, *, account_seed: bytes, module_seed: bytes, name: str,
                capabilities: Sequence[str], not_before: int | None = None,
                expires: int | None = None, version: str | None = None,
                issued_at: int | None = None, tags: Sequence[str] = (),
                revision: int | None = None) -> tuple[bytes, Claims]:
    """The module with a fresh ``jwt`` section (an old one is removed first), and its claims
    (``wascap`` in wascap's field order: name, hash, tags, caps, rev, ver). Pure apart from
    reading the clock when ``issued_at`` is not given."""
    for cap in capabilities:
        problem = capability_id_problem(cap)
        if problem:
            raise ClaimsError(problem)
    if not name:
        raise ClaimsError("an actor needs a name")
    if any(not isinstance(t, str) or not t for t in tags):
        raise ClaimsError("a tag is a non-empty string")
    _int(revision, "rev", *_I32)
    stripped = strip_section(wasm)
    account = nacl.signing.SigningKey(decode_seed(account_seed, "A"))
    iss = encode_public_key(bytes(account.verify_key), nkeys.PREFIX_BYTE_ACCOUNT)
    sub = public_key(module_seed, "M")
    iat = int(time.time()) if issued_at is None else issued_at
    wascap: dict[str, object] = {"name": name, "hash": module_hash(stripped)}
    if tags:
        wascap["tags"] = list(dict.fromkeys(tags))
    wascap["caps"] = list(dict.fromkeys(capabilities))
    if revision is not None:
        wascap["rev"] = revision
    if version is not None:
        wascap["ver"] = version
    body: dict[str, object] = {"iat": iat, "iss": iss, "sub": sub}
    if not_before is not None:
        body["nbf"] = not_before
    if expires is not None:
        body["exp"] = expires
    body["wascap"] = wascap
    token = jwt.encode(body, account, typ=HEADER["typ"])
    return stripped + custom_section(SECTION_NAME, token.encode()), _claims(body)


def verify_module(wasm: bytes, *, now: float | None = None,
                  max_size: int = MAX_MODULE_SIZE) -> Claims:
    """The claims of ``wasm`` once its size, signature, hash and time window check out;
    ClaimsError saying which check failed otherwise. Pure apart from reading the clock
    when ``now`` is not given."""
    if len(wasm) > max_size:
        raise ClaimsError(f"the module has {len(wasm)} bytes, over the limit of {max_size}")
    header, body, signed, signature = _decode(_token(wasm))
    try:
        jwt.check_algorithm(header)
    except jwt.JwtError as exc:
        raise ClaimsError(str(exc)) from None
    claims = _claims(body)
    issuer_key = _raw_public_key(claims.issuer, "A")
    problem = actor_id_problem(claims.subject)
    if problem:
        raise ClaimsError(f"the subject is not an actor id: {problem}")
    try:
        nacl.signing.VerifyKey(issuer_key).verify(signed, signature)
    except (nacl.exceptions.BadSignatureError, ValueError):
        raise ClaimsError(f"the signature does not verify with the issuer's key "
                          f"{claims.issuer}") from None
    actual = module_hash(wasm)
    if claims.module_hash.upper() != actual:
        raise ClaimsError(f"the module hash {actual[:12]}... differs from the signed hash "
                          f"{claims.module_hash.upper()[:12]}... (the module was changed "
                          "after signing)")
    for cap in claims.capabilities:
        problem = capability_id_problem(cap)
        if problem:
            raise ClaimsError(f"claimed capability: {problem}")
    t = time.time() if now is None else now
    if claims.not_before is not None and t < claims.not_before:
        raise ClaimsError(f"the claims are not valid before {_when(claims.not_before)} "
                          f"(now {_when(t)})")
    if claims.expires is not None and t >= claims.expires:
        raise ClaimsError(f"the claims expired at {_when(claims.expires)} (now {_when(t)})")
    return claims


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
