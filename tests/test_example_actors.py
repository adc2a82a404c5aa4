"""The example actors (examples/actors/*.wat) speak waSCC's contracts, driven in-process.

Each actor runs in a real :class:`~hostagent.wasm.wapc.WapcInstance`; payloads are built
with the ``msgpack`` package, as waSCC's codec (rmp-serde, maps keyed by camelCase
names) would write them, and a fake host records every ``__host_call`` (binding,
namespace, operation, payload) and answers keyvalue ``Add`` with ``{"value": n}``. echo's
``HandleRequest`` (``wascc:http_server``) is driven with the project codec's ``Request``
records, as the provider sends them, and its answer decoded as a ``Response``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import msgpack
import pytest
import wasmtime
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli.examples import build_examples
from hostagent.wascc_codec import deserialize, serialize
from hostagent.wascc_codec.http import OP_HANDLE_REQUEST, Request, Response
from hostagent.wascc_codec.keyvalue import AddRequest, AddResponse
from hostagent.wascc_codec.messaging import BrokerMessage
from hostagent.wasm.engine import EpochTicker, Limits, new_engine
from hostagent.wasm.wapc import GuestError, HostCallError, WapcInstance
from tests.wasmutil import wat

pytestmark = pytest.mark.timeout(60)

NIL = msgpack.packb(None)
MESSAGING, KEYVALUE, HTTP = "wascc:messaging", "wascc:keyvalue", "wascc:http_server"


def pack(value: object) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def message(body: bytes = b"", reply_to: str = "_INBOX.1", subject: str = "demo") -> bytes:
    """A BrokerMessage as waSCC's codec writes it: subject, replyTo, body (bin)."""
    return pack({"subject": subject, "replyTo": reply_to, "body": body})


def publish(subject: str, body: bytes) -> bytes:
    """The Publish payload an actor answering on ``subject`` must send, byte for byte."""
    return pack({"subject": subject, "replyTo": "", "body": body})


@dataclass
class FakeHost:
    """Records host calls; keyvalue Add adds to a dict, Publish answers nothing."""

    calls: list[tuple[str, str, str, bytes]] = field(default_factory=list)
    store: dict[str, int] = field(default_factory=dict)
    add_answer: Callable[[int], bytes] | None = None  #: how Add's answer is encoded
    fail: dict[str, str] = field(default_factory=dict)  #: operation -> error

    def __call__(self, binding: str, namespace: str, op: str, payload: bytes) -> bytes:
        self.calls.append((binding, namespace, op, payload))
        if op in self.fail:
            raise HostCallError(self.fail[op])
        if (namespace, op) == (MESSAGING, "Publish"):
            return b""
        if (namespace, op) == (KEYVALUE, "Add"):
            req = msgpack.unpackb(payload)
            self.store[req["key"]] = self.store.get(req["key"], 0) + req["value"]
            n = self.store[req["key"]]
            return self.add_answer(n) if self.add_answer else pack({"value": n})
        raise HostCallError(f"no {namespace} {op} here")


@pytest.fixture(scope="module")
def engine() -> Iterator[tuple[wasmtime.Engine, EpochTicker]]:
    engine = new_engine()
    ticker = EpochTicker(engine)
    yield engine, ticker
    ticker.close()


def start(engine: tuple[wasmtime.Engine, EpochTicker], name: str,
          host: FakeHost) -> WapcInstance:
    eng, ticker = engine
    return WapcInstance(eng, wasmtime.Module(eng, wat(name)), name=name, host_call=host,
                        limits=Limits(call_timeout_s=2.0), ticker=ticker)


# ------------------------------------------------------------------ echo

@pytest.mark.parametrize("size", [0, 1, 31, 32, 255, 256, 65535, 65536, 200_000])
def test_echo_publishes_the_body_to_the_reply_subject(engine: tuple[wasmtime.Engine, EpochTicker],
                                                      size: int) -> None:
    host = FakeHost()
    echo = start(engine, "echo", host)
    body = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    assert echo.call("DeliverMessage", message(body, reply_to="_INBOX.abc")) == NIL
    assert host.calls == [("default", MESSAGING, "Publish", publish("_INBOX.abc", body))]


