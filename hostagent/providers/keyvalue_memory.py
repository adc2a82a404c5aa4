"""``wascc:keyvalue`` / ``memory``: a key-value store in the host's memory.

Operations (UTF-8 text): ``Get`` key -> value (empty when absent), ``Set`` "key=value",
``Del`` key, ``Incr`` key -> the new integer as decimal text. The store belongs to the
provider (one per binding name on a host) and is shared by the actors bound to it; it is
lost when the provider stops.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import ClassVar

from hostagent.providers.base import ProviderContext, ProviderError

log = logging.getLogger(__name__)


class MemoryKeyValue:
    """A thread-safe dict behind the keyvalue operations."""

    capability_id: ClassVar[str] = "wascc:keyvalue"
    vendor_id: ClassVar[str] = "memory"

    def __init__(self, ctx: ProviderContext) -> None:
        self.ctx = ctx
        self._data: dict[str, str] = {}
        self._actors: set[str] = set()
        self._lock = threading.Lock()

    async def start(self) -> None:
        log.info("keyvalue memory provider %s started", self.ctx.binding_name)

    async def stop(self) -> None:
        with self._lock:
            self._data.clear()

    async def bind(self, actor_id: str, values: Mapping[str, str]) -> None:
        self._actors.add(actor_id)

    async def unbind(self, actor_id: str) -> None:
        self._actors.discard(actor_id)

    def host_call(self, actor_id: str, operation: str, payload: bytes) -> bytes:
        text = payload.decode(errors="replace")
        with self._lock:
            if operation == "Get":
                return self._data.get(text, "").encode()
            if operation == "Set":
                key, sep, value = text.partition("=")
                if not sep:
                    raise ProviderError("Set takes 'key=value'")
                self._data[key] = value
                return b""
            if operation == "Del":
                self._data.pop(text, None)
                return b""
            if operation == "Incr":
                try:
                    count = int(self._data.get(text, "0")) + 1
                except ValueError:
                    raise ProviderError(f"value of {text!r} is not an integer") from None
                self._data[text] = str(count)
                return str(count).encode()
        raise ProviderError(f"keyvalue has no operation {operation!r} (Get, Set, Del, Incr)")

    def state(self) -> dict[str, str]:
        with self._lock:
            return {"keys": str(len(self._data))}
