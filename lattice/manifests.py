"""Manifest models: the desired state an operator writes in git.

Pure pydantic models, no I/O. Two kinds, as in the feature request: ``Deployment`` (actors
and capability providers to run, with affinity rules) and ``BindingSet`` (bindings of
actors to providers, with configuration values). Unknown fields are errors, so a typo never
silently vanishes. :mod:`lattice.manifest_loader` turns YAML files into these models with
file, line and field in every error; the planner consumes :class:`DesiredState`.

Names that become NATS subject tokens or file names (binding names, vendor ids, capability
ids, metadata names) are checked by :mod:`lattice.names`, whose messages state the rule.

Binding ``values`` may hold ``${VAR}`` or ``${VAR:default}``; they stay templates here and
everywhere the agent can see them, and are resolved only by the host that applies them.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Hashable, Sequence
from typing import Annotated, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from lattice import selectors
from lattice.errors import SelectorError
from lattice.ids import actor_id_problem
from lattice.names import BindingName, CapabilityId, MetadataName, VendorId

API_VERSION: Literal["vinculum.io/v1"] = "vinculum.io/v1"
H = TypeVar("H", bound=Hashable)


#: an actor id's verdict, by value (a base32 decode and a CRC each; manifests repeat ids)
_actor_id_verdict = functools.lru_cache(maxsize=4096)(actor_id_problem)


def _actor_id(value: str) -> str:
    problem = _actor_id_verdict(value)
    if problem:
        raise ValueError(problem)
    return value


def _rules(value: list[str]) -> list[str]:
    for rule in value:
        try:
            selectors.parse(rule)
        except SelectorError as exc:
            raise ValueError(exc.message) from None
    return value


ActorId = Annotated[str, AfterValidator(_actor_id)]
AffinityRules = Annotated[list[str], AfterValidator(_rules)]


class Strict(BaseModel):
    """Frozen, and unknown fields are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Metadata(Strict):
    name: MetadataName
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


#: The most an actor instance may be given (the host's own defaults are lower).
MAX_MEMORY_MIB = 4096
MAX_CPU_MS_PER_CALL = 60_000


class ActorLimits(Strict):
    """What one instance of an actor may use, where the hosts' defaults do not fit:
    ``memory_mib`` of linear memory, ``cpu_ms_per_call`` of its own instructions per call.
    The agent carries them to the host in the ``vinculum.io/limits`` annotation
    (:meth:`annotation`), so changing them replaces the running instances."""

    memory_mib: int | None = Field(default=None, ge=1, le=MAX_MEMORY_MIB)
    cpu_ms_per_call: int | None = Field(default=None, ge=1, le=MAX_CPU_MS_PER_CALL)

    def annotation(self) -> str:
        """``cpu_ms_per_call=500,memory_mib=32``: the fields that are set, by name. Pure."""
        return ",".join(f"{k}={v}" for k, v in sorted(self.model_dump().items())
                        if v is not None)

    @classmethod
    def from_annotation(cls, text: str) -> ActorLimits:
        """Inverse of :meth:`annotation`; ValueError naming the part that is wrong."""
        fields: dict[str, int] = {}
        for part in filter(None, text.split(",")):
            key, eq, value = part.partition("=")
            if not eq or key not in cls.model_fields or not value.isdigit():
                raise ValueError(f"limits annotation {text!r}: {part!r} is not "
                                 f"memory_mib=N or cpu_ms_per_call=N")
            fields[key] = int(value)
        return cls.model_validate(fields)


#: The most shares one ``spread`` may name.
MAX_SHARES = 16


class SpreadShare(Strict):
    """One share of a spread: ``weight`` parts of the replicas, placed on hosts that
    satisfy ``requirements`` (and the entity's ``affinity_rules``)."""

    name: MetadataName
    weight: int = Field(ge=1, le=1_000_000)
    requirements: AffinityRules = Field(default_factory=list)


def first_repeated(items: Sequence[H]) -> H | None:
    """The first item of ``items`` (in list order) that occurs more than once, or None:
    what ``next((x for x in items if items.count(x) > 1), None)`` says, in linear time
    (the uniqueness checks below name it in their messages). Pure."""
    counts = Counter(items)
    if len(counts) == len(items):
        return None
    return next(x for x in items if counts[x] > 1)


def _shares(value: list[SpreadShare]) -> list[SpreadShare]:
    n = first_repeated([s.name for s in value])
    if n is not None:
        raise ValueError(f"spread share {n!r} named twice; share names must be unique")
    return value


Spread = Annotated[list[SpreadShare], Field(max_length=MAX_SHARES), AfterValidator(_shares)]


def _check_daemon(daemon: bool, spread: Sequence[object], replicas: int) -> None:
    """A daemon (one instance on every matching host) takes no spread and no replicas."""
    if daemon and spread:
        raise ValueError("daemon: true runs one instance on every matching host; "
                         "it cannot have a spread (drop one of them)")
    if daemon and replicas != 1:
        raise ValueError(f"daemon: true runs one instance on every matching host; "
                         f"remove replicas: {replicas}")