@pytest.mark.parametrize("length", [1, 31, 32, 255, 256, 70_000])
def test_echo_answers_any_reply_subject(engine: tuple[wasmtime.Engine, EpochTicker],
                                        length: int) -> None:
    host = FakeHost()
    reply = ("_INBOX." + "x" * length)[:length]
    start(engine, "echo", host).call("DeliverMessage", message(b"hi", reply_to=reply))
    assert host.calls == [("default", MESSAGING, "Publish", publish(reply, b"hi"))]


def test_echo_does_not_publish_without_a_reply_subject(
        engine: tuple[wasmtime.Engine, EpochTicker]) -> None:
    host = FakeHost()
    echo = start(engine, "echo", host)
    assert echo.call("DeliverMessage", message(b"fire and forget", reply_to="")) == NIL
    assert echo.call("DeliverMessage", pack({"subject": "s", "replyTo": None})) == NIL
    assert host.calls == []


@pytest.mark.parametrize("payload", [
    # fields in another order, extra scalar fields of every kind the reader skips
    pack({"extra": True, "body": b"b", "n": -70_000, "f": 1.5, "x": None,
          "replyTo": "r", "subject": "s", "u": 2**40, "t": "text"}),
    # a map16 (16 entries and more)
    pack({**{f"k{i}": i for i in range(20)}, "replyTo": "r", "body": b"b"}),
    # the body as str (an encoder without a bin type), and as the first field
    msgpack.packb({"body": "b", "replyTo": "r", "subject": "s"}, use_bin_type=False),
    # maps and arrays, nested, of every size class, passed over ($skip)
    pack({"subject": ["nested", {"a": [1, {"b": None}], "c": {}}], "replyTo": "r",
          "h": {f"k{i}": "v" for i in range(20)}, "l": list(range(70_000)), "body": b"b"}),
])
def test_echo_reads_any_field_order_and_skips_other_fields(
        engine: tuple[wasmtime.Engine, EpochTicker], payload: bytes) -> None:
    host = FakeHost()
    start(engine, "echo", host).call("DeliverMessage", payload)
    assert host.calls == [("default", MESSAGING, "Publish", publish("r", b"b"))]


def test_echo_publishes_an_empty_body_when_the_message_has_none(
        engine: tuple[wasmtime.Engine, EpochTicker]) -> None:
    host = FakeHost()  # waSCC's BrokerMessage: body is #[serde(default)]
    start(engine, "echo", host).call("DeliverMessage", pack({"subject": "s", "replyTo": "r"}))
    assert host.calls == [("default", MESSAGING, "Publish", publish("r", b""))]


@pytest.mark.parametrize("name", ["echo", "counter"])
@pytest.mark.parametrize("payload", [
    b"",  # nothing
    b"hello",  # not MessagePack
    pack(["demo", "_INBOX", b"body"]),  # an array, not a map
    pack({"subject": "s", "body": b"b"}),  # no replyTo
    pack({"subject": "s", "replyTo": 7, "body": b"b"}),  # replyTo not a str
    pack({"subject": "s", "replyTo": "r", "body": 7}),  # body not bytes
    pack({"subject": "s", "replyTo": ["r"], "body": b"b"}),  # replyTo a container
    message(b"truncated body")[:-3],
    message(b"x" * 300)[:-299],  # a bin8 length past the end
    b"\x83\xa7subject\xa1s\xa7replyTo\xdb\xff\xff\xff\xff",  # a str32 length past the end
], ids=["empty", "text", "array", "no-replyTo", "int-replyTo", "int-body", "array-replyTo",
        "truncated", "bin8-past-end", "str32-past-end"])
def test_a_malformed_message_is_refused_and_the_actor_keeps_serving(
        engine: tuple[wasmtime.Engine, EpochTicker], name: str, payload: bytes) -> None:
    host = FakeHost()
    actor = start(engine, name, host)
    with pytest.raises(GuestError, match="malformed BrokerMessage"):
        actor.call("DeliverMessage", payload)
    assert host.calls == []
    assert actor.call("DeliverMessage", message(b"ok")) == NIL
    assert host.calls[-1][2] == "Publish"


