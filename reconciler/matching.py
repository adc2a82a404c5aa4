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
  and planned again does not reshuffle or stop providers. A provider with ``replicas``
  or ``spread`` wants that many instances, on distinct hosts, each share's on hosts
  satisfying its requirements, chosen in the same order
  (:mod:`reconciler.matching_providers`).
* **Bindings** belong on every host that runs (and keeps running) a provider of their
  capability and binding name (and vendor, when the spec names one). When two binding sets
  claim the same (actor, capability, binding name), the first by name owns it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import cast

from lattice.manifests import DesiredState, ProviderKey
from lattice.protocol import (
    ANN_MANAGED_BY,
    MANAGED_BY_VALUE,
    ActorInstance,
    HostInventory,
)
from reconciler.matching_actors import ActorIndexes, busy_actors, match_actors
from reconciler.matching_bindings import (
    BindingMatch,
    BindingsMemo,
    StaleBinding,
    index_bindings,
    match_bindings,
    merge_bindings,
    merged_after,
    rematch_bindings,
)
from reconciler.matching_delta import changed_hosts, rematch_actors
from reconciler.matching_providers import (
    ProviderGroup,
    ProviderShare,
    ProviderSpread,
    match_providers,
    provider_replica,
    rematch_providers,
)
from reconciler.memo import LastCall, PerObject, same_objects
from reconciler.placement import DaemonGroup, find_moves
from reconciler.rulesets import (
    KIND_BINDINGSET,
    KIND_DEPLOYMENT,
    OWNER_SEPARATOR,
    REPLICA_LABELS,
    ActorSlots,
    Move,
    Placed,
    RuleSet,
    RuleSets,
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
    "ProviderShare", "ProviderSpread", "RuleSet", "StaleBinding",
    "analyse", "binding_entity", "canonical_rules", "provider_entity", "provider_replica",
]


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
    #: the rule sets of this analysis (a patched analysis shares its predecessor's)
    rulesets: RuleSets = field(default_factory=RuleSets)
    #: providers with replicas, and the one of each (owner, key) among them
    provider_spreads: list[ProviderSpread] = field(default_factory=list)
    spread_of: dict[tuple[str, ProviderKey], ProviderSpread] = field(default_factory=dict)

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
    Likewise when as few hosts leave or change their record (labels, instances): only
    the deployments their old and new instances name are matched again, and the binding
    specs of what they serve (:func:`_rematched`, :mod:`reconciler.matching_delta`).
    """

    __slots__ = ("_bindings", "_build", "_kept", "_last")

    def __init__(self) -> None:
        self._bindings: BindingsMemo = LastCall(
            partial(merge_bindings, PerObject(index_bindings)))
        self._build = partial(_analyse, ActorIndexes(), self._bindings)
        self._last: tuple[tuple[object, ...], Analysis] | None = None
        self._kept: tuple[Analysis, object] | None = None

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
            if last[0][0] is desired:  # a few inert hosts joined? a few hosts changed?
                found = _joined(last[1], hosts)
                if found is None:
                    found = _rematched(last[1], desired, hosts, self._bindings)
        if found is None:
            found = self._build(key)
        self._last = (key, found)
        return found


    def kept_with(self, found: Analysis) -> object | None:
        """What a consumer derived from ``found`` and kept with :meth:`keep` (the
        planner: its actions), while ``found`` is the analysis it was kept with."""
        kept = self._kept
        return kept[1] if kept is not None and kept[0] is found else None

    def keep(self, found: Analysis, value: object) -> None:
        """Keep ``value``, a pure function of ``found``, for :meth:`kept_with`."""
        self._kept = (found, value)


def analyse(desired: DesiredState, observed: Mapping[str, HostInventory]) -> Analysis:
    """Match ``desired`` against ``observed`` with a fresh :class:`Matcher`. Pure."""
    return Matcher().analyse(desired, observed)


def _host_id(host: HostInventory) -> str:
    return host.host_id


def _stopping(surplus: list[SurplusProvider]) -> set[tuple[str, str, str]]:
    """(host, capability, binding name) of the providers about to stop."""
    return {(h.host_id, p.capability_id, p.binding_name) for h, p, _ in surplus}


def _analyse(actor_indexes: ActorIndexes, lattice_bindings: BindingsMemo,
             inputs: Sequence[object]) -> Analysis:
    """The analysis of ``inputs``, ``[desired, *hosts sorted by id]`` (the key of the
    matcher's memo), using (and filling) the matcher's indexes. Pure."""
    desired = cast(DesiredState, inputs[0])
    hosts = cast(list[HostInventory], list(inputs[1:]))
    rulesets = RuleSets()
    by_id = {h.host_id: h for h in hosts}
    actors, surplus_actors, actor_hosts, rebalancing = match_actors(
        desired, by_id, rulesets, actor_indexes)
    groups, group_of, surplus_providers, daemons, spreads = match_providers(
        desired, hosts, rulesets)
    bindings, surplus_bindings = match_bindings(desired, hosts, _stopping(surplus_providers),
                                                lattice_bindings)
    daemon_of = {(owner, d.key): d for d in daemons for owner in d.owners}
    moving = [s for s in actors if s.moves]
    daemon_actors = any(s.layout is not None and s.layout.daemon for s in actors)
    spread_of = {(owner, sp.key): sp for sp in spreads for owner in sp.owners}
    return Analysis(actors, surplus_actors, groups, group_of, surplus_providers,
                    bindings, surplus_bindings, actor_hosts, by_id, daemons, daemon_of,
                    moving, rebalancing, daemon_actors, rulesets, spreads, spread_of)


def _rematched(last: Analysis, desired: DesiredState, hosts: list[HostInventory],
               lattice_bindings: BindingsMemo) -> Analysis | None:
    """``last`` (the analysis of the same desired state) for ``hosts``, of which at most
    :data:`JOINING_SHARE` joined, left or changed their record: the actor slots of the
    deployments those hosts touch matched again (:func:`rematch_actors`), providers and
    bindings matched in full over the kept indexes; None when more changed, or daemons
    follow the hosts (the caller builds in full). The answer is a build's."""
    if last.daemons or last.daemon_actors or last.provider_spreads:
        return None
    by_id = {h.host_id: h for h in hosts}
    changed = changed_hosts(last.hosts, by_id)
    if not changed or len(changed) > max(1, int(len(last.hosts) * JOINING_SHARE)):
        return None
    rulesets = last.rulesets
    rulesets.forget(changed)
    actors, surplus_actors, actor_hosts, rebalancing = rematch_actors(
        desired, (last.actors, last.surplus_actors, last.actor_hosts, last.rebalancing),
        last.hosts, by_id, changed, rulesets)
    lattice = merged_after(lattice_bindings, last.hosts, hosts, by_id, changed)
    groups, group_of, surplus_providers = rematch_providers(
        (last.providers, last.group_of, last.surplus_providers), last.hosts, by_id, changed,
        lattice.serving, rulesets)
    bindings, surplus_bindings = rematch_bindings(
        (last.bindings, last.surplus_bindings, _stopping(last.surplus_providers)),
        last.hosts, hosts, by_id, changed, _stopping(surplus_providers), lattice)
    return Analysis(actors, surplus_actors, groups, group_of, surplus_providers,
                    bindings, surplus_bindings, actor_hosts, by_id, [], {},
                    [s for s in actors if s.moves], rebalancing, False, rulesets)


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
    last.rulesets.forget({h for h in by_id if h not in before})
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
