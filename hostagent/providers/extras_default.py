"""``wascc:extras`` / ``default``: GUIDs, random numbers and sequence numbers for actors.

Speaks waSCC's codec (:mod:`hostagent.wascc_codec.extras`), as ``wascc-host``'s own
extras provider did: ``RequestGuid`` answers a random (v4) UUID, hyphenated;
``RequestRandom`` a number in ``[min, max)`` from the operating system's random source
(``min`` >= ``max`` is refused, where waSCC's host panicked; ``random`` false answers
zeros); ``RequestSequence`` the next number of the calling actor's own sequence, from 0.
Each answer is a ``GeneratorResult`` with what was not asked for nil or 0. A sequence
lives as long as its actor's binding to this provider; nothing else is kept, so no quota
is needed.
"""

from __future__ import annotations

import logging
import secrets
import threading
import uuid
from collections.abc import Mapping
from typing import ClassVar

from hostagent.providers.base import ProviderContext, ProviderError
from hostagent.wascc_codec import CodecError, deserialize, serialize
from hostagent.wascc_codec import extras as codec

log = logging.getLogger(__name__)


def random_in(low: int, high: int) -> int:
    """A uniformly random integer in ``[low, high)``; ProviderError when empty."""
    if low >= high:
        raise ProviderError(f"RequestRandom needs min < max (the range is [min, max)), "
                            f"got min {low} and max {high}")
    return low + secrets.randbelow(high - low)


class Extras:
    """Generators for the actors bound to it."""

    capability_id: ClassVar[str] = "wascc:extras"
    vendor_id: ClassVar[str] = "default"

    def __init__(self, ctx: ProviderContext) -> None:
        self.ctx = ctx
        self._sequences: dict[str, int] = {}  # bound actor -> its next number
        self._lock = threading.Lock()

    async def start(self) -> None:
        log.info("extras provider %s started", self.ctx.binding_name)

    async def stop(self) -> None:
        with self._lock:
            self._sequences.clear()

    async def bind(self, actor_id: str, values: Mapping[str, str]) -> None:
        with self._lock:
            self._sequences.setdefault(actor_id, 0)  # a rebinding keeps the sequence

    async def unbind(self, actor_id: str) -> None:
        with self._lock:
            self._sequences.pop(actor_id, None)

    def _next(self, actor_id: str) -> int:
        with self._lock:
            if actor_id not in self._sequences:
                raise ProviderError(f"actor {actor_id} is not bound to extras "
                                    f"{self.ctx.binding_name} here")
            number = self._sequences[actor_id]
            self._sequences[actor_id] = number + 1
            return number

    def host_call(self, actor_id: str, operation: str, payload: bytes) -> bytes:
        known = (codec.OP_REQUEST_GUID, codec.OP_REQUEST_RANDOM, codec.OP_REQUEST_SEQUENCE)
        if operation not in known:
            raise ProviderError(f"extras has no operation {operation[:80]!r} "
                                f"({', '.join(known)})")
        try:
            request = deserialize(codec.GeneratorRequest, payload)
        except CodecError as exc:
            raise ProviderError(str(exc)) from exc
        result = codec.GeneratorResult(sequence_number=0, random_number=0)
        if operation == codec.OP_REQUEST_GUID:
            result = codec.GeneratorResult(guid=str(uuid.uuid4()), sequence_number=0,
                                           random_number=0)
        elif operation == codec.OP_REQUEST_RANDOM and request.random:
            result = codec.GeneratorResult(
                random_number=random_in(request.min, request.max), sequence_number=0)
        elif operation == codec.OP_REQUEST_SEQUENCE:
            result = codec.GeneratorResult(sequence_number=self._next(actor_id),
                                           random_number=0)
        return serialize(result)

    def state(self) -> dict[str, str]:
        with self._lock:
            return {"bound": str(len(self._sequences))}
