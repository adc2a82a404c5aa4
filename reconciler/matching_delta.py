"""Re-matching after a few hosts changed: the last analysis's actor slots patched.

Pure. Called by :class:`reconciler.matching.Matcher` when the desired state is the very
same object as at its last analysis and only a few hosts differ (a host left, changed its
labels, started or lost instances: its record is a new object). A host's change can only
alter the slots of the deployments named by the owned instances it ran or runs, the
instances it held in the surplus, and the rebalancing moves (a host that left or changed
labels may have been, or may now be, a move's target); everything else the last analysis
found stands. So only those deployments are matched again, over their instances: on the
unchanged hosts as the last analysis placed them (in a slot or in the surplus), on the
changed ones from their new records. The rules are :func:`match_deployments`', the same
code as a build, so the answer is the build's; daemons (whose replicas follow every host)
are left to the build.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from lattice.manifests import DesiredState
from lattice.protocol import (
    ANN_KIND,
    ANN_MANAGED_BY,
    ANN_NAME,
    ANN_REPLICA,
    MANAGED_BY_VALUE,
    ActorInstance,
    HostInventory,
)
from reconciler.matching_actors import Found, match_deployments, no_moves_while_stopping
from reconciler.placement import find_moves
from reconciler.rulesets import KIND_DEPLOYMENT, ActorSlots, RuleSets, SurplusActor

_ActorKey = tuple[str | None, str, str | None]


def changed_hosts(before: Mapping[str, HostInventory], hosts: Mapping[str, HostInventory]
                  ) -> set[str]:
    """The ids of the hosts that joined, left, or whose record is another object."""
    changed = {hid for hid, h in hosts.items() if before.get(hid) is not h}
    if len(hosts) - len(changed) != len(before):  # some left
        changed.update(hid for hid in before if hid not in hosts)
    return changed


def _owned_deployment(inst: ActorInstance) -> bool:
    ann = inst.annotations
    return (ann.get(ANN_MANAGED_BY) == MANAGED_BY_VALUE
            and ann.get(ANN_KIND) == KIND_DEPLOYMENT)


def rematch_actors(
    desired: DesiredState, last: tuple[list[ActorSlots], list[SurplusActor], dict[int, str],
                                       tuple[int, ...]],
    before: Mapping[str, HostInventory], hosts: dict[str, HostInventory], changed: set[str],
    rulesets: RuleSets,
) -> tuple[list[ActorSlots], list[SurplusActor], dict[int, str], tuple[int, ...]]:
    """``last`` (the slots, surplus, instance hosts and rebalancing positions that
    :func:`reconciler.matching_actors.match_actors` found for ``desired`` over
    ``before``) for ``hosts``, which differ from ``before`` in the ``changed`` hosts
    only; the same four things a match over ``hosts`` would give (the surplus perhaps in
    another order). ``rulesets`` must not remember a changed host's verdicts. Pure."""
    actors, surplus, actor_hosts, rebalancing = last
    names: set[str | None] = set()
    host_of = dict(actor_hosts)
    for hid in changed:
        old = before.get(hid)
        for inst in old.actors if old is not None else ():
            if _owned_deployment(inst):
                names.add(inst.annotations.get(ANN_NAME))
                host_of.pop(id(inst), None)
        new = hosts.get(hid)
        for inst in new.actors if new is not None else ():
            if _owned_deployment(inst):
                names.add(inst.annotations.get(ANN_NAME))

    # the instances of those deployments: on unchanged hosts where the last analysis put
    # them (a slot or the surplus), on changed hosts from their new records
    mine: list[tuple[ActorInstance, str]] = []
    positions: list[int] = []
    for pos, s in enumerate(actors):
        if s.deployment in names:
            positions.append(pos)
            for there in s.instances:
                if there is not None and actor_hosts[id(there)] not in changed:
                    mine.append((there, actor_hosts[id(there)]))
    kept: list[SurplusActor] = []
    for entry in surplus:
        hid = entry[0].host_id
        if hid in changed:
            continue
        inst = entry[1]
        if _owned_deployment(inst) and inst.annotations.get(ANN_NAME) in names:
            mine.append((inst, hid))
        else:
            kept.append(entry)
    fresh: list[SurplusActor] = []
    for hid in sorted(changed):
        now = hosts.get(hid)
        if now is None:
            continue
        for inst in now.actors:
            if inst.annotations.get(ANN_MANAGED_BY) != MANAGED_BY_VALUE:
                continue
            if not _owned_deployment(inst):
                fresh.append((now, inst, "not part of any deployment"))
                continue
            host_of[id(inst)] = hid
            mine.append((inst, hid))

    slots, asked = match_deployments(
        desired, sorted(n for n in names if n is not None and n in desired.deployments),
        _found(mine, host_of), hosts, rulesets, fresh, limited=True)
    assert len(slots) == len(positions), "the same desired state has the same slots"
    out = list(actors)
    for pos, s in zip(positions, slots, strict=True):
        out[pos] = s
    redone = set(positions)
    again = {*(r for r in rebalancing if r not in redone), *(positions[i] for i in asked)}
    for r in again:  # the others' moves, over the hosts as they are now
        s = out[r]
        if r not in redone:
            out[r] = s._replace(moves=find_moves(s.instances, s.layout, s.rules, host_of,
                                                 hosts, s.max_per_host))
    return out, no_moves_while_stopping(out, [*kept, *fresh]), host_of, tuple(sorted(again))


def _found(mine: Sequence[tuple[ActorInstance, str]], host_of: dict[int, str]) -> Found:
    """``mine`` indexed as :func:`reconciler.matching_actors.match_actors` indexes a
    lattice: by key, every instance of a key claimed twice, the packed (name, actor)."""
    by_key: dict[_ActorKey, ActorInstance] = {}
    dupes: dict[_ActorKey, list[ActorInstance]] = {}
    seen: set[tuple[str, str | None, str]] = set()
    packed: set[tuple[str | None, str]] = set()
    for inst, hid in mine:
        ann = inst.annotations
        key = (ann.get(ANN_NAME), inst.actor_id, ann.get(ANN_REPLICA))
        prev = by_key.setdefault(key, inst)
        if prev is not inst:
            dupes.setdefault(key, [prev]).append(inst)
        owner = (hid, key[0], key[1])
        if owner in seen:
            packed.add((key[0], key[1]))
        seen.add(owner)
    return Found(by_key, dupes, host_of, packed)
