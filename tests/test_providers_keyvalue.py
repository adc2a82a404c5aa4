"""``wascc:keyvalue`` / ``memory`` on its own (issue 13, and the quotas of issue 12): every
operation of waSCC's key-value contract through ``host_call`` with the codec's records,
what each answers (as waSCC's in-memory provider and ``wascc-actor`` read it), Redis's
meanings (``LRANGE`` against a model, ``INCRBY``, expiry on a replaced clock), a key of
the wrong kind, payloads that are not the operation's record, one store per actor dropped
with its binding, and the quotas: bytes, keys and value size, list items and set members
counted with their overhead, a refused call leaving the store as it was."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hostagent.providers.base import ProviderContext, ProviderError
from hostagent.providers.keyvalue_memory import MemoryKeyValue
from hostagent.providers.keyvalue_store import ITEM_OVERHEAD, Limits, Store, WrongKind
from hostagent.providers.quota import QuotaExceeded
from hostagent.wascc_codec import deserialize, serialize
from hostagent.wascc_codec import keyvalue as kv

R = TypeVar("R")


async def _no_actor(actor_id: str, op: str, payload: bytes) -> bytes:
    raise AssertionError("keyvalue never calls an actor")


async def provider(**values: str) -> MemoryKeyValue:
    p = MemoryKeyValue(ProviderContext(
        capability_id="wascc:keyvalue", binding_name="default", vendor_id="memory", nc=None,
        loop=asyncio.get_running_loop(), call_actor=_no_actor))
    await p.bind("M1", values)
    return p


def call(p: MemoryKeyValue, op: str, request: Any, answer: type[R], actor: str = "M1") -> R:
    """One host call with waSCC's records, as a waSCC actor makes it."""
    return deserialize(answer, p.host_call(actor, op, serialize(request)))


def get(p: MemoryKeyValue, key: str, actor: str = "M1") -> kv.GetResponse:
    return call(p, "Get", kv.GetRequest(key=key), kv.GetResponse, actor)


def put(p: MemoryKeyValue, key: str, value: str, actor: str = "M1", expires: int = 0) -> None:
    assert call(p, "Set", kv.SetRequest(key=key, value=value, expires_s=expires),
                kv.SetResponse, actor) == kv.SetResponse(value=value)


def push(p: MemoryKeyValue, key: str, value: str) -> int:
    return call(p, "Push", kv.ListPushRequest(key=key, value=value), kv.ListResponse).new_count


def members(p: MemoryKeyValue, op: str, request: Any) -> list[str]:
    return call(p, op, request, kv.SetQueryResponse).values


async def test_values_get_set_add_del_exists() -> None:
    p = await provider()
    assert get(p, "k") == kv.GetResponse(value="", exists=False)
    put(p, "k", "héllo")
    assert get(p, "k") == kv.GetResponse(value="héllo", exists=True)
    assert call(p, "KeyExists", kv.KeyExistsQuery(key="k"), kv.GetResponse) == \
        kv.GetResponse(value="", exists=True)
    assert call(p, "Del", kv.DelRequest(key="k"), kv.DelResponse) == kv.DelResponse(key="k")
    assert not call(p, "KeyExists", kv.KeyExistsQuery(key="k"), kv.GetResponse).exists
    # Add: a missing key counts as 0, the answer is the new value, Get reads it as text
    adds = [call(p, "Add", kv.AddRequest(key="n", value=v), kv.AddResponse).value
            for v in (5, 1, -10)]
    assert adds == [5, 6, -4]
    assert get(p, "n").value == "-4"
    put(p, "n", "41")
    assert call(p, "Add", kv.AddRequest(key="n", value=1), kv.AddResponse).value == 42
    put(p, "word", "abc")
    with pytest.raises(ProviderError, match="not an integer"):
        call(p, "Add", kv.AddRequest(key="word", value=1), kv.AddResponse)
    put(p, "big", str(2**31 - 1))
    with pytest.raises(ProviderError, match="overflows i32"):
        call(p, "Add", kv.AddRequest(key="big", value=1), kv.AddResponse)
    assert get(p, "big").value == str(2**31 - 1)


async def test_lists_push_range_delete_clear() -> None:
    p = await provider()
    assert [push(p, "l", v) for v in ("a", "b", "a", "c")] == [1, 2, 3, 4]
    rng = lambda a, b: call(p, "Range", kv.ListRangeRequest(key="l", start=a, stop=b),  # noqa: E731
                            kv.ListRangeResponse).values
    assert rng(0, -1) == ["a", "b", "a", "c"]
    assert rng(1, 2) == ["b", "a"]  # stop inclusive
    assert rng(-2, 100) == ["a", "c"]
    assert rng(3, 1) == []
    assert call(p, "ListItemDelete", kv.ListDelItemRequest(key="l", value="a"),
                kv.ListResponse).new_count == 2  # every occurrence
    assert rng(0, -1) == ["b", "c"]
    assert call(p, "Clear", kv.ListClearRequest(key="l"), kv.DelResponse).key == "l"
    assert rng(0, -1) == [] and not get(p, "l").exists
    assert call(p, "Range", kv.ListRangeRequest(key="none", start=0, stop=5),
                kv.ListRangeResponse).values == []


