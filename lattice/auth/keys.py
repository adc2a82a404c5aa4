"""nkeys and the NATS JWTs of a secured lattice: operator, accounts, users, ``.creds`` text.

Pure functions and frozen records, no I/O apart from :func:`new_key` drawing randomness
(:mod:`lattice.auth.store` keeps them on disk). This is NATS' decentralized (operator) auth
as ``nsc`` writes it: an operator key signs account JWTs, an account key signs user JWTs,
and nats-server trusts the operator JWT it is configured with. Every token goes through the
project's one JWT encoder, :mod:`lattice.auth.jwt`.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import nacl.signing
import nkeys

from lattice.auth import jwt
from lattice.ids import encode_public_key

Role = Literal["operator", "account", "user"]
_PREFIX: dict[Role, int] = {
    "operator": nkeys.PREFIX_BYTE_OPERATOR,
    "account": nkeys.PREFIX_BYTE_ACCOUNT,
    "user": nkeys.PREFIX_BYTE_USER,
}
#: "no limit" in NATS JWT limits.
UNLIMITED = -1


class AuthKeyError(ValueError):
    """A seed that is not an nkeys seed of the expected role."""


@dataclass(frozen=True)
class NKey:
    """An Ed25519 key pair in nkeys form: ``seed`` is ``SO...``/``SA...``/``SU...``."""

    role: Role
    seed: str

    def signing_key(self) -> nacl.signing.SigningKey:
        prefix, raw = nkeys.decode_seed(self.seed.encode())
        if prefix != _PREFIX[self.role]:
            raise AuthKeyError(f"the seed is not an {self.role} seed")
        return nacl.signing.SigningKey(bytes(raw))

    @property
    def public_key(self) -> str:
        """``O...``, ``A...`` or ``U...``."""
        return encode_public_key(bytes(self.signing_key().verify_key), _PREFIX[self.role])

    def __repr__(self) -> str:  # never print a seed
        return f"NKey({self.role}, {self.public_key})"


def new_key(role: Role) -> NKey:
    """A fresh random key of ``role``."""
    return NKey(role, nkeys.encode_seed(os.urandom(32), _PREFIX[role]).decode())


def parse_seed(text: str, role: Role) -> NKey:
    """An :class:`NKey` of ``role`` from seed text; AuthKeyError when it is something else.
    Pure."""
    key = NKey(role, text.strip())
    try:
        key.signing_key()
    except (nkeys.NkeysError, ValueError) as exc:
        raise AuthKeyError(f"not an nkeys {role} seed: {exc}") from None
    return key


def host_id_of(user_public_key: str) -> str:
    """The host id that belongs to a host's user key: the same Ed25519 key with the
    server prefix (``N...``), so a host's id is fixed by its credentials and can be named
    in its permissions. Pure."""
    _, raw = _decode_public(user_public_key)
    return encode_public_key(raw, nkeys.PREFIX_BYTE_SERVER)


def user_key_of_host(host_id: str) -> str:
    """Inverse of :func:`host_id_of`. Pure."""
    _, raw = _decode_public(host_id)
    return encode_public_key(raw, nkeys.PREFIX_BYTE_USER)


def _decode_public(key: str) -> tuple[int, bytes]:
    try:
        raw = base64.b32decode(key + "=" * (-len(key) % 8))
    except ValueError:
        raise AuthKeyError(f"{key!r} is not an nkeys public key") from None
    if len(raw) != 35 or bytes(nkeys.crc16_checksum(raw[:-2])) != raw[-2:]:
        raise AuthKeyError(f"{key!r} is not an nkeys public key (length or checksum)")
    return raw[0], raw[1:33]


# ---------------------------------------------------------------- permissions

@dataclass(frozen=True)
class Permissions:
    """Allow-lists of one user (NATS: a subject must match an allow entry, and no deny
    entry). ``responses`` lets it answer requests it received (``resp`` in the JWT)."""

    pub_allow: tuple[str, ...] = ()
    sub_allow: tuple[str, ...] = ()
    pub_deny: tuple[str, ...] = ()
    sub_deny: tuple[str, ...] = ()
    responses: int = 0  #: replies allowed per request received (0: none)

    def claims(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        pub: dict[str, list[str]] = {}
        sub: dict[str, list[str]] = {}
        if self.pub_allow:
            pub["allow"] = list(self.pub_allow)
        if self.pub_deny:
            pub["deny"] = list(self.pub_deny)
        if self.sub_allow:
            sub["allow"] = list(self.sub_allow)
        if self.sub_deny:
            sub["deny"] = list(self.sub_deny)
        out["pub"] = pub
        out["sub"] = sub
        if self.responses:
            out["resp"] = {"max": self.responses, "ttl": 0}
        return out


# ---------------------------------------------------------------- JWTs

def operator_jwt(operator: NKey, *, name: str, system_account: str,
                 issued_at: int | None = None) -> str:
    """The operator's self-signed JWT naming its system account. Pure but for the clock."""
    body = {"iat": _now(issued_at), "iss": operator.public_key, "name": name,
            "sub": operator.public_key,
            "nats": {"system_account": system_account, "type": "operator", "version": 2}}
    return jwt.encode(body, operator.signing_key())


