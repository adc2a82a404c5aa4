"""``wascc:logging`` / ``default``: an actor's ``WriteLog`` lines in the host's log.

Speaks waSCC's codec (:mod:`hostagent.wascc_codec.logging`): ``WriteLog`` takes
``{level, body}`` and answers empty. Every actor built with ``wascc-actor`` sends its
``error!`` ... ``trace!`` lines this way (and ignores a failure), so binding this provider
is how an operator sees them. A line goes to the host's log (logger
``vinculum.actor``) at its level (1 ERROR, 2 WARNING, 3 INFO, 4 DEBUG, 5 TRACE as DEBUG; 0
OFF is not written, another level is refused), as ``actor <id>: <body>``.

Bounded, since actors are other people's code: a body is cut at :data:`MAX_BODY` bytes
and its line breaks escaped (an actor cannot forge the host's lines), and each binding may
write ``LOG_RATE`` lines a second (binding value, default 100; a token bucket holding one
second's worth). A line over the rate is refused (the guest reads the quota) and counted;
the next line written says how many were dropped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from hostagent.providers.base import ProviderContext, ProviderError
from hostagent.providers.quota import Quota, QuotaExceeded, TokenBucket, read_quota
from hostagent.wascc_codec import CodecError, deserialize
from hostagent.wascc_codec import logging as codec

log = logging.getLogger(__name__)
actor_log = logging.getLogger("vinculum.actor")

MAX_BODY = 4096
LOG_RATE = Quota("LOG_RATE", 100, "lines/s")
#: waSCC's level -> the host log's (0, OFF, is not written)
PY_LEVELS = {codec.ERROR: logging.ERROR, codec.WARN: logging.WARNING,
             codec.INFO: logging.INFO, codec.DEBUG: logging.DEBUG, codec.TRACE: logging.DEBUG}


def line_of(body: str) -> str:
    """What the host's log shows of a body: cut at MAX_BODY bytes, line breaks escaped.
    Pure."""
    raw = body.encode("utf-8", "surrogatepass")
    if len(raw) > MAX_BODY:
        body = raw[:MAX_BODY].decode("utf-8", "ignore") + "..."
    return body.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")


@dataclass
class _Bound:
    bucket: TokenBucket
    dropped: int = 0


class HostLog:
    """Writes its actors' lines to the host's log, a rate per binding."""

    capability_id: ClassVar[str] = "wascc:logging"
    vendor_id: ClassVar[str] = "default"

    def __init__(self, ctx: ProviderContext) -> None:
        self.ctx = ctx
        self._bound: dict[str, _Bound] = {}
        self._lock = threading.Lock()

    async def start(self) -> None:
        log.info("logging provider %s started", self.ctx.binding_name)

    async def stop(self) -> None:
        with self._lock:
            self._bound.clear()

    async def bind(self, actor_id: str, values: Mapping[str, str]) -> None:
        rate = read_quota(values, LOG_RATE)
        with self._lock:
            self._bound[actor_id] = _Bound(TokenBucket(rate, rate))

    async def unbind(self, actor_id: str) -> None:
        with self._lock:
            self._bound.pop(actor_id, None)

    def host_call(self, actor_id: str, operation: str, payload: bytes) -> bytes:
        if operation != codec.OP_LOG:
            raise ProviderError(f"logging has no operation {operation[:80]!r} "
                                f"({codec.OP_LOG})")
        try:
            request = deserialize(codec.WriteLogRequest, payload)
        except CodecError as exc:
            raise ProviderError(str(exc)) from exc
        if request.level == codec.OFF:
            return b""
        level = PY_LEVELS.get(request.level)
        if level is None:
            raise ProviderError(f"level {request.level} is not one of waSCC's log levels "
                                "(0 OFF, 1 ERROR, 2 WARN, 3 INFO, 4 DEBUG, 5 TRACE)")
        with self._lock:
            bound = self._bound.get(actor_id)
            if bound is None:
                raise ProviderError(f"actor {actor_id} is not bound to logging "
                                    f"{self.ctx.binding_name} here")
            if bound.bucket.available() < 1:
                bound.dropped += 1
                raise QuotaExceeded("logging", LOG_RATE, round(bound.bucket.rate),
                                    "more lines a second")
            bound.bucket.take(1)
            dropped, bound.dropped = bound.dropped, 0
        if dropped:
            actor_log.warning("actor %s: %d log lines dropped (over LOG_RATE)", actor_id,
                              dropped)
        actor_log.log(level, "actor %s: %s", actor_id, line_of(request.body))
        return b""

    def state(self) -> dict[str, str]:
        with self._lock:
            return {"bound": str(len(self._bound))}
