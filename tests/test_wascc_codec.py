"""The waSCC codec (issue 13): every record of every operation of core, messaging,
keyvalue, logging and extras round-trips (hypothesis over each field's Rust type); a few
records' bytes are exactly those worked out by hand from the MessagePack spec and
rmp-serde's ``with_struct_map`` (what waSCC's actors read and write); and reading is as
serde's: unknown fields ignored, ``default`` and ``Option`` fields may be missing, a
missing required field, a duplicate, a wrong type or an integer out of range refused
naming it, a record as an array of its fields, a bin given as a str, trailing bytes."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hostagent.wascc_codec import (
    CodecError,
    IntType,
    camel,
    core,
    deserialize,
    extras,
    keyvalue,
    logging,
    messaging,
    serialize,
)

MODULES = (core, messaging, keyvalue, logging, extras)
RECORDS = [obj for module in MODULES for obj in vars(module).values()
           if isinstance(obj, type) and dataclasses.is_dataclass(obj)
           and obj.__module__ == module.__name__]
OPERATIONS = {name: value for module in MODULES for name, value in vars(module).items()
              if name.startswith("OP_")}


def strategy(hint: Any) -> st.SearchStrategy[Any]:
    """Values of a record field's type, over its whole range."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        kind = next(a for a in args[1:] if isinstance(a, IntType))
        return st.integers(kind.lo, kind.hi)
    if origin in (typing.Union, types.UnionType):
        return st.none() | strategy(next(a for a in args if a is not type(None)))
    if origin is list:
        return st.lists(strategy(args[0]), max_size=4)
    if origin is dict:
        return st.dictionaries(strategy(args[0]), strategy(args[1]), max_size=3)
    return {str: st.text(), bytes: st.binary(), bool: st.booleans()}[hint]


def records(cls: type) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls, include_extras=True)
    return st.builds(cls, **{f.name: strategy(hints[f.name])
                             for f in dataclasses.fields(cls)})


def test_every_operation_of_waSCCs_codec_is_here_by_its_name() -> None:
    assert OPERATIONS == {
        "OP_HEALTH_REQUEST": "HealthRequest", "OP_PERFORM_LIVE_UPDATE": "PerformLiveUpdate",
        "OP_IDENTIFY_CAPABILITY": "IdentifyCapability", "OP_INITIALIZE": "Initialize",
        "OP_BIND_ACTOR": "BindActor", "OP_REMOVE_ACTOR": "RemoveActor",
        "OP_DELIVER_MESSAGE": "DeliverMessage", "OP_PUBLISH_MESSAGE": "Publish",
        "OP_PERFORM_REQUEST": "Request",
        "OP_ADD": "Add", "OP_GET": "Get", "OP_SET": "Set", "OP_DEL": "Del",
        "OP_CLEAR": "Clear", "OP_RANGE": "Range", "OP_PUSH": "Push",
        "OP_LIST_DEL": "ListItemDelete", "OP_SET_ADD": "SetAdd",
        "OP_SET_REMOVE": "SetRemove", "OP_SET_UNION": "SetUnion",
        "OP_SET_INTERSECT": "SetIntersection", "OP_SET_QUERY": "SetQuery",
        "OP_KEY_EXISTS": "KeyExists",
        "OP_LOG": "WriteLog",
        "OP_REQUEST_GUID": "RequestGuid", "OP_REQUEST_SEQUENCE": "RequestSequence",
        "OP_REQUEST_RANDOM": "RequestRandom",
    }
    assert len(RECORDS) == 1 + 2 + 22 + 1 + 2  # the structs of the five codec modules


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__name__)
@given(data=st.data())
def test_every_record_round_trips(cls: type, data: st.DataObject) -> None:
    record = data.draw(records(cls))
    wire = serialize(record)
    assert deserialize(cls, wire) == record
    # a map of every field by its waSCC name, in declaration order
    names = getattr(cls, "__renames__", {})
    assert list(msgpack.unpackb(wire, raw=False)) == [
        names.get(f.name, camel(f.name)) for f in dataclasses.fields(cls)]


