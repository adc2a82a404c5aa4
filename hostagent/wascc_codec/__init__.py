"""The waSCC codec: the MessagePack records waSCC's actors and providers exchange.

A capability id is a contract. Whatever claims ``wascc:messaging``, ``wascc:keyvalue``,
``wascc:logging``, ``wascc:extras`` or ``wascc:http_server`` speaks waSCC's codec for it
exactly, so that actors built with waSCC's SDK (``wascc-actor`` 0.7, codec 0.6-0.8, as
``wascc-host`` 0.14 ran them) run unchanged. This package is that codec: one module per
capability with its operation names and records (:mod:`.core`, :mod:`.messaging`,
:mod:`.keyvalue`, :mod:`.logging`, :mod:`.extras`, :mod:`.http`), and here the two
functions that turn records into bytes and back, as waSCC's ``serialize`` and
``deserialize`` (rmp-serde ``with_struct_map``) do:

* a record is a MessagePack map of its fields in declaration order, named as serde's
  ``rename_all = "camelCase"`` names them (``reply_to`` -> ``replyTo``; a record may
  rename one field, e.g. ``timeout_ms`` -> ``timeout``, in its ``__renames__``);
  ``str`` is a MessagePack str, ``bytes`` (serde_bytes) a bin, ``None`` nil, integers
  the shortest encoding of their value (as rmp does), lists arrays, dicts maps;
* reading is as forgiving as serde and no more: unknown fields are ignored, a field with
  a default (serde ``default``) or an optional one (``Option``) may be missing, any other
  missing field is an error naming it (``missing field queryString``), as is a duplicate
  field, a value of the wrong type or out of its integer type's range; a record may also
  come as an array of its fields in order (rmp-serde reads both), a bin may come as a
  str or an array of bytes, a str as a bin of UTF-8, and bytes after the value are
  ignored.

A payload that does not decode raises :class:`CodecError` (permanent: the same bytes
never decode), whose message is what the guest reads. Pure: no I/O. Used by the
providers of :mod:`hostagent.providers`.

>>> from hostagent.wascc_codec.messaging import BrokerMessage
>>> serialize(BrokerMessage(subject="a", reply_to="", body=b"hi")).hex()
'83a77375626a656374a161a77265706c79546fa0a4626f6479c4026869'
>>> deserialize(BrokerMessage, bytes.fromhex("81a77375626a656374a161"))
Traceback (most recent call last):
...
hostagent.wascc_codec.CodecError: Failed to de-serialize BrokerMessage: missing field replyTo
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin, get_type_hints

import msgpack

R = TypeVar("R")


class CodecError(ValueError):
    """A payload that is not the record it should be; the message says why (permanent)."""

    def __init__(self, record: str, reason: str) -> None:
        super().__init__(f"Failed to de-serialize {record}: {reason}")
        self.record = record
        self.reason = reason


@dataclass(frozen=True)
class IntType:
    """The Rust integer type of a field: its name and range."""

    name: str
    lo: int
    hi: int


U32 = Annotated[int, IntType("u32", 0, 2**32 - 1)]
U64 = Annotated[int, IntType("u64", 0, 2**64 - 1)]
I32 = Annotated[int, IntType("i32", -(2**31), 2**31 - 1)]
I64 = Annotated[int, IntType("i64", -(2**63), 2**63 - 1)]

_Decode = Callable[[Any, str], Any]  # (value, field wire name) -> the Python value


class _Pairs(list[tuple[Any, Any]]):
    """A MessagePack map as read: its pairs in order (duplicates kept, to refuse them)."""


class _Mismatch(Exception):
    """A value of the wrong type or range (turned into a CodecError naming the record)."""


@dataclass(frozen=True)
class _Field:
    attr: str
    wire: str
    decode: _Decode
    encode: Callable[[Any], Any]
    required: bool


@dataclass(frozen=True)
class _Schema:
    name: str
    fields: tuple[_Field, ...]
    by_wire: dict[str, _Field]


_SCHEMAS: dict[type, _Schema] = {}


def camel(name: str) -> str:
    """serde's ``rename_all = "camelCase"`` of a snake_case field name. Pure."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _describe(value: Any) -> str:
    """A value as serde names it in 'invalid type: ...'. Pure."""
    if value is None:
        return "unit value"
    if isinstance(value, bool):
        return f"boolean `{str(value).lower()}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{value}`"
    if isinstance(value, str):
        return f"string {value[:40]!r}"
    if isinstance(value, bytes):
        return "byte array"
    if isinstance(value, _Pairs | dict):
        return "map"
    if isinstance(value, list):
        return "sequence"
    return type(value).__name__


def _invalid(value: Any, expected: str, wire: str) -> _Mismatch:
    return _Mismatch(f"invalid type: {_describe(value)}, expected {expected} "
                     f"(field {wire})")


def _str(value: Any, wire: str) -> str:
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            raise _Mismatch(f"invalid utf-8 in a string (field {wire})") from None
        return value
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            raise _Mismatch(f"invalid utf-8 in a string (field {wire})") from None
    raise _invalid(value, "a string", wire)


def _bytes(value: Any, wire: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, list) and not isinstance(value, _Pairs) and all(
            isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 255 for b in value):
        return bytes(value)
    raise _invalid(value, "a byte array", wire)


def _bool(value: Any, wire: str) -> bool:
    if isinstance(value, bool):
        return value
    raise _invalid(value, "a boolean", wire)


