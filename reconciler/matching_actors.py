"""Matching actor replicas: which running instance serves which desired replica.

Pure. :func:`match_actors` is called by :class:`reconciler.matching.Matcher`; the rules
are in that module's docstring. The per-host indexes it reads come from an
:class:`ActorIndexes` that the matcher owns and passes in: nothing is kept at module level,
so the answer depends on the arguments alone, and a kept :class:`ActorIndexes` only saves
the indexing of hosts whose inventory object it has seen before.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from lattice.manifests import DesiredState
from lattice.protocol import (
    ANN_KIND,
    ANN_LIMITS,
    ANN_MANAGED_BY,
    ANN_NAME,
    ANN_REPLICA,
    MANAGED_BY_VALUE,
    ActorInstance,
    HostInventory,
)
from reconciler.memo import LastCall, PerObject
from reconciler.placement import count_per_host, find_moves, layout, over_limit
from reconciler.rulesets import (
    KIND_DEPLOYMENT,
    REPLICA_LABELS,
    ActorSlots,
    Layout,
    Move,
    RuleSet,
    RuleSets,
    SurplusActor,
)

# Hot path: a converged lattice of 10,000 replicas must plan in a few milliseconds. The
# index maps (name, actor id, replica) to the instance itself and keeps its host id in a
# dict by id(): the only objects allocated per instance are tuples of strings, which the
# garbage collector stops tracking at once.


_ActorKey = tuple[str | None, str, str | None]


class _HostActors(NamedTuple):
    """One host's owned actors, indexed: what :func:`match_actors` needs of a host."""

    host: HostInventory
    by_key: dict[_ActorKey, ActorInstance]
    host_of: dict[int, str]
    dupes: list[tuple[_ActorKey, ActorInstance]]
    strays: list[ActorInstance]  # owned, but not by a deployment
    limited: bool  # some instance carries a limits annotation
    packed: frozenset[tuple[str | None, str]]  # (name, actor) with 2+ instances here


_NO_PACKED: frozenset[tuple[str | None, str]] = frozenset()


def _index_host(host: HostInventory) -> _HostActors:
    """The index of one host's owned actors. Pure."""
    if not host.actors:  # a host that runs none (a lattice being filled): nothing to build
        return _HostActors(host, {}, {}, [], [], False, _NO_PACKED)
    hid = host.host_id
    index: dict[_ActorKey, ActorInstance] = {}
    host_of: dict[int, str] = {}
    dupes: list[tuple[_ActorKey, ActorInstance]] = []
    strays: list[ActorInstance] = []
    limited = False
    seen: set[tuple[str | None, str]] = set()
    packed: set[tuple[str | None, str]] = set()
    for inst in host.actors:
        ann = inst.annotations
        if ann.get(ANN_MANAGED_BY) != MANAGED_BY_VALUE:
            continue
        limited = limited or ANN_LIMITS in ann
        if ann.get(ANN_KIND) != KIND_DEPLOYMENT:
            strays.append(inst)
            continue
        host_of[id(inst)] = hid
        key = (ann.get(ANN_NAME), inst.actor_id, ann.get(ANN_REPLICA))
        if index.setdefault(key, inst) is not inst:
            dupes.append((key, inst))
        owner = key[:2]
        if owner in seen:
            packed.add(owner)
        seen.add(owner)
    return _HostActors(host, index, host_of, dupes, strays, limited, frozenset(packed))


class _Merged(NamedTuple):
    """The per-host indexes merged into one."""

    by_key: dict[_ActorKey, ActorInstance]
    host_of: dict[int, str]
    expected: int
    packed: set[tuple[str | None, str]]  # (name, actor) with 2+ instances on some host