@pytest.mark.parametrize("name", ["echo", "counter"])
def test_health_and_unknown_operations(engine: tuple[wasmtime.Engine, EpochTicker],
                                       name: str) -> None:
    host = FakeHost()
    actor = start(engine, name, host)
    assert actor.call("HealthRequest", pack({"placeholder": True})) == NIL
    for op in ("HandleMessage", "Launch", "DeliverMessages"):
        with pytest.raises(GuestError, match="unknown operation"):
            actor.call(op, message(b"x"))
    assert host.calls == []


def test_counter_refuses_a_container_it_would_have_to_skip(
        engine: tuple[wasmtime.Engine, EpochTicker]) -> None:
    """counter's reader has no $skip (echo's has, for the Request's header)."""
    host = FakeHost()
    with pytest.raises(GuestError, match="malformed BrokerMessage"):
        start(engine, "counter", host).call(
            "DeliverMessage", pack({"subject": ["nested"], "replyTo": "r", "body": b"b"}))
    assert host.calls == []


def test_a_refused_publish_is_the_calls_error(engine: tuple[wasmtime.Engine, EpochTicker]
                                              ) -> None:
    quota = "messaging quota PUBLISH_RATE exceeded: more messages a second"
    host = FakeHost(fail={"Publish": quota})
    with pytest.raises(GuestError, match=f"guest error: {quota}"):
        start(engine, "echo", host).call("DeliverMessage", message(b"x"))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=2000), reply=st.text(min_size=1, max_size=300),
       subject=st.text(max_size=40))
def test_echo_round_trips_anything(engine: tuple[wasmtime.Engine, EpochTicker], body: bytes,
                                   reply: str, subject: str) -> None:
    host = FakeHost()
    start(engine, "echo", host).call("DeliverMessage", message(body, reply, subject))
    [(_, _, _, payload)] = host.calls
    assert payload == publish(reply, body)
    assert msgpack.unpackb(payload) == {"subject": reply, "replyTo": "", "body": body}


# ------------------------------------------------------------------ echo over HTTP

def request(body: bytes = b"", path: str = "/", **header: str) -> bytes:
    """HandleRequest's payload as the wascc:http_server provider sends it."""
    return serialize(Request(method="POST" if body else "GET", path=path, query_string="a=1",
                             header={"host": "127.0.0.1:8087", **header}, body=body))


def ok(body: bytes) -> Response:
    return Response(status_code=200, status="OK", body=body)


@pytest.mark.parametrize("size", [1, 31, 32, 255, 256, 65535, 65536, 200_000])
def test_echo_answers_a_request_with_its_body(engine: tuple[wasmtime.Engine, EpochTicker],
                                              size: int) -> None:
    host = FakeHost()
    body = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    answer = start(engine, "echo", host).call(OP_HANDLE_REQUEST, request(body, "/x"))
    assert deserialize(Response, answer) == ok(body)
    assert answer == serialize(ok(body))  # byte for byte what waSCC's codec writes
    assert host.calls == []


def test_echo_answers_a_request_without_a_body_with_its_path(
        engine: tuple[wasmtime.Engine, EpochTicker]) -> None:
    echo = start(engine, "echo", FakeHost())
    assert deserialize(Response, echo.call(OP_HANDLE_REQUEST, request(path="/hello"))) == ok(
        b"/hello")
    no_body = pack({"method": "GET", "path": "/p", "queryString": ""})  # body is optional
    assert deserialize(Response, echo.call(OP_HANDLE_REQUEST, no_body)) == ok(b"/p")


@pytest.mark.parametrize("header", [
    {},
    {"content-type": "text/plain"},
    {f"x-h{i}": "v" * 40 for i in range(20)},  # a map16
    {"x-long": "v" * 70_000},  # a str32 value
], ids=["none", "one", "map16", "str32"])
def test_echo_passes_over_any_header(engine: tuple[wasmtime.Engine, EpochTicker],
                                     header: dict[str, str]) -> None:
    payload = serialize(Request(method="PUT", path="/", query_string="", header=header,
                                body=b"after the header"))
    answer = start(engine, "echo", FakeHost()).call(OP_HANDLE_REQUEST, payload)
    assert deserialize(Response, answer) == ok(b"after the header")


