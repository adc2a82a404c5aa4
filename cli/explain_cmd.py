"""``latticectl explain``: the fields of a manifest kind, as ``kubectl explain`` prints them.

The schema is the pydantic models' own (:mod:`lattice.manifests`, ``model_json_schema``),
so what ``explain`` says is what ``apply`` validates: each field's type (``<string>``,
``<integer>``, ``<[]ActorSpec>``, ``<map[string]string>``), whether it is required, its
default and bounds, and the description the model gives (a field whose type is a model
shows that model's description). ``explain deployment.spec.actors`` walks into fields
(lists and optional fields are looked through); ``--recursive`` prints the whole tree
below the field. Pure but for the printing in the command; an unknown kind or field is
:class:`~cli.output.NotFound` (exit 1), naming what there is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import click

from cli.output import NotFound
from lattice.manifests import API_VERSION, BindingSet, Deployment

#: Words for each kind (as ``get`` takes them) -> the manifest model.
KINDS: dict[str, type[Deployment] | type[BindingSet]] = {
    "deployment": Deployment, "deployments": Deployment, "deploy": Deployment,
    "bindingset": BindingSet, "bindingsets": BindingSet, "bindings": BindingSet,
    "bs": BindingSet,
}
INDENT = "  "
#: What a kind is, where its model has no docstring of its own.
SUMMARY = {
    "Deployment": "Actors and capability providers to run on the lattice's hosts, with\n"
                  "affinity rules, spread and limits (the agent places and keeps them).",
    "BindingSet": "Bindings of actors to capability providers, with configuration values\n"
                  "(${VAR} templates, resolved only by the host that applies them).",
}
_ROLE = re.compile(r":\w+:`([^`]*)`|``([^`]*)``")
#: JSON schema keywords shown after a field's type, in this order, with these words.
BOUNDS = (("minimum", "minimum"), ("maximum", "maximum"), ("minItems", "at least"),
          ("maxItems", "at most"), ("minLength", "min length"), ("maxLength", "max length"),
          ("pattern", "pattern"))

Schema = Mapping[str, Any]


def _deref(node: Schema, defs: Schema) -> Schema:
    """``node`` with its ``$ref`` followed and an optional's ``null`` dropped."""
    while True:
        if "$ref" in node:
            merged = {**defs[node["$ref"].rsplit("/", 1)[-1]],
                      **{k: v for k, v in node.items() if k != "$ref"}}
            node = merged
        elif "anyOf" in node:
            options = [o for o in node["anyOf"] if o.get("type") != "null"]
            if len(options) != 1:
                return node
            node = {**options[0], **{k: v for k, v in node.items() if k != "anyOf"}}
        else:
            return node


def type_name(node: Schema, defs: Schema) -> str:
    """A field's type the way kubectl writes it: ``string``, ``[]ActorSpec``,
    ``map[string]string``, ``ActorLimits``. Pure."""
    ref = node.get("$ref") or next((o.get("$ref") for o in node.get("anyOf", [])
                                    if "$ref" in o), None)
    if ref:
        return str(ref).rsplit("/", 1)[-1]
    node = _deref(node, defs)
    kind = node.get("type")
    if kind == "array":
        return "[]" + type_name(node.get("items", {}), defs)
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return "map[string]" + type_name(node["additionalProperties"], defs)
    if "anyOf" in node:
        return " | ".join(type_name(o, defs) for o in node["anyOf"])
    return str(kind or "any")


def _child(node: Schema, defs: Schema) -> Schema:
    """The object a field holds, looking through lists and optionals."""
    node = _deref(node, defs)
    while node.get("type") == "array":
        node = _deref(node.get("items", {}), defs)
    return node


def details(node: Schema, defs: Schema) -> str:
    """``default: 1; minimum 0; maximum 10000`` (or ``value: Deployment`` for a constant).
    Pure."""
    node = _deref(node, defs)
    parts = []
    if "const" in node:
        parts.append(f"value: {node['const']}")
    elif "default" in node and node["default"] not in (None, [], {}):
        parts.append(f"default: {_scalar(node['default'])}")
    if "enum" in node:
        parts.append("one of: " + ", ".join(map(_scalar, node["enum"])))
    parts += [f"{word} {node[key]}" for key, word in BOUNDS if key in node]
    return "; ".join(parts)