def _merge(per_host: Sequence[_HostActors]) -> _Merged:
    """Every host's index in one (C-speed updates; a key on two hosts shows as a short
    count). Pure."""
    index: dict[_ActorKey, ActorInstance] = {}
    host_of: dict[int, str] = {}
    expected = 0
    packed: set[tuple[str | None, str]] = set()
    for ha in per_host:
        index.update(ha.by_key)
        host_of.update(ha.host_of)
        expected += len(ha.by_key)
        if ha.packed:
            packed |= ha.packed
    return _Merged(index, host_of, expected, packed)


class ActorIndexes:
    """Every host's owned actors, indexed, and the merge of those indexes, memoised by
    inventory object (:mod:`reconciler.memo`): a converged lattice re-plans without
    touching its instances or merging 10,000 entries again. Owned by one
    :class:`reconciler.matching.Matcher`; inventories are frozen and a host that changes
    is a new object (:class:`reconciler.observed.ObservedState`), so a hit returns what a
    build would."""

    __slots__ = ("_merged", "_per_host")

    def __init__(self) -> None:
        self._per_host: PerObject[HostInventory, _HostActors] = PerObject(_index_host)
        self._merged: LastCall[_HostActors, _Merged] = LastCall(_merge)

    def of(self, hosts: Iterable[HostInventory]) -> tuple[list[_HostActors], _Merged]:
        """Each host's index (in the order given) and their merge."""
        per_host = self._per_host.sweep(list(hosts))
        return per_host, self._merged(per_host)


def match_actors(
    desired: DesiredState, hosts: dict[str, HostInventory], rulesets: RuleSets,
    indexes: ActorIndexes,
) -> tuple[list[ActorSlots], list[SurplusActor], dict[int, str], tuple[int, ...]]:
    """Which owned instance serves each desired replica, the owned instances that serve
    none (with why), where each owned instance runs, and the positions of the slots that
    were asked for rebalancing moves (the only slots whose answer depends on hosts that
    run none of their instances, daemons aside). Pure: ``indexes`` only saves work, never
    changes the answer."""
    dupes: dict[_ActorKey, list[ActorInstance]] = {}
    surplus: list[SurplusActor] = []
    per_host, merged = indexes.of(hosts.values())
    index = dict(merged.by_key)  # a copy: matching pops what it finds
    host_of, expected = merged.host_of, merged.expected  # read only from here on
    for ha in per_host:
        if ha.strays:
            surplus.extend((ha.host, inst, "not part of any deployment") for inst in ha.strays)
    if len(index) != expected or any(ha.dupes for ha in per_host):
        index.clear()  # a replica claimed more than once: index again, keeping them all
        for ha in per_host:
            for key, inst in (*ha.by_key.items(), *ha.dupes):
                prev = index.setdefault(key, inst)
                if prev is not inst:
                    dupes.setdefault(key, [prev]).append(inst)
    limited = any(ha.limited for ha in per_host)
    slots, rebalancing = match_deployments(
        desired, sorted(desired.deployments), Found(index, dupes, host_of, merged.packed),
        hosts, rulesets, surplus, limited=limited)
    return slots, no_moves_while_stopping(slots, surplus), host_of, rebalancing


class Found(NamedTuple):
    """Owned instances to match, by key (``by_key``; ``dupes``: every instance of a key
    claimed more than once), where each runs, and the (name, actor) pairs with two or
    more instances on one host."""

    by_key: dict[_ActorKey, ActorInstance]
    dupes: dict[_ActorKey, list[ActorInstance]]
    host_of: dict[int, str]
    packed: set[tuple[str | None, str]] | frozenset[tuple[str | None, str]]


def no_moves_while_stopping(slots: list[ActorSlots], surplus: list[SurplusActor]
                            ) -> list[SurplusActor]:
    """Drop, in place, the moves of the slots with an instance stopping (no move while
    instances are stopping); returns ``surplus``."""
    if surplus and any(s.moves for s in slots):
        busy = busy_actors(surplus)
        for r, s in enumerate(slots):
            if s.moves and (s.deployment, s.actor_id) in busy:
                slots[r] = s._replace(moves=())
    return surplus


