"""Assessment: desired next to observed, per entity, as the status branch shows it.

Pure and synchronous, like the planner, and built on the same matching
(:class:`reconciler.matching.Matcher`), so a status never disagrees with what the planner
would do: an actor replica counts as ready exactly when the planner would not start it,
a deployment is Synced exactly when the planner has nothing left to do for it.

:func:`assess` turns one desired state, one observed snapshot and the executor's memory of
what failed (``unplaced`` and ``failures``, keyed by action key; a failure's condition
reason is ``CommandRefused`` or ``CommandFailed``, :mod:`reconciler.errors`) into a
:class:`~lattice.status.DeploymentStatus` per deployment and a
:class:`~lattice.status.BindingSetStatus` per binding set: ready/desired counts, where each
instance runs (or why it does not), a phase and a Flux-style Ready condition. Given the
previous report it keeps each entity's ``created`` time and a condition's
``last_transition`` while the condition stays the same.

Binding values are shown as git has them (templates unresolved): nothing here ever holds
a resolved secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from lattice.manifests import BindingSet, Deployment, DesiredState, ProviderKey
from lattice.protocol import ANN_KIND, ANN_NAME, HostInventory
from lattice.status import (
    BindingSetStatus,
    Condition,
    Count,
    DeploymentStatus,
    Phase,
    Placement,
    Reason,
    StatusReport,
)
from reconciler.actions import put_binding_key, start_actor_key, start_provider_key
from reconciler.errors import REFUSED, Failure, reason_of
from reconciler.matching import (
    KIND_DEPLOYMENT,
    OWNER_SEPARATOR,
    ActorSlots,
    Analysis,
    BindingMatch,
    DaemonGroup,
    Matcher,
    ProviderSpread,
    binding_entity,
    provider_entity,
    provider_replica,
)

Statuses = tuple[dict[str, DeploymentStatus], dict[str, BindingSetStatus]]


@dataclass
class _Tally:
    """What stands between one entity and Ready, collected while placing it."""

    unplaced: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    orphaned: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    crashing: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)

    def verdict(self, ready_message: str) -> tuple[Phase, Condition]:
        if self.crashing:
            return Phase.DEGRADED, Condition.stalled(Reason.CRASH_LOOP, self.crashing[0])
        if self.unplaced:
            return Phase.DEGRADED, Condition.stalled(Reason.UNPLACEABLE, self.unplaced[0])
        if self.failed:  # a refusal (waits for a change) before a retry (waits for time)
            first = min(self.failed, key=lambda m: reason_of(m) != REFUSED)
            return Phase.DEGRADED, Condition(type="Ready", status=False,
                                             reason=reason_of(first), message=first)
        if self.conflicts:
            return Phase.DEGRADED, Condition.stalled(Reason.CONFLICT, self.conflicts[0])
        if self.orphaned:
            return Phase.DEGRADED, Condition.stalled(
                Reason.WAITING_FOR_PROVIDER, self.orphaned[0])
        if self.waiting:
            return Phase.PROGRESSING, Condition.stalled(
                Reason.WAITING_FOR_PROVIDER, self.waiting[0])
        if self.pending:
            return Phase.PROGRESSING, Condition.reconciling(self.pending[0])
        return Phase.SYNCED, Condition.ready(ready_message)


def assess(
    desired: DesiredState,
    observed: Mapping[str, HostInventory],
    *,
    unplaced: Mapping[str, str],
    failures: Mapping[str, str],
    now: datetime,
    previous: StatusReport | None = None,
    crashes: Mapping[str, tuple[int, str]] | None = None,
    matcher: Matcher | None = None,
) -> Statuses:
    """Status of every deployment and binding set of ``desired`` against ``observed``.

    ``unplaced`` and ``failures`` map action keys (:mod:`reconciler.actions`) to the
    message of the last attempt; ``previous`` (the last report) carries creation and
    transition times over. ``crashes`` maps the start key of a crash-looping replica to
    (crashes in the window, last reason) (:mod:`reconciler.crashes`). Pure: ``now`` is
    the only clock. ``matcher`` (the planner's, kept by the agent) only saves work: the
    pass's plan and assessment share one analysis.
    """
    found = (matcher if matcher is not None else Matcher()).analyse(desired, observed)
    surplus = _surplus_by_owner(found)
    slots_of: dict[str, list[ActorSlots]] = {}  # one pass, not one scan per deployment
    for slots in found.actors:
        slots_of.setdefault(slots.deployment, []).append(slots)
    deps: dict[str, DeploymentStatus] = {}
    for name in sorted(desired.deployments):
        dep = desired.deployments[name]
        old_dep = previous.deployments.get(name) if previous else None
        deps[name] = _deployment(dep, desired.revision, found, slots_of.get(name, []),
                                 surplus.get(name, 0), unplaced, failures, now, old_dep,
                                 crashes or {})
    declared = {spec.key for dep in desired.deployments.values()
                for spec in dep.spec.providers}
    by_set: dict[str, list[BindingMatch]] = {}
    for m in found.bindings:
        by_set.setdefault(m.bindingset, []).append(m)
    bss: dict[str, BindingSetStatus] = {}
    for name in sorted(desired.bindingsets):
        old_bs = previous.bindingsets.get(name) if previous else None
        bss[name] = _bindingset(desired.bindingsets[name], desired.revision,
                                by_set.get(name, []), declared, failures, now, old_bs)
    return deps, bss


def _surplus_by_owner(found: Analysis) -> dict[str, int]:
    """How many owned instances each deployment still has to stop (scale-down, moves)."""
    out: dict[str, int] = {}
    for _host, inst, _why in found.surplus_actors:
        if inst.annotations.get(ANN_KIND) == KIND_DEPLOYMENT:
            name = inst.annotations.get(ANN_NAME, "")
            out[name] = out.get(name, 0) + 1
    for _host, prov, _why in found.surplus_providers:
        for name in prov.annotations.get(ANN_NAME, "").split(OWNER_SEPARATOR):
            out[name] = out.get(name, 0) + 1
    return out


def _deployment(
    dep: Deployment, revision: str, found: Analysis, own_slots: list[ActorSlots], surplus: int,
    unplaced: Mapping[str, str], failures: Mapping[str, str], now: datetime,
    old: DeploymentStatus | None, crashes: Mapping[str, tuple[int, str]],
) -> DeploymentStatus:
    name = dep.metadata.name
    tally = _Tally()
    placements: list[Placement] = []
    actors = Count()
    for slots in own_slots:
        if slots.moves:  # the planner has work: not Synced until the spread is even
            m = slots.moves[0]
            tally.pending.append(
                f"rebalancing {slots.actor_id[:12]}: {len(slots.moves)} move(s) planned; "
                f"host {found.hosts[m.source].name} runs {m.source_count}, host "
                f"{found.hosts[m.target].name} {m.target_count}")
        why_here = placement_reasons(slots)
        for r, inst in enumerate(slots.instances):
            label = slots.label(r) if slots.layout is not None else r
            key = start_actor_key(name, slots.actor_id, label)
            looping = crashes.get(key)
            if looping is not None:
                tally.crashing.append(f"replica {label} of {slots.actor_id[:12]} crashed "
                                      f"{looping[0]} times in 10 min; last: {looping[1]}")
            if inst is not None:
                host = found.host_of(inst)
                placements.append(Placement(
                    entity=slots.actor_id, kind="actor", host_id=host.host_id,
                    host_name=host.name, since=inst.started_at,
                    message=f"replica {label}" + (f", {looping[0]} crashes in 10 min"
                                                  if looping else "") + why_here[r]))
                continue
            share = why_here[r].removeprefix("; ").partition(":")[0]
            message = _problem(key, unplaced, failures, tally,
                               f"replica {label} not running yet" + (
                                   f" (restart backing off after {looping[0]} crashes)"
                                   if looping else ""), prefix=f"{share}: " if share else "")
            placements.append(Placement(entity=slots.actor_id, kind="actor", message=message))
        ready = sum(1 for i in slots.instances if i is not None)
        actors = Count(ready=actors.ready + ready,
                       desired=actors.desired + len(slots.instances))
    providers = Count()
    for spec in dep.spec.providers:
        if spec.daemon:
            providers = _daemon_provider(found.daemon_of[(name, spec.key)], placements,
                                         providers, unplaced, failures, tally)
            continue
        spread = found.spread_of.get((name, spec.key))
        if spread is not None:
            providers = _spread_provider(spread, placements, providers, unplaced, failures,
                                         tally)
            continue
        group = found.group_of[(name, spec.key)]
        entity = provider_entity(spec.id, spec.binding_name)
        if group.chosen is not None:
            host, prov = group.chosen
            placements.append(Placement(
                entity=entity, kind="provider", host_id=host.host_id, host_name=host.name,
                since=prov.started_at, message=f"vendor {prov.vendor_id}"))
            providers = Count(ready=providers.ready + 1, desired=providers.desired + 1)
            continue
        key = start_provider_key(spec.id, spec.binding_name, spec.vendor_id, group.rules.rules)
        message = _problem(key, unplaced, failures, tally, f"{entity} not running yet")
        placements.append(Placement(entity=entity, kind="provider", message=message))
        providers = Count(ready=providers.ready, desired=providers.desired + 1)
    if surplus:
        tally.pending.append(f"{surplus} instance(s) to stop")
    if actors.ready < actors.desired or providers.ready < providers.desired:
        tally.pending.insert(0, f"{actors.ready}/{actors.desired} actors, "
                                f"{providers.ready}/{providers.desired} providers ready")
    phase, cond = tally.verdict(f"{actors} actors, {providers} providers ready")
    return DeploymentStatus(
        name=name, labels=dep.metadata.labels, annotations=dep.metadata.annotations,
        revision=revision, phase=phase,
        spec=dep.spec.model_dump(mode="json"), actors=actors, providers=providers,
        placements=placements, conditions=[_carry(cond, old, now)],
        created=old.created if old and old.created else now)


def _bindingset(
    bs: BindingSet, revision: str, matches: list[BindingMatch], declared: set[ProviderKey],
    failures: Mapping[str, str], now: datetime, old: BindingSetStatus | None,
) -> BindingSetStatus:
    tally = _Tally()
    placements: list[Placement] = []
    ready = 0
    for m in matches:
        spec = m.spec
        entity = binding_entity(spec.actor, spec.capability_id, spec.binding)
        if not m.hosts:
            what = (provider_entity(spec.capability_id, spec.binding)
                    + (f" from {spec.vendor_id}" if spec.vendor_id else ""))
            if any(k.capability_id == spec.capability_id and k.binding_name == spec.binding
                   and spec.vendor_id in (None, k.vendor_id) for k in declared):
                message = f"waiting for provider {what} to run on some host"
                tally.waiting.append(message)
            else:
                message = f"no deployment declares provider {what}; the binding waits for one"
                tally.orphaned.append(message)
            placements.append(Placement(entity=entity, kind="binding", message=message))
            continue
        stale = {s.host.host_id: s for s in m.stale}
        for host in m.hosts:
            s = stale.get(host.host_id)
            if s is None:
                placements.append(Placement(entity=entity, kind="binding",
                                            host_id=host.host_id, host_name=host.name))
                continue
            if not m.wins:
                message = f"binding set {m.owner} declares this binding too and wins (by name)"
                tally.conflicts.append(message)
            else:
                key = put_binding_key(host.host_id, spec.actor, spec.capability_id,
                                      spec.binding)
                fallback = "missing" if s.observed is None else "differs from git"
                message = _problem(key, {}, failures, tally, f"{fallback} on host {host.name}")
            placements.append(Placement(entity=entity, kind="binding",
                                        host_id=host.host_id, host_name=host.name,
                                        message=message))
        if m.ready:
            ready += 1
    count = Count(ready=ready, desired=len(matches))
    if count.ready < count.desired:
        tally.pending.insert(0, f"{count} bindings ready")
    phase, cond = tally.verdict(f"{count} bindings ready")
    return BindingSetStatus(
        name=bs.metadata.name, labels=bs.metadata.labels,
        annotations=bs.metadata.annotations, revision=revision, phase=phase,
        spec=bs.spec.model_dump(mode="json"), bindings=count, placements=placements,
        conditions=[_carry(cond, old, now)],
        created=old.created if old and old.created else now)


def placement_reasons(slots: ActorSlots) -> list[str]:
    """Per replica, why it is where it is (``; spread east: 3/3 (target 3)``, ``; daemon on
    every host with edge``), empty for plain replicas. Pure; read by :func:`assess` (the
    placements' messages, which ``latticectl describe`` shows)."""
    lay = slots.layout
    n = len(slots.instances)
    if lay is None:
        return [""] * n
    if lay.daemon:
        return [f"; daemon on every host with {slots.rules}"] * n
    out = [""] * n
    for share in lay.shares:
        run = range(share.first, share.first + share.target)
        ready = sum(1 for r in run if slots.instances[r] is not None)
        for r in run:
            out[r] = f"; spread {share.name}: {ready}/{share.target} (target {share.target})"
    return out


def _daemon_provider(group: DaemonGroup, placements: list[Placement], count: Count,
                     unplaced: Mapping[str, str], failures: Mapping[str, str],
                     tally: _Tally) -> Count:
    """A daemon provider's placements: one per host satisfying its rules."""
    cap, bn, vendor = group.key
    entity = provider_entity(cap, bn)
    why = f"daemon on every host with {group.rules}"
    ready = 0
    for host, prov in group.on:
        if prov is not None:
            ready += 1
            placements.append(Placement(
                entity=entity, kind="provider", host_id=host.host_id, host_name=host.name,
                since=prov.started_at, message=f"vendor {prov.vendor_id}; {why}"))
            continue
        key = start_provider_key(cap, bn, vendor, group.rules.rules, host.host_id)
        message = _problem(key, unplaced, failures, tally,
                           f"{entity} not running on host {host.name} yet ({why})")
        placements.append(Placement(entity=entity, kind="provider", message=message))
    return Count(ready=count.ready + ready, desired=count.desired + len(group.on))


def _spread_provider(spread: ProviderSpread, placements: list[Placement], count: Count,
                     unplaced: Mapping[str, str], failures: Mapping[str, str],
                     tally: _Tally) -> Count:
    """A provider's replicas: each share's instances, then what each still lacks."""
    cap, bn, vendor = spread.key
    entity = provider_entity(cap, bn)
    ready = desired = 0
    for share in spread.shares:
        label = f"spread {share.name}" if share.name else "replicas"
        why = f"; {label}: {len(share.chosen)}/{share.target} on hosts with {share.rules}"
        desired += share.target
        for host, prov in share.chosen:
            ready += 1
            placements.append(Placement(
                entity=entity, kind="provider", host_id=host.host_id, host_name=host.name,
                since=prov.started_at, message=f"vendor {prov.vendor_id}{why}"))
        for n in range(len(share.chosen), share.target):
            replica = provider_replica(share.name, n)
            key = start_provider_key(cap, bn, vendor, share.rules.rules, None, replica)
            message = _problem(key, unplaced, failures, tally,
                               f"{entity} replica {replica} not running yet{why}",
                               prefix=f"spread {share.name}: " if share.name else "")
            placements.append(Placement(entity=entity, kind="provider", message=message))
    return Count(ready=count.ready + ready, desired=count.desired + desired)


def _problem(key: str, unplaced: Mapping[str, str], failures: Mapping[str, str],
             tally: _Tally, fallback: str, *, prefix: str = "") -> str:
    """The executor's message for ``key`` (unplaced first), noted in ``tally``; else
    ``fallback``, noted as pending work. ``prefix`` names what the key places (a spread
    share), so a condition says which share no host takes."""
    if key in unplaced:
        tally.unplaced.append(prefix + unplaced[key])
        return prefix + unplaced[key]
    if key in failures:
        failed = failures[key]
        if prefix:  # keep the failure's reason (refused or retrying)
            failed = Failure(prefix + failed, reason_of(failed))
        tally.failed.append(failed)
        return failed
    tally.pending.append(fallback)
    return fallback


def _carry(cond: Condition, old: DeploymentStatus | BindingSetStatus | None,
           now: datetime) -> Condition:
    """``cond`` with the last transition time of the same condition in ``old`` if its
    status and reason did not change, else ``now``."""
    if old is not None:
        for prev in old.conditions:
            if (prev.type == cond.type and prev.status == cond.status
                    and prev.reason == cond.reason and prev.last_transition is not None):
                return cond.model_copy(update={"last_transition": prev.last_transition})
    return cond.model_copy(update={"last_transition": now})
