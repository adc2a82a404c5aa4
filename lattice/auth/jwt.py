"""The one JWT encoder of the project: NATS-style JWTs signed with Ed25519 nkeys.

Pure functions, no I/O. Both kinds of token vinculum writes go through here: the claims of
an actor module (:mod:`lattice.claims`, waSCC's format) and the operator, account and user
JWTs of a secured lattice (:mod:`lattice.auth.nats`). A token is
``base64url(header).base64url(claims).base64url(signature)`` without padding, the signature
being Ed25519 over the first two parts, as nats-server and waSCC's wascap expect. ``jti``
is the base32 SHA-256 of the claims without it (as the NATS JWT library computes it).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

import nacl.exceptions
import nacl.signing

#: The algorithm NATS and waSCC write; wascap wrote ``Ed25519`` too (compared loosely).
ALGORITHM = "ed25519-nkey"


class JwtError(ValueError):
    """A token that is not a well-formed, correctly signed JWT; the message says why."""


def b64(data: bytes) -> str:
    """base64url without padding. Pure."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str, what: str) -> bytes:
    """Inverse of :func:`b64`; JwtError naming ``what`` for bad input. Pure."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise JwtError(f"the JWT {what} is not base64url") from None


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def with_jti(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with ``jti`` set to the base32 SHA-256 of the rest. Pure."""
    rest = {k: v for k, v in body.items() if k != "jti"}
    digest = hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).digest()
    return {**rest, "jti": base64.b32encode(digest).decode().rstrip("=")}


def encode(body: dict[str, Any], key: nacl.signing.SigningKey, *, typ: str = "JWT") -> str:
    """A signed token of ``body`` (its ``jti`` filled in unless given). Pure."""
    if "jti" not in body:
        body = with_jti(body)
    head = b64(_json({"typ": typ, "alg": ALGORITHM}))
    payload = b64(_json(body))
    signature = key.sign(f"{head}.{payload}".encode()).signature
    return f"{head}.{payload}.{b64(signature)}"


def split(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """(header, claims, signed bytes, signature) of a token, nothing verified. Pure."""
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise JwtError(f"the JWT has {len(parts)} parts, not 3")
    try:
        header = json.loads(unb64(parts[0], "header"))
        body = json.loads(unb64(parts[1], "claims"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise JwtError("the JWT header or claims are not JSON") from None
    if not isinstance(header, dict) or not isinstance(body, dict):
        raise JwtError("the JWT header and claims must be JSON objects")
    return header, body, f"{parts[0]}.{parts[1]}".encode(), unb64(parts[2], "signature")


def check_algorithm(header: dict[str, Any]) -> None:
    """JwtError unless the header names Ed25519 (``ed25519-nkey``; wascap's ``Ed25519``
    and plain ``ed25519`` are the same algorithm). Pure."""
    alg = header.get("alg")
    if not isinstance(alg, str) or alg.lower() not in (ALGORITHM, "ed25519"):
        raise JwtError(f"the JWT algorithm {alg!r} is not ed25519-nkey")


def verify(token: str, public_key: bytes) -> dict[str, Any]:
    """The claims of ``token`` once its algorithm and signature by ``public_key`` (32 raw
    bytes) check out; JwtError otherwise. Pure."""
    header, body, signed, signature = split(token)
    check_algorithm(header)
    try:
        nacl.signing.VerifyKey(public_key).verify(signed, signature)
    except (nacl.exceptions.BadSignatureError, ValueError):
        raise JwtError("the JWT signature does not verify") from None
    return body
