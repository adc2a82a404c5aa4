"""Render docs/protocol.md from the models in :mod:`lattice.protocol`.

Pure apart from :func:`main`: every subject comes from :class:`~lattice.protocol.Subjects`,
every field table from the pydantic models, and every JSON example is a model instance
(:func:`examples`) serialised the way it goes on the wire, so the document cannot say
something the code does not. ``tests/test_protocol.py`` regenerates it and compares.

    python -m lattice.protocol_doc            # rewrite docs/protocol.md
    python -m lattice.protocol_doc --check    # exit 1 if it is out of date
"""

from __future__ import annotations

import inspect
import json
import re
import sys
import types
import typing
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from lattice import docgen
from lattice import protocol as p

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
LATTICE = "{lattice}"
HOST = "{host_id}"

_T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
_HOST_ID = "NCNTKG5RLCBS2T7OQBSZYS3IMIFJGL4BYVJS7PPKRYTFSZQBVFOHKE3L"
_ACTOR_ID = "MB2ZQB6ROOMAYBO4ZCTFYWN7YIVBWA3MTKZYAQKJMTIHE2ELLRW2E3ZW"
_OWNED = {
    p.ANN_MANAGED_BY: p.MANAGED_BY_VALUE, p.ANN_KIND: "Deployment",
    p.ANN_NAME: "amazing-deployment", p.ANN_REVISION: "9f2c1e0", p.ANN_REPLICA: "0",
}
_PROVIDER_ANN = {k: v for k, v in _OWNED.items() if k != p.ANN_REPLICA}
_LABELS = {"hostcore.arch": "aarch64", "hostcore.os": "linux", "hostcore.python": "3.11.7",
           "leds": "12"}
_VALUES = {"url": "nats://${NATS_HOST:127.0.0.1}:4222", "token": "${LED_TOKEN}"}


def examples() -> dict[type[BaseModel], BaseModel]:
    """One example instance of every message model, with fixed values."""
    actor = p.ActorInstance(actor_id=_ACTOR_ID, instance_id="5b0c3f1ad2e94c5a8e8c7d1f0a2b3c4d",
                            annotations=_OWNED, started_at=_T0)
    provider = p.ProviderInstance(capability_id="iot:ledcontroller", vendor_id="wascc",
                                  instance_id="0e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b",
                                  annotations=_PROVIDER_ANN, started_at=_T0)
    binding = p.BindingInstance(actor_id=_ACTOR_ID, capability_id="iot:ledcontroller",
                                vendor_id="wascc", values=_VALUES, annotations=_PROVIDER_ANN)
    inventory = p.HostInventory(host_id=_HOST_ID, name="pi-kitchen", labels=_LABELS,
                                started_at=_T0, uptime_s=42.5, heartbeat_s=5.0, actors=[actor],
                                providers=[provider], bindings=[binding])
    common: dict[str, Any] = {"host_id": _HOST_ID}
    prov: dict[str, Any] = {"capability_id": "iot:ledcontroller", "binding_name": "default"}
    found: list[BaseModel] = [
        actor, provider, binding, inventory, p.PingRequest(),
        p.AuctionRequest(auction_id="a7d2c9e4b1f04e3a9c8d7e6f5a4b3c2d", kind="provider",
                         capability_id="iot:ledcontroller", binding_name="default",
                         vendor_id="wascc", constraints=["leds=12", "!battery"]),
        p.AuctionReply(auction_id="a7d2c9e4b1f04e3a9c8d7e6f5a4b3c2d", bid=False,
                       reason="label leds missing", load=2, labels={"hostcore.os": "linux"},
                       **common),
        p.StartActorCommand(actor_id=_ACTOR_ID, annotations=_OWNED),
        p.StopActorCommand(actor_id=_ACTOR_ID, annotations={p.ANN_NAME: "amazing-deployment"}),
        p.StartProviderCommand(vendor_id="wascc", annotations=_PROVIDER_ANN, **prov),
        p.StopProviderCommand(**prov),
        p.PutBindingCommand(actor_id=_ACTOR_ID, vendor_id="wascc", values=_VALUES,
                     annotations=_PROVIDER_ANN, **prov),
        p.DeleteBindingCommand(actor_id=_ACTOR_ID, **prov),
        p.CommandAck(accepted=True, changed=True, instance_id=actor.instance_id, **common),
        p.SyncNudge(reason="latticectl apply", revision="9f2c1e0"),
        p.HostStopped(reason="host stopping", **common),
        p.ActorEvent(actor_id=_ACTOR_ID, instance_id=actor.instance_id, annotations=_OWNED,
                     **common),
        p.ActorStartFailed(actor_id=_ACTOR_ID, annotations=_OWNED,
                           reason="actor failed to start: module not found", **common),
        p.ProviderEvent(vendor_id="wascc", instance_id=provider.instance_id,
                        annotations=_PROVIDER_ANN, **prov, **common),
        p.ProviderStartFailed(vendor_id="wascc", annotations=_PROVIDER_ANN,
                              reason="provider failed to start: archive missing",
                              **prov, **common),
        p.BindingEvent(actor_id=_ACTOR_ID, vendor_id="wascc", values=_VALUES,
                       annotations=_PROVIDER_ANN, **prov, **common),
        p.BindingPutFailed(actor_id=_ACTOR_ID, vendor_id="wascc", annotations=_PROVIDER_ANN,
                           reason=f"binding of {_ACTOR_ID} to iot:ledcontroller/default: "
                                  "unset environment variable LED_TOKEN", **prov, **common),
    ]
    out: dict[type[BaseModel], BaseModel] = {type(m): m for m in found}
    out[p.CloudEvent] = event_example(p.EventType.ACTOR_STARTED, out)
    return out


