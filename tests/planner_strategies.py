"""Hypothesis strategies for the planner, and a simulated lattice that applies a plan.

Test-only. The strategies build small random desired states (from fixed pools of valid
actor ids, capabilities, rules and names, so collisions between desired and observed are
common) and observed lattices with owned and unowned entities. :func:`apply_plan` is a
deterministic stand-in for the executor and the hosts: starts go to the least-loaded host
satisfying the constraints (preferring hosts outside ``avoid_hosts``, then host id; never
one in ``exclude_hosts``; a start with a ``host_id`` only to that host), a provider only to
a host not running that capability and binding name yet; stops and
deletes remove, and stopping a provider takes its bindings with it, as hosts do.
bench/bench_planner.py uses the same simulator to build a converged lattice.
:data:`steps_st` draws what happens between two plans (events, heartbeats, a new desired
state), for the tests of a kept :class:`~reconciler.matching.Matcher`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st

from lattice import selectors
from lattice.ids import encode_module_key
from lattice.manifests import (
    ActorSpec,
    BindingSet,
    BindingSetSpec,
    BindingSpec,
    Deployment,
    DeploymentSpec,
    DesiredState,
    Metadata,
    ProviderSpec,
)
from lattice.protocol import (
    ANN_KIND,
    ANN_MANAGED_BY,
    ANN_NAME,
    ANN_REPLICA,
    ANN_REVISION,
    MANAGED_BY_VALUE,
    ActorInstance,
    BindingInstance,
    HostInventory,
    ProviderInstance,
)
from reconciler import actions as A

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ACTORS = tuple(encode_module_key(bytes([i + 1]) * 32) for i in range(4))
CAPS = ("wascc:messaging", "iot:ledcontroller")
BINDING_NAMES = ("default", "backup")
VENDORS = ("nats", "wascc")
RULES = ("leds=12", "zone=a", "zone!=b", "gpu", "!gpu")
DEPLOYMENTS = ("alpha", "beta", "gamma", "delta")
BINDINGSETS = ("b-one", "b-three", "b-two")
VALUES: tuple[dict[str, str], ...] = (
    {}, {"SUBSCRIPTION": "foo.bar"}, {"SUBSCRIPTION": "baz"}, {"V": "${ENV:42}"})


# ---------------------------------------------------------------- builders (tables too)

def deployment(name: str, actors: Iterable[ActorSpec] = (),
               providers: Iterable[ProviderSpec] = ()) -> Deployment:
    return Deployment(metadata=Metadata(name=name),
                      spec=DeploymentSpec(actors=list(actors), providers=list(providers)))


def bindingset(name: str, bindings: Iterable[BindingSpec]) -> BindingSet:
    return BindingSet(metadata=Metadata(name=name), spec=BindingSetSpec(bindings=list(bindings)))


def state(*items: Deployment | BindingSet, revision: str = "r1") -> DesiredState:
    return DesiredState(
        revision=revision,
        deployments={d.metadata.name: d for d in items if isinstance(d, Deployment)},
        bindingsets={b.metadata.name: b for b in items if isinstance(b, BindingSet)},
    )


def host(hid: str, labels: Mapping[str, str] | None = None, *,
         actors: Iterable[ActorInstance] = (), providers: Iterable[ProviderInstance] = (),
         bindings: Iterable[BindingInstance] = ()) -> HostInventory:
    return HostInventory(host_id=hid, name=f"name-{hid}", labels=dict(labels or {}),
                         started_at=T0, actors=list(actors), providers=list(providers),
                         bindings=list(bindings))


def lattice(*hosts: HostInventory) -> dict[str, HostInventory]:
    return {h.host_id: h for h in hosts}


def owned(kind: str, name: str, revision: str = "r1", replica: int | None = None
          ) -> dict[str, str]:
    ann = {ANN_MANAGED_BY: MANAGED_BY_VALUE, ANN_KIND: kind, ANN_NAME: name,
           ANN_REVISION: revision}
    if replica is not None:
        ann[ANN_REPLICA] = str(replica)
    return ann


def actor_inst(aid: str, iid: str, ann: Mapping[str, str] | None = None, *, at: int = 0
               ) -> ActorInstance:
    """A running actor instance started ``at`` seconds after :data:`T0`."""
    return ActorInstance(actor_id=aid, instance_id=iid, annotations=dict(ann or {}),
                         started_at=T0 + timedelta(seconds=at))


def provider_inst(cap: str, iid: str, ann: Mapping[str, str] | None = None, *,
                  vendor: str = "nats", bn: str = "default", at: int = 0) -> ProviderInstance:
    """A running provider started ``at`` seconds after :data:`T0`."""
    return ProviderInstance(capability_id=cap, binding_name=bn, vendor_id=vendor,
                            instance_id=iid, annotations=dict(ann or {}),
                            started_at=T0 + timedelta(seconds=at))


def binding_inst(aid: str, cap: str, values: Mapping[str, str] | None = None,
                 ann: Mapping[str, str] | None = None, *, bn: str = "default",
                 vendor: str | None = None) -> BindingInstance:
    return BindingInstance(actor_id=aid, capability_id=cap, binding_name=bn, vendor_id=vendor,
                           values=dict(values or {}), annotations=dict(ann or {}))


# ---------------------------------------------------------------- strategies

rules_st = st.lists(st.sampled_from(RULES), max_size=2, unique=True)
actor_spec_st = st.builds(ActorSpec, id=st.sampled_from(ACTORS),
                          replicas=st.integers(0, 3), affinity_rules=rules_st)
provider_spec_st = st.builds(ProviderSpec, id=st.sampled_from(CAPS),
                             binding_name=st.sampled_from(BINDING_NAMES),
                             vendor_id=st.sampled_from(VENDORS), affinity_rules=rules_st)
binding_spec_st = st.builds(BindingSpec, capability_id=st.sampled_from(CAPS),
                            binding=st.sampled_from(BINDING_NAMES),
                            actor=st.sampled_from(ACTORS),
                            vendor_id=st.none() | st.sampled_from(VENDORS),
                            values=st.sampled_from(VALUES))


@st.composite
def desired_states(draw: st.DrawFn) -> DesiredState:
    deps = [deployment(
        name,
        draw(st.lists(actor_spec_st, max_size=3, unique_by=lambda a: a.id)),
        draw(st.lists(provider_spec_st, max_size=3,
                      unique_by=lambda p: (p.id, p.binding_name))),
    ) for name in draw(st.lists(st.sampled_from(DEPLOYMENTS), max_size=3, unique=True))]
    sets = [bindingset(name, draw(st.lists(
        binding_spec_st, max_size=3, unique_by=lambda b: (b.actor, b.capability_id, b.binding))))
        for name in draw(st.lists(st.sampled_from(BINDINGSETS), max_size=2, unique=True))]
    return state(*deps, *sets, revision=draw(st.sampled_from(("r1", "r2"))))


labels_st = st.fixed_dictionaries({}, optional={
    "leds": st.sampled_from(("12", "8")), "zone": st.sampled_from(("a", "b")),
    "gpu": st.just("1")})
annotations_st: st.SearchStrategy[dict[str, str]] = st.one_of(
    st.just({}),
    st.builds(owned, kind=st.sampled_from(("Deployment", "Deployment", "BindingSet")),
              name=st.sampled_from((*DEPLOYMENTS, *BINDINGSETS, "gone", "alpha,beta")),
              revision=st.sampled_from(("r0", "r1")),
              replica=st.none() | st.integers(0, 3)),
)
when_st = st.integers(0, 50).map(lambda s: T0 + timedelta(seconds=s))


@st.composite
def observed_lattices(draw: st.DrawFn) -> dict[str, HostInventory]:
    hosts = []
    for i in range(draw(st.integers(0, 5))):
        hid = f"H{i}"
        actors = [ActorInstance(actor_id=draw(st.sampled_from(ACTORS)), instance_id=f"{hid}-a{j}",
                                annotations=draw(annotations_st), started_at=draw(when_st))
                  for j in range(draw(st.integers(0, 4)))]
        pkeys = draw(st.lists(st.tuples(st.sampled_from(CAPS), st.sampled_from(BINDING_NAMES)),
                              max_size=3, unique=True))
        providers = [ProviderInstance(capability_id=cap, binding_name=bn,
                                      vendor_id=draw(st.sampled_from(VENDORS)),
                                      instance_id=f"{hid}-p{j}", annotations=draw(annotations_st),
                                      started_at=draw(when_st))
                     for j, (cap, bn) in enumerate(pkeys)]
        bkeys = draw(st.lists(st.tuples(st.sampled_from(ACTORS), st.sampled_from(CAPS),
                                        st.sampled_from(BINDING_NAMES)), max_size=3, unique=True))
        bindings = [BindingInstance(actor_id=a, capability_id=cap, binding_name=bn,
                                    vendor_id=draw(st.none() | st.sampled_from(VENDORS)),
                                    values=draw(st.sampled_from(VALUES)),
                                    annotations=draw(annotations_st))
                    for a, cap, bn in bkeys]
        hosts.append(host(hid, draw(labels_st), actors=actors, providers=providers,
                          bindings=bindings))
    return lattice(*hosts)


STEP_KINDS = ("apply", "echo", "relabel", "stop_actor", "stop_provider", "put_binding",
              "host_left", "desired", "same_desired", "reset")


@dataclass(frozen=True)
class Step:
    """One thing that happens to the observed lattice (or the desired state) between two
    plans: ``kind`` is one of :data:`STEP_KINDS`, ``pick`` chooses the host or entity
    (modulo how many there are), ``value`` a label or binding value."""

    kind: str
    pick: int
    value: int


steps_st = st.lists(st.builds(Step, kind=st.sampled_from(STEP_KINDS),
                              pick=st.integers(0, 20), value=st.integers(0, 3)),
                    min_size=1, max_size=8)


# ---------------------------------------------------------------- the simulated lattice

@dataclass
class Applied:
    """The lattice after a plan, and what could not be placed."""

    observed: dict[str, HostInventory]
    unplaced: set[str] = field(default_factory=set)
    started_providers: set[tuple[str, str, str]] = field(default_factory=set)


@dataclass
class _Host:
    inv: HostInventory
    actors: list[ActorInstance]
    providers: list[ProviderInstance]
    bindings: list[BindingInstance]


def apply_plan(plan: list[A.Action], observed: Mapping[str, HostInventory]) -> Applied:
    """Run ``plan`` (already sorted by phase) against a model of ``observed``."""
    hosts = {hid: _Host(inv, list(inv.actors), list(inv.providers), list(inv.bindings))
             for hid, inv in sorted(observed.items())}
    times = [x.started_at for h in hosts.values() for x in h.actors]
    times += [x.started_at for h in hosts.values() for x in h.providers]
    clock = max(times, default=T0)
    eligible: dict[tuple[str, ...], list[str]] = {}
    out = Applied({})
    serial = 0
    siblings: dict[tuple[str, str], set[str]] = {}

    def candidates(constraints: tuple[str, ...]) -> list[str]:
        if constraints not in eligible:
            sels = selectors.parse_all(constraints)
            eligible[constraints] = [hid for hid, h in hosts.items()
                                     if selectors.satisfied(sels, h.inv.labels)]
        return eligible[constraints]

    for act in plan:
        serial += 1
        clock += timedelta(seconds=1)
        match act:
            case A.StartActor():
                hids = [h for h in candidates(act.constraints) if h not in act.exclude_hosts
                        and act.host_id in (None, h)]
                if not hids:
                    out.unplaced.add(act.key)
                    continue
                # as the executor's deal: hosts of siblings placed in this plan last too
                avoid = siblings.setdefault((act.deployment, act.actor_id), set())
                avoid.update(act.avoid_hosts)
                best = min(hids, key=lambda h: (h in avoid, len(hosts[h].actors), h))
                avoid.add(best)
                hosts[best].actors.append(ActorInstance(
                    actor_id=act.actor_id, instance_id=f"sim-a{serial}",
                    annotations=dict(act.annotations), started_at=clock))
            case A.StartProvider():
                hids = [h for h in candidates(act.constraints) if act.host_id in (None, h)
                        and not any((p.capability_id, p.binding_name)
                                    == (act.capability_id, act.binding_name)
                                    for p in hosts[h].providers)]
                if not hids:
                    out.unplaced.add(act.key)
                    continue
                best = min(hids, key=lambda h: (len(hosts[h].providers), h))
                hosts[best].providers.append(ProviderInstance(
                    capability_id=act.capability_id, binding_name=act.binding_name,
                    vendor_id=act.vendor_id, instance_id=f"sim-p{serial}",
                    annotations=dict(act.annotations), started_at=clock))
                out.started_providers.add((best, act.capability_id, act.binding_name))
            case A.PutBinding():
                h = hosts[act.host_id]
                h.bindings = [b for b in h.bindings if not _same_binding(b, act)]
                h.bindings.append(BindingInstance(
                    actor_id=act.actor_id, capability_id=act.capability_id,
                    binding_name=act.binding_name, vendor_id=act.vendor_id,
                    values=dict(act.values), annotations=dict(act.annotations)))
            case A.StopActor():
                h = hosts[act.host_id]
                h.actors = [a for a in h.actors if a.instance_id != act.instance_id]
            case A.StopProvider():
                h = hosts[act.host_id]
                gone = (act.capability_id, act.binding_name)
                h.providers = [p for p in h.providers
                               if (p.capability_id, p.binding_name) != gone]
                h.bindings = [b for b in h.bindings
                              if (b.capability_id, b.binding_name) != gone]
            case A.DeleteBinding():
                h = hosts[act.host_id]
                h.bindings = [b for b in h.bindings if not _same_binding(b, act)]
    out.observed = {hid: h.inv.model_copy(update={
        "actors": h.actors, "providers": h.providers, "bindings": h.bindings})
        for hid, h in hosts.items()}
    return out


def _same_binding(b: BindingInstance, act: A.PutBinding | A.DeleteBinding) -> bool:
    return (b.actor_id, b.capability_id, b.binding_name) == (
        act.actor_id, act.capability_id, act.binding_name)