@pytest.mark.parametrize(("record", "expected"), [
    # fixmap 3; fixstr "subject" "a"; "replyTo" ""; "body" bin8 of 2 bytes
    (messaging.BrokerMessage(subject="a", reply_to="", body=b"hi"),
     "83" "a7" + b"subject".hex() + "a1" "61" "a7" + b"replyTo".hex() + "a0"
     "a4" + b"body".hex() + "c4" "02" + b"hi".hex()),
    # the timeout renamed; 100 a positive fixint; an empty body is bin8 of 0 bytes
    (messaging.RequestMessage(subject="s", body=b"", timeout_ms=100),
     "83" "a7" + b"subject".hex() + "a1" "73" "a4" + b"body".hex() + "c4" "00"
     "a7" + b"timeout".hex() + "64"),
    # the Add a waSCC key-value actor sends, and what it expects back
    (keyvalue.AddRequest(key="count", value=1),
     "82" "a3" + b"key".hex() + "a5" + b"count".hex() + "a5" + b"value".hex() + "01"),
    (keyvalue.AddResponse(value=-33), "81" "a5" + b"value".hex() + "d0" "df"),  # int8
    (keyvalue.SetRequest(key="k", value="v", expires_s=300),
     "83" "a3" + b"key".hex() + "a1" "6b" "a5" + b"value".hex() + "a1" "76"
     "a7" + b"expires".hex() + "cd" "012c"),  # uint16
    (keyvalue.ListResponse(new_count=2), "81" "a8" + b"newCount".hex() + "02"),
    (keyvalue.SetQueryResponse(values=["x"]), "81" "a6" + b"values".hex() + "91" "a1" "78"),
    (extras.GeneratorResult(guid=None, sequence_number=2**32, random_number=255),
     "83" "a4" + b"guid".hex() + "c0" "ae" + b"sequenceNumber".hex() + "cf" "0000000100000000"
     "ac" + b"randomNumber".hex() + "cc" "ff"),
    (core.HealthRequest(placeholder=False), "81" "ab" + b"placeholder".hex() + "c2"),
    (logging.WriteLogRequest(level=3, body="x" * 40),  # str8 past 31 bytes
     "82" "a5" + b"level".hex() + "03" "a4" + b"body".hex() + "d9" "28" + "78" * 40),
], ids=lambda v: type(v).__name__ if not isinstance(v, str) else "")
def test_bytes_on_the_wire_are_rmp_serdes(record: Any, expected: str) -> None:
    assert serialize(record).hex() == expected
    assert deserialize(type(record), bytes.fromhex(expected)) == record


def test_healthy_is_the_unit_serialized() -> None:
    assert msgpack.packb(None) == core.HEALTHY


def test_unknown_fields_are_ignored_and_optional_ones_may_be_missing() -> None:
    wire = msgpack.packb({"subject": "s", "extra": [1, 2], "replyTo": "r"})
    assert deserialize(messaging.BrokerMessage, wire) == messaging.BrokerMessage(
        subject="s", reply_to="r", body=b"")  # body: serde default
    assert deserialize(extras.GeneratorResult, msgpack.packb(
        {"sequenceNumber": 1, "randomNumber": 2})).guid is None  # an Option
    assert deserialize(keyvalue.SetUnionRequest, msgpack.packb({})).keys == []