@pytest.mark.parametrize("payload", [
    b"",
    pack(["GET", "/", "", {}, b""]),  # a struct as an array: the provider never sends one
    pack({"method": "GET", "queryString": "", "body": b"b"}),  # no path
    pack({"method": "GET", "path": 7, "queryString": ""}),  # path not a str
    pack({"method": "GET", "path": "/", "header": {}, "body": {"b": 1}}),  # body a map
    request(b"cut short")[:-2],
    b"\x82\xa4path\xa1/\xa6header\xdf\xff\xff\xff\xff",  # a map32 of 2**32-1 entries
    b"\x82\xa6header\x9f\x9f\x9f\x9f\xa4path\xa1/",  # arrays holding more than is there
    b"\x82\xa6header\x81\xc7\x01\x00\x00\xa4path\xa1/",  # an extension inside
], ids=["empty", "array", "no-path", "int-path", "map-body", "truncated", "map32-count",
        "nested-counts", "extension"])
def test_a_malformed_request_is_refused_and_echo_keeps_serving(
        engine: tuple[wasmtime.Engine, EpochTicker], payload: bytes) -> None:
    echo = start(engine, "echo", FakeHost())
    with pytest.raises(GuestError, match="malformed Request"):
        echo.call(OP_HANDLE_REQUEST, payload)
    assert deserialize(Response, echo.call(OP_HANDLE_REQUEST, request(b"ok"))) == ok(b"ok")


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=2000), path=st.text(min_size=1, max_size=300),
       header=st.dictionaries(st.text(max_size=20), st.text(max_size=50), max_size=20))
def test_echo_answers_any_request(engine: tuple[wasmtime.Engine, EpochTicker], body: bytes,
                                  path: str, header: dict[str, str]) -> None:
    payload = serialize(Request(method="POST", path=path, query_string="", header=header,
                                body=body))
    answer = start(engine, "echo", FakeHost()).call(OP_HANDLE_REQUEST, payload)
    assert deserialize(Response, answer) == ok(body or path.encode())


# ------------------------------------------------------------------ counter

def test_counter_adds_through_keyvalue_and_publishes_the_count(
        engine: tuple[wasmtime.Engine, EpochTicker]) -> None:
    host = FakeHost()
    counter = start(engine, "counter", host)
    for _ in range(3):
        assert counter.call("DeliverMessage", message(b"", reply_to="_INBOX.c")) == NIL
    assert counter.call("DeliverMessage", message(b"other", reply_to="_INBOX.o")) == NIL
    add = ("default", KEYVALUE, "Add")
    pub = ("default", MESSAGING, "Publish")
    assert host.calls == [
        (*add, pack({"key": "count", "value": 1})), (*pub, publish("_INBOX.c", b"1")),
        (*add, pack({"key": "count", "value": 1})), (*pub, publish("_INBOX.c", b"2")),
        (*add, pack({"key": "count", "value": 1})), (*pub, publish("_INBOX.c", b"3")),
        (*add, pack({"key": "other", "value": 1})), (*pub, publish("_INBOX.o", b"1")),
    ]


def test_counter_counts_without_a_reply_subject(engine: tuple[wasmtime.Engine, EpochTicker]
                                                ) -> None:
    host = FakeHost()
    counter = start(engine, "counter", host)
    counter.call("DeliverMessage", message(b"k", reply_to=""))
    counter.call("DeliverMessage", message(b"k", reply_to="r"))
    assert [c[2] for c in host.calls] == ["Add", "Add", "Publish"]
    assert host.calls[-1][3] == publish("r", b"2")


@pytest.mark.parametrize("n", [0, 9, 10, 127, 128, 255, 256, 65535, 65536, 2**31 - 1,
                               -1, -32, -33, -128, -129, -32768, -32769, -(2**31)])
def test_counter_reads_every_int_encoding(engine: tuple[wasmtime.Engine, EpochTicker],
                                          n: int) -> None:
    host = FakeHost(add_answer=lambda _: pack({"value": n}))
    start(engine, "counter", host).call("DeliverMessage", message(b"k", reply_to="r"))
    assert host.calls[-1][3] == publish("r", str(n).encode())


