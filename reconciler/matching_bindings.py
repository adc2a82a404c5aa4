"""Matching bindings: which hosts need which binding, and which owned bindings serve none.

Pure, no I/O; part of :mod:`reconciler.matching` (the rules are in its docstring). A
binding belongs on every host that runs (and keeps running) a provider of its capability
and binding name (and vendor, when the spec names one); when two binding sets claim the
same (actor, capability, binding name), the first by name owns it. :func:`match_bindings`
matches every binding spec over the merged indexes of the lattice (:func:`merge_bindings`,
memoised by the matcher); :func:`rematch_bindings` patches the last answer when a few
hosts changed: only the specs of a (capability, binding name) that a changed host serves
or served, or whose providers started or stopped stopping, are matched again, and only
the bindings on the hosts serving those or on the changed hosts are weighed for surplus.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from lattice.manifests import BindingSpec, DesiredState
from lattice.protocol import ANN_MANAGED_BY, MANAGED_BY_VALUE, BindingInstance, HostInventory
from reconciler.memo import LastCall, PerObject
from reconciler.rulesets import SurplusBinding

_BoundKey = tuple[str, str, str, str]  # (host, actor, capability, binding name)
_Serving = dict[tuple[str, str], list[tuple[HostInventory, str]]]  # (cap, name) -> hosts


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


class HostBindings(NamedTuple):
    """One host's bindings, indexed."""

    bound: dict[_BoundKey, BindingInstance]
    managed: int  # how many of them the agent owns


def index_bindings(host: HostInventory) -> HostBindings:
    """One host's bindings by (host, actor, capability, binding name). Pure."""
    if not host.bindings:
        return HostBindings({}, 0)
    hid = host.host_id
    bound = {(hid, b.actor_id, b.capability_id, b.binding_name): b for b in host.bindings}
    managed = sum(1 for b in host.bindings
                  if b.annotations.get(ANN_MANAGED_BY) == MANAGED_BY_VALUE)
    return HostBindings(bound, managed)


class LatticeBindings(NamedTuple):
    """What every host serves and has bound, merged."""

    serving: _Serving
    bound: dict[_BoundKey, BindingInstance]
    managed: int


def merge_bindings(per_host: PerObject[HostInventory, HostBindings],
                   hosts: Sequence[HostInventory]) -> LatticeBindings:
    """The merge of every host's providers and bindings (``per_host`` indexes one host's
    bindings: the matcher's memo of :func:`index_bindings`). Pure; read only by callers."""
    serving: _Serving = {}  # hosts by id
    bound: dict[_BoundKey, BindingInstance] = {}
    managed = 0
    for host, hb in zip(hosts, per_host.sweep(hosts), strict=True):
        for p in host.providers:
            serving.setdefault((p.capability_id, p.binding_name), []).append(
                (host, p.vendor_id))
        bound.update(hb.bound)  # keys carry the host id: no collisions
        managed += hb.managed
    return LatticeBindings(serving, bound, managed)


#: the merge, reused by a matcher while the hosts are the same objects (a converged lattice)
BindingsMemo = LastCall[HostInventory, LatticeBindings]


def merged_after(memo: BindingsMemo, before: Mapping[str, HostInventory],
                 hosts: list[HostInventory], by_id: Mapping[str, HostInventory],
                 changed: set[str]) -> LatticeBindings:
    """The merge of ``hosts``, patched from the memo's last merge when that was of the
    hosts ``before`` (which differ in the ``changed`` hosts only): the changed hosts'
    old entries out, their new ones in, each serving list kept in host id order as
    :func:`merge_bindings` makes it; built in full otherwise. Kept in the memo."""
    last = memo.last
    if last is None or len(last[0]) != len(before) or any(
            before.get(h.host_id) is not h for h in last[0]):
        return memo(hosts)
    merged = last[1]
    serving, bound, managed = dict(merged.serving), dict(merged.bound), merged.managed
    keys: set[tuple[str, str]] = set()
    for hid in changed:
        old, new = before.get(hid), by_id.get(hid)
        if old is not None:
            was = index_bindings(old)
            for k in was.bound:
                del bound[k]
            managed -= was.managed
            keys.update((p.capability_id, p.binding_name) for p in old.providers)
        if new is not None:
            now = index_bindings(new)
            bound.update(now.bound)
            managed += now.managed
            keys.update((p.capability_id, p.binding_name) for p in new.providers)
    for key in keys:
        on = [e for e in serving.get(key, ()) if e[0].host_id not in changed]
        for hid in changed:
            new = by_id.get(hid)
            if new is not None:
                on.extend((new, p.vendor_id) for p in new.providers
                          if (p.capability_id, p.binding_name) == key)
        on.sort(key=_by_host_id)  # stable: one host's providers keep their order
        if on:
            serving[key] = on
        else:
            serving.pop(key, None)
    value = LatticeBindings(serving, bound, managed)
    memo.remember(hosts, value)
    return value


def _by_host_id(entry: tuple[HostInventory, str]) -> str:
    return entry[0].host_id

_Stopping = set[tuple[str, str, str]]  # (host, capability, binding name) of providers stopping


def _serving(lattice: LatticeBindings, stopping: _Stopping) -> _Serving:
    """Who serves what, providers about to stop left out (their bindings go with them)."""
    serving = lattice.serving
    if stopping:
        serving = {k: [(h, v) for h, v in on if (h.host_id, *k) not in stopping]
                   for k, on in serving.items()}
    return serving


