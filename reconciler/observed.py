"""Observed state: what the lattice runs, as the agent knows it.

Built from a ``ping`` at start-up (:meth:`ObservedState.reset`), then kept current from
events (:meth:`ObservedState.apply_event`) and heartbeats. A host whose connection closed
and did not come back within the grace is dropped at once by :meth:`ObservedState.lost`
(the server's advisories, :mod:`reconciler.liveness`); one that misses 3 heartbeats (hung,
or an open lattice without advisories) by :meth:`ObservedState.expire`. Either way its
entities are no longer observed, and a heartbeat or ping answer from it later brings it
back as a host that joined. The agent
keeps no database: after a restart this is rebuilt from a ping, so it never starts a second
copy of what already runs.

:meth:`snapshot` hands the planner an immutable view (a host whose heartbeat says nothing
new keeps its inventory object, so the planner's per-host memos hold); the executor checks
against it that what a host acked has happened (confirmation by event or inventory).

:meth:`ObservedState.decode_ping` parses ping answers, and an answer whose bytes are those
of the host's last answer but for its uptime is not parsed again: at 10,000 hosts a
resync's ping is 10,000 answers, nearly all unchanged.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType

from lattice.clock import Clock, monotonic
from lattice.protocol import (
    ActorEvent,
    ActorInstance,
    BindingEvent,
    BindingInstance,
    CloudEvent,
    EventType,
    HostInventory,
    HostStopped,
    Message,
    ProviderEvent,
    ProviderInstance,
    decode,
)

log = logging.getLogger(__name__)

MISSED_HEARTBEATS = 3


class Change(StrEnum):
    """What an event changed, as far as reconciling is concerned."""

    NONE = "none"
    HOST_JOINED = "host_joined"
    HOST_LEFT = "host_left"
    HOST_CHANGED = "host_changed"
    ENTITY_STARTED = "entity_started"
    ENTITY_STOPPED = "entity_stopped"
    BINDING_CHANGED = "binding_changed"


@dataclass
class _Host:
    inventory: HostInventory
    last_seen: float


class ObservedState:
    """The agent's model of the lattice, updated from pings, heartbeats and events.

    ``clock`` (monotonic seconds) times the heartbeats that :meth:`expire` judges by;
    tests pass a :class:`lattice.clock.ManualClock`.
    """

    def __init__(self, *, clock: Clock = monotonic) -> None:
        self._hosts: dict[str, _Host] = {}
        self._now = clock
        self.version = 0  # bumped on every change; cheap "did anything move?" check
        #: no host can have missed its heartbeats before this time (a lower bound: seen
        #: hosts only move their deadline later), so :meth:`expire` need not look sooner
        self._next_expiry = float("-inf")
        #: the last ping's answers, uptime cut out -> their inventory (see decode_ping)
        self._answers: dict[bytes, HostInventory] = {}
        self._keys: dict[str, bytes] = {}  # host id -> its key in _answers

    # ------------------------------------------------------------------ reading
    @property
    def host_ids(self) -> list[str]:
        return sorted(self._hosts)

    def __len__(self) -> int:
        return len(self._hosts)

    def get(self, host_id: str) -> HostInventory | None:
        h = self._hosts.get(host_id)
        return h.inventory if h else None

    def snapshot(self) -> Mapping[str, HostInventory]:
        """An immutable view for the planner (inventories are frozen models)."""
        return MappingProxyType({hid: h.inventory for hid, h in self._hosts.items()})

    # ------------------------------------------------------------------ writing
    def reset(self, inventories: list[HostInventory]) -> None:
        """Replace everything with the answers to a ping."""
        now = self._now()
        self._hosts = {inv.host_id: _Host(inv, now) for inv in inventories}
        self._next_expiry = float("-inf")
        self.version += 1

    def decode_ping(self, answers: Sequence[bytes]) -> list[HostInventory]:
        """The inventories in the ping answers ``answers`` (unreadable ones dropped and
        logged). An answer that is byte for byte the one its host gave to the last ping,
        but for ``uptime_s``, gives the inventory parsed then (uptime is not compared,
        :data:`_VOLATILE`); only the last ping's answers are kept."""
        known, seen, keys = self._answers, {}, {}
        out = []
        for data in answers:
            key = _UPTIME.sub(b"", data, count=1)
            inv = known.get(key)
            if inv is None:
                inv = decode(HostInventory, data, subject="ping answer")
                if inv is None:
                    continue
            seen[key] = inv
            keys[inv.host_id] = key
            out.append(inv)
        self._answers, self._keys = seen, keys
        return out

    def merge_ping(self, inventories: list[HostInventory]) -> list[str]:
        """Take fresh inventories from a ping without dropping hosts that did not answer
        (they may have been slow); returns the ids of hosts new to us."""
        now = self._now()
        new = []
        for inv in inventories:
            old = self._hosts.get(inv.host_id)
            if old is None:
                new.append(inv.host_id)
            elif old.inventory is inv or _unchanged(old.inventory, inv):
                old.last_seen = now  # keep the object: the planner's memos stay valid
                if (key := self._keys.get(inv.host_id)) is not None:
                    self._answers[key] = old.inventory  # the next same answer: no compare
                continue
            self._put(inv, now)
        self.version += 1
        return new

    def expire(self) -> list[str]:
        """Drop hosts that missed :data:`MISSED_HEARTBEATS` heartbeats; their ids.

        Called 4 times a second by the agent: on 10,000 hosts a scan costs ~15 ms, so it
        scans only once the earliest deadline of the last scan (or of a host seen since)
        has come; a heartbeat only moves a deadline later."""
        now = self._now()
        if now < self._next_expiry:
            return []
        gone = []
        earliest = float("inf")
        for hid, h in self._hosts.items():
            deadline = h.last_seen + _silence(h.inventory)
            if now > deadline:
                gone.append(hid)
            elif deadline < earliest:
                earliest = deadline
        self._next_expiry = earliest
        for hid in gone:
            log.warning("host %s missed %d heartbeats: considered gone", hid, MISSED_HEARTBEATS)
            del self._hosts[hid]
        if gone:
            self.version += 1
        return gone

    def lost(self, host_id: str) -> Change:
        """Drop ``host_id`` now: its connection closed and did not come back
        (:mod:`reconciler.liveness`). ``HOST_LEFT`` if it was known, else ``NONE`` (a host
        already expired, or one the agent never saw)."""
        if self._hosts.pop(host_id, None) is None:
            return Change.NONE
        self.version += 1
        return Change.HOST_LEFT

    def apply_event(self, ev: CloudEvent, data: Message | None = None) -> Change:
        """Update from one lattice event (``data``: its ``typed_data()``, when the caller
        parsed it already); what it changed."""
        et = ev.event_type
        data = ev.typed_data() if data is None else data
        if et is None or data is None:
            return Change.NONE
        match data:
            case HostInventory():
                return self._host_seen(data, et)
            case HostStopped():
                if self._hosts.pop(data.host_id, None) is None:
                    return Change.NONE
                self.version += 1
                return Change.HOST_LEFT
            case ActorEvent():
                return self._actor_event(data, data.started_at or ev.time,
                                         started=et == EventType.ACTOR_STARTED)
            case ProviderEvent():
                return self._provider_event(
                    data, data.started_at or ev.time, started=et == EventType.PROVIDER_STARTED
                )
            case BindingEvent():
                return self._binding_event(data, put=et == EventType.BINDING_PUT)
        return Change.NONE

    def _host_seen(self, inv: HostInventory, et: EventType) -> Change:
        old = self._hosts.get(inv.host_id)
        if old is not None and _unchanged(old.inventory, inv):
            old.last_seen = self._now()  # keep the object: the planner's memos stay valid
            return Change.NONE
        self._put(inv, self._now())
        if old is None:
            self.version += 1
            return Change.HOST_JOINED
        if old.inventory.labels != inv.labels:
            self.version += 1
            return Change.HOST_CHANGED
        if _content(old.inventory) != _content(inv):
            self.version += 1
            # a heartbeat that shows fewer entities than we thought: something stopped
            return Change.ENTITY_STOPPED if _count(inv) < _count(old.inventory) else (
                Change.HOST_CHANGED
            )
        return Change.NONE

    def _put(self, inv: HostInventory, now: float) -> None:
        self._hosts[inv.host_id] = _Host(inv, now)
        # its heartbeat period may be shorter than any other's: expire() looks then
        self._next_expiry = min(self._next_expiry, now + _silence(inv))

    def _update(self, host_id: str, **fields: object) -> bool:
        h = self._hosts.get(host_id)
        if h is None:
            return False
        h.inventory = h.inventory.model_copy(update=fields)
        h.last_seen = self._now()
        self.version += 1
        return True

    def _actor_event(self, d: ActorEvent, at: datetime, *, started: bool) -> Change:
        inv = self.get(d.host_id)
        if inv is None:
            return Change.NONE
        actors = [a for a in inv.actors if a.instance_id != d.instance_id]
        if started:
            if len(actors) != len(inv.actors):
                return Change.NONE  # already recorded (from the ack)
            actors.append(ActorInstance(actor_id=d.actor_id, instance_id=d.instance_id,
                                        annotations=d.annotations, started_at=at))
            self._update(d.host_id, actors=actors)
            return Change.ENTITY_STARTED
        if len(actors) == len(inv.actors):
            return Change.NONE
        self._update(d.host_id, actors=actors)
        return Change.ENTITY_STOPPED

    def _provider_event(self, d: ProviderEvent, at: datetime, *, started: bool) -> Change:
        inv = self.get(d.host_id)
        if inv is None:
            return Change.NONE
        provs = [p for p in inv.providers
                 if (p.capability_id, p.binding_name) != (d.capability_id, d.binding_name)]
        if started:
            if any(p.instance_id == d.instance_id for p in inv.providers):
                return Change.NONE
            provs.append(ProviderInstance(
                capability_id=d.capability_id, binding_name=d.binding_name,
                vendor_id=d.vendor_id, instance_id=d.instance_id, annotations=d.annotations,
                started_at=at))
            self._update(d.host_id, providers=provs)
            return Change.ENTITY_STARTED
        if len(provs) == len(inv.providers):
            return Change.NONE
        bindings = [b for b in inv.bindings
                    if (b.capability_id, b.binding_name) != (d.capability_id, d.binding_name)]
        self._update(d.host_id, providers=provs, bindings=bindings)
        return Change.ENTITY_STOPPED

    def _binding_event(self, d: BindingEvent, *, put: bool) -> Change:
        inv = self.get(d.host_id)
        if inv is None:
            return Change.NONE
        key = (d.actor_id, d.capability_id, d.binding_name)
        rest = [b for b in inv.bindings
                if (b.actor_id, b.capability_id, b.binding_name) != key]
        if put:
            rest.append(BindingInstance(actor_id=d.actor_id, capability_id=d.capability_id,
                                        binding_name=d.binding_name, vendor_id=d.vendor_id,
                                        values=d.values, annotations=d.annotations))
        elif len(rest) == len(inv.bindings):
            return Change.NONE
        self._update(d.host_id, bindings=rest)
        return Change.BINDING_CHANGED