def account_jwt(operator: NKey, account: NKey, *, name: str, jetstream: bool = True,
                revocations: Mapping[str, int] | None = None,
                issued_at: int | None = None) -> str:
    """An account JWT signed by the operator; ``revocations`` maps user public keys to the
    time before which their JWTs no longer count. Pure but for the clock."""
    limits: dict[str, Any] = {"subs": UNLIMITED, "data": UNLIMITED, "payload": UNLIMITED,
                              "imports": UNLIMITED, "exports": UNLIMITED,
                              "wildcards": True, "conn": UNLIMITED, "leaf": UNLIMITED}
    if jetstream:
        limits.update({"mem_storage": UNLIMITED, "disk_storage": UNLIMITED,
                       "streams": UNLIMITED, "consumer": UNLIMITED})
    nats: dict[str, Any] = {"limits": limits, "default_permissions": {"pub": {}, "sub": {}},
                            "type": "account", "version": 2}
    if revocations:
        nats["revocations"] = dict(sorted(revocations.items()))
    body = {"iat": _now(issued_at), "iss": operator.public_key, "name": name,
            "sub": account.public_key, "nats": nats}
    return jwt.encode(body, operator.signing_key())


def user_jwt(account: NKey, user_public_key: str, *, name: str, permissions: Permissions,
             tags: tuple[str, ...] = (), issued_at: int | None = None) -> str:
    """A user JWT signed by its account, carrying the user's permissions. Pure but for the
    clock."""
    nats: dict[str, Any] = {**permissions.claims(), "subs": UNLIMITED, "data": UNLIMITED,
                            "payload": UNLIMITED, "type": "user", "version": 2}
    if tags:
        nats["tags"] = list(tags)
    body = {"iat": _now(issued_at), "iss": account.public_key, "name": name,
            "sub": user_public_key, "nats": nats}
    return jwt.encode(body, account.signing_key())


def claims_of(token: str) -> dict[str, Any]:
    """The claims of a JWT, unverified (for reading back what we wrote). Pure."""
    return jwt.split(token)[1]


@dataclass(frozen=True)
class Credentials:
    """A user's JWT and seed: what a ``.creds`` file holds."""

    jwt: str
    seed: str = field(repr=False)

    def text(self) -> str:
        """The standard ``.creds`` file format that nats-py, the nats CLI and nsc read."""
        return (
            "-----BEGIN NATS USER JWT-----\n"
            f"{self.jwt}\n"
            "------END NATS USER JWT------\n\n"
            "************************* IMPORTANT *************************\n"
            "NKEY Seed printed below can be used to sign and prove identity.\n"
            "NKEYs are sensitive and should be treated as secrets.\n\n"
            "-----BEGIN USER NKEY SEED-----\n"
            f"{self.seed}\n"
            "------END USER NKEY SEED------\n\n"
            "*************************************************************\n"
        )

    @classmethod
    def parse(cls, text: str) -> Credentials:
        """The JWT and seed of ``.creds`` text; AuthKeyError when either is missing."""
        blocks: list[str] = []
        lines = iter(text.splitlines())
        for line in lines:
            if line.startswith("-----BEGIN"):
                blocks.append(next(lines, "").strip())
        if len(blocks) < 2 or not blocks[0] or not blocks[1].startswith("SU"):
            raise AuthKeyError("not a NATS .creds file (a user JWT and an SU... seed)")
        return cls(jwt=blocks[0], seed=blocks[1])

    @property
    def user(self) -> NKey:
        return parse_seed(self.seed, "user")


def issue_user(account: NKey, *, name: str, permissions: Permissions,
               tags: tuple[str, ...] = (), user: NKey | None = None) -> Credentials:
    """Credentials for a (new, unless given) user of ``account``."""
    user = user or new_key("user")
    token = user_jwt(account, user.public_key, name=name, permissions=permissions, tags=tags)
    return Credentials(jwt=token, seed=user.seed)


def _now(issued_at: int | None) -> int:
    return int(time.time()) if issued_at is None else issued_at


def host_id_of_creds(creds: Credentials) -> str | None:
    """The host id fixed by a host's credentials (a user JWT of role host), else None.
    Pure."""
    tags = claims_of(creds.jwt).get("nats", {}).get("tags", []) or []
    if "vinculum-role:host" not in tags:
        return None
    return host_id_of(creds.user.public_key)


INBOX_TAG = "vinculum-inbox:"


def inbox_of(token: str) -> str | None:
    """The inbox prefix a user JWT confines its holder to (its ``vinculum-inbox:`` tag),
    or None when it may use any. Pure."""
    for tag in claims_of(token).get("nats", {}).get("tags", []) or []:
        if isinstance(tag, str) and tag.startswith(INBOX_TAG):
            return tag[len(INBOX_TAG):]
    return None
