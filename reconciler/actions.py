"""Actions: what the planner asks the executor to do, as a closed set of small records.

Pure data, no I/O. :func:`reconciler.planner.plan` returns a sorted list of these; the
executor (:mod:`reconciler.executor`) matches on their type and is the only code that turns
them into lattice traffic. Each record carries the ``reason`` it exists (for logs and
status), a ``phase`` and a stable ``key``:

* ``phase`` orders the work make-before-break: everything in :attr:`ActionPhase.START`
  runs before :attr:`ActionPhase.BIND`, which runs before :attr:`ActionPhase.STOP`.
* ``key`` names the piece of work independently of when it was planned, so the executor
  can tell that an action planned now is the one already in flight (no second start), and
  so the assessment can find the unplaced/failure message of a given replica or binding.
  The ``*_key`` functions below build the same keys without building the action.

Mappings (annotations, binding values) are tuples of ``(key, value)`` pairs sorted by key,
so actions are hashable and compare by value; ``dict(action.annotations)`` gives the dict.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, NamedTuple

Pairs = tuple[tuple[str, str], ...]


class ActionPhase(IntEnum):
    """When an action runs in one execution: starts, then binding puts, then stops."""

    START = 0
    BIND = 1
    STOP = 2


def start_actor_key(deployment: str, actor_id: str, replica: int | str) -> str:
    return f"actor.start/{deployment}/{actor_id}/{replica}"


def move_actor_key(deployment: str, actor_id: str, replica: int | str) -> str:
    """A rebalancing move of a running replica (a start on another host)."""
    return f"actor.move/{deployment}/{actor_id}/{replica}"


def stop_actor_key(host_id: str, actor_id: str, instance_id: str) -> str:
    return f"actor.stop/{host_id}/{actor_id}/{instance_id}"


def start_provider_key(
    capability_id: str, binding_name: str, vendor_id: str, constraints: tuple[str, ...],
    host_id: str | None = None, replica: str | None = None,
) -> str:
    """One key per provider group: the same provider under another rule set is other work
    (a daemon's group has one per host, a provider with replicas one per missing one)."""
    at = f"@{host_id}" if host_id is not None else ""
    nth = f"#{replica}" if replica is not None else ""
    return (f"provider.start/{capability_id}/{binding_name}/{vendor_id}/"
            f"{','.join(constraints)}{at}{nth}")


def stop_provider_key(host_id: str, capability_id: str, binding_name: str) -> str:
    return f"provider.stop/{host_id}/{capability_id}/{binding_name}"


def put_binding_key(host_id: str, actor_id: str, capability_id: str, binding_name: str) -> str:
    return f"binding.put/{host_id}/{actor_id}/{capability_id}/{binding_name}"


def delete_binding_key(
    host_id: str, actor_id: str, capability_id: str, binding_name: str
) -> str:
    return f"binding.del/{host_id}/{actor_id}/{capability_id}/{binding_name}"


def pairs(mapping: dict[str, str]) -> Pairs:
    """A mapping as sorted ``(key, value)`` pairs (the form actions hold)."""
    return tuple(sorted(mapping.items()))


class Placing(NamedTuple):
    """Where a :class:`StartActor` may go beyond its constraints: never to
    ``exclude_hosts``; only to ``host_id`` when set; ``move_from``: a rebalancing move."""

    exclude_hosts: tuple[str, ...] = ()
    host_id: str | None = None
    move_from: str | None = None


@dataclass(frozen=True, slots=True)
class StartActor:
    """Start replica ``replica`` (``3``, a spread share's ``east-0``, a daemon's host id)
    of an actor of ``deployment`` on a host the executor picks by auction under
    ``constraints``, preferring hosts not in ``avoid_hosts`` (hosts that already run
    another replica of the same deployment and actor) and never one in ``exclude_hosts``
    (at its ``max_per_host``); or, with ``host_id``, on that host without an auction (a
    daemon's instance, a rebalancing move). ``move_from`` names the host a move relieves:
    the executor runs at most one move per deployment per rebalance interval."""

    phase: ClassVar[ActionPhase] = ActionPhase.START
    deployment: str
    actor_id: str
    replica: int | str
    constraints: tuple[str, ...]
    annotations: Pairs
    avoid_hosts: tuple[str, ...]
    reason: str
    placing: Placing | None = None  #: one field, not three: plans build 10,000 of these

    @property
    def exclude_hosts(self) -> tuple[str, ...]:
        return self.placing.exclude_hosts if self.placing is not None else ()

    @property
    def host_id(self) -> str | None:
        return self.placing.host_id if self.placing is not None else None

    @property
    def move_from(self) -> str | None:
        return self.placing.move_from if self.placing is not None else None

    @property
    def key(self) -> str:
        if self.move_from is not None:
            return move_actor_key(self.deployment, self.actor_id, self.replica)
        return start_actor_key(self.deployment, self.actor_id, self.replica)


@dataclass(frozen=True, slots=True)
class StopActor:
    """Stop one owned actor instance."""

    phase: ClassVar[ActionPhase] = ActionPhase.STOP
    host_id: str
    actor_id: str
    instance_id: str
    reason: str

    @property
    def key(self) -> str:
        return stop_actor_key(self.host_id, self.actor_id, self.instance_id)


@dataclass(frozen=True, slots=True)
class StartProvider:
    """Start a provider on a host the executor picks by auction under ``constraints``
    (one that does not run this capability and binding name yet), or with ``host_id`` on
    that host without an auction (a daemon's instance); ``owners`` are the deployments
    that need it there; ``replica`` names one of a provider's replicas."""

    phase: ClassVar[ActionPhase] = ActionPhase.START
    capability_id: str
    binding_name: str
    vendor_id: str
    constraints: tuple[str, ...]
    annotations: Pairs
    owners: tuple[str, ...]
    reason: str
    host_id: str | None = None
    #: which of a provider's replicas (``east-1``; None: a provider run once)
    replica: str | None = None

    @property
    def key(self) -> str:
        return start_provider_key(self.capability_id, self.binding_name, self.vendor_id,
                                  self.constraints, self.host_id, self.replica)


@dataclass(frozen=True, slots=True)
class StopProvider:
    """Stop an owned provider (its bindings on that host go with it)."""

    phase: ClassVar[ActionPhase] = ActionPhase.STOP
    host_id: str
    capability_id: str
    binding_name: str
    reason: str

    @property
    def key(self) -> str:
        return stop_provider_key(self.host_id, self.capability_id, self.binding_name)


@dataclass(frozen=True, slots=True)
class PutBinding:
    """Create or overwrite a binding on the host that runs its provider."""

    phase: ClassVar[ActionPhase] = ActionPhase.BIND
    host_id: str
    actor_id: str
    capability_id: str
    binding_name: str
    vendor_id: str | None
    values: Pairs
    annotations: Pairs
    reason: str

    @property
    def key(self) -> str:
        return put_binding_key(self.host_id, self.actor_id, self.capability_id, self.binding_name)


@dataclass(frozen=True, slots=True)
class DeleteBinding:
    """Remove an owned binding."""

    phase: ClassVar[ActionPhase] = ActionPhase.STOP
    host_id: str
    actor_id: str
    capability_id: str
    binding_name: str
    reason: str

    @property
    def key(self) -> str:
        return delete_binding_key(
            self.host_id, self.actor_id, self.capability_id, self.binding_name)


Action = StartActor | StopActor | StartProvider | StopProvider | PutBinding | DeleteBinding
ACTION_TYPES: tuple[type[Action], ...] = (
    StartActor, StopActor, StartProvider, StopProvider, PutBinding, DeleteBinding,
)