def event_example(
    event_type: p.EventType, models: dict[type[BaseModel], BaseModel] | None = None
) -> p.CloudEvent:
    """The CloudEvent a host publishes for ``event_type``, with fixed id and time."""
    models = models or examples()
    data = models[p.EVENT_DATA[event_type]]
    assert isinstance(data, p.Message)
    reasons = {p.EventType.ACTOR_STOPPED: "stopped by command",
               p.EventType.PROVIDER_STOPPED: "stopped by command",
               p.EventType.BINDING_DELETED: "deleted by command"}
    if event_type in reasons:
        data = data.model_copy(update={"reason": reasons[event_type]})
    event = p.make_event(event_type, source=_HOST_ID, data=data)
    return event.model_copy(update={"id": "3c6e0b8a1f2d4e5c9b7a6d5e4f3c2b1a", "time": _T0})


def model_classes() -> list[type[BaseModel]]:
    """Every model :mod:`lattice.protocol` defines, in source order (the base excluded)."""
    return [
        obj for mod in (p.models, p.events) for obj in vars(mod).values()
        if isinstance(obj, type) and issubclass(obj, BaseModel)
        and obj.__module__ == mod.__name__ and obj is not p.Message
    ]


# ---------------------------------------------------------------- rendering helpers

def _prose(text: str | None) -> str:
    """A docstring as markdown: RST literals and roles become backticks."""
    text = inspect.cleandoc(text or "")
    text = re.sub(r":\w+:`~?([^`]+)`", lambda m: f"`{m[1].split('.')[-1]}`", text)
    text = text.replace("``", "`")
    return re.sub(r"(?<!\n)\n(?!\n)", " ", text)


