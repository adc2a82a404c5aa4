"""The wire protocol: every model round-trips, events are proper CloudEvents, garbage is
dropped without raising, subjects are what the doc says, and docs/protocol.md is current."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from pydantic import BaseModel, TypeAdapter

from lattice import protocol as p
from lattice import protocol_doc

EXAMPLES = protocol_doc.examples()


def test_every_model_has_an_example() -> None:
    assert set(protocol_doc.model_classes()) == set(EXAMPLES)


@pytest.mark.parametrize("model", protocol_doc.model_classes(), ids=lambda m: m.__name__)
def test_every_model_round_trips(model: type[BaseModel]) -> None:
    example = EXAMPLES[model]
    wire = p.encode(example)
    assert p.decode(model, wire) == example
    assert model.model_validate(json.loads(wire)) == example
    if issubclass(model, p.Message):
        assert json.loads(wire)["v"] == p.PROTOCOL_VERSION


@pytest.mark.parametrize("model", protocol_doc.model_classes(), ids=lambda m: m.__name__)
def test_models_refuse_unknown_fields(model: type[BaseModel]) -> None:
    data = EXAMPLES[model].model_dump(mode="json") | {"surprise": 1}
    assert p.decode(model, json.dumps(data).encode()) is None


@pytest.mark.parametrize("op", list(p.CommandOp))
def test_commands_parse_through_the_discriminated_union(op: p.CommandOp) -> None:
    model = p.COMMAND_MODELS[op]
    example = EXAMPLES[model]
    assert TypeAdapter(p.Command).validate_json(p.encode(example)) == example
    assert example.model_dump()["op"] == op.value


@pytest.mark.parametrize("event_type", list(p.EventType))
def test_events_are_cloudevents(event_type: p.EventType) -> None:
    data = EXAMPLES[p.EVENT_DATA[event_type]]
    assert isinstance(data, p.Message)
    event = p.make_event(event_type, source="NHOST", data=data)
    wire: dict[str, Any] = json.loads(p.encode(event))
    assert {"specversion", "id", "source", "type", "time", "data"} <= set(wire)
    assert wire["specversion"] == "1.0" and wire["source"] == "NHOST"
    assert wire["type"] == f"io.vinculum.lattice.{event_type.value}"
    assert wire["datacontenttype"] == "application/json"
    assert datetime.fromisoformat(wire["time"]).tzinfo is not None
    assert len(wire["id"]) >= 16
    back = p.decode(p.CloudEvent, p.encode(event))
    assert back is not None and back.event_type == event_type and back.typed_data() == data


def test_event_ids_are_unique() -> None:
    data = EXAMPLES[p.HostStopped]
    assert isinstance(data, p.Message)
    ids = {p.make_event(p.EventType.HOST_STOPPED, "h", data).id for _ in range(100)}
    assert len(ids) == 100


def test_unknown_or_malformed_event_data_is_none_not_an_error() -> None:
    unknown = p.CloudEvent(source="h", type="io.vinculum.lattice.teleported", data={})
    assert unknown.event_type is None and unknown.typed_data() is None
    bad = p.CloudEvent(source="h", type="io.vinculum.lattice.actor_started", data={"x": 1})
    assert bad.event_type == p.EventType.ACTOR_STARTED and bad.typed_data() is None


@pytest.mark.parametrize(
    "garbage",
    [b"", b"{", b"null", b"[]", b'"text"', b"\xff\xfe\x00", b'{"specversion": "0.3"}',
     b'{"source": "h", "type": "t", "data": [1]}', b"{}" * 1000, b"9" * 5000],
)
@pytest.mark.parametrize("model", [p.CloudEvent, p.HostInventory, p.AuctionRequest,
                                   p.CommandAck, p.StartActorCommand])
def test_decode_of_garbage_returns_none(model: type[BaseModel], garbage: bytes) -> None:
    assert p.decode(model, garbage, subject="lattice.x.evt.y") is None


def test_decode_logs_the_subject(caplog: pytest.LogCaptureFixture) -> None:
    assert p.decode(p.HostInventory, b'{"name": 3}', subject="lattice.x.ctl.ping") is None
    assert "lattice.x.ctl.ping" in caplog.text and "host_id" in caplog.text


def test_a_message_of_another_protocol_version_is_dropped_with_its_subject(
        caplog: pytest.LogCaptureFixture) -> None:
    ping = json.loads(p.encode(p.PingRequest()))
    assert p.decode(p.PingRequest, json.dumps(ping).encode()) is not None
    ping["v"] = p.PROTOCOL_VERSION + 1
    assert p.decode(p.PingRequest, json.dumps(ping).encode(),
                    subject="lattice.x.ctl.ping") is None
    assert "lattice.x.ctl.ping" in caplog.text
    assert f"protocol version {p.PROTOCOL_VERSION + 1}" in caplog.text
    event = json.loads(p.encode(p.make_event(
        p.EventType.HOST_STOPPED, "N" + "A" * 55, p.HostStopped(host_id="N" + "A" * 55))))
    assert p.decode(p.CloudEvent, json.dumps(event).encode()) is not None
    event["protocolversion"] = 9
    assert p.decode(p.CloudEvent, json.dumps(event).encode(), subject="lattice.x.evt") is None


@pytest.mark.parametrize(
    ("payload", "problem"),
    [(b"{", "malformed JSON"), (b"[1]", "expected a JSON object, got list"),
     (b"\xff", "malformed JSON"), (b"3", "got int")],
)
def test_parse_json_object_explains(payload: bytes, problem: str) -> None:
    result = p.parse_json_object(payload)
    assert isinstance(result, str) and problem in result


def test_subjects() -> None:
    s = p.Subjects("lab")
    assert s.ping == "lattice.lab.ctl.ping"
    assert s.auction("provider") == "lattice.lab.ctl.auction.provider"
    assert s.host_command("NH", "binding.del") == "lattice.lab.ctl.host.NH.binding.del"
    assert s.host_commands("NH") == "lattice.lab.ctl.host.NH.>"
    assert s.event(p.EventType.HOST_STOPPED, "NH") == "lattice.lab.evt.NH.host_stopped"
    assert s.event_source("lattice.lab.evt.NH.host_stopped") == "NH"
    assert s.event_source("lattice.lab.ctl.ping") is None
    assert s.events == "lattice.lab.evt.>" and s.nudge == "lattice.lab.sync.nudge"
    for op in p.CommandOp:
        assert s.op_of(s.host_command("NH", op)) == op
    assert s.op_of("lattice.lab.ctl.host.NH.actor.launch") is None
    assert s.op_of("lattice.lab.ctl.ping") is None
    for bad in ("", "a.b", "a b", "a*", "a>"):
        with pytest.raises(ValueError, match="invalid lattice id"):
            p.Subjects(bad)


def test_identity_annotations_ignore_the_revision() -> None:
    a = {p.ANN_MANAGED_BY: "vinculum", p.ANN_REPLICA: "1", p.ANN_REVISION: "abc"}
    assert p.identity_annotations(a) == {p.ANN_MANAGED_BY: "vinculum", p.ANN_REPLICA: "1"}
    assert p.is_managed(a) and not p.is_managed({})


def test_protocol_doc_is_current() -> None:
    assert protocol_doc.DOC_PATH.read_text() == protocol_doc.render(), (
        "docs/protocol.md is out of date: run `python -m lattice.protocol_doc`"
    )


def test_protocol_doc_names_every_subject_and_model() -> None:
    doc = protocol_doc.render()
    s = p.Subjects(protocol_doc.LATTICE)
    for subject, *_ in protocol_doc.subject_rows(s):
        assert f"`{subject}`" in doc
    for et in p.EventType:
        assert f"### {et.value}" in doc
    for model in protocol_doc.model_classes():
        assert f"### {model.__name__}" in doc


def test_protocol_doc_check_mode(tmp_path: Any) -> None:
    path = tmp_path / "protocol.md"
    assert protocol_doc.main(["--check", str(path)]) == 1
    assert protocol_doc.main([str(path)]) == 0
    assert protocol_doc.main(["--check", str(path)]) == 0


H0, H1 = "N" + "A" * 55, "N" + "B" * 55


def _event_bytes(source: str, host_id: str) -> bytes:
    return p.encode(p.make_event(p.EventType.HOST_STOPPED, source, p.HostStopped(host_id=host_id)))


def test_an_event_is_taken_only_when_subject_source_and_data_name_one_host(
        caplog: pytest.LogCaptureFixture) -> None:
    s = p.Subjects("lab")
    subject = s.event(p.EventType.HOST_STOPPED, H0)
    ev = p.decode_event(_event_bytes(H0, H0), subject)
    assert ev is not None and ev.source == H0
    # host-1 may only publish under its own id: a payload in host-0's name is a forgery
    assert p.decode_event(_event_bytes(H0, H0), s.event(p.EventType.HOST_STOPPED, H1)) is None
    assert p.decode_event(_event_bytes(H1, H0), s.event(p.EventType.HOST_STOPPED, H1)) is None
    assert p.decode_event(_event_bytes(H0, H0), s.event(p.EventType.HOST_HEARTBEAT, H0)) is None
    assert p.decode_event(_event_bytes(H0, H0), "lattice.lab.evt.host_stopped") is None
    assert "dropping event" in caplog.text
