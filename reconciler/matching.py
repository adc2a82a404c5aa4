"""Matching: the one place that decides which running instance satisfies which desire.

Pure, no I/O. :meth:`Matcher.analyse` indexes an observed lattice and says, for every
desired actor replica, provider group and binding, which running instance serves it (or
that none does), and which owned instances serve nothing (with the reason). Two consumers
read the result: :func:`reconciler.planner.plan` turns it into actions and
:func:`reconciler.assess.assess` into ready counts and placements, so status can never
disagree with what the planner would do.

A :class:`Matcher` keeps what it built (each host's indexes, their merge, the last
analysis) by the identity of the inventory objects it was built from, and nothing is kept
at module level. Its owner (the agent) keeps one for its life and passes it to the
planner and the assessment, so a quiet lattice is not matched again; anyone else gets a
fresh one, and the answer is the same either way: a function of the arguments alone.

The rules, in short (docs/architecture.md has the long form):

* **Actors.** Replica ``r`` of actor ``a`` in deployment ``d`` is served by an owned
  instance annotated kind=Deployment, name=d, replica=r, on a host whose labels satisfy the
  actor's affinity rules. The revision annotation is ignored: a new revision of the same
  replica is the same replica. Among several, the one on the host running fewest of the
  actor (a rebalancing move's new instance), then the earliest started, then host id.
  With ``spread`` replicas are named after their share (``east-0``), a daemon's after its
  host (:mod:`reconciler.placement`).
* **Providers** are shared. Every deployment that needs a (capability, binding name,
  vendor) under the same rule set forms one *group*; a group is served by any running
  instance (owned or not) of that provider on a host satisfying the rules. Preference:
  an instance started for one of the group's deployments (its name annotation lists them),
  then owned over unowned, then the oldest, then host id. This order is stable: an
  instance started later for another group never displaces a group's owned choice (it
  may take over from an unowned one, which is never stopped anyway), so a plan applied
  and planned again does not reshuffle or stop providers.
* **Bindings** belong on every host that runs (and keeps running) a provider of their
  capability and binding name (and vendor, when the spec names one). When two binding sets
  claim the same (actor, capability, binding name), the first by name owns it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from typing import NamedTuple, cast

from lattice.manifests import BindingSpec, DesiredState, ProviderKey
from lattice.protocol import (
    ANN_MANAGED_BY,
    ANN_NAME,
    MANAGED_BY_VALUE,
    ActorInstance,
    BindingInstance,
    HostInventory,
    ProviderInstance,
)
from reconciler.matching_actors import ActorIndexes, busy_actors, match_actors
from reconciler.memo import LastCall, PerObject, same_objects
from reconciler.placement import DaemonGroup, find_moves, match_daemons
from reconciler.rulesets import (
    KIND_BINDINGSET,
    KIND_DEPLOYMENT,
    OWNER_SEPARATOR,
    REPLICA_LABELS,
    ActorSlots,
    Move,
    Placed,
    Rules,
    RuleSet,
    RuleSets,
    Served,
    SurplusActor,
    SurplusBinding,
    SurplusProvider,
    binding_entity,
    canonical_rules,
    provider_entity,
)

__all__ = [
    "KIND_BINDINGSET", "KIND_DEPLOYMENT", "OWNER_SEPARATOR", "REPLICA_LABELS", "ActorSlots",
    "Analysis", "BindingMatch", "DaemonGroup", "Matcher", "Move", "Placed", "ProviderGroup",
    "RuleSet", "StaleBinding",
    "analyse", "binding_entity", "canonical_rules", "provider_entity",
]

_Rank = tuple[bool, bool, datetime, str, str]


class ProviderGroup(NamedTuple):
    """The deployments (``owners``) needing one provider under one rule set."""

    key: ProviderKey
    rules: RuleSet
    owners: tuple[str, ...]
    chosen: Served | None


class StaleBinding(NamedTuple):
    """A host that runs the binding's provider but lacks the binding as git has it."""

    host: HostInventory
    observed: BindingInstance | None


