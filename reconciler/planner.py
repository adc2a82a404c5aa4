"""The planner: what to do to make the lattice look like git says.

Pure and synchronous: no I/O, no clock, no NATS handle in scope (wadm's "reconcile returns
data, not actions"). :func:`plan` takes the desired state of one commit and a snapshot of
the observed lattice and returns the actions (:mod:`reconciler.actions`) that close the
gap, each with its reason, sorted by phase then key so the same inputs always give the
same list. The agent loop (:mod:`reconciler.agent`) calls it on every reconcile and hands
the result to the executor, which runs the phases in order: starts, then binding puts,
then stops (make-before-break). A kept matcher that answers with the very analysis of the
last call (a quiet lattice) also hands back the actions planned from it. What satisfies
what is decided in :mod:`reconciler.matching`, shared with the status assessment: the
agent passes the :class:`~reconciler.matching.Matcher` it keeps, so a quiet lattice is not
matched again; without one a fresh matcher is used, and the actions are the same either
way.

Ownership: only what carries the agent's annotations is ever stopped or deleted; anything
started by hand is left alone (:func:`unmanaged` lists it for status) and may still serve a
need (an unowned provider counts). Planning is idempotent by construction: a start names no
host (the executor auctions it; only a daemon's instance and a rebalancing move name theirs,
:class:`~reconciler.actions.Placing`) and a replica is identified by its annotations, so
planning again before the lattice reports back asks for the same work under the same keys.
Spread shares, daemons, ``max_per_host`` and moves are decided while matching
(:mod:`reconciler.placement`); the planner turns them into starts and stops.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from lattice.manifests import DesiredState
from lattice.protocol import (
    ANN_KIND,
    ANN_LIMITS,
    ANN_MANAGED_BY,
    ANN_NAME,
    ANN_REPLICA,
    ANN_REVISION,
    MANAGED_BY_VALUE,
    HostInventory,
    is_managed,
)
from lattice.status import UnmanagedEntity
from reconciler.actions import (
    Action,
    DeleteBinding,
    Placing,
    PutBinding,
    StartActor,
    StartProvider,
    StopActor,
    StopProvider,
    pairs,
)
from reconciler.matching import (
    KIND_BINDINGSET,
    KIND_DEPLOYMENT,
    OWNER_SEPARATOR,
    REPLICA_LABELS,
    ActorSlots,
    Analysis,
    Matcher,
    Move,
    binding_entity,
    provider_entity,
    provider_replica,
)

_KIND_DEPLOYMENT = (ANN_KIND, KIND_DEPLOYMENT)
_MANAGED = (ANN_MANAGED_BY, MANAGED_BY_VALUE)
_REPLICA_PAIRS = tuple((ANN_REPLICA, label) for label in REPLICA_LABELS)


def plan(desired: DesiredState, observed: Mapping[str, HostInventory], *,
         matcher: Matcher | None = None) -> list[Action]:
    """The actions that take ``observed`` to ``desired``, sorted by (phase, key). Pure:
    ``matcher`` (kept by the caller across calls) only saves work, and None means a fresh
    one; consumed by the agent loop, which hands the actions to the executor."""
    kept = matcher if matcher is not None else Matcher()
    found = kept.analyse(desired, observed)
    again = kept.kept_with(found)  # the same analysis as last time: the same actions
    if again is not None:
        return list(cast(tuple[Action, ...], again))
    out: list[Action] = []
    starts: list[Action] = []
    prefixes: list[str] = []  # per slot: the prefix of its keys, where its starts end
    ends: list[int] = []
    moves = _actors(found, desired.revision, starts, (prefixes, ends), out)
    _providers(found, desired.revision, out)
    _bindings(found, desired.revision, out)
    # Sorted by phase, then key; sorting on strings alone keeps the sort allocation-light.
    by_phase: list[list[Action]] = [[], [], []]
    for act in out:
        by_phase[act.phase].append(act)
    for acts in by_phase:
        acts.sort(key=_key)
    # The actor starts come by slot, each slot's in key order: the keys of one slot share
    # the prefix ``actor.start/<deployment>/<actor>/`` (names hold no '/': checked), so
    # ordering the slots by it orders them all, without a key per start (10,000 from
    # empty); usually they come in that order already. Moves (``actor.move/``) sort
    # before them, provider starts after.
    moves.sort(key=_key)
    if any(prefixes[i] > prefixes[i + 1] for i in range(len(prefixes) - 1)):
        order = sorted(range(len(prefixes)), key=prefixes.__getitem__)
        starts = [act for i in order for act in starts[ends[i - 1] if i else 0:ends[i]]]
    actions = [*moves, *starts, *by_phase[0], *by_phase[1], *by_phase[2]]
    if matcher is not None:  # kept by the caller: the next call may be a quiet lattice's
        matcher.keep(found, tuple(actions))
    return actions


def _key(action: Action) -> str:
    return action.key


def unmanaged(observed: Mapping[str, HostInventory]) -> list[UnmanagedEntity]:
    """Everything running that the agent did not start, sorted; shown in status, never
    stopped. Pure; consumed by the agent's status summary."""
    out: list[UnmanagedEntity] = []
    for host in observed.values():
        hid = host.host_id
        out.extend(UnmanagedEntity(kind="actor", entity=a.actor_id, host_id=hid)
                   for a in host.actors if not is_managed(a.annotations))
        out.extend(UnmanagedEntity(kind="provider", host_id=hid,
                                   entity=provider_entity(p.capability_id, p.binding_name))
                   for p in host.providers if not is_managed(p.annotations))
        out.extend(UnmanagedEntity(kind="binding", host_id=hid, entity=binding_entity(
                       b.actor_id, b.capability_id, b.binding_name))
                   for b in host.bindings if not is_managed(b.annotations))
    out.sort(key=lambda u: (u.host_id, u.kind, u.entity))
    return out


