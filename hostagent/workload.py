"""The workload runtime behind a host: the interface, and the in-memory one.

The :class:`~hostagent.host.Host` decides *whether* to start or stop something
(:mod:`hostagent.commands`); a :class:`Runtime` does it. Runtimes are pluggable through the
:class:`Runtime` protocol. Two implement it: :mod:`hostagent.wasm.runtime` (the default of
``lattice-host``: signed WebAssembly actors from gantry, Python capability providers) and
:class:`MemoryRuntime` here (``--runtime memory``), which records the entities and their
state and executes nothing, for tests and benchmarks of the control plane.

A runtime signals a failure by raising :class:`RuntimeFailure`; the host turns it into a
refused command and a ``*_start_failed`` event. A runtime receives binding values resolved
from the host's environment and must never log them or put them in an exception message
(the host redacts them from error text anyway).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Protocol

from hostagent.errors import HostAgentError
from lattice.errors import PermanentError
from lattice.protocol import ActorInstance, BindingInstance, ProviderInstance

log = logging.getLogger(__name__)

BindingKey = tuple[str, str, str]  # (actor_id, capability_id, binding_name)


class RuntimeFailure(HostAgentError, PermanentError):
    """The runtime could not do what it was asked; the message says why."""


class Runtime(Protocol):
    """What a host needs from whatever runs its workloads. Every method may raise
    :class:`RuntimeFailure`."""

    async def start_actor(self, actor: ActorInstance) -> None:
        """Start one instance of an actor (``actor.instance_id`` is fresh)."""

    async def stop_actor(self, actor: ActorInstance) -> None:
        """Stop one running instance."""

    async def start_provider(self, provider: ProviderInstance) -> None:
        """Start a capability provider for its (capability_id, binding_name)."""

    async def stop_provider(self, provider: ProviderInstance) -> None:
        """Stop a running provider (its bindings were deleted just before)."""

    async def put_binding(self, binding: BindingInstance, resolved: Mapping[str, str]) -> None:
        """Create or replace a binding; ``resolved`` holds the values to use (secret)."""

    async def delete_binding(self, binding: BindingInstance) -> None:
        """Remove a binding."""


def binding_key(binding: BindingInstance) -> BindingKey:
    """The identity of a binding on one host."""
    return (binding.actor_id, binding.capability_id, binding.binding_name)


class MemoryRuntime:
    """Records what runs, executes nothing (WebAssembly execution is a later issue)."""

    def __init__(self) -> None:
        self.actors: dict[str, ActorInstance] = {}
        self.providers: dict[str, ProviderInstance] = {}
        self.bindings: dict[BindingKey, dict[str, str]] = {}

    def __repr__(self) -> str:  # never show resolved binding values
        return (
            f"MemoryRuntime(actors={len(self.actors)}, providers={len(self.providers)}, "
            f"bindings={len(self.bindings)})"
        )

    async def start_actor(self, actor: ActorInstance) -> None:
        self.actors[actor.instance_id] = actor
        log.debug("runtime: actor %s instance %s recorded", actor.actor_id, actor.instance_id)

    async def stop_actor(self, actor: ActorInstance) -> None:
        self.actors.pop(actor.instance_id, None)
        log.debug("runtime: actor %s instance %s forgotten", actor.actor_id, actor.instance_id)

    async def start_provider(self, provider: ProviderInstance) -> None:
        self.providers[provider.instance_id] = provider
        log.debug(
            "runtime: provider %s/%s recorded", provider.capability_id, provider.binding_name
        )

    async def stop_provider(self, provider: ProviderInstance) -> None:
        self.providers.pop(provider.instance_id, None)
        log.debug(
            "runtime: provider %s/%s forgotten", provider.capability_id, provider.binding_name
        )

    async def put_binding(self, binding: BindingInstance, resolved: Mapping[str, str]) -> None:
        self.bindings[binding_key(binding)] = dict(resolved)
        log.debug("runtime: binding %s recorded (keys %s)", binding_key(binding), sorted(resolved))

    async def delete_binding(self, binding: BindingInstance) -> None:
        self.bindings.pop(binding_key(binding), None)
        log.debug("runtime: binding %s forgotten", binding_key(binding))
