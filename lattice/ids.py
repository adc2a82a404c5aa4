"""Identifiers: actor (module) public keys and capability ids.

Pure functions. An actor id is the nkeys encoding of an Ed25519 public key with the
module prefix: 56 base32 characters starting with ``M``, whose last two bytes are a
CRC-16 of the rest. A capability id is ``namespace:name`` (e.g. ``wascc:messaging``).
"""

from __future__ import annotations

import base64
import binascii
import os

import nkeys

#: nkeys prefix byte for a module (actor) public key: 12 << 3, which encodes as 'M'.
PREFIX_BYTE_MODULE = 12 << 3
ACTOR_ID_LENGTH = 56

ACTOR_ID_HELP = (
    "an actor id is the module's public key: 56 characters of A-Z and 2-7 starting with "
    "'M', the subject of the actor's signed claims (e.g. "
    "MB2ZQB6ROOMAYBO4ZCTFYWN7YIVBWA3MTKZYAQKJMTIHE2ELLRW2E3ZW)"
)


def actor_id_problem(value: str) -> str | None:
    """Why ``value`` is not a valid actor id, or None when it is."""
    if not isinstance(value, str):
        return f"expected a string, got {type(value).__name__}; {ACTOR_ID_HELP}"
    if len(value) != ACTOR_ID_LENGTH:
        return f"{value!r} has {len(value)} characters, not {ACTOR_ID_LENGTH}; {ACTOR_ID_HELP}"
    if not value.startswith("M"):
        return f"{value!r} does not start with 'M'; {ACTOR_ID_HELP}"
    try:
        raw = base64.b32decode(value)
    except (binascii.Error, ValueError):
        return f"{value!r} is not base32; {ACTOR_ID_HELP}"
    if raw[0] != PREFIX_BYTE_MODULE:
        return f"{value!r} is not a module key; {ACTOR_ID_HELP}"
    body, crc = raw[:-2], raw[-2:]
    if bytes(nkeys.crc16_checksum(body)) != crc:
        return f"{value!r} fails its checksum (a typo?); {ACTOR_ID_HELP}"
    return None


def encode_public_key(public_key: bytes, prefix_byte: int = PREFIX_BYTE_MODULE) -> str:
    """Encode a 32-byte Ed25519 public key the nkeys way (prefix, key, CRC-16, base32)."""
    if len(public_key) != 32:
        raise ValueError("an Ed25519 public key has 32 bytes")
    body = bytes([prefix_byte]) + public_key
    crc = bytes(nkeys.crc16_checksum(body))
    return base64.b32encode(body + crc).decode().rstrip("=")


def encode_module_key(public_key: bytes) -> str:
    """Encode a 32-byte Ed25519 public key as an actor id."""
    return encode_public_key(public_key, PREFIX_BYTE_MODULE)


def random_actor_id() -> str:
    """A syntactically valid actor id for a random key (tests and examples)."""
    return encode_module_key(os.urandom(32))


def random_host_id() -> str:
    """A fresh nkeys-style server public key ('N...'), a host's id for one run."""
    return encode_public_key(os.urandom(32), nkeys.PREFIX_BYTE_SERVER)