def owner_annotations(kind: str, name: str, revision: str) -> dict[str, str]:
    """The annotations that mark an entity as the agent's (kind, name, revision)."""
    return {ANN_MANAGED_BY: MANAGED_BY_VALUE, ANN_KIND: kind, ANN_NAME: name,
            ANN_REVISION: revision}


def _actors(found: Analysis, revision: str, starts: list[Action],
            slots_at: tuple[list[str], list[int]], out: list[Action]) -> list[Action]:
    """The actor starts into ``starts``, each slot's in key order; per slot, the prefix of
    its keys and where its starts end into ``slots_at`` (strings and ints: nothing for the
    collector to track); when a name holds a '/', into ``out``. Stops into ``out``; the
    moves returned."""
    prefixes, ends = slots_at
    rev = (ANN_REVISION, revision)
    moves: list[Action] = []
    for slots in found.moving:
        for move in slots.moves:
            _move(found, slots, move, rev, moves, out)
    for slots in found.actors:
        insts = slots.instances
        if all(insts):  # (not `None in insts`: that calls the models' __eq__)
            continue
        name, aid = slots.deployment, slots.actor_id
        lay = slots.layout
        load: dict[str, int] = {}
        for i in insts:
            if i is not None:
                hid = found.host_of(i).host_id
                load[hid] = load.get(hid, 0) + 1
        avoid = tuple(sorted(load))
        limit = slots.max_per_host
        full = () if limit is None else tuple(sorted(h for h, n in load.items() if n >= limit))
        excluding = Placing(exclude_hosts=full) if full else None
        named = (ANN_NAME, name)
        # sorted by key: kind < limits < managed-by < name < replica < revision
        head = (_KIND_DEPLOYMENT,) if slots.limits is None else (
            _KIND_DEPLOYMENT, (ANN_LIMITS, slots.limits))
        mine = out if "/" in name or "/" in aid else starts  # out: sorted with the rest
        begin = len(mine)
        if lay is None:
            _plain_starts(slots, head, named, rev, avoid, excluding, mine)
            if mine is starts:
                prefixes.append(f"{name}/{aid}/")
                ends.append(len(starts))
            continue
        for r, inst in enumerate(insts):
            if inst is not None:
                continue
            label = lay.labels[r]
            target = lay.hosts[r] if lay.daemon else None
            why = (f"deployment {name} runs it on every host satisfying {slots.rules}; "
                   f"host {found.hosts[label].name} has none" if target is not None else
                   f"replica {label} (spread {_share_of(slots, r)}) of deployment {name} "
                   f"is not running")
            mine.append(StartActor(
                deployment=name, actor_id=aid, replica=label,
                constraints=lay.rules[r].rules,
                annotations=(*head, _MANAGED, named, (ANN_REPLICA, label), rev),
                avoid_hosts=avoid, reason=why,
                placing=Placing(full, target) if full or target else None))
        if mine is starts:
            starts[begin:] = sorted(starts[begin:], key=_key)
            prefixes.append(f"{name}/{aid}/")
            ends.append(len(starts))
    for host, inst, why in found.surplus_actors:
        out.append(StopActor(host_id=host.host_id, actor_id=inst.actor_id,
                             instance_id=inst.instance_id, reason=why))
    return moves


