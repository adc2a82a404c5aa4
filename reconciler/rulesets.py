"""The vocabulary of matching: rule sets, entity names, and the actor-slot record.

Pure. Shared by :mod:`reconciler.matching` (providers, bindings, the analysis) and
:mod:`reconciler.matching_actors` (replicas), and by the planner and the assessment
through the names :mod:`reconciler.matching` re-exports.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple

from lattice import selectors
from lattice.protocol import ActorInstance, BindingInstance, HostInventory, ProviderInstance

KIND_DEPLOYMENT = "Deployment"
KIND_BINDINGSET = "BindingSet"
#: Separates the owner deployments in a shared provider's name annotation.
OWNER_SEPARATOR = ","
REPLICA_LABELS = tuple(str(i) for i in range(10_001))

Rules = tuple[str, ...]
Placed = tuple[HostInventory, ActorInstance]
Served = tuple[HostInventory, ProviderInstance]
SurplusActor = tuple[HostInventory, ActorInstance, str]
SurplusProvider = tuple[HostInventory, ProviderInstance, str]
SurplusBinding = tuple[HostInventory, BindingInstance, str]


def provider_entity(capability_id: str, binding_name: str) -> str:
    return f"{capability_id}/{binding_name}"


def binding_entity(actor_id: str, capability_id: str, binding_name: str) -> str:
    return f"{actor_id}->{capability_id}/{binding_name}"


@lru_cache(maxsize=4096)
def canonical_rules(rules: Rules) -> Rules:
    """Affinity rules in one spelling (``leds == 12`` becomes ``leds=12``), sorted and
    deduplicated, so two lists that say the same thing are one rule set."""
    return tuple(sorted({str(s) for s in selectors.parse_all(rules)}))


class RuleSet:
    """A canonical rule set, its parsed selectors, and which hosts satisfy it (cached for
    one analysis: a host's labels do not change within one observed snapshot)."""

    __slots__ = ("_selectors", "rules", "verdicts")

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self._selectors = selectors.parse_all(rules)
        #: host id -> whether that host satisfies the rules (filled by :meth:`allows`)
        self.verdicts: dict[str, bool] = {}

    def allows(self, host: HostInventory) -> bool:
        if not self._selectors:
            return True
        ok = self.verdicts.get(host.host_id)
        if ok is None:
            labels = host.labels
            ok = self.verdicts[host.host_id] = all(s.matches(labels) for s in self._selectors)
        return ok

    def __str__(self) -> str:
        return ", ".join(self.rules) or "(no affinity rules)"


class RuleSets:
    """Interns rule sets: each distinct list of rules is parsed once per analysis."""

    def __init__(self) -> None:
        self._by_raw: dict[Rules, RuleSet] = {}
        self._by_canon: dict[Rules, RuleSet] = {}

    def forget(self, host_ids: set[str]) -> None:
        """Drop what every rule set remembers of these hosts (their records changed: the
        labels may have; the next :meth:`RuleSet.allows` asks the new record)."""
        for rs in self._by_canon.values():
            verdicts = rs.verdicts
            for hid in host_ids:
                verdicts.pop(hid, None)

    def get(self, raw: Sequence[str]) -> RuleSet:
        key = tuple(raw)
        rs = self._by_raw.get(key)
        if rs is None:
            canon = canonical_rules(key)
            rs = self._by_canon.get(canon)
            if rs is None:
                rs = self._by_canon[canon] = RuleSet(canon)
            self._by_raw[key] = rs
        return rs


class Share(NamedTuple):
    """One spread share as placed: its ``target`` replicas are slots ``first`` to
    ``first + target - 1``, all under ``rules`` (requirements plus affinity rules)."""

    name: str
    rules: RuleSet
    target: int
    first: int


class Layout(NamedTuple):
    """The replicas of one spread or daemon spec: ``labels[r]`` is replica ``r``'s
    annotation, ``rules[r]`` where it may run, ``hosts[r]`` (daemons) the host it is for."""

    labels: tuple[str, ...]
    rules: tuple[RuleSet, ...]
    shares: tuple[Share, ...] = ()
    hosts: tuple[str, ...] = ()
    daemon: bool = False


class Move(NamedTuple):
    """Replica ``replica`` (a slot index) of ``slots`` goes from host ``source`` to host
    ``target``, which has ``target_count`` replicas of it against ``source_count``."""

    replica: int
    source: str
    target: str
    source_count: int
    target_count: int


class ActorSlots(NamedTuple):
    """The replicas of one actor of one deployment: replica ``r`` is served by
    ``instances[r]`` (its host: :meth:`Analysis.host_of`), or by nothing (None)."""

    deployment: str
    actor_id: str
    rules: RuleSet
    instances: list[ActorInstance | None]
    limits: str | None = None  #: the ``vinculum.io/limits`` its instances carry
    layout: Layout | None = None  #: spread shares or daemon hosts (None: plain replicas)
    max_per_host: int | None = None
    moves: tuple[Move, ...] = ()  #: rebalancing moves (:mod:`reconciler.placement`)

    def label(self, r: int) -> str:
        """Replica ``r``'s annotation: ``3``, ``east-0``, or a daemon's host id."""
        return self.layout.labels[r] if self.layout is not None else REPLICA_LABELS[r]

    def rules_of(self, r: int) -> RuleSet:
        """Where replica ``r`` may run."""
        return self.layout.rules[r] if self.layout is not None else self.rules
