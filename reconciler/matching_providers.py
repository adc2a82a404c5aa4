"""Matching providers: which running instance serves each group of deployments.

Pure, no I/O; part of :mod:`reconciler.matching` (the rules are in its docstring).
Every deployment that needs a (capability, binding name, vendor) under the same rule set
forms one *group*, served by the best running instance on a host satisfying the rules;
daemon providers are matched by :func:`reconciler.placement.match_daemons`.
:func:`match_providers` matches them all; :func:`rematch_providers` patches the last
answer when a few hosts changed: only the groups of a (capability, binding name) that a
changed host runs or ran are chosen again, and only those instances weighed for surplus.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import NamedTuple

from lattice.manifests import DesiredState, ProviderKey
from lattice.protocol import (
    ANN_MANAGED_BY,
    ANN_NAME,
    MANAGED_BY_VALUE,
    HostInventory,
    ProviderInstance,
)
from reconciler.placement import DaemonGroup, divide, match_daemons
from reconciler.rulesets import (
    OWNER_SEPARATOR,
    Rules,
    RuleSet,
    RuleSets,
    Served,
    SurplusProvider,
    provider_entity,
)

_Rank = tuple[bool, bool, datetime, str, str]


class ProviderGroup(NamedTuple):
    """The deployments (``owners``) needing one provider under one rule set."""

    key: ProviderKey
    rules: RuleSet
    owners: tuple[str, ...]
    chosen: Served | None



class ProviderShare(NamedTuple):
    """One share of a provider's replicas: ``target`` instances on distinct hosts that
    satisfy ``rules`` (its requirements and the affinity rules; name "" without spread),
    and the instances ``chosen`` to serve it (at most ``target``)."""

    name: str
    rules: RuleSet
    target: int
    chosen: list[Served]


class ProviderSpread(NamedTuple):
    """A provider the ``owners`` want on several hosts (``replicas``, ``spread``): its
    shares, each with the instances serving it; no host serves two shares."""

    key: ProviderKey
    rules: RuleSet
    owners: tuple[str, ...]
    shares: tuple[ProviderShare, ...]


def provider_replica(share: str, n: int) -> str:
    """The name of a provider's ``n``-th replica of a share: ``east-1``, or ``1``."""
    return f"{share}-{n}" if share else str(n)


#: (key, affinity rules, replicas, ((share, weight, rules), ...)): what makes two
#: deployments' provider replicas one group
_SpreadShape = tuple[ProviderKey, Rules, int, tuple[tuple[str, int, Rules], ...]]
_Needs = dict[ProviderKey, dict[Rules, list[str]]]
_GroupOf = dict[tuple[str, ProviderKey], ProviderGroup]


def match_providers(
    desired: DesiredState, hosts: list[HostInventory], rulesets: RuleSets
) -> tuple[list[ProviderGroup], dict[tuple[str, ProviderKey], ProviderGroup],
           list[SurplusProvider], list[DaemonGroup], list[ProviderSpread]]:
    """Every provider spec of ``desired`` matched over ``hosts``: the groups run once, the
    owned instances serving nothing (with why), the daemons, and the providers with
    replicas (:class:`ProviderSpread`). Pure."""
    needs: dict[ProviderKey, dict[Rules, list[str]]] = {}
    daemon_needs: dict[ProviderKey, dict[Rules, list[str]]] = {}
    spread_needs: dict[_SpreadShape, list[str]] = {}
    for name in sorted(desired.deployments):
        for spec in desired.deployments[name].spec.providers:
            rules = rulesets.get(spec.affinity_rules).rules
            if spec.spread or spec.replicas > 1:
                shape = tuple((sh.name, sh.weight, rulesets.get(
                    [*spec.affinity_rules, *sh.requirements]).rules) for sh in spec.spread)
                spread_needs.setdefault((spec.key, rules, spec.replicas, shape), []).append(name)
                continue
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
    spreads = _match_spreads(spread_needs, running, rulesets, chosen)
    for key, by_rules in daemon_needs.items():  # for the reasons of what is surplus
        for rules, names in by_rules.items():
            needs.setdefault(key, {}).setdefault(rules, []).extend(names)
    for (key, rules, _n, _shape), names in spread_needs.items():
        needs.setdefault(key, {}).setdefault(rules, []).extend(names)

    surplus: list[SurplusProvider] = []
    for served in running.values():
        for host, inst in served:
            ann = inst.annotations
            if (ann.get(ANN_MANAGED_BY) == MANAGED_BY_VALUE
                    and (host.host_id, inst.instance_id) not in chosen):
                why = _why_provider_unwanted(host, inst, needs, rulesets)
                surplus.append((host, inst, why))
    return groups, group_of, surplus, daemons, spreads