async def test_sets_add_remove_union_intersection_query() -> None:
    p = await provider()
    add = lambda k, v: call(p, "SetAdd", kv.SetAddRequest(key=k, value=v),  # noqa: E731
                            kv.SetOperationResponse).new_count
    assert [add("s", v) for v in ("bob", "alice", "dave", "bob")] == [1, 2, 3, 3]
    assert [add("t", v) for v in ("bob", "dave", "eve")] == [1, 2, 3]
    assert members(p, "SetQuery", kv.SetQueryRequest(key="s")) == ["alice", "bob", "dave"]
    assert members(p, "SetUnion", kv.SetUnionRequest(keys=["s", "t", "none"])) == \
        ["alice", "bob", "dave", "eve"]
    assert members(p, "SetIntersection", kv.SetIntersectionRequest(keys=["s", "t"])) == \
        ["bob", "dave"]
    assert members(p, "SetIntersection", kv.SetIntersectionRequest(keys=["s", "none"])) == []
    assert members(p, "SetIntersection", kv.SetIntersectionRequest(keys=[])) == []
    assert call(p, "SetRemove", kv.SetRemoveRequest(key="s", value="bob"),
                kv.SetOperationResponse).new_count == 2
    assert call(p, "SetRemove", kv.SetRemoveRequest(key="none", value="x"),
                kv.SetOperationResponse).new_count == 0


async def test_a_key_of_another_kind_is_refused_and_left_alone() -> None:
    p = await provider()
    put(p, "v", "1")
    push(p, "l", "x")
    with pytest.raises(WrongKind, match="key 'v' holds a value, not a list"):
        push(p, "v", "y")
    with pytest.raises(WrongKind, match="key 'l' holds a list, not a set"):
        members(p, "SetQuery", kv.SetQueryRequest(key="l"))
    with pytest.raises(WrongKind, match="key 'l' holds a list, not a value"):
        get(p, "l")
    assert get(p, "v").value == "1"
    put(p, "l", "now a value")  # Set replaces whatever the key held, as Redis's SET
    assert get(p, "l").value == "now a value"


async def test_payloads_that_are_not_the_operations_record_are_refused() -> None:
    p = await provider()
    with pytest.raises(ProviderError, match="Failed to de-serialize AddRequest: "
                                            "missing field value"):
        p.host_call("M1", "Add", serialize(kv.GetRequest(key="k")))
    with pytest.raises(ProviderError, match="expected i32"):
        p.host_call("M1", "Add", msgpack.packb({"key": "k", "value": "1"}))
    with pytest.raises(ProviderError, match="GetRequest: invalid type: integer `107`"):
        p.host_call("M1", "Get", b"k=v")  # the old text contract: 'k' is the integer 107
    with pytest.raises(ProviderError, match="no operation 'Incr'"):
        p.host_call("M1", "Incr", b"")


def test_expiry_on_a_replaced_clock() -> None:
    now = [1000.0]
    store = Store(clock=lambda: now[0])
    store.set_value("k", "v", expires_s=10)
    store.set_value("forever", "v")
    now[0] += 9.9
    assert store.get("k") == "v"
    now[0] += 0.2
    assert store.get("k") is None and not store.exists("k")
    assert store.get("forever") == "v"
    store.set_value("n", "1", expires_s=5)
    store.add("n", 1)  # keeps the expiry, as Redis's INCRBY
    store.set_value("m", "1", expires_s=5)
    store.set_value("m", "2")  # a Set without expires makes it permanent
    now[0] += 6
    assert store.get("n") is None and store.get("m") == "2"
    with pytest.raises(ProviderError, match="expires must be 0"):
        store.set_value("k", "v", expires_s=-1)


def test_expired_keys_are_dropped_before_a_quota_refuses() -> None:
    now = [0.0]
    store = Store(limits=Limits(max_keys=2), clock=lambda: now[0])
    store.set_value("a", "1", expires_s=1)
    store.set_value("b", "1")
    with pytest.raises(QuotaExceeded, match="MAX_KEYS"):
        store.set_value("c", "1")
    now[0] = 2
    store.set_value("c", "1")  # a had expired: dropped, then c fits
    assert sorted(store.items) == ["b", "c"] and store.used == 4


def lrange_model(items: list[str], start: int, stop: int) -> list[str]:
    """Redis's LRANGE, from its documentation."""
    n = len(items)
    start = max(n + start, 0) if start < 0 else start
    stop = n + stop if stop < 0 else min(stop, n - 1)
    return [items[i] for i in range(start, stop + 1) if 0 <= i < n]


@given(st.lists(st.text(max_size=3), max_size=8), st.integers(-10, 10), st.integers(-10, 10))
def test_range_is_redis_lrange(items: list[str], start: int, stop: int) -> None:
    store = Store()
    for item in items:
        store.push("l", item)
    assert store.range("l", start, stop) == lrange_model(items, start, stop)


