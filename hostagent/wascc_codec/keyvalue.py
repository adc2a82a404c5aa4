"""``wascc:keyvalue``: waSCC's key-value contract (codec ``keyvalue.rs``).

Every operation goes actor -> provider; keys and values are strings (a MessagePack str).

| operation | payload | answer |
|---|---|---|
| ``Get`` | ``GetRequest {key}`` | ``GetResponse {value, exists}`` |
| ``Set`` | ``SetRequest {key, value, expires}`` | ``SetResponse {value}`` |
| ``Add`` | ``AddRequest {key, value}`` | ``AddResponse {value}`` (the new value) |
| ``Del`` | ``DelRequest {key}`` | ``DelResponse {key}`` |
| ``KeyExists`` | ``KeyExistsQuery {key}`` | ``GetResponse {value: "", exists}`` |
| ``Push`` | ``ListPushRequest {key, value}`` | ``ListResponse {newCount}`` |
| ``ListItemDelete`` | ``ListDelItemRequest {key, value}`` | ``ListResponse {newCount}`` |
| ``Clear`` | ``ListClearRequest {key}`` | ``DelResponse {key}`` |
| ``Range`` | ``ListRangeRequest {key, start, stop}`` | ``ListRangeResponse {values}`` |
| ``SetAdd`` | ``SetAddRequest {key, value}`` | ``SetOperationResponse {newCount}`` |
| ``SetRemove`` | ``SetRemoveRequest {key, value}`` | ``SetOperationResponse {newCount}`` |
| ``SetUnion`` | ``SetUnionRequest {keys}`` | ``SetQueryResponse {values}`` |
| ``SetIntersection`` | ``SetIntersectionRequest {keys}`` | ``SetQueryResponse {values}`` |
| ``SetQuery`` | ``SetQueryRequest {key}`` | ``SetQueryResponse {values}`` |

The answers are those of waSCC's in-memory provider (``Clear`` and ``KeyExists`` reuse
``DelResponse`` and ``GetResponse``, as ``wascc-actor`` reads them). ``expires`` is in
seconds, 0 for never (i32); ``start`` and ``stop`` are i32 list indices, ``stop``
inclusive (``wascc-actor``'s ``list_range(key, start, stop_inclusive)``); ``newCount``
and ``Add``'s ``value`` are i32; ``values`` and ``keys`` are arrays of strings and may
be missing (serde ``default``). What the operations do is said in
:mod:`hostagent.providers.keyvalue_store`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hostagent.wascc_codec import I32

OP_ADD = "Add"
OP_GET = "Get"
OP_SET = "Set"
OP_DEL = "Del"
OP_CLEAR = "Clear"
OP_RANGE = "Range"
OP_PUSH = "Push"
OP_LIST_DEL = "ListItemDelete"
OP_SET_ADD = "SetAdd"
OP_SET_REMOVE = "SetRemove"
OP_SET_UNION = "SetUnion"
OP_SET_INTERSECT = "SetIntersection"
OP_SET_QUERY = "SetQuery"
OP_KEY_EXISTS = "KeyExists"


@dataclass(frozen=True, kw_only=True)
class GetRequest:
    key: str


@dataclass(frozen=True, kw_only=True)
class GetResponse:
    value: str
    exists: bool


@dataclass(frozen=True, kw_only=True)
class SetRequest:
    key: str
    value: str
    expires_s: I32
    __renames__ = {"expires_s": "expires"}


@dataclass(frozen=True, kw_only=True)
class SetResponse:
    value: str


@dataclass(frozen=True, kw_only=True)
class DelRequest:
    key: str


@dataclass(frozen=True, kw_only=True)
class DelResponse:
    key: str


@dataclass(frozen=True, kw_only=True)
class AddRequest:
    key: str
    value: I32


@dataclass(frozen=True, kw_only=True)
class AddResponse:
    value: I32


@dataclass(frozen=True, kw_only=True)
class ListPushRequest:
    key: str
    value: str


@dataclass(frozen=True, kw_only=True)
class ListDelItemRequest:
    key: str
    value: str


@dataclass(frozen=True, kw_only=True)
class ListClearRequest:
    key: str


@dataclass(frozen=True, kw_only=True)
class ListRangeRequest:
    key: str
    start: I32
    stop: I32


@dataclass(frozen=True, kw_only=True)
class ListRangeResponse:
    values: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class ListResponse:
    new_count: I32


@dataclass(frozen=True, kw_only=True)
class SetAddRequest:
    key: str
    value: str


@dataclass(frozen=True, kw_only=True)
class SetRemoveRequest:
    key: str
    value: str


@dataclass(frozen=True, kw_only=True)
class SetQueryRequest:
    key: str


@dataclass(frozen=True, kw_only=True)
class SetQueryResponse:
    values: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class SetIntersectionRequest:
    keys: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class SetUnionRequest:
    keys: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class SetOperationResponse:
    new_count: I32


@dataclass(frozen=True, kw_only=True)
class KeyExistsQuery:
    key: str