def _plain_starts(slots: ActorSlots, head: tuple[tuple[str, str], ...],
                  named: tuple[str, str], rev: tuple[str, str], avoid: tuple[str, ...],
                  excluding: Placing | None, out: list[Action]) -> None:
    """The starts of the missing replicas ``0..n-1`` of a spec without spread or daemon,
    in key order (replica ``10`` before ``2``). The hot path of a plan from empty (10,000
    of these): positional arguments, the annotation tuple written out, nothing per replica
    that is the same for all."""
    name, aid, cons, insts = slots.deployment, slots.actor_id, slots.rules.rules, slots.instances
    why = f" of deployment {name} is not running"
    add = out.append
    order = _key_order(len(insts))
    if len(head) == 1:
        for r in order:
            if insts[r] is None:
                add(StartActor(name, aid, r, cons,
                               (_KIND_DEPLOYMENT, _MANAGED, named, _REPLICA_PAIRS[r], rev),
                               avoid, f"replica {r}{why}", excluding))
        return
    for r in order:
        if insts[r] is None:
            add(StartActor(name, aid, r, cons, (*head, _MANAGED, named, _REPLICA_PAIRS[r], rev),
                           avoid, f"replica {r}{why}", excluding))


def _key_order(n: int) -> range | list[int]:
    """Replicas ``0..n-1`` in the order of their keys (as text: ``10`` before ``2``)."""
    return range(n) if n <= 10 else sorted(range(n), key=str)


def _share_of(slots: ActorSlots, r: int) -> str:
    lay = slots.layout
    for share in lay.shares if lay is not None else ():
        if share.first <= r < share.first + share.target:
            return share.name
    return ""


def _move(found: Analysis, slots: ActorSlots, move: Move, rev: tuple[str, str],
          starts: list[Action], out: list[Action]) -> None:
    """A rebalancing move: replica ``move.replica`` started again on the target host, and
    its instance on the source stopped (the executor holds the stop until the start is
    observed; matching then keeps the new, less loaded one)."""
    name = slots.deployment
    label: int | str = move.replica if slots.layout is None else slots.label(move.replica)
    head = (_KIND_DEPLOYMENT,) if slots.limits is None else (
        _KIND_DEPLOYMENT, (ANN_LIMITS, slots.limits))
    src, dst = found.hosts[move.source], found.hosts[move.target]
    starts.append(StartActor(
        deployment=name, actor_id=slots.actor_id, replica=label,
        constraints=slots.rules_of(move.replica).rules,
        annotations=(*head, _MANAGED, (ANN_NAME, name), (ANN_REPLICA, str(label)), rev),
        avoid_hosts=(), placing=Placing(host_id=move.target, move_from=move.source),
        reason=f"rebalance: host {src.name} runs {move.source_count} replicas of it, "
               f"host {dst.name} {move.target_count}; moving replica {label}"))
    old = slots.instances[move.replica]
    assert old is not None
    out.append(StopActor(host_id=src.host_id, actor_id=slots.actor_id,
                         instance_id=old.instance_id,
                         reason=f"rebalance: replica {label} moves to host {dst.name}"))