@given(st.lists(st.tuples(st.sampled_from(["push", "del", "sadd", "srem", "set", "rm"]),
                          st.sampled_from(["a", "b"]), st.sampled_from(["x", "yy", "é"])),
                max_size=30))
def test_the_bytes_counted_are_the_bytes_held(ops: list[tuple[str, str, str]]) -> None:
    store = Store()
    for op, key, value in ops:
        try:
            {"push": store.push, "del": store.list_delete, "sadd": store.set_add,
             "srem": store.set_remove, "set": store.set_value,
             "rm": lambda k, v: store.delete(k)}[op](key, value)
        except WrongKind:
            pass
    size = lambda s: len(s.encode())  # noqa: E731
    held = sum(size(k) + (size(i) if isinstance(i, str) else
                          sum(size(x) + ITEM_OVERHEAD for x in i))
               for k, i in store.items.items())
    assert store.used == held == sum(store.sizes.values())


# ---------------------------------------------------------------- per actor, quotas

async def test_stores_are_per_actor_and_dropped_with_the_binding() -> None:
    p = await provider()
    await p.bind("M2", {})
    put(p, "k", "one")
    put(p, "k", "two", actor="M2")
    assert get(p, "k").value == "one"
    call(p, "Del", kv.DelRequest(key="k"), kv.DelResponse, actor="M2")
    assert get(p, "k").value == "one"  # M2 cannot delete M1's key
    assert p.state() == {"keys": "1"}
    await p.unbind("M1")
    assert p.state() == {"keys": "0"}
    await p.bind("M1", {})
    assert not get(p, "k").exists


async def test_quotas_refuse_with_the_quota_and_the_number() -> None:
    p = await provider(MAX_BYTES="20", MAX_KEYS="3", MAX_VALUE_BYTES="8")
    with pytest.raises(QuotaExceeded, match=r"quota MAX_VALUE_BYTES exceeded: a value of 9 "
                                            r"bytes, over the limit of 8 bytes"):
        put(p, "a", "123456789")
    put(p, "a", "12345678")  # 1 + 8 bytes
    put(p, "b", "12345678")  # 18
    with pytest.raises(QuotaExceeded, match=r"quota MAX_BYTES exceeded: the store would "
                                            r"hold 21 bytes, over the limit of 20 bytes"):
        put(p, "c", "12")
    put(p, "c", "")  # 19: a key takes its bytes
    with pytest.raises(QuotaExceeded, match=r"MAX_KEYS exceeded: the store would hold 4 "
                                            r"keys, over the limit of 3 keys"):
        put(p, "d", "")
    call(p, "Del", kv.DelRequest(key="c"), kv.DelResponse)  # 18
    put(p, "a", "1234567")  # 17: replacing a value counts the difference
    assert call(p, "Add", kv.AddRequest(key="n", value=1), kv.AddResponse).value == 1  # 19
    assert call(p, "Add", kv.AddRequest(key="n", value=1), kv.AddResponse).value == 2
    with pytest.raises(QuotaExceeded, match="would hold 21 bytes"):
        put(p, "n", "123")
    assert get(p, "n").value == "2"  # refused whole, store unchanged
    assert p.state() == {"keys": "3"}


async def test_list_items_and_set_members_count_their_overhead() -> None:
    p = await provider(MAX_BYTES=str(1 + 2 * (1 + ITEM_OVERHEAD)), MAX_VALUE_BYTES="4")
    assert push(p, "l", "x") == 1
    assert push(p, "l", "y") == 2
    with pytest.raises(QuotaExceeded, match=f"would hold {1 + 3 * (1 + ITEM_OVERHEAD)} "
                                            "bytes"):
        push(p, "l", "z")
    with pytest.raises(QuotaExceeded, match="MAX_VALUE_BYTES"):
        call(p, "SetAdd", kv.SetAddRequest(key="s", value="12345"), kv.SetOperationResponse)
    assert call(p, "Range", kv.ListRangeRequest(key="l", start=0, stop=-1),
                kv.ListRangeResponse).values == ["x", "y"]
    call(p, "ListItemDelete", kv.ListDelItemRequest(key="l", value="x"), kv.ListResponse)
    push(p, "l", "z")  # removing an item gives its bytes back


async def test_rebinding_lowers_limits_and_keeps_the_data() -> None:
    p = await provider()
    put(p, "big", "x" * 100)
    await p.bind("M1", {"MAX_BYTES": "50"})
    assert get(p, "big").value == "x" * 100
    with pytest.raises(QuotaExceeded, match="MAX_BYTES"):
        put(p, "more", "x")
    put(p, "big", "small")  # shrinking is always allowed
    put(p, "more", "x")


@pytest.mark.parametrize("value", ["lots", "0", "-5", "1.5"])
async def test_a_quota_value_that_is_not_a_positive_whole_number_is_refused(
        value: str) -> None:
    with pytest.raises(ProviderError, match="binding value MAX_KEYS must be a whole number") \
            as refused:
        await provider(MAX_KEYS=value)
    assert value not in str(refused.value).split()  # values may be secrets: never echoed