def _type(tp: Any) -> str:
    """A field's type in JSON terms, linking to other models."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return _type(args[0])
    if origin is typing.Literal:
        return " or ".join(f"`{json.dumps(a)}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type(a) for a in args)
    if origin is list:
        return f"array of {_type(args[0])}"
    if origin is dict:
        return "object" if args[1] is Any else f"map of {_type(args[1])}"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return f"[{tp.__name__}](#{tp.__name__.lower()})"
    names: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean",
                             datetime: "timestamp (RFC 3339)", type(None): "null"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    factory = info.default_factory
    if factory is not None:
        named: dict[Callable[..., Any], str] = {
            dict: "`{}`", list: "`[]`", p.new_id: "random id", p.utcnow: "now",
        }
        return named.get(factory, "generated")
    return f"`{json.dumps(info.default)}`"


def _json(model: BaseModel) -> str:
    return json.dumps(model.model_dump(mode="json"), indent=2, ensure_ascii=False)


def _code(text: str, lang: str = "json") -> list[str]:
    return [f"```{lang}", text, "```", ""]


def subject_rows(s: p.Subjects) -> list[tuple[str, str, str, str]]:
    """(subject, pattern, payload, reply) for every subject of the protocol."""
    rows = [
        (s.ping, "scatter/gather", "[PingRequest](#pingrequest)",
         "[HostInventory](#hostinventory) from every host"),
        (s.auction("actor"), "scatter/gather", "[AuctionRequest](#auctionrequest)",
         "[AuctionReply](#auctionreply) from every host"),
        (s.auction("provider"), "scatter/gather", "[AuctionRequest](#auctionrequest)",
         "[AuctionReply](#auctionreply) from every host"),
    ]
    for op, model in p.COMMAND_MODELS.items():
        rows.append((s.host_command(HOST, op), "request/reply",
                     f"[{model.__name__}](#{model.__name__.lower()})",
                     "[CommandAck](#commandack)"))
    for et in p.EventType:
        data = p.EVENT_DATA[et].__name__
        rows.append((s.event(et, HOST), "publish", f"[CloudEvent](#cloudevent) of [{data}]"
                     f"(#{data.lower()})", "none"))
    rows.append((s.nudge, "publish", "[SyncNudge](#syncnudge)", "none"))
    rows.append((s.actor_rpc("<actor_id>"), "request/reply (queue group `actors`)",
                 "the operation's payload, operation in header `Vinculum-Op`",
                 "the actor's response, or an empty body with `Nats-Service-Error`"))
    rows.append((s.provider_rpc("<actor_id>", "<capability_id>", "<binding_name>"),
                 "request/reply (queue group `providers`)",
                 "a host call's payload, operation in header `Vinculum-Op`",
                 "the provider's response, or an empty body with `Nats-Service-Error`"))
    return rows


def _carried_by(model: type[BaseModel], s: p.Subjects) -> list[str]:
    name = f"[{model.__name__}](#{model.__name__.lower()})"
    subjects = [f"`{subj}`" for subj, _, payload, reply in subject_rows(s)
                if payload.startswith(name) or reply.startswith(name) or f"of {name}" in payload]
    inside = [f"[{m.__name__}](#{m.__name__.lower()})" for m in model_classes()
              if any(name in _type(f.annotation) for f in m.model_fields.values())]
    out = []
    if subjects:
        out.append("On: " + ", ".join(subjects) + ".")
    if inside:
        out.append("Inside: " + ", ".join(inside) + ".")
    return out


# ---------------------------------------------------------------- the document

def render() -> str:
    """The whole of docs/protocol.md."""
    s = p.Subjects(LATTICE)
    models = examples()
    out = [
        "# Wire protocol",
        "",
        "<!-- Generated by `python -m lattice.protocol_doc` from lattice/protocol/;"
        " do not edit by hand. -->",
        "",
        _prose(p.__doc__).split("\n\n")[1].replace(
            "This package", "The `lattice.protocol` package", 1),
        "",
        f"Protocol version: **{p.PROTOCOL_VERSION}** (the `v` field of every message; the"
        f" `protocolversion` attribute of every event); a message of another version is"
        f" logged with its subject and dropped, and a command of another version is refused"
        f" with a reason. Default lattice id: "
        f"`{p.DEFAULT_LATTICE}`. In subjects below `{LATTICE}` is the lattice id and"
        f" `{HOST}` a host's id.",
        "",
        "## Subjects",
        "",
        "| subject | pattern | payload | reply |",
        "|---|---|---|---|",
        *[f"| `{a}` | {b} | {c} | {d} |" for a, b, c, d in subject_rows(s)],
        "",
        f"Wildcards: a host subscribes to `{s.host_commands(HOST)}`; observers of every"
        f" event to `{s.events}`. A host publishes its events only under"
        f" `{s.prefix}.evt.<its own host id>.>` (in a secured lattice the server enforces"
        " it, see docs/security.md) and receivers drop an event whose subject, `source`"
        " and `data.host_id` disagree. The agent's leader lease is the JetStream key-value"
        f" bucket `{s.lease_bucket}`.",
        "",
        "## Annotations",
        "",
        "Hosts keep the annotations a command gives an entity, verbatim, and report them"
        " in the inventory and the events. The agent marks what it owns with:",
        "",
        *[f"- `{key}`" for key in (p.ANN_MANAGED_BY, p.ANN_KIND, p.ANN_NAME, p.ANN_REVISION,
                                   p.ANN_REPLICA)],
        "",
        f"An actor whose deployment sets `limits` also carries `{p.ANN_LIMITS}`"
        " (`cpu_ms_per_call=500,memory_mib=32`): the host runs the instance under those"
        " limits instead of its defaults.",
        "",
        f"`{p.ANN_MANAGED_BY}: {p.MANAGED_BY_VALUE}` marks an entity as the agent's. A start"
        " is idempotent over the *identity* annotations: all but "
        + ", ".join(f"`{k}`" for k in sorted(p.NON_IDENTITY_ANNOTATIONS)) + ".",
        "",
        "## Binding values",
        "",
        "Binding values travel and are stored as templates: `${VAR}` (the variable must be"
        " set on the host) or `${VAR:default}`; `$${` is a literal `${`. Only the host that"
        " applies a binding resolves them, from its own environment, and hands the result"
        " to its runtime; inventories, events, acks, logs and the status branch only ever"
        " show the templates. An unset variable without a default makes the host refuse"
        " the `binding.put`, naming the variable.",
        "",
        "## Messages",
        "",
    ]
    for model in model_classes():
        out += [f"### {model.__name__}", ""]
        doc = model.__dict__.get("__doc__")
        if doc:
            out += [_prose(doc), ""]
        out += [line for line in _carried_by(model, s)]
        out += ["", "| field | type | default |", "|---|---|---|"]
        for name, info in model.model_fields.items():
            out.append(f"| `{name}` | {_type(info.annotation)} | {_default(info)} |")
        out += ["", *_code(_json(models[model]))]
    out += ["## Events", "",
            f"Every event is a [CloudEvent](#cloudevent) whose `type` is"
            f" `{p.EVENT_TYPE_PREFIX}<event>` and whose `source` is the host id.", ""]
    for et in p.EventType:
        data = p.EVENT_DATA[et].__name__
        out += [f"### {et.value}", "",
                f"On `{s.event(et, HOST)}`; `data` is [{data}](#{data.lower()}).", "",
                *_code(_json(event_example(et, models)))]
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write docs/protocol.md, or with ``--check`` report whether it is current."""
    return docgen.main(argv, default=DOC_PATH, render=lambda _current: render(),
                       module="lattice.protocol_doc")


if __name__ == "__main__":
    sys.exit(main())
