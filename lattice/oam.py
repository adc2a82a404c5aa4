"""wadm's OAM ``Application`` manifests converted into native Deployment and BindingSet.

Pure functions, no I/O. :mod:`lattice.manifest_loader` hands in one constructed document
whose ``apiVersion`` is ``core.oam.dev/v1beta1`` (or whose ``kind`` is ``Application``)
with its composed YAML node; :func:`convert` returns the native manifests of
:mod:`lattice.manifests` it stands for, or the reasons it cannot, each at the file, line
and field path of the OAM source. ``latticectl convert`` prints the same conversion.

The mapping (docs/manifests.md, "OAM input"): an ``actor`` (or ``component``) component
becomes an actor of a Deployment named after the Application, identified by
``properties.id`` (its public key: vinculum has no sound way to find an actor's key from
an OCI image reference, so an image-only actor is refused with what to add); a
``capability`` component becomes a provider (``contract`` → ``id``, ``link_name`` →
``binding_name``, ``vendor_id`` required); a ``spreadscaler`` becomes ``replicas`` and
``spread`` (one spread: ``affinity_rules``), a ``daemonscaler`` ``daemon: true``; the
``linkdef`` traits of the actors become a BindingSet of the same name. Whatever has no
equivalent (an unknown trait or field, provider ``config``, a second scaler on one
component, links between actors) is refused, never dropped.

Errors of the native models are mapped back: each emitted field remembers the OAM field it
came from, so ``spec.actors[0].id`` of the converted Deployment is reported at the line of
``spec.components[0].properties.id`` in the Application file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

from lattice.manifests import KINDS, Manifest
from lattice.oam_reader import Loc, Native, Reader, Refusal
from lattice.yaml_guard import ManifestIssue, format_loc, node_at, node_line

#: The only OAM version wadm reads, and the kind it defines.
OAM_API_VERSION = "core.oam.dev/v1beta1"
APPLICATION = "Application"
#: wadm's default spread weight.
DEFAULT_WEIGHT = 100
#: Deployment annotation prefix that keeps a component's OCI image reference.
IMAGE_ANNOTATION = "oam.vinculum.io/image."

ACTOR_TYPES = ("actor", "component")
CAPABILITY_TYPES = ("capability",)
SCALERS = ("spreadscaler", "daemonscaler")
TRAITS = (*SCALERS, "linkdef")

def is_application(data: Any) -> bool:
    """True for a document meant as OAM: ``kind: Application`` or an OAM apiVersion."""
    if not isinstance(data, dict):
        return False
    api = data.get("apiVersion")
    return data.get("kind") == APPLICATION or (isinstance(api, str)
                                               and api.startswith("core.oam.dev/"))


def convert(data: Mapping[str, Any], node: yaml.Node, path: str,
            ) -> tuple[list[Manifest], list[ManifestIssue]]:
    """One Application document to native manifests (a Deployment, and a BindingSet when
    it has linkdefs), or (none and) every reason it cannot be, at ``path:line`` of the OAM
    field. Pure; consumed by :func:`lattice.manifest_loader.parse_file`, and so by the
    agent, ``latticectl apply`` and ``latticectl convert``."""
    natives, refusals = translate(data)
    if refusals:
        return [], sorted({ManifestIssue(path, node_line(node_at(node, r.loc)),
                                         format_loc(r.loc), r.message) for r in refusals})
    out: list[Manifest] = []
    issues: dict[tuple[int, str], ManifestIssue] = {}
    for native in natives:
        try:
            out.append(KINDS[native.kind].model_validate(native.data))
        except ValidationError as exc:
            for err in exc.errors():
                issue = _issue(path, node, native, err)
                # one OAM field feeds both documents (an actor's id): report it once
                issues.setdefault((issue.line, issue.field), issue)
    return ([], list(issues.values())) if issues else (out, [])


def _issue(path: str, node: yaml.Node, native: Native, err: Any) -> ManifestIssue:
    loc = tuple(err.get("loc", ()))
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    if err.get("type") == "missing":
        msg = "required field is missing"
    elif err.get("type") == "extra_forbidden":
        msg = f"this vinculum has no field {loc[-1]!r} to convert it to"
    oam = native.source_of(loc)
    name = native.data.get("metadata", {}).get("name")
    return ManifestIssue(path, node_line(node_at(node, oam)), format_loc(oam),
                         f"{msg} (as {format_loc(loc)} of the converted {native.kind} "
                         f"{name!r})")


# ---------------------------------------------------------------- translation

@dataclass
class _Component:
    index: int
    name: str
    type: str
    props: dict[str, Any]
    traits: Any

    @property
    def loc(self) -> Loc:
        return ("spec", "components", self.index)


def translate(data: Mapping[str, Any]) -> tuple[list[Native], list[Refusal]]:
    """The native documents an Application stands for, with their origins, or the
    refusals. Pure; :func:`convert` validates the result."""
    r = Reader()
    top = r.mapping(data, (), ("apiVersion", "kind", "metadata", "spec"))
    if top is None:
        return [], r.refusals
    if top.get("apiVersion") != OAM_API_VERSION:
        r.refuse(("apiVersion",), f"apiVersion {top.get('apiVersion')!r}: an Application "
                 f"must be {OAM_API_VERSION} (the version wadm reads)")
    if top.get("kind") != APPLICATION:
        r.refuse(("kind",), f"kind {top.get('kind')!r}: {OAM_API_VERSION} documents must "
                 f"be kind {APPLICATION}")
    meta = r.mapping(top.get("metadata"), ("metadata",), ("name", "annotations", "labels"))
    spec = r.mapping(top.get("spec"), ("spec",), ("components",),
                     what=" (only components convert)")
    meta = meta or {}
    metadata: dict[str, Any] = {"labels": r.labels(meta.get("labels"), ("metadata", "labels"))}
    if "name" in meta:
        metadata["name"] = meta["name"]
    annotations = r.labels(meta.get("annotations"), ("metadata", "annotations"))
    components = _components(r, (spec or {}).get("components"))
    deployment = Native("Deployment", {"metadata": {**metadata, "annotations": annotations},
                                       "spec": {"actors": [], "providers": []}})
    bindingset = Native("BindingSet", {"metadata": {**metadata, "annotations": {**annotations}},
                                       "spec": {"bindings": []}})
    for doc in (deployment, bindingset):
        doc.origin[("metadata",)] = (("metadata",), True)
        doc.origin[("spec",)] = (("spec", "components"), False)
    by_name = {c.name: c for c in components}
    for comp in components:
        _component(r, comp, deployment, bindingset, by_name)
    natives = [deployment] + ([bindingset] if bindingset.data["spec"]["bindings"] else [])
    for native in natives:  # what the author left out stays out of the converted YAML
        for key in ("labels", "annotations"):
            if not native.data["metadata"][key]:
                del native.data["metadata"][key]
    return natives, r.refusals


def _components(r: Reader, value: Any) -> list[_Component]:
    loc: Loc = ("spec", "components")
    if value is None:
        r.refuse(("spec",), "an Application needs spec.components")
    out: list[_Component] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(r.items(value, loc)):
        at = (*loc, i)
        comp = r.mapping(item, at, ("name", "type", "properties", "traits"))
        if comp is None:
            continue
        name = r.text(comp.get("name"), (*at, "name"), required="a component needs a name")
        kind = r.text(comp.get("type"), (*at, "type"), required="a component needs a type")
        if kind is not None and kind not in (*ACTOR_TYPES, *CAPABILITY_TYPES):
            r.refuse((*at, "type"), f"component type {kind!r} has no equivalent in "
                     f"vinculum; use one of {', '.join((*ACTOR_TYPES, *CAPABILITY_TYPES))}")
            continue
        if name is None or kind is None:
            continue
        if name in seen:
            r.refuse((*at, "name"), f"component {name!r} is defined twice (first at "
                     f"spec.components[{seen[name]}])")
            continue
        seen[name] = i
        known = ("id", "image") if kind in ACTOR_TYPES else (
            "contract", "link_name", "vendor_id", "image", "config")
        props = r.mapping(comp.get("properties"), (*at, "properties"), known)
        out.append(_Component(i, name, kind, props or {}, comp.get("traits")))
    return out


def _component(r: Reader, comp: _Component, deployment: Native, bindingset: Native,
               by_name: Mapping[str, _Component]) -> None:
    """One component into ``deployment`` (and its linkdefs into ``bindingset``)."""
    props_at = (*comp.loc, "properties")
    image = r.text(comp.props.get("image"), (*props_at, "image"))
    actor = comp.type in ACTOR_TYPES
    if actor:
        entry: dict[str, Any] = {"id": r.text(comp.props.get("id"), (*props_at, "id"))}
        if entry["id"] is None:
            how = f"is referenced only by its image {image!r}" if image else "has no id"
            r.refuse(props_at, f"actor {comp.name!r} {how}; vinculum identifies an actor "
                     "by its public key: add "
                     "properties.id with the module's key (56 characters starting with "
                     "'M', printed by `latticectl actor inspect`)")
        origin: dict[Loc, Loc] = {("id",): (*props_at, "id")}
        group = "actors"
    else:
        entry = {"id": r.text(comp.props.get("contract"), (*props_at, "contract"),
                              required=f"capability {comp.name!r} needs properties.contract "
                                       "(its capability id, e.g. wasmcloud:httpserver)"),
                 "vendor_id": r.text(comp.props.get("vendor_id"), (*props_at, "vendor_id"))}
        if entry["vendor_id"] is None:
            r.refuse(props_at, f"capability {comp.name!r} has no vendor_id: vinculum starts "
                     "a provider by capability id, binding name and vendor; add "
                     "properties.vendor_id (e.g. nats, wascc)")
        link_name = r.text(comp.props.get("link_name"), (*props_at, "link_name"))
        if link_name is not None:
            entry["binding_name"] = link_name
        if comp.props.get("config") not in (None, {}, []):
            r.refuse((*props_at, "config"), "provider configuration has no equivalent in "
                     "vinculum (a provider starts without one); configure it per actor "
                     "through linkdef values")
        origin = {("id",): (*props_at, "contract"), ("vendor_id",): (*props_at, "vendor_id"),
                  ("binding_name",): (*props_at, "link_name")}
        group = "providers"
    if image is not None:
        deployment.data["metadata"]["annotations"][IMAGE_ANNOTATION + comp.name] = image
    traits_at = (*comp.loc, "traits")
    scaler: int | None = None
    for j, item in enumerate(r.items(comp.traits, traits_at)):
        at = (*traits_at, j)
        trait = r.mapping(item, at, ("type", "properties"))
        if trait is None:
            continue
        kind = r.text(trait.get("type"), (*at, "type"), required="a trait needs a type")
        props = trait.get("properties")
        if kind in SCALERS:
            if scaler is not None:
                r.refuse((*at, "type"), f"a second scaler on component {comp.name!r} "
                         f"(traits[{scaler}] scales it already); vinculum has one "
                         "placement per actor or provider")
                continue
            scaler = j
            _scaler(r, kind, props, (*at, "properties"), entry, origin, actor=actor)
        elif kind == "linkdef":
            if not actor:
                r.refuse((*at, "type"), "a linkdef on a capability has no equivalent: "
                         "put it on the actor that uses the capability, with target: "
                         f"{comp.name}")
                continue
            _linkdef(r, comp, props, (*at, "properties"), bindingset, by_name)
        elif kind is not None:
            what = (" (wasmCloud's interface links between components have no equivalent; "
                    "vinculum binds an actor to a capability: use linkdef)"
                    if kind == "link" else "")
            r.refuse((*at, "type"), f"trait type {kind!r} has no equivalent in vinculum"
                     f"{what}; known traits: {', '.join(TRAITS)}")
    native_at = ("spec", group, len(deployment.data["spec"][group]))
    deployment.origin[native_at] = (comp.loc, False)
    for sub, oam in origin.items():
        deployment.origin[(*native_at, *sub)] = (oam, True)
    deployment.data["spec"][group].append(entry)


def _scaler(r: Reader, kind: str, value: Any, at: Loc, entry: dict[str, Any],
            origin: dict[Loc, Loc], *, actor: bool) -> None:
    """A spreadscaler or daemonscaler's properties into ``entry``'s placement fields."""
    props = r.mapping(value, at, ("replicas", "instances", "spread"))
    if props is None:
        return
    if "replicas" in props and "instances" in props:
        r.refuse((*at, "instances"), "replicas and instances are the same field; write one")
    count_key = "instances" if "instances" in props else "replicas"
    count = props.get(count_key)
    spreads = _spreads(r, props.get("spread"), (*at, "spread"))
    if kind == "daemonscaler":
        if count not in (None, 1):
            r.refuse((*at, count_key), f"{count_key}: {count!r} per host has no equivalent: "
                     "a vinculum daemon runs one instance on every matching host")
        if len(spreads) > 1:
            r.refuse((*at, "spread"), "a daemon on the hosts matching any of several "
                     "spreads has no equivalent (affinity rules must all hold); write one "
                     "spread")
        entry["daemon"] = True
        origin[("daemon",)] = (*at,)
    elif not actor:
        if count not in (None, 1):
            r.refuse((*at, count_key), f"{count_key}: {count!r} has no equivalent for a "
                     "capability: vinculum runs a provider on one matching host (or, with "
                     "a daemonscaler, on every one)")
        if len(spreads) > 1:
            r.refuse((*at, "spread"), "a provider runs on one host: several spreads have "
                     "no equivalent; write one spread (its requirements become "
                     "affinity_rules) or use a daemonscaler")
    elif count is not None:
        entry["replicas"] = count
        origin[("replicas",)] = (*at, count_key)
    if len(spreads) == 1:
        # one share takes every replica: its weight and name do not change placement
        loc, share = spreads[0]
        entry["affinity_rules"] = share["requirements"]
        origin[("affinity_rules",)] = (*loc, "requirements")
        for i, label in enumerate(share["requirements"]):
            origin[("affinity_rules", i)] = (*loc, "requirements", label.partition("=")[0])
    elif len(spreads) > 1 and kind == "spreadscaler" and actor:
        entry["spread"] = [s for _, s in spreads]
        origin[("spread",)] = (*at, "spread")
        for k, (loc, share) in enumerate(spreads):
            origin[("spread", k)] = loc
            for key in ("name", "weight", "requirements"):
                origin[("spread", k, key)] = (*loc, key)
            for i, label in enumerate(share["requirements"]):
                origin[("spread", k, "requirements", i)] = (
                    *loc, "requirements", label.partition("=")[0])


def _spreads(r: Reader, value: Any, at: Loc) -> list[tuple[Loc, dict[str, Any]]]:
    out: list[tuple[Loc, dict[str, Any]]] = []
    for k, item in enumerate(r.items(value, at)):
        loc = (*at, k)
        spread = r.mapping(item, loc, ("name", "weight", "requirements"))
        if spread is None:
            continue
        requirements = r.labels(spread.get("requirements"), (*loc, "requirements"))
        out.append((loc, {"name": spread.get("name"),
                          "weight": spread.get("weight", DEFAULT_WEIGHT),
                          "requirements": [f"{k}={v}" for k, v in requirements.items()]}))
    return out


def _linkdef(r: Reader, comp: _Component, value: Any, at: Loc, bindingset: Native,
             by_name: Mapping[str, _Component]) -> None:
    """An actor's linkdef into a binding of the actor to the target capability."""
    props = r.mapping(value, at, ("target", "values"))
    if props is None:
        return
    target_name = r.text(props.get("target"), (*at, "target"),
                         required="a linkdef needs a target (a capability component)")
    if target_name is None:
        return
    target = by_name.get(target_name)
    if target is None:
        r.refuse((*at, "target"), f"no component named {target_name!r} in this "
                 f"Application; components: {', '.join(by_name)}")
        return
    if target.type not in CAPABILITY_TYPES:
        r.refuse((*at, "target"), f"{target_name!r} is an actor: links between actors have "
                 "no equivalent; a linkdef binds an actor to a capability")
        return
    binding = {"capability_id": target.props.get("contract"),
               "binding": target.props.get("link_name", "default"),
               "actor": comp.props.get("id"),
               "vendor_id": target.props.get("vendor_id"),
               "values": props.get("values") or {}}
    native_at = ("spec", "bindings", len(bindingset.data["spec"]["bindings"]))
    target_props = (*target.loc, "properties")
    bindingset.origin[native_at] = (at[:-1], False)
    for key, oam in (("capability_id", (*target_props, "contract")),
                     ("binding", (*target_props, "link_name")),
                     ("actor", (*comp.loc, "properties", "id")),
                     ("vendor_id", (*target_props, "vendor_id"))):
        bindingset.origin[(*native_at, key)] = (oam, False)
    bindingset.origin[(*native_at, "values")] = ((*at, "values"), True)
    bindingset.data["spec"]["bindings"].append(binding)


__all__ = ["APPLICATION", "IMAGE_ANNOTATION", "OAM_API_VERSION", "convert", "is_application",
           "translate"]