class ActorSpec(Strict):
    """An actor to run: ``replicas`` instances, spread over hosts matching the rules
    (divided by ``spread`` weights when given), or with ``daemon: true`` one on every
    matching host; at most ``max_per_host`` on one host (default: no limit)."""

    id: ActorId
    replicas: int = Field(default=1, ge=0, le=10_000)
    affinity_rules: AffinityRules = Field(default_factory=list)
    limits: ActorLimits | None = None
    spread: Spread = Field(default_factory=list)
    daemon: bool = False
    max_per_host: int | None = Field(default=None, ge=1, le=10_000)

    @model_validator(mode="after")
    def _daemon_alone(self) -> ActorSpec:
        _check_daemon(self.daemon, self.spread, self.replicas)
        return self

    @property
    def limits_annotation(self) -> str | None:
        """The ``vinculum.io/limits`` value its instances carry (None: hosts' defaults)."""
        text = self.limits.annotation() if self.limits is not None else ""
        return text or None


class ProviderSpec(Strict):
    """A capability provider to run on ``replicas`` hosts that match the affinity rules
    (one by default; divided by ``spread`` weights when given, as an actor's replicas), or
    with ``daemon: true`` on every such host. A host runs one provider per capability and
    binding name, so ``max_per_host`` can only be 1: replicas run on distinct hosts."""

    id: CapabilityId
    binding_name: BindingName = "default"
    vendor_id: VendorId
    affinity_rules: AffinityRules = Field(default_factory=list)
    replicas: int = Field(default=1, ge=1, le=10_000)
    spread: Spread = Field(default_factory=list)
    daemon: bool = False
    max_per_host: Literal[1] = 1

    @model_validator(mode="after")
    def _daemon_alone(self) -> ProviderSpec:
        _check_daemon(self.daemon, self.spread, self.replicas)
        return self

    @property
    def key(self) -> ProviderKey:
        return ProviderKey(self.id, self.binding_name, self.vendor_id)


class DeploymentSpec(Strict):
    actors: list[ActorSpec] = Field(default_factory=list)
    providers: list[ProviderSpec] = Field(default_factory=list)
    #: move instances when the placement no longer meets the spread (hosts came back)
    rebalance: bool = True


class Deployment(Strict):
    apiVersion: Literal["vinculum.io/v1"] = API_VERSION
    kind: Literal["Deployment"] = "Deployment"
    metadata: Metadata
    spec: DeploymentSpec

    @field_validator("spec")
    @classmethod
    def _unique(cls, spec: DeploymentSpec) -> DeploymentSpec:
        aid = first_repeated([a.id for a in spec.actors])
        if aid is not None:
            raise ValueError(f"actor {aid} listed twice; use replicas instead")
        prov = first_repeated([(p.id, p.binding_name) for p in spec.providers])
        if prov is not None:
            cap, bn = prov
            raise ValueError(f"provider {cap} binding {bn!r} listed twice")
        return spec


class BindingSpec(Strict):
    """One binding of an actor to a provider, with configuration values (templates)."""

    capability_id: CapabilityId
    binding: BindingName = "default"
    actor: ActorId
    vendor_id: VendorId | None = None
    values: dict[str, str] = Field(default_factory=dict)

    @field_validator("values", mode="before")
    @classmethod
    def _stringify(cls, v: object) -> object:
        # YAML turns `PORT: 8080` into an int; configuration values are strings.
        if isinstance(v, dict):
            return {
                str(k): (str(x).lower() if isinstance(x, bool) else str(x))
                if isinstance(x, (int, float, bool))
                else x
                for k, x in v.items()
            }
        return v


class BindingSetSpec(Strict):
    bindings: list[BindingSpec] = Field(default_factory=list)

    @field_validator("bindings")
    @classmethod
    def _unique(cls, bindings: list[BindingSpec]) -> list[BindingSpec]:
        k = first_repeated([(b.actor, b.capability_id, b.binding) for b in bindings])
        if k is not None:
            raise ValueError(f"binding of actor {k[0]} to {k[1]} {k[2]!r} listed twice")
        return bindings


class BindingSet(Strict):
    apiVersion: Literal["vinculum.io/v1"] = API_VERSION
    kind: Literal["BindingSet"] = "BindingSet"
    metadata: Metadata
    spec: BindingSetSpec


Manifest = Deployment | BindingSet
KINDS: dict[str, type[Deployment] | type[BindingSet]] = {
    "Deployment": Deployment,
    "BindingSet": BindingSet,
}


class ProviderKey(tuple[str, str, str]):
    """(capability_id, binding_name, vendor_id): what makes two provider specs the same."""

    __slots__ = ()

    def __new__(cls, capability_id: str, binding_name: str, vendor_id: str) -> ProviderKey:
        return super().__new__(cls, (capability_id, binding_name, vendor_id))

    @property
    def capability_id(self) -> str:
        return self[0]

    @property
    def binding_name(self) -> str:
        return self[1]

    @property
    def vendor_id(self) -> str:
        return self[2]

    def __str__(self) -> str:
        return f"{self[0]}/{self[1]} ({self[2]})"


class SourceRef(Strict):
    """Where an entity came from: the file (relative to the repository) and line."""

    path: str
    line: int = 1


class DesiredState(Strict):
    """Every entity at one commit, keyed by name; what the planner reconciles towards."""

    revision: str = ""
    deployments: dict[str, Deployment] = Field(default_factory=dict)
    bindingsets: dict[str, BindingSet] = Field(default_factory=dict)
    sources: dict[str, SourceRef] = Field(
        default_factory=dict, description="'Kind/name' -> where it is defined"
    )

    @property
    def empty(self) -> bool:
        return not self.deployments and not self.bindingsets
