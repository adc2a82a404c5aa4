"""The subjects of a lattice, all under ``lattice.<lattice_id>`` (re-exported by
:mod:`lattice.protocol`)."""

from __future__ import annotations

from typing import Literal

from lattice.protocol.events import (
    EventType,
)
from lattice.protocol.models import (
    DEFAULT_LATTICE,
    CommandOp,
)


class Subjects:
    """The subjects of one lattice, all under ``lattice.<lattice_id>``.

    >>> Subjects("default").host_command("H1", CommandOp.ACTOR_START)
    'lattice.default.ctl.host.H1.actor.start'
    """

    def __init__(self, lattice_id: str = DEFAULT_LATTICE) -> None:
        if not lattice_id or any(c in lattice_id for c in " .*>\t\n"):
            raise ValueError(f"invalid lattice id {lattice_id!r}: no dots, spaces or wildcards")
        self.lattice_id = lattice_id
        self.prefix = f"lattice.{lattice_id}"

    @property
    def ping(self) -> str:
        return f"{self.prefix}.ctl.ping"

    def auction(self, kind: Literal["actor", "provider"]) -> str:
        return f"{self.prefix}.ctl.auction.{kind}"

    def host_command(self, host_id: str, op: CommandOp | str) -> str:
        return f"{self.prefix}.ctl.host.{host_id}.{CommandOp(op).value}"

    def host_commands(self, host_id: str) -> str:
        """Wildcard a host subscribes to for all its commands."""
        return f"{self.prefix}.ctl.host.{host_id}.>"

    def event(self, event_type: EventType | str, source: str) -> str:
        """Where ``source`` (a host id) publishes an event: its id is in the subject, so
        the server can hold each host to its own (lattice.auth.roles)."""
        return f"{self.prefix}.evt.{source}.{EventType(event_type).value}"

    def event_source(self, subject: str) -> str | None:
        """The source token of an event subject, or None when it is not one."""
        head = f"{self.prefix}.evt."
        if not subject.startswith(head):
            return None
        source, dot, _ = subject[len(head):].partition(".")
        return source if dot and source else None

    @property
    def events(self) -> str:
        """Wildcard for every event."""
        return f"{self.prefix}.evt.>"

    @property
    def nudge(self) -> str:
        return f"{self.prefix}.sync.nudge"

    def actor_rpc(self, actor_id: str) -> str:
        """Calls to an actor from a provider on another host (queue group ``actors``)."""
        return f"{self.prefix}.rpc.actor.{actor_id}"

    def provider_rpc(self, actor_id: str, capability_id: str, binding_name: str) -> str:
        """Host calls of an actor to the provider bound on another host (queue group
        ``providers``)."""
        return f"{self.prefix}.rpc.provider.{actor_id}.{capability_id}.{binding_name}"

    @property
    def lease_bucket(self) -> str:
        """JetStream key-value bucket holding the agent's leader lease."""
        return f"vinculum_lease_{self.lattice_id}".replace("-", "_")

    def op_of(self, subject: str) -> CommandOp | None:
        """The command op at the tail of a host command subject, or None."""
        parts = subject.split(".")
        if len(parts) < 7:
            return None
        try:
            return CommandOp(".".join(parts[-2:]))
        except ValueError:
            return None