class BindingMatch(NamedTuple):
    """One binding spec of one binding set: the ``hosts`` (by id) running its provider,
    and those of them whose binding is missing or differs (``stale``)."""

    bindingset: str
    spec: BindingSpec
    owner: str
    hosts: list[HostInventory]
    stale: list[StaleBinding]

    @property
    def wins(self) -> bool:
        """True unless an earlier binding set (by name) claims the same binding."""
        return self.owner == self.bindingset

    @property
    def ready(self) -> bool:
        """Present as git has it on every host running its provider, and there is one."""
        return bool(self.hosts) and not self.stale


@dataclass(frozen=True, slots=True)
class Analysis:
    """Everything the planner and the assessment need, computed once."""

    actors: list[ActorSlots]
    surplus_actors: list[SurplusActor]
    providers: list[ProviderGroup]
    group_of: dict[tuple[str, ProviderKey], ProviderGroup]
    surplus_providers: list[SurplusProvider]
    bindings: list[BindingMatch]
    surplus_bindings: list[SurplusBinding]
    actor_hosts: dict[int, str]
    hosts: dict[str, HostInventory]
    #: daemon providers, and the group of each (owner, key) among them
    daemons: list[DaemonGroup] = field(default_factory=list)
    daemon_of: dict[tuple[str, ProviderKey], DaemonGroup] = field(default_factory=dict)
    #: the actor slots with rebalancing moves (few: the planner reads them apart)
    moving: list[ActorSlots] = field(default_factory=list)
    #: positions in ``actors`` of the slots asked for moves (a joining host may be a target)
    rebalancing: tuple[int, ...] = ()
    #: some actor spec is a daemon (its replicas follow the hosts)
    daemon_actors: bool = False

    def host_of(self, inst: ActorInstance) -> HostInventory:
        """The host running an owned actor instance found by this analysis."""
        return self.hosts[self.actor_hosts[id(inst)]]


class Matcher:
    """The matching of desired against observed, with what it builds kept for next time.

    Each host's indexes are kept while its inventory is the same object, their merge while
    every host's is, and the last analysis while the desired state and every inventory are
    the very same objects (the planner and the assessment of one pass can share it; a
    converged lattice is not matched again). Inventories are frozen and
    :class:`reconciler.observed.ObservedState` replaces a host's object whenever it says
    something new, so what is kept is what a build would give: a kept Matcher makes
    :meth:`analyse` faster, never different. Its owner keeps one (the agent, for its
    life); two Matchers share nothing.

    A host joining with nothing running (no provider, no owned actor or binding) changes
    nothing the last analysis found but the hosts and, perhaps, rebalancing moves: when the
    desired state is the same object, every other host's record too, and at most
    :data:`JOINING_SHARE` of the lattice joins, the last analysis is patched (the hosts,
    the moves asked again) instead of built again (:func:`_joined`; daemons: in full).
    """

    __slots__ = ("_build", "_last")

    def __init__(self) -> None:
        self._build = partial(_analyse, ActorIndexes(), LastCall(
            partial(_merge_bindings, PerObject(_index_bindings))))
        self._last: tuple[tuple[object, ...], Analysis] | None = None

    def analyse(self, desired: DesiredState, observed: Mapping[str, HostInventory]
                ) -> Analysis:
        """Match ``desired`` against ``observed``. Pure (the result depends on the
        arguments alone); consumed by the planner and assess, which only read it."""
        hosts = sorted(observed.values(), key=_host_id)
        key = (desired, *hosts)
        last = self._last
        found: Analysis | None = None
        if last is not None:
            if same_objects(last[0], key):
                return last[1]
            if last[0][0] is desired:  # a few inert hosts joined?
                found = _joined(last[1], hosts)
        if found is None:
            found = self._build(key)
        self._last = (key, found)
        return found


def analyse(desired: DesiredState, observed: Mapping[str, HostInventory]) -> Analysis:
    """Match ``desired`` against ``observed`` with a fresh :class:`Matcher`. Pure."""
    return Matcher().analyse(desired, observed)


def _host_id(host: HostInventory) -> str:
    return host.host_id


