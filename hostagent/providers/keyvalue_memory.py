"""``wascc:keyvalue`` / ``memory``: a key-value store in the host's memory.

Operations (keys are UTF-8 text, values bytes): ``Get`` key -> value (empty when absent),
``Set`` "key=value", ``Del`` key, ``Incr`` key -> the new integer as decimal text. One
provider runs per binding name on a host; each actor bound to it has a store of its own
(no actor reads, fills or deletes another's keys), dropped when its binding is deleted
and, with every other, when the provider stops.

Each store is bounded by the quotas of :mod:`.quota`, overridable by binding values:
``MAX_BYTES`` (keys and values together), ``MAX_KEYS`` and ``MAX_VALUE_BYTES``. A ``Set``
or ``Incr`` that would go over one is refused whole (:class:`~.quota.QuotaExceeded`,
which the guest reads) and the store is left as it was.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from hostagent.providers.base import ProviderContext, ProviderError
from hostagent.providers.quota import Quota, QuotaExceeded, read_quota

log = logging.getLogger(__name__)

MAX_BYTES = Quota("MAX_BYTES", 16 * 1024 * 1024, "bytes")
MAX_KEYS = Quota("MAX_KEYS", 10_000, "keys")
MAX_VALUE_BYTES = Quota("MAX_VALUE_BYTES", 1024 * 1024, "bytes")
QUOTAS = (MAX_BYTES, MAX_KEYS, MAX_VALUE_BYTES)
_WHO = "keyvalue"


@dataclass(frozen=True)
class Limits:
    """The quotas of one binding."""

    max_bytes: int = MAX_BYTES.default
    max_keys: int = MAX_KEYS.default
    max_value_bytes: int = MAX_VALUE_BYTES.default

    @classmethod
    def of(cls, values: Mapping[str, str]) -> Limits:
        """From a binding's values (ProviderError on a bad one). Pure."""
        return cls(*(read_quota(values, q) for q in QUOTAS))


@dataclass
class Store:
    """One actor's keys, and the bytes they take (keys in UTF-8 plus values)."""

    limits: Limits = field(default_factory=Limits)
    data: dict[str, bytes] = field(default_factory=dict)
    used: int = 0

    def put(self, key: str, value: bytes) -> None:
        """Set ``key``, or raise QuotaExceeded leaving the store unchanged."""
        lim = self.limits
        if len(value) > lim.max_value_bytes:
            raise QuotaExceeded(_WHO, MAX_VALUE_BYTES, lim.max_value_bytes,
                                f"a value of {len(value)} bytes")
        old = self.data.get(key)
        key_bytes = len(key.encode())
        if old is None and len(self.data) >= lim.max_keys:
            raise QuotaExceeded(_WHO, MAX_KEYS, lim.max_keys,
                                f"the store would hold {len(self.data) + 1} keys")
        after = self.used + len(value) + (key_bytes if old is None else -len(old))
        if after > lim.max_bytes and after > self.used:
            raise QuotaExceeded(_WHO, MAX_BYTES, lim.max_bytes,
                                f"the store would hold {after} bytes")
        self.data[key] = value
        self.used = after

    def delete(self, key: str) -> None:
        old = self.data.pop(key, None)
        if old is not None:
            self.used -= len(key.encode()) + len(old)


class MemoryKeyValue:
    """Thread-safe stores, one per bound actor, behind the keyvalue operations."""

    capability_id: ClassVar[str] = "wascc:keyvalue"
    vendor_id: ClassVar[str] = "memory"

    def __init__(self, ctx: ProviderContext) -> None:
        self.ctx = ctx
        self._stores: dict[str, Store] = {}  # actor id -> its store
        self._lock = threading.Lock()

    async def start(self) -> None:
        log.info("keyvalue memory provider %s started", self.ctx.binding_name)

    async def stop(self) -> None:
        with self._lock:
            self._stores.clear()

    async def bind(self, actor_id: str, values: Mapping[str, str]) -> None:
        limits = Limits.of(values)  # a rebinding keeps the data under the new limits
        with self._lock:
            self._store(actor_id).limits = limits

    async def unbind(self, actor_id: str) -> None:
        with self._lock:
            store = self._stores.pop(actor_id, None)
        if store is not None and store.data:
            log.info("keyvalue %s: dropped the %d keys (%d bytes) of actor %s",
                     self.ctx.binding_name, len(store.data), store.used, actor_id)

    def _store(self, actor_id: str) -> Store:
        store = self._stores.get(actor_id)
        if store is None:
            store = self._stores[actor_id] = Store()
        return store

    def host_call(self, actor_id: str, operation: str, payload: bytes) -> bytes:
        with self._lock:
            store = self._store(actor_id)
            if operation == "Get":
                return store.data.get(payload.decode(errors="replace"), b"")
            if operation == "Set":
                key, sep, value = payload.partition(b"=")
                if not sep:
                    raise ProviderError("Set takes 'key=value'")
                store.put(key.decode(errors="replace"), value)
                return b""
            if operation == "Del":
                store.delete(payload.decode(errors="replace"))
                return b""
            if operation == "Incr":
                key_text = payload.decode(errors="replace")
                try:
                    count = int(store.data.get(key_text, b"0")) + 1
                except ValueError:
                    raise ProviderError(f"value of {key_text[:80]!r} is not an integer"
                                        ) from None
                store.put(key_text, str(count).encode())
                return str(count).encode()
        raise ProviderError(f"keyvalue has no operation {operation!r} (Get, Set, Del, Incr)")

    def state(self) -> dict[str, str]:
        with self._lock:
            return {"keys": str(sum(len(s.data) for s in self._stores.values()))}
