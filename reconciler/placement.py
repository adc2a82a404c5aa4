"""Placement beyond affinity: spread shares, daemons, per-host limits and rebalancing moves.

Pure, no I/O. Called by :func:`reconciler.matching_actors.match_actors` (and, for daemon
providers, by :mod:`reconciler.matching`) while it matches one actor spec; the planner and
the assessment read what it decides through the analysis. Nomad's habit, in small steps:

* :func:`layout` says which replicas exist and where each may run: ``replicas`` divided
  over the ``spread`` shares by weight (:func:`divide`, the largest remainder method, ties
  by share order), replica ``east-0`` belonging to share ``east`` and constrained by its
  requirements plus the affinity rules; or, for a daemon, one replica per observed host
  satisfying the rules, named after that host.
* :func:`match_daemons` finds, for a daemon provider, the instance on every host that
  satisfies its rules (the planner starts one, targeted, where there is none).
* :func:`over_limit` finds instances above ``max_per_host`` on a host (stopped, and their
  replicas started again elsewhere, with the full hosts excluded from the auction).
* :func:`find_moves` proposes moves for an actor spec whose replicas all run: a replica
  on the most loaded host of its share to the least loaded host that may run it, only
  when that host would then still be strictly less loaded than the source was before
  (``c' + 1 < c``), repeated on the placement each move leaves. Every move lowers the sum
  of squared per-host counts, so moves cannot oscillate and end after a bounded number of
  steps. A move is a start on the target host and a stop of the old instance in the same
  plan; the executor holds the stop until the start is observed (make-before-break) and
  runs at most one move per deployment per rebalance interval. Duplicates of one replica
  keep the instance on the least loaded host
  (:func:`reconciler.matching_actors.match_actors`), so the new instance wins.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from lattice.manifests import ActorSpec, ProviderKey
from lattice.protocol import ActorInstance, HostInventory, ProviderInstance
from reconciler.rulesets import Layout, Move, Rules, RuleSet, RuleSets, Share


class DaemonGroup(NamedTuple):
    """A provider the ``owners`` want on every host satisfying ``rules``: ``on`` pairs each
    such host (by id) with the instance serving it there, or None."""

    key: ProviderKey
    rules: RuleSet
    owners: tuple[str, ...]
    on: list[tuple[HostInventory, ProviderInstance | None]]


def match_daemons(needs: dict[ProviderKey, dict[Rules, list[str]]],
                   hosts: list[HostInventory], rulesets: RuleSets,
                   chosen: set[tuple[str, str]]) -> list[DaemonGroup]:
    """Daemon providers: on every host satisfying the rules, the instance of that provider
    there (owned or not) serves the group, else None; what serves is added to
    ``chosen`` (never surplus)."""
    out: list[DaemonGroup] = []
    for key in sorted(needs):
        for rules in sorted(needs[key], key=lambda r: (len(r), r)):
            rs = rulesets.get(rules)
            on: list[tuple[HostInventory, ProviderInstance | None]] = []
            for host in hosts:
                if not rs.allows(host):
                    continue
                inst = next((p for p in host.providers
                             if (p.capability_id, p.binding_name, p.vendor_id) == key), None)
                if inst is not None:
                    chosen.add((host.host_id, inst.instance_id))
                on.append((host, inst))
            out.append(DaemonGroup(key, rs, tuple(needs[key][rules]), on))
    return out


def divide(replicas: int, weights: Sequence[int]) -> list[int]:
    """``replicas`` divided by ``weights``: the largest remainder method, ties by order.
    ``divide(10, [80, 20]) == [8, 2]``; ``divide(4, [75, 25]) == [3, 1]``. Pure."""
    total = sum(weights)
    if not total:
        return [0 for _ in weights]
    exact = [replicas * w for w in weights]  # numerators over ``total``
    counts = [e // total for e in exact]
    left = replicas - sum(counts)
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] % total), i))
    for i in order[:left]:
        counts[i] += 1
    return counts


def layout(spec: ActorSpec, rs: RuleSet, rulesets: RuleSets,
           hosts: Mapping[str, HostInventory]) -> Layout | None:
    """The replicas of ``spec`` (None: a plain spec, replicas ``0`` to ``n-1`` under
    ``rs``). Pure: reads the hosts' labels for daemons."""
    if spec.daemon:
        ids = tuple(sorted(h for h, inv in hosts.items() if rs.allows(inv)))
        return Layout(ids, (rs,) * len(ids), (), ids, daemon=True)
    if not spec.spread:
        return None
    counts = divide(spec.replicas, [s.weight for s in spec.spread])
    labels: list[str] = []
    rules: list[RuleSet] = []
    shares: list[Share] = []
    for s, n in zip(spec.spread, counts, strict=True):
        srs = rulesets.get([*spec.affinity_rules, *s.requirements])
        shares.append(Share(s.name, srs, n, len(labels)))
        labels.extend(f"{s.name}-{i}" for i in range(n))
        rules.extend([srs] * n)
    return Layout(tuple(labels), tuple(rules), tuple(shares))