def _analyse(actor_indexes: ActorIndexes, lattice_bindings: _BindingsMemo,
             inputs: Sequence[object]) -> Analysis:
    """The analysis of ``inputs``, ``[desired, *hosts sorted by id]`` (the key of the
    matcher's memo), using (and filling) the matcher's indexes. Pure."""
    desired = cast(DesiredState, inputs[0])
    hosts = cast(list[HostInventory], list(inputs[1:]))
    rulesets = RuleSets()
    by_id = {h.host_id: h for h in hosts}
    actors, surplus_actors, actor_hosts, rebalancing = match_actors(
        desired, by_id, rulesets, actor_indexes)
    groups, group_of, surplus_providers, daemons = _match_providers(desired, hosts, rulesets)
    stopping = {(h.host_id, p.capability_id, p.binding_name) for h, p, _ in surplus_providers}
    bindings, surplus_bindings = _match_bindings(desired, hosts, stopping, lattice_bindings)
    daemon_of = {(owner, d.key): d for d in daemons for owner in d.owners}
    moving = [s for s in actors if s.moves]
    daemon_actors = any(s.layout is not None and s.layout.daemon for s in actors)
    return Analysis(actors, surplus_actors, groups, group_of, surplus_providers,
                    bindings, surplus_bindings, actor_hosts, by_id, daemons, daemon_of,
                    moving, rebalancing, daemon_actors)


# ---------------------------------------------------------------- hosts joining

#: at most this share of the lattice may join at once for the last analysis to be patched
JOINING_SHARE = 0.1


def _inert(host: HostInventory) -> bool:
    """A host that serves nothing and owns nothing the matching would find: no provider,
    no owned actor or binding (unowned actors and bindings off any provider are never
    matched, stopped or counted)."""
    return not host.providers and not any(
        a.annotations.get(ANN_MANAGED_BY) == MANAGED_BY_VALUE for a in host.actors
    ) and not any(b.annotations.get(ANN_MANAGED_BY) == MANAGED_BY_VALUE for b in host.bindings)


def _joined(last: Analysis, hosts: Sequence[HostInventory]) -> Analysis | None:
    """``last`` (the analysis of the same desired state) patched for ``hosts``, which are
    its hosts, the very same objects, plus a few inert ones that joined; None when that is
    not the case (the caller builds the analysis in full).

    An inert host changes no instance's match, no provider group's choice, no binding and
    nothing surplus; it adds a replica to a daemon (not patched: None) and may be the
    target of a rebalancing move, so only the slots that were asked for moves are asked
    again, over the new hosts. The result is the analysis a build would give."""
    if last.daemons or last.daemon_actors:
        return None
    before = last.hosts
    if len(hosts) <= len(before):
        return None
    joined = len(hosts) - len(before)
    if joined > max(1, int(len(before) * JOINING_SHARE)):
        return None
    seen = 0
    for host in hosts:
        was = before.get(host.host_id)
        if was is None:
            if not _inert(host):
                return None
        elif was is not host:
            return None
        else:
            seen += 1
    if seen != len(before):
        return None
    by_id = {h.host_id: h for h in hosts}
    actors, moving = last.actors, last.moving
    if last.rebalancing:
        actors = list(actors)
        busy = busy_actors(last.surplus_actors)
        for r in last.rebalancing:
            s = actors[r]
            if (s.deployment, s.actor_id) in busy:
                continue  # no move while instances are stopping
            moves = find_moves(s.instances, s.layout, s.rules, last.actor_hosts, by_id,
                               s.max_per_host)
            if moves != s.moves:
                actors[r] = s._replace(moves=moves)
        moving = [actors[r] for r in last.rebalancing if actors[r].moves]
    return replace(last, actors=actors, hosts=by_id, moving=moving)


# ---------------------------------------------------------------- providers

