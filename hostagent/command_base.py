"""The common ground of a host's command handling: outcomes, refusals, the state lock.

:class:`CommandBase` holds what every family of commands needs (the host's state, its
runtime, the lock under which a command changes the state) and the two ways a command
ends, :meth:`~CommandBase._ok` and :meth:`~CommandBase._refuse`. The families build on it:
:mod:`hostagent.binding_commands`, then :mod:`hostagent.commands` (actors, providers, the
entry point).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

from hostagent.logctx import host_logger
from hostagent.state import HostState
from hostagent.workload import Runtime
from lattice.protocol import CommandAck, EventType, Message

Emit = tuple[EventType, Message]
STOPPED_BY_COMMAND = "stopped by command"
HOST_STOPPING = "host stopping"
HOST_IS_STOPPING = "host is stopping"


@dataclass(frozen=True)
class Outcome:
    """The reply to one command and the events that follow it."""

    ack: CommandAck
    events: list[Emit] = field(default_factory=list)


def describe_failure(exc: BaseException) -> str:
    """What an exception says, or its type when it says nothing."""
    return str(exc) or type(exc).__name__


class CommandBase:
    """One host's state, runtime and state lock, and how a command ends."""

    def __init__(
        self, state: HostState, runtime: Runtime, *, environ: Mapping[str, str]
    ) -> None:
        self.state = state
        self.runtime = runtime
        self.environ = environ
        self.log = host_logger("hostagent.commands", state.host_id, state.name)
        #: held while a command changes the state (and by the host to stop everything)
        self.lock = asyncio.Lock()

    def _refuse(self, reason: str, *, events: list[Emit] | None = None,
                changed: bool = False) -> Outcome:
        self.log.warning("refused: %s", reason)
        ack = CommandAck(
            host_id=self.state.host_id, accepted=False, reason=reason, changed=changed
        )
        return Outcome(ack, events or [])

    def _ok(self, *, changed: bool, instance_id: str | None = None, reason: str = "",
            events: list[Emit] | None = None) -> Outcome:
        ack = CommandAck(
            host_id=self.state.host_id, accepted=True, reason=reason, changed=changed,
            instance_id=instance_id,
        )
        return Outcome(ack, events or [])