def match_deployments(
    desired: DesiredState, names: Iterable[str], found: Found,
    hosts: dict[str, HostInventory], rulesets: RuleSets, surplus: list[SurplusActor], *,
    limited: bool,
) -> tuple[list[ActorSlots], tuple[int, ...]]:
    """The slots of the deployments ``names`` (in that order), matched against the
    instances of ``found`` (its ``by_key`` and ``dupes`` are consumed); what serves none is added
    to ``surplus``, and what is left in the index afterwards too (instances of no
    desired replica). ``limited``: some instance may carry a limits annotation (False
    only saves the check). Returns the slots and the positions among them of those
    asked for rebalancing moves (moves not yet filtered by stopping instances)."""
    index, dupes, host_of, packed = found
    slots: list[ActorSlots] = []
    rebalancing: list[int] = []
    pop = index.pop
    labels = REPLICA_LABELS
    for name in names:
        dep_spec = desired.deployments[name].spec
        for spec in dep_spec.actors:
            rs = rulesets.get(spec.affinity_rules)
            aid = spec.id
            want = spec.limits_annotation
            lay = layout(spec, rs, rulesets, hosts) if spec.spread or spec.daemon else None
            lbls = lay.labels if lay is not None else labels[:spec.replicas]
            insts: list[ActorInstance | None]
            if index:
                insts = [pop((name, aid, lbl), None) for lbl in lbls]
            elif not dupes:  # every running instance matched already: none of these runs
                slots.append(ActorSlots(name, aid, rs, [None] * len(lbls), want, lay,
                                        spec.max_per_host))
                continue
            else:
                insts = [None] * len(lbls)
            if dupes:
                claimed = {r: dupes.pop((name, aid, lbl)) for r, lbl in enumerate(lbls)
                           if (name, aid, lbl) in dupes}
                if claimed:  # every instance of this actor counted once, per host
                    load = count_per_host([i for r, i in enumerate(insts)
                                           if r not in claimed], host_of)
                    load.update(host_of[id(i)] for them in claimed.values() for i in them)
                    for r, them in claimed.items():
                        insts[r] = _keep_one(them, hosts, host_of,
                                             lay.rules[r] if lay is not None else rs, r,
                                             surplus, want, load)
            if lay is not None:
                _check_layout(insts, lay, hosts, host_of, surplus)
            elif rs.rules:
                verdicts = rs.verdicts
                for r, there in enumerate(insts):
                    if there is None:
                        continue
                    hid = host_of[id(there)]
                    ok = verdicts.get(hid)
                    if ok is None:
                        ok = rs.allows(hosts[hid])
                    if not ok:
                        surplus.append((hosts[hid], there,
                                        f"host {hosts[hid].name} no longer satisfies {rs}"))
                        insts[r] = None
            if limited or want is not None:
                _check_limits(insts, want, hosts, host_of, surplus)
            limit = spec.max_per_host
            if limit is not None:
                for r in over_limit(insts, host_of, limit):
                    there = insts[r]
                    assert there is not None
                    host = hosts[host_of[id(there)]]
                    surplus.append((host, there, f"more than max_per_host {limit} of it "
                                                 f"run on host {host.name}"))
                    insts[r] = None
            moves: tuple[Move, ...] = ()
            if ((name, aid) in packed  # some host runs two of it: can it spread out?
                    and dep_spec.rebalance and not (lay and lay.daemon)):
                moves = find_moves(insts, lay, rs, host_of, hosts, limit)
                rebalancing.append(len(slots))
            slots.append(ActorSlots(name, aid, rs, insts, want, lay, limit, moves))
    for key, inst in index.items():
        for each in dupes.get(key, [inst]):
            why = _why_actor_unwanted(desired, *key)
            surplus.append((hosts[host_of[id(each)]], each, why))
    return slots, tuple(rebalancing)


