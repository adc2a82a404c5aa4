"""``wascc:logging``: waSCC's per-actor log contract (codec ``logging.rs``).

| operation | from -> to | payload | answer |
|---|---|---|---|
| ``WriteLog`` | actor -> provider | ``WriteLogRequest {level, body}`` | empty (ignored) |

``level`` is a u32: 0 off, 1 error, 2 warn, 3 info, 4 debug, 5 trace (the ``log`` crate's
levels, which ``wascc-actor``'s logger sends for each ``error!`` ... ``trace!``); ``body``
the line. Every actor built with ``wascc-actor`` installs that logger, so its log macros
call ``WriteLog`` on its ``default`` binding and ignore a failure.
"""

from __future__ import annotations

from dataclasses import dataclass

from hostagent.wascc_codec import U32

OP_LOG = "WriteLog"

OFF, ERROR, WARN, INFO, DEBUG, TRACE = range(6)
LEVELS = {OFF: "OFF", ERROR: "ERROR", WARN: "WARN", INFO: "INFO", DEBUG: "DEBUG",
          TRACE: "TRACE"}


@dataclass(frozen=True, kw_only=True)
class WriteLogRequest:
    """One log line of an actor."""

    level: U32
    body: str