def _providers(found: Analysis, revision: str, out: list[Action]) -> None:
    for g in found.providers:
        if g.chosen is not None:
            continue
        cap, bn, vendor = g.key
        owners = OWNER_SEPARATOR.join(g.owners)
        out.append(StartProvider(
            capability_id=cap, binding_name=bn, vendor_id=vendor, constraints=g.rules.rules,
            annotations=pairs(owner_annotations(KIND_DEPLOYMENT, owners, revision)),
            owners=g.owners,
            reason=f"no host {f'satisfying {g.rules} ' if g.rules.rules else ''}runs "
                   f"{provider_entity(cap, bn)} from {vendor} for {', '.join(g.owners)}"))
    for sp in found.provider_spreads:
        cap, bn, vendor = sp.key
        annotations = pairs(owner_annotations(KIND_DEPLOYMENT, OWNER_SEPARATOR.join(sp.owners),
                                              revision))
        for share in sp.shares:
            what = f"spread {share.name}" if share.name else "replicas"
            for n in range(len(share.chosen), share.target):
                out.append(StartProvider(
                    capability_id=cap, binding_name=bn, vendor_id=vendor,
                    constraints=share.rules.rules, annotations=annotations, owners=sp.owners,
                    replica=provider_replica(share.name, n),
                    reason=f"{', '.join(sp.owners)} run {provider_entity(cap, bn)} from "
                           f"{vendor} on {share.target} hosts satisfying {share.rules} "
                           f"({what}); {len(share.chosen)} run it"))
    for d in found.daemons:
        cap, bn, vendor = d.key
        owners = OWNER_SEPARATOR.join(d.owners)
        for host, inst in d.on:
            if inst is not None:
                continue
            out.append(StartProvider(
                capability_id=cap, binding_name=bn, vendor_id=vendor, constraints=d.rules.rules,
                annotations=pairs(owner_annotations(KIND_DEPLOYMENT, owners, revision)),
                owners=d.owners, host_id=host.host_id,
                reason=f"{', '.join(d.owners)} run {provider_entity(cap, bn)} from {vendor} "
                       f"on every host satisfying {d.rules}; host {host.name} has none"))
    for host, inst, why in found.surplus_providers:
        out.append(StopProvider(host_id=host.host_id, capability_id=inst.capability_id,
                                binding_name=inst.binding_name, reason=why))


def _bindings(found: Analysis, revision: str, out: list[Action]) -> None:
    for m in found.bindings:
        if not m.stale or not m.wins:
            continue
        spec = m.spec
        values = pairs(spec.values)
        annotations = pairs(owner_annotations(KIND_BINDINGSET, m.bindingset, revision))
        for host, obs in m.stale:
            if obs is None:
                why = "missing"
            elif not is_managed(obs.annotations):
                why = "an unowned binding differs from git"
            else:
                why = "differs from git"
            out.append(PutBinding(
                host_id=host.host_id, actor_id=spec.actor, capability_id=spec.capability_id,
                binding_name=spec.binding, vendor_id=spec.vendor_id, values=values,
                annotations=annotations,
                reason=f"binding set {m.bindingset}: {why} on host {host.name}, which runs "
                       f"its provider"))
    for host, b, why in found.surplus_bindings:
        out.append(DeleteBinding(host_id=host.host_id, actor_id=b.actor_id,
                                 capability_id=b.capability_id, binding_name=b.binding_name,
                                 reason=why))