def _scalar(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def description(node: Schema, defs: Schema) -> str:
    """The field's own description, else that of the model it holds, reST markup made
    plain (````x```` and ``:meth:`x``` become ```x```). Pure."""
    text = node.get("description") or _child(node, defs).get("description", "")
    return _ROLE.sub(lambda m: f"`{m[1] or m[2]}`", str(text))


def resolve(model: type[Deployment] | type[BindingSet], path: list[str]
            ) -> tuple[Schema, Schema, str | None]:
    """(the field's schema, the schema's ``$defs``, the field's name) of ``path`` below
    the kind; :class:`NotFound` names the fields there are."""
    schema = model.model_json_schema()
    defs: Schema = schema.get("$defs", {})
    node: Schema = schema
    walked = [model.__name__]
    for name in path:
        props = _child(node, defs).get("properties", {})
        if name not in props:
            known = ", ".join(props) or "none: it has no fields"
            raise NotFound(f"field {name!r} does not exist in {'.'.join(walked)} "
                           f"(fields: {known})")
        node = props[name]
        walked.append(name)
    return node, defs, path[-1] if path else None


def field_lines(node: Schema, defs: Schema, *, recursive: bool, depth: int = 1
                ) -> list[str]:
    """The FIELDS block: each field's name, type, ``-required-``, details and description
    (without ``recursive``); names and types as an indented tree (with it). Pure."""
    obj = _child(node, defs)
    required = set(obj.get("required", []))
    lines = []
    for name, sub in obj.get("properties", {}).items():
        req = " -required-" if name in required else ""
        head = f"{INDENT * depth}{name}\t<{type_name(sub, defs)}>{req}"
        if recursive:
            lines.append(head)
            if _child(sub, defs).get("properties"):
                lines += field_lines(sub, defs, recursive=True, depth=depth + 1)
            continue
        lines.append(head)
        for text in (details(sub, defs), description(sub, defs)):
            lines += [INDENT * (depth + 2) + t for t in text.splitlines() if t.strip()]
        lines.append("")
    return lines


def explain_lines(target: str, *, recursive: bool = False) -> list[str]:
    """What ``latticectl explain TARGET`` prints (``deployment``, ``bs.spec.bindings``).
    Pure."""
    word, *path = [p for p in target.split(".")]
    model = KINDS.get(word.lower())
    if model is None:
        raise NotFound(f"no kind {word!r} to explain; one of deployment (deploy), "
                       "bindingset (bs)")
    node, defs, name = resolve(model, path)
    lines = [f"KIND:     {model.__name__}", f"VERSION:  {API_VERSION}", ""]
    if name is not None:
        lines += [f"FIELD:    {name} <{type_name(node, defs)}>", ""]
    text = description(node, defs) if name is not None else (
        description(model.model_json_schema(), {}) or SUMMARY[model.__name__])
    extra = details(node, defs) if name is not None else ""
    lines += ["DESCRIPTION:", *(INDENT * 2 + t for t in (extra, *text.splitlines())
                                if t.strip())]
    if lines[-1] == "DESCRIPTION:":
        lines.append(INDENT * 2 + "<empty>")
    fields = field_lines(node, defs, recursive=recursive)
    if fields:
        lines += ["", "FIELDS:", *fields]
    while lines and not lines[-1]:
        lines.pop()
    column = max((len(line.split("\t")[0]) for line in lines if "\t" in line), default=0) + 2
    return [f"{line.partition(chr(9))[0]:<{column}}{line.partition(chr(9))[2]}"
            if "\t" in line else line for line in lines]


@click.command("explain")
@click.argument("target", metavar="KIND[.FIELD...]")
@click.option("--recursive", is_flag=True,
              help="Print every field below, names and types only, as a tree.")
def explain(target: str, recursive: bool) -> None:
    """Describe the fields of a manifest kind, or of one field: type, required,
    default and bounds, and the description, from the schema `apply` validates.

    \b
    Examples:
      latticectl explain deployment
      latticectl explain deployment.spec.actors
      latticectl explain bs.spec.bindings.values
      latticectl explain deploy --recursive
    """
    for line in explain_lines(target, recursive=recursive):
        click.echo(line)


COMMANDS: list[click.Command] = [explain]
