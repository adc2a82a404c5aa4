"""What a capability provider is, and what the runtime gives it.

A provider class has ``capability_id`` and ``vendor_id`` class attributes, is constructed
with a :class:`ProviderContext` once per (capability, binding name) on a host, and serves
the actors bound to it. :meth:`Provider.host_call` runs on an actor's worker thread (the
guest is blocked in ``__host_call``) and must be thread-safe and quick; everything else
runs on the host's event loop. A provider never logs binding values.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar, Protocol

from nats.aio.client import Client

from hostagent.errors import HostAgentError

#: call_actor(actor_id, operation, payload) -> response; raises on a guest failure.
CallActor = Callable[[str, str, bytes], Awaitable[bytes]]


class ProviderError(HostAgentError):
    """A host call a provider refuses; the message goes back to the guest as it is
    (without the package prefix: ``str(exc) == exc.message``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.args = (message,)


@dataclass(frozen=True, kw_only=True)
class ProviderContext:
    """What a provider may use: the host's NATS connection and loop, and its actors."""

    capability_id: str
    binding_name: str
    vendor_id: str
    nc: Client | None
    loop: asyncio.AbstractEventLoop
    call_actor: CallActor


class Provider(Protocol):
    """One running provider for a (capability, binding name) on a host."""

    capability_id: ClassVar[str]
    vendor_id: ClassVar[str]

    async def start(self) -> None:
        """Acquire what the provider needs; raise to refuse to start."""

    async def stop(self) -> None:
        """Release everything (bindings were removed just before)."""

    async def bind(self, actor_id: str, values: Mapping[str, str]) -> None:
        """Serve ``actor_id`` with the resolved binding ``values`` (replaces a binding)."""

    async def unbind(self, actor_id: str) -> None:
        """Stop serving ``actor_id``."""

    def host_call(self, actor_id: str, operation: str, payload: bytes) -> bytes:
        """An actor's call (worker thread); raise :class:`ProviderError` to refuse it."""

    def state(self) -> dict[str, str]:
        """What the inventory shows about this provider (no secrets)."""


ProviderFactory = Callable[[ProviderContext], Provider]