def busy_actors(surplus: Iterable[SurplusActor]) -> set[tuple[str | None, str]]:
    """The (deployment, actor) pairs with an instance stopping: they do not move. Pure."""
    return {(inst.annotations.get(ANN_NAME), inst.actor_id) for _h, inst, _w in surplus}


def _check_layout(insts: list[ActorInstance | None], lay: Layout,
                  hosts: dict[str, HostInventory], host_of: dict[int, str],
                  surplus: list[SurplusActor]) -> None:
    """An instance on a host its share (or daemon host) no longer allows is surplus."""
    for r, there in enumerate(insts):
        if there is None:
            continue
        hid = host_of[id(there)]
        host = hosts[hid]
        if lay.daemon and hid != lay.hosts[r]:
            surplus.append((host, there, f"the daemon instance for host {lay.hosts[r]} "
                                         f"runs on host {host.name}"))
            insts[r] = None
        elif not lay.rules[r].allows(host):
            share = next((s.name for s in lay.shares if s.first <= r < s.first + s.target),
                         "")
            what = f"spread {share} ({lay.rules[r]})" if share else str(lay.rules[r])
            surplus.append((host, there, f"host {host.name} no longer satisfies {what}"))
            insts[r] = None


def _check_limits(insts: list[ActorInstance | None], want: str | None,
                  hosts: dict[str, HostInventory], host_of: dict[int, str],
                  surplus: list[SurplusActor]) -> None:
    """An instance running under other limits than the spec's is surplus, and its replica
    is started again with the new ones (make-before-break, as any replacement)."""
    for r, there in enumerate(insts):
        if there is None:
            continue
        have = there.annotations.get(ANN_LIMITS)
        if have != want:
            was, now = have or "the host's defaults", want or "the host's defaults"
            surplus.append((hosts[host_of[id(there)]], there,
                            f"limits changed from {was} to {now}"))
            insts[r] = None


def _keep_one(
    found: list[ActorInstance], hosts: dict[str, HostInventory], host_of: dict[int, str],
    rs: RuleSet, r: int, surplus: list[SurplusActor], want: str | None,
    load: Counter[str],
) -> ActorInstance:
    """Several owned instances claim replica ``r``: keep, in this order of preference,
    one on a host that satisfies the rules, one running under the wanted limits (a
    replacement for new limits wins over the old instance), the one on the host running
    the fewest instances of this actor (``load``: a rebalancing move's new instance wins
    over the packed one it replaces), the earliest started, then by host id; the rest
    become surplus.
    (Instances on ineligible hosts and under other limits are dealt with by the caller's
    checks.)"""
    keep = min(found, key=lambda i: (not rs.allows(hosts[host_of[id(i)]]),
                                     i.annotations.get(ANN_LIMITS) != want,
                                     load[host_of[id(i)]], i.started_at,
                                     host_of[id(i)], i.instance_id))
    for inst in found:
        if inst is not keep:
            host = hosts[host_of[id(inst)]]
            why = (f"duplicate of replica {r}, which runs on host "
                   f"{hosts[host_of[id(keep)]].name} as {keep.instance_id}")
            if not rs.allows(host):
                why = f"host {host.name} no longer satisfies {rs}"
            surplus.append((host, inst, why))
    return keep


def _why_actor_unwanted(
    desired: DesiredState, name: str | None, aid: str, replica: str | None
) -> str:
    dep = desired.deployments.get(name) if name is not None else None
    if dep is None:
        return f"deployment {name} is no longer desired"
    spec = next((a for a in dep.spec.actors if a.id == aid), None)
    if spec is None:
        return f"the actor is no longer part of deployment {name}"
    if spec.daemon:
        return (f"host {replica} no longer satisfies the daemon's rules "
                f"({', '.join(spec.affinity_rules) or 'none'})")
    if spec.spread:
        return (f"replica {replica} is not among the {spec.replicas} deployment {name} "
                f"spreads as {', '.join(s.name for s in spec.spread)}")
    return f"replica {replica} is not among the {spec.replicas} deployment {name} wants"