@pytest.mark.parametrize(("cls", "value", "reason"), [
    (messaging.BrokerMessage, {"subject": "s"}, "missing field replyTo"),
    (messaging.RequestMessage, {"subject": "s", "timeout_ms": 1}, "missing field timeout"),
    (keyvalue.GetResponse, {"value": "v"}, "missing field exists"),
    (extras.GeneratorResult, {"guid": None, "randomNumber": 1},
     "missing field sequenceNumber"),
    (keyvalue.AddRequest, {"key": "k", "value": "1"},
     "invalid type: string '1', expected i32 (field value)"),
    (keyvalue.AddRequest, {"key": "k", "value": 2**31},
     "invalid value: integer `2147483648`, expected i32 (field value)"),
    (logging.WriteLogRequest, {"level": -1, "body": ""},
     "invalid value: integer `-1`, expected u32 (field level)"),
    (core.HealthRequest, {"placeholder": 0}, "invalid type: integer `0`, expected a boolean"),
    (keyvalue.GetRequest, {"key": 1.5}, "invalid type: floating point `1.5`"),
    (keyvalue.SetQueryResponse, {"values": "x"}, "invalid type: string 'x', expected a seq"),
    (keyvalue.GetRequest, "k", "invalid type: string 'k', expected struct GetRequest"),
    (keyvalue.GetRequest, None, "invalid type: unit value, expected struct GetRequest"),
])
def test_what_serde_refuses_is_refused_naming_the_field(cls: type, value: Any,
                                                        reason: str) -> None:
    with pytest.raises(CodecError) as refused:
        deserialize(cls, msgpack.packb(value))
    assert str(refused.value).startswith(f"Failed to de-serialize {cls.__name__}: {reason}")
    assert refused.value.record == cls.__name__


def test_duplicate_keys_on_the_wire_are_refused() -> None:
    wire = bytes.fromhex("82" "a3" + b"key".hex() + "a1" "61" "a3" + b"key".hex() + "a1" "62")
    with pytest.raises(CodecError, match="duplicate field key"):
        deserialize(keyvalue.GetRequest, wire)


def test_a_record_as_an_array_of_its_fields_in_order() -> None:
    assert deserialize(messaging.BrokerMessage, msgpack.packb(["s", "r", b"b"])) == \
        messaging.BrokerMessage(subject="s", reply_to="r", body=b"b")
    assert deserialize(messaging.BrokerMessage, msgpack.packb(["s", "r"])).body == b""
    with pytest.raises(CodecError, match="invalid length 1, expected struct BrokerMessage "
                                         "with 3 elements"):
        deserialize(messaging.BrokerMessage, msgpack.packb(["s"]))
    with pytest.raises(CodecError, match="invalid length 4"):
        deserialize(messaging.BrokerMessage, msgpack.packb(["s", "r", b"", 1]))
    # serde also names a field by its index
    assert deserialize(keyvalue.GetRequest, msgpack.packb({0: "k"})).key == "k"


def test_lenient_where_serde_is() -> None:
    # a body as a str, or as an array of bytes; a str as a bin of UTF-8; trailing bytes
    assert deserialize(messaging.BrokerMessage, msgpack.packb(
        {"subject": b"s", "replyTo": "", "body": "hé"}, use_bin_type=True)).body == \
        "hé".encode()
    assert deserialize(messaging.BrokerMessage, msgpack.packb(
        {"subject": "s", "replyTo": "", "body": [104, 105]})).body == b"hi"
    wire = serialize(keyvalue.GetRequest(key="k"))
    assert deserialize(keyvalue.GetRequest, wire + b"\xc0garbage").key == "k"
    with pytest.raises(CodecError, match="invalid utf-8"):
        deserialize(keyvalue.GetRequest, bytes.fromhex("81a36b6579a2ff41"))
    with pytest.raises(CodecError, match="expected a byte array"):
        deserialize(messaging.BrokerMessage, msgpack.packb(
            {"subject": "s", "replyTo": "", "body": [256]}))


@pytest.mark.parametrize("data", [b"", b"\xc1", b"\x92\x01", b"\xdb\xff\xff\xff\xff"])
def test_what_is_not_messagepack_is_refused(data: bytes) -> None:
    with pytest.raises(CodecError, match="Failed to de-serialize GetRequest: "):
        deserialize(keyvalue.GetRequest, data)


@given(st.binary(max_size=64))
def test_any_bytes_decode_or_raise_a_codec_error(data: bytes) -> None:
    for cls in (messaging.BrokerMessage, keyvalue.SetRequest, extras.GeneratorRequest):
        try:
            deserialize(cls, data)
        except CodecError:
            pass