def _match_spreads(needs: dict[_SpreadShape, list[str]],
                   running: dict[tuple[str, str], list[Served]], rulesets: RuleSets,
                   chosen: set[tuple[str, str]]) -> list[ProviderSpread]:
    """Providers with replicas: ``replicas`` divided over the shares by weight (one share
    "" without spread), each share served by the best instances (the order of
    :func:`_provider_rank`) on hosts that satisfy its rules and serve no earlier share;
    what serves goes into ``chosen``."""
    out: list[ProviderSpread] = []
    for shape in sorted(needs):
        key, rules, replicas, spread = shape
        owners = tuple(needs[shape])
        rank = _provider_rank(owners)
        cands = sorted((s for s in running.get((key[0], key[1]), ())
                        if s[1].vendor_id == key.vendor_id), key=rank)
        counts = divide(replicas, [w for _n, w, _r in spread]) if spread else [replicas]
        named = [(n, r) for n, _w, r in spread] if spread else [("", rules)]
        taken: set[str] = set()
        shares: list[ProviderShare] = []
        for (share, share_rules), target in zip(named, counts, strict=True):
            rs = rulesets.get(share_rules)
            pick: list[Served] = []
            for s in cands:
                if len(pick) == target:
                    break
                if s[0].host_id not in taken and rs.allows(s[0]):
                    pick.append(s)
                    taken.add(s[0].host_id)
                    chosen.add((s[0].host_id, s[1].instance_id))
            shares.append(ProviderShare(share, rs, target, pick))
        out.append(ProviderSpread(key, rulesets.get(rules), owners, tuple(shares)))
    return out


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


def rematch_providers(
    last: tuple[list[ProviderGroup], _GroupOf, list[SurplusProvider]],
    before: Mapping[str, HostInventory], by_id: Mapping[str, HostInventory],
    changed: set[str], serving: Mapping[tuple[str, str], list[tuple[HostInventory, str]]],
    rulesets: RuleSets,
) -> tuple[list[ProviderGroup], _GroupOf, list[SurplusProvider]]:
    """``last`` (the groups, their index by owner and the surplus found for the same
    desired state, without daemon providers, over ``before``) for the hosts ``by_id``,
    which differ in the ``changed`` hosts only (``serving``: who runs what, merged, by
    host id). What :func:`match_providers` would give (the surplus perhaps in another
    order). ``rulesets`` must not remember a changed host's verdicts. Pure."""
    groups, group_of, surplus = last
    keys: set[tuple[str, str]] = set()
    for hid in changed:
        for rec in (before.get(hid), by_id.get(hid)):
            if rec is not None:
                keys.update((p.capability_id, p.binding_name) for p in rec.providers)
    if not keys:
        return groups, group_of, surplus
    running: dict[tuple[str, str], list[Served]] = {}
    for key in keys:
        seen: set[str] = set()
        for host, _vendor in serving.get(key, ()):
            if host.host_id not in seen:
                seen.add(host.host_id)
                running.setdefault(key, []).extend(
                    (host, p) for p in host.providers
                    if (p.capability_id, p.binding_name) == key)
    out, index = list(groups), dict(group_of)
    chosen: set[tuple[str, str]] = set()
    needs: _Needs = {}
    for i, g in enumerate(groups):
        needs.setdefault(g.key, {})[g.rules.rules] = list(g.owners)
        if (g.key[0], g.key[1]) not in keys:
            continue
        eligible = [s for s in running.get((g.key[0], g.key[1]), ())
                    if s[1].vendor_id == g.key.vendor_id and g.rules.allows(s[0])]
        pick = min(eligible, key=_provider_rank(g.owners)) if eligible else None
        if pick is not None:
            chosen.add((pick[0].host_id, pick[1].instance_id))
        out[i] = g._replace(chosen=pick)
        for owner in g.owners:
            index[(owner, g.key)] = out[i]
    kept = [e for e in surplus if e[0].host_id not in changed
            and (e[1].capability_id, e[1].binding_name) not in keys]
    for served in running.values():
        for host, inst in served:
            if (inst.annotations.get(ANN_MANAGED_BY) == MANAGED_BY_VALUE
                    and (host.host_id, inst.instance_id) not in chosen):
                kept.append((host, inst, _why_provider_unwanted(host, inst, needs, rulesets)))
    return out, index, kept