@pytest.mark.parametrize(("answer", "text"), [
    (b"\x81\xa5value\xcf" + (5).to_bytes(8, "big"), b"5"),  # uint64
    (b"\x81\xa5value\xd3" + (-5).to_bytes(8, "big", signed=True), b"-5"),  # int64
    (b"\x81\xa5value\xd0\xfe", b"-2"),  # int8
    (b"\x81\xa5value\xcc\x07", b"7"),  # uint8 of a small number
    (b"\xde\x00\x02\xa5other\xc3\xa5value\x0c", b"12"),  # map16, another field first
])
def test_counter_reads_hand_encoded_answers(engine: tuple[wasmtime.Engine, EpochTicker],
                                            answer: bytes, text: bytes) -> None:
    host = FakeHost(add_answer=lambda _: answer)
    start(engine, "counter", host).call("DeliverMessage", message(b"k", reply_to="r"))
    assert host.calls[-1][3] == publish("r", text)


def test_counter_keys_of_every_length(engine: tuple[wasmtime.Engine, EpochTicker]) -> None:
    host = FakeHost()
    counter = start(engine, "counter", host)
    for size in (1, 31, 32, 255, 256, 65536):
        counter.call("DeliverMessage", message(b"k" * size, reply_to="r"))
    adds = [msgpack.unpackb(c[3]) for c in host.calls if c[2] == "Add"]
    assert adds == [{"key": "k" * size, "value": 1} for size in (1, 31, 32, 255, 256, 65536)]
    assert [c[3] for c in host.calls if c[2] == "Add"] == [pack(a) for a in adds]


@pytest.mark.parametrize(("host", "error"), [
    (FakeHost(fail={"Add": "keyvalue quota MAX_KEYS exceeded"}),
     "keyvalue quota MAX_KEYS exceeded"),
    (FakeHost(fail={"Publish": "not bound"}), "not bound"),
    (FakeHost(add_answer=lambda n: pack({"value": str(n)})), "without an integer value"),
    (FakeHost(add_answer=lambda n: pack({"count": n})), "without an integer value"),
    (FakeHost(add_answer=lambda n: b""), "without an integer value"),
])
def test_counter_reports_what_goes_wrong(engine: tuple[wasmtime.Engine, EpochTicker],
                                         host: FakeHost, error: str) -> None:
    counter = start(engine, "counter", host)
    for _ in range(2):  # and serves the next call the same way
        with pytest.raises(GuestError, match=f"guest error: .*{error}"):
            counter.call("DeliverMessage", message(b"k"))


def test_the_actors_speak_the_projects_codec(engine: tuple[wasmtime.Engine, EpochTicker]
                                            ) -> None:
    """What the providers send (hostagent.wascc_codec) is what the actors read, and what
    the actors send decodes as the records the providers expect."""
    host = FakeHost(add_answer=lambda n: serialize(AddResponse(value=n)))
    delivered = serialize(BrokerMessage(subject="demo.counter", reply_to="_INBOX.9",
                                        body=b"visits"))
    start(engine, "counter", host).call("DeliverMessage", delivered)
    start(engine, "echo", host).call("DeliverMessage", delivered)
    add, counted, echoed = (c[3] for c in host.calls)
    assert deserialize(AddRequest, add) == AddRequest(key="visits", value=1)
    assert deserialize(BrokerMessage, counted) == BrokerMessage(subject="_INBOX.9",
                                                                reply_to="", body=b"1")
    assert deserialize(BrokerMessage, echoed) == BrokerMessage(subject="_INBOX.9",
                                                               reply_to="", body=b"visits")


# ------------------------------------------------------------------ signing

def test_up_signs_the_ported_actors_with_their_ids_and_capabilities() -> None:
    built = {a.name: a.claims for a in build_examples()}
    assert built["echo"].subject == "MAJEM2O2J4G2RZP3EBFQ2F2EMVNEOUNEUURCHJ3Z5JRSJ65UTICCEK25"
    assert built["counter"].subject == "MCIW2DU4NT4OHMJOH7PFZLBJRJ54J7R3PIHD5FTS3FVCMHU7HQN6BPY2"
    assert built["echo"].capabilities == (MESSAGING, HTTP)
    assert built["counter"].capabilities == (MESSAGING, KEYVALUE)