def over_limit(insts: Sequence[ActorInstance | None], host_of: Mapping[int, str],
               limit: int) -> list[int]:
    """The slots whose instance exceeds ``limit`` on its host: on each host, those beyond
    the first ``limit`` by slot order. Pure."""
    seen: Counter[str] = Counter()
    out = []
    for r, inst in enumerate(insts):
        if inst is None:
            continue
        hid = host_of[id(inst)]
        seen[hid] += 1
        if seen[hid] > limit:
            out.append(r)
    return out


def count_per_host(insts: Sequence[ActorInstance | None], host_of: Mapping[int, str]
             ) -> Counter[str]:
    """How many of ``insts`` run on each host. Pure."""
    return Counter(host_of[id(i)] for i in insts if i is not None)


def find_moves(insts: Sequence[ActorInstance | None], lay: Layout | None, rs: RuleSet,
               host_of: Mapping[int, str], hosts: Mapping[str, HostInventory],
               limit: int | None) -> tuple[Move, ...]:
    """The moves that strictly improve the spread of ``insts``, each planned on the
    placement the earlier ones leave (see the module docstring for the rule); empty when
    there is nothing to improve. A share with a replica not running (being started, or
    no host takes it) does not move: its start comes first. Pure; deterministic: the
    most loaded source first (then host id), the least loaded target (then host id), the
    source's last replica of the share."""
    where = [host_of[id(i)] if i is not None else None for i in insts]
    counts = Counter(h for h in where if h is not None)
    if len(counts) == sum(counts.values()):
        return ()  # one per host: nothing to improve
    shares = lay.shares if lay is not None and lay.shares else (
        Share("", rs, len(insts), 0),)
    ids = sorted(hosts)
    moves: list[Move] = []
    for _ in range(len(where)):  # each move lowers the sum of squares: bounded anyway
        move = _best_move(where, counts, shares, ids, hosts, limit)
        if move is None:
            break
        moves.append(move)
        where[move.replica] = move.target
        counts[move.source] -= 1
        counts[move.target] += 1
    return tuple(moves)


def _best_move(where: list[str | None], counts: Counter[str], shares: Sequence[Share],
               ids: Sequence[str], hosts: Mapping[str, HostInventory],
               limit: int | None) -> Move | None:
    best: Move | None = None
    for share in shares:
        slots = range(share.first, share.first + share.target)
        on = {where[r] for r in slots}
        if not slots or None in on:
            continue
        src = min((h for h in on if h is not None), key=lambda h: (-counts[h], h))
        c = counts[src]
        if c < 2:
            continue
        target: str | None = None
        tc = c
        for hid in ids:
            n = counts.get(hid, 0)
            if n + 1 >= c or n >= tc or (limit is not None and n + 1 > limit):
                continue
            if share.rules.allows(hosts[hid]):
                target, tc = hid, n
                if n == 0:
                    break
        if target is None:
            continue
        r = max(r for r in slots if where[r] == src)
        if best is None or c - tc > best.source_count - best.target_count:
            best = Move(r, src, target, c, tc)
    return best