def _match_spec(name: str, spec: BindingSpec, owner: str, serving: _Serving,
                bound: dict[_BoundKey, BindingInstance], wanted: set[int],
                ) -> tuple[BindingMatch, int]:
    """One spec of binding set ``name`` over who serves its provider; the id() of every
    observed binding the winning spec wants where it is goes into ``wanted``; the match
    and how many owned bindings were added there."""
    cap, bn, vendor, actor = spec.capability_id, spec.binding, spec.vendor_id, spec.actor
    on: list[HostInventory] = []
    stale: list[StaleBinding] = []
    added = 0
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
            added += obs.annotations.get(ANN_MANAGED_BY) == MANAGED_BY_VALUE
        if obs.values != spec.values or (vendor is not None and obs.vendor_id != vendor):
            stale.append(StaleBinding(host, obs))
    return BindingMatch(name, spec, owner, on, stale), added


def _surplus(hosts: Iterable[HostInventory], wanted: set[int], stopping: _Stopping,
             claimed: Mapping[tuple[str, str, str], str],
             keys: set[tuple[str, str]] | None, out: list[SurplusBinding]) -> None:
    """The owned bindings on ``hosts`` (of ``keys`` only, unless None) that no winning
    spec wants where they are, with why, into ``out``."""
    for host in hosts:
        hid = host.host_id
        for b in host.bindings:
            if keys is not None and (b.capability_id, b.binding_name) not in keys:
                continue
            if (id(b) in wanted or b.annotations.get(ANN_MANAGED_BY) != MANAGED_BY_VALUE
                    or (hid, b.capability_id, b.binding_name) in stopping):  # goes with it
                continue
            if (b.actor_id, b.capability_id, b.binding_name) not in claimed:
                why = "no binding set declares it any more"
            else:
                why = f"no provider it may bind to keeps running on host {host.name}"
            out.append((host, b, why))


def match_bindings(
    desired: DesiredState, hosts: list[HostInventory], stopping: _Stopping,
    lattice_bindings: BindingsMemo,
) -> tuple[list[BindingMatch], list[SurplusBinding]]:
    """Every binding spec of ``desired`` matched over ``hosts`` (``stopping``: providers
    about to stop), and the owned bindings that serve none. Pure."""
    lattice = lattice_bindings(hosts)
    serving, bound = _serving(lattice, stopping), lattice.bound
    claimed: dict[tuple[str, str, str], str] = {}
    wanted: set[int] = set()  # id() of observed bindings a winning spec wants where they are
    wanted_managed = 0
    matches: list[BindingMatch] = []
    for name in sorted(desired.bindingsets):
        for spec in desired.bindingsets[name].spec.bindings:
            owner = claimed.setdefault((spec.actor, spec.capability_id, spec.binding), name)
            match, added = _match_spec(name, spec, owner, serving, bound, wanted)
            matches.append(match)
            wanted_managed += added
    surplus: list[SurplusBinding] = []
    if stopping or wanted_managed != lattice.managed:  # else: every owned one is wanted
        _surplus(hosts, wanted, stopping, claimed, None, surplus)
    return matches, surplus


def rematch_bindings(
    last: tuple[list[BindingMatch], list[SurplusBinding], _Stopping],
    before: Mapping[str, HostInventory], hosts: list[HostInventory],
    by_id: Mapping[str, HostInventory], changed: set[str], stopping: _Stopping,
    lattice: LatticeBindings,
) -> tuple[list[BindingMatch], list[SurplusBinding]]:
    """``last`` (the matches, surplus and providers stopping found for the same desired
    state over ``before``) for ``hosts``, which differ in the ``changed`` hosts only, with
    ``stopping`` now and ``lattice`` their merge; what :func:`match_bindings` would give
    (the surplus perhaps in another order). Pure."""
    matches, last_surplus, stopped = last
    keys = {(c, b) for _h, c, b in stopping ^ stopped}
    for hid in changed:
        for rec in (before.get(hid), by_id.get(hid)):
            if rec is not None:
                keys.update((p.capability_id, p.binding_name) for p in rec.providers)
    serving = _serving(LatticeBindings(
        {k: lattice.serving[k] for k in keys if k in lattice.serving}, {}, 0), stopping)
    claimed = {(m.spec.actor, m.spec.capability_id, m.spec.binding): m.owner
               for m in matches}
    wanted: set[int] = set()
    out = list(matches)
    for i, m in enumerate(matches):
        if (m.spec.capability_id, m.spec.binding) in keys:
            out[i] = _match_spec(m.bindingset, m.spec, m.owner, serving, lattice.bound,
                                 wanted)[0]
    weighed = {h.host_id: h for k in keys for h, _v in lattice.serving.get(k, ())
               if h.host_id not in changed}
    surplus = [e for e in last_surplus if e[0].host_id not in changed and not (
        e[0].host_id in weighed and (e[1].capability_id, e[1].binding_name) in keys)]
    _surplus([by_id[h] for h in sorted(changed) if h in by_id], wanted, stopping, claimed,
             None, surplus)
    _surplus(weighed.values(), wanted, stopping, claimed, keys, surplus)
    return out, surplus
