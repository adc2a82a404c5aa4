"""What one host runs: its actors, providers and bindings, and the answers derived from them.

Plain bookkeeping with no I/O: :mod:`hostagent.commands` mutates a :class:`HostState`
after the runtime did the work; :mod:`hostagent.host` reads it to build the inventory
(ping replies, heartbeats) and to answer auctions with :func:`auction_reply`, which is pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from lattice import selectors
from lattice.errors import SelectorError
from lattice.protocol import (
    ActorInstance,
    Annotations,
    AuctionReply,
    AuctionRequest,
    BindingInstance,
    HostInventory,
    ProviderInstance,
    identity_annotations,
    utcnow,
)

ProviderKey = tuple[str, str]  # (capability_id, binding_name)
BindingKey = tuple[str, str, str]  # (actor_id, capability_id, binding_name)


@dataclass(kw_only=True)
class HostState:
    """The identity of a host and everything it runs."""

    host_id: str
    name: str
    labels: dict[str, str]
    heartbeat_s: float = 5.0
    started_at: datetime = field(default_factory=utcnow)
    actors: dict[str, ActorInstance] = field(default_factory=dict)  # by instance_id
    providers: dict[ProviderKey, ProviderInstance] = field(default_factory=dict)
    bindings: dict[BindingKey, BindingInstance] = field(default_factory=dict)

    @property
    def load(self) -> int:
        """How many actors and providers run here (auction bids carry it)."""
        return len(self.actors) + len(self.providers)

    def find_actor(self, actor_id: str, annotations: Annotations) -> ActorInstance | None:
        """The instance of ``actor_id`` with the same identity annotations, if one runs."""
        wanted = identity_annotations(annotations)
        for inst in self.actors.values():
            if inst.actor_id == actor_id and identity_annotations(inst.annotations) == wanted:
                return inst
        return None

    def select_actors(
        self, actor_id: str, instance_id: str | None, annotations: Annotations
    ) -> list[ActorInstance]:
        """Instances a stop applies to: ``instance_id`` (of ``actor_id``), or every
        instance of ``actor_id`` whose annotations include all of ``annotations``."""
        if instance_id is not None:
            inst = self.actors.get(instance_id)
            return [inst] if inst is not None and inst.actor_id == actor_id else []
        return [
            inst for inst in self.actors.values()
            if inst.actor_id == actor_id
            and all(inst.annotations.get(k) == v for k, v in annotations.items())
        ]

    def bindings_of(self, capability_id: str, binding_name: str) -> list[BindingInstance]:
        """Bindings served by the provider (capability_id, binding_name)."""
        return [
            b for b in self.bindings.values()
            if (b.capability_id, b.binding_name) == (capability_id, binding_name)
        ]

    def inventory(self, *, now: datetime | None = None) -> HostInventory:
        """The full inventory, as ping replies and heartbeats carry it."""
        now = now or utcnow()
        return HostInventory(
            host_id=self.host_id,
            name=self.name,
            labels=dict(self.labels),
            started_at=self.started_at,
            uptime_s=round(max(0.0, (now - self.started_at).total_seconds()), 3),
            heartbeat_s=self.heartbeat_s,
            actors=sorted(self.actors.values(), key=lambda a: (a.actor_id, a.started_at)),
            providers=[self.providers[k] for k in sorted(self.providers)],
            bindings=[self.bindings[k] for k in sorted(self.bindings)],
        )


def decline_reason(request: AuctionRequest, kind: str, state: HostState) -> str:
    """Why this host does not bid on ``request``, or ``""`` when it bids. Pure."""
    if request.kind != kind:
        return f"auction of kind {request.kind} sent to the {kind} auction subject"
    if kind == "actor" and not request.actor_id:
        return "actor auction without actor_id"
    if kind == "provider" and not request.capability_id:
        return "provider auction without capability_id"
    try:
        rules = selectors.parse_all(request.constraints)
    except SelectorError as exc:
        return f"invalid constraint {exc.rule!r}: {exc.why}"
    unmet = selectors.unmet(rules, state.labels)
    if unmet:
        return "; ".join(unmet)
    if kind == "provider":
        key = (request.capability_id or "", request.binding_name or "default")
        if key in state.providers:
            return f"already runs provider {key[0]}/{key[1]}"
    return ""


def auction_reply(request: AuctionRequest, kind: str, state: HostState) -> AuctionReply:
    """This host's bid or decline for ``request`` received on the ``kind`` subject. Pure;
    the host publishes the result to the requester."""
    reason = decline_reason(request, kind, state)
    return AuctionReply(
        auction_id=request.auction_id,
        host_id=state.host_id,
        bid=not reason,
        reason=reason,
        load=state.load,
        labels=dict(state.labels),
    )


def labels_view(labels: Mapping[str, str]) -> str:
    """Labels as ``k=v,k=v`` for log lines."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