def _match_providers(
    desired: DesiredState, hosts: list[HostInventory], rulesets: RuleSets
) -> tuple[list[ProviderGroup], dict[tuple[str, ProviderKey], ProviderGroup],
           list[SurplusProvider], list[DaemonGroup]]:
    needs: dict[ProviderKey, dict[Rules, list[str]]] = {}
    daemon_needs: dict[ProviderKey, dict[Rules, list[str]]] = {}
    for name in sorted(desired.deployments):
        for spec in desired.deployments[name].spec.providers:
            rules = rulesets.get(spec.affinity_rules).rules
            into = daemon_needs if spec.daemon else needs
            into.setdefault(spec.key, {}).setdefault(rules, []).append(name)
    running: dict[tuple[str, str], list[Served]] = {}
    for host in hosts:
        for inst in host.providers:
            running.setdefault((inst.capability_id, inst.binding_name), []).append((host, inst))

    groups: list[ProviderGroup] = []
    group_of: dict[tuple[str, ProviderKey], ProviderGroup] = {}
    chosen: set[tuple[str, str]] = set()  # (host_id, instance_id)
    for key in sorted(needs):
        vendor = key.vendor_id
        cands = [s for s in running.get((key[0], key[1]), ()) if s[1].vendor_id == vendor]
        for rules in sorted(needs[key], key=lambda r: (len(r), r)):
            rs = rulesets.get(rules)
            owners = tuple(needs[key][rules])
            eligible = [s for s in cands if rs.allows(s[0])]
            pick = min(eligible, key=_provider_rank(owners)) if eligible else None
            if pick is not None:
                chosen.add((pick[0].host_id, pick[1].instance_id))
            group = ProviderGroup(key, rs, owners, pick)
            groups.append(group)
            for owner in owners:
                group_of[(owner, key)] = group
    daemons = match_daemons(daemon_needs, hosts, rulesets, chosen)
    for key, by_rules in daemon_needs.items():  # for the reasons of what is surplus
        for rules, names in by_rules.items():
            needs.setdefault(key, {}).setdefault(rules, []).extend(names)

    surplus: list[SurplusProvider] = []
    for served in running.values():
        for host, inst in served:
            ann = inst.annotations
            if (ann.get(ANN_MANAGED_BY) == MANAGED_BY_VALUE
                    and (host.host_id, inst.instance_id) not in chosen):
                why = _why_provider_unwanted(host, inst, needs, rulesets)
                surplus.append((host, inst, why))
    return groups, group_of, surplus, daemons


def _provider_rank(owners: tuple[str, ...]) -> Callable[[Served], _Rank]:
    """Sort key for the instances that could serve a group: best first (see module doc)."""
    wanted = set(owners)

    def rank(s: Served) -> _Rank:
        host, inst = s
        ann = inst.annotations
        managed = ann.get(ANN_MANAGED_BY) == MANAGED_BY_VALUE
        mine = managed and not wanted.isdisjoint(ann.get(ANN_NAME, "").split(OWNER_SEPARATOR))
        return (not mine, not managed, inst.started_at, host.host_id, inst.instance_id)

    return rank


def _why_provider_unwanted(
    host: HostInventory, inst: ProviderInstance,
    needs: dict[ProviderKey, dict[Rules, list[str]]], rulesets: RuleSets,
) -> str:
    cap, bn, vendor = inst.capability_id, inst.binding_name, inst.vendor_id
    what = provider_entity(cap, bn)
    vendors = sorted(k.vendor_id for k in needs if (k[0], k[1]) == (cap, bn))
    if not vendors:
        return f"no deployment needs {what} any more"
    if vendor not in vendors:
        return f"deployments want {what} from vendor {', '.join(vendors)}, not {vendor}"
    groups = needs[ProviderKey(cap, bn, vendor)]
    if not any(rulesets.get(rules).allows(host) for rules in groups):
        return f"host {host.name} no longer satisfies the affinity rules of {what}"
    return f"another instance of {what} serves the deployments that need it"


# ---------------------------------------------------------------- bindings

class _HostBindings(NamedTuple):
    """One host's bindings, indexed."""

    bound: dict[tuple[str, str, str, str], BindingInstance]
    managed: int  # how many of them the agent owns


