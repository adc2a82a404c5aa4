"""``wascc:keyvalue`` / ``memory``: waSCC's key-value contract, kept in the host's memory.

Speaks waSCC's codec (:mod:`hostagent.wascc_codec.keyvalue`: ``Get``, ``Set``, ``Add``,
``Del``, ``KeyExists``, ``Push``, ``ListItemDelete``, ``Clear``, ``Range``, ``SetAdd``,
``SetRemove``, ``SetUnion``, ``SetIntersection``, ``SetQuery``: a MessagePack record in,
one out), so that actors built with waSCC's SDK use it unchanged; what each operation
does is :mod:`.keyvalue_store`'s. A payload that is not the operation's record is refused
with the codec's words (``Failed to de-serialize AddRequest: missing field value``).

One provider runs per binding name on a host; each actor bound to it has a store of its
own (no actor reads, fills or deletes another's keys), dropped when its binding is
deleted and, with every other, when the provider stops. Each store is bounded by the
quotas of :mod:`.keyvalue_store` (``MAX_BYTES``, ``MAX_KEYS``, ``MAX_VALUE_BYTES``,
binding values); a call that would go over one is refused whole
(:class:`~.quota.QuotaExceeded`, which the guest reads) and the store is left as it was.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from hostagent.providers.base import ProviderContext, ProviderError
from hostagent.providers.keyvalue_store import Limits, Store
from hostagent.wascc_codec import CodecError, deserialize, serialize
from hostagent.wascc_codec import keyvalue as kv

log = logging.getLogger(__name__)


def _get(s: Store, r: kv.GetRequest) -> Any:
    value = s.get(r.key)
    return kv.GetResponse(value=value or "", exists=value is not None)


def _set(s: Store, r: kv.SetRequest) -> Any:
    s.set_value(r.key, r.value, r.expires_s)
    return kv.SetResponse(value=r.value)


def _del(s: Store, r: kv.DelRequest) -> Any:
    s.delete(r.key)
    return kv.DelResponse(key=r.key)


def _clear(s: Store, r: kv.ListClearRequest) -> Any:
    s.delete(r.key)
    return kv.DelResponse(key=r.key)


def _exists(s: Store, r: kv.KeyExistsQuery) -> Any:
    return kv.GetResponse(value="", exists=s.exists(r.key))


#: operation -> (its request record, what it does to a store and answers)
OPERATIONS: dict[str, tuple[type, Callable[[Store, Any], Any]]] = {
    kv.OP_GET: (kv.GetRequest, _get),
    kv.OP_SET: (kv.SetRequest, _set),
    kv.OP_ADD: (kv.AddRequest,
                lambda s, r: kv.AddResponse(value=s.add(r.key, r.value))),
    kv.OP_DEL: (kv.DelRequest, _del),
    kv.OP_KEY_EXISTS: (kv.KeyExistsQuery, _exists),
    kv.OP_PUSH: (kv.ListPushRequest,
                 lambda s, r: kv.ListResponse(new_count=s.push(r.key, r.value))),
    kv.OP_LIST_DEL: (kv.ListDelItemRequest,
                     lambda s, r: kv.ListResponse(new_count=s.list_delete(r.key, r.value))),
    kv.OP_CLEAR: (kv.ListClearRequest, _clear),
    kv.OP_RANGE: (kv.ListRangeRequest,
                  lambda s, r: kv.ListRangeResponse(values=s.range(r.key, r.start, r.stop))),
    kv.OP_SET_ADD: (kv.SetAddRequest,
                    lambda s, r: kv.SetOperationResponse(new_count=s.set_add(r.key, r.value))),
    kv.OP_SET_REMOVE: (kv.SetRemoveRequest, lambda s, r: kv.SetOperationResponse(
        new_count=s.set_remove(r.key, r.value))),
    kv.OP_SET_UNION: (kv.SetUnionRequest,
                      lambda s, r: kv.SetQueryResponse(values=s.set_union(r.keys))),
    kv.OP_SET_INTERSECT: (kv.SetIntersectionRequest, lambda s, r: kv.SetQueryResponse(
        values=s.set_intersection(r.keys))),
    kv.OP_SET_QUERY: (kv.SetQueryRequest,
                      lambda s, r: kv.SetQueryResponse(values=s.set_members(r.key))),
}


class MemoryKeyValue:
    """Thread-safe stores, one per bound actor, behind waSCC's keyvalue operations."""

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
        if store is not None and store.items:
            log.info("keyvalue %s: dropped the %d keys (%d bytes) of actor %s",
                     self.ctx.binding_name, len(store.items), store.used, actor_id)

    def _store(self, actor_id: str) -> Store:
        store = self._stores.get(actor_id)
        if store is None:
            store = self._stores[actor_id] = Store()
        return store

    def host_call(self, actor_id: str, operation: str, payload: bytes) -> bytes:
        entry = OPERATIONS.get(operation)
        if entry is None:
            raise ProviderError(f"keyvalue has no operation {operation[:80]!r} "
                                f"({', '.join(OPERATIONS)})")
        record, handle = entry
        try:
            request: Any = deserialize(record, payload)
        except CodecError as exc:
            raise ProviderError(str(exc)) from exc
        with self._lock:
            answer = handle(self._store(actor_id), request)
        return serialize(answer)

    def state(self) -> dict[str, str]:
        with self._lock:
            return {"keys": str(sum(len(s.items) for s in self._stores.values()))}