#: inventory fields that change on every heartbeat without anything having changed
_VOLATILE = frozenset({"uptime_s"})
#: ``uptime_s`` in an encoded inventory (pydantic writes a float: digits, '.', 'e', sign)
_UPTIME = re.compile(rb'"uptime_s":[-+0-9.eE]+,?')
_COMPARED = tuple(f for f in HostInventory.model_fields if f not in _VOLATILE)


def _silence(inv: HostInventory) -> float:
    """How long a host may say nothing before it is considered gone."""
    return MISSED_HEARTBEATS * max(inv.heartbeat_s, 0.1)


def _unchanged(old: HostInventory, new: HostInventory) -> bool:
    """Whether ``new`` says exactly what ``old`` did (uptime aside). Such a heartbeat or
    ping answer keeps the old object, so everything memoised by inventory object (the
    planner's per-host indexes) stays valid in a converged lattice."""
    return all(getattr(old, f) == getattr(new, f) for f in _COMPARED)


def _content(inv: HostInventory) -> tuple[object, ...]:
    return (
        sorted(a.instance_id for a in inv.actors),
        sorted(p.instance_id for p in inv.providers),
        sorted((b.actor_id, b.capability_id, b.binding_name, tuple(sorted(b.values.items())))
               for b in inv.bindings),
    )


def _count(inv: HostInventory) -> int:
    return len(inv.actors) + len(inv.providers) + len(inv.bindings)