def _index_bindings(host: HostInventory) -> _HostBindings:
    """One host's bindings by (host, actor, capability, binding name). Pure."""
    hid = host.host_id
    bound = {(hid, b.actor_id, b.capability_id, b.binding_name): b for b in host.bindings}
    managed = sum(1 for b in host.bindings
                  if b.annotations.get(ANN_MANAGED_BY) == MANAGED_BY_VALUE)
    return _HostBindings(bound, managed)


class _LatticeBindings(NamedTuple):
    """What every host serves and has bound, merged."""

    serving: dict[tuple[str, str], list[tuple[HostInventory, str]]]  # (cap, name) -> hosts
    bound: dict[tuple[str, str, str, str], BindingInstance]
    managed: int


def _merge_bindings(per_host: PerObject[HostInventory, _HostBindings],
                    hosts: Sequence[HostInventory]) -> _LatticeBindings:
    """The merge of every host's providers and bindings (``per_host`` indexes one host's
    bindings: the matcher's memo of :func:`_index_bindings`). Pure; read only by callers."""
    serving: dict[tuple[str, str], list[tuple[HostInventory, str]]] = {}  # hosts by id
    bound: dict[tuple[str, str, str, str], BindingInstance] = {}
    managed = 0
    for host, hb in zip(hosts, per_host.sweep(hosts), strict=True):
        for p in host.providers:
            serving.setdefault((p.capability_id, p.binding_name), []).append(
                (host, p.vendor_id))
        bound.update(hb.bound)  # keys carry the host id: no collisions
        managed += hb.managed
    return _LatticeBindings(serving, bound, managed)


#: the merge, reused by a matcher while the hosts are the same objects (a converged lattice)
_BindingsMemo = LastCall[HostInventory, _LatticeBindings]


def _match_bindings(
    desired: DesiredState, hosts: list[HostInventory], stopping: set[tuple[str, str, str]],
    lattice_bindings: _BindingsMemo,
) -> tuple[list[BindingMatch], list[SurplusBinding]]:
    lattice = lattice_bindings(hosts)
    serving, bound, managed_total = lattice.serving, lattice.bound, lattice.managed
    if stopping:  # providers about to stop serve nobody (their bindings go with them)
        serving = {k: [(h, v) for h, v in on if (h.host_id, *k) not in stopping]
                   for k, on in serving.items()}

    claimed: dict[tuple[str, str, str], str] = {}
    wanted: set[int] = set()  # id() of observed bindings a winning spec wants where they are
    wanted_managed = 0
    matches: list[BindingMatch] = []
    for name in sorted(desired.bindingsets):
        for spec in desired.bindingsets[name].spec.bindings:
            cap, bn, vendor, actor = spec.capability_id, spec.binding, spec.vendor_id, spec.actor
            owner = claimed.setdefault((actor, cap, bn), name)
            on: list[HostInventory] = []
            stale: list[StaleBinding] = []
            for host, running_vendor in serving.get((cap, bn), ()):
                if vendor is not None and running_vendor != vendor:
                    continue
                on.append(host)
                obs = bound.get((host.host_id, actor, cap, bn))
                if obs is None:
                    stale.append(StaleBinding(host, obs))
                    continue
                if owner == name and id(obs) not in wanted:
                    wanted.add(id(obs))
                    wanted_managed += obs.annotations.get(ANN_MANAGED_BY) == MANAGED_BY_VALUE
                if obs.values != spec.values or (vendor is not None and obs.vendor_id != vendor):
                    stale.append(StaleBinding(host, obs))
            matches.append(BindingMatch(name, spec, owner, on, stale))

    surplus: list[SurplusBinding] = []
    if not stopping and wanted_managed == managed_total:
        return matches, surplus  # every owned binding is wanted where it is
    for host in hosts:
        hid = host.host_id
        for b in host.bindings:
            if (id(b) in wanted or b.annotations.get(ANN_MANAGED_BY) != MANAGED_BY_VALUE
                    or (hid, b.capability_id, b.binding_name) in stopping):  # goes with it
                continue
            if (b.actor_id, b.capability_id, b.binding_name) not in claimed:
                why = "no binding set declares it any more"
            else:
                why = f"no provider it may bind to keeps running on host {host.name}"
            surplus.append((host, b, why))
    return matches, surplus
