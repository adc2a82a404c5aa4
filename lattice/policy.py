"""The lattice's trust policy: which accounts' actors every host may run.

One JetStream key-value bucket per lattice, ``vinculum_policy_<lattice id>``
(:func:`bucket_name`), holding the key ``trusted_issuers``: a JSON object
``{"issuers": ["A...", ...]}``. No key (or no bucket) means no lattice-wide policy: a host
then runs any actor whose signature verifies, unless its own ``--trusted-issuer`` list
says otherwise. A host reads the policy on every actor start (a start is rare and the
read is one round trip), so a change applies to the next start without a restart; what
already runs is left alone, as an admission check would.

``latticectl trust list|add|remove`` edits it (:func:`set_trusted`, compare-and-set on the
key's revision, so two editors cannot lose each other's change); the hosts read it with
:func:`read_trusted`. Format and commands are in docs/registry.md.
"""

from __future__ import annotations

import json

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.kv import KeyValue

from lattice import natsutil
from lattice.claims import ClaimsError, check_public_key
from lattice.errors import PermanentError, TransientError

KEY = "trusted_issuers"


class PolicyError(PermanentError):
    """The stored policy cannot be read (not the JSON this module writes)."""


class PolicyUnavailable(TransientError):
    """The policy could not be read or written now (NATS or JetStream not answering)."""


def bucket_name(lattice_id: str) -> str:
    """The key-value bucket of a lattice's policy. Pure."""
    return natsutil.bucket_name("vinculum_policy", lattice_id)


def parse_issuers(keys: list[str]) -> list[str]:
    """Account public keys, checked, deduplicated and sorted; ValueError naming a bad
    one. Pure."""
    for key in keys:
        try:
            check_public_key(key, "A")
        except ClaimsError as exc:
            raise ValueError(str(exc)) from None
    return sorted(set(keys))


async def _bucket(nc: Client, lattice_id: str, *, create: bool,
                  replicas: int | None = None) -> KeyValue | None:
    js = natsutil.jetstream(nc)
    try:
        return await js.key_value(bucket_name(lattice_id))
    except nats.js.errors.BucketNotFoundError:
        if not create:
            return None
        return await js.create_key_value(bucket=bucket_name(lattice_id), history=5,
                                         replicas=replicas or natsutil.js_replicas(nc))


async def read_trusted(nc: Client, lattice_id: str) -> tuple[frozenset[str] | None, int]:
    """The lattice-wide trusted issuers (None: no policy) and the key's revision (0: none).
    Raises PolicyUnavailable when NATS does not answer, PolicyError on a corrupt value."""
    try:
        kv = await _bucket(nc, lattice_id, create=False)
        if kv is None:
            return None, 0
        try:
            entry = await kv.get(KEY)
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return None, 0
    except (nats.errors.Error, TimeoutError, OSError) as exc:
        raise PolicyUnavailable(f"cannot read the trust policy of lattice {lattice_id}: "
                                f"{exc or type(exc).__name__}") from exc
    try:
        doc = json.loads(entry.value or b"")
        issuers = parse_issuers(list(doc["issuers"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise PolicyError(f"the trust policy of lattice {lattice_id} "
                          f"({bucket_name(lattice_id)}/{KEY}) is not valid: {exc}") from exc
    return frozenset(issuers), entry.revision or 0


async def set_trusted(nc: Client, lattice_id: str, issuers: list[str] | None,
                      *, revision: int, replicas: int | None = None) -> None:
    """Replace the policy (None: remove it, so every verified issuer is trusted again).
    ``revision`` is what :func:`read_trusted` returned: the write fails with
    PolicyUnavailable if someone else changed the policy since. ``replicas`` is that of
    the bucket if this write creates it (``lattice.localcluster.replicas_for``)."""
    try:
        kv = await _bucket(nc, lattice_id, create=issuers is not None, replicas=replicas)
        if kv is None:
            return
        if issuers is None:
            if revision:
                await kv.delete(KEY, last=revision)
            return
        value = json.dumps({"issuers": parse_issuers(issuers)}).encode()
        if revision:
            await kv.update(KEY, value, last=revision)
        else:
            await kv.create(KEY, value)
    except nats.js.errors.KeyWrongLastSequenceError as exc:
        raise PolicyUnavailable("the trust policy changed meanwhile; read it and try "
                                "again") from exc
    except (nats.errors.Error, TimeoutError, OSError) as exc:
        raise PolicyUnavailable(f"cannot write the trust policy of lattice {lattice_id}: "
                                f"{exc or type(exc).__name__}") from exc