def _int(kind: IntType) -> _Decode:
    def decode(value: Any, wire: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise _invalid(value, kind.name, wire)
        if not kind.lo <= value <= kind.hi:
            raise _Mismatch(f"invalid value: integer `{value}`, expected {kind.name} "
                            f"(field {wire})")
        return value
    return decode


def _optional(inner: _Decode) -> _Decode:
    return lambda value, wire: None if value is None else inner(value, wire)


def _list(inner: _Decode) -> _Decode:
    def decode(value: Any, wire: str) -> list[Any]:
        if not isinstance(value, list) or isinstance(value, _Pairs):
            raise _invalid(value, "a sequence", wire)
        return [inner(item, wire) for item in value]
    return decode


def _dict(key: _Decode, inner: _Decode) -> _Decode:
    def decode(value: Any, wire: str) -> dict[Any, Any]:
        if isinstance(value, dict):
            value = _Pairs(value.items())
        if not isinstance(value, _Pairs):
            raise _invalid(value, "a map", wire)
        return {key(k, wire): inner(v, wire) for k, v in value}
    return decode


def _record(cls: type) -> _Decode:
    return lambda value, wire: _decode_record(cls, value)


def _encode_value(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _encode_record(value)
    if isinstance(value, list):
        return [_encode_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode_value(v) for k, v in value.items()}
    return value


def _codec_of(hint: Any) -> _Decode:
    """The decoder of a field's type hint (the types records use)."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is Annotated:
        kind = next((a for a in args[1:] if isinstance(a, IntType)), None)
        if kind is None:
            return _codec_of(args[0])
        return _int(kind)
    if origin in (Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1 or len(args) != 2:
            raise TypeError(f"unsupported union {hint!r}")
        return _optional(_codec_of(inner[0]))
    if origin is list:
        return _list(_codec_of(args[0]))
    if origin is dict:
        return _dict(_codec_of(args[0]), _codec_of(args[1]))
    simple: dict[Any, _Decode] = {str: _str, bytes: _bytes, bool: _bool,
                                  int: _int(IntType("i64", -(2**63), 2**63 - 1))}
    if hint in simple:
        return simple[hint]
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _record(hint)
    raise TypeError(f"unsupported field type {hint!r}")


def _schema(cls: type) -> _Schema:
    schema = _SCHEMAS.get(cls)
    if schema is not None:
        return schema
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a record (a dataclass)")
    hints = get_type_hints(cls, include_extras=True)
    renames: dict[str, str] = getattr(cls, "__renames__", {})
    fields = []
    for f in dataclasses.fields(cls):
        decode = _codec_of(hints[f.name])
        has_default = (f.default is not dataclasses.MISSING
                       or f.default_factory is not dataclasses.MISSING)
        optional = get_origin(hints[f.name]) in (Union, types.UnionType)
        fields.append(_Field(f.name, renames.get(f.name, camel(f.name)), decode,
                             _encode_value, required=not (has_default or optional)))
    schema = _Schema(cls.__name__, tuple(fields), {f.wire: f for f in fields})
    _SCHEMAS[cls] = schema
    return schema


def _field_name(key: Any, schema: _Schema) -> str | None:
    """The wire name a map key stands for (serde also takes a field's index), or None."""
    if isinstance(key, bytes):
        key = key.decode("utf-8", "replace")
    if isinstance(key, int) and not isinstance(key, bool):
        return schema.fields[key].wire if 0 <= key < len(schema.fields) else None
    return key if isinstance(key, str) else None


def _decode_record(cls: type[R], value: Any) -> R:
    schema = _schema(cls)
    given: dict[str, Any] = {}
    if isinstance(value, _Pairs):
        seen: set[str] = set()
        for key, item in value:
            wire = _field_name(key, schema)
            field = schema.by_wire.get(wire) if wire is not None else None
            if field is None:
                continue  # serde ignores unknown fields
            if field.wire in seen:
                raise _Mismatch(f"duplicate field {field.wire}")
            seen.add(field.wire)
            given[field.attr] = field.decode(item, field.wire)
        for field in schema.fields:
            if field.required and field.attr not in given:
                raise _Mismatch(f"missing field {field.wire}")
    elif isinstance(value, list):
        count = len(schema.fields)
        if len(value) > count:
            raise _Mismatch(f"invalid length {len(value)}, expected struct {schema.name} "
                            f"with {count} elements")
        for field, item in zip(schema.fields, value, strict=False):
            given[field.attr] = field.decode(item, field.wire)
        for field in schema.fields[len(value):]:
            if field.required:
                raise _Mismatch(f"invalid length {len(value)}, expected struct "
                                f"{schema.name} with {count} elements")
    else:
        raise _Mismatch(f"invalid type: {_describe(value)}, expected struct {schema.name}")
    return cls(**given)


def _encode_record(record: Any) -> dict[str, Any]:
    schema = _schema(type(record))
    return {f.wire: f.encode(getattr(record, f.attr)) for f in schema.fields}


def serialize(record: Any) -> bytes:
    """A record as waSCC's ``serialize`` writes it: a map of its fields. Pure."""
    return bytes(msgpack.packb(_encode_record(record), use_bin_type=True))


def deserialize(cls: type[R], data: bytes) -> R:
    """The ``cls`` record ``data`` holds, as waSCC's ``deserialize`` reads it; raises
    :class:`CodecError` naming the record and what is wrong. Pure."""
    try:
        value = msgpack.unpackb(data, raw=False, unicode_errors="surrogateescape",
                                object_pairs_hook=_Pairs, strict_map_key=False,
                                use_list=True)
    except msgpack.ExtraData as extra:
        value = extra.unpacked  # rmp-serde reads one value and leaves the rest
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        reason = "empty payload" if not data else f"not MessagePack ({exc})"
        raise CodecError(cls.__name__, reason) from None
    try:
        return _decode_record(cls, value)
    except _Mismatch as exc:
        raise CodecError(cls.__name__, str(exc)) from None
