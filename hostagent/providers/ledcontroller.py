"""``iot:ledcontroller`` / ``wascc``: a virtual LED strip whose pixels show in the inventory.

The strip has ``LEDS`` pixels (binding value, default 12), all ``000000`` at start.
Operations (UTF-8 text): ``Set`` "index=rrggbb", ``Fill`` "rrggbb", ``Clear``, ``Get`` ->
the pixels, comma-separated. The inventory shows ``length`` and ``pixels``. It needs no
quota: what it keeps is one strip per provider, at most :data:`MAX_LEDS` pixels, whatever
its actors do.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from typing import ClassVar

from hostagent.providers.base import ProviderContext, ProviderError

log = logging.getLogger(__name__)

DEFAULT_LEDS = 12
MAX_LEDS = 1024
OFF = "000000"
_COLOR = re.compile(r"^[0-9a-fA-F]{6}$")


class LedController:
    """A strip of RGB pixels in memory."""

    capability_id: ClassVar[str] = "iot:ledcontroller"
    vendor_id: ClassVar[str] = "wascc"

    def __init__(self, ctx: ProviderContext) -> None:
        self.ctx = ctx
        self._pixels = [OFF] * DEFAULT_LEDS
        self._lock = threading.Lock()

    async def start(self) -> None:
        log.info("virtual LED strip %s started", self.ctx.binding_name)

    async def stop(self) -> None:
        pass

    async def bind(self, actor_id: str, values: Mapping[str, str]) -> None:
        if "LEDS" not in values:
            return
        try:
            length = int(values["LEDS"])
        except ValueError:
            raise ProviderError("LEDS must be an integer") from None
        if not 1 <= length <= MAX_LEDS:
            raise ProviderError(f"LEDS must be between 1 and {MAX_LEDS}")
        with self._lock:
            self._pixels = (self._pixels + [OFF] * length)[:length]

    async def unbind(self, actor_id: str) -> None:
        pass

    def host_call(self, actor_id: str, operation: str, payload: bytes) -> bytes:
        text = payload.decode(errors="replace").strip()
        with self._lock:
            if operation == "Set":
                index, _, color = text.partition("=")
                if not index.isdigit() or not _COLOR.match(color):
                    raise ProviderError("Set takes 'index=rrggbb'")
                if int(index) >= len(self._pixels):
                    raise ProviderError(f"no LED {index}: the strip has {len(self._pixels)}")
                self._pixels[int(index)] = color.lower()
            elif operation == "Fill":
                if not _COLOR.match(text):
                    raise ProviderError("Fill takes 'rrggbb'")
                self._pixels = [text.lower()] * len(self._pixels)
            elif operation == "Clear":
                self._pixels = [OFF] * len(self._pixels)
            elif operation != "Get":
                raise ProviderError(
                    f"ledcontroller has no operation {operation!r} (Set, Fill, Clear, Get)")
            return ",".join(self._pixels).encode()

    def state(self) -> dict[str, str]:
        with self._lock:
            return {"length": str(len(self._pixels)), "pixels": ",".join(self._pixels)}
